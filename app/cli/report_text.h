#pragma once
// The CLI's human text: the `check` / `run` summary and `run`'s --stats line. The engine gives
// numbers (RunReport, RunStats); how they read to a person is the CLI's business (the GUI shows
// the same numbers its own way).

#include <cstdint>
#include <string>

#include "pipeline/report.h"
#include "pipeline/run.h"

namespace pipescope {

std::string summaryText(const RunReport& report);
// One line; `eventsPerSecond` over the last interval (the caller keeps the previous count).
std::string statsText(const RunStats& stats, double eventsPerSecond);

// What `run` says once the collector is bound: where to point SDKs (stdout), and a warning
// (stderr, empty when none) when the address is reachable from other machines.
struct ListeningText {
    std::string out;
    std::string warning;
};
ListeningText listeningText(const std::string& address, std::uint16_t port, const std::string& capture, bool resumed,
                            bool tokensConfigured);

} // namespace pipescope
