// Kafka as a source, against librdkafka's mock cluster on loopback: real Kafka protocol, real
// librdkafka clients on both sides, and kcat (Debian's) as the third-party producer.
#include <QProcess>
#include <QtTest>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <QTemporaryDir>

#include "kafka/kafka_source.h"
#include "kafka/mock_cluster.h"
#include "pipeline/run.h"
#include "store/capture_store.h"

using namespace pipescope;
using namespace std::chrono_literals;

namespace {

// An IngestSink that commits on its own thread, a little later, as the capture's writer does,
// and refuses (as a 429 would) the first attempt of every `refuseEvery`-th message.
class DelayedSink final : public IngestSink {
public:
    explicit DelayedSink(int refuseEvery = 0) : m_refuseEvery(refuseEvery), m_thread([this] { run(); }) {}
    ~DelayedSink() override {
        {
            std::lock_guard guard(m_mutex);
            m_stop = true;
        }
        m_wake.notify_all();
        m_thread.join();
    }
    void ingest(IngestRequest request, Completion done) override {
        std::lock_guard guard(m_mutex);
        const bool refuse = m_refuseEvery > 0 && ++m_seen % m_refuseEvery == 0 && !m_refused.count(request.path);
        if (refuse) {
            m_refused.insert(request.path);
            done({IngestStatus::Backpressure, 1, "backlog full (test)"});
            return;
        }
        m_queue.emplace_back(std::move(request), std::move(done));
        m_wake.notify_all();
    }
    void reject(RejectedRequest, Completion done) override { done({IngestStatus::Committed, 0, {}}); }
    bool overloaded() const override { return false; }

    std::map<std::string, int> committedByPath() const {
        std::lock_guard guard(m_mutex);
        return m_committed;
    }
    std::vector<IngestRequest> requests() const {
        std::lock_guard guard(m_mutex);
        return m_requests;
    }
    std::size_t committedCount() const {
        std::lock_guard guard(m_mutex);
        return m_requests.size();
    }

private:
    void run() {
        std::unique_lock lock(m_mutex);
        for (;;) {
            m_wake.wait(lock, [&] { return m_stop || !m_queue.empty(); });
            if (m_stop) return;
            auto batch = std::move(m_queue);
            m_queue.clear();
            lock.unlock();
            std::this_thread::sleep_for(2ms); // a group commit
            lock.lock();
            for (auto& [request, done] : batch) {
                ++m_committed[request.path];
                m_requests.push_back(request);
                lock.unlock();
                done({IngestStatus::Committed, 0, {}});
                lock.lock();
            }
        }
    }

    int m_refuseEvery;
    mutable std::mutex m_mutex;
    std::condition_variable m_wake;
    std::deque<std::pair<IngestRequest, Completion>> m_queue;
    std::map<std::string, int> m_committed;
    std::vector<IngestRequest> m_requests;
    std::set<std::string> m_refused;
    std::uint64_t m_seen = 0;
    bool m_stop = false;
    std::thread m_thread;
};

// Produces messages with librdkafka (headers optional), waiting for every delivery report.
void produce(const std::string& brokers, const std::string& topic,
             const std::vector<std::tuple<int, std::string, std::string>>& messages /* partition, value, idempotency key */) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
    rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    QVERIFY2(producer, error);
    for (const auto& [partition, value, key] : messages) {
        rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
        if (!key.empty()) rd_kafka_header_add(headers, "X-Idempotency-Key", -1, key.data(), static_cast<ssize_t>(key.size()));
        const rd_kafka_resp_err_t err =
            rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        if (err) rd_kafka_headers_destroy(headers);
        QCOMPARE(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    QCOMPARE(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(producer);
}

// The group's committed offsets of `topic`, partitions 0..n-1.
std::vector<std::int64_t> committedOffsets(const std::string& brokers, const std::string& group, const std::string& topic,
                                           int partitions) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), error, sizeof error);
    rd_kafka_conf_set(conf, "group.id", group.c_str(), error, sizeof error);
    rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
    std::vector<std::int64_t> offsets;
    if (rd_kafka_committed(consumer, list, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int p = 0; p < list->cnt; ++p) offsets.push_back(list->elems[p].offset);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return offsets;
}

template <typename Predicate>
bool waitFor(Predicate predicate, std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!predicate()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

const std::map<std::string, std::string> kShortSession{{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};

std::string posthogEvent(int i) {
    return R"({"event":"order_completed","distinct_id":"user-)" + std::to_string(i % 17) + R"(","uuid":"u-)" +
           std::to_string(i) + R"(","api_key":"phc_kafka","properties":{"amount":)" + std::to_string(i) + "}}";
}

} // namespace

class TestKafka : public QObject {
    Q_OBJECT

private slots:
    void topicLists() {
        const auto topics = parseTopicList("client_events:6,server_events,dlq:1");
        QCOMPARE(topics.size(), std::size_t(3));
        QCOMPARE(topics[0].first, std::string("client_events"));
        QCOMPARE(topics[0].second, 6);
        QCOMPARE(topics[1].second, 1);
        for (const char* bad : {"a:0", "a:x", "a b:2", ",", "a,,b", "a:100001"}) {
            bool threw = false;
            try {
                parseTopicList(bad);
            } catch (const KafkaError& e) {
                threw = std::string(e.what()).rfind("--topics: ", 0) == 0;
            }
            QVERIFY2(threw, bad);
        }
    }

    void confluentFramingAndRequests() {
        const std::string framed = std::string("\0\0\0\x01\x2c", 5) + posthogEvent(1);
        const KafkaValue value = unframeConfluent(framed);
        QCOMPARE(value.schemaId, std::optional<std::uint32_t>(300));
        QCOMPARE(std::string(value.payload), posthogEvent(1));
        QVERIFY(!unframeConfluent(posthogEvent(1)).schemaId);
        QVERIFY(!unframeConfluent(std::string("\0\1", 2)).schemaId); // too short to be framed

        std::optional<std::uint32_t> schemaId;
        const IngestRequest request =
            KafkaSource::requestFor({"web", Stream::Client, "auto"}, 2, 41, framed, std::string("key-1"), 1764000000000, &schemaId);
        QCOMPARE(request.path, std::string("kafka:web:2:41"));
        QCOMPARE(request.body, posthogEvent(1));
        QCOMPARE(request.token, std::string("phc_kafka"));
        QCOMPARE(request.idempotencyKey, std::optional<std::string>("key-1"));
        QCOMPARE(request.receivedAtMillis, std::int64_t(1764000000000));
        QVERIFY(request.vendor == Vendor::PostHog);
        QCOMPARE(schemaId, std::optional<std::uint32_t>(300));
        const IngestRequest segment = KafkaSource::requestFor(
            {"srv", std::nullopt, "auto"}, 0, 0,
            R"({"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","writeKey":"wk_1"})", {}, 0);
        QVERIFY(segment.vendor == Vendor::Segment);
        QCOMPARE(segment.token, std::string("wk_1"));
        // Not JSON: passed on as it is (the pipeline dead-letters it with the reason).
        QCOMPARE(KafkaSource::requestFor({"t", std::nullopt, "posthog"}, 0, 0, "not json{", {}, 0).body, std::string("not json{"));
    }

    void badConfigIsNamed() {
        DelayedSink sink;
        const auto message = [&](KafkaSourceConfig config) {
            try {
                KafkaSource source(std::move(config), sink);
            } catch (const KafkaError& e) {
                return std::string(e.what());
            }
            return std::string();
        };
        QVERIFY(message({.brokers = "", .topics = {{"t"}}}).find("brokers") != std::string::npos);
        QVERIFY(message({.brokers = "127.0.0.1:1"}).find("no topics") != std::string::npos);
        QVERIFY(message({.brokers = "127.0.0.1:1", .topics = {{"t", std::nullopt, "avro"}}}).find("format \"avro\"") !=
                std::string::npos);
        QVERIFY(message({.brokers = "127.0.0.1:1", .topics = {{"t"}}, .properties = {{"no.such.property", "1"}}})
                    .find("no.such.property") != std::string::npos);
    }

    // Every message reaches the sink, each committed once, refusals handed over again, and the
    // group's offsets committed only up to what the sink committed.
    void consumesEveryMessageAtLeastOnceAndCommitsAfterTheSink() {
        KafkaMockCluster cluster(3);
        const std::string brokers = cluster.bootstrapServers();
        QVERIFY(!brokers.empty());
        cluster.createTopic("events", 3, 1);
        std::vector<std::tuple<int, std::string, std::string>> messages;
        constexpr int kMessages = 300;
        for (int i = 0; i < kMessages; ++i) {
            std::string value = posthogEvent(i);
            if (i % 10 == 0) value = std::string("\0\0\0\0\x07", 5) + value; // Confluent-framed, schema 7
            messages.emplace_back(i % 3, value, i % 4 == 0 ? "idem-" + std::to_string(i) : "");
        }
        produce(brokers, "events", messages);

        DelayedSink sink(7);
        auto source = std::make_unique<KafkaSource>(
            KafkaSourceConfig{.brokers = brokers, .group = "pipescope-test", .topics = {{"events", Stream::Server, "posthog"}},
                              .properties = kShortSession},
            sink);
        source->start();
        QVERIFY2(waitFor([&] { return sink.committedCount() >= kMessages; }), "not every message reached the sink");
        QVERIFY(waitFor([&] { return source->stats().committed >= kMessages; }));
        const KafkaSourceStats stats = source->stats();
        source.reset(); // stops, commits, leaves the group

        QCOMPARE(stats.messages, std::uint64_t(kMessages));
        QCOMPARE(stats.confluentFramed, std::uint64_t(kMessages / 10));
        QVERIFY(stats.retried > 0);
        for (const auto& [path, count] : sink.committedByPath()) QVERIFY2(count == 1, path.c_str());
        QCOMPARE(sink.committedByPath().size(), std::size_t(kMessages));
        int keyed = 0;
        for (const IngestRequest& r : sink.requests()) {
            QVERIFY(r.path.rfind("kafka:events:", 0) == 0);
            QCOMPARE(r.token, std::string("phc_kafka"));
            QVERIFY(r.body.front() == '{'); // the framing is stripped
            if (r.idempotencyKey) ++keyed;
        }
        QCOMPARE(keyed, kMessages / 4);
        QCOMPARE(committedOffsets(brokers, "pipescope-test", "events", 3),
                 (std::vector<std::int64_t>{kMessages / 3, kMessages / 3, kMessages / 3}));

        // The same group again continues from its committed offsets: once it has its partitions,
        // one new message is all it consumes.
        DelayedSink second;
        // (The mock's group waits one session timeout after its last member left before it
        // admits a new one: hence the short sessions here.)
        KafkaSource again({.brokers = brokers, .group = "pipescope-test", .topics = {{"events"}}, .properties = kShortSession},
                          second);
        again.start();
        QVERIFY2(waitFor([&] { return again.stats().partitions.size() == 3; }),
                 ("rebalances " + std::to_string(again.stats().rebalances) + ", partitions " +
                  std::to_string(again.stats().partitions.size()) + ", last error " + again.stats().lastError).c_str());
        produce(brokers, "events", {{1, posthogEvent(kMessages), ""}});
        QVERIFY(waitFor([&] { return second.committedCount() >= 1; }));
        again.stop();
        QCOMPARE(second.committedCount(), std::size_t(1));
        QCOMPARE(second.requests().front().path, "kafka:events:1:" + std::to_string(kMessages / 3));
    }

    // kcat, a third-party client, produces PostHog and Segment messages with a header.
    void consumesWhatKcatProduces() {
        if (QStandardPaths::findExecutable("kcat").isEmpty()) QSKIP("kcat is not installed (packaging/install-deps.sh installs it)");
        KafkaMockCluster cluster(1);
        const std::string brokers = cluster.bootstrapServers();
        cluster.createTopic("mixed", 1, 1);
        QProcess kcat;
        kcat.start("kcat", {"-P", "-b", QString::fromStdString(brokers), "-t", "mixed", "-p", "0", "-H",
                            "X-Idempotency-Key=from-kcat"});
        QVERIFY(kcat.waitForStarted(10000));
        kcat.write((posthogEvent(5) + "\n").c_str());
        kcat.write(R"({"type":"track","event":"Order Completed","userId":"u1","messageId":"m-1","writeKey":"wk_srv"})" "\n");
        kcat.closeWriteChannel();
        QVERIFY(kcat.waitForFinished(20000));
        QCOMPARE(kcat.exitCode(), 0);

        DelayedSink sink;
        KafkaSource source({.brokers = brokers, .group = "kcat-test", .topics = {{"mixed"}}, .start = KafkaSourceConfig::Start::Earliest},
                           sink);
        source.start();
        QVERIFY(waitFor([&] { return sink.committedCount() >= 2; }));
        source.stop();
        const auto requests = sink.requests();
        QCOMPARE(requests.size(), std::size_t(2));
        QVERIFY(requests[0].vendor == Vendor::PostHog);
        QVERIFY(requests[1].vendor == Vendor::Segment);
        QCOMPARE(requests[1].token, std::string("wk_srv"));
        QCOMPARE(requests[0].idempotencyKey, std::optional<std::string>("from-kcat"));
        QCOMPARE(requests[0].path, std::string("kafka:mixed:0:0"));
        QCOMPARE(requests[1].path, std::string("kafka:mixed:0:1"));
    }

    // A broker down mid-consume, and fetch errors: consumption resumes and nothing is lost.
    void survivesABrokerDownAndFetchErrors() {
        KafkaMockCluster cluster(3);
        const std::string brokers = cluster.bootstrapServers();
        cluster.createTopic("faulty", 3, 3);
        std::vector<std::tuple<int, std::string, std::string>> first, second;
        for (int i = 0; i < 60; ++i) first.emplace_back(i % 3, posthogEvent(i), "");
        for (int i = 60; i < 120; ++i) second.emplace_back(i % 3, posthogEvent(i), "");
        produce(brokers, "faulty", first);
        DelayedSink sink;
        std::map<std::string, std::string> properties = kShortSession;
        properties["topic.metadata.refresh.interval.ms"] = "500";
        KafkaSource source({.brokers = brokers, .group = "fault-test", .topics = {{"faulty"}}, .properties = properties},
                           sink);
        source.start();
        QVERIFY2(waitFor([&] { return sink.committedCount() >= 60; }, 60s),
                 ("before the fault: " + std::to_string(sink.committedCount()) + " of 60, last error: " +
                  source.stats().lastError).c_str());
        // The second half is in the topic when a broker goes down and fetches start failing
        // (the mock moves no leaders: its partitions wait for it to come back).
        produce(brokers, "faulty", second);
        cluster.setBrokerDown(2);
        cluster.pushRequestErrors(1 /* Fetch */, {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT});
        waitFor([&] { return source.stats().errors > 0; }, 2s); // seen or not: the broker comes back either way
        cluster.setBrokerUp(2);
        QVERIFY2(waitFor([&] { return sink.committedCount() >= 120; }, 60s), "messages after the fault did not arrive");
        source.stop();
        QCOMPARE(sink.committedByPath().size(), std::size_t(120));
    }

    // The whole engine on a topic: `run` with a kafka source puts every message through the
    // pipeline into the capture (origin topic:partition:offset, the topic's stream), dead-letters
    // what is not JSON, counts a redelivered message as a duplicate, and commits the offsets.
    void runConsumesATopicIntoTheCapture() {
        KafkaMockCluster cluster(1);
        const std::string brokers = cluster.bootstrapServers();
        cluster.createTopic("web", 2, 1);
        std::vector<std::tuple<int, std::string, std::string>> messages;
        for (int i = 0; i < 40; ++i) messages.emplace_back(i % 2, posthogEvent(i), "");
        messages.emplace_back(0, posthogEvent(7), "");   // the same event again (its uuid)
        messages.emplace_back(1, "this is not json {", ""); // dead-lettered, not lost
        produce(brokers, "web", messages);

        QTemporaryDir dir;
        RunConfig config = defaultRunConfig(dir.path().toStdString());
        config.collector.port = 0;
        config.kafka = KafkaSourceConfig{.brokers = brokers, .group = "run-test",
                                         .topics = {{"web", Stream::Client, "posthog"}}, .properties = kShortSession};
        const std::filesystem::path capture = config.capturePath;
        {
            RunEngine engine(std::move(config));
            engine.start();
            QVERIFY2(waitFor([&] {
                         const RunStats s = engine.stats();
                         return s.events >= 41 && s.unparseable >= 1 && s.kafka && s.kafka->committed >= 42;
                     }),
                     "the topic did not reach the capture");
            const RunStats stats = engine.stats();
            QVERIFY(stats.kafka);
            QCOMPARE(stats.kafka->messages, std::uint64_t(42));
            engine.stop();
        }
        const CaptureReader reader(capture);
        QCOMPARE(reader.eventCount(), std::int64_t(41));
        QCOMPARE(reader.verdictCounts().duplicate, std::int64_t(1));
        std::set<std::string> origins;
        reader.forEachEvent([&](const StoredEvent& e) {
            origins.insert(e.originSource);
            if (e.stream != "client") qWarning("event %lld has stream %s", static_cast<long long>(e.seq), e.stream.c_str());
            return e.stream == "client";
        });
        QCOMPARE(origins.size(), std::size_t(41));
        QVERIFY(origins.count("kafka:web:0:0") && origins.count("kafka:web:1:19"));
        const auto dlq = reader.dlq(0, 10);
        QCOMPARE(dlq.size(), std::size_t(1));
        QCOMPARE(dlq[0].reason, std::string("unparseable"));
        QCOMPARE(dlq[0].raw, std::string("this is not json {"));
        QCOMPARE(committedOffsets(brokers, "run-test", "web", 2), (std::vector<std::int64_t>{21, 21}));
    }

    // As a user runs it: `pipescope-cli kafka-mock` in one process, kcat producing into it, and
    // `pipescope-cli run --config` with a kafka section consuming it into a capture.
    void cliRunAgainstKafkaMock() {
        if (QStandardPaths::findExecutable("kcat").isEmpty()) QSKIP("kcat is not installed (packaging/install-deps.sh installs it)");
        QProcess mock;
        mock.start(PIPESCOPE_CLI, {"kafka-mock", "--brokers", "3", "--topics", "server_events:6", "--duration", "120s"});
        QVERIFY(mock.waitForStarted(10000));
        QVERIFY(waitFor([&] { return mock.canReadLine() || mock.waitForReadyRead(100); }, 20s));
        const std::string brokers = mock.readLine().trimmed().toStdString();
        QVERIFY2(brokers.rfind("127.0.0.1:", 0) == 0, brokers.c_str());

        QProcess kcat;
        kcat.start("kcat", {"-P", "-b", QString::fromStdString(brokers), "-t", "server_events", "-K", "\t"});
        QVERIFY(kcat.waitForStarted(10000));
        for (int i = 0; i < 30; ++i)
            kcat.write(("user-" + std::to_string(i % 5) + "\t" +
                        R"({"type":"track","event":"Order Completed","userId":"user-)" + std::to_string(i % 5) +
                        R"(","messageId":"m-)" + std::to_string(i) + R"(","writeKey":"wk_backend"})" "\n")
                           .c_str());
        kcat.closeWriteChannel();
        QVERIFY(kcat.waitForFinished(20000));
        QCOMPARE(kcat.exitCode(), 0);

        QTemporaryDir dir;
        const QString config = dir.filePath("pipescope.json");
        const QString capture = dir.filePath("kafka.pipescope");
        {
            QFile file(config);
            QVERIFY(file.open(QIODevice::WriteOnly));
            file.write(QByteArray::fromStdString(
                R"({"collector": {"port": 0}, "kafka": {"brokers": ")" + brokers +
                R"(", "group": "cli-test", "topics": [{"name": "server_events", "stream": "server", "format": "segment"}],
                    "start": "earliest", "properties": {"session.timeout.ms": "6000"}}})"));
        }
        QProcess run;
        run.start(PIPESCOPE_CLI, {"run", "--config", config, "--capture", capture, "--stats", "--stats-interval", "200ms"});
        QVERIFY(run.waitForStarted(10000));
        QString out;
        const bool consumed = waitFor([&] {
            run.waitForReadyRead(100);
            out += QString::fromUtf8(run.readAllStandardOutput());
            return out.contains("kafka: 30 messages");
        }, 60s);
        run.terminate();
        QVERIFY(run.waitForFinished(30000));
        out += QString::fromUtf8(run.readAllStandardOutput());
        mock.terminate();
        mock.waitForFinished(10000);
        QVERIFY2(consumed, qPrintable(out.right(2000) + QString::fromUtf8(run.readAllStandardError())));
        const CaptureReader reader(capture.toStdString());
        QCOMPARE(reader.eventCount(), std::int64_t(30));
        std::set<std::string> partitions;
        int wrong = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            if (e.stream != "server" || e.format != "segment") ++wrong;
            partitions.insert(e.originSource.substr(0, e.originSource.rfind(':')));
            return true;
        });
        QCOMPARE(wrong, 0);
        QVERIFY(partitions.size() > 1); // keyed by user: spread over the partitions
    }
};

QTEST_GUILESS_MAIN(TestKafka)
#include "tst_kafka.moc"
