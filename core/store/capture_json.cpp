#include "store/capture_json.h"

#include "event/event.h"

namespace pipescope {

nlohmann::json originJson(const std::string& source, std::uint64_t line, std::int32_t index) {
    nlohmann::json origin = {{"source", source}, {"line", line}};
    if (index >= 0) origin["index"] = index;
    return origin;
}

nlohmann::json embeddedJson(const std::string& text) {
    auto value = nlohmann::json::parse(text, nullptr, false);
    return value.is_discarded() ? nlohmann::json(text) : value;
}

void to_json(nlohmann::json& out, const StoredEvent& event) {
    out = {{"seq", event.seq},
           {"name", event.name},
           {"distinct_id", event.distinctId},
           {"stream", event.stream},
           {"format", event.format},
           {"verdict", toString(event.verdict)},
           {"origin", originJson(event.originSource, event.originLine, event.originIndex)},
           {"properties", embeddedJson(event.properties)}};
    if (!event.eventId.empty()) out["id"] = event.eventId, out["id_source"] = event.idSource;
    if (event.timestamp) out["timestamp"] = formatTimestamp(*event.timestamp);
    if (event.verdict == Verdict::Invalid) out["failures"] = embeddedJson(event.failures);
    if (event.historicalMigration) out["historical_migration"] = true;
}

void to_json(nlohmann::json& out, const DlqEntry& entry) {
    out = {{"seq", entry.seq},
           {"reason", entry.reason},
           {"detail", embeddedJson(entry.detail)},
           {"origin", originJson(entry.originSource, entry.originLine, entry.originIndex)},
           {"raw", entry.raw}};
    if (!entry.eventName.empty()) out["event"] = entry.eventName;
    if (!entry.distinctId.empty()) out["distinct_id"] = entry.distinctId;
    if (entry.eventSeq) out["event_seq"] = *entry.eventSeq;
}

void to_json(nlohmann::json& out, const DeliveryRecord& d) {
    out = {{"destination", d.destination}, {"events", embeddedJson(d.seqs)},
           {"attempt", d.attempt},         {"started", formatTimestamp(d.startedAt)},
           {"duration_ms", d.durationMillis}, {"outcome", d.outcome}};
    if (d.httpStatus) out["http_status"] = d.httpStatus;
    if (!d.error.empty()) out["error"] = d.error;
}

nlohmann::json duplicateJson(const DuplicateRecord& d, const std::optional<StoredEvent>& self,
                             const std::optional<StoredEvent>& first) {
    nlohmann::json record = {{"seq", d.eventSeq},
                             {"key", d.key},
                             {"key_source", d.keySource},
                             {"seen", formatTimestamp(d.seen)},
                             {"conflicting", d.conflicting},
                             {"differences", embeddedJson(d.differences)}};
    if (self) {
        record["name"] = self->name;
        record["distinct_id"] = self->distinctId;
        record["origin"] = originJson(self->originSource, self->originLine, self->originIndex);
    }
    if (d.firstSeen) {
        record["first_seen"] = formatTimestamp(*d.firstSeen);
        record["gap_ms"] = d.seen - *d.firstSeen;
    }
    if (d.firstSeq) {
        record["first_seq"] = *d.firstSeq;
        if (first) record["first_origin"] = originJson(first->originSource, first->originLine, first->originIndex);
    } else {
        record["first_seq"] = nullptr; // seen before this capture began (restored window)
    }
    return record;
}

std::string toJsonLine(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace pipescope
