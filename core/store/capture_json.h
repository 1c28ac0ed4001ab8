#pragma once
// The JSON shape of a capture's records, one object per record: what `pipescope-cli export`
// writes, and what the GUI's JSON views and the query API show. Field by field:
//   event      {seq, name, distinct_id, stream, format, verdict, origin, properties,
//               [id, id_source], [timestamp], [failures: invalid only], [historical_migration]}
//   dead letter {seq, reason, detail, origin, raw, [event], [distinct_id], [event_seq]}
//   duplicate  {seq, key, key_source, seen, conflicting, differences, [name, distinct_id, origin],
//               [first_seen, gap_ms], first_seq (null: seen before the capture began), [first_origin]}
//   delivery   {destination, events, attempt, started, duration_ms, outcome, [http_status], [error]}
//   origin     {source, line, [index]}
// Times are ISO 8601 UTC; JSON the engine stored as text (properties, detail) is embedded as JSON.

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "store/capture_store.h"

namespace pipescope {

nlohmann::json originJson(const std::string& source, std::uint64_t line, std::int32_t index);
// JSON text stored by the engine, embedded as JSON (or as a string if it somehow is not).
nlohmann::json embeddedJson(const std::string& text);

void to_json(nlohmann::json& out, const StoredEvent& event);
void to_json(nlohmann::json& out, const DlqEntry& entry);
void to_json(nlohmann::json& out, const DeliveryRecord& delivery);
// A duplicate with the event it is (`self`) and its first occurrence (`first`), when the capture
// holds them (CaptureReader::event).
nlohmann::json duplicateJson(const DuplicateRecord& duplicate, const std::optional<StoredEvent>& self,
                             const std::optional<StoredEvent>& first);

// One line of NDJSON: compact, and raw bytes that are not UTF-8 replaced rather than refused.
std::string toJsonLine(const nlohmann::json& value);

} // namespace pipescope
