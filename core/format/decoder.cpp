#include "format/decoder.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>


#include "format/json_error.h"

namespace pipescope {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

namespace {

constexpr std::array<std::string_view, 17> kClientLibraries{
    "web",           "posthog-js",        "posthog-js-lite",          "posthog-ios",
    "posthog-android", "posthog-react-native", "posthog-flutter",      "analytics.js",
    "analytics-next", "@segment/analytics-next", "analytics-ios",     "analytics-android",
    "analytics-react-native", "@segment/analytics-react-native", "analytics-kotlin", "analytics-swift",
    "analytics-flutter"};

constexpr std::array<std::string_view, 18> kServerLibraries{
    "posthog-node",   "posthog-python",  "posthog-go",       "posthog-ruby",         "posthog-php",
    "posthog-java",   "posthog-dotnet",  "posthog-elixir",   "posthog-rust",         "@segment/analytics-node",
    "analytics-node", "analytics-python", "analytics-go",    "analytics-ruby",       "analytics-java",
    "analytics-php",  "analytics-dotnet", "analytics-kotlin-server"};

// `key == literal` for a key already known to have the literal's length: a memcmp of constant size,
// which the compiler turns into a few integer compares instead of a library call.
template <std::size_t N> inline bool sameBytes(std::string_view key, const char (&literal)[N]) {
    return std::memcmp(key.data(), literal, N - 1) == 0;
}

// Member `key` of `value` when `value` is an object that has it.
bool objectMember(element value, std::string_view key, element& out) {
    return value.is_object() && value.get_object().value_unsafe().at_key(key).get(out) == simdjson::SUCCESS;
}

Millis timeOf(element value) {
    switch (value.type()) {
    case element_type::STRING: return parseTimestamp(value.get_string().value_unsafe());
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE: {
        // Numbers are epoch seconds (as PostHog's $time) or, when too large for that, milliseconds.
        const double number = value.get_double().value_unsafe();
        if (!std::isfinite(number)) return std::nullopt;
        return static_cast<std::int64_t>(number < 1e11 ? number * 1000.0 : number);
    }
    default: return std::nullopt;
    }
}

// The shortest round-trip digits of a finite, non-zero |x| and the decimal exponent of the first
// digit's place plus one (x = 0.digits * 10^point), as both JavaScript and Rust's ryu start from.
void shortestDigits(double x, std::string& digits, int& point) {
    char buffer[64];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, std::fabs(x), std::chars_format::scientific);
    const std::string_view text(buffer, ec == std::errc() ? static_cast<std::size_t>(end - buffer) : 0);
    const std::size_t e = text.find('e');
    digits.clear();
    for (std::size_t i = 0; i < e && i < text.size(); ++i)
        if (text[i] != '.') digits += text[i];
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    point = (e == std::string_view::npos ? 0 : std::atoi(text.data() + e + 1)) + 1;
}

// JavaScript's Number.prototype.toString (ECMA-262 Number::toString), as PostHog's ingestion
// stringifies a numeric $anon_distinct_id or alias: 1.0 -> "1", 1e21 -> "1e+21", 1e-7 -> "1e-7".
std::string jsNumberText(double x) {
    if (x == 0) return "0";
    if (!std::isfinite(x)) return std::isnan(x) ? "NaN" : (x < 0 ? "-Infinity" : "Infinity");
    std::string digits;
    int n = 0;
    shortestDigits(x, digits, n);
    const int k = static_cast<int>(digits.size());
    std::string out = x < 0 ? "-" : "";
    if (k <= n && n <= 21) {
        out += digits + std::string(static_cast<std::size_t>(n - k), '0');
    } else if (0 < n && n <= 21) {
        out += digits.substr(0, static_cast<std::size_t>(n)) + "." + digits.substr(static_cast<std::size_t>(n));
    } else if (-6 < n && n <= 0) {
        out += "0." + std::string(static_cast<std::size_t>(-n), '0') + digits;
    } else {
        out += digits.substr(0, 1);
        if (k > 1) out += "." + digits.substr(1);
        out += "e";
        out += n - 1 >= 0 ? "+" : "-";
        out += std::to_string(std::abs(n - 1));
    }
    return out;
}

// serde_json's text of an f64 (Rust's ryu crate), as PostHog's capture stringifies a numeric
// distinct id: 1.0 -> "1.0", 1e16 -> "1e16", 0.0001 -> "0.0001", 1e-7 -> "1e-7".
std::string ryuNumberText(double x) {
    if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
    std::string digits;
    int kk = 0;
    shortestDigits(x, digits, kk);
    const int length = static_cast<int>(digits.size());
    std::string out = x < 0 ? "-" : "";
    if (length <= kk && kk <= 16) {
        out += digits + std::string(static_cast<std::size_t>(kk - length), '0') + ".0";
    } else if (0 < kk && kk <= 16) {
        out += digits.substr(0, static_cast<std::size_t>(kk)) + "." + digits.substr(static_cast<std::size_t>(kk));
    } else if (-5 < kk && kk <= 0) {
        out += "0." + std::string(static_cast<std::size_t>(-kk), '0') + digits;
    } else {
        out += digits.substr(0, 1);
        if (length > 1) out += "." + digits.substr(1);
        out += "e" + std::to_string(kk - 1);
    }
    return out;
}

// JavaScript's String(value) of a parsed JSON value.
void appendJsString(std::string& out, element value) {
    switch (value.type()) {
    case element_type::STRING: out += value.get_string().value_unsafe(); break;
    case element_type::INT64: {
        const std::int64_t n = value.get_int64().value_unsafe();
        // JSON.parse reads every number as a double: beyond 2^53 the text is the double's.
        out += (n > (std::int64_t{1} << 53) || n < -(std::int64_t{1} << 53)) ? jsNumberText(static_cast<double>(n))
                                                                             : std::to_string(n);
        break;
    }
    case element_type::UINT64: {
        const std::uint64_t n = value.get_uint64().value_unsafe();
        out += n > (std::uint64_t{1} << 53) ? jsNumberText(static_cast<double>(n)) : std::to_string(n);
        break;
    }
    case element_type::DOUBLE: out += jsNumberText(value.get_double().value_unsafe()); break;
    case element_type::BOOL: out += value.get_bool().value_unsafe() ? "true" : "false"; break;
    case element_type::NULL_VALUE: out += "null"; break;
    case element_type::OBJECT: out += "[object Object]"; break;
    case element_type::ARRAY: {
        // Array.prototype.join(","): null and undefined elements are empty.
        bool first = true;
        simdjson::dom::array items;
        if (value.get_array().get(items) != simdjson::SUCCESS) break;
        for (const auto item : items) {
            if (!first) out += ',';
            first = false;
            if (!item.is_null()) appendJsString(out, item);
        }
        break;
    }
    }
}

// JavaScript truthiness of a parsed JSON value (PostHog's `if (eventProperties['alias'])`).
bool jsTruthy(element value) {
    switch (value.type()) {
    case element_type::STRING: return !value.get_string().value_unsafe().empty();
    case element_type::INT64: return value.get_int64().value_unsafe() != 0;
    case element_type::UINT64: return value.get_uint64().value_unsafe() != 0;
    case element_type::DOUBLE: {
        const double d = value.get_double().value_unsafe();
        return d != 0 && !std::isnan(d);
    }
    case element_type::BOOL: return value.get_bool().value_unsafe();
    case element_type::NULL_VALUE: return false;
    default: return true; // objects and arrays, even empty ones
    }
}

bool isSegmentType(std::string_view type) {
    return type == "track" || type == "identify" || type == "page" || type == "screen" || type == "group" ||
           type == "alias";
}


void appendJsonString(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20) {
            out += "\\u00";
            out += kHex[byte >> 4];
            out += kHex[byte & 15];
        } else {
            out += c;
        }
    }
    out += '"';
}

// One member put over an object: its key and its value as JSON text.
struct Overlay {
    std::string_view key;
    std::string value;
};

// `base` with `overlays` spread over it, as JavaScript's {...base, ...overlays}: a key in both keeps
// its place and takes the overlay's value; the other overlays follow in their order.
std::string spreadInto(const object* base, const std::vector<Overlay>& overlays) {
    std::string out = "{";
    std::vector<bool> placed(overlays.size(), false);
    const auto comma = [&] {
        if (out.size() > 1) out += ',';
    };
    if (base) {
        for (const auto field : *base) {
            std::size_t i = 0;
            while (i < overlays.size() && overlays[i].key != field.key) ++i;
            if (i < overlays.size() && placed[i]) continue; // a duplicate key of base: already written
            comma();
            appendJsonString(out, field.key);
            out += ':';
            if (i < overlays.size()) {
                out += overlays[i].value;
                placed[i] = true;
            } else {
                out += simdjson::minify(field.value);
            }
        }
    }
    for (std::size_t i = 0; i < overlays.size(); ++i) {
        if (placed[i]) continue;
        comma();
        appendJsonString(out, overlays[i].key);
        out += ':';
        out += overlays[i].value;
    }
    out += '}';
    return out;
}

// The members of a top-level person-property object as overlays (the first of duplicate keys wins).
std::vector<Overlay> overlaysOf(object members) {
    std::vector<Overlay> overlays;
    for (const auto field : members) {
        if (std::any_of(overlays.begin(), overlays.end(), [&](const Overlay& o) { return o.key == field.key; }))
            continue;
        overlays.push_back({field.key, simdjson::minify(field.value)});
    }
    return overlays;
}

} // namespace

// Every top-level key a decoder reads. An event object is walked once to find them all: at_key is
// a linear scan, and looking each one up separately walked a dozen-member Segment message about
// fifteen times.
enum class EventDecoder::Member : std::uint8_t {
    batch,
    sent_at,
    sentAt,
    type,
    distinct_id,
    event,
    name,
    properties,
    traits,
    dollar_distinct_id, // "$distinct_id"
    uuid,
    timestamp,
    userId,
    anonymousId,
    previousId,
    messageId,
    originalTimestamp,
    receivedAt,
    context,
    id,
    id_source,
    anonymous_id,
    user_id,
    alias_id,
    stream,
    received_at,
    dollar_set,      // "$set": posthog-js sends person properties beside "properties"
    dollar_set_once, // "$set_once"
    groupId,
    category,
    historical_migration,
    api_key,     // the project: PostHog "api_key" / "token" / "$token", Segment "writeKey"
    token,
    dollar_token,
    writeKey,
    none, // a key no decoder reads
};

struct EventDecoder::Members {
    static constexpr std::size_t kCount = static_cast<std::size_t>(Member::none);
    static_assert(kCount <= 64, "presence is a 64-bit mask");

    explicit Members(object obj) {
        std::uint64_t found = 0;
        for (const auto field : obj) {
            const Member key = memberOf(field.key);
            if (key == Member::none) continue;
            const std::uint64_t bit = std::uint64_t{1} << static_cast<unsigned>(key);
            // The first of duplicate keys wins, as with at_key; a second "batch" is noted, for a
            // body with two batches is refused rather than half-read.
            if (found & bit) {
                duplicateBatch |= key == Member::batch;
                continue;
            }
            found |= bit;
            values[static_cast<std::size_t>(key)] = field.value;
        }
        present = found;
    }

    bool get(Member key, element& out) const {
        if (!(present & (std::uint64_t{1} << static_cast<unsigned>(key)))) return false;
        out = values[static_cast<std::size_t>(key)];
        return true;
    }

    // The member's string, or an empty view (null data()) when it is absent or not a string.
    std::string_view string(Member key) const {
        element value;
        if (!get(key, value) || !value.is_string()) return {};
        return value.get_string().value_unsafe();
    }

    // A JSON boolean member; nullopt when absent or of another type (PostHog's capture reads it so).
    std::optional<bool> flag(Member key) const {
        element value;
        if (!get(key, value) || !value.is_bool()) return std::nullopt;
        return value.get_bool().value_unsafe();
    }

    Millis time(Member key) const {
        element value;
        return get(key, value) ? timeOf(value) : std::nullopt;
    }

    static Member memberOf(std::string_view key) {
        switch (key.size()) {
        case 2:
            if (sameBytes(key, "id")) return Member::id;
            break;
        case 4:
            if (sameBytes(key, "$set")) return Member::dollar_set;
            if (sameBytes(key, "type")) return Member::type;
            if (sameBytes(key, "name")) return Member::name;
            if (sameBytes(key, "uuid")) return Member::uuid;
            break;
        case 5:
            if (sameBytes(key, "event")) return Member::event;
            if (sameBytes(key, "batch")) return Member::batch;
            if (sameBytes(key, "token")) return Member::token;
            break;
        case 6:
            if (sameBytes(key, "$token")) return Member::dollar_token;
            if (sameBytes(key, "userId")) return Member::userId;
            if (sameBytes(key, "sentAt")) return Member::sentAt;
            if (sameBytes(key, "traits")) return Member::traits;
            if (sameBytes(key, "stream")) return Member::stream;
            break;
        case 7:
            if (sameBytes(key, "api_key")) return Member::api_key;
            if (sameBytes(key, "context")) return Member::context;
            if (sameBytes(key, "sent_at")) return Member::sent_at;
            if (sameBytes(key, "user_id")) return Member::user_id;
            if (sameBytes(key, "groupId")) return Member::groupId;
            break;
        case 8:
            if (sameBytes(key, "writeKey")) return Member::writeKey;
            if (sameBytes(key, "alias_id")) return Member::alias_id;
            if (sameBytes(key, "category")) return Member::category;
            break;
        case 9:
            if (sameBytes(key, "timestamp")) return Member::timestamp;
            if (sameBytes(key, "messageId")) return Member::messageId;
            if (sameBytes(key, "id_source")) return Member::id_source;
            if (sameBytes(key, "$set_once")) return Member::dollar_set_once;
            break;
        case 10:
            if (sameBytes(key, "properties")) return Member::properties;
            if (sameBytes(key, "receivedAt")) return Member::receivedAt;
            if (sameBytes(key, "previousId")) return Member::previousId;
            break;
        case 11:
            if (sameBytes(key, "distinct_id")) return Member::distinct_id;
            if (sameBytes(key, "anonymousId")) return Member::anonymousId;
            if (sameBytes(key, "received_at")) return Member::received_at;
            break;
        case 12:
            if (sameBytes(key, "$distinct_id")) return Member::dollar_distinct_id;
            if (sameBytes(key, "anonymous_id")) return Member::anonymous_id;
            break;
        case 17:
            if (sameBytes(key, "originalTimestamp")) return Member::originalTimestamp;
            break;
        case 20:
            if (sameBytes(key, "historical_migration")) return Member::historical_migration;
            break;
        default:
            break;
        }
        return Member::none;
    }

    // The project an object names: api_key, token, $token, writeKey (the first present string).
    std::string_view project() const {
        for (const Member key : {Member::api_key, Member::token, Member::dollar_token, Member::writeKey}) {
            const std::string_view text = string(key);
            if (!text.empty()) return text;
        }
        return {};
    }

    std::uint64_t present = 0;
    bool duplicateBatch = false;
    std::array<element, kCount> values; // only the entries marked in `present` are read
};

Stream streamOfLibrary(std::string_view library) {
    for (auto name : kClientLibraries)
        if (name == library) return Stream::Client;
    for (auto name : kServerLibraries)
        if (name == library) return Stream::Server;
    return Stream::Unknown;
}

std::string RejectedEvent::rawBytes() const {
    if (!rawLine.empty()) return std::string(rawLine);
    if (rawElement.data() != nullptr) return std::string(rawElement);
    return simdjson::minify(element);
}

EventDecoder::EventDecoder(Format forced) : m_forced(forced) {
    m_emptyObject = m_emptyParser.parse(std::string_view("{}")).value();
}

const DecodedLine& EventDecoder::decode(std::string_view line, Origin origin, bool padded) {
    m_result.parsed = false;
    m_result.parseError.clear();
    m_result.errorOffset = std::string::npos;
    m_result.events.clear();
    m_result.rejected.clear();
    m_result.unparseable.clear();
    m_scratch.clear();
    m_rebuiltUsed = 0;

    element root;
    const auto error = parse(line, padded, root);
    if (error == simdjson::SUCCESS) {
        m_result.parsed = true;
        decodeValue(root, origin, line, m_forced);
        return m_result;
    }
    // A document too deep is refused whole, as the collector refuses it (json_too_deep); so is
    // one the parser has no memory for. Anything else may be one bad element of a batch.
    if (error != simdjson::DEPTH_ERROR && error != simdjson::MEMALLOC && error != simdjson::CAPACITY &&
        salvage(line, origin, padded))
        return m_result;
    describeParseError(line, error, m_result.parseError, m_result.errorOffset);
    return m_result;
}

simdjson::error_code EventDecoder::parse(std::string_view bytes, bool padded, element& out) {
    m_parsedWidened = false;
    const auto error = m_parser.parse(bytes.data(), bytes.size(), !padded).get(out);
    // simdjson 3.0.1 refuses integers beyond 64 bits (NUMBER_ERROR, as for 1e400); they are valid
    // JSON, and PostHog's ingestion (JSON.parse) reads them as the nearest double: do the same.
    if (error != simdjson::NUMBER_ERROR || !widenOutOfRangeIntegers(bytes, m_widened)) return error;
    m_widened.reserve(m_widened.size() + simdjson::SIMDJSON_PADDING);
    const auto retried = m_parser.parse(m_widened.data(), m_widened.size(), false).get(out);
    m_parsedWidened = retried == simdjson::SUCCESS;
    return retried == simdjson::SUCCESS ? retried : error;
}

bool EventDecoder::scanLayout(std::string_view line) {
    // simdjson's stage 1 has found every structural character and token start of the line it
    // just parsed (the parser exposes them "for benchmarking access"); walking those is a fraction
    // of the cost of reading every byte again. Not when it parsed a widened copy: its offsets
    // differ from the line's.
    if (m_parsedWidened) return m_scanner.scan(line, m_layout);
    const auto& stage1 = *m_parser.implementation;
    return m_scanner.scan(line, stage1.structural_indexes.get(), stage1.n_structural_indexes, m_layout);
}

void EventDecoder::describeParseError(std::string_view bytes, simdjson::error_code error, std::string& message,
                                      std::size_t& offset) const {
    message = simdjson::error_message(error);
    offset = std::string::npos;
    if (error == simdjson::DEPTH_ERROR) {
        message = "JSON nested deeper than " + std::to_string(m_parser.max_depth()) + " levels";
        return;
    }
    if (error == simdjson::MEMALLOC || error == simdjson::CAPACITY) return;
    JsonErrorLocation location = locateJsonError(bytes);
    if (!location.found) return;
    message = std::move(location.message);
    offset = location.offset;
}

bool EventDecoder::salvage(std::string_view line, Origin origin, bool padded) {
    if (!m_scanner.scan(line, m_layout)) return false;
    if (m_layout.duplicateBatchKey != BatchLayout::npos) {
        m_result.parsed = true;
        rejectDuplicateBatch(origin, m_emptyObject, line, true);
        return true;
    }
    if (m_layout.envelope && !m_layout.hasBatch) return false;

    // Each element on its own: the good ones are kept for one parse of the rebuilt document (its
    // DOM must outlive this loop), the bad ones are dead letters with their own bytes.
    m_parsedIndexes.clear();
    std::size_t goodBytes = 0;
    element ignored;
    for (std::size_t i = 0; i < m_layout.elements.size(); ++i) {
        const std::string_view bytes = m_layout.elements[i].of(line);
        const auto error = parse(bytes, padded, ignored);
        if (error == simdjson::SUCCESS) {
            m_parsedIndexes.push_back(static_cast<std::int32_t>(i));
            goodBytes += bytes.size() + 1;
            continue;
        }
        UnparseableElement& bad = m_result.unparseable.emplace_back();
        bad.origin = origin;
        bad.origin.index = static_cast<std::int32_t>(i);
        bad.raw = bytes;
        describeParseError(bytes, error, bad.message, bad.errorOffset);
    }

    // The line again with the batch holding only the good elements: the envelope's members
    // (sent_at...) still apply, and bad bytes outside the elements still refuse the whole body.
    const std::string_view before = m_layout.envelope ? line.substr(0, m_layout.batch.begin) : std::string_view{};
    const std::string_view after = m_layout.envelope ? line.substr(m_layout.batch.end) : std::string_view{};
    m_rebuilt.clear();
    m_rebuilt.reserve(before.size() + goodBytes + after.size() + 2 + simdjson::SIMDJSON_PADDING);
    m_rebuilt += before;
    m_rebuilt += '[';
    for (std::size_t k = 0; k < m_parsedIndexes.size(); ++k) {
        if (k > 0) m_rebuilt += ',';
        m_rebuilt += m_layout.elements[static_cast<std::size_t>(m_parsedIndexes[k])].of(line);
    }
    m_rebuilt += ']';
    m_rebuilt += after;
    element root;
    if (parse(m_rebuilt, true, root) != simdjson::SUCCESS) {
        m_result.unparseable.clear();
        return false;
    }
    m_result.parsed = true;
    decodeValue(root, origin, line, m_forced, &m_parsedIndexes);
    return true;
}

void EventDecoder::decodeValue(element value, Origin origin, std::string_view line, Format hint,
                               const std::vector<std::int32_t>* salvaged) {
    if (value.type() == element_type::ARRAY) {
        // A bare array of events, as posthog-js sends to /e.
        const bool haveLayout = salvaged || (scanLayout(line) && !m_layout.envelope);
        const std::size_t count =
            decodeItems(value.get_array().value_unsafe(), origin, line, hint, {}, haveLayout, salvaged);
        if (count == 0 && m_result.unparseable.empty())
            reject(origin, value, {line, {}}, "empty array: no events", {}, {});
        return;
    }
    if (value.type() != element_type::OBJECT) {
        decodeElement(value, origin, {line, {}}, hint, {});
        return;
    }
    const Members members(value.get_object().value_unsafe());
    if (members.duplicateBatch) {
        rejectDuplicateBatch(origin, value, line, false);
        return;
    }
    element batch;
    if (!members.get(Member::batch, batch)) {
        decodeObject(value, members, origin, {line, {}}, hint, {});
        return;
    }
    if (batch.type() != element_type::ARRAY) {
        reject(origin, value, {line, {}}, "\"batch\" is not an array", {}, {});
        return;
    }
    // A batch envelope: PostHog {api_key, batch, sent_at} or Segment {batch, sentAt, writeKey}.
    // The envelope's sent-at time applies to every element that has none of its own.
    Envelope envelope;
    envelope.sentAt = members.time(Member::sent_at);
    if (!envelope.sentAt) envelope.sentAt = members.time(Member::sentAt);
    // posthog-node (historicalMigration), posthog-python and capture v1 flag a whole body.
    envelope.historicalMigration = members.flag(Member::historical_migration).value_or(false);
    envelope.project = members.project();
    const bool haveLayout = salvaged || (scanLayout(line) && m_layout.hasBatch);
    const std::size_t count =
        decodeItems(batch.get_array().value_unsafe(), origin, line, hint, envelope, haveLayout, salvaged);
    if (count == 0 && m_result.unparseable.empty())
        reject(origin, value, {line, {}}, "empty batch: no events", {}, {});
}

std::size_t EventDecoder::decodeItems(simdjson::dom::array items, Origin origin, std::string_view line, Format hint,
                                      const Envelope& envelope, bool haveLayout,
                                      const std::vector<std::int32_t>* salvaged) {
    // Each element's raw is its exact bytes in the line, from the structural scan. Should the
    // scan ever disagree with the parser on the count, raw falls back to the minified element.
    const std::size_t expected = salvaged ? salvaged->size() : m_layout.elements.size();
    const bool exact = haveLayout && items.size() == expected;
    std::size_t position = 0;
    for (element item : items) {
        Origin itemOrigin = origin;
        const std::size_t index =
            salvaged && position < salvaged->size() ? static_cast<std::size_t>((*salvaged)[position]) : position;
        itemOrigin.index = static_cast<std::int32_t>(index);
        const std::string_view raw = exact ? m_layout.elements[index].of(line) : std::string_view{};
        decodeElement(item, itemOrigin, {{}, raw}, hint, envelope);
        ++position;
    }
    return position;
}

void EventDecoder::rejectDuplicateBatch(Origin origin, element value, std::string_view line, bool scanned) {
    // Two batches in one body: reading one would drop the other unseen. PostHog's capture refuses
    // duplicate fields; so does this, with the whole body kept as one dead letter.
    std::string message = "duplicate \"batch\" member";
    if (!scanned) scanned = scanLayout(line); // for the offsets
    if (scanned && m_layout.duplicateBatchKey != BatchLayout::npos) {
        message += " at byte " + std::to_string(m_layout.duplicateBatchKey) + " (the first is at byte " +
                   std::to_string(m_layout.firstBatchKey) + ")";
    }
    message += ": a body holds one batch; none of its events is decoded";
    reject(origin, value, {line, {}}, std::move(message), {}, {});
}

void EventDecoder::reject(Origin origin, element value, Raw raw, std::string message, std::string_view name,
                          std::string_view distinctId) {
    RejectedEvent& rejected = m_result.rejected.emplace_back();
    rejected.origin = origin;
    rejected.message = std::move(message);
    rejected.name = name;
    rejected.distinctId = distinctId;
    rejected.element = value;
    rejected.rawLine = raw.line;
    rejected.rawElement = raw.element;
}

std::string_view EventDecoder::idMember(const Members& members, Member key) {
    element value;
    if (!members.get(key, value)) return {};
    return idText(value);
}

std::string_view EventDecoder::idText(element value) {
    switch (value.type()) {
    case element_type::STRING: return value.get_string().value_unsafe();
    case element_type::INT64: return keep(std::to_string(value.get_int64().value_unsafe()));
    case element_type::UINT64: return keep(std::to_string(value.get_uint64().value_unsafe()));
    case element_type::DOUBLE: {
        // PostHog stringifies numeric distinct ids; keep the shortest round-trip form.
        char buffer[32];
        const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value.get_double().value_unsafe());
        return ec == std::errc() ? keep(std::string(buffer, end)) : std::string_view{};
    }
    default: return {};
    }
}

std::string_view EventDecoder::captureIdText(element value) {
    switch (value.type()) {
    case element_type::STRING: return value.get_string().value_unsafe();
    case element_type::INT64: return keep(std::to_string(value.get_int64().value_unsafe()));
    case element_type::UINT64: return keep(std::to_string(value.get_uint64().value_unsafe()));
    case element_type::DOUBLE: return keep(ryuNumberText(value.get_double().value_unsafe()));
    default: return keep(simdjson::minify(value)); // true, {"a":1}, [1,2]: serde_json's compact text
    }
}

std::string_view EventDecoder::jsText(element value) {
    if (value.is_string()) return value.get_string().value_unsafe();
    std::string text;
    appendJsString(text, value);
    return keep(std::move(text));
}

std::string_view EventDecoder::keep(std::string text) {
    return m_scratch.emplace_back(std::move(text));
}

void EventDecoder::decodeElement(element value, Origin origin, Raw raw, Format hint, const Envelope& envelope) {
    if (value.type() != element_type::OBJECT) {
        reject(origin, value, raw, "not a JSON object (an event must be an object)", {}, {});
        return;
    }
    decodeObject(value, Members(value.get_object().value_unsafe()), origin, raw, hint, envelope);
}

void EventDecoder::decodeObject(element value, const Members& members, Origin origin, Raw raw, Format hint,
                                const Envelope& envelope) {
    Format format = hint;
    if (format == Format::Auto) {
        const std::string_view type = members.string(Member::type);
        element ignored;
        // posthog-node and posthog-python send "type": "identify" / "alias" / "capture" beside
        // "distinct_id"; a Segment message never has a distinct_id.
        if (members.get(Member::distinct_id, ignored) && members.get(Member::event, ignored))
            format = Format::PostHog;
        else if (isSegmentType(type))
            format = Format::Segment;
        else if (members.get(Member::event, ignored))
            format = Format::PostHog;
        else if (members.get(Member::name, ignored))
            format = Format::Canonical;
        else if (!type.empty()) {
            reject(origin, value, raw,
                   "unknown Segment message type \"" + std::string(type) +
                       "\" (expected track, identify, page, screen, group or alias)",
                   {}, {});
            return;
        } else {
            reject(origin, value, raw,
                   "no event name: none of \"event\" (PostHog), \"type\" (Segment) or \"name\" (canonical)", {},
                   {});
            return;
        }
    }

    Event event;
    event.origin = origin;
    event.element = value;
    event.rawLine = raw.line;
    event.rawElement = raw.element;
    event.format = format;
    event.properties = m_emptyObject;

    switch (format) {
    case Format::PostHog:
        decodePostHog(members, event);
        break;
    case Format::Segment:
        decodeSegment(members, event);
        break;
    case Format::Canonical:
    case Format::Auto:
        decodeCanonical(members, event);
        break;
    }
    if (!m_rejectMessage.empty()) {
        reject(origin, value, raw, std::move(m_rejectMessage), event.name, event.distinctId);
        m_rejectMessage.clear();
        return;
    }
    if (!event.sentAt) event.sentAt = envelope.sentAt;
    // The project: the event's own token (PostHog reads properties.token too), else its envelope's.
    if (event.project.empty()) event.project = members.project();
    if (event.project.empty()) event.project = envelope.project;
    // An event's own flag (a single-event body, the canonical form) outranks its envelope's.
    event.historicalMigration = members.flag(Member::historical_migration).value_or(envelope.historicalMigration);
    m_result.events.push_back(event);
}

bool EventDecoder::takeProperties(const Members& members, Member key, Event& event) {
    element properties;
    if (!members.get(key, properties) || properties.is_null()) return true;
    if (properties.type() != element_type::OBJECT) {
        m_rejectMessage =
            key == Member::traits ? "\"traits\" is not an object" : "\"properties\" is not an object";
        return false;
    }
    event.properties = properties;
    return true;
}

void EventDecoder::decodePostHog(const Members& members, Event& event) {
    event.name = members.string(Member::event);
    if (event.name.empty()) {
        m_rejectMessage = "no event name: \"event\" is missing, empty or not a string";
        return;
    }
    if (!takeProperties(members, Member::properties, event)) return;
    foldPersonProperties(members, event);
    const object properties = event.properties.get_object().value_unsafe();

    // The properties this decoder reads, found in one pass: simdjson's at_key is a linear scan,
    // and SDK events carry dozens of properties, most of them absent from this list.
    element propDistinctId, anonDistinctId, alias, time, isServer, lib, token;
    bool haveDistinctId = false, haveAnon = false, haveAlias = false, haveTime = false, haveIsServer = false,
         haveLib = false, haveToken = false;
    for (const auto field : properties) {
        const std::string_view key = field.key;
        const auto take = [&](bool& have, element& slot) {
            if (!have) have = true, slot = field.value; // the first of duplicate keys wins, as with at_key
        };
        switch (key.size()) {
        case 4:
            if (sameBytes(key, "$lib")) take(haveLib, lib);
            break;
        case 5:
            if (sameBytes(key, "$time"))
                take(haveTime, time);
            else if (sameBytes(key, "alias"))
                take(haveAlias, alias);
            else if (sameBytes(key, "token"))
                take(haveToken, token);
            break;
        case 6:
            if (sameBytes(key, "$token")) take(haveToken, token);
            break;
        case 10:
            if (sameBytes(key, "$is_server")) take(haveIsServer, isServer);
            break;
        case 11:
            if (sameBytes(key, "distinct_id")) take(haveDistinctId, propDistinctId);
            break;
        case 17:
            if (sameBytes(key, "$anon_distinct_id")) take(haveAnon, anonDistinctId);
            break;
        default:
            break;
        }
    }

    // The first of these that is present wins, even when empty: an empty id is an identity
    // problem to report later, not a reason to drop the event.
    // As PostHog's capture reads it: the top-level distinct_id, else properties.distinct_id (null
    // is absent), a non-string value as its JSON text; then the legacy $distinct_id.
    element rootId;
    if (members.get(Member::distinct_id, rootId) && !rootId.is_null()) event.distinctId = captureIdText(rootId);
    if (event.distinctId.data() == nullptr && haveDistinctId && !propDistinctId.is_null())
        event.distinctId = captureIdText(propDistinctId);
    if (event.distinctId.data() == nullptr) event.distinctId = idMember(members, Member::dollar_distinct_id);
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: none of \"distinct_id\", \"properties.distinct_id\" or "
                          "\"$distinct_id\" is present and not null";
        return;
    }
    event.id = members.string(Member::uuid);
    if (!event.id.empty()) event.idSource = IdSource::PostHogUuid;
    // person-merge-service.ts: `'$anon_distinct_id' in properties` then String(value) (null is
    // "null"); an alias only when truthy, then String(alias).
    if (haveAnon) event.anonymousId = jsText(anonDistinctId);
    if (event.name == "$identify") event.userId = event.distinctId;
    if (haveAlias && (event.name == "$create_alias" || event.name == "$merge_dangerously") && jsTruthy(alias))
        event.aliasId = jsText(alias);
    if (haveToken && token.is_string()) event.project = token.get_string().value_unsafe();
    if (event.project.empty()) event.project = members.project();

    event.timestamp = members.time(Member::timestamp);
    if (!event.timestamp && haveTime) event.timestamp = timeOf(time);
    event.sentAt = members.time(Member::sent_at);

    if (haveIsServer && isServer.is_bool())
        event.stream = isServer.get_bool().value_unsafe() ? Stream::Server : Stream::Client;
    else if (haveLib && lib.is_string())
        event.stream = streamOfLibrary(lib.get_string().value_unsafe());
}

void EventDecoder::foldPersonProperties(const Members& members, Event& event) {
    // PostHog's ingestion (nodejs/src/utils/event.ts, sanitizeEvent) merges a top-level $set and
    // $set_once into the properties' own: {...properties.$set, ...event.$set}, the top-level value
    // winning per key. posthog-js sends them top-level. A top-level $unset is not folded: PostHog
    // reads $unset only from the properties.
    element set, setOnce;
    const bool haveSet = members.get(Member::dollar_set, set) && set.is_object();
    const bool haveSetOnce = members.get(Member::dollar_set_once, setOnce) && setOnce.is_object();
    if (!haveSet && !haveSetOnce) return;
    const object properties = event.properties.get_object().value_unsafe();
    std::vector<Overlay> folded;
    const auto fold = [&](std::string_view key, element topLevel) {
        element own;
        object ownObject;
        const bool ownIsObject = properties.at_key(key).get(own) == simdjson::SUCCESS &&
                                 own.get_object().get(ownObject) == simdjson::SUCCESS;
        folded.push_back({key, spreadInto(ownIsObject ? &ownObject : nullptr,
                                          overlaysOf(topLevel.get_object().value_unsafe()))});
    };
    if (haveSet) fold("$set", set);
    if (haveSetOnce) fold("$set_once", setOnce);
    event.properties = rebuilt(spreadInto(&properties, folded));
}

void EventDecoder::foldSegmentFields(const Members& members, std::string_view type, Event& event) {
    // Fields a Segment page, screen or group carries beside its properties, put where the
    // canonical properties show them (validation, capture, export):
    //  - page / screen `name` and `category` -> properties.name / .category, the top-level value
    //    winning, as analytics.js itself does for pages (addPageContext, EventFactory.page);
    //  - group `groupId` -> properties.$group_key, PostHog's key for a group (posthog-node's
    //    $groupidentify has it), the traits being the group's properties.
    const object properties = event.properties.get_object().value_unsafe();
    std::vector<Overlay> overlays;
    const auto overlay = [&](std::string_view key, Member member, bool numbersToo) {
        element value;
        if (!members.get(member, value)) return;
        const bool usable = value.is_string() || (numbersToo && value.is_number());
        if (!usable) return;
        element own;
        if (properties.at_key(key).get(own) == simdjson::SUCCESS && own.type() == value.type() &&
            simdjson::minify(own) == simdjson::minify(value))
            return; // already there (analytics.js pages): nothing to rebuild
        overlays.push_back({key, simdjson::minify(value)});
    };
    if (type == "page" || type == "screen") {
        overlay("name", Member::name, false);
        overlay("category", Member::category, false);
    } else if (type == "group") {
        overlay("$group_key", Member::groupId, true);
    }
    if (!overlays.empty()) event.properties = rebuilt(spreadInto(&properties, overlays));
}

element EventDecoder::rebuilt(const std::string& json) {
    // Each rebuilt object needs a document of its own that lives until the next decode.
    if (m_rebuiltUsed == m_rebuiltParsers.size())
        m_rebuiltParsers.push_back(std::make_unique<simdjson::dom::parser>());
    element value;
    if (m_rebuiltParsers[m_rebuiltUsed]->parse(json).get(value) != simdjson::SUCCESS) return m_emptyObject;
    ++m_rebuiltUsed;
    return value;
}

void EventDecoder::decodeSegment(const Members& members, Event& event) {
    const std::string_view type = members.string(Member::type);
    Member propertiesKey = Member::properties;
    if (type == "track") {
        event.name = members.string(Member::event);
        if (event.name.empty()) {
            m_rejectMessage = "no event name: Segment track message without \"event\"";
            return;
        }
    } else if (type == "page") {
        event.name = "$pageview";
    } else if (type == "screen") {
        event.name = "$screen";
    } else if (type == "identify") {
        event.name = "$identify";
        propertiesKey = Member::traits;
    } else if (type == "group") {
        event.name = "$groupidentify";
        propertiesKey = Member::traits;
    } else if (type == "alias") {
        event.name = "$create_alias";
    } else {
        m_rejectMessage = type.empty() ? "no event name: Segment message without \"type\""
                                       : "unknown Segment message type \"" + std::string(type) + "\"";
        return;
    }
    if (!takeProperties(members, propertiesKey, event)) return;
    foldSegmentFields(members, type, event);

    event.userId = idMember(members, Member::userId);
    event.anonymousId = idMember(members, Member::anonymousId);
    if (type == "alias") event.aliasId = idMember(members, Member::previousId);
    event.distinctId = !event.userId.empty() || event.anonymousId.data() == nullptr ? event.userId
                                                                                   : event.anonymousId;
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: Segment message with neither \"userId\" nor \"anonymousId\"";
        return;
    }
    event.id = members.string(Member::messageId);
    if (!event.id.empty()) event.idSource = IdSource::SegmentMessageId;
    event.timestamp = members.time(Member::timestamp);
    if (!event.timestamp) event.timestamp = members.time(Member::originalTimestamp);
    event.sentAt = members.time(Member::sentAt);
    event.receivedAt = members.time(Member::receivedAt);

    // context.library.name, read as at_pointer("/context/library/name") reads it (objects only, the
    // first of duplicate keys), without parsing the pointer for every message.
    element context, library, name;
    if (members.get(Member::context, context) && objectMember(context, "library", library) &&
        objectMember(library, "name", name) && name.is_string())
        event.stream = streamOfLibrary(name.get_string().value_unsafe());
}

void EventDecoder::decodeCanonical(const Members& members, Event& event) {
    event.name = members.string(Member::name);
    if (event.name.empty()) {
        m_rejectMessage = "no event name: canonical event without \"name\"";
        return;
    }
    if (!takeProperties(members, Member::properties, event)) return;
    event.distinctId = idMember(members, Member::distinct_id);
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: canonical event without \"distinct_id\"";
        return;
    }
    event.id = members.string(Member::id);
    if (!event.id.empty()) {
        const std::string_view source = members.string(Member::id_source);
        event.idSource = source == "idempotency_key"      ? IdSource::IdempotencyKey
                         : source == "posthog_uuid"       ? IdSource::PostHogUuid
                         : source == "segment_message_id" ? IdSource::SegmentMessageId
                                                          : IdSource::Canonical;
    }
    event.anonymousId = idMember(members, Member::anonymous_id);
    event.userId = idMember(members, Member::user_id);
    event.aliasId = idMember(members, Member::alias_id);
    event.stream = parseStream(members.string(Member::stream)).value_or(Stream::Unknown);
    event.timestamp = members.time(Member::timestamp);
    event.sentAt = members.time(Member::sent_at);
    event.receivedAt = members.time(Member::received_at);
    // historical_migration is read for every format in decodeObject.
}

} // namespace pipescope
