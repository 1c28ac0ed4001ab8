#pragma once
// `pipescope-cli run`: the local end-to-end pipeline. Real SDKs post to the collector; each
// accepted request is committed to the capture's ingest log before it is answered (the durable
// buffer); one pipeline worker takes the log in order through decode -> dedup -> validate ->
// identity into the capture; one worker per destination delivers the valid, unique events from
// the capture by its own cursor.
//
//   collector threads --(group commit)--> ingest_log --> pipeline worker --> events --> destinations
//
// A restart on the same capture resumes: requests the pipeline had not finished are processed
// again (their partial output is discarded first), the dedup window and identity graph are
// rebuilt from the events already captured (RunEngine::open, with progress and cancel), and each
// destination continues from its cursor. Observers (observer.h) follow it through snapshots.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "collector/collector.h"
#include "pipeline/capture_replay.h"
#include "pipeline/observer.h"
#include "pipeline/pipeline.h"
#include "pipeline/run_config.h"
#include "route/destination.h"
#include "store/capture_store.h"

namespace pipescope {

// What the engine has done since it started, for the --stats line and tests.
struct RunStats {
    std::uint64_t requestsAccepted = 0;
    std::uint64_t requestsRejected = 0; // undecodable bodies, dead-lettered
    std::uint64_t requestsProcessed = 0;
    std::uint64_t backlog = 0;          // accepted (or being committed), not yet processed
    // Answers that refused a request, by status: 401 (unknown token), 413, 429 (backlog or
    // in-flight bound), 503 (a commit failed, the pipeline stopped, or the collector was stopping).
    std::map<int, std::uint64_t> refusedByStatus;
    std::uint64_t failedCommits = 0;    // capture transactions that failed (e.g. a full disk)
    std::string captureError;           // the last of them
    // "running"; "paused" while the capture cannot be written (the pipeline redoes its output
    // once it can); "stopped" when the worker died (captureError says why; requests get 503).
    std::string pipelineState = "running";
    std::uint64_t events = 0;
    // As in the report: valid and invalid nest the unplanned events by policy (README, "Counts").
    std::uint64_t valid = 0, invalid = 0, unplanned = 0, duplicates = 0, rejected = 0, unparseable = 0;
    EventOutcomes outcomes; // disjoint: outcomes.total() == events
    std::int64_t committedSeq = 0; // newest event seq whose pipeline output is in the capture file
    std::vector<DestinationStats> destinations;
    std::optional<KafkaSourceStats> kafka; // when Kafka topics are a source
};

class RunEngine final : public IngestSink {
public:
    // Keeps the config; nothing is opened yet (open() or start() does it).
    explicit RunEngine(RunConfig config);
    ~RunEngine() override;
    RunEngine(const RunEngine&) = delete;
    RunEngine& operator=(const RunEngine&) = delete;

    // Loads the schemas, opens (or creates) the capture and, when it is continued, rebuilds the
    // dedup window and the identity graph from its events: the long part on a big capture, so
    // `progress` (optional, called on this thread) reports it and may cancel it by returning
    // false (ReplayCancelled is thrown; the capture is closed as it was and open() may be called
    // again). Throws SchemaError, StoreError (e.g. the capture is being written by another
    // process), CollectorError. Idempotent once it succeeded.
    void open(const ReplayProgressCallback& progress = {});
    bool opened() const { return m_opened.load(); }
    // Starts destinations, the pipeline worker, the snapshot thread and the collector (opening
    // first if open() was not called). Throws CollectorError when the address cannot be bound.
    void start();
    // Stops accepting, finishes what was accepted, flushes every destination at once (each within
    // its drain_timeout_ms, all from the same moment), writes the identity issues and closes the
    // capture. Idempotent.
    void stop();

    std::uint16_t port() const;
    const std::filesystem::path& capturePath() const { return m_config.capturePath; }
    bool resumed() const { return m_resumed; }
    bool tokensConfigured() const { return !m_config.collector.tokens.empty(); }
    RunStats stats() const;
    // The report of everything processed since start (identity complete after stop()).
    RunReport report() const;

    // Observers get snapshots from the engine's snapshot thread (observer.h) while it runs, and a
    // last one ("finished") from stop(). After removeObserver() returns, `observer` is never
    // called again. Both may be called from any thread, before or after start().
    void addObserver(PipelineObserver* observer);
    void removeObserver(PipelineObserver* observer);

    // IngestSink
    void ingest(IngestRequest request, Completion done) override;
    void reject(RejectedRequest rejected, Completion done) override;
    bool overloaded() const override;

private:
    class CaptureFeed;
    class CaptureDeliveryLog;

    // The pipeline's state at a request whose cursor is committed: what a recovery goes back to.
    struct DurablePoint {
        std::int64_t cursor = 0;
        std::int64_t lastSeq = 0; // the pipeline's last event seq at this point
        RunReport report;
        std::uint64_t processed = 0;
    };

    void pipelineLoop();
    void processBacklog(CaptureReader& reader);
    // After a failed commit of pipeline output: waits until the capture can be written again,
    // rolls it back to the last durable point and rebuilds the pipeline from it. False when the
    // engine stops first (the requests stay in the ingest log for the next start).
    bool recoverPipeline();
    void snapshotLoop();
    std::shared_ptr<const PipelineSnapshot> takeSnapshot(const char* state);
    void publish(const std::shared_ptr<const PipelineSnapshot>& snapshot);
    // Ends a "paused" episode once a commit got past the point the last recovery resumed from.
    void notePipelineProgress();
    std::optional<Stream> streamFor(const IngestRecord& request) const;

    RunConfig m_config;
    bool m_resumed = false;
    SchemaRegistry m_schemas;
    std::unique_ptr<CaptureWriter> m_capture;
    std::unique_ptr<Pipeline> m_pipeline;
    std::unique_ptr<Collector> m_collector;
    std::unique_ptr<KafkaSource> m_kafka;
    std::vector<std::unique_ptr<CaptureFeed>> m_feeds;
    std::vector<std::unique_ptr<CaptureDeliveryLog>> m_logs;
    std::vector<std::unique_ptr<DestinationWorker>> m_destinations;

    std::thread m_worker;
    mutable std::mutex m_mutex;          // guards the report snapshot and the wake-up below
    std::condition_variable m_wake;
    RunReport m_reportSnapshot;
    std::atomic<std::int64_t> m_lastIngestId{0};
    std::atomic<std::int64_t> m_pipelineCursor{0};
    std::atomic<std::uint64_t> m_accepted{0};
    std::atomic<std::uint64_t> m_rejectedRequests{0};
    std::atomic<std::uint64_t> m_processed{0};
    std::atomic<std::int64_t> m_pendingIngests{0}; // handed to the writer, not yet committed
    // The last request whose pipeline output is committed: the backlog counts from here, so a
    // batch processed in memory but not yet in the file still counts against the bound.
    std::atomic<std::int64_t> m_durableCursor{0};
    std::int64_t m_recoveredAt = -1;                          // pipeline thread: where the last recovery resumed
    std::chrono::milliseconds m_recoveryDelay{100};           // pipeline thread
    std::chrono::steady_clock::time_point m_lastFailureReport; // pipeline thread
    std::atomic<bool> m_stopping{false};
    std::atomic<bool> m_pipelinePaused{false};
    std::atomic<bool> m_pipelineDead{false};
    std::string m_pipelineError;              // guarded by m_mutex
    DurablePoint m_durable;                   // guarded by m_mutex
    std::deque<DurablePoint> m_undurable;     // batches whose cursor is not yet committed; m_mutex
    std::atomic<std::int64_t> m_committedSeq{0};
    std::atomic<bool> m_opened{false}; // written once by open(); stats() may be called meanwhile
    bool m_started = false;
    bool m_stopped = false;

    std::mutex m_observerMutex; // held while observers are called: removeObserver waits for a call
    std::vector<PipelineObserver*> m_observers;
    std::thread m_snapshotThread;
    std::mutex m_snapshotMutex;
    std::condition_variable m_snapshotWake;
    bool m_snapshotStop = false; // guarded by m_snapshotMutex
    std::shared_ptr<const PipelineSnapshot> m_lastSnapshot; // snapshot thread (and stop() after it)
};

} // namespace pipescope
