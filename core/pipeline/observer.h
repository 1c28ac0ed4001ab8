#pragma once
// How a GUI (or any other watcher) follows a running engine without ever slowing it down.
//
// The engine publishes immutable snapshots from its own snapshot thread, at most every 100 ms
// (and only when something changed, or once a second so rates fall back to 0), to every
// registered observer. Nothing on the ingest or pipeline path waits on an observer: a slow
// observer only delays the next snapshot, which then carries the newest numbers (snapshots are
// values, not deltas, so none is ever "missed"). The Qt adapter in ui/ posts each snapshot to the
// GUI thread through a queued signal and returns.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/report.h"
#include "route/destination.h"

namespace pipescope {

struct PipelineSnapshot {
    std::int64_t takenAtMillis = 0; // epoch ms
    // "opening" (reading the capture), "running", "paused" (the capture cannot be written; the
    // pipeline redoes its output once it can), "stopped" (the worker died: captureError says why;
    // requests are answered 503), "finished" (after stop()).
    std::string pipelineState;
    std::string captureError;

    std::uint64_t events = 0;   // decoded events; outcomes.total() == events
    EventOutcomes outcomes;     // disjoint counts per verdict (see report.h)
    std::uint64_t requestsAccepted = 0;
    std::uint64_t requestsRejected = 0; // undecodable bodies, dead-lettered (400)
    std::uint64_t requestsProcessed = 0;
    std::map<int, std::uint64_t> refusedByStatus; // 401, 413, 429, 503 ...
    std::uint64_t backlog = 0;      // accepted requests not yet processed and committed
    std::int64_t committedSeq = 0;  // newest event seq whose pipeline output is in the capture file
    double eventsPerSecond = 0;     // since the previous snapshot
    double requestsPerSecond = 0;
    std::vector<DestinationStats> destinations; // state, delivered, dead-lettered, lag, last error
};

class PipelineObserver {
public:
    virtual ~PipelineObserver() = default;
    // On the engine's snapshot thread. Must return quickly and must not call back into the
    // engine's add/removeObserver (it would wait for itself).
    virtual void onSnapshot(std::shared_ptr<const PipelineSnapshot> snapshot) = 0;
};

} // namespace pipescope
