#pragma once
// Source formats: PostHog (single event, array of events, batch envelope), Segment (messages
// and {"batch": [...]}) and the canonical form, decoded with simdjson into canonical Events.
// Detection is per line and, inside a batch, per element; a forced format skips detection.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "event/event.h"
#include "format/batch_layout.h"

namespace pipescope {

// A JSON value that is not a usable event: no event name, no distinct id, not an object...
struct RejectedEvent {
    Origin origin;
    std::string message;        // why, e.g. "no distinct id: none of distinct_id, properties.distinct_id, $distinct_id"
    std::string_view name;      // when known
    std::string_view distinctId;
    simdjson::dom::element element;
    std::string_view rawLine;   // the line when the rejected value is the whole line
    std::string_view rawElement; // the batch element's exact bytes when it is one
    std::string rawBytes() const;
};

// A batch element the parser refused while its siblings parse (bad UTF-8, a number out of range,
// a syntax error inside it): dead-lettered on its own, the siblings decoded as usual.
struct UnparseableElement {
    Origin origin;
    std::string message;                          // the parser's message
    std::size_t errorOffset = std::string::npos;  // of the error in `raw`, when known
    std::string_view raw;                         // the element's exact bytes
};

// The result of decoding one input line. Views stay valid until the decoder decodes again.
struct DecodedLine {
    bool parsed = false;
    // When !parsed: the parser's message, and the byte offset of the error in the line when
    // known (npos otherwise).
    std::string parseError;
    std::size_t errorOffset = std::string::npos;
    std::vector<Event> events;
    std::vector<RejectedEvent> rejected;
    // Elements of a batch that could not be parsed (when `parsed`: the rest of the batch could).
    std::vector<UnparseableElement> unparseable;

    // Events the line held: decoded, rejected and unparseable elements (an unparseable line
    // holds none).
    std::size_t eventCount() const { return events.size() + rejected.size() + unparseable.size(); }
};

class EventDecoder {
public:
    explicit EventDecoder(Format forced = Format::Auto);

    // `line` must stay readable for SIMDJSON_PADDING bytes past its end (LineReader guarantees
    // it); pass `padded = false` to have the decoder copy it first.
    const DecodedLine& decode(std::string_view line, Origin origin, bool padded = true);

    Format forcedFormat() const { return m_forced; }

private:
    struct Envelope {
        Millis sentAt;
        bool historicalMigration = false;
        std::string_view project; // api_key / token / writeKey of the body
    };
    // A value's exact bytes: the whole line, or a batch element's range in it.
    struct Raw {
        std::string_view line;
        std::string_view element;
    };
    // The top-level members the decoders read, collected in one pass (defined in decoder.cpp).
    enum class Member : std::uint8_t;
    struct Members;

    // simdjson's parse, and again on a copy with out-of-range integers read as doubles when that
    // is what it refused.
    simdjson::error_code parse(std::string_view bytes, bool padded, simdjson::dom::element& out);
    // A batch that does not parse as a whole: decodes the elements that parse on their own and
    // dead-letters the others. False when the body cannot be split into elements.
    bool salvage(std::string_view line, Origin origin, bool padded);
    // The layout of the line just parsed whole, into m_layout.
    bool scanLayout(std::string_view line);
    void describeParseError(std::string_view bytes, simdjson::error_code error, std::string& message,
                            std::size_t& offset) const;
    // `salvaged`: the document is the line rebuilt from the elements that parse (m_layout holds
    // the line's layout), and these are their indexes in the line's batch.
    void decodeValue(simdjson::dom::element value, Origin origin, std::string_view line, Format hint,
                     const std::vector<std::int32_t>* salvaged = nullptr);
    std::size_t decodeItems(simdjson::dom::array items, Origin origin, std::string_view line, Format hint,
                            const Envelope& envelope, bool haveLayout, const std::vector<std::int32_t>* salvaged);
    void rejectDuplicateBatch(Origin origin, simdjson::dom::element value, std::string_view line, bool scanned);
    void decodeElement(simdjson::dom::element value, Origin origin, Raw raw, Format hint,
                       const Envelope& envelope);
    void decodeObject(simdjson::dom::element value, const Members& members, Origin origin, Raw raw,
                      Format hint, const Envelope& envelope);
    void decodePostHog(const Members& members, Event& event);
    void decodeSegment(const Members& members, Event& event);
    void decodeCanonical(const Members& members, Event& event);
    bool takeProperties(const Members& members, Member key, Event& event);
    // Top-level $set / $set_once into event.properties, as PostHog's ingestion folds them.
    void foldPersonProperties(const Members& members, Event& event);
    // Segment page/screen name and category, group groupId, into event.properties.
    void foldSegmentFields(const Members& members, std::string_view type, Event& event);
    // `json` parsed into a document that lives until the next decode (empty object if it fails).
    simdjson::dom::element rebuilt(const std::string& json);
    void reject(Origin origin, simdjson::dom::element value, Raw raw, std::string message, std::string_view name,
                std::string_view distinctId);
    // A string or number member as text; a null data() view when absent or of another type.
    std::string_view idMember(const Members& members, Member key);
    std::string_view idText(simdjson::dom::element value);
    // A PostHog distinct id as capture reads it: a string as it is, any other non-null value as
    // its JSON text (v0_request.rs extract_distinct_id: value.to_string()).
    std::string_view captureIdText(simdjson::dom::element value);
    // JavaScript's String(value), as PostHog's ingestion reads $anon_distinct_id and alias.
    std::string_view jsText(simdjson::dom::element value);
    // Keeps text (e.g. a numeric id turned into a string) alive until the next decode.
    std::string_view keep(std::string text);

    Format m_forced;
    simdjson::dom::parser m_parser;
    simdjson::dom::parser m_emptyParser;
    simdjson::dom::element m_emptyObject;
    DecodedLine m_result;
    std::deque<std::string> m_scratch;
    std::string m_rejectMessage;
    // Batch layout of the line being decoded, and the copies a hostile line needs: with integers
    // widened to doubles, rebuilt from the elements that parse.
    BatchScanner m_scanner;
    BatchLayout m_layout;
    std::string m_widened;
    bool m_parsedWidened = false; // the last successful parse was of m_widened
    std::string m_rebuilt;
    std::vector<std::int32_t> m_parsedIndexes;
    // Documents of properties rebuilt for this line (folded $set, Segment fields), reused.
    std::vector<std::unique_ptr<simdjson::dom::parser>> m_rebuiltParsers;
    std::size_t m_rebuiltUsed = 0;
};

// Stream of a library name: PostHog `$lib` or Segment `context.library.name`.
Stream streamOfLibrary(std::string_view library);

} // namespace pipescope
