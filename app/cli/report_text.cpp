#include "report_text.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "config/duration.h"

namespace pipescope {

namespace {

// 1234567 -> "1,234,567"
std::string grouped(std::uint64_t value) {
    const std::string digits = std::to_string(value);
    std::string text;
    text.reserve(digits.size() + digits.size() / 3);
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) text += ',';
        text += digits[i];
    }
    return text;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
    return grouped(n) + " " + (n == 1 ? one : many);
}

} // namespace


std::string summaryText(const RunReport& report) {
    const RunReport& r = report;
    std::ostringstream out;
    if (r.fromCollector) {
        out << "pipescope run: " << plural(r.lines + r.undecodableRequests, "request", "requests") << ", "
            << plural(r.events, "event", "events") << "\n";
        out << "  " << grouped(r.lines) << " processed, " << grouped(r.undecodableRequests) << " undecodable (dead-lettered, 400)";
        std::uint64_t refused = 0;
        for (const auto& [status, count] : r.refusedByStatus) refused += count;
        if (refused > 0) {
            out << " | refused (not kept):";
            for (const auto& [status, count] : r.refusedByStatus) out << " " << grouped(count) << "x" << status;
        }
        out << "\n";
    } else
        out << "pipescope check: " << plural(r.files.size(), "input", "inputs") << ", " << plural(r.lines, "line", "lines")
            << ", " << plural(r.events, "event", "events") << "\n";
    std::size_t width = 0;
    for (const auto& file : r.files) width = std::max(width, file.path.size());
    for (const auto& file : r.files) {
        out << "  " << file.path << std::string(width - file.path.size(), ' ') << "  "
            << (file.compressed ? "gzip" : "    ") << "  " << plural(file.lines, "line", "lines") << ", "
            << plural(file.events, "event", "events") << "\n";
        if (!file.error.empty()) out << "    INPUT ERROR: " << file.error << "\n";
    }
    out << "\nStreams      client " << grouped(r.client) << " | server " << grouped(r.server) << " | unknown "
        << grouped(r.unknownStream) << "\n";
    if (r.schemasDir.empty())
        out << "Validation   no schemas given (--schemas DIR): every event is unplanned\n";
    // The policy decides which side unplanned events count on; say so, so that the numbers on this
    // line add up (valid + invalid = unique events) and nothing reads as counted twice.
    const EventOutcomes o = r.outcomes();
    const bool unplannedDeadLettered = r.unplannedPolicy == "dlq";
    out << "Validation   " << grouped(r.valid) << " valid";
    if (o.unplanned > 0 && !unplannedDeadLettered)
        out << " (" << grouped(o.schemaValid) << " by schema + " << grouped(o.unplanned) << " unplanned)";
    out << " | " << grouped(r.invalid) << " invalid";
    if (o.unplanned > 0 && unplannedDeadLettered)
        out << " (" << grouped(o.schemaInvalid) << " by schema + " << grouped(o.unplanned) << " unplanned)";
    out << " | unplanned: policy " << r.unplannedPolicy << "\n";
    out << "Dead letters " << grouped(r.dlqTotal()) << ": " << grouped(r.unparseable) << " unparseable | "
        << grouped(r.rejected) << " rejected | " << grouped(o.schemaInvalid) << " failed validation";
    if (unplannedDeadLettered) out << " | " << grouped(o.unplanned) << " unplanned";
    out << "\n";

    if (r.dedup.enabled) {
        out << "Dedup        " << grouped(r.dedup.unique) << " unique | " << grouped(r.dedup.duplicates) << " duplicates ("
            << grouped(r.dedup.conflicting) << " conflicting) | " << grouped(r.dedup.withoutId) << " without id  [window "
            << formatDurationMillis(r.dedup.windowMillis) << ", " << r.dedup.mode << (r.dedup.fingerprint ? ", fingerprint" : "")
            << "]\n";
        if (r.dedup.evictedEarly > 0)
            out << "             WARNING: " << grouped(r.dedup.evictedEarly)
                << " keys were evicted before their window ended (--dedup-max-keys): the window was shorter\n";
    } else {
        out << "Dedup        off\n";
    }
    out << "Identity     " << plural(r.identity.persons, "person", "persons") << " | "
        << plural(r.identity.merges, "merge", "merges") << " | " << plural(r.identity.groups, "group", "groups") << " | "
        << plural(r.identity.countedIssues(), "issue", "issues");
    if (r.identity.countedIssues() > 0) {
        const char* sep = ": ";
        for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
            const auto kind = static_cast<IdentityIssueKind>(k);
            if (isInformational(kind) || r.identity.issues[k] == 0) continue;
            out << sep << grouped(r.identity.issues[k]) << " " << toString(kind);
            sep = ", ";
        }
    }
    out << "\n";
    if (const auto probable = r.identity.issueCount(IdentityIssueKind::ProbableSameUser))
        out << "             (heuristic: " << plural(probable, "group", "groups")
            << " of ids in different persons look like the same user)\n";
    if (const auto shared = r.identity.issueCount(IdentityIssueKind::SharedDevice))
        out << "             (note: " << plural(shared, "device was", "devices were")
            << " used by several persons one after another: shared_device, not a split)\n";

    if (!r.failures.empty()) {
        std::vector<std::pair<const std::tuple<std::string, std::string, std::string>*, const FailureStats*>> top;
        for (const auto& [key, stats] : r.failures) top.emplace_back(&key, &stats);
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
    if (!r.unplannedEvents.empty() && !r.schemasDir.empty()) {
        out << "\nUnplanned events (no schema):";
        std::size_t n = 0;
        for (const auto& [name, count] : r.unplannedEvents) {
            if (n++ == 10) {
                out << " ...";
                break;
            }
            out << " " << name << " (" << grouped(count) << ")";
        }
        out << "\n";
    }
    if (!r.examples.empty()) {
        out << "\nFirst dead letters:\n";
        for (const auto& example : r.examples)
            out << "  " << example.where << "  " << example.reason << ": " << example.message << "\n";
    }
    if (!r.dedup.examples.empty()) {
        out << "\nFirst duplicates:\n";
        for (const auto& example : r.dedup.examples)
            out << "  " << example.where << "  " << example.reason << ": " << example.message << "\n";
    }
    if (!r.identityExamples.empty()) {
        out << "\nIdentity issues (first of each kind; pipescope-cli identity --capture FILE --issues lists all):\n";
        for (const auto& issue : r.identityExamples) out << "  " << toString(issue.kind) << ": " << issue.message << "\n";
    }
    if (!r.capturePath.empty()) out << "\nCapture: " << r.capturePath << "\n";
    out << "\nResult: "
        << (r.hasInputErrors() ? "INPUT ERRORS" : r.hasFindings() ? "FINDINGS" : "OK, every event is valid") << "\n";
    return out.str();
}


std::string statsText(const RunStats& s, double eventsPerSecond) {
    // Disjoint event counts (they add up to `events`): valid and invalid here are by schema, and
    // unplanned events are counted apart whatever the policy does with them.
    char head[640];
    std::snprintf(head, sizeof head,
                  "stats: %.0f events/s | requests %llu accepted, %llu undecodable, backlog %llu | events %llu: "
                  "%llu valid, %llu invalid, %llu unplanned, %llu duplicates, %llu rejected, %llu unparseable",
                  eventsPerSecond, static_cast<unsigned long long>(s.requestsAccepted),
                  static_cast<unsigned long long>(s.requestsRejected), static_cast<unsigned long long>(s.backlog),
                  static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.outcomes.schemaValid),
                  static_cast<unsigned long long>(s.outcomes.schemaInvalid),
                  static_cast<unsigned long long>(s.outcomes.unplanned),
                  static_cast<unsigned long long>(s.outcomes.duplicates),
                  static_cast<unsigned long long>(s.outcomes.rejected),
                  static_cast<unsigned long long>(s.outcomes.unparseable));
    std::string line = head;
    if (!s.refusedByStatus.empty()) {
        line += " | refused:";
        for (const auto& [status, count] : s.refusedByStatus)
            line += " " + std::to_string(count) + "x" + std::to_string(status);
    }
    if (s.pipelineState != "running")
        line += " | pipeline " + s.pipelineState + ": " + s.captureError.substr(0, 120);
    else if (s.failedCommits > 0)
        line += " | " + std::to_string(s.failedCommits) + " failed commits (last: " + s.captureError.substr(0, 80) + ")";
    if (s.kafka) {
        std::int64_t lag = 0;
        bool known = !s.kafka->partitions.empty();
        for (const KafkaPartitionStats& p : s.kafka->partitions) {
            if (p.lag < 0) known = false;
            else lag += p.lag;
        }
        line += " | kafka: " + std::to_string(s.kafka->messages) + " messages, " +
                std::to_string(s.kafka->partitions.size()) + " partitions, lag " + (known ? std::to_string(lag) : "?") +
                (s.kafka->paused ? ", paused" : "");
        if (s.kafka->retried) line += ", " + std::to_string(s.kafka->retried) + " retried";
        if (!s.kafka->lastError.empty()) line += " (" + s.kafka->lastError.substr(0, 80) + ")";
    }
    for (const DestinationStats& d : s.destinations) {
        line += " | " + d.name + ": " + std::to_string(d.deliveredEvents) + " delivered, " +
                std::to_string(d.deadLetteredEvents) + " dead, lag " + std::to_string(d.lag) + ", " +
                std::string(toString(d.state));
        if (!d.lastError.empty() && d.state != DestinationState::Ok) line += " (" + d.lastError.substr(0, 80) + ")";
    }
    return line;
}

ListeningText listeningText(const std::string& address, std::uint16_t portNumber, const std::string& capture,
                            bool resumed, bool tokensConfigured) {
    // Say what is bound, not what is convenient: a wildcard address is every interface.
    const bool wildcard = address == "0.0.0.0" || address == "::" || address == "[::]";
    const bool loopback = address == "localhost" || address == "::1" || address.rfind("127.", 0) == 0;
    const std::string port = std::to_string(portNumber);
    const std::string bound =
        (address.find(':') != std::string::npos && address.front() != '[' ? "[" + address + "]" : address) + ":" + port;
    const std::string base = "http://" + (wildcard ? std::string("127.0.0.1:") + port : bound);
    ListeningText text;
    text.out = "pipescope run: collector listening on " + (wildcard ? bound + " (every interface)" : "http://" + bound) +
               "\n  capture: " + capture + (resumed ? " (continued)" : " (new)") +
               "\n  point PostHog SDKs (api_host) and Segment SDKs (host) at " + base +
               (wildcard ? " (or this machine's address on your network)" : "") + "\n  stop with Ctrl-C\n";
    if (!loopback)
        text.warning = "pipescope run: warning: the collector is reachable from the network on " + bound +
                       (wildcard ? " (every interface)" : "") +
                       ", not only from this machine: anyone who can reach it can write events into the capture" +
                       (tokensConfigured ? "" : " (no collector.tokens are set)") + "\n";
    return text;
}

} // namespace pipescope
