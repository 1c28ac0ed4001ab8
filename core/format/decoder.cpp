#include "format/decoder.h"

#include <array>
#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

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

// Returns the member `key` of `obj`, or a null-typed element_type check fails when absent.
inline bool member(object obj, std::string_view key, element& out) {
    return obj.at_key(key).get(out) == simdjson::SUCCESS;
}

inline std::string_view stringMember(object obj, std::string_view key) {
    std::string_view value;
    if (obj.at_key(key).get_string().get(value) == simdjson::SUCCESS) return value;
    return {};
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

Millis timeMember(object obj, std::string_view key) {
    element value;
    return member(obj, key, value) ? timeOf(value) : std::nullopt;
}

bool isSegmentType(std::string_view type) {
    return type == "track" || type == "identify" || type == "page" || type == "screen" || type == "group" ||
           type == "alias";
}

std::string parserMessage(std::string what) {
    // nlohmann prefixes "[json.exception.parse_error.101] parse error at ..."; keep the human part.
    const auto bracket = what.find("] ");
    if (bracket != std::string::npos) what.erase(0, bracket + 2);
    return what;
}

} // namespace

Stream streamOfLibrary(std::string_view library) {
    for (auto name : kClientLibraries)
        if (name == library) return Stream::Client;
    for (auto name : kServerLibraries)
        if (name == library) return Stream::Server;
    return Stream::Unknown;
}

std::string RejectedEvent::rawBytes() const {
    if (!rawLine.empty()) return std::string(rawLine);
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
    m_scratch.clear();

    element root;
    const auto error = m_parser.parse(line.data(), line.size(), !padded).get(root);
    if (error != simdjson::SUCCESS) {
        m_result.parseError = simdjson::error_message(error);
        if (error == simdjson::DEPTH_ERROR) {
            m_result.parseError = "JSON nested deeper than " + std::to_string(m_parser.max_depth()) + " levels";
        } else if (error != simdjson::MEMALLOC && error != simdjson::CAPACITY) {
            // simdjson says what but not where; re-parse this (rare) line with nlohmann for the
            // message and byte offset.
            try {
                const auto accepted = nlohmann::json::parse(line);
                (void)accepted;
            } catch (const nlohmann::json::parse_error& e) {
                m_result.parseError = parserMessage(e.what());
                m_result.errorOffset = e.byte > 0 ? e.byte - 1 : 0;
            } catch (const std::exception&) {
            }
        }
        return m_result;
    }
    m_result.parsed = true;
    decodeValue(root, origin, line, m_forced);
    return m_result;
}

void EventDecoder::decodeValue(element value, Origin origin, std::string_view rawLine, Format hint) {
    if (value.type() == element_type::ARRAY) {
        // A bare array of events, as posthog-js sends to /e.
        std::int32_t index = 0;
        const simdjson::dom::array items = value.get_array().value_unsafe();
        for (element item : items) {
            Origin itemOrigin = origin;
            itemOrigin.index = index++;
            decodeElement(item, itemOrigin, {}, hint, {});
        }
        if (index == 0) reject(origin, value, rawLine, "empty array: no events", {}, {});
        return;
    }
    if (value.type() != element_type::OBJECT) {
        decodeElement(value, origin, rawLine, hint, {});
        return;
    }
    const object obj = value.get_object().value_unsafe();
    element batch;
    if (!member(obj, "batch", batch)) {
        decodeElement(value, origin, rawLine, hint, {});
        return;
    }
    if (batch.type() != element_type::ARRAY) {
        reject(origin, value, rawLine, "\"batch\" is not an array", {}, {});
        return;
    }
    // A batch envelope: PostHog {api_key, batch, sent_at} or Segment {batch, sentAt, writeKey}.
    // The envelope's sent-at time applies to every element that has none of its own.
    Envelope envelope;
    envelope.sentAt = timeMember(obj, "sent_at");
    if (!envelope.sentAt) envelope.sentAt = timeMember(obj, "sentAt");
    std::int32_t index = 0;
    const simdjson::dom::array items = batch.get_array().value_unsafe();
    for (element item : items) {
        Origin itemOrigin = origin;
        itemOrigin.index = index++;
        decodeElement(item, itemOrigin, {}, hint, envelope);
    }
    if (index == 0) reject(origin, value, rawLine, "empty batch: no events", {}, {});
}

void EventDecoder::reject(Origin origin, element value, std::string_view rawLine, std::string message,
                          std::string_view name, std::string_view distinctId) {
    RejectedEvent& rejected = m_result.rejected.emplace_back();
    rejected.origin = origin;
    rejected.message = std::move(message);
    rejected.name = name;
    rejected.distinctId = distinctId;
    rejected.element = value;
    rejected.rawLine = rawLine;
}

std::string_view EventDecoder::idMember(object obj, std::string_view key) {
    element value;
    if (!member(obj, key, value)) return {};
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

std::string_view EventDecoder::keep(std::string text) {
    return m_scratch.emplace_back(std::move(text));
}

void EventDecoder::decodeElement(element value, Origin origin, std::string_view rawLine, Format hint,
                                 const Envelope& envelope) {
    if (value.type() != element_type::OBJECT) {
        reject(origin, value, rawLine, "not a JSON object (an event must be an object)", {}, {});
        return;
    }
    const object obj = value.get_object().value_unsafe();
    Format format = hint;
    if (format == Format::Auto) {
        const std::string_view type = stringMember(obj, "type");
        element ignored;
        // posthog-node and posthog-python send "type": "identify" / "alias" / "capture" beside
        // "distinct_id"; a Segment message never has a distinct_id.
        if (member(obj, "distinct_id", ignored) && member(obj, "event", ignored))
            format = Format::PostHog;
        else if (isSegmentType(type))
            format = Format::Segment;
        else if (member(obj, "event", ignored))
            format = Format::PostHog;
        else if (member(obj, "name", ignored))
            format = Format::Canonical;
        else if (!type.empty()) {
            reject(origin, value, rawLine,
                   "unknown Segment message type \"" + std::string(type) +
                       "\" (expected track, identify, page, screen, group or alias)",
                   {}, {});
            return;
        } else {
            reject(origin, value, rawLine,
                   "no event name: none of \"event\" (PostHog), \"type\" (Segment) or \"name\" (canonical)", {},
                   {});
            return;
        }
    }

    Event event;
    event.origin = origin;
    event.element = value;
    event.rawLine = rawLine;
    event.format = format;
    event.properties = m_emptyObject;

    switch (format) {
    case Format::PostHog: decodePostHog(obj, event); break;
    case Format::Segment: decodeSegment(obj, event); break;
    case Format::Canonical:
    case Format::Auto: decodeCanonical(obj, event); break;
    }
    if (!m_rejectMessage.empty()) {
        reject(origin, value, rawLine, std::move(m_rejectMessage), event.name, event.distinctId);
        m_rejectMessage.clear();
        return;
    }
    if (!event.sentAt) event.sentAt = envelope.sentAt;
    m_result.events.push_back(event);
}

bool EventDecoder::takeProperties(object obj, std::string_view key, Event& event) {
    element properties;
    if (!member(obj, key, properties) || properties.is_null()) return true;
    if (properties.type() != element_type::OBJECT) {
        m_rejectMessage = "\"" + std::string(key) + "\" is not an object";
        return false;
    }
    event.properties = properties;
    return true;
}

void EventDecoder::decodePostHog(object obj, Event& event) {
    event.name = stringMember(obj, "event");
    if (event.name.empty()) {
        m_rejectMessage = "no event name: \"event\" is missing, empty or not a string";
        return;
    }
    if (!takeProperties(obj, "properties", event)) return;
    const object properties = event.properties.get_object().value_unsafe();

    // The properties this decoder reads, found in one pass: simdjson's at_key is a linear scan,
    // and SDK events carry dozens of properties, most of them absent from this list.
    element propDistinctId, anonDistinctId, alias, time, isServer, lib;
    bool haveDistinctId = false, haveAnon = false, haveAlias = false, haveTime = false, haveIsServer = false,
         haveLib = false;
    for (const auto field : properties) {
        const std::string_view key = field.key;
        const auto take = [&](bool& have, element& slot) {
            if (!have) have = true, slot = field.value; // the first of duplicate keys wins, as with at_key
        };
        if (key.empty()) continue;
        if (key[0] != '$') {
            if (key == "distinct_id") take(haveDistinctId, propDistinctId);
            else if (key == "alias") take(haveAlias, alias);
        } else if (key == "$lib") take(haveLib, lib);
        else if (key == "$is_server") take(haveIsServer, isServer);
        else if (key == "$anon_distinct_id") take(haveAnon, anonDistinctId);
        else if (key == "$time") take(haveTime, time);
    }

    // The first of these that is present wins, even when empty: an empty id is an identity
    // problem to report later, not a reason to drop the event.
    event.distinctId = idMember(obj, "distinct_id");
    if (event.distinctId.data() == nullptr && haveDistinctId) event.distinctId = idText(propDistinctId);
    if (event.distinctId.data() == nullptr) event.distinctId = idMember(obj, "$distinct_id");
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: none of \"distinct_id\", \"properties.distinct_id\" or "
                          "\"$distinct_id\" is a string or number";
        return;
    }
    event.id = stringMember(obj, "uuid");
    if (!event.id.empty()) event.idSource = IdSource::PostHogUuid;
    if (haveAnon) event.anonymousId = idText(anonDistinctId);
    if (event.name == "$identify") event.userId = event.distinctId;
    if (haveAlias && (event.name == "$create_alias" || event.name == "$merge_dangerously"))
        event.aliasId = idText(alias);

    event.timestamp = timeMember(obj, "timestamp");
    if (!event.timestamp && haveTime) event.timestamp = timeOf(time);
    event.sentAt = timeMember(obj, "sent_at");

    if (haveIsServer && isServer.is_bool())
        event.stream = isServer.get_bool().value_unsafe() ? Stream::Server : Stream::Client;
    else if (haveLib && lib.is_string())
        event.stream = streamOfLibrary(lib.get_string().value_unsafe());
}

void EventDecoder::decodeSegment(object obj, Event& event) {
    const std::string_view type = stringMember(obj, "type");
    std::string_view propertiesKey = "properties";
    if (type == "track") {
        event.name = stringMember(obj, "event");
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
        propertiesKey = "traits";
    } else if (type == "group") {
        event.name = "$groupidentify";
        propertiesKey = "traits";
    } else if (type == "alias") {
        event.name = "$create_alias";
    } else {
        m_rejectMessage = type.empty() ? "no event name: Segment message without \"type\""
                                       : "unknown Segment message type \"" + std::string(type) + "\"";
        return;
    }
    if (!takeProperties(obj, propertiesKey, event)) return;

    event.userId = idMember(obj, "userId");
    event.anonymousId = idMember(obj, "anonymousId");
    if (type == "alias") event.aliasId = idMember(obj, "previousId");
    event.distinctId = !event.userId.empty() || event.anonymousId.data() == nullptr ? event.userId
                                                                                   : event.anonymousId;
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: Segment message with neither \"userId\" nor \"anonymousId\"";
        return;
    }
    event.id = stringMember(obj, "messageId");
    if (!event.id.empty()) event.idSource = IdSource::SegmentMessageId;
    event.timestamp = timeMember(obj, "timestamp");
    if (!event.timestamp) event.timestamp = timeMember(obj, "originalTimestamp");
    event.sentAt = timeMember(obj, "sentAt");
    event.receivedAt = timeMember(obj, "receivedAt");

    element library;
    if (obj.at_pointer("/context/library/name").get(library) == simdjson::SUCCESS && library.is_string())
        event.stream = streamOfLibrary(library.get_string().value_unsafe());
}

void EventDecoder::decodeCanonical(object obj, Event& event) {
    event.name = stringMember(obj, "name");
    if (event.name.empty()) {
        m_rejectMessage = "no event name: canonical event without \"name\"";
        return;
    }
    if (!takeProperties(obj, "properties", event)) return;
    event.distinctId = idMember(obj, "distinct_id");
    if (event.distinctId.data() == nullptr) {
        m_rejectMessage = "no distinct id: canonical event without \"distinct_id\"";
        return;
    }
    event.id = stringMember(obj, "id");
    if (!event.id.empty()) {
        const std::string_view source = stringMember(obj, "id_source");
        event.idSource = source == "idempotency_key"      ? IdSource::IdempotencyKey
                         : source == "posthog_uuid"       ? IdSource::PostHogUuid
                         : source == "segment_message_id" ? IdSource::SegmentMessageId
                                                          : IdSource::Canonical;
    }
    event.anonymousId = idMember(obj, "anonymous_id");
    event.userId = idMember(obj, "user_id");
    event.aliasId = idMember(obj, "alias_id");
    event.stream = parseStream(stringMember(obj, "stream")).value_or(Stream::Unknown);
    event.timestamp = timeMember(obj, "timestamp");
    event.sentAt = timeMember(obj, "sent_at");
    event.receivedAt = timeMember(obj, "received_at");
}

} // namespace pipescope
