#pragma once
// What the inspector asks of a capture about one event: its duplicate record, its delivery
// attempts, its dead letters. Kept in one place so the window does not care how the store
// answers (the store's indexed lookups; destination dead letters by destination).

#include <optional>
#include <vector>

#include "store/capture_store.h"

namespace pipescope {

std::optional<DuplicateRecord> duplicateOfEvent(const CaptureReader& reader, std::int64_t seq);
std::vector<DeliveryRecord> deliveriesOfEvent(const CaptureReader& reader, std::int64_t seq);
std::vector<DlqEntry> deadLettersOfEvent(const CaptureReader& reader, std::int64_t seq);
// Destination dead letters of this event: (destination, reason).
std::vector<std::pair<std::string, std::string>> destinationDeadLettersOfEvent(const CaptureReader& reader,
                                                                               std::int64_t seq,
                                                                               const std::vector<std::string>& destinations);

} // namespace pipescope
