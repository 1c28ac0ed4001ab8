#include "pipeline/run.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

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

// A config reader that names the field of every error and refuses keys it does not know (a
// misspelt "destinatons" must not silently mean "no destinations").
class ConfigObject {
public:
    ConfigObject(const json& value, std::string where, std::set<std::string> known) : m_value(value), m_where(std::move(where)) {
        if (!value.is_object()) throw RunConfigError((m_where.empty() ? "the config" : m_where) + ": expected an object");
        for (const auto& [key, _] : value.items())
            if (!known.count(key)) {
                std::string list;
                for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
                throw RunConfigError(field(key.c_str()) + ": unknown setting (known: " + list + ")");
            }
    }
    const json* find(const char* key) const {
        const auto it = m_value.find(key);
        return it == m_value.end() || it->is_null() ? nullptr : &*it;
    }
    std::string field(const char* key) const { return m_where.empty() ? key : m_where + "." + key; }
    std::optional<std::string> text(const char* key) const {
        const json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_string()) throw RunConfigError(field(key) + ": expected a string");
        return value->get<std::string>();
    }
    template <typename T>
    std::optional<T> number(const char* key, T min, T max) const {
        const json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_number()) throw RunConfigError(field(key) + ": expected a number");
        const double d = value->get<double>();
        if (d < static_cast<double>(min) || d > static_cast<double>(max))
            throw RunConfigError(field(key) + ": " + value->dump() + " is out of range [" + std::to_string(min) +
                                 ", " + std::to_string(max) + "]");
        return static_cast<T>(d);
    }
    std::optional<bool> boolean(const char* key) const {
        const json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_boolean()) throw RunConfigError(field(key) + ": expected true or false");
        return value->get<bool>();
    }
    std::vector<std::string> strings(const char* key) const {
        const json* value = find(key);
        if (!value) return {};
        if (!value->is_array()) throw RunConfigError(field(key) + ": expected an array of strings");
        std::vector<std::string> out;
        for (const auto& item : *value) {
            if (!item.is_string() || item.get<std::string>().empty())
                throw RunConfigError(field(key) + ": expected non-empty strings, got " + item.dump());
            out.push_back(item.get<std::string>());
        }
        return out;
    }
    std::optional<std::int64_t> duration(const char* key) const {
        const auto spec = text(key);
        if (!spec) return std::nullopt;
        std::string error;
        const auto millis = parseDurationMillis(*spec, &error);
        if (!millis) throw RunConfigError(field(key) + ": " + error);
        return millis;
    }

private:
    const json& m_value;
    std::string m_where;
};

std::filesystem::path resolved(const std::filesystem::path& base, const std::string& path) {
    const std::filesystem::path p(path);
    return p.is_absolute() ? p : base / p;
}

std::string newCaptureName() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char name[64];
    std::strftime(name, sizeof name, "pipescope-%Y%m%d-%H%M%S.pipescope", &utc);
    return name;
}

Stream parseStreamSetting(const std::string& field, const json& value) {
    const auto stream = value.is_string() ? parseStream(value.get<std::string>()) : std::nullopt;
    if (!stream || *stream == Stream::Unknown)
        throw RunConfigError(field + ": expected \"client\" or \"server\", got " + value.dump());
    return *stream;
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

RunConfig defaultRunConfig(const std::filesystem::path& directory) {
    RunConfig config;
    config.capturePath = directory / newCaptureName();
    std::error_code ec;
    if (std::filesystem::is_directory(directory / "schemas", ec)) config.schemasDir = directory / "schemas";
    return config;
}

RunConfig parseRunConfig(const json& value, const std::filesystem::path& baseDir, const std::string& where) {
    RunConfig config = defaultRunConfig(baseDir);
    config.schemasDir.reset();
    const ConfigObject root(value, where,
                            {"collector", "streams", "capture", "schemas", "unplanned", "dedup", "identity",
                             "destinations", "max_backlog_requests", "stats_interval", "durability", "$comment"});
    if (const json* collector = root.find("collector")) {
        const ConfigObject c(*collector, root.field("collector"),
                             {"address", "port", "max_body_bytes", "max_decompressed_bytes", "max_in_flight_bytes",
                              "tokens", "threads", "connection_limit", "per_ip_connection_limit",
                              "connection_timeout_seconds", "retry_after_seconds", "allowed_hosts"});
        CollectorConfig& cc = config.collector;
        if (auto v = c.text("address")) cc.bindAddress = *v;
        if (auto v = c.number<int>("port", 0, 65535)) cc.port = static_cast<std::uint16_t>(*v);
        if (auto v = c.number<std::size_t>("max_body_bytes", 1024, std::size_t(1) << 34)) cc.maxBodyBytes = *v;
        if (auto v = c.number<std::size_t>("max_decompressed_bytes", 1024, std::size_t(1) << 36))
            cc.maxDecompressedBytes = *v;
        if (auto v = c.number<std::size_t>("max_in_flight_bytes", 1 << 20, std::size_t(1) << 36))
            cc.maxInFlightBytes = *v;
        cc.tokens = c.strings("tokens");
        if (auto v = c.number<unsigned>("threads", 1, 64)) cc.threads = *v;
        if (auto v = c.number<unsigned>("connection_limit", 1, 100000)) cc.connectionLimit = *v;
        if (auto v = c.number<unsigned>("per_ip_connection_limit", 0, 100000)) cc.perIpConnectionLimit = *v;
        cc.allowedHosts = c.strings("allowed_hosts");
        if (auto v = c.number<unsigned>("connection_timeout_seconds", 1, 3600)) cc.connectionTimeoutSeconds = *v;
        if (auto v = c.number<int>("retry_after_seconds", 1, 3600)) cc.retryAfterSeconds = *v;
    }
    if (const json* streams = root.find("streams")) {
        const ConfigObject s(*streams, root.field("streams"), {"tokens", "paths"});
        for (const auto& [key, target] : std::initializer_list<std::pair<const char*, std::map<std::string, Stream>*>>{
                 {"tokens", &config.streamByToken}, {"paths", &config.streamByPath}}) {
            const json* map = s.find(key);
            if (!map) continue;
            if (!map->is_object()) throw RunConfigError(s.field(key) + ": expected an object of name: \"client\"|\"server\"");
            for (const auto& [name, stream] : map->items())
                (*target)[name] = parseStreamSetting(s.field(key) + "." + name, stream);
        }
    }
    if (auto capture = root.text("capture")) config.capturePath = resolved(baseDir, *capture);
    if (auto schemas = root.text("schemas")) config.schemasDir = resolved(baseDir, *schemas);
    if (auto unplanned = root.text("unplanned")) {
        const auto policy = parseUnplannedPolicy(*unplanned);
        if (!policy) throw RunConfigError(root.field("unplanned") + ": expected allow, warn or dlq, got \"" + *unplanned + "\"");
        config.pipeline.unplanned = *policy;
    }
    if (const json* dedup = root.find("dedup")) {
        const ConfigObject d(*dedup, root.field("dedup"),
                             {"enabled", "window", "mode", "max_keys", "bloom_keys", "bloom_fp_rate", "fingerprint"});
        DedupOptions& o = config.pipeline.dedupOptions;
        if (auto v = d.boolean("enabled")) config.pipeline.dedup = *v;
        if (auto v = d.duration("window")) o.windowMillis = *v;
        if (auto v = d.text("mode")) {
            if (*v == "exact") o.mode = DedupMode::Exact;
            else if (*v == "bloom") o.mode = DedupMode::Bloom;
            else throw RunConfigError(d.field("mode") + ": expected \"exact\" or \"bloom\", got \"" + *v + "\"");
        }
        if (auto v = d.number<std::size_t>("max_keys", 1, std::size_t(1) << 32)) o.maxKeys = *v;
        if (auto v = d.number<std::size_t>("bloom_keys", 1, std::size_t(1) << 34)) o.bloomExpectedKeys = *v;
        if (auto v = d.number<double>("bloom_fp_rate", 1e-9, 0.5)) o.bloomFalsePositiveRate = *v;
        if (auto v = d.boolean("fingerprint")) config.pipeline.fingerprint = *v;
    }
    if (const json* identity = root.find("identity")) {
        const ConfigObject i(*identity, root.field("identity"), {"correlate"});
        config.pipeline.correlate = i.strings("correlate");
    }
    if (const json* destinations = root.find("destinations")) {
        try {
            config.destinations = parseDestinationConfigs(*destinations, root.field("destinations"));
            for (DestinationConfig& destination : config.destinations)
                if (!destination.path.empty()) destination.path = resolved(baseDir, destination.path).string();
        } catch (const DestinationConfigError& e) {
            throw RunConfigError(e.what());
        }
    }
    if (auto v = root.number<std::size_t>("max_backlog_requests", 1, std::size_t(1) << 32)) config.maxBacklogRequests = *v;
    if (auto v = root.duration("stats_interval")) config.statsIntervalMillis = *v;
    if (auto v = root.text("durability")) {
        const auto durability = parseDurability(*v);
        if (!durability)
            throw RunConfigError(root.field("durability") + ": expected \"full\" (fsync every commit) or \"process\", got \"" +
                                 *v + "\"");
        config.durability = *durability;
    }
    return config;
}

RunConfig loadRunConfig(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw RunConfigError(file.string() + ": cannot read the config file");
    std::stringstream text;
    text << in.rdbuf();
    const std::string content = text.str();
    json value;
    try {
        value = json::parse(content);
    } catch (const json::parse_error& e) {
        std::size_t line = 1, column = 1;
        for (std::size_t i = 0; i + 1 < e.byte && i < content.size(); ++i) {
            if (content[i] == '\n') ++line, column = 1;
            else ++column;
        }
        throw RunConfigError(file.string() + ": line " + std::to_string(line) + ", column " + std::to_string(column) +
                             ": not valid JSON: " + e.what());
    }
    const std::filesystem::path base = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    try {
        return parseRunConfig(value, base, "");
    } catch (const RunConfigError& e) {
        throw RunConfigError(file.string() + ": " + e.what());
    }
}

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
    if (m_config.schemasDir) m_schemas = SchemaRegistry::loadDirectory(*m_config.schemasDir);
    std::error_code ec;
    m_resumed = std::filesystem::exists(m_config.capturePath, ec);
    CaptureWriter::Options options;
    options.replaceExisting = false; // a run never destroys a capture: it continues it
    options.resumeExisting = true;
    options.durability = m_config.durability;
    m_capture = std::make_unique<CaptureWriter>(m_config.capturePath, options);
    m_pipeline = std::make_unique<Pipeline>(m_config.schemasDir ? &m_schemas : nullptr, m_capture.get(),
                                            m_config.pipeline);
    if (m_resumed) {
        m_capture->flush(); // the reader below must see the capture as reopened
        const CaptureReader reader(m_config.capturePath);
        m_pipeline->restore(reader);
        if (const auto cursor = reader.state("pipeline_cursor")) {
            std::int64_t value = 0;
            const auto [end, ec] = std::from_chars(cursor->data(), cursor->data() + cursor->size(), value);
            if (ec != std::errc() || end != cursor->data() + cursor->size())
                throw StoreError(m_config.capturePath.string() + ": state 'pipeline_cursor' is not a request id");
            m_pipelineCursor = value;
        }
        m_lastIngestId = reader.ingestCount();
    }
    m_durable.cursor = m_pipelineCursor.load();
    m_durable.report = m_pipeline->report();
    m_durableCursor = m_durable.cursor;
    for (const DestinationConfig& destination : m_config.destinations) {
        m_feeds.push_back(std::make_unique<CaptureFeed>(m_config.capturePath));
        m_logs.push_back(std::make_unique<CaptureDeliveryLog>(*m_capture, m_config.capturePath));
        m_destinations.push_back(std::make_unique<DestinationWorker>(destination, *m_feeds.back(), *m_logs.back()));
    }
    m_collector = std::make_unique<Collector>(m_config.collector, *this);
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
    m_started = true;
    for (auto& destination : m_destinations) destination->start();
    m_worker = std::thread([this] { pipelineLoop(); });
    try {
        m_collector->start();
    } catch (...) {
        stop();
        throw;
    }
}

void RunEngine::stop() {
    if (m_stopped) return;
    m_stopped = true;
    if (m_started) {
        // In order: no new requests; every accepted one processed; destinations flushed.
        m_collector->stop();
        m_stopping = true;
        m_wake.notify_all();
        if (m_worker.joinable()) m_worker.join();
        try {
            m_capture->flush();
        } catch (const StoreError&) {
            // Reported by close() below; destinations still flush what is in the file.
        }
        for (auto& destination : m_destinations) destination->notify(m_pipeline->lastSeq());
        for (auto& destination : m_destinations) destination->stop(true);
    }
    m_pipeline->finish();
    {
        std::lock_guard lock(m_mutex);
        m_reportSnapshot = m_pipeline->report();
    }
    try {
        m_capture->close();
    } catch (const StoreError& e) {
        throw StoreError(std::string(e.what()) +
                         " — every acknowledged request is in the capture's ingest log and is processed when the "
                         "capture is continued (pipescope-cli run --capture " +
                         m_config.capturePath.string() + ")");
    }
}

std::uint16_t RunEngine::port() const { return m_collector->port(); }

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
            m_pipeline->restore(reader);
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
        context.origin = "http:" + request.path;
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
        m_undurable.push_back({cursor, m_reportSnapshot, m_processed.load()});
    }
    m_capture->putState("pipeline_cursor", std::to_string(cursor), [this, cursor](const std::string& error) {
        std::lock_guard lock(m_mutex);
        while (!m_undurable.empty() && m_undurable.front().cursor <= cursor) {
            if (error.empty() && m_undurable.front().cursor == cursor) {
                m_durable = std::move(m_undurable.front());
                m_durableCursor = cursor;
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
    }
    for (const auto& destination : m_destinations) s.destinations.push_back(destination->stats());
    return s;
}

RunReport RunEngine::report() const {
    RunReport report;
    {
        std::lock_guard lock(m_mutex);
        report = m_reportSnapshot;
    }
    // The collector's part: undecodable bodies are dead letters the pipeline never saw, and
    // refusals kept nothing but are counted.
    report.fromCollector = true;
    report.undecodableRequests = m_rejectedRequests.load();
    report.unparseable += report.undecodableRequests;
    for (const auto& [status, count] : m_collector->stats().responsesByStatus)
        if (status > 400 && status != 404 && status != 405) report.refusedByStatus[status] = count;
    return report;
}

std::string RunEngine::statsLine(double intervalSeconds) {
    const RunStats s = stats();
    const double rate = intervalSeconds > 0 ? double(s.events - m_lastEventsForRate) / intervalSeconds : 0.0;
    m_lastEventsForRate = s.events;
    char head[512];
    std::snprintf(head, sizeof head,
                  "stats: %.0f events/s | requests %llu accepted, %llu undecodable, backlog %llu | events %llu: "
                  "%llu valid, %llu invalid, %llu unplanned, %llu duplicates, %llu rejected",
                  rate, static_cast<unsigned long long>(s.requestsAccepted),
                  static_cast<unsigned long long>(s.requestsRejected), static_cast<unsigned long long>(s.backlog),
                  static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.valid),
                  static_cast<unsigned long long>(s.invalid), static_cast<unsigned long long>(s.unplanned),
                  static_cast<unsigned long long>(s.duplicates), static_cast<unsigned long long>(s.rejected));
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
    for (const DestinationStats& d : s.destinations) {
        line += " | " + d.name + ": " + std::to_string(d.deliveredEvents) + " delivered, " +
                std::to_string(d.deadLetteredEvents) + " dead, lag " + std::to_string(d.lag) + ", " +
                std::string(toString(d.state));
        if (!d.lastError.empty() && d.state != DestinationState::Ok) line += " (" + d.lastError.substr(0, 80) + ")";
    }
    return line;
}

} // namespace pipescope
