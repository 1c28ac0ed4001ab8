#include "models/capture_lookup.h"

namespace pipescope {

std::optional<DuplicateRecord> duplicateOfEvent(const CaptureReader& reader, std::int64_t seq) {
    return reader.duplicateOf(seq);
}

std::vector<DeliveryRecord> deliveriesOfEvent(const CaptureReader& reader, std::int64_t seq) {
    return reader.deliveriesOf(seq);
}

std::vector<DlqEntry> deadLettersOfEvent(const CaptureReader& reader, std::int64_t seq) { return reader.dlqOfEvent(seq); }

std::vector<std::pair<std::string, std::string>> destinationDeadLettersOfEvent(
    const CaptureReader& reader, std::int64_t seq, const std::vector<std::string>& destinations) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& destination : destinations)
        for (const auto& [eventSeq, reason] : reader.destinationDeadLetters(destination))
            if (eventSeq == seq) out.emplace_back(destination, reason);
    return out;
}

} // namespace pipescope
