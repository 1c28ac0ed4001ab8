#pragma once
// The filters the window offers without the filter language: what a pipeline stage did (a click
// on the strip), and "follow this person". Each is a PredicateFactory for EventFilterRunner, so
// it is prepared and run on the worker thread.

#include <QString>

#include <set>
#include <string>

#include "models/event_filter_runner.h"

namespace pipescope {

struct NamedFilter {
    QString description; // shown in the filter bar, e.g. "verdict == invalid"
    PredicateFactory factory;
    InitialScan initialScan = {}; // a faster way to the matches already captured, if any
    bool editable = false;        // written in the filter language (the bar keeps it editable)
};

NamedFilter verdictFilter(const std::set<Verdict>& verdicts);
// Every event of the person `distinctId` belongs to (both streams): the identity graph is
// rebuilt from the capture's valid, unique events, as `pipescope-cli identity --explain` does.
NamedFilter personFilter(const std::string& distinctId);
// The events a destination dead-lettered.
NamedFilter destinationDeadLetterFilter(const std::string& destination);
// The events that prove an identity issue (written to the capture when a run stops).
NamedFilter identityIssueFilter();
#if PIPESCOPE_HAS_FILTER
class FilterExpression;
// A filter-language expression: decided in SQLite where it can be (core/filter's CaptureFilter),
// evaluated on the events committed after when following a live capture.
NamedFilter expressionFilter(const QString& text, const FilterExpression& expression);
#endif
// Events of one stream ("client", "server").
NamedFilter streamFilter(const std::string& stream);

} // namespace pipescope
