#pragma once
// Source formats: PostHog (single event, array of events, batch envelope), Segment (messages
// and {"batch": [...]}) and the canonical form, decoded with simdjson into canonical Events.
// Detection is per line and, inside a batch, per element; a forced format skips detection.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "event/event.h"

namespace pipescope {

// A JSON value that is not a usable event: no event name, no distinct id, not an object...
struct RejectedEvent {
    Origin origin;
    std::string message;        // why, e.g. "no distinct id: none of distinct_id, properties.distinct_id, $distinct_id"
    std::string_view name;      // when known
    std::string_view distinctId;
    simdjson::dom::element element;
    std::string_view rawLine;   // the line when the rejected value is the whole line
    std::string rawBytes() const;
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

    // Events the line held: decoded plus rejected (an unparseable line holds none).
    std::size_t eventCount() const { return events.size() + rejected.size(); }
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
    };
    // The top-level members the decoders read, collected in one pass (defined in decoder.cpp).
    enum class Member : std::uint8_t;
    struct Members;

    void decodeValue(simdjson::dom::element value, Origin origin, std::string_view rawLine, Format hint);
    void decodeElement(simdjson::dom::element value, Origin origin, std::string_view rawLine, Format hint,
                       const Envelope& envelope);
    void decodeObject(simdjson::dom::element value, const Members& members, Origin origin,
                      std::string_view rawLine, Format hint, const Envelope& envelope);
    void decodePostHog(const Members& members, Event& event);
    void decodeSegment(const Members& members, Event& event);
    void decodeCanonical(const Members& members, Event& event);
    bool takeProperties(const Members& members, Member key, Event& event);
    void reject(Origin origin, simdjson::dom::element value, std::string_view rawLine, std::string message,
                std::string_view name, std::string_view distinctId);
    // A string or number member as text; a null data() view when absent or of another type.
    std::string_view idMember(const Members& members, Member key);
    std::string_view idText(simdjson::dom::element value);
    // Keeps text (e.g. a numeric id turned into a string) alive until the next decode.
    std::string_view keep(std::string text);

    Format m_forced;
    simdjson::dom::parser m_parser;
    simdjson::dom::parser m_emptyParser;
    simdjson::dom::element m_emptyObject;
    DecodedLine m_result;
    std::deque<std::string> m_scratch;
    std::string m_rejectMessage;
};

// Stream of a library name: PostHog `$lib` or Segment `context.library.name`.
Stream streamOfLibrary(std::string_view library);

} // namespace pipescope
