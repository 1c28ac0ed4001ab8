#include "pipeline/report.h"

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dedup/dedup_window.h"

namespace pipescope {

namespace {

// 1234567 -> "1,234,567"
std::string grouped(std::uint64_t value) {
    std::string digits = std::to_string(value);
    for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<std::size_t>(i), ",");
    return digits;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
    return grouped(n) + " " + (n == 1 ? one : many);
}

} // namespace

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

std::string RunReport::summary() const {
    std::ostringstream out;
    if (fromCollector) {
        out << "pipescope run: " << plural(lines + undecodableRequests, "request", "requests") << ", "
            << plural(events, "event", "events") << "\n";
        out << "  " << grouped(lines) << " processed, " << grouped(undecodableRequests) << " undecodable (dead-lettered, 400)";
        std::uint64_t refused = 0;
        for (const auto& [status, count] : refusedByStatus) refused += count;
        if (refused > 0) {
            out << " | refused (not kept):";
            for (const auto& [status, count] : refusedByStatus) out << " " << grouped(count) << "x" << status;
        }
        out << "\n";
    } else
        out << "pipescope check: " << plural(files.size(), "input", "inputs") << ", " << plural(lines, "line", "lines")
            << ", " << plural(events, "event", "events") << "\n";
    std::size_t width = 0;
    for (const auto& file : files) width = std::max(width, file.path.size());
    for (const auto& file : files) {
        out << "  " << file.path << std::string(width - file.path.size(), ' ') << "  "
            << (file.compressed ? "gzip" : "    ") << "  " << plural(file.lines, "line", "lines") << ", "
            << plural(file.events, "event", "events") << "\n";
        if (!file.error.empty()) out << "    INPUT ERROR: " << file.error << "\n";
    }
    out << "\nStreams      client " << grouped(client) << " | server " << grouped(server) << " | unknown "
        << grouped(unknownStream) << "\n";
    if (schemasDir.empty())
        out << "Validation   no schemas given (--schemas DIR): every event is unplanned\n";
    out << "Validation   " << grouped(valid) << " valid | " << grouped(invalid) << " invalid | "
        << grouped(unplanned) << " unplanned (policy " << unplannedPolicy << ")\n";
    out << "Dead letters " << grouped(dlqTotal()) << ": " << grouped(unparseable) << " unparseable | "
        << grouped(rejected) << " rejected | " << grouped(invalid) << " failed validation\n";

    if (dedup.enabled) {
        out << "Dedup        " << grouped(dedup.unique) << " unique | " << grouped(dedup.duplicates) << " duplicates ("
            << grouped(dedup.conflicting) << " conflicting) | " << grouped(dedup.withoutId) << " without id  [window "
            << formatDurationMillis(dedup.windowMillis) << ", " << dedup.mode << (dedup.fingerprint ? ", fingerprint" : "")
            << "]\n";
        if (dedup.evictedEarly > 0)
            out << "             WARNING: " << grouped(dedup.evictedEarly)
                << " keys were evicted before their window ended (--dedup-max-keys): the window was shorter\n";
    } else {
        out << "Dedup        off\n";
    }
    out << "Identity     " << plural(identity.persons, "person", "persons") << " | "
        << plural(identity.merges, "merge", "merges") << " | " << plural(identity.groups, "group", "groups") << " | "
        << plural(identity.countedIssues(), "issue", "issues");
    if (identity.countedIssues() > 0) {
        const char* sep = ": ";
        for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
            const auto kind = static_cast<IdentityIssueKind>(k);
            if (isInformational(kind) || identity.issues[k] == 0) continue;
            out << sep << grouped(identity.issues[k]) << " " << toString(kind);
            sep = ", ";
        }
    }
    out << "\n";
    if (const auto probable = identity.issueCount(IdentityIssueKind::ProbableSameUser))
        out << "             (heuristic: " << plural(probable, "group", "groups")
            << " of ids in different persons look like the same user)\n";
    if (const auto shared = identity.issueCount(IdentityIssueKind::SharedDevice))
        out << "             (note: " << plural(shared, "device was", "devices were")
            << " used by several persons one after another: shared_device, not a split)\n";

    if (!failures.empty()) {
        std::vector<std::pair<const std::tuple<std::string, std::string, std::string>*, const FailureStats*>> top;
        for (const auto& [key, stats] : failures) top.emplace_back(&key, &stats);
        std::stable_sort(top.begin(), top.end(),
                         [](const auto& a, const auto& b) { return a.second->count > b.second->count; });
        out << "\nSchema failures (event, pointer, keyword):\n";
        const std::size_t shown = std::min<std::size_t>(top.size(), 15);
        for (std::size_t i = 0; i < shown; ++i) {
            const auto& [event, pointer, keyword] = *top[i].first;
            out << "  " << grouped(top[i].second->count) << "  " << event << "  "
                << (pointer.empty() ? "(root)" : pointer) << "  " << keyword << ": " << top[i].second->exampleMessage
                << "\n";
        }
        if (top.size() > shown) out << "  ... and " << top.size() - shown << " more (see --report)\n";
    }
    if (!unplannedEvents.empty() && !schemasDir.empty()) {
        out << "\nUnplanned events (no schema):";
        std::size_t n = 0;
        for (const auto& [name, count] : unplannedEvents) {
            if (n++ == 10) {
                out << " ...";
                break;
            }
            out << " " << name << " (" << grouped(count) << ")";
        }
        out << "\n";
    }
    if (!examples.empty()) {
        out << "\nFirst dead letters:\n";
        for (const auto& example : examples)
            out << "  " << example.where << "  " << example.reason << ": " << example.message << "\n";
    }
    if (!dedup.examples.empty()) {
        out << "\nFirst duplicates:\n";
        for (const auto& example : dedup.examples)
            out << "  " << example.where << "  " << example.reason << ": " << example.message << "\n";
    }
    if (!identityExamples.empty()) {
        out << "\nIdentity issues (first of each kind; pipescope-cli identity --capture FILE --issues lists all):\n";
        for (const auto& issue : identityExamples) out << "  " << toString(issue.kind) << ": " << issue.message << "\n";
    }
    if (!capturePath.empty()) out << "\nCapture: " << capturePath << "\n";
    out << "\nResult: "
        << (hasInputErrors() ? "INPUT ERRORS" : hasFindings() ? "FINDINGS" : "OK, every event is valid") << "\n";
    return out.str();
}

} // namespace pipescope
