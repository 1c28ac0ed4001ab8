#include "models/event_predicates.h"

#include <unordered_set>

#include <nlohmann/json.hpp>

#include "identity/identity_graph.h"
#include "pipeline/check.h"

#if PIPESCOPE_HAS_FILTER
#include "filter/filter.h"
#include "filter/filter_sql.h"
#endif

namespace pipescope {

NamedFilter verdictFilter(const std::set<Verdict>& verdicts) {
    QString text;
    for (Verdict v : verdicts)
        text += (text.isEmpty() ? QString() : QStringLiteral(", ")) + QString::fromStdString(std::string(toString(v)));
    const QString description =
        verdicts.size() == 1 ? QStringLiteral("verdict == ") + text : QStringLiteral("verdict in {") + text + '}';
    return {description, [verdicts](const CaptureReader&, const std::atomic<bool>&, std::string&) -> EventPredicate {
                return [verdicts](const StoredEvent& event) { return verdicts.count(event.verdict) != 0; };
            }};
}

NamedFilter personFilter(const std::string& distinctId) {
    const QString description = QStringLiteral("person of \"%1\"").arg(QString::fromStdString(distinctId));
    return {description, [distinctId](const CaptureReader& reader, const std::atomic<bool>& cancelled,
                                      std::string&) -> EventPredicate {
                IdentityOptions options;
                if (const std::string keys = reader.meta("correlation_keys"); !keys.empty()) {
                    const auto parsed = nlohmann::json::parse(keys, nullptr, false);
                    if (parsed.is_array()) {
                        options.correlationKeys.clear();
                        for (const auto& key : parsed)
                            if (key.is_string()) options.correlationKeys.push_back(key.get<std::string>());
                    }
                }
                const auto unplanned =
                    parseUnplannedPolicy(reader.meta("unplanned_policy")).value_or(UnplannedPolicy::Allow);
                IdentityGraph graph(options);
                StoredIdentityReplay replay(graph, unplanned);
                reader.forEachEvent([&](const StoredEvent& event) {
                    replay.observe(event);
                    return !cancelled.load();
                });
                auto ids = std::make_shared<std::unordered_set<std::string>>();
                ids->insert(distinctId);
                if (const auto explanation = graph.explain(distinctId))
                    for (const auto& member : explanation->members) ids->insert(member.id);
                return [ids](const StoredEvent& event) {
                    return ids->count(event.distinctId) || (!event.anonymousId.empty() && ids->count(event.anonymousId)) ||
                           (!event.userId.empty() && ids->count(event.userId));
                };
            }};
}

NamedFilter destinationDeadLetterFilter(const std::string& destination) {
    const QString description = QStringLiteral("dead-lettered by %1").arg(QString::fromStdString(destination));
    return {description, [destination](const CaptureReader& reader, const std::atomic<bool>&,
                                       std::string&) -> EventPredicate {
                auto seqs = std::make_shared<std::unordered_set<std::int64_t>>();
                for (const auto& [seq, reason] : reader.destinationDeadLetters(destination)) seqs->insert(seq);
                return [seqs](const StoredEvent& event) { return seqs->count(event.seq) != 0; };
            }};
}

NamedFilter identityIssueFilter() {
    return {QStringLiteral("events of identity issues"),
            [](const CaptureReader& reader, const std::atomic<bool>&, std::string&) -> EventPredicate {
                auto seqs = std::make_shared<std::unordered_set<std::int64_t>>();
                for (const auto& issue : reader.identityIssues()) {
                    const auto events = nlohmann::json::parse(issue.events, nullptr, false);
                    if (events.is_array())
                        for (const auto& e : events)
                            if (e.is_number_integer()) seqs->insert(e.get<std::int64_t>());
                }
                return [seqs](const StoredEvent& event) { return seqs->count(event.seq) != 0; };
            }};
}

#if PIPESCOPE_HAS_FILTER
NamedFilter expressionFilter(const QString& text, const FilterExpression& expression) {
    NamedFilter filter;
    filter.description = text;
    filter.editable = true;
    filter.factory = [expression](const CaptureReader&, const std::atomic<bool>&, std::string&) -> EventPredicate {
        return [expression](const StoredEvent& event) { return expression.matches(event); };
    };
    filter.initialScan = [expression](const std::string& path,
                                      const std::function<bool(std::int64_t, std::int64_t)>& progress) {
        const CaptureFilter capture(path, expression);
        return capture.seqs(progress);
    };
    return filter;
}
#endif

NamedFilter streamFilter(const std::string& stream) {
    return {QStringLiteral("stream == %1").arg(QString::fromStdString(stream)),
            [stream](const CaptureReader&, const std::atomic<bool>&, std::string&) -> EventPredicate {
                return [stream](const StoredEvent& event) { return event.stream == stream; };
            }};
}

} // namespace pipescope
