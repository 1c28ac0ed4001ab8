#pragma once
// The filter language: one expression language for the GUI's filter bar, `pipescope-cli export
// --filter`, replay's selection of dead letters and the Kafka views. Parsed once into a typed
// expression tree (with the byte position of every error), then evaluated per record over a
// FilterRecord: views of a StoredEvent's or a DlqEntry's fields plus its properties as JSON text,
// which is parsed (simdjson on-demand) only when the filter names a property. The grammar, the
// fields and the type rules are in the README ("Filter language"). To run a filter over a
// capture file (in SQLite where the columns decide it), see filter/filter_sql.h.
//
//   event == "payment_completed" && verdict == invalid
//   properties.amount > 100 && properties.items[0].sku ~ "^SKU-"
//   time > -5m || distinct_id in {"user-1", "user-2"}
//   exists properties["$set"] && !(stream == server)

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

struct StoredEvent;
struct DlqEntry;
struct EventRow;

// What a filter runs over; it decides which fields exist (`reason` and `detail` are fields of
// dead letters, `verdict`, `format`, ... of events). A field of the other kind is a parse error.
enum class FilterTarget : std::uint8_t { Events, DeadLetters };

struct FilterOptions {
    FilterTarget target = FilterTarget::Events;
    // The instant relative times (`time > -5m`) count back from, in epoch milliseconds. Unset:
    // the system clock when parse() runs (a filter is a fixed window, not a sliding one).
    std::optional<std::int64_t> nowMillis;
};

struct FilterError {
    std::size_t position = 0;  // byte offset into the expression where the problem starts
    std::size_t length = 0;    // bytes it covers; 0 when the problem is the end of the text
    std::string message;       // e.g. `unknown field "evnt" (did you mean "event"?)`

    std::size_t column() const { return position + 1; }  // 1-based, in bytes
    // "error at column 7: unterminated string"
    std::string describe() const;
    // Two lines: the expression, and a caret line under the bytes the error covers
    // ("      ^~~~~"). Multi-byte UTF-8 characters count as one column.
    std::string caret(std::string_view text) const;
};

// One record as a filter sees it: views into a StoredEvent, a DlqEntry or anything shaped like
// one. Building it copies and parses nothing; the views must outlive matches().
struct FilterRecord {
    std::string_view event;        // the event's name
    std::string_view distinctId;
    std::string_view stream;       // client | server | unknown
    std::string_view verdict;      // valid | invalid | unplanned | duplicate (events)
    std::string_view origin;       // where it entered: a file name, "http:/batch/", ...
    std::string_view id;           // the event id (uuid / messageId), empty when none
    std::string_view format;       // posthog | segment | canonical
    std::string_view anonymousId;
    std::string_view userId;
    std::string_view reason;       // dead letters: unparseable | rejected | schema_violation | unplanned
    std::string_view detail;       // dead letters: the detail JSON as text
    std::optional<std::int64_t> seq;
    std::optional<std::int64_t> time;      // epoch ms: the event's timestamp, else when received
    std::optional<std::int64_t> received;  // epoch ms
    std::optional<std::int64_t> ingest;    // the collector request it came from
    // The properties: a JSON object as text. Parsed only if the filter names a property.
    std::string_view properties;
    // When set, `properties` is a whole event object (a dead letter's raw bytes) and property
    // paths are looked up in its "properties" member.
    bool propertiesInEvent = false;

    static FilterRecord of(const StoredEvent& event);
    // A table row and its properties (CaptureReader::scanRows): what a capture scan reads.
    static FilterRecord of(const EventRow& row, std::string_view properties);
    // A dead letter: its properties are read from its raw bytes when they are an event object
    // (a dead letter that is not JSON has no properties). To filter on the stored event of a
    // schema violation instead, set `properties` to that event's properties and clear
    // `propertiesInEvent`.
    static FilterRecord of(const DlqEntry& entry);
};

// A parsed filter. Immutable once parsed: copies share the compiled tree, and matches() may be
// called from many threads at once (scratch space is per thread).
class FilterExpression {
public:
    class Result;
    // Parses and type-checks `text`. An empty (or blank) text is the filter that matches
    // everything.
    static Result parse(std::string_view text, const FilterOptions& options = {});

    bool matches(const FilterRecord& record) const;
    bool matches(const StoredEvent& event) const;
    bool matches(const DlqEntry& entry) const;

    // True for the empty filter (matches everything without looking).
    bool matchesAll() const;
    // The canonical form: keywords as `&&` `||` `!`, strings quoted, paths in dotted form
    // (brackets where a key needs them), parentheses only where needed, relative times kept
    // relative. parse(toString()) gives the same toString().
    std::string toString() const;
    // The fields and property paths the filter reads, in canonical form and in the order they
    // first appear, each once: {"event", "properties.amount", "properties.items[0].sku"}.
    std::vector<std::string> referencedFields() const;
    // True when any property is referenced: evaluating then parses the properties JSON.
    bool readsProperties() const;
    FilterTarget target() const;
    // The instant relative times were resolved against (epoch ms).
    std::int64_t nowMillis() const;

    // The compiled tree, for the rest of core/filter (filter_ast.h); not an API.
    struct Impl;
    const Impl& internals() const { return *m_impl; }

private:
    explicit FilterExpression(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> m_impl;
};

class FilterExpression::Result {
public:
    bool ok() const { return m_expression.has_value(); }
    explicit operator bool() const { return ok(); }
    // Only when ok().
    const FilterExpression& expression() const { return *m_expression; }
    FilterExpression& expression() { return *m_expression; }
    // Only when !ok().
    const FilterError& error() const { return m_error; }

private:
    friend class FilterExpression;
    std::optional<FilterExpression> m_expression;
    FilterError m_error;
};

// For completion and help: the fields of a target, with their type and a one-line description.
struct FilterField {
    std::string_view name;
    std::string_view type;         // "string", "number", "time", "json" (properties)
    std::string_view description;
    // The values an enumerated field takes (verdict, stream, format, reason), else empty. They
    // may be written unquoted: `verdict == invalid`.
    std::vector<std::string_view> values;
};
const std::vector<FilterField>& filterFields(FilterTarget target);
// The keywords and operators, for completion: "&&", "||", "!", "and", "or", "not", "in",
// "exists", "contains", "true", "false", "null", "==", "!=", "<", "<=", ">", ">=", "~", "!~".
const std::vector<std::string_view>& filterKeywords();

} // namespace pipescope
