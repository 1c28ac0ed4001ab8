#pragma once
// The CLI's human text: the `check` / `run` summary and `run`'s --stats line. The engine gives
// numbers (RunReport, RunStats); how they read to a person is the CLI's business (the GUI shows
// the same numbers its own way).

#include <string>

#include "pipeline/report.h"
#include "pipeline/run.h"

namespace pipescope {

std::string summaryText(const RunReport& report);
// One line; `eventsPerSecond` over the last interval (the caller keeps the previous count).
std::string statsText(const RunStats& stats, double eventsPerSecond);

} // namespace pipescope
