#include "pipeline/report.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "dedup/dedup_window.h"

namespace pipescope {

EventOutcomes RunReport::outcomes() const {
    // `valid` and `invalid` hold the unplanned events on the side the policy puts them.
    const bool unplannedAreInvalid = unplannedPolicy == "dlq";
    EventOutcomes o;
    o.unplanned = unplanned;
    o.schemaValid = valid - (unplannedAreInvalid ? 0 : std::min(unplanned, valid));
    o.schemaInvalid = invalid - (unplannedAreInvalid ? std::min(unplanned, invalid) : 0);
    o.duplicates = dedup.duplicates;
    o.rejected = rejected;
    o.unparseable = unparseableElements;
    return o;
}

bool RunReport::hasInputErrors() const {
    return std::any_of(files.begin(), files.end(), [](const InputStats& f) { return !f.error.empty(); });
}

bool RunReport::hasFindings() const {
    return dlqTotal() > 0 || (unplannedPolicy == "warn" && unplanned > 0) || dedup.duplicates > 0 ||
           identity.countedIssues() > 0;
}

nlohmann::json RunReport::toJson() const {
    using nlohmann::json;
    std::vector<std::pair<const std::tuple<std::string, std::string, std::string>*, const FailureStats*>> sorted;
    for (const auto& [key, stats] : failures) sorted.emplace_back(&key, &stats);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second->count > b.second->count; });
    json failureArray = json::array();
    for (const auto& [key, stats] : sorted)
        failureArray.push_back({{"event", std::get<0>(*key)},
                                {"pointer", std::get<1>(*key)},
                                {"keyword", std::get<2>(*key)},
                                {"count", stats->count},
                                {"example", stats->exampleMessage}});
    json fileArray = json::array();
    for (const auto& file : files) {
        json entry = {{"path", file.path}, {"compressed", file.compressed}, {"lines", file.lines},
                      {"events", file.events}};
        if (!file.error.empty()) entry["error"] = file.error;
        fileArray.push_back(std::move(entry));
    }
    json report = {
        {"inputs", {{"lines", lines}, {"events", events}, {"unparseable", unparseable}, {"rejected", rejected},
                    {"files", fileArray}}},
        {"streams", {{"client", client}, {"server", server}, {"unknown", unknownStream}}},
        {"validation", {{"valid", valid}, {"invalid", invalid}, {"unplanned", unplanned},
                        {"unplanned_policy", unplannedPolicy}, {"unplanned_events", unplannedEvents},
                        {"failures", failureArray}}},
        {"dlq", {{"total", dlqTotal()}}},
    };
    json dedupSection = {{"unique", dedup.unique}, {"duplicates", dedup.duplicates},
                         {"conflicting", dedup.conflicting}, {"without_id", dedup.withoutId},
                         {"enabled", dedup.enabled}};
    if (dedup.enabled) {
        dedupSection["mode"] = dedup.mode;
        dedupSection["window"] = formatDurationMillis(dedup.windowMillis);
        dedupSection["window_ms"] = dedup.windowMillis;
        dedupSection["fingerprint"] = dedup.fingerprint;
        dedupSection["evicted_early"] = dedup.evictedEarly;
        if (!dedup.statePath.empty())
            dedupSection["state"] = {{"path", dedup.statePath}, {"keys_restored", dedup.keysRestored}};
    }
    report["dedup"] = std::move(dedupSection);
    // Disjoint: every event in exactly one, the sum is inputs.events (README, "The report").
    const EventOutcomes o = outcomes();
    report["outcomes"] = {{"schema_valid", o.schemaValid}, {"schema_invalid", o.schemaInvalid},
                          {"unplanned", o.unplanned},      {"duplicates", o.duplicates},
                          {"rejected", o.rejected},        {"unparseable", o.unparseable},
                          {"total", o.total()}};
    report["identity"] = identity;
    if (!schemasDir.empty()) report["schemas"] = {{"dir", schemasDir}, {"count", schemaCount}};
    if (fromCollector) {
        json refused = json::object();
        for (const auto& [status, count] : refusedByStatus) refused[std::to_string(status)] = count;
        report["collector"] = {{"processed", lines}, {"undecodable", undecodableRequests}, {"refused", refused}};
    }
    if (!capturePath.empty()) report["capture"] = capturePath;
    return report;
}

} // namespace pipescope
