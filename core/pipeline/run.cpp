#include "pipeline/run.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "store/capture_store.h"

namespace pipescope {

namespace {

using nlohmann::json;

std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

OutgoingEvent outgoing(StoredEvent&& e) {
    OutgoingEvent o;
    o.seq = e.seq;
    o.eventId = std::move(e.eventId);
    o.idSource = std::move(e.idSource);
    o.name = std::move(e.name);
    o.distinctId = std::move(e.distinctId);
    o.anonymousId = std::move(e.anonymousId);
    o.userId = std::move(e.userId);
    o.aliasId = std::move(e.aliasId);
    o.stream = std::move(e.stream);
    o.format = std::move(e.format);
    o.timestamp = e.timestamp;
    o.properties = std::move(e.properties);
    o.raw = std::move(e.raw);
    return o;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Destinations read the capture through their own connection, from their own thread.

class RunEngine::CaptureFeed final : public EventFeed {
public:
    explicit CaptureFeed(std::filesystem::path path) : m_path(std::move(path)) {}
    std::vector<OutgoingEvent> after(std::int64_t seq, std::size_t limit) override {
        std::vector<OutgoingEvent> out;
        for (StoredEvent& e : reader().deliverableAfter(seq, static_cast<std::int64_t>(limit)))
            out.push_back(outgoing(std::move(e)));
        return out;
    }
    std::int64_t lastSeq() override { return reader().maxEventSeq(); }

private:
    CaptureReader& reader() {
        if (!m_reader) m_reader = std::make_unique<CaptureReader>(m_path);
        return *m_reader;
    }
    std::filesystem::path m_path;
    std::unique_ptr<CaptureReader> m_reader;
};

class RunEngine::CaptureDeliveryLog final : public DeliveryLog {
public:
    CaptureDeliveryLog(CaptureWriter& writer, std::filesystem::path path) : m_writer(writer), m_path(std::move(path)) {}
    void recordAttempt(const DeliveryAttempt& attempt) override {
        DeliveryRecord record;
        record.destination = attempt.destination;
        record.seqs = json(attempt.seqs).dump();
        record.attempt = attempt.attempt;
        record.startedAt = attempt.startedAtMillis;
        record.durationMillis = attempt.durationMillis;
        record.httpStatus = attempt.httpStatus;
        record.error = attempt.error;
        record.outcome = std::string(toString(attempt.outcome));
        m_writer.append(std::move(record));
    }
    void deadLetter(const std::string& destination, const std::vector<std::int64_t>& seqs,
                    const std::string& reason) override {
        for (const std::int64_t seq : seqs) m_writer.appendDestinationDeadLetter(destination, seq, reason);
    }
    std::int64_t loadCursor(const std::string& destination) override { return CaptureReader(m_path).cursor(destination); }
    void saveCursor(const std::string& destination, std::int64_t seq) override { m_writer.putCursor(destination, seq); }

private:
    CaptureWriter& m_writer;
    std::filesystem::path m_path;
};

// ---------------------------------------------------------------------------------------------

RunEngine::RunEngine(RunConfig config) : m_config(std::move(config)) {
    // A topic's configured stream outranks the events' own fields, as a path's does.
    if (m_config.kafka)
        for (const KafkaTopicConfig& topic : m_config.kafka->topics)
            if (topic.stream) m_config.streamByPath["kafka:" + topic.name + ":"] = *topic.stream;
}

void RunEngine::open(const ReplayProgressCallback& progress) {
    if (m_opened) return;
    if (m_stopped) throw std::logic_error("RunEngine::open after stop()");
    if (m_config.schemasDir) m_schemas = SchemaRegistry::loadDirectory(*m_config.schemasDir);
    std::error_code ec;
    m_resumed = std::filesystem::exists(m_config.capturePath, ec);
    CaptureWriter::Options options;
    options.replaceExisting = false; // a run never destroys a capture: it continues it
    options.resumeExisting = true;
    options.durability = m_config.durability;
    auto capture = std::make_unique<CaptureWriter>(m_config.capturePath, options);
    auto pipeline = std::make_unique<Pipeline>(m_config.schemasDir ? &m_schemas : nullptr, capture.get(),
                                               m_config.pipeline);
    std::int64_t cursorValue = 0;
    std::int64_t lastIngestId = 0;
    if (m_resumed) {
        capture->flush(); // the reader below must see the capture as reopened
        const CaptureReader reader(m_config.capturePath);
        pipeline->restore(reader, progress, m_config.capturePath.string()); // may throw ReplayCancelled
        if (const auto cursor = reader.state("pipeline_cursor")) {
            const auto [end, error] = std::from_chars(cursor->data(), cursor->data() + cursor->size(), cursorValue);
            if (error != std::errc() || end != cursor->data() + cursor->size() || cursorValue < 0)
                throw StoreError(m_config.capturePath.string() + ": state 'pipeline_cursor' is \"" +
                                 cursor->substr(0, 40) + "\", not a request id");
        }
        lastIngestId = reader.ingestCount();
    }
    std::vector<std::unique_ptr<CaptureFeed>> feeds;
    std::vector<std::unique_ptr<CaptureDeliveryLog>> logs;
    std::vector<std::unique_ptr<DestinationWorker>> destinations;
    for (const DestinationConfig& destination : m_config.destinations) {
        feeds.push_back(std::make_unique<CaptureFeed>(m_config.capturePath));
        logs.push_back(std::make_unique<CaptureDeliveryLog>(*capture, m_config.capturePath));
        destinations.push_back(std::make_unique<DestinationWorker>(destination, *feeds.back(), *logs.back()));
    }
    auto collector = std::make_unique<Collector>(m_config.collector, *this);

    // Nothing above is kept when it throws: the writer closes with its unique_ptr.
    m_capture = std::move(capture);
    m_pipeline = std::move(pipeline);
    m_feeds = std::move(feeds);
    m_logs = std::move(logs);
    m_destinations = std::move(destinations);
    m_collector = std::move(collector);
    m_pipelineCursor = cursorValue;
    m_lastIngestId = lastIngestId;
    m_durable.cursor = m_pipelineCursor.load();
    m_durable.lastSeq = m_pipeline->lastSeq();
    m_durable.report = m_pipeline->report();
    m_durableCursor = m_durable.cursor;
    m_committedSeq = m_durable.lastSeq;
    {
        std::lock_guard lock(m_mutex);
        m_reportSnapshot = m_pipeline->report();
    }
    m_opened = true;
}

RunEngine::~RunEngine() {
    try {
        stop();
    } catch (...) {
        // Destructors do not throw; stop() is called explicitly where errors matter.
    }
}

void RunEngine::start() {
    if (m_started) return;
    open();
    m_started = true;
    for (auto& destination : m_destinations) destination->start();
    m_worker = std::thread([this] { pipelineLoop(); });
    m_snapshotThread = std::thread([this] { snapshotLoop(); });
    try {
        m_collector->start();
        if (m_config.kafka) {
            m_kafka = std::make_unique<KafkaSource>(*m_config.kafka, *this);
            m_kafka->start();
        }
    } catch (...) {
        stop();
        throw;
    }
}

void RunEngine::stop() {
    if (m_stopped) return;
    m_stopped = true;
    if (!m_opened) return;
    if (m_started) {
        // In order: no new requests (Kafka stops consuming and commits what the capture has);
        // every accepted one processed; destinations flushed.
        if (m_kafka) m_kafka->stop();
        m_collector->stop();
        m_stopping = true;
        m_wake.notify_all();
        if (m_worker.joinable()) m_worker.join();
        try {
            m_capture->flush();
        } catch (const StoreError&) {
            // Reported by close() below; destinations still flush what is in the file.
        }
        // Every destination drains at the same time: stopping takes the longest drain, not the sum.
        for (auto& destination : m_destinations) destination->notify(m_pipeline->lastSeq());
        for (auto& destination : m_destinations) destination->beginStop(true);
        for (auto& destination : m_destinations) destination->join();
        {
            std::lock_guard lock(m_snapshotMutex);
            m_snapshotStop = true;
        }
        m_snapshotWake.notify_all();
        if (m_snapshotThread.joinable()) m_snapshotThread.join();
    }
    m_pipeline->finish();
    {
        std::lock_guard lock(m_mutex);
        m_reportSnapshot = m_pipeline->report();
    }
    std::string closeError;
    try {
        m_capture->close();
    } catch (const StoreError& e) {
        closeError = e.what();
    }
    if (closeError.empty()) m_committedSeq = m_pipeline->lastSeq();
    publish(takeSnapshot("finished"));
    if (!closeError.empty())
        throw StoreError(closeError +
                         " — every acknowledged request is in the capture's ingest log and is processed when the "
                         "capture is continued (pipescope-cli run --capture " +
                         m_config.capturePath.string() + ")");
}

std::uint16_t RunEngine::port() const { return m_opened ? m_collector->port() : 0; }

std::optional<Stream> RunEngine::streamFor(const IngestRecord& request) const {
    if (const auto it = m_config.streamByToken.find(request.token); it != m_config.streamByToken.end() && !request.token.empty())
        return it->second;
    std::optional<Stream> stream;
    std::size_t longest = 0;
    for (const auto& [prefix, mapped] : m_config.streamByPath)
        if (request.path.rfind(prefix, 0) == 0 && prefix.size() >= longest) stream = mapped, longest = prefix.size();
    return stream;
}

void RunEngine::ingest(IngestRequest request, Completion done) {
    const int retryAfter = m_config.collector.retryAfterSeconds;
    if (m_pipelineDead) {
        std::lock_guard lock(m_mutex);
        done({IngestStatus::Failed, retryAfter, "the pipeline worker stopped: " + m_pipelineError});
        return;
    }
    // The backlog bound is hard: a request takes its place before it is handed to the writer, so
    // however many arrive at once, no more than the bound are accepted and not yet processed.
    const std::int64_t pending = m_pendingIngests.fetch_add(1) + 1;
    const std::int64_t backlog = m_lastIngestId.load() - m_durableCursor.load() + pending;
    if (backlog > static_cast<std::int64_t>(m_config.maxBacklogRequests)) {
        --m_pendingIngests;
        done({IngestStatus::Backpressure, retryAfter,
              "the pipeline's backlog is full (" + std::to_string(m_config.maxBacklogRequests) +
                  " requests accepted and not yet processed); retry later"});
        return;
    }
    IngestRecord record;
    record.receivedAt = request.receivedAtMillis ? request.receivedAtMillis : nowMillis();
    record.path = std::move(request.path);
    record.vendor = std::string(toString(request.vendor));
    record.token = std::move(request.token);
    record.idempotencyKey = request.idempotencyKey.value_or("");
    record.encoding = std::string(toString(request.encoding));
    record.remoteAddress = std::move(request.remoteAddress);
    record.body = std::move(request.body);
    const bool queued =
        m_capture->appendIngest(std::move(record), [this, done, retryAfter](std::int64_t id, const std::string& error) {
            if (!error.empty()) {
                --m_pendingIngests;
                done({IngestStatus::Failed, retryAfter, "the capture could not be written: " + error});
                return;
            }
            std::int64_t last = m_lastIngestId.load();
            while (id > last && !m_lastIngestId.compare_exchange_weak(last, id)) {
            }
            --m_pendingIngests; // after the id moved on: the backlog never reads low in between
            ++m_accepted;
            m_wake.notify_one();
            done({IngestStatus::Committed, 0, {}});
        });
    if (!queued) {
        --m_pendingIngests;
        done({IngestStatus::Backpressure, retryAfter, "the capture's write queue is full; retry later"});
    }
}

void RunEngine::reject(RejectedRequest rejected, Completion done) {
    // The body could not be decoded: it is kept as it came, with the collector's reason, and the
    // 400 waits for that to be in the file (clients never retry a 400).
    DlqEntry entry;
    entry.reason = "unparseable";
    entry.detail = json{{"error", rejected.reason},
                        {"message", rejected.detail},
                        {"path", rejected.path},
                        {"vendor", toString(rejected.vendor)},
                        {"content_type", rejected.contentType},
                        {"content_encoding", rejected.contentEncoding},
                        {"remote_address", rejected.remoteAddress}}
                       .dump(-1, ' ', false, json::error_handler_t::replace);
    entry.originSource = "http:" + rejected.path;
    entry.raw = std::move(rejected.rawBody);
    entry.createdAt = rejected.receivedAtMillis ? rejected.receivedAtMillis : nowMillis();
    const int retryAfter = m_config.collector.retryAfterSeconds;
    const bool queued = m_capture->appendRejected(std::move(entry), [this, done, retryAfter](const std::string& error) {
        if (!error.empty()) {
            done({IngestStatus::Failed, retryAfter, "the undecodable body could not be kept: " + error});
            return;
        }
        ++m_rejectedRequests;
        done({IngestStatus::Committed, 0, {}});
    });
    if (!queued) done({IngestStatus::Backpressure, retryAfter, "the capture's write queue is full; retry later"});
}

bool RunEngine::overloaded() const {
    const auto backlog = m_lastIngestId.load() - m_durableCursor.load() + m_pendingIngests.load();
    return backlog >= static_cast<std::int64_t>(m_config.maxBacklogRequests);
}

void RunEngine::pipelineLoop() {
    try {
        CaptureReader reader(m_config.capturePath);
        for (;;) {
            if (m_capture->pipelineFenced()) {
                if (!recoverPipeline()) return;
                continue;
            }
            const std::int64_t before = m_pipelineCursor.load();
            processBacklog(reader);
            if (m_pipelineCursor.load() != before) continue;
            if (m_stopping) {
                // The collector has stopped and every accepted request is committed: one last look.
                processBacklog(reader);
                return;
            }
            notePipelineProgress();
            std::unique_lock lock(m_mutex);
            m_wake.wait_for(lock, std::chrono::milliseconds(100));
        }
    } catch (const std::exception& e) {
        {
            std::lock_guard lock(m_mutex);
            m_pipelineError = e.what();
        }
        m_pipelineDead = true;
        std::fprintf(stderr,
                     "pipescope run: pipeline worker stopped: %s\n"
                     "  new requests are answered 503; the accepted ones stay in the ingest log and are processed "
                     "when the capture is continued\n",
                     e.what());
    }
}

bool RunEngine::recoverPipeline() {
    try {
        m_capture->flush(); // let everything queued before the failure go through (or fail)
    } catch (const StoreError&) {
    }
    DurablePoint durable;
    {
        std::lock_guard lock(m_mutex);
        durable = m_durable;
        m_undurable.clear();
    }
    // What was processed in memory after the durable point is redone.
    m_pipelineCursor = durable.cursor;
    m_processed = durable.processed;
    const auto now = std::chrono::steady_clock::now();
    if (!m_pipelinePaused || now - m_lastFailureReport >= std::chrono::seconds(10)) {
        m_lastFailureReport = now;
        std::fprintf(stderr,
                     "pipescope run: cannot write the capture (%s): the pipeline's output after request %lld was not "
                     "kept, so the pipeline is paused and redoes it once the capture can be written; accepted "
                     "requests are safe in the ingest log, new ones are answered 503 while the writes fail\n",
                     m_capture->lastError().c_str(), static_cast<long long>(durable.cursor));
    }
    m_pipelinePaused = true;
    // Failing again right where the last recovery resumed: the disk is still full; wait longer.
    m_recoveryDelay = durable.cursor == m_recoveredAt ? std::min(m_recoveryDelay * 2, std::chrono::milliseconds(2000))
                                                      : std::chrono::milliseconds(100);
    for (;;) {
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait_for(lock, m_recoveryDelay, [this] { return m_stopping.load(); });
        }
        if (m_stopping) return false;
        try {
            m_capture->resyncPipeline(durable.cursor);
            m_pipeline.reset();
            m_pipeline = std::make_unique<Pipeline>(m_config.schemasDir ? &m_schemas : nullptr, m_capture.get(),
                                                    m_config.pipeline);
            m_capture->flush();
            const CaptureReader reader(m_config.capturePath);
            m_pipeline->restore(reader, {}, m_config.capturePath.string());
            m_pipeline->report() = durable.report;
            {
                std::lock_guard lock(m_mutex);
                m_reportSnapshot = durable.report;
            }
            m_recoveredAt = durable.cursor;
            return true; // "paused" until a commit gets past this point (see processBacklog)
        } catch (const StoreError& e) {
            const auto later = std::chrono::steady_clock::now();
            if (later - m_lastFailureReport >= std::chrono::seconds(10)) {
                m_lastFailureReport = later;
                std::fprintf(stderr, "pipescope run: still cannot write the capture: %s\n", e.what());
            }
        }
        m_recoveryDelay = std::min(m_recoveryDelay * 2, std::chrono::milliseconds(2000));
    }
}

void RunEngine::processBacklog(CaptureReader& reader) {
    const auto requests = reader.ingestAfter(m_pipelineCursor.load(), 128);
    if (requests.empty()) return;
    for (const IngestRecord& request : requests) {
        RequestContext context;
        context.ingestId = request.id;
        // Kafka messages come with their own origin (kafka:<topic>:<partition>:<offset>).
        context.origin = request.path.rfind("kafka:", 0) == 0 ? request.path : "http:" + request.path;
        context.receivedAt = request.receivedAt;
        context.stream = streamFor(request);
        context.idempotencyKey = request.idempotencyKey;
        context.project = request.token;
        m_pipeline->processRequest(request.body, context);
        m_pipelineCursor = request.id;
        ++m_processed;
    }
    // One cursor per batch, queued after the batch's output: a crash before it commits leaves the
    // cursor behind, and the restart discards that output and processes the requests again. Its
    // commit makes the batch's report the point a failed commit later rolls back to.
    const std::int64_t cursor = requests.back().id;
    {
        std::lock_guard lock(m_mutex);
        m_reportSnapshot = m_pipeline->report();
        m_undurable.push_back({cursor, m_pipeline->lastSeq(), m_reportSnapshot, m_processed.load()});
    }
    m_capture->putState("pipeline_cursor", std::to_string(cursor), [this, cursor](const std::string& error) {
        std::lock_guard lock(m_mutex);
        while (!m_undurable.empty() && m_undurable.front().cursor <= cursor) {
            if (error.empty() && m_undurable.front().cursor == cursor) {
                m_durable = std::move(m_undurable.front());
                m_durableCursor = cursor;
                m_committedSeq = m_durable.lastSeq;
            }
            m_undurable.pop_front();
        }
    });
    for (auto& destination : m_destinations) destination->notify(m_pipeline->lastSeq());
    notePipelineProgress();
}

void RunEngine::notePipelineProgress() {
    if (m_pipelinePaused && m_durableCursor.load() > m_recoveredAt) {
        m_pipelinePaused = false;
        std::fprintf(stderr, "pipescope run: the capture can be written again: the pipeline resumed after request %lld\n",
                     static_cast<long long>(m_recoveredAt));
    }
}

RunStats RunEngine::stats() const {
    RunStats s;
    if (!m_opened) {
        s.pipelineState = "opening";
        return s;
    }
    s.requestsAccepted = m_accepted.load();
    s.requestsRejected = m_rejectedRequests.load();
    s.requestsProcessed = m_processed.load();
    s.backlog = static_cast<std::uint64_t>(
        std::max<std::int64_t>(0, m_lastIngestId.load() - m_durableCursor.load() + m_pendingIngests.load()));
    for (const auto& [status, count] : m_collector->stats().responsesByStatus)
        if (status > 400 && status != 404 && status != 405) s.refusedByStatus[status] = count; // 400: undecodable, counted apart
    s.failedCommits = m_capture->failedCommits();
    s.captureError = m_capture->lastError();
    if (m_pipelineDead) {
        std::lock_guard lock(m_mutex);
        s.captureError = m_pipelineError;
    }
    s.pipelineState = m_pipelineDead ? "stopped" : m_pipelinePaused ? "paused" : "running";
    {
        std::lock_guard lock(m_mutex);
        const RunReport& r = m_reportSnapshot;
        s.events = r.events;
        s.valid = r.valid;
        s.invalid = r.invalid;
        s.unplanned = r.unplanned;
        s.duplicates = r.dedup.duplicates;
        s.rejected = r.rejected;
        s.unparseable = r.unparseable;
        s.outcomes = r.outcomes();
    }
    s.committedSeq = m_committedSeq.load();
    for (const auto& destination : m_destinations) s.destinations.push_back(destination->stats());
    if (m_kafka) s.kafka = m_kafka->stats();
    return s;
}

RunReport RunEngine::report() const {
    RunReport report;
    if (!m_opened) return report;
    {
        std::lock_guard lock(m_mutex);
        report = m_reportSnapshot;
    }
    // The collector's part: undecodable bodies are dead letters the pipeline never saw, and
    // refusals kept nothing but are counted.
    report.fromCollector = true;
    if (m_config.schemasDir) {
        // As `check` reports it: which schemas the events were validated against.
        report.schemasDir = m_config.schemasDir->string();
        report.schemaCount = m_schemas.size();
    }
    report.undecodableRequests = m_rejectedRequests.load();
    report.unparseable += report.undecodableRequests;
    for (const auto& [status, count] : m_collector->stats().responsesByStatus)
        if (status > 400 && status != 404 && status != 405) report.refusedByStatus[status] = count;
    return report;
}

// ---------------------------------------------------------------------------------------------
// Snapshots for observers (observer.h)

void RunEngine::addObserver(PipelineObserver* observer) {
    std::lock_guard lock(m_observerMutex);
    if (std::find(m_observers.begin(), m_observers.end(), observer) == m_observers.end())
        m_observers.push_back(observer);
}

void RunEngine::removeObserver(PipelineObserver* observer) {
    std::lock_guard lock(m_observerMutex); // waits for a call in progress
    m_observers.erase(std::remove(m_observers.begin(), m_observers.end(), observer), m_observers.end());
}

std::shared_ptr<const PipelineSnapshot> RunEngine::takeSnapshot(const char* state) {
    const RunStats s = stats();
    auto snapshot = std::make_shared<PipelineSnapshot>();
    snapshot->takenAtMillis = nowMillis();
    snapshot->pipelineState = state ? std::string(state) : s.pipelineState;
    snapshot->captureError = s.captureError;
    snapshot->events = s.events;
    snapshot->outcomes = s.outcomes;
    snapshot->requestsAccepted = s.requestsAccepted;
    snapshot->requestsRejected = s.requestsRejected;
    snapshot->requestsProcessed = s.requestsProcessed;
    snapshot->refusedByStatus = s.refusedByStatus;
    snapshot->backlog = s.backlog;
    snapshot->committedSeq = s.committedSeq;
    snapshot->destinations = s.destinations;
    if (m_lastSnapshot && snapshot->takenAtMillis > m_lastSnapshot->takenAtMillis) {
        const double seconds = double(snapshot->takenAtMillis - m_lastSnapshot->takenAtMillis) / 1000.0;
        snapshot->eventsPerSecond = double(snapshot->events - m_lastSnapshot->events) / seconds;
        snapshot->requestsPerSecond =
            double(snapshot->requestsAccepted + snapshot->requestsRejected - m_lastSnapshot->requestsAccepted -
                   m_lastSnapshot->requestsRejected) /
            seconds;
    }
    return snapshot;
}

void RunEngine::publish(const std::shared_ptr<const PipelineSnapshot>& snapshot) {
    m_lastSnapshot = snapshot;
    std::lock_guard lock(m_observerMutex);
    for (PipelineObserver* observer : m_observers) observer->onSnapshot(snapshot);
}

void RunEngine::snapshotLoop() {
    constexpr auto kInterval = std::chrono::milliseconds(100);
    constexpr std::int64_t kHeartbeatMillis = 1000;
    const auto same = [](const PipelineSnapshot& a, const PipelineSnapshot& b) {
        if (a.pipelineState != b.pipelineState || a.events != b.events || a.backlog != b.backlog ||
            a.requestsAccepted != b.requestsAccepted || a.requestsRejected != b.requestsRejected ||
            a.requestsProcessed != b.requestsProcessed || a.committedSeq != b.committedSeq ||
            a.refusedByStatus != b.refusedByStatus || a.captureError != b.captureError ||
            a.destinations.size() != b.destinations.size())
            return false;
        for (std::size_t i = 0; i < a.destinations.size(); ++i) {
            const DestinationStats& x = a.destinations[i];
            const DestinationStats& y = b.destinations[i];
            if (x.state != y.state || x.deliveredEvents != y.deliveredEvents || x.lag != y.lag ||
                x.deadLetteredEvents != y.deadLetteredEvents || x.lastError != y.lastError)
                return false;
        }
        return true;
    };
    for (;;) {
        {
            std::unique_lock lock(m_snapshotMutex);
            if (m_snapshotWake.wait_for(lock, kInterval, [this] { return m_snapshotStop; })) return;
        }
        {
            std::lock_guard lock(m_observerMutex);
            if (m_observers.empty()) continue;
        }
        auto snapshot = takeSnapshot(nullptr);
        if (m_lastSnapshot && same(*snapshot, *m_lastSnapshot) &&
            snapshot->takenAtMillis - m_lastSnapshot->takenAtMillis < kHeartbeatMillis)
            continue;
        publish(snapshot);
    }
}

} // namespace pipescope
