#include "route/encoders.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <xxhash.h>

namespace pipescope {

namespace {

// Invalid UTF-8 in an id must not make a whole batch unsendable; it is replaced, not thrown on.
void appendJsonString(std::string& out, std::string_view text) {
    out += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void appendKey(std::string& out, std::string_view key, bool& first) {
    if (!first) out += ',';
    first = false;
    appendJsonString(out, key);
    out += ':';
}

void appendStringField(std::string& out, std::string_view key, std::string_view value, bool& first) {
    appendKey(out, key, first);
    appendJsonString(out, value);
}

std::string_view propertiesText(const OutgoingEvent& event) {
    return event.properties.empty() ? std::string_view("{}") : std::string_view(event.properties);
}

nlohmann::ordered_json parseObject(std::string_view text) {
    auto parsed = nlohmann::ordered_json::parse(text, nullptr, false);
    return parsed.is_object() ? parsed : nlohmann::ordered_json::object();
}

// Adds `"key": value` at the end of an object's text, leaving every other byte as it was.
std::string withAddedProperty(std::string_view objectText, std::string_view key, std::string_view value,
                              bool objectIsEmpty) {
    std::string text(objectText);
    while (!text.empty() && text.back() != '}')
        text.pop_back();
    if (text.empty()) text = "{}";
    text.pop_back();
    if (!objectIsEmpty) text += ',';
    appendJsonString(text, key);
    text += ':';
    appendJsonString(text, value);
    text += '}';
    return text;
}

// PostHog reads an identify's anonymous id and an alias's new id from the properties; an event
// that came in as Segment carries them in canonical fields only.
std::string postHogProperties(const OutgoingEvent& event) {
    const std::string_view text = propertiesText(event);
    std::string_view key, value;
    if (event.name == "$identify" && !event.anonymousId.empty() && event.anonymousId != event.distinctId) {
        key = "$anon_distinct_id";
        value = event.anonymousId;
    } else if (event.name == "$create_alias" && !event.aliasId.empty()) {
        key = "alias";
        value = event.aliasId;
    } else {
        return std::string(text);
    }
    const auto properties = parseObject(text);
    if (properties.contains(key)) return std::string(text);
    return withAddedProperty(text, key, value, properties.empty());
}

std::string segmentGroupId(const OutgoingEvent& event) {
    const auto properties = parseObject(propertiesText(event));
    if (const auto key = properties.find("$group_key"); key != properties.end()) {
        if (key->is_string()) return key->get<std::string>();
        if (key->is_number()) return key->dump();
    }
    if (event.format == "segment") {
        const auto raw = parseObject(event.raw);
        if (const auto id = raw.find("groupId"); id != raw.end() && id->is_string())
            return id->get<std::string>();
    }
    return {};
}

bool isHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool isUuid(std::string_view text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : !isHex(text[i])) return false;
    }
    return true;
}

} // namespace

bool isJsonObjectText(std::string_view text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    return first != std::string_view::npos && text[first] == '{' && nlohmann::json::accept(text);
}

std::string stableEventUuid(const OutgoingEvent& event) {
    if (isUuid(event.eventId)) return event.eventId;
    const std::string seed = event.eventId.empty() ? "pipescope-seq:" + std::to_string(event.seq)
                                                   : "pipescope-id:" + event.eventId;
    const XXH128_hash_t hash = XXH3_128bits(seed.data(), seed.size());
    std::uint64_t high = hash.high64, low = hash.low64;
    // RFC 9562 version 8 (custom) and the RFC variant bits, so strict validators accept it.
    high = (high & ~0xF000ULL) | 0x8000ULL;
    low = (low & ~(0xC000ULL << 48)) | (0x8000ULL << 48);
    char text[37];
    std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(high >> 32),
                  static_cast<unsigned>((high >> 16) & 0xFFFF), static_cast<unsigned>(high & 0xFFFF),
                  static_cast<unsigned>(low >> 48), static_cast<unsigned long long>(low & 0xFFFFFFFFFFFFULL));
    return text;
}

std::string_view segmentTypeOf(std::string_view eventName) {
    if (eventName == "$pageview") return "page";
    if (eventName == "$screen") return "screen";
    if (eventName == "$identify") return "identify";
    if (eventName == "$create_alias") return "alias";
    if (eventName == "$groupidentify") return "group";
    return "track";
}

std::string encodePostHogBatch(std::span<const OutgoingEvent> events, std::string_view apiKey,
                               std::int64_t sentAtMillis) {
    std::string out = "{\"api_key\":";
    appendJsonString(out, apiKey);
    out += ",\"batch\":[";
    for (std::size_t i = 0; i < events.size(); ++i) {
        const OutgoingEvent& event = events[i];
        if (i) out += ',';
        bool first = true;
        out += '{';
        appendStringField(out, "event", event.name, first);
        appendStringField(out, "distinct_id", event.distinctId, first);
        appendKey(out, "properties", first);
        out += postHogProperties(event);
        if (event.timestamp) appendStringField(out, "timestamp", formatTimestamp(*event.timestamp), first);
        appendStringField(out, "uuid", stableEventUuid(event), first);
        out += '}';
    }
    out += "],\"sent_at\":";
    appendJsonString(out, formatTimestamp(sentAtMillis));
    out += '}';
    return out;
}

std::string encodeSegmentBatch(std::span<const OutgoingEvent> events, std::int64_t sentAtMillis) {
    std::string out = "{\"batch\":[";
    for (std::size_t i = 0; i < events.size(); ++i) {
        const OutgoingEvent& event = events[i];
        const std::string_view type = segmentTypeOf(event.name);
        if (i) out += ',';
        bool first = true;
        out += '{';
        appendStringField(out, "type", type, first);
        if (type == "track") appendStringField(out, "event", event.name, first);
        // A distinct id that is not the anonymous id is the user's id (PostHog events carry no
        // separate user id outside $identify).
        const std::string_view userId = !event.userId.empty() ? std::string_view(event.userId)
                                        : event.distinctId != event.anonymousId
                                            ? std::string_view(event.distinctId)
                                            : std::string_view();
        if (!userId.empty() || event.anonymousId.empty()) appendStringField(out, "userId", userId, first);
        if (!event.anonymousId.empty()) appendStringField(out, "anonymousId", event.anonymousId, first);
        appendKey(out, type == "identify" || type == "group" ? "traits" : "properties", first);
        out += propertiesText(event);
        if (event.timestamp) appendStringField(out, "timestamp", formatTimestamp(*event.timestamp), first);
        appendStringField(out, "messageId", event.eventId.empty() ? stableEventUuid(event) : event.eventId,
                          first);
        if (type == "alias") appendStringField(out, "previousId", event.aliasId, first);
        if (type == "group") {
            if (const std::string groupId = segmentGroupId(event); !groupId.empty())
                appendStringField(out, "groupId", groupId, first);
        }
        out += '}';
    }
    out += "],\"sentAt\":";
    appendJsonString(out, formatTimestamp(sentAtMillis));
    out += '}';
    return out;
}

std::string encodeCanonicalEvent(const OutgoingEvent& event) {
    std::string out = "{";
    bool first = true;
    appendKey(out, "seq", first);
    out += std::to_string(event.seq);
    if (!event.eventId.empty()) {
        appendStringField(out, "id", event.eventId, first);
        if (!event.idSource.empty()) appendStringField(out, "id_source", event.idSource, first);
    }
    appendStringField(out, "name", event.name, first);
    appendStringField(out, "distinct_id", event.distinctId, first);
    if (!event.anonymousId.empty()) appendStringField(out, "anonymous_id", event.anonymousId, first);
    if (!event.userId.empty()) appendStringField(out, "user_id", event.userId, first);
    if (!event.aliasId.empty()) appendStringField(out, "alias_id", event.aliasId, first);
    appendStringField(out, "stream", event.stream.empty() ? "unknown" : event.stream, first);
    if (!event.format.empty()) appendStringField(out, "format", event.format, first);
    if (event.timestamp) appendStringField(out, "timestamp", formatTimestamp(*event.timestamp), first);
    appendKey(out, "properties", first);
    out += propertiesText(event);
    out += '}';
    return out;
}

std::string encodeWebhookBody(std::span<const OutgoingEvent> events) {
    std::string out = "{\"events\":[";
    for (std::size_t i = 0; i < events.size(); ++i) {
        if (i) out += ',';
        out += encodeCanonicalEvent(events[i]);
    }
    out += "]}";
    return out;
}

EventFilter::EventFilter(std::vector<std::string> names, std::vector<Stream> streams)
    : m_streams(std::move(streams)) {
    for (std::string& name : names) {
        if (!name.empty() && name.back() == '*') {
            name.pop_back();
            m_namePrefixes.push_back(std::move(name));
        } else {
            m_exactNames.push_back(std::move(name));
        }
    }
}

bool EventFilter::accepts(const OutgoingEvent& event) const {
    if (!m_streams.empty()) {
        const Stream stream = parseStream(event.stream).value_or(Stream::Unknown);
        if (std::find(m_streams.begin(), m_streams.end(), stream) == m_streams.end()) return false;
    }
    if (m_exactNames.empty() && m_namePrefixes.empty()) return true;
    if (std::find(m_exactNames.begin(), m_exactNames.end(), event.name) != m_exactNames.end()) return true;
    return std::any_of(m_namePrefixes.begin(), m_namePrefixes.end(),
                       [&](const std::string& prefix) { return event.name.starts_with(prefix); });
}

} // namespace pipescope
