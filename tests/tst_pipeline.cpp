// In-process tests of the engine's seams: Pipeline (counts that add up, restore from a capture),
// the capture-replay unit (progress, cancel, bad contents named), capture metadata, the shared
// config reader and JSON file loader, and RunEngine (open with progress and cancel, observers,
// stop draining every destination). Real SQLite captures in a temporary folder, real HTTP on
// loopback through libcurl.
#include <QTemporaryDir>
#include <QtTest>

#include <curl/curl.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/config_reader.h"
#include "config/json_file.h"
#include "pipeline/capture_metadata.h"
#include "pipeline/capture_replay.h"
#include "pipeline/pipeline.h"
#include "pipeline/run.h"
#include "schema/schema.h"
#include "store/capture_json.h"
#include "store/capture_store.h"

using namespace pipescope;
using nlohmann::json;

namespace {

std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

long post(const std::string& url, const std::string& body) {
    CURL* curl = curl_easy_init();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}

void writeFile(const std::filesystem::path& path, const std::string& content) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

// One schema: "order" needs a numeric amount.
std::filesystem::path writeSchemas(const std::filesystem::path& dir) {
    writeFile(dir / "schemas" / "order" / "1.json",
              R"({"type":"object","required":["amount"],"properties":{"amount":{"type":"number"}}})");
    return dir / "schemas";
}

// Six lines with one of each outcome: schema-valid, schema-invalid, unplanned, duplicate, rejected
// (no distinct id) and an unparseable batch element; plus one unparseable line (not an event).
const std::vector<std::string> kMixedLines{
    R"({"uuid":"u1","event":"order","distinct_id":"a","properties":{"amount":5}})",
    R"({"uuid":"u2","event":"order","distinct_id":"a","properties":{"amount":"5"}})",
    R"({"uuid":"u3","event":"clicked","distinct_id":"a","properties":{}})",
    R"({"uuid":"u1","event":"order","distinct_id":"a","properties":{"amount":5}})",
    R"({"uuid":"u4","event":"order","properties":{"amount":1}})",
    R"({"api_key":"k","batch":[{"uuid":"u5","event":"order","distinct_id":"b","properties":{"amount":2}},)"
    R"({"event":"overflow","distinct_id":"c","properties":{"n":1e400}}]})",
    R"({"event": )",
};

// Stamped with the current time: the dedup window runs on event time, and a restored key must be
// inside the window of the live clock.
std::string pageview(int i, const std::string& prefix) {
    static const std::string now = formatTimestamp(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    return json{{"api_key", "phc_test"},
                {"timestamp", now},
                {"event", "$pageview"},
                {"distinct_id", "user-" + std::to_string(i % 7)},
                {"uuid", prefix + "-" + std::to_string(i)},
                {"properties", {{"$lib", "web"}, {"$current_url", "https://shop.example/" + std::to_string(i)}}}}
        .dump();
}

// A capture of `count` pageviews, as `check --capture` writes it.
void writePageviews(const std::filesystem::path& capturePath, int count, const std::string& prefix) {
    CaptureWriter capture(capturePath, CaptureWriter::Options{.durability = Durability::Process});
    Pipeline pipeline(nullptr, &capture, PipelineOptions{});
    for (int i = 0; i < count; ++i)
        pipeline.processLine(pageview(i, prefix), Origin{prefix + ".ndjson", std::uint64_t(i + 1), -1}, false);
    pipeline.finish();
    capture.close();
}

class RecordingObserver final : public PipelineObserver {
public:
    void onSnapshot(std::shared_ptr<const PipelineSnapshot> snapshot) override {
        std::lock_guard lock(m_mutex);
        m_threads.insert(std::this_thread::get_id());
        m_snapshots.push_back(std::move(snapshot));
    }
    std::vector<std::shared_ptr<const PipelineSnapshot>> snapshots() const {
        std::lock_guard lock(m_mutex);
        return m_snapshots;
    }
    bool calledOn(std::thread::id id) const {
        std::lock_guard lock(m_mutex);
        return m_threads.count(id) > 0;
    }
    std::size_t count() const {
        std::lock_guard lock(m_mutex);
        return m_snapshots.size();
    }

private:
    mutable std::mutex m_mutex;
    std::vector<std::shared_ptr<const PipelineSnapshot>> m_snapshots;
    std::set<std::thread::id> m_threads;
};

} // namespace

class TestPipeline : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { curl_global_init(CURL_GLOBAL_DEFAULT); }
    void cleanupTestCase() { curl_global_cleanup(); }

    void outcomesAddUp_data();
    void outcomesAddUp();
    void restoreContinuesSeqsAndDedup();
    void replayReportsProgressAndCancels();
    void replayNamesABadDedupKey();
    void metadataRoundTrip();
    void metadataRefusesWhatItCannotRead();
    void recordJsonShape();
    void configErrorsKeepTheirField();
    void jsonFileErrorsSayWhere();
    void engineOpenReportsProgressAndCancels();
    void engineObserversSeeCountsThatAddUp();
    void engineStopDrainsEveryDestination();
    void engineDeadWorkerIsReported();

private:
    QTemporaryDir m_dir;
    std::filesystem::path path(const std::string& name) const { return std::filesystem::path(m_dir.path().toStdString()) / name; }
};

void TestPipeline::outcomesAddUp_data() {
    QTest::addColumn<QString>("policy");
    QTest::addColumn<int>("valid");
    QTest::addColumn<int>("invalid");
    QTest::newRow("allow: unplanned counted as valid") << "allow" << 3 << 1;
    QTest::newRow("warn: unplanned counted as valid") << "warn" << 3 << 1;
    QTest::newRow("dlq: unplanned counted as invalid") << "dlq" << 2 << 2;
}

void TestPipeline::outcomesAddUp() {
    QFETCH(QString, policy);
    QFETCH(int, valid);
    QFETCH(int, invalid);
    const SchemaRegistry schemas = SchemaRegistry::loadDirectory(writeSchemas(path("outcomes")));
    PipelineOptions options;
    options.unplanned = *parseUnplannedPolicy(policy.toStdString());
    Pipeline pipeline(&schemas, nullptr, options);
    std::uint64_t line = 0;
    for (const std::string& text : kMixedLines) pipeline.processLine(text, Origin{"mixed.ndjson", ++line, -1}, false);
    pipeline.finish();
    const RunReport& report = pipeline.report();

    // The policy's view nests unplanned events inside valid or invalid ...
    QCOMPARE(report.valid, std::uint64_t(valid));
    QCOMPARE(report.invalid, std::uint64_t(invalid));
    QCOMPARE(report.unplanned, std::uint64_t(1));
    QCOMPARE(report.valid + report.invalid, report.dedup.unique);
    // ... the outcomes are disjoint and add up to the events.
    const EventOutcomes o = report.outcomes();
    QCOMPARE(o.schemaValid, std::uint64_t(2)); // u1, u5
    QCOMPARE(o.schemaInvalid, std::uint64_t(1));
    QCOMPARE(o.unplanned, std::uint64_t(1));
    QCOMPARE(o.duplicates, std::uint64_t(1));
    QCOMPARE(o.rejected, std::uint64_t(1));
    QCOMPARE(o.unparseable, std::uint64_t(1)); // the element with 1e400; the broken line is no event
    QCOMPARE(report.events, std::uint64_t(7));
    QCOMPARE(o.total(), report.events);
    QCOMPARE(report.unparseable, std::uint64_t(2)); // dead letters: the element and the line

    const json reportJson = report.toJson();
    std::uint64_t sum = 0;
    for (const char* key : {"schema_valid", "schema_invalid", "unplanned", "duplicates", "rejected", "unparseable"})
        sum += reportJson["outcomes"][key].get<std::uint64_t>();
    QCOMPARE(sum, reportJson["inputs"]["events"].get<std::uint64_t>());
    QCOMPARE(reportJson["outcomes"]["total"].get<std::uint64_t>(), sum);
    // The keys reports had before are all still there, with their old meaning.
    QCOMPARE(reportJson["validation"]["valid"].get<int>(), valid);
    QCOMPARE(reportJson["validation"]["invalid"].get<int>(), invalid);
    QCOMPARE(reportJson["dlq"]["total"].get<std::uint64_t>(), report.dlqTotal());
}

void TestPipeline::restoreContinuesSeqsAndDedup() {
    const auto capturePath = path("restore.pipescope");
    {
        CaptureWriter capture(capturePath, CaptureWriter::Options{.durability = Durability::Process});
        Pipeline pipeline(nullptr, &capture, PipelineOptions{});
        pipeline.processLine(pageview(1, "r"), Origin{"a.ndjson", 1, -1}, false);
        pipeline.processLine(pageview(2, "r"), Origin{"a.ndjson", 2, -1}, false);
        pipeline.finish();
        capture.close();
    }
    const CaptureReader reader(capturePath);
    Pipeline resumed(nullptr, nullptr, PipelineOptions{});
    resumed.restore(reader, {}, capturePath.string());
    QCOMPARE(resumed.lastSeq(), std::int64_t(2));
    // An SDK's retry of an event the capture already holds is a duplicate after the restart.
    resumed.processLine(pageview(2, "r"), Origin{"b.ndjson", 1, -1}, false);
    resumed.processLine(pageview(3, "r"), Origin{"b.ndjson", 2, -1}, false);
    QCOMPARE(resumed.report().dedup.duplicates, std::uint64_t(1));
    QCOMPARE(resumed.report().dedup.unique, std::uint64_t(1));
    QCOMPARE(resumed.lastSeq(), std::int64_t(4));
    // The identity graph was rebuilt too: the users of the capture are known.
    QVERIFY(resumed.identityGraph().explain("user-1"));
}

void TestPipeline::replayReportsProgressAndCancels() {
    const auto capturePath = path("progress.pipescope");
    constexpr int kEvents = 10000;
    writePageviews(capturePath, kEvents, "p");
    const CaptureReader reader(capturePath);
    std::vector<ReplayProgress> seen;
    IdentityGraph graph;
    const std::int64_t last = replayCapture(reader, capturePath.string(), nullptr, graph, UnplannedPolicy::Allow,
                                            [&](const ReplayProgress& progress) {
                                                seen.push_back(progress);
                                                return true;
                                            });
    QCOMPARE(last, std::int64_t(kEvents));
    QVERIFY(seen.size() >= 2);
    for (std::size_t i = 1; i < seen.size(); ++i) QVERIFY(seen[i].events >= seen[i - 1].events);
    QCOMPARE(seen.back().events, std::int64_t(kEvents));
    QCOMPARE(seen.back().total, std::int64_t(kEvents));

    int calls = 0;
    IdentityGraph cancelled;
    QVERIFY_THROWS_EXCEPTION(ReplayCancelled,
                             replayCapture(reader, capturePath.string(), nullptr, cancelled, UnplannedPolicy::Allow,
                                           [&](const ReplayProgress&) { return ++calls < 2; }));
    QCOMPARE(calls, 2); // it stopped at the first "no"

    // The identity replay reads the options the capture records.
    const IdentityGraph replayed = replayIdentity(reader, capturePath.string());
    QCOMPARE(replayed.summary().persons, std::uint64_t(7));
}

void TestPipeline::replayNamesABadDedupKey() {
    const auto capturePath = path("badkey.pipescope");
    {
        CaptureWriter capture(capturePath, CaptureWriter::Options{.durability = Durability::Process});
        StoredEvent event;
        event.seq = 1;
        event.name = "$pageview";
        event.distinctId = "u";
        event.stream = "client";
        event.format = "posthog";
        event.properties = "{}";
        event.failures = "[]";
        event.raw = "{}";
        event.dedupKey = "fingerprint:not-hex";
        capture.append(std::move(event));
        capture.close();
    }
    const CaptureReader reader(capturePath);
    DedupWindow window{DedupOptions{}};
    IdentityGraph graph;
    try {
        replayCapture(reader, capturePath.string(), &window, graph, UnplannedPolicy::Allow);
        QFAIL("a fingerprint that is not one was accepted");
    } catch (const StoreError& e) {
        const QString message = QString::fromStdString(e.what());
        QVERIFY2(message.contains("badkey.pipescope") && message.contains("event 1") &&
                     message.contains("fingerprint:not-hex"),
                 e.what());
    }
}

void TestPipeline::metadataRoundTrip() {
    const auto capturePath = path("meta.pipescope");
    PipelineOptions options;
    options.unplanned = UnplannedPolicy::Dlq;
    options.correlate = {"order_id"};
    options.fingerprint = true;
    options.dedupOptions.windowMillis = 90 * 60 * 1000;
    options.dedupOptions.mode = DedupMode::Bloom;
    {
        CaptureWriter capture(capturePath, CaptureWriter::Options{.durability = Durability::Process});
        Pipeline pipeline(nullptr, &capture, options); // writes the metadata
        capture.close();
    }
    const CaptureReader reader(capturePath);
    QCOMPARE(reader.meta("unplanned_policy"), std::string("dlq")); // the key and text readers always had
    const CaptureMetadata metadata = readCaptureMetadata(reader, capturePath.string());
    QVERIFY(metadata.unplanned == UnplannedPolicy::Dlq);
    QVERIFY(metadata.correlationKeys == (std::vector<std::string>{"$session_id", "$device_id", "order_id"}));
    QVERIFY(metadata.dedupMode == DedupMode::Bloom);
    QCOMPARE(metadata.dedupWindowMillis, std::int64_t(90 * 60 * 1000));
    QVERIFY(metadata.fingerprint);
    QVERIFY(metadata.dedupEnabled);
}

void TestPipeline::metadataRefusesWhatItCannotRead() {
    const auto capturePath = path("badmeta.pipescope");
    {
        CaptureWriter capture(capturePath, CaptureWriter::Options{.durability = Durability::Process});
        capture.putMeta("correlation_keys", "{\"not\": \"an array\"}");
        capture.close();
    }
    const CaptureReader reader(capturePath);
    try {
        readCaptureMetadata(reader, capturePath.string());
        QFAIL("accepted correlation keys that are not an array");
    } catch (const StoreError& e) {
        const QString message = QString::fromStdString(e.what());
        QVERIFY2(message.contains("badmeta.pipescope") && message.contains("correlation_keys"), e.what());
    }
    // A capture without metadata (written before it existed) reads as the defaults.
    const auto bare = path("bare.pipescope");
    {
        CaptureWriter capture(bare, CaptureWriter::Options{.durability = Durability::Process});
        capture.close();
    }
    const CaptureMetadata defaults = readCaptureMetadata(CaptureReader(bare), bare.string());
    QVERIFY(defaults.unplanned == UnplannedPolicy::Allow);
    QVERIFY(defaults.correlationKeys == IdentityOptions{}.correlationKeys);
}

void TestPipeline::recordJsonShape() {
    StoredEvent event;
    event.seq = 3;
    event.name = "order";
    event.distinctId = "a";
    event.stream = "server";
    event.format = "segment";
    event.verdict = Verdict::Invalid;
    event.failures = R"([{"pointer":"/amount","keyword":"type","message":"m"}])";
    event.properties = R"({"amount":"5"})";
    event.originSource = "f.ndjson";
    event.originLine = 4;
    event.originIndex = 1;
    event.eventId = "m-1";
    event.idSource = "segment_message_id";
    event.timestamp = 0;
    const json e = event;
    QCOMPARE(e["verdict"].get<std::string>(), std::string("invalid"));
    QVERIFY(e["origin"] == (json{{"source", "f.ndjson"}, {"line", 4}, {"index", 1}}));
    QCOMPARE(e["properties"]["amount"].get<std::string>(), std::string("5")); // embedded, not a string
    QCOMPARE(e["failures"][0]["pointer"].get<std::string>(), std::string("/amount"));
    QCOMPARE(e["timestamp"].get<std::string>(), std::string("1970-01-01T00:00:00.000Z"));
    QCOMPARE(e["id_source"].get<std::string>(), std::string("segment_message_id"));
    QVERIFY(!e.contains("historical_migration"));

    DuplicateRecord duplicate;
    duplicate.eventSeq = 3;
    duplicate.key = "m-1";
    duplicate.keySource = "segment_message_id";
    duplicate.seen = 1000;
    duplicate.firstSeen = 400;
    duplicate.differences = "[]";
    const json d = duplicateJson(duplicate, event, std::nullopt);
    QCOMPARE(d["gap_ms"].get<std::int64_t>(), std::int64_t(600));
    QVERIFY(d["first_seq"].is_null()); // seen before the capture began
    QCOMPARE(d["name"].get<std::string>(), std::string("order"));
}

void TestPipeline::configErrorsKeepTheirField() {
    const json config = json::parse(R"({"destinations":[{"name":"w","type":"webhook"}]})");
    try {
        parseRunConfig(config, ".", "");
        QFAIL("a webhook without a url was accepted");
    } catch (const RunConfigError& e) {
        QCOMPARE(QString::fromStdString(e.field()), QString("destinations[0].url"));
        QCOMPARE(QString::fromStdString(e.message()), QString("required for type webhook"));
    }
    writeFile(path("cfg/pipescope.json"), R"({"collector": {"port": 8089.5}})");
    try {
        loadRunConfig(path("cfg/pipescope.json"));
        QFAIL("a fractional port was accepted");
    } catch (const RunConfigError& e) {
        QCOMPARE(QString::fromStdString(e.field()), QString("collector.port"));
        QCOMPARE(QString::fromStdString(e.file()), QString::fromStdString(path("cfg/pipescope.json").string()));
        QVERIFY2(QString::fromStdString(e.what()).startsWith(QString::fromStdString(path("cfg/pipescope.json").string()) +
                                                             ": collector.port: "),
                 e.what());
    }
    // The reader itself: null is "not set", unknown keys are refused with the list of known ones.
    const json object = json::parse(R"({"a": null, "b": 3, "typo": 1})");
    const ConfigReader reader(object, "section");
    QVERIFY(!reader.text("a"));
    QCOMPARE(*reader.integer("b", 0, 5), std::int64_t(3));
    try {
        reader.allowOnly({"a", "b"});
        QFAIL("an unknown key was accepted");
    } catch (const ConfigError& e) {
        QCOMPARE(QString::fromStdString(e.field()), QString("section.typo"));
        QVERIFY(QString::fromStdString(e.message()).contains("known: a, b"));
    }
}

void TestPipeline::jsonFileErrorsSayWhere() {
    writeFile(path("json/broken.json"), "{\n  \"a\": 1,\n  \"b\": }\n");
    try {
        parseJsonFile(path("json/broken.json"));
        QFAIL("broken JSON was accepted");
    } catch (const JsonFileError& e) {
        QCOMPARE(e.line(), std::size_t(3));
        QCOMPARE(e.column(), std::size_t(8));
        QVERIFY2(QString::fromStdString(e.what()).contains("broken.json: line 3, column 8: not valid JSON"), e.what());
    }
    QVERIFY_THROWS_EXCEPTION(JsonFileError, parseJsonFile(path("json/missing.json")));
    writeFile(path("json/good.json"), R"({"a": [1, 2]})");
    QCOMPARE(parseJsonFile(path("json/good.json"))["a"].size(), std::size_t(2));
}

void TestPipeline::engineOpenReportsProgressAndCancels() {
    const auto capturePath = path("engine-open.pipescope");
    constexpr int kEvents = 9000;
    writePageviews(capturePath, kEvents, "o");
    RunConfig config = defaultRunConfig(path("engine-open"));
    config.capturePath = capturePath;
    config.collector.port = 0;
    config.durability = Durability::Process;
    {
        RunEngine engine(config);
        QVERIFY(!engine.opened());
        QCOMPARE(QString::fromStdString(engine.stats().pipelineState), QString("opening"));
        QVERIFY_THROWS_EXCEPTION(ReplayCancelled, engine.open([](const ReplayProgress&) { return false; }));
        QVERIFY(!engine.opened());
        // Cancelled: the capture is closed again (another writer may open it) and open() can retry.
        std::int64_t lastSeen = 0, total = 0;
        engine.open([&](const ReplayProgress& progress) {
            lastSeen = progress.events;
            total = progress.total;
            return true;
        });
        QVERIFY(engine.opened());
        QVERIFY(engine.resumed());
        QCOMPARE(lastSeen, std::int64_t(kEvents));
        QCOMPARE(total, std::int64_t(kEvents));
        engine.start();
        QCOMPARE(post("http://127.0.0.1:" + std::to_string(engine.port()) + "/capture/", pageview(kEvents - 1, "o")),
                 200L);
        QTRY_COMPARE_WITH_TIMEOUT(engine.stats().requestsProcessed, std::uint64_t(1), 10000);
        engine.stop();
        // The retried event was known from the capture: a duplicate, not a new event.
        QCOMPARE(engine.report().dedup.duplicates, std::uint64_t(1));
        QCOMPARE(engine.report().dedup.unique, std::uint64_t(0));
    }
    QCOMPARE(CaptureReader(capturePath).eventCount(), std::int64_t(kEvents + 1));
}

void TestPipeline::engineObserversSeeCountsThatAddUp() {
    RunConfig config = defaultRunConfig(path("engine-observe"));
    config.capturePath = path("engine-observe.pipescope");
    config.collector.port = 0;
    config.durability = Durability::Process;
    config.schemasDir = writeSchemas(path("engine-observe"));
    RecordingObserver observer;
    RunEngine engine(config);
    engine.addObserver(&observer);
    engine.start();
    const std::string url = "http://127.0.0.1:" + std::to_string(engine.port());
    QCOMPARE(post(url + "/capture/", R"({"api_key":"k","event":"order","distinct_id":"a","uuid":"o1","properties":{"amount":1}})"), 200L);
    QCOMPARE(post(url + "/capture/", R"({"api_key":"k","event":"order","distinct_id":"a","uuid":"o2","properties":{"amount":"x"}})"), 200L);
    QCOMPARE(post(url + "/capture/", R"({"api_key":"k","event":"clicked","distinct_id":"a","uuid":"o3"})"), 200L);
    QCOMPARE(post(url + "/capture/", R"({"api_key":"k","event":"order","distinct_id":"a","uuid":"o1","properties":{"amount":1}})"), 200L);
    // A live snapshot with every event processed and committed arrives without being asked for.
    QTRY_VERIFY_WITH_TIMEOUT(
        [&] {
            const auto all = observer.snapshots();
            return !all.empty() && all.back()->events == 4 && all.back()->committedSeq == 4;
        }(),
        10000);
    const auto live = observer.snapshots().back();
    QCOMPARE(QString::fromStdString(live->pipelineState), QString("running"));
    QCOMPARE(live->outcomes.schemaValid, std::uint64_t(1));
    QCOMPARE(live->outcomes.schemaInvalid, std::uint64_t(1));
    QCOMPARE(live->outcomes.unplanned, std::uint64_t(1));
    QCOMPARE(live->outcomes.duplicates, std::uint64_t(1));
    QCOMPARE(live->outcomes.total(), live->events);
    QCOMPARE(live->requestsAccepted, std::uint64_t(4));
    QCOMPARE(live->backlog, std::uint64_t(0));
    QVERIFY(!observer.calledOn(std::this_thread::get_id())); // from the engine's own thread

    engine.stop();
    // The report says what it validated against, as check's does.
    QCOMPARE(engine.report().schemasDir, config.schemasDir->string());
    QVERIFY(engine.report().schemaCount > 0);
    const auto last = observer.snapshots().back();
    QCOMPARE(QString::fromStdString(last->pipelineState), QString("finished"));
    QCOMPARE(last->events, std::uint64_t(4));
    // Removed: never called again.
    engine.removeObserver(&observer);
    const std::size_t seen = observer.count();
    engine.stop();
    QCOMPARE(observer.count(), seen);
}

void TestPipeline::engineStopDrainsEveryDestination() {
    RunConfig config = defaultRunConfig(path("engine-drain"));
    config.capturePath = path("engine-drain.pipescope");
    config.collector.port = 0;
    config.durability = Durability::Process;
    for (const char* name : {"first", "second", "third"}) {
        DestinationConfig destination;
        destination.name = name;
        destination.type = "ndjson";
        destination.path = path(std::string("engine-drain-") + name + ".ndjson").string();
        destination.flushIntervalMillis = 600000; // only the drain at stop() sends the partial batch
        destination.batchSize = 1000;
        config.destinations.push_back(destination);
    }
    {
        RunEngine engine(config);
        engine.start();
        const std::string url = "http://127.0.0.1:" + std::to_string(engine.port()) + "/capture/";
        for (int i = 0; i < 5; ++i) QCOMPARE(post(url, pageview(i, "d")), 200L);
        QTRY_COMPARE_WITH_TIMEOUT(engine.stats().requestsProcessed, std::uint64_t(5), 10000);
        engine.stop();
        for (const DestinationStats& d : engine.stats().destinations) {
            QCOMPARE(d.deliveredEvents, std::int64_t(5));
            QCOMPARE(d.lag, std::int64_t(0));
        }
    }
    for (const char* name : {"first", "second", "third"}) {
        std::ifstream in(path(std::string("engine-drain-") + name + ".ndjson"));
        int lines = 0;
        for (std::string line; std::getline(in, line);) ++lines;
        QCOMPARE(lines, 5);
    }
}

void TestPipeline::engineDeadWorkerIsReported() {
    RunConfig config = defaultRunConfig(path("engine-dead"));
    config.capturePath = path("engine-dead.pipescope");
    config.collector.port = 0;
    config.durability = Durability::Process;
    RecordingObserver observer;
    RunEngine engine(config);
    engine.addObserver(&observer);
    engine.start();
    const std::string url = "http://127.0.0.1:" + std::to_string(engine.port()) + "/capture/";
    QCOMPARE(post(url, pageview(1, "dead")), 200L);
    QTRY_COMPARE_WITH_TIMEOUT(engine.stats().requestsProcessed, std::uint64_t(1), 10000);
    // Someone else breaks the capture under the engine: the pipeline worker cannot read the
    // ingest log any more and stops.
    sqlite3* db = nullptr;
    QCOMPARE(sqlite3_open(config.capturePath.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    QCOMPARE(sqlite3_exec(db, "ALTER TABLE ingest_log RENAME TO ingest_log_gone", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    // It shows: in the stats, in the observers' snapshots, and as 503s instead of a growing backlog.
    QTRY_COMPARE_WITH_TIMEOUT(QString::fromStdString(engine.stats().pipelineState), QString("stopped"), 10000);
    QVERIFY(!engine.stats().captureError.empty());
    QCOMPARE(post(url, pageview(2, "dead")), 503L);
    QTRY_VERIFY_WITH_TIMEOUT(observer.count() > 0 && observer.snapshots().back()->pipelineState == "stopped", 10000);
    QCOMPARE(engine.stats().backlog, std::uint64_t(0));
    try {
        engine.stop();
    } catch (const StoreError&) {
        // Closing a capture whose tables were renamed under it may fail; the point is above.
    }
}

QTEST_GUILESS_MAIN(TestPipeline)
#include "tst_pipeline.moc"
