#include "models/capture_lookup.h"

#include <nlohmann/json.hpp>

namespace pipescope {

std::optional<DuplicateRecord> duplicateOfEvent(const CaptureReader& reader, std::int64_t seq) {
    constexpr std::int64_t kPage = 4096;
    for (std::int64_t offset = 0;; offset += kPage) {
        const auto page = reader.duplicates(offset, kPage);
        for (const auto& d : page)
            if (d.eventSeq == seq) return d;
        // Ordered by event seq: past it, it is not there.
        if (std::int64_t(page.size()) < kPage || (!page.empty() && page.back().eventSeq > seq)) break;
    }
    return std::nullopt;
}

std::vector<DeliveryRecord> deliveriesOfEvent(const CaptureReader& reader, std::int64_t seq) {
    std::vector<DeliveryRecord> out;
    for (auto& d : reader.deliveries("")) {
        const auto seqs = nlohmann::json::parse(d.seqs, nullptr, false);
        if (!seqs.is_array()) continue;
        for (const auto& s : seqs)
            if (s.is_number_integer() && s.get<std::int64_t>() == seq) {
                out.push_back(std::move(d));
                break;
            }
    }
    return out;
}

std::vector<DlqEntry> deadLettersOfEvent(const CaptureReader& reader, std::int64_t seq) {
    std::vector<DlqEntry> out;
    reader.forEachDlq([&](const DlqEntry& entry) {
        if (entry.eventSeq && *entry.eventSeq == seq) out.push_back(entry);
        return true;
    });
    return out;
}

std::vector<std::pair<std::string, std::string>> destinationDeadLettersOfEvent(
    const CaptureReader& reader, std::int64_t seq, const std::vector<std::string>& destinations) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& destination : destinations)
        for (const auto& [eventSeq, reason] : reader.destinationDeadLetters(destination))
            if (eventSeq == seq) out.emplace_back(destination, reason);
    return out;
}

} // namespace pipescope
