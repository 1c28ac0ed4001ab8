// Destinations: encoders, config, and the delivery workers over real HTTP on loopback (a
// libmicrohttpd server in the test that records requests and answers as scripted).
#include "route/destination.h"
#include "route/encoders.h"
#include "route/http_client.h"
#include "route/in_memory.h"

#include <QtTest>

#include <atomic>
#include <arpa/inet.h>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <microhttpd.h>
#include <mutex>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace pipescope;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t kNoon = 1714564800000; // 2024-05-01T12:00:00.000Z
constexpr const char* kNoonText = "2024-05-01T12:00:00.000Z";

std::int64_t millisBetween(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// A loopback HTTP server that records every request and answers from a script (then 200).
class TestHttpServer {
public:
    struct Answer {
        Answer(int statusIn = 200, std::string retryAfterIn = {}, int delayMillisIn = 0,
               std::string bodyIn = R"({"status":1})")
            : status(statusIn), retryAfter(std::move(retryAfterIn)), delayMillis(delayMillisIn),
              body(std::move(bodyIn)) {}
        int status;
        std::string retryAfter;
        int delayMillis;
        std::string body;
    };
    struct Request {
        std::string method, path, body;
        std::map<std::string, std::string> headers; // lower-case names
        Clock::time_point arrivedAt;
        int status = 0;
    };

    TestHttpServer() {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = 0;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        // A thread per connection, so that a delayed answer delays no other client.
        m_daemon =
            MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, nullptr,
                             nullptr, &TestHttpServer::onRequest, this, MHD_OPTION_SOCK_ADDR, &address,
                             MHD_OPTION_NOTIFY_COMPLETED, &TestHttpServer::onCompleted, this, MHD_OPTION_END);
        if (m_daemon) m_port = MHD_get_daemon_info(m_daemon, MHD_DAEMON_INFO_BIND_PORT)->port;
    }
    ~TestHttpServer() {
        {
            std::lock_guard lock(m_mutex);
            m_stopping = true;
        }
        m_delayEnded.notify_all();
        if (m_daemon) MHD_stop_daemon(m_daemon);
    }

    bool isRunning() const { return m_daemon != nullptr && m_port != 0; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }
    void script(std::vector<Answer> answers) {
        std::lock_guard lock(m_mutex);
        m_script.assign(answers.begin(), answers.end());
    }
    std::vector<Request> requests() const {
        std::lock_guard lock(m_mutex);
        return m_requests;
    }
    int requestCount() const {
        std::lock_guard lock(m_mutex);
        return static_cast<int>(m_requests.size());
    }

private:
    struct Upload {
        std::string body;
    };

    static MHD_Result collectHeader(void* cls, MHD_ValueKind, const char* key, const char* value) {
        QByteArray name(key);
        (*static_cast<std::map<std::string, std::string>*>(cls))[name.toLower().toStdString()] =
            value ? value : "";
        return MHD_YES;
    }

    static MHD_Result onRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                                const char*, const char* uploadData, size_t* uploadSize, void** state) {
        auto* self = static_cast<TestHttpServer*>(cls);
        auto* upload = static_cast<Upload*>(*state);
        if (!upload) {
            *state = new Upload;
            return MHD_YES;
        }
        if (*uploadSize) {
            upload->body.append(uploadData, *uploadSize);
            *uploadSize = 0;
            return MHD_YES;
        }
        Request request;
        request.method = method;
        request.path = url;
        request.body = upload->body;
        request.arrivedAt = Clock::now();
        MHD_get_connection_values(connection, MHD_HEADER_KIND, &TestHttpServer::collectHeader,
                                  &request.headers);
        Answer answer;
        {
            std::lock_guard lock(self->m_mutex);
            if (!self->m_script.empty()) {
                answer = self->m_script.front();
                self->m_script.pop_front();
            }
            request.status = answer.status;
            self->m_requests.push_back(request);
        }
        if (answer.delayMillis > 0) {
            std::unique_lock lock(self->m_mutex);
            self->m_delayEnded.wait_for(lock, std::chrono::milliseconds(answer.delayMillis),
                                        [self] { return self->m_stopping; });
        }
        MHD_Response* response =
            MHD_create_response_from_buffer(answer.body.size(), answer.body.data(), MHD_RESPMEM_MUST_COPY);
        MHD_add_response_header(response, "Content-Type", "application/json");
        if (!answer.retryAfter.empty())
            MHD_add_response_header(response, "Retry-After", answer.retryAfter.c_str());
        const MHD_Result queued =
            MHD_queue_response(connection, static_cast<unsigned>(answer.status), response);
        MHD_destroy_response(response);
        return queued;
    }

    static void onCompleted(void*, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
        delete static_cast<Upload*>(*state);
        *state = nullptr;
    }

    MHD_Daemon* m_daemon = nullptr;
    std::uint16_t m_port = 0;
    mutable std::mutex m_mutex;
    std::condition_variable m_delayEnded;
    bool m_stopping = false;
    std::deque<Answer> m_script;
    std::vector<Request> m_requests;
};

// A loopback port that accepts connections (the kernel completes the handshake) and never
// answers: a destination that hangs.
class SilentListener {
public:
    SilentListener() {
        m_fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (m_fd >= 0 && ::bind(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
            ::listen(m_fd, 16) == 0 &&
            ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
            m_port = ntohs(address.sin_port);
    }
    ~SilentListener() {
        if (m_fd >= 0) ::close(m_fd);
    }
    std::uint16_t port() const { return m_port; }

private:
    int m_fd = -1;
    std::uint16_t m_port = 0;
};

// A loopback port with nothing listening: connection refused.
std::uint16_t closedPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
}

OutgoingEvent makeEvent(std::int64_t seq, const std::string& name, const std::string& stream = "server") {
    OutgoingEvent event;
    event.seq = seq;
    event.eventId = "evt-" + std::to_string(seq);
    event.idSource = "canonical";
    event.name = name;
    event.distinctId = "user-" + std::to_string(seq % 3);
    event.stream = stream;
    event.format = "canonical";
    event.timestamp = kNoon + seq;
    event.properties = R"({"n":)" + std::to_string(seq) + R"(,"$lib":"posthog-node","price":1.50})";
    event.raw = R"({"raw":)" + std::to_string(seq) + "}";
    return event;
}

void feedEvents(InMemoryEventFeed& feed, std::int64_t first, std::int64_t last,
                const std::string& name = "order_completed") {
    for (std::int64_t seq = first; seq <= last; ++seq)
        feed.append(makeEvent(seq, name));
}

// A feed that counts how often the worker has read it: "the worker looked again and did
// nothing" is a condition to wait for, not a time to sleep.
class CountingFeed final : public EventFeed {
public:
    explicit CountingFeed(InMemoryEventFeed& feed) : m_feed(feed) {}
    std::vector<OutgoingEvent> after(std::int64_t seq, std::size_t limit) override {
        auto events = m_feed.after(seq, limit);
        ++m_reads;
        return events;
    }
    std::int64_t lastSeq() override { return m_feed.lastSeq(); }
    int reads() const { return m_reads.load(); }

private:
    InMemoryEventFeed& m_feed;
    std::atomic<int> m_reads{0};
};

// Reads an OutgoingEvent from a compact canonical-like description (for the encoder tables).
OutgoingEvent eventFromJson(const QByteArray& text) {
    const json object = json::parse(text.toStdString());
    OutgoingEvent event;
    event.seq = object.value("seq", 1);
    event.eventId = object.value("id", "");
    event.name = object.value("name", "");
    event.distinctId = object.value("distinct_id", "");
    event.anonymousId = object.value("anonymous_id", "");
    event.userId = object.value("user_id", "");
    event.aliasId = object.value("alias_id", "");
    event.stream = object.value("stream", "server");
    event.format = object.value("format", "canonical");
    if (object.contains("timestamp")) event.timestamp = object.at("timestamp").get<std::int64_t>();
    if (object.contains("properties")) event.properties = object.at("properties").dump();
    if (object.contains("raw")) event.raw = object.at("raw").dump();
    return event;
}

DestinationConfig webhookConfig(const std::string& name, const std::string& url) {
    DestinationConfig config;
    config.name = name;
    config.type = "webhook";
    config.url = url;
    config.batchSize = 10;
    config.flushIntervalMillis = 20;
    config.maxAttempts = 4;
    config.backoffInitialMillis = 10;
    config.backoffMaxMillis = 50;
    config.timeoutMillis = 2000;
    config.connectTimeoutMillis = 1000;
    config.pollIntervalMillis = 20;
    config.drainTimeoutMillis = 2000;
    return config;
}

// The seqs of every canonical event the server received, in arrival order (webhook bodies).
std::vector<std::int64_t> receivedSeqs(const TestHttpServer& server) {
    std::vector<std::int64_t> seqs;
    for (const auto& request : server.requests()) {
        const json body = json::parse(request.body);
        for (const auto& event : body.at("events"))
            seqs.push_back(event.at("seq").get<std::int64_t>());
    }
    return seqs;
}

std::vector<std::int64_t> range(std::int64_t first, std::int64_t last) {
    std::vector<std::int64_t> seqs;
    for (std::int64_t seq = first; seq <= last; ++seq)
        seqs.push_back(seq);
    return seqs;
}

std::size_t deadLetteredCount(const InMemoryDeliveryLog& log, const std::string& destination) {
    std::size_t count = 0;
    for (const auto& letter : log.deadLetters(destination))
        count += letter.seqs.size();
    return count;
}

// A feed whose store is briefly unavailable: the first `failures` reads throw.
class FailingFeed final : public EventFeed {
public:
    FailingFeed(EventFeed& inner, int failures) : m_inner(inner), m_failures(failures) {}
    std::vector<OutgoingEvent> after(std::int64_t seq, std::size_t limit) override {
        if (m_failures.fetch_sub(1) > 0) throw std::runtime_error("database is locked");
        return m_inner.after(seq, limit);
    }
    std::int64_t lastSeq() override { return m_inner.lastSeq(); }

private:
    EventFeed& m_inner;
    std::atomic<int> m_failures;
};

QString qs(const std::string& text) {
    return QString::fromStdString(text);
}
QString qs(const json& value) {
    return QString::fromStdString(value.dump());
}
// Enums compare as their names, so a failure says which state it was.
QString qs(DestinationState state) {
    return QString::fromUtf8(toString(state).data(), qsizetype(toString(state).size()));
}
QString qs(AttemptOutcome outcome) {
    return QString::fromUtf8(toString(outcome).data(), qsizetype(toString(outcome).size()));
}

QList<std::int64_t> ql(const std::vector<std::int64_t>& values) {
    return {values.begin(), values.end()};
}

} // namespace

class TestRoute : public QObject {
    Q_OBJECT

private slots:
    // --- encoders ---
    void postHogBatch_data();
    void postHogBatch();
    void postHogKeepsPropertiesVerbatim();
    void segmentBatch_data();
    void segmentBatch();
    void stableEventUuid();
    void filter_data();
    void filter();
    void retryAfterParsing_data();
    void retryAfterParsing();
    // --- config ---
    void configErrors_data();
    void configErrors();
    void configParsesEveryField();
    // --- workers over HTTP ---
    void postHogOverHttp();
    void segmentOverHttpWithBasicAuth();
    void webhookHeaders();
    void filteredEventsAdvanceCursor();
    void notifyAheadOfFeedSkipsNothing();
    void batchingBySizeThenDrain();
    void batchingByTime();
    void retryThenSuccess();
    void retryAfterHonoured();
    void badRequestDeadLettersAtOnce();
    void maxAttemptsDeadLettersAndGoesOn();
    void malformedPropertiesDeadLetteredAlone();
    void feedFailureIsRetried();
    void isolation();
    void stopInterruptsLongRetryAfter();
    void restartResumesFromCursor();
    // --- file destinations ---
    void ndjsonWritesExactlyTheEvents();
    void sqliteWritesExactlyTheEvents();
};

// --- encoders -------------------------------------------------------------------------------

void TestRoute::postHogBatch_data() {
    QTest::addColumn<QByteArray>("event");
    QTest::addColumn<QByteArray>("expected"); // "uuid": "<stable>" stands for stableEventUuid(event)

    QTest::newRow("posthog pageview kept as it came")
        << QByteArray(
               R"({"id":"0190a6a4-1b2c-7d3e-8f40-123456789abc","name":"$pageview","distinct_id":"anon-1",
                          "format":"posthog","timestamp":1714564800000,
                          "properties":{"$lib":"web","$current_url":"https://shop.example/"}})")
        << QByteArray(R"({"event":"$pageview","distinct_id":"anon-1",
                          "properties":{"$lib":"web","$current_url":"https://shop.example/"},
                          "timestamp":"2024-05-01T12:00:00.000Z","uuid":"0190a6a4-1b2c-7d3e-8f40-123456789abc"})");
    QTest::newRow("segment identify gets $anon_distinct_id")
        << QByteArray(R"({"id":"msg-4","name":"$identify","distinct_id":"user-1","user_id":"user-1",
                          "anonymous_id":"anon-1","format":"segment","timestamp":1714564800000,
                          "properties":{"email":"a@example.com"}})")
        << QByteArray(R"({"event":"$identify","distinct_id":"user-1",
                          "properties":{"email":"a@example.com","$anon_distinct_id":"anon-1"},
                          "timestamp":"2024-05-01T12:00:00.000Z","uuid":"<stable>"})");
    QTest::newRow("posthog identify keeps its own $anon_distinct_id")
        << QByteArray(
               R"({"id":"0190a6a4-1b2c-7d3e-8f40-123456789abd","name":"$identify","distinct_id":"user-1",
                          "user_id":"user-1","anonymous_id":"anon-1","format":"posthog",
                          "properties":{"$anon_distinct_id":"anon-1","$set":{"plan":"pro"}}})")
        << QByteArray(R"({"event":"$identify","distinct_id":"user-1",
                          "properties":{"$anon_distinct_id":"anon-1","$set":{"plan":"pro"}},
                          "uuid":"0190a6a4-1b2c-7d3e-8f40-123456789abd"})");
    QTest::newRow("segment alias gets alias")
        << QByteArray(R"({"id":"msg-5","name":"$create_alias","distinct_id":"user-1","user_id":"user-1",
                          "alias_id":"anon-1","format":"segment","timestamp":1714564800000,"properties":{}})")
        << QByteArray(R"({"event":"$create_alias","distinct_id":"user-1","properties":{"alias":"anon-1"},
                          "timestamp":"2024-05-01T12:00:00.000Z","uuid":"<stable>"})");
    QTest::newRow("track without id, time or properties")
        << QByteArray(R"({"seq":9,"name":"order_completed","distinct_id":"user-2"})")
        << QByteArray(
               R"({"event":"order_completed","distinct_id":"user-2","properties":{},"uuid":"<stable>"})");
}

void TestRoute::postHogBatch() {
    QFETCH(QByteArray, event);
    QFETCH(QByteArray, expected);
    const OutgoingEvent outgoing = eventFromJson(event);
    const json body = json::parse(encodePostHogBatch(std::vector{outgoing}, "phc_key", kNoon + 5000));
    json want = json::parse(expected.toStdString());
    if (want.at("uuid") == "<stable>") want["uuid"] = pipescope::stableEventUuid(outgoing);

    QCOMPARE(qs(body.at("api_key")), QStringLiteral("\"phc_key\""));
    QCOMPARE(qs(body.at("sent_at")), QStringLiteral("\"2024-05-01T12:00:05.000Z\""));
    QCOMPARE(body.at("batch").size(), std::size_t(1));
    QCOMPARE(qs(body.at("batch").at(0)), qs(want));
}

void TestRoute::postHogKeepsPropertiesVerbatim() {
    // Number spelling and key order are the sender's; a re-serialisation would change both.
    OutgoingEvent event = makeEvent(1, "order_completed");
    event.properties = R"({"$lib":"posthog-node","price":1.50,"b":1,"a":2, "nested":{"z":[1e3]}})";
    const std::string body = encodePostHogBatch(std::vector{event}, "k", kNoon);
    QVERIFY2(
        body.find(R"("properties":{"$lib":"posthog-node","price":1.50,"b":1,"a":2, "nested":{"z":[1e3]}})") !=
            std::string::npos,
        body.c_str());
    QVERIFY(json::accept(body));
    const std::string webhook = encodeWebhookBody(std::vector{event});
    QVERIFY(webhook.find(event.properties) != std::string::npos);
}

void TestRoute::segmentBatch_data() {
    QTest::addColumn<QByteArray>("event");
    QTest::addColumn<QByteArray>("expected");

    QTest::newRow("track from posthog")
        << QByteArray(
               R"({"id":"0190a6a4-1b2c-7d3e-8f40-123456789abc","name":"order_completed","distinct_id":"user-1",
                          "format":"posthog","timestamp":1714564800000,"properties":{"$lib":"posthog-node","total":12.5}})")
        << QByteArray(R"({"type":"track","event":"order_completed","userId":"user-1",
                          "properties":{"$lib":"posthog-node","total":12.5},"timestamp":"2024-05-01T12:00:00.000Z",
                          "messageId":"0190a6a4-1b2c-7d3e-8f40-123456789abc"})");
    QTest::newRow("anonymous page")
        << QByteArray(R"({"id":"msg-2","name":"$pageview","distinct_id":"anon-1","anonymous_id":"anon-1",
                          "format":"segment","timestamp":1714564800000,"properties":{"path":"/cart"}})")
        << QByteArray(R"({"type":"page","anonymousId":"anon-1","properties":{"path":"/cart"},
                          "timestamp":"2024-05-01T12:00:00.000Z","messageId":"msg-2"})");
    QTest::newRow("screen")
        << QByteArray(R"({"id":"msg-3","name":"$screen","distinct_id":"user-1","user_id":"user-1",
                          "format":"segment","properties":{"name":"Home"}})")
        << QByteArray(
               R"({"type":"screen","userId":"user-1","properties":{"name":"Home"},"messageId":"msg-3"})");
    QTest::newRow("identify with traits, user and anonymous id")
        << QByteArray(R"({"id":"msg-4","name":"$identify","distinct_id":"user-1","user_id":"user-1",
                          "anonymous_id":"anon-1","format":"segment","timestamp":1714564800000,
                          "properties":{"email":"a@example.com"}})")
        << QByteArray(R"({"type":"identify","userId":"user-1","anonymousId":"anon-1",
                          "traits":{"email":"a@example.com"},"timestamp":"2024-05-01T12:00:00.000Z",
                          "messageId":"msg-4"})");
    QTest::newRow("posthog identify: $anon_distinct_id becomes anonymousId")
        << QByteArray(R"({"id":"ph-5","name":"$identify","distinct_id":"user-1","user_id":"user-1",
                          "anonymous_id":"anon-1","format":"posthog",
                          "properties":{"$anon_distinct_id":"anon-1"}})")
        << QByteArray(R"({"type":"identify","userId":"user-1","anonymousId":"anon-1",
                          "traits":{"$anon_distinct_id":"anon-1"},"messageId":"ph-5"})");
    QTest::newRow("alias: previousId is the alias id")
        << QByteArray(R"({"id":"msg-6","name":"$create_alias","distinct_id":"user-1","user_id":"user-1",
                          "alias_id":"anon-1","format":"segment","properties":{}})")
        << QByteArray(R"({"type":"alias","userId":"user-1","properties":{},"messageId":"msg-6",
                          "previousId":"anon-1"})");
    QTest::newRow("posthog alias: distinct id is the user, alias the previous id")
        << QByteArray(R"({"id":"ph-7","name":"$create_alias","distinct_id":"user-1","alias_id":"anon-9",
                          "format":"posthog","properties":{"alias":"anon-9"}})")
        << QByteArray(R"({"type":"alias","userId":"user-1","properties":{"alias":"anon-9"},"messageId":"ph-7",
                          "previousId":"anon-9"})");
    QTest::newRow("posthog group: groupId from $group_key")
        << QByteArray(R"({"id":"ph-8","name":"$groupidentify","distinct_id":"user-1","format":"posthog",
                          "properties":{"$group_type":"company","$group_key":"acme","$group_set":{"plan":"pro"}}})")
        << QByteArray(R"({"type":"group","userId":"user-1","groupId":"acme","messageId":"ph-8",
                          "traits":{"$group_type":"company","$group_key":"acme","$group_set":{"plan":"pro"}}})");
    QTest::newRow("segment group: groupId from the raw message")
        << QByteArray(R"({"id":"msg-9","name":"$groupidentify","distinct_id":"user-1","user_id":"user-1",
                          "format":"segment","properties":{"name":"Acme"},
                          "raw":{"type":"group","groupId":"g-7","userId":"user-1","traits":{"name":"Acme"}}})")
        << QByteArray(R"({"type":"group","userId":"user-1","groupId":"g-7","traits":{"name":"Acme"},
                          "messageId":"msg-9"})");
}

void TestRoute::segmentBatch() {
    QFETCH(QByteArray, event);
    QFETCH(QByteArray, expected);
    const json body = json::parse(encodeSegmentBatch(std::vector{eventFromJson(event)}, kNoon));
    QCOMPARE(qs(body.at("sentAt")), QStringLiteral("\"%1\"").arg(QLatin1String(kNoonText)));
    QCOMPARE(body.at("batch").size(), std::size_t(1));
    QCOMPARE(qs(body.at("batch").at(0)), qs(json::parse(expected.toStdString())));
}

void TestRoute::stableEventUuid() {
    const QRegularExpression uuidShape(
        "^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    OutgoingEvent event = makeEvent(7, "x");
    const std::string fromId = pipescope::stableEventUuid(event);
    QVERIFY2(uuidShape.match(qs(fromId)).hasMatch(), fromId.c_str());
    QCOMPARE(qs(pipescope::stableEventUuid(event)), qs(fromId)); // the same on every retry
    event.eventId = "evt-8";
    QVERIFY(pipescope::stableEventUuid(event) != fromId);
    event.eventId.clear();
    const std::string fromSeq = pipescope::stableEventUuid(event);
    QVERIFY(uuidShape.match(qs(fromSeq)).hasMatch());
    QVERIFY(fromSeq != fromId);
    event.eventId = "0190A6A4-1B2C-7D3E-8F40-123456789ABC"; // a UUID goes through untouched
    QCOMPARE(qs(pipescope::stableEventUuid(event)), qs(event.eventId));
}

void TestRoute::filter_data() {
    QTest::addColumn<QStringList>("names");
    QTest::addColumn<QStringList>("streams");
    QTest::addColumn<QString>("eventName");
    QTest::addColumn<QString>("eventStream");
    QTest::addColumn<bool>("accepted");

    QTest::newRow("no filter") << QStringList{} << QStringList{} << "anything"
                               << "client" << true;
    QTest::newRow("exact match") << QStringList{"signup"} << QStringList{} << "signup"
                                 << "client" << true;
    QTest::newRow("exact is not prefix") << QStringList{"signup"} << QStringList{} << "signup_started"
                                         << "client" << false;
    QTest::newRow("wildcard suffix") << QStringList{"order_*"} << QStringList{} << "order_completed"
                                     << "server" << true;
    QTest::newRow("wildcard needs the prefix") << QStringList{"order_*"} << QStringList{} << "orders"
                                               << "server" << false;
    QTest::newRow("wildcard matches the bare prefix") << QStringList{"order_*"} << QStringList{} << "order_"
                                                      << "server" << true;
    QTest::newRow("star alone") << QStringList{"*"} << QStringList{} << "$pageview"
                                << "client" << true;
    QTest::newRow("one of several") << QStringList{"a", "$identify"} << QStringList{} << "$identify"
                                    << "client" << true;
    QTest::newRow("stream kept") << QStringList{} << QStringList{"server"} << "x"
                                 << "server" << true;
    QTest::newRow("stream dropped") << QStringList{} << QStringList{"server"} << "x"
                                    << "client" << false;
    QTest::newRow("unknown stream") << QStringList{} << QStringList{"unknown"} << "x"
                                    << "unknown" << true;
    QTest::newRow("name ok, stream not")
        << QStringList{"order_*"} << QStringList{"server"} << "order_completed"
        << "client" << false;
    QTest::newRow("both ok") << QStringList{"order_*"} << QStringList{"client", "server"} << "order_completed"
                             << "client" << true;
}

void TestRoute::filter() {
    QFETCH(QStringList, names);
    QFETCH(QStringList, streams);
    QFETCH(QString, eventName);
    QFETCH(QString, eventStream);
    QFETCH(bool, accepted);
    std::vector<std::string> nameList;
    for (const QString& name : names)
        nameList.push_back(name.toStdString());
    std::vector<Stream> streamList;
    for (const QString& stream : streams)
        streamList.push_back(*parseStream(stream.toStdString()));
    const EventFilter eventFilter(nameList, streamList);
    QCOMPARE(eventFilter.accepts(makeEvent(1, eventName.toStdString(), eventStream.toStdString())), accepted);
}

void TestRoute::retryAfterParsing_data() {
    QTest::addColumn<QString>("value");
    QTest::addColumn<qint64>("now");
    QTest::addColumn<qint64>("expected"); // -1: not a Retry-After value

    const qint64 dateMillis = 1445412480000; // Wed, 21 Oct 2015 07:28:00 GMT
    QTest::newRow("seconds") << "120" << qint64(0) << qint64(120000);
    QTest::newRow("seconds with spaces") << " 5 " << qint64(0) << qint64(5000);
    QTest::newRow("zero") << "0" << qint64(0) << qint64(0);
    QTest::newRow("http date ahead") << "Wed, 21 Oct 2015 07:28:00 GMT" << dateMillis - 90000
                                     << qint64(90000);
    QTest::newRow("http date past") << "Wed, 21 Oct 2015 07:28:00 GMT" << dateMillis + 5000 << qint64(0);
    QTest::newRow("empty") << "" << qint64(0) << qint64(-1);
    QTest::newRow("negative") << "-1" << qint64(0) << qint64(-1);
    QTest::newRow("fraction") << "1.5" << qint64(0) << qint64(-1);
    QTest::newRow("word") << "soon" << qint64(0) << qint64(-1);
}

void TestRoute::retryAfterParsing() {
    QFETCH(QString, value);
    QFETCH(qint64, now);
    QFETCH(qint64, expected);
    const auto parsed = parseRetryAfterMillis(value.toStdString(), now);
    QCOMPARE(qint64(parsed.value_or(-1)), expected);
}

// --- config ---------------------------------------------------------------------------------

void TestRoute::configErrors_data() {
    QTest::addColumn<QByteArray>("destinations");
    QTest::addColumn<QString>("message");
    QTest::addColumn<QString>("field");

    QTest::newRow("not an array") << QByteArray(R"({})") << "destinations: expected an array, got {}"
                                  << "destinations";
    QTest::newRow("not an object") << QByteArray(R"([[]])") << "destinations[0]: expected an object, got []"
                                   << "destinations[0]";
    QTest::newRow("name missing") << QByteArray(R"([{"type":"webhook","url":"http://x"}])")
                                  << "destinations[0].name: required"
                                  << "destinations[0].name";
    QTest::newRow("name not a string")
        << QByteArray(R"([{"name":7,"type":"webhook"}])") << "destinations[0].name: expected a string, got 7"
        << "destinations[0].name";
    QTest::newRow("name with spaces")
        << QByteArray(R"([{"name":"my hook","type":"webhook"}])")
        << R"(destinations[0].name: expected letters, digits, '_', '-' or '.', got "my hook")"
        << "destinations[0].name";
    QTest::newRow("unknown type")
        << QByteArray(R"([{"name":"k","type":"kafka"}])")
        << R"(destinations[0].type: unknown type "kafka" (expected posthog, segment, webhook, ndjson or sqlite))"
        << "destinations[0].type";
    QTest::newRow("url missing, third entry")
        << QByteArray(
               R"([{"name":"a","type":"ndjson","path":"a.ndjson"},{"name":"b","type":"sqlite","path":"b.db"},
                          {"name":"w","type":"webhook"}])")
        << "destinations[2].url: required for type webhook"
        << "destinations[2].url";
    QTest::newRow("url not http")
        << QByteArray(R"([{"name":"w","type":"webhook","url":"ftp://x"}])")
        << R"(destinations[0].url: expected an http:// or https:// URL, got "ftp://x")"
        << "destinations[0].url";
    QTest::newRow("apiKey missing") << QByteArray(R"([{"name":"p","type":"posthog","url":"http://x"}])")
                                    << "destinations[0].api_key: required for type posthog"
                                    << "destinations[0].api_key";
    QTest::newRow("writeKey empty")
        << QByteArray(R"([{"name":"s","type":"segment","url":"http://x","write_key":""}])")
        << "destinations[0].write_key: must not be empty"
        << "destinations[0].write_key";
    QTest::newRow("path missing") << QByteArray(R"([{"name":"f","type":"ndjson"}])")
                                  << "destinations[0].path: required for type ndjson"
                                  << "destinations[0].path";
    QTest::newRow("field of another type")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","url":"http://x"}])")
        << "destinations[0].url: not used by type ndjson"
        << "destinations[0].url";
    QTest::newRow("typo") << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","batchsize":10}])")
                          << "destinations[0].batchsize: unknown field"
                          << "destinations[0].batchsize";
    QTest::newRow("batchSize zero") << QByteArray(
                                           R"([{"name":"f","type":"ndjson","path":"x","batch_size":0}])")
                                    << "destinations[0].batch_size: expected an integer from 1 to 10000, got 0"
                                    << "destinations[0].batch_size";
    QTest::newRow("batchSize as text")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","batch_size":"10"}])")
        << R"(destinations[0].batch_size: expected an integer from 1 to 10000, got "10")"
        << "destinations[0].batch_size";
    QTest::newRow("maxAttempts fraction")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","max_attempts":2.5}])")
        << "destinations[0].max_attempts: expected an integer from 1 to 1000, got 2.5"
        << "destinations[0].max_attempts";
    QTest::newRow("backoff max below initial")
        << QByteArray(
               R"([{"name":"f","type":"ndjson","path":"x","backoff_initial_ms":1000,"backoff_max_ms":10}])")
        << "destinations[0].backoff_max_ms: must be at least backoff_initial_ms (1000)"
        << "destinations[0].backoff_max_ms";
    QTest::newRow("multiplier below one")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","backoff_multiplier":0.5}])")
        << "destinations[0].backoff_multiplier: expected a number from 1.0 to 100.0, got 0.5"
        << "destinations[0].backoff_multiplier";
    QTest::newRow("star inside a name")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","events":["a*b"]}])")
        << R"(destinations[0].events[0]: '*' is only allowed at the end, got "a*b")"
        << "destinations[0].events[0]";
    QTest::newRow("unknown stream")
        << QByteArray(R"([{"name":"f","type":"ndjson","path":"x","streams":["server","mobile"]}])")
        << R"(destinations[0].streams[1]: expected client, server or unknown, got "mobile")"
        << "destinations[0].streams[1]";
    QTest::newRow("header not a string")
        << QByteArray(R"([{"name":"w","type":"webhook","url":"http://x","headers":{"X-Token":5}}])")
        << "destinations[0].headers.X-Token: expected a string, got 5"
        << "destinations[0].headers.X-Token";
    QTest::newRow("header injection")
        << QByteArray(
               R"([{"name":"w","type":"webhook","url":"http://x","headers":{"X-Token":"a\r\nHost: evil"}}])")
        << "destinations[0].headers.X-Token: must not contain a line break"
        << "destinations[0].headers.X-Token";
    QTest::newRow("table not a name")
        << QByteArray(R"([{"name":"q","type":"sqlite","path":"x.db","table":"a; DROP"}])")
        << R"(destinations[0].table: expected a plain SQL name (letters, digits, '_'), got "a; DROP")"
        << "destinations[0].table";
    QTest::newRow("duplicate names")
        << QByteArray(R"([{"name":"a","type":"ndjson","path":"x"},{"name":"a","type":"sqlite","path":"y"}])")
        << R"(destinations[1].name: duplicate destination name "a" (also destinations[0]))"
        << "destinations[1].name";
}

void TestRoute::configErrors() {
    QFETCH(QByteArray, destinations);
    QFETCH(QString, message);
    QFETCH(QString, field);
    try {
        parseDestinationConfigs(json::parse(destinations.toStdString()));
        QFAIL("accepted an invalid config");
    } catch (const DestinationConfigError& error) {
        QCOMPARE(QString::fromStdString(error.what()), message);
        QCOMPARE(QString::fromStdString(error.field()), field);
    }
}

void TestRoute::configParsesEveryField() {
    const auto configs = parseDestinationConfigs(json::parse(R"([
        {"name":"ph","type":"posthog","url":"https://eu.posthog.example","api_key":"phc_1",
         "events":["order_*","$identify"],"streams":["server"],"headers":{"X-Env":"prod"},
         "batch_size":50,"flush_interval_ms":250,"max_attempts":3,"backoff_initial_ms":100,
         "backoff_max_ms":2000,"backoff_multiplier":3,"max_retry_after_ms":30000,"timeout_ms":4000,
         "connect_timeout_ms":700,"poll_interval_ms":50,"drain_timeout_ms":900},
        {"name":"db","type":"sqlite","path":"out.db"}])"));
    QCOMPARE(configs.size(), std::size_t(2));
    const DestinationConfig& ph = configs[0];
    QCOMPARE(qs(ph.name), QStringLiteral("ph"));
    QCOMPARE(qs(ph.type), QStringLiteral("posthog"));
    QCOMPARE(qs(ph.url), QStringLiteral("https://eu.posthog.example"));
    QCOMPARE(qs(ph.apiKey), QStringLiteral("phc_1"));
    QCOMPARE(ph.events, (std::vector<std::string>{"order_*", "$identify"}));
    QCOMPARE(ph.streams, std::vector<Stream>{Stream::Server});
    QCOMPARE(qs(ph.headers.at("X-Env")), QStringLiteral("prod"));
    QCOMPARE(ph.batchSize, std::size_t(50));
    QCOMPARE(ph.flushIntervalMillis, std::int64_t(250));
    QCOMPARE(ph.maxAttempts, 3);
    QCOMPARE(ph.backoffInitialMillis, std::int64_t(100));
    QCOMPARE(ph.backoffMaxMillis, std::int64_t(2000));
    QCOMPARE(ph.backoffMultiplier, 3.0);
    QCOMPARE(ph.maxRetryAfterMillis, std::int64_t(30000));
    QCOMPARE(ph.timeoutMillis, std::int64_t(4000));
    QCOMPARE(ph.connectTimeoutMillis, std::int64_t(700));
    QCOMPARE(ph.pollIntervalMillis, std::int64_t(50));
    QCOMPARE(ph.drainTimeoutMillis, std::int64_t(900));
    const DestinationConfig& db = configs[1];
    QCOMPARE(qs(db.path), QStringLiteral("out.db"));
    QCOMPARE(qs(db.table), QStringLiteral("events")); // defaults
    QCOMPARE(db.batchSize, std::size_t(100));
    QCOMPARE(db.flushIntervalMillis, std::int64_t(1000));
    QCOMPARE(db.maxAttempts, 8);
    QVERIFY(db.events.empty() && db.streams.empty());

    // A hand-built config gets the same checks when a worker is made from it.
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    DestinationConfig broken = webhookConfig("w", "");
    QVERIFY_THROWS_EXCEPTION(DestinationConfigError, DestinationWorker(broken, feed, log));
}

// --- workers over HTTP ----------------------------------------------------------------------

void TestRoute::postHogOverHttp() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 3);
    DestinationConfig config = webhookConfig("ph", server.url() + "/");
    config.type = "posthog";
    config.apiKey = "phc_test";
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(3);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("ph"), std::int64_t(3), 3000);
    worker.stop(false);

    const auto requests = server.requests();
    QCOMPARE(requests.size(), std::size_t(1));
    QCOMPARE(qs(requests[0].method), QStringLiteral("POST"));
    QCOMPARE(qs(requests[0].path), QStringLiteral("/batch/"));
    QCOMPARE(qs(requests[0].headers.at("content-type")), QStringLiteral("application/json"));
    QVERIFY(requests[0].headers.at("user-agent").starts_with("pipescope/"));
    const json body = json::parse(requests[0].body);
    QCOMPARE(qs(body.at("api_key")), QStringLiteral("\"phc_test\""));
    QCOMPARE(body.at("batch").size(), std::size_t(3));
    QCOMPARE(qs(body.at("batch").at(2).at("properties")),
             QStringLiteral(R"({"$lib":"posthog-node","n":3,"price":1.5})"));
    QVERIFY(parseTimestamp(body.at("sent_at").get<std::string>()).has_value());
}

void TestRoute::segmentOverHttpWithBasicAuth() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 2);
    DestinationConfig config = webhookConfig("seg", server.url());
    config.type = "segment";
    config.writeKey = "wk_123";
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(2);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 1, 3000);
    worker.stop(false);

    const auto request = server.requests().at(0);
    QCOMPARE(qs(request.path), QStringLiteral("/v1/batch"));
    QCOMPARE(qs(request.headers.at("authorization")),
             QString::fromLatin1("Basic " + QByteArray("wk_123:").toBase64()));
    const json body = json::parse(request.body);
    QCOMPARE(body.at("batch").size(), std::size_t(2));
    QCOMPARE(qs(body.at("batch").at(0).at("type")), QStringLiteral("\"track\""));
    QCOMPARE(qs(body.at("batch").at(1).at("messageId")), QStringLiteral("\"evt-2\""));
}

void TestRoute::webhookHeaders() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 2);
    DestinationConfig config = webhookConfig("hook", server.url() + "/hooks/events");
    config.headers = {{"X-Token", "s3cret"}, {"X-Env", "test"}};
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(2);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 1, 3000);
    worker.stop(false);

    const auto request = server.requests().at(0);
    QCOMPARE(qs(request.path), QStringLiteral("/hooks/events"));
    QCOMPARE(qs(request.headers.at("x-token")), QStringLiteral("s3cret"));
    QCOMPARE(qs(request.headers.at("x-env")), QStringLiteral("test"));
    QCOMPARE(qs(request.headers.at("content-type")), QStringLiteral("application/json"));
    const json body = json::parse(request.body);
    const json expectedFirst = json::parse(encodeCanonicalEvent(makeEvent(1, "order_completed")));
    QCOMPARE(qs(body.at("events").at(0)), qs(expectedFirst));
    QCOMPARE(qs(body.at("events").at(0).at("id")), QStringLiteral("\"evt-1\""));
    QCOMPARE(qs(body.at("events").at(1).at("timestamp")), QStringLiteral("\"2024-05-01T12:00:00.002Z\""));
}

void TestRoute::filteredEventsAdvanceCursor() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    for (std::int64_t seq = 1; seq <= 12; ++seq) {
        const std::string name = seq % 3 == 0   ? "order_completed"
                                 : seq % 3 == 1 ? "order_refunded"
                                                : "page_seen";
        feed.append(makeEvent(seq, name, seq % 2 == 0 ? "server" : "client"));
    }
    // Seqs the feed holds but never returns (invalid or duplicate events) are passed over too.
    feed.appendHidden();
    feed.appendHidden();
    DestinationConfig config = webhookConfig("orders", server.url());
    config.events = {"order_*"};
    config.streams = {Stream::Server};
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(feed.lastSeq());
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("orders"), std::int64_t(14), 3000);
    worker.stop(false);

    // order_* on the server stream: 4 (order_refunded, server), 6 (order_completed, server), 10, 12.
    std::vector<std::int64_t> seqs = receivedSeqs(server);
    QCOMPARE(ql(seqs), (QList<std::int64_t>{4, 6, 10, 12}));
    const DestinationStats stats = worker.stats();
    QCOMPARE(stats.deliveredEvents, std::int64_t(4));
    QCOMPARE(stats.filteredEvents, std::int64_t(8));
    QCOMPARE(stats.lag, std::int64_t(0));
    QCOMPARE(qs(stats.state), qs(DestinationState::Ok));
}

void TestRoute::notifyAheadOfFeedSkipsNothing() {
    // A notification may run ahead of the store's commit; the seqs it names but the feed does not
    // hold yet must not be passed over.
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed events;
    CountingFeed feed(events);
    InMemoryDeliveryLog log;
    feedEvents(events, 1, 5);
    DestinationWorker worker(webhookConfig("eager", server.url()), feed, log);
    worker.start();
    worker.notify(10);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("eager"), std::int64_t(5), 3000);
    // The worker reads the feed again (more than once) and still does not pass over 6..10.
    const int readsAtFive = feed.reads();
    QTRY_VERIFY_WITH_TIMEOUT(feed.reads() >= readsAtFive + 2, 3000);
    QCOMPARE(log.cursor("eager"), std::int64_t(5));
    feedEvents(events, 6, 10); // committed later, with no new notification: the poll finds them
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("eager"), std::int64_t(10), 3000);
    worker.stop(false);
    QCOMPARE(ql(receivedSeqs(server)), ql(range(1, 10)));
}

void TestRoute::batchingBySizeThenDrain() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed events;
    CountingFeed feed(events);
    InMemoryDeliveryLog log;
    feedEvents(events, 1, 35);
    DestinationConfig config = webhookConfig("sized", server.url());
    config.flushIntervalMillis = 60000; // only full batches go, until the drain
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(35);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 3, 3000);
    // The worker goes on polling with the partial batch queued, and does not send it.
    const int readsAtThree = feed.reads();
    QTRY_VERIFY_WITH_TIMEOUT(feed.reads() >= readsAtThree + 2, 3000);
    QCOMPARE(server.requestCount(), 3); // the partial batch of 5 waits for its interval
    QCOMPARE(log.cursor("sized"), std::int64_t(30));
    QCOMPARE(worker.stats().lag, std::int64_t(5));

    worker.stop(true); // a drain sends the partial batch at once
    const auto requests = server.requests();
    QCOMPARE(requests.size(), std::size_t(4));
    for (std::size_t i = 0; i < 3; ++i)
        QCOMPARE(json::parse(requests[i].body).at("events").size(), std::size_t(10));
    QCOMPARE(json::parse(requests[3].body).at("events").size(), std::size_t(5));
    QCOMPARE(ql(receivedSeqs(server)), ql(range(1, 35)));
    QCOMPARE(log.cursor("sized"), std::int64_t(35));
}

void TestRoute::batchingByTime() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    DestinationConfig config = webhookConfig("timed", server.url());
    config.batchSize = 100;
    config.flushIntervalMillis = 300;
    DestinationWorker worker(config, feed, log);
    worker.start();
    feedEvents(feed, 1, 5);
    const auto fed = Clock::now();
    worker.notify(5);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 1, 3000);
    const auto request = server.requests().at(0);
    const std::int64_t waited = millisBetween(fed, request.arrivedAt);
    worker.stop(false);

    QVERIFY2(waited >= 300, qPrintable(QStringLiteral("partial batch sent after %1 ms").arg(waited)));
    QVERIFY2(waited < 1500, qPrintable(QStringLiteral("partial batch sent after %1 ms").arg(waited)));
    QCOMPARE(json::parse(request.body).at("events").size(), std::size_t(5));
    qInfo("partial batch of 5 with flushIntervalMillis 300 went out after %lld ms",
          static_cast<long long>(waited));
}

void TestRoute::retryThenSuccess() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{500}, {503}, {200}});
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 3);
    DestinationWorker worker(webhookConfig("flaky", server.url()), feed, log);
    worker.start();
    worker.notify(3);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("flaky"), std::int64_t(3), 3000);
    worker.stop(false);

    const auto attempts = log.attempts("flaky");
    QCOMPARE(attempts.size(), std::size_t(3));
    const std::vector<int> statuses = {500, 503, 200};
    const std::vector<AttemptOutcome> outcomes = {AttemptOutcome::Retrying, AttemptOutcome::Retrying,
                                                  AttemptOutcome::Delivered};
    for (std::size_t i = 0; i < attempts.size(); ++i) {
        QCOMPARE(attempts[i].attempt, int(i + 1));
        QCOMPARE(attempts[i].httpStatus, statuses[i]);
        QCOMPARE(qs(attempts[i].outcome), qs(outcomes[i]));
        QCOMPARE(ql(attempts[i].seqs), ql(range(1, 3)));
        QVERIFY(attempts[i].startedAtMillis > kNoon);
        QVERIFY(attempts[i].durationMillis >= 0);
    }
    QVERIFY(attempts[0].error.starts_with("HTTP 500"));
    QVERIFY(attempts[2].error.empty());
    QCOMPARE(ql(receivedSeqs(server)), ql(std::vector<std::int64_t>{1, 2, 3, 1, 2, 3, 1, 2, 3}));
    const DestinationStats stats = worker.stats();
    QCOMPARE(stats.retriedAttempts, std::int64_t(2));
    QCOMPARE(stats.deliveredEvents, std::int64_t(3));
    QCOMPARE(stats.deadLetteredEvents, std::int64_t(0));
    QVERIFY(log.deadLetters().empty());
}

void TestRoute::retryAfterHonoured() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{429, "1"}, {200}});
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 2);
    DestinationWorker worker(webhookConfig("limited", server.url()), feed, log); // backoff alone: ≤ 50 ms
    worker.start();
    worker.notify(2);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 1, 3000);
    QTRY_COMPARE_WITH_TIMEOUT(qs(worker.stats().state), qs(DestinationState::BackingOff), 1000);
    QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 2, 4000);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("limited"), std::int64_t(2), 2000);
    worker.stop(false);

    const auto requests = server.requests();
    const std::int64_t gap = millisBetween(requests[0].arrivedAt, requests[1].arrivedAt);
    QVERIFY2(gap >= 1000, qPrintable(QStringLiteral("retried after %1 ms, Retry-After was 1 s").arg(gap)));
    QVERIFY2(gap < 2000, qPrintable(QStringLiteral("retried after %1 ms, Retry-After was 1 s").arg(gap)));
    const auto attempts = log.attempts("limited");
    QCOMPARE(attempts.size(), std::size_t(2));
    QCOMPARE(attempts[0].httpStatus, 429);
    QCOMPARE(qs(attempts[0].outcome), qs(AttemptOutcome::Retrying));
    QCOMPARE(qs(attempts[1].outcome), qs(AttemptOutcome::Delivered));
    QCOMPARE(qs(worker.stats().state), qs(DestinationState::Ok));
    qInfo("429 with Retry-After: 1 retried after %lld ms", static_cast<long long>(gap));
}

void TestRoute::badRequestDeadLettersAtOnce() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{400, "", 0, R"({"error":"invalid event name"})"}, {200}});
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 15); // two batches: 1-10 rejected, 11-15 delivered
    DestinationWorker worker(webhookConfig("strict", server.url()), feed, log);
    worker.start();
    worker.notify(15);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("strict"), std::int64_t(15), 3000);
    worker.stop(false);

    QCOMPARE(server.requestCount(), 2);
    const auto letters = log.deadLetters("strict");
    QCOMPARE(letters.size(), std::size_t(1));
    QCOMPARE(ql(letters[0].seqs), ql(range(1, 10)));
    QCOMPARE(qs(letters[0].reason), QStringLiteral(R"(rejected: HTTP 400: {"error":"invalid event name"})"));
    const auto attempts = log.attempts("strict");
    QCOMPARE(attempts.size(), std::size_t(2));
    QCOMPARE(attempts[0].httpStatus, 400);
    QCOMPARE(qs(attempts[0].outcome), qs(AttemptOutcome::DeadLettered));
    QCOMPARE(qs(attempts[1].outcome), qs(AttemptOutcome::Delivered));
    QCOMPARE(ql(attempts[1].seqs), ql(range(11, 15)));
    QCOMPARE(worker.stats().deadLetteredEvents, std::int64_t(10));
}

void TestRoute::maxAttemptsDeadLettersAndGoesOn() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{500}, {502}, {500}, {200}});
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 4);
    DestinationConfig config = webhookConfig("capped", server.url());
    config.batchSize = 2;
    config.maxAttempts = 3;
    DestinationWorker worker(config, feed, log);
    worker.start();
    worker.notify(4);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("capped"), std::int64_t(4), 3000);
    worker.stop(false);

    QCOMPARE(server.requestCount(), 4);
    const auto letters = log.deadLetters("capped");
    QCOMPARE(letters.size(), std::size_t(1));
    QCOMPARE(ql(letters[0].seqs), (QList<std::int64_t>{1, 2}));
    QCOMPARE(qs(letters[0].reason),
             QStringLiteral("gave up after 3 attempts; last: HTTP 500: {\"status\":1}"));
    const auto attempts = log.attempts("capped");
    QCOMPARE(attempts.size(), std::size_t(4));
    QCOMPARE(attempts[2].attempt, 3);
    QCOMPARE(qs(attempts[2].outcome), qs(AttemptOutcome::DeadLettered));
    QCOMPARE(attempts[3].attempt, 1);
    QCOMPARE(ql(attempts[3].seqs), (QList<std::int64_t>{3, 4}));
    QCOMPARE(qs(attempts[3].outcome), qs(AttemptOutcome::Delivered));
    const DestinationStats stats = worker.stats();
    QCOMPARE(stats.deliveredEvents, std::int64_t(2));
    QCOMPARE(stats.deadLetteredEvents, std::int64_t(2));
    QCOMPARE(stats.retriedAttempts, std::int64_t(2));
    QCOMPARE(qs(stats.state), qs(DestinationState::Ok)); // the last batch went through
}

void TestRoute::malformedPropertiesDeadLetteredAlone() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feed.append(makeEvent(1, "a"));
    OutgoingEvent broken = makeEvent(2, "b");
    broken.properties = "[1,2]"; // would make the receiver reject the whole batch
    feed.append(broken);
    feed.append(makeEvent(3, "c"));
    DestinationWorker worker(webhookConfig("picky", server.url()), feed, log);
    worker.start();
    worker.notify(3);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("picky"), std::int64_t(3), 3000);
    worker.stop(false);

    QCOMPARE(ql(receivedSeqs(server)), (QList<std::int64_t>{1, 3}));
    const auto letters = log.deadLetters("picky");
    QCOMPARE(letters.size(), std::size_t(1));
    QCOMPARE(ql(letters[0].seqs), QList<std::int64_t>{2});
    QCOMPARE(qs(letters[0].reason), QStringLiteral("properties is not a JSON object"));
}

void TestRoute::feedFailureIsRetried() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    InMemoryEventFeed events;
    feedEvents(events, 1, 5);
    FailingFeed feed(events, 2);
    InMemoryDeliveryLog log;
    DestinationWorker worker(webhookConfig("patient", server.url()), feed, log);
    worker.start();
    worker.notify(5);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("patient"), std::int64_t(5), 3000);
    worker.stop(false);
    QCOMPARE(ql(receivedSeqs(server)), ql(range(1, 5)));
    const DestinationStats stats = worker.stats();
    QCOMPARE(qs(stats.state), qs(DestinationState::Ok));
    QCOMPARE(stats.deliveredEvents, std::int64_t(5));
}

void TestRoute::isolation() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    SilentListener silent;
    QVERIFY(silent.port() != 0);
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 200);

    DestinationConfig liveConfig = webhookConfig("live", server.url());
    liveConfig.batchSize = 20;
    DestinationConfig refusedConfig =
        webhookConfig("refused", "http://127.0.0.1:" + std::to_string(closedPort()));
    refusedConfig.batchSize = 20;
    refusedConfig.maxAttempts = 5;
    refusedConfig.backoffInitialMillis = 20;
    refusedConfig.backoffMaxMillis = 160;
    DestinationConfig hangingConfig =
        webhookConfig("hanging", "http://127.0.0.1:" + std::to_string(silent.port()));
    hangingConfig.timeoutMillis = 8000; // far longer than the live destination may take

    DestinationWorker refused(refusedConfig, feed, log);
    DestinationWorker hanging(hangingConfig, feed, log);
    DestinationWorker live(liveConfig, feed, log);
    refused.start();
    hanging.start();
    live.start();
    const auto fed = Clock::now();
    refused.notify(200);
    hanging.notify(200);
    live.notify(200);
    const auto notified = Clock::now();

    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("live"), std::int64_t(200), 3000);
    const std::int64_t liveMillis = millisBetween(fed, Clock::now());
    // The live destination finished while the hanging one is still in its first request.
    QVERIFY(log.attempts("hanging").empty());
    QCOMPARE(hanging.stats().cursor, std::int64_t(0));
    QCOMPARE(ql(receivedSeqs(server)), ql(range(1, 200)));

    // The refused destination retries per policy and dead-letters every batch.
    QTRY_COMPARE_WITH_TIMEOUT(deadLetteredCount(log, "refused"), std::size_t(200), 8000);
    const auto refusedAttempts = log.attempts("refused");
    QCOMPARE(refusedAttempts.size(), std::size_t(10 * 5));
    for (std::size_t i = 0; i < refusedAttempts.size(); ++i) {
        QCOMPARE(refusedAttempts[i].attempt, int(i % 5) + 1);
        QCOMPARE(refusedAttempts[i].httpStatus, 0);
        QVERIFY2(refusedAttempts[i].error.starts_with("curl error 7"), refusedAttempts[i].error.c_str());
        QCOMPARE(qs(refusedAttempts[i].outcome),
                 qs(i % 5 == 4 ? AttemptOutcome::DeadLettered : AttemptOutcome::Retrying));
    }
    QCOMPARE(log.cursor("refused"), std::int64_t(200));
    QCOMPARE(qs(refused.stats().state), qs(DestinationState::Failing));

    // A hard stop interrupts the hanging request at once; its batch stays unacknowledged.
    const auto stopping = Clock::now();
    hanging.stop(false);
    const std::int64_t stopMillis = millisBetween(stopping, Clock::now());
    QVERIFY2(stopMillis < 1000, qPrintable(QStringLiteral("stop took %1 ms").arg(stopMillis)));
    const auto hangingAttempts = log.attempts("hanging");
    QCOMPARE(hangingAttempts.size(), std::size_t(1));
    QCOMPARE(qs(hangingAttempts[0].error), QStringLiteral("cancelled: destination stopping"));
    QCOMPARE(log.cursor("hanging"), std::int64_t(0));
    live.stop(false);
    refused.stop(false);
    qInfo(
        "isolation: 3 notify() calls took %lld ns; live delivered 200 events in %lld ms while 'refused' "
        "retried and 'hanging' was stuck; stop() of the hanging request took %lld ms",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(notified - fed).count()),
        static_cast<long long>(liveMillis), static_cast<long long>(stopMillis));
}

void TestRoute::stopInterruptsLongRetryAfter() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{429, "30"}});
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 1);
    DestinationWorker worker(webhookConfig("parked", server.url()), feed, log);
    worker.start();
    worker.notify(1);
    QTRY_COMPARE_WITH_TIMEOUT(qs(worker.stats().state), qs(DestinationState::BackingOff), 3000);
    const auto stopping = Clock::now();
    worker.stop(true); // a drain still ends within drainTimeoutMillis (2 s), not after 30 s
    const std::int64_t drainMillis = millisBetween(stopping, Clock::now());
    QVERIFY2(drainMillis >= 1900 && drainMillis < 3000,
             qPrintable(QStringLiteral("drain took %1 ms").arg(drainMillis)));
    QCOMPARE(server.requestCount(), 1);
    QCOMPARE(log.cursor("parked"), std::int64_t(0)); // not delivered: the next run sends it

    InMemoryDeliveryLog secondLog;
    server.script({{429, "30"}});
    DestinationWorker second(webhookConfig("parked", server.url()), feed, secondLog);
    second.start();
    second.notify(1);
    QTRY_COMPARE_WITH_TIMEOUT(qs(second.stats().state), qs(DestinationState::BackingOff), 3000);
    const auto hardStop = Clock::now();
    second.stop(false);
    const std::int64_t stopMillis = millisBetween(hardStop, Clock::now());
    QVERIFY2(stopMillis < 500, qPrintable(QStringLiteral("stop took %1 ms").arg(stopMillis)));
    qInfo(
        "stop during a 30 s Retry-After: drain ended at its 2 s bound after %lld ms, hard stop after %lld ms",
        static_cast<long long>(drainMillis), static_cast<long long>(stopMillis));
}

void TestRoute::restartResumesFromCursor() {
    TestHttpServer server;
    QVERIFY(server.isRunning());
    server.script({{200}, {200}, {200, "", 3000}}); // the third batch is in flight when we stop
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 50);
    DestinationConfig config = webhookConfig("resumable", server.url());
    config.timeoutMillis = 5000;
    {
        DestinationWorker first(config, feed, log);
        first.start();
        first.notify(50);
        QTRY_COMPARE_WITH_TIMEOUT(server.requestCount(), 3, 3000);
        first.stop(false);
        QCOMPARE(log.cursor("resumable"), std::int64_t(20)); // batches 1 and 2 acknowledged, 3 not
        QCOMPARE(first.stats().deliveredEvents, std::int64_t(20));
    }
    feedEvents(feed, 51, 60);
    DestinationWorker second(config, feed, log);
    second.start();
    second.notify(60);
    QTRY_COMPARE_WITH_TIMEOUT(log.cursor("resumable"), std::int64_t(60), 3000);
    second.stop(false);

    std::map<std::int64_t, int> deliveries;
    for (const std::int64_t seq : receivedSeqs(server))
        ++deliveries[seq];
    QCOMPARE(deliveries.size(), std::size_t(60)); // nothing lost
    for (const auto& [seq, count] : deliveries) {
        // Acknowledged batches are never sent again; only the unacknowledged one is.
        const int expected = seq >= 21 && seq <= 30 ? 2 : 1;
        QVERIFY2(count == expected,
                 qPrintable(QStringLiteral("seq %1 delivered %2 times").arg(seq).arg(count)));
    }
    QCOMPARE(second.stats().deliveredEvents, std::int64_t(40));
}

// --- file destinations ----------------------------------------------------------------------

void TestRoute::ndjsonWritesExactlyTheEvents() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath("out.ndjson").toStdString();
    std::ofstream(path) << "{\"existing\":true}\n"; // appended to, never truncated
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    for (std::int64_t seq = 1; seq <= 25; ++seq)
        feed.append(makeEvent(seq, seq % 5 == 0 ? "$pageview" : "order_completed"));
    DestinationConfig config = webhookConfig("file", "");
    config.type = "ndjson";
    config.url.clear();
    config.path = path;
    config.events = {"order_*"};
    {
        DestinationWorker worker(config, feed, log);
        worker.start();
        worker.notify(25);
        worker.stop(true);
    }
    feed.append(makeEvent(26, "order_completed"));
    {
        DestinationWorker restarted(config, feed, log); // resumes: nothing written twice
        restarted.start();
        restarted.notify(26);
        restarted.stop(true);
    }
    QCOMPARE(log.cursor("file"), std::int64_t(26));

    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    QCOMPARE(qs(line), QStringLiteral("{\"existing\":true}"));
    std::vector<std::int64_t> seqs;
    while (std::getline(in, line)) {
        const json event = json::parse(line);
        const std::int64_t seq = event.at("seq").get<std::int64_t>();
        seqs.push_back(seq);
        QCOMPARE(qs(line), qs(encodeCanonicalEvent(makeEvent(seq, "order_completed"))));
    }
    std::vector<std::int64_t> expected;
    for (std::int64_t seq = 1; seq <= 26; ++seq)
        if (seq % 5 != 0) expected.push_back(seq);
    QCOMPARE(ql(seqs), ql(expected));
}

void TestRoute::sqliteWritesExactlyTheEvents() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath("out.db").toStdString();
    InMemoryEventFeed feed;
    InMemoryDeliveryLog log;
    feedEvents(feed, 1, 24);
    OutgoingEvent untimed = makeEvent(25, "signup", "client");
    untimed.timestamp.reset();
    untimed.properties.clear();
    feed.append(untimed);
    DestinationConfig config = webhookConfig("db", "");
    config.type = "sqlite";
    config.url.clear();
    config.path = path;
    config.table = "delivered";
    {
        DestinationWorker worker(config, feed, log);
        worker.start();
        worker.notify(25);
        worker.stop(true);
    }
    QCOMPARE(log.cursor("db"), std::int64_t(25));
    const auto attempts = log.attempts("db");
    QCOMPARE(attempts.size(), std::size_t(3)); // one transaction per batch of 10
    // A redelivery (cursor lost) must not duplicate rows: rows are keyed by seq.
    log.saveCursor("db", 0);
    {
        DestinationWorker again(config, feed, log);
        again.start();
        again.notify(25);
        again.stop(true);
    }

    sqlite3* db = nullptr;
    QCOMPARE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* select = nullptr;
    QCOMPARE(
        sqlite3_prepare_v2(db,
                           "SELECT seq, name, distinct_id, stream, timestamp, properties, raw FROM delivered "
                           "ORDER BY seq",
                           -1, &select, nullptr),
        SQLITE_OK);
    std::int64_t rows = 0;
    while (sqlite3_step(select) == SQLITE_ROW) {
        ++rows;
        const std::int64_t seq = sqlite3_column_int64(select, 0);
        const OutgoingEvent expected = seq == 25 ? untimed : makeEvent(seq, "order_completed");
        const auto text = [&](int column) {
            return QString::fromUtf8(reinterpret_cast<const char*>(sqlite3_column_text(select, column)));
        };
        QCOMPARE(seq, rows);
        QCOMPARE(text(1), qs(expected.name));
        QCOMPARE(text(2), qs(expected.distinctId));
        QCOMPARE(text(3), qs(expected.stream));
        if (expected.timestamp)
            QCOMPARE(sqlite3_column_int64(select, 4), *expected.timestamp);
        else
            QCOMPARE(sqlite3_column_type(select, 4), SQLITE_NULL);
        QCOMPARE(text(5), expected.properties.empty() ? QStringLiteral("{}") : qs(expected.properties));
        QCOMPARE(QByteArray(static_cast<const char*>(sqlite3_column_blob(select, 6)),
                            sqlite3_column_bytes(select, 6)),
                 QByteArray::fromStdString(expected.raw));
    }
    sqlite3_finalize(select);
    sqlite3_close(db);
    QCOMPARE(rows, std::int64_t(25));
}

QTEST_GUILESS_MAIN(TestRoute)
#include "tst_route.moc"
