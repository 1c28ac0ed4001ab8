#pragma once
// Rebuilding engine state from a capture, in one place: the dedup window and the identity graph
// as the pipeline left them (a resumed `run`, a recovery after a failed commit), and the identity
// graph alone (`identity --explain / --issues`, the GUI's person view).
//
// Events are read in capture order (seq), which is the order the pipeline processed them, so the
// graph rebuilt here equals the live one (tst_identity replayFromCaptureAgrees).

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

#include <simdjson.h>

#include "identity/identity_graph.h"
#include "pipeline/pipeline.h"

namespace pipescope {

class CaptureReader;
class DedupWindow;
struct StoredEvent;

// How far a replay is: `events` read of `total` (the capture's event count when it started).
struct ReplayProgress {
    std::int64_t events = 0;
    std::int64_t total = 0;
};
// Called on the replaying thread about every 4096 events and once at the end; returning false
// cancels the replay (ReplayCancelled is thrown).
using ReplayProgressCallback = std::function<bool(const ReplayProgress&)>;

class ReplayCancelled : public std::runtime_error {
public:
    ReplayCancelled() : std::runtime_error("cancelled while reading the capture") {}
};

// Feeds stored events to an identity graph as the pipeline did when it processed them.
class StoredIdentityReplay {
public:
    StoredIdentityReplay(IdentityGraph& graph, UnplannedPolicy unplanned);
    void observe(const StoredEvent& stored);

private:
    IdentityGraph& m_graph;
    UnplannedPolicy m_unplanned;
    CorrelationExtractor m_correlations;
    GroupExtractor m_groups;
    simdjson::dom::parser m_parser;
    simdjson::dom::parser m_emptyParser; // its document outlives every parse of m_parser
    simdjson::dom::element m_emptyObject;
    std::string m_origin;
};

// Feeds every event of `capture` to `window` (when not null: the unique events' dedup keys, on
// the time the pipeline used) and to `graph` (valid, unique, not dead-lettered under `unplanned`).
// Returns the largest seq seen. Throws StoreError naming `where` and the event for a dedup key the
// pipeline cannot have written, ReplayCancelled when `progress` says stop.
std::int64_t replayCapture(const CaptureReader& capture, const std::string& where, DedupWindow* window,
                           IdentityGraph& graph, UnplannedPolicy unplanned, const ReplayProgressCallback& progress = {});

// The identity graph of a capture, stitched with the options the capture records
// (capture_metadata.h), finished (every issue found).
IdentityGraph replayIdentity(const CaptureReader& capture, const std::string& where,
                             const ReplayProgressCallback& progress = {});

} // namespace pipescope
