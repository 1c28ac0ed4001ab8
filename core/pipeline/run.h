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
// rebuilt from the events already captured, and each destination continues from its cursor.

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
#include "pipeline/check.h"
#include "route/destination.h"
#include "store/capture_store.h"

namespace pipescope {

class RunConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RunConfig {
    CollectorConfig collector;
    // Streams by source, outranking the events' own library fields.
    std::map<std::string, Stream> streamByToken; // token or write key
    std::map<std::string, Stream> streamByPath;  // request path prefix, e.g. "/v1/"
    std::filesystem::path capturePath;           // an existing capture is continued
    std::optional<std::filesystem::path> schemasDir;
    PipelineOptions pipeline;
    std::vector<DestinationConfig> destinations;
    // Requests accepted but not yet processed beyond which the collector answers 429.
    std::size_t maxBacklogRequests = 20000;
    std::int64_t statsIntervalMillis = 5000;
    // `full`: a 200 means the request is fsynced to disk (survives a power loss); `process`:
    // it survives a crash of the process only, and the collector is faster.
    Durability durability = Durability::Full;
};

// The embedded defaults: collector on 127.0.0.1:8089, a new capture in `directory`, schemas from
// `directory/schemas` when that folder exists.
RunConfig defaultRunConfig(const std::filesystem::path& directory);
// Reads a config file (see resources/pipescope.json): relative paths are taken from the file's
// folder. Throws RunConfigError naming the file and the field.
RunConfig loadRunConfig(const std::filesystem::path& file);
RunConfig parseRunConfig(const nlohmann::json& json, const std::filesystem::path& baseDir,
                         const std::string& where);

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
    std::uint64_t valid = 0, invalid = 0, unplanned = 0, duplicates = 0, rejected = 0, unparseable = 0;
    std::vector<DestinationStats> destinations;
};

class RunEngine final : public IngestSink {
public:
    explicit RunEngine(RunConfig config);
    ~RunEngine() override;
    RunEngine(const RunEngine&) = delete;
    RunEngine& operator=(const RunEngine&) = delete;

    // Starts destinations, the pipeline worker and the collector. Throws CollectorError when the
    // address cannot be bound.
    void start();
    // Stops accepting, finishes what was accepted, flushes destinations (bounded), writes the
    // identity issues and closes the capture. Idempotent.
    void stop();

    std::uint16_t port() const;
    const std::filesystem::path& capturePath() const { return m_config.capturePath; }
    bool resumed() const { return m_resumed; }
    bool tokensConfigured() const { return !m_config.collector.tokens.empty(); }
    RunStats stats() const;
    std::string statsLine(double intervalSeconds);
    // The report of everything processed since start (identity complete after stop()).
    RunReport report() const;

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
        RunReport report;
        std::uint64_t processed = 0;
    };

    void pipelineLoop();
    void processBacklog(CaptureReader& reader);
    // After a failed commit of pipeline output: waits until the capture can be written again,
    // rolls it back to the last durable point and rebuilds the pipeline from it. False when the
    // engine stops first (the requests stay in the ingest log for the next start).
    bool recoverPipeline();
    // Ends a "paused" episode once a commit got past the point the last recovery resumed from.
    void notePipelineProgress();
    std::optional<Stream> streamFor(const IngestRecord& request) const;

    RunConfig m_config;
    bool m_resumed = false;
    SchemaRegistry m_schemas;
    std::unique_ptr<CaptureWriter> m_capture;
    std::unique_ptr<Pipeline> m_pipeline;
    std::unique_ptr<Collector> m_collector;
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
    bool m_started = false;
    bool m_stopped = false;
    std::uint64_t m_lastEventsForRate = 0;
};

} // namespace pipescope
