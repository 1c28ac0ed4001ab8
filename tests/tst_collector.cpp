// The HTTP collector, over real loopback HTTP (libcurl and raw sockets) on a free port.
#include "collector/collector.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <curl/curl.h>
#include <deque>
#include <future>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>
#include <zlib.h>

using namespace pipescope;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

QByteArray bytes(const std::string& text) {
    return QByteArray(text.data(), static_cast<qsizetype>(text.size()));
}

// An in-memory sink that commits in groups, like the store's writer: everything queued while
// a group is being committed forms the next group.
class TestSink : public IngestSink {
public:
    TestSink() : m_worker([this] { run(); }) {}

    ~TestSink() override {
        {
            std::lock_guard lock(m_mutex);
            m_quit = true;
        }
        m_wake.notify_all();
        m_worker.join();
    }

    void ingest(IngestRequest request, Completion done) override {
        {
            std::lock_guard lock(m_mutex);
            m_queue.push_back({std::move(request), std::move(done)});
            ++m_received;
        }
        m_wake.notify_all();
        m_changed.notify_all();
    }

    void reject(RejectedRequest rejected, Completion done) override {
        IngestResult result;
        {
            std::lock_guard lock(m_mutex);
            m_rejected.push_back(std::move(rejected));
            result = m_rejectResult;
            if (m_rejectsHeld) {
                m_heldRejects.push_back(std::move(done));
                m_changed.notify_all();
                return;
            }
        }
        m_changed.notify_all();
        done(result);
    }

    bool overloaded() const override { return m_overloaded; }

    void setOverloaded(bool overloaded) { m_overloaded = overloaded; }
    void setCommitDelay(std::chrono::milliseconds delay) {
        std::lock_guard lock(m_mutex);
        m_commitDelay = delay;
    }
    void setResult(IngestResult result) {
        std::lock_guard lock(m_mutex);
        m_result = std::move(result);
    }
    // While held, requests queue up uncommitted.
    void hold() {
        std::lock_guard lock(m_mutex);
        m_held = true;
    }
    void release() {
        {
            std::lock_guard lock(m_mutex);
            m_held = false;
        }
        m_wake.notify_all();
    }

    // While held, rejects are kept but their done() waits for releaseRejects().
    void holdRejects() {
        std::lock_guard lock(m_mutex);
        m_rejectsHeld = true;
    }
    void setRejectResult(IngestResult result) {
        std::lock_guard lock(m_mutex);
        m_rejectResult = std::move(result);
    }
    void releaseRejects() {
        std::vector<Completion> held;
        IngestResult result;
        {
            std::lock_guard lock(m_mutex);
            m_rejectsHeld = false;
            held.swap(m_heldRejects);
            result = m_rejectResult;
        }
        for (Completion& done : held)
            done(result);
    }
    bool waitRejected(std::size_t count, std::chrono::milliseconds timeout = 5s) const {
        std::unique_lock lock(m_mutex);
        return m_changed.wait_for(lock, timeout, [&] { return m_rejected.size() >= count; });
    }

    std::vector<IngestRequest> committed() const {
        std::lock_guard lock(m_mutex);
        return m_committed;
    }
    std::vector<RejectedRequest> rejected() const {
        std::lock_guard lock(m_mutex);
        return m_rejected;
    }
    std::size_t received() const {
        std::lock_guard lock(m_mutex);
        return m_received;
    }
    std::size_t largestGroup() const {
        std::lock_guard lock(m_mutex);
        return m_largestGroup;
    }
    // Waits (bounded) until `count` requests reached the sink.
    bool waitReceived(std::size_t count, std::chrono::milliseconds timeout = 5s) const {
        std::unique_lock lock(m_mutex);
        return m_changed.wait_for(lock, timeout, [&] { return m_received >= count; });
    }

private:
    struct Queued {
        IngestRequest request;
        Completion done;
    };

    void run() {
        std::unique_lock lock(m_mutex);
        for (;;) {
            m_changed.notify_all();
            m_wake.wait(lock, [&] { return m_quit || (!m_queue.empty() && !m_held); });
            if (m_quit) break;
            std::deque<Queued> group;
            group.swap(m_queue);
            const auto delay = m_commitDelay;
            lock.unlock();
            std::this_thread::sleep_for(delay);
            lock.lock();
            const IngestResult result = m_result;
            if (result.status == IngestStatus::Committed) {
                for (Queued& queued : group)
                    m_committed.push_back(queued.request);
            }
            m_largestGroup = std::max(m_largestGroup, group.size());
            lock.unlock();
            for (Queued& queued : group)
                queued.done(result);
            lock.lock();
        }
        // Whatever is still queued was never committed; done() is owed exactly once.
        std::deque<Queued> left;
        left.swap(m_queue);
        lock.unlock();
        for (Queued& queued : left)
            queued.done({IngestStatus::Failed, 1, "test sink destroyed"});
        std::vector<Completion> held;
        lock.lock();
        held.swap(m_heldRejects);
        lock.unlock();
        for (Completion& done : held)
            done({IngestStatus::Failed, 1, "test sink destroyed"});
    }

    mutable std::mutex m_mutex;
    mutable std::condition_variable m_changed;
    std::condition_variable m_wake;
    std::deque<Queued> m_queue;
    std::vector<IngestRequest> m_committed;
    std::vector<RejectedRequest> m_rejected;
    std::size_t m_received = 0;
    std::size_t m_largestGroup = 0;
    std::chrono::milliseconds m_commitDelay{0};
    IngestResult m_result;
    IngestResult m_rejectResult;
    std::vector<Completion> m_heldRejects;
    bool m_rejectsHeld = false;
    bool m_held = false;
    bool m_quit = false;
    std::atomic<bool> m_overloaded{false};
    std::thread m_worker;
};

CollectorConfig testConfig() {
    CollectorConfig config;
    config.port = 0;
    config.connectionTimeoutSeconds = 5;
    config.stopGraceMillis = 2000;
    return config;
}

// A started collector on a free loopback port with its own sink. The sink is declared first so
// it outlives the collector, as the contract requires.
struct Harness {
    explicit Harness(CollectorConfig config = testConfig()) : collector(std::move(config), sink) {
        collector.start();
    }
    TestSink sink;
    Collector collector;
};

struct HttpCall {
    QByteArray method = "POST";
    QByteArray path;
    QByteArray body;
    QList<QByteArray> headers;
    QByteArray userPassword; // HTTP Basic credentials "user:password"
};

struct HttpReply {
    long status = 0;
    QByteArray body;
    QMap<QByteArray, QByteArray> headers; // names lower-cased
    CURLcode error = CURLE_OK;

    QJsonObject json() const { return QJsonDocument::fromJson(body).object(); }
};

size_t appendBody(char* data, size_t size, size_t count, void* reply) {
    static_cast<HttpReply*>(reply)->body.append(data, static_cast<qsizetype>(size * count));
    return size * count;
}

size_t appendHeader(char* data, size_t size, size_t count, void* reply) {
    const QByteArray line = QByteArray(data, static_cast<qsizetype>(size * count)).trimmed();
    const qsizetype colon = line.indexOf(':');
    if (colon > 0)
        static_cast<HttpReply*>(reply)->headers[line.left(colon).trimmed().toLower()] =
            line.mid(colon + 1).trimmed();
    return size * count;
}

struct CurlRequest {
    CURL* handle = nullptr;
    curl_slist* headers = nullptr;
    HttpReply reply;

    CurlRequest(quint16 port, const HttpCall& call) {
        handle = curl_easy_init();
        const QByteArray url = "http://127.0.0.1:" + QByteArray::number(port) + call.path;
        curl_easy_setopt(handle, CURLOPT_URL, url.constData());
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, 15000L);
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &appendBody);
        curl_easy_setopt(handle, CURLOPT_WRITEDATA, &reply);
        curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &appendHeader);
        curl_easy_setopt(handle, CURLOPT_HEADERDATA, &reply);
        if (call.method == "POST") {
            curl_easy_setopt(handle, CURLOPT_POST, 1L);
            curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
            curl_easy_setopt(handle, CURLOPT_COPYPOSTFIELDS, call.body.constData());
        } else if (call.method != "GET") {
            curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, call.method.constData());
        }
        headers = curl_slist_append(headers, "Expect:"); // no 100-continue round trip
        for (const QByteArray& header : call.headers)
            headers = curl_slist_append(headers, header.constData());
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
        if (!call.userPassword.isEmpty()) {
            curl_easy_setopt(handle, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
            curl_easy_setopt(handle, CURLOPT_USERPWD, call.userPassword.constData());
        }
    }
    ~CurlRequest() {
        curl_slist_free_all(headers);
        curl_easy_cleanup(handle);
    }
    CurlRequest(const CurlRequest&) = delete;
    CurlRequest& operator=(const CurlRequest&) = delete;

    void collect() { curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &reply.status); }
};

HttpReply send(quint16 port, const HttpCall& call) {
    CurlRequest request(port, call);
    request.reply.error = curl_easy_perform(request.handle);
    request.collect();
    return request.reply;
}

// All calls at once over separate connections (curl multi), bounded by a deadline.
std::vector<HttpReply> sendConcurrently(quint16 port, const std::vector<HttpCall>& calls) {
    CURLM* multi = curl_multi_init();
    std::vector<std::unique_ptr<CurlRequest>> requests;
    for (const HttpCall& call : calls) {
        requests.push_back(std::make_unique<CurlRequest>(port, call));
        curl_multi_add_handle(multi, requests.back()->handle);
    }
    int running = 1;
    const auto deadline = Clock::now() + 20s;
    while (running > 0 && Clock::now() < deadline) {
        curl_multi_perform(multi, &running);
        if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
        if (message->msg != CURLMSG_DONE) continue;
        for (auto& request : requests) {
            if (request->handle == message->easy_handle) request->reply.error = message->data.result;
        }
    }
    std::vector<HttpReply> replies;
    for (auto& request : requests) {
        request->collect();
        curl_multi_remove_handle(multi, request->handle);
        replies.push_back(request->reply);
    }
    curl_multi_cleanup(multi);
    return replies;
}

// A plain TCP client, for what curl will not do: lie about Content-Length, stream forever,
// send half a request.
class RawClient {
public:
    // `source`: the loopback address to connect from (127.0.0.0/8 is all loopback on Linux).
    explicit RawClient(quint16 port, const char* source = nullptr) {
        m_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (source != nullptr) {
            sockaddr_in local{};
            local.sin_family = AF_INET;
            inet_pton(AF_INET, source, &local.sin_addr);
            ::bind(m_fd, reinterpret_cast<sockaddr*>(&local), sizeof local);
        }
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        m_connected = ::connect(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
        timeval timeout{5, 0}; // a send the server never drains fails instead of hanging
        setsockopt(m_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    }
    ~RawClient() { ::close(m_fd); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    bool connected() const { return m_connected; }

    bool send(const QByteArray& data) {
        qsizetype sent = 0;
        while (sent < data.size()) {
            const ssize_t n =
                ::send(m_fd, data.constData() + sent, static_cast<size_t>(data.size() - sent), MSG_NOSIGNAL);
            if (n <= 0) return false;
            sent += n;
        }
        return true;
    }

    // Reads until a whole response (by Content-Length) arrived, the peer closed, or timeout.
    QByteArray readResponse(std::chrono::milliseconds timeout = 5s) {
        QByteArray data;
        const auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            const qsizetype headerEnd = data.indexOf("\r\n\r\n");
            if (headerEnd >= 0) {
                const QByteArray head = data.left(headerEnd).toLower();
                const qsizetype at = head.indexOf("content-length:");
                if (at >= 0) {
                    const qsizetype end = head.indexOf("\r\n", at);
                    const qsizetype length =
                        head.mid(at + 15, end < 0 ? -1 : end - at - 15).trimmed().toLongLong();
                    if (data.size() >= headerEnd + 4 + length) return data;
                }
            }
            char buffer[16384];
            if (!readable(deadline)) break;
            const ssize_t n = ::recv(m_fd, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            data.append(buffer, n);
        }
        return data;
    }

    // True when the server has closed the connection by now (no waiting).
    bool closedNow() {
        pollfd poller{m_fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&poller, 1, 0) <= 0) return false;
        char byte = 0;
        return ::recv(m_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    }

    // True when the server closed the connection (EOF or reset) within the timeout.
    bool waitClosed(std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        while (readable(deadline)) {
            char buffer[4096];
            const ssize_t n = ::recv(m_fd, buffer, sizeof buffer, 0);
            if (n <= 0) return true;
        }
        return false;
    }

private:
    bool readable(Clock::time_point deadline) const {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd poller{m_fd, POLLIN, 0};
        return ::poll(&poller, 1, static_cast<int>(left)) > 0;
    }

    int m_fd = -1;
    bool m_connected = false;
};

int statusOf(const QByteArray& rawResponse) {
    return rawResponse.mid(9, 3).toInt();
}

QByteArray bodyOf(const QByteArray& rawResponse) {
    const qsizetype headerEnd = rawResponse.indexOf("\r\n\r\n");
    return headerEnd < 0 ? QByteArray() : rawResponse.mid(headerEnd + 4);
}

QByteArray gzip(const QByteArray& data) {
    z_stream stream{};
    deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY); // + 16: gzip
    QByteArray out(static_cast<qsizetype>(deflateBound(&stream, static_cast<uLong>(data.size()))) + 32, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.constData()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    deflate(&stream, Z_FINISH);
    out.resize(static_cast<qsizetype>(stream.total_out));
    deflateEnd(&stream);
    return out;
}

// lz-string 1.4.4's compressToBase64 (_compress with 6 bits per character, then padding),
// over UTF-16 code units like the JavaScript. The dictionary is a trie, so w + c is one child
// lookup instead of a string concatenation; the emitted bits are the same.
QByteArray lzCompressToBase64(const QString& text) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    struct Node {
        std::unordered_map<char16_t, std::size_t> children;
        int code = 0;
        char16_t unit = 0;
        bool single = false;        // a one-unit string (a root child)
        bool notYetEmitted = false; // lz-string's dictionaryToCreate
    };
    std::vector<Node> nodes(1); // nodes[0]: the empty string
    int dictSize = 3;
    int numBits = 2;
    int enlargeIn = 2;
    QByteArray out;
    int value = 0;
    int position = 0;
    auto writeBits = [&](int count, int bits) {
        for (int i = 0; i < count; ++i) {
            value = (value << 1) | (bits & 1);
            bits >>= 1;
            if (position == 5) {
                position = 0;
                out.append(alphabet[value]);
                value = 0;
            } else {
                ++position;
            }
        }
    };
    auto countDown = [&] {
        if (--enlargeIn == 0) {
            enlargeIn = 1 << numBits;
            ++numBits;
        }
    };
    auto writeCode = [&](std::size_t index) {
        Node& node = nodes[index];
        if (node.single && node.notYetEmitted) {
            if (node.unit < 256) {
                writeBits(numBits, 0);
                writeBits(8, node.unit);
            } else {
                writeBits(numBits, 1);
                writeBits(16, node.unit);
            }
            countDown();
            node.notYetEmitted = false;
        } else {
            writeBits(numBits, node.code);
        }
        countDown();
    };
    auto child = [&](std::size_t parent, char16_t unit) -> std::optional<std::size_t> {
        const auto found = nodes[parent].children.find(unit);
        return found == nodes[parent].children.end() ? std::nullopt : std::optional(found->second);
    };
    auto addChild = [&](std::size_t parent, char16_t unit) {
        Node node;
        node.code = dictSize++;
        node.unit = unit;
        node.single = parent == 0;
        node.notYetEmitted = parent == 0;
        nodes.push_back(std::move(node));
        nodes[parent].children[unit] = nodes.size() - 1;
    };

    std::size_t w = 0;
    for (qsizetype i = 0; i < text.size(); ++i) {
        const char16_t unit = text.at(i).unicode();
        if (!child(0, unit)) addChild(0, unit);
        if (const auto extended = child(w, unit)) {
            w = *extended;
            continue;
        }
        writeCode(w);
        addChild(w, unit);
        w = *child(0, unit);
    }
    if (w != 0) writeCode(w);
    writeBits(numBits, 2);
    for (;;) { // flush the last character
        value <<= 1;
        if (position == 5) {
            out.append(alphabet[value]);
            break;
        }
        ++position;
    }
    while (out.size() % 4 != 0)
        out.append('=');
    return out;
}

QByteArray formField(const QByteArray& value) {
    return value.toPercentEncoding();
}

const QByteArray kPostHogBatch =
    R"([{"event":"$pageview","uuid":"0190a1b2-0000-7000-8000-000000000001","properties":{"distinct_id":"anon-1",)"
    R"("token":"phc_test","$lib":"web","title":"Caf\u00e9 \u2713 \ud83d\ude00","raw":"é✓😀"}}])";

} // namespace

class TestCollector : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void cleanupTestCase();

    void postHogCapture_data();
    void postHogCapture();
    void segmentCapture_data();
    void segmentCapture();
    void lzStringPublishedExamples_data();
    void lzStringPublishedExamples();
    void lz64PublishedExampleDecodes();
    void tokenExtraction_data();
    void tokenExtraction();
    void unauthorized_data();
    void unauthorized();
    void undecodableBodyOfUnknownClient_data();
    void undecodableBodyOfUnknownClient();
    void contentLengthBeyondLimitIsNotRead();
    void expectContinueBeyondLimitIsNotSent();
    void chunkedBodyBeyondLimit();
    void endlessChunkedBodyIsCutOff();
    void ambiguousFraming_data();
    void ambiguousFraming();
    void malformedContentLength_data();
    void malformedContentLength();
    void dangerousUrls_data();
    void dangerousUrls();
    void binaryRequestLine();
    void hugeChunkSize();
    void decompressionBombs_data();
    void decompressionBombs();
    void decompressionBombsHoldLittle();
    void inflatingCountsInFlight();
    void truncatedGzipIsRejected();
    void rejectAnsweredOnlyWhenKept_data();
    void rejectAnsweredOnlyWhenKept();
    void stopWhileRejectsWait();
    void undecodableBodies_data();
    void undecodableBodies();
    void invalidUtf8IsPassedOn();
    void bigNumbersArePassedOn_data();
    void bigNumbersArePassedOn();
    void deeplyNestedJson_data();
    void deeplyNestedJson();
    void overloadedSink();
    void inFlightBytesBound();
    void sinkVerdicts_data();
    void sinkVerdicts();
    void answersOnlyAfterCommit();
    void concurrentRequestsShareGroupCommit();
    void flagsAndConfig_data();
    void flagsAndConfig();
    void remoteConfigScriptEscapesToken();
    void flagsAndConfigLeaveTheAppInCharge_data();
    void flagsAndConfigLeaveTheAppInCharge();
    void analyticsNextRequest();
    void sdkPathsPreflight_data();
    void sdkPathsPreflight();
    void segmentSettings_data();
    void segmentSettings();
    void segmentSettingsForKnownWriteKeysOnly();
    void segmentMetricsAreDropped();
    void captureV1_data();
    void captureV1();
    void captureV1Authorization_data();
    void captureV1Authorization();
    void cors_data();
    void cors();
    void hostHeader_data();
    void hostHeader();
    void requestWithoutHost();
    void ownHostnameWhenBoundBeyondLoopback();
    void idempotencyKey_data();
    void idempotencyKey();
    void requestMetadata();
    void unknownPathsAndWrongMethods_data();
    void unknownPathsAndWrongMethods();
    void startFailsClearly();
    void stopWhileRequestsWait_data();
    void stopWhileRequestsWait();
    void slowClientIsDisconnected();
    void hostileConnectionsLeaveRoom();
    void perIpConnectionLimit();
    void statistics();
};

void TestCollector::initTestCase() {
    QCOMPARE(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
}

void TestCollector::cleanupTestCase() {
    curl_global_cleanup();
}

void TestCollector::postHogCapture_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QString>("encoding");

    const QByteArray json = kPostHogBatch;
    const QByteArray lz = lzCompressToBase64(QString::fromUtf8(json));
    struct Encoding {
        const char* name;
        QByteArray query;
        QList<QByteArray> headers;
        QByteArray body;
        const char* expected;
    };
    const QList<QByteArray> jsonType{"Content-Type: application/json"};
    const QList<QByteArray> formType{"Content-Type: application/x-www-form-urlencoded"};
    const std::vector<Encoding> encodings{
        {"plain", {}, jsonType, json, "plain"},
        {"gzip by Content-Encoding",
         {},
         {"Content-Type: application/json", "Content-Encoding: gzip"},
         gzip(json),
         "gzip"},
        {"gzip by compression=gzip-js",
         "compression=gzip-js",
         {"Content-Type: text/plain"},
         gzip(json),
         "gzip"},
        {"gzip by magic bytes", {}, {"Content-Type: text/plain"}, gzip(json), "gzip"},
        {"lz64 body", "compression=lz64", {"Content-Type: text/plain"}, lz, "lz64"},
        {"form data=lz64 with compression field",
         {},
         formType,
         "data=" + formField(lz) + "&compression=lz64",
         "form+lz64"},
        {"form data=lz64 with compression in the query", "compression=lz64", formType,
         "data=" + formField(lz), "form+lz64"},
        {"form data=base64", {}, formType, "data=" + formField(json.toBase64()), "form"},
        {"form data=base64 without a content type", {}, {}, "data=" + formField(json.toBase64()), "form"},
        {"form data=url-encoded JSON", {}, formType, "data=" + formField(json), "form"},
        {"base64 body", "compression=base64", {"Content-Type: text/plain"}, json.toBase64(), "base64"},
    };
    for (const char* path : {"/e", "/e/", "/i/v0/e/", "/capture", "/batch/", "/track",
                             "/track/?ip=1&_=1700000000000&ver=1.100.0"}) {
        for (const Encoding& encoding : encodings) {
            QByteArray url = path;
            if (!encoding.query.isEmpty()) url += (url.contains('?') ? "&" : "?") + encoding.query;
            QTest::addRow("%s %s", path, encoding.name)
                << url << encoding.headers << encoding.body << encoding.expected;
        }
    }
}

void TestCollector::postHogCapture() {
    QFETCH(QByteArray, path);
    QFETCH(QList<QByteArray>, headers);
    QFETCH(QByteArray, body);
    QFETCH(QString, encoding);

    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {"POST", path, body, headers, {}});
    QCOMPARE(reply.error, CURLE_OK);
    QCOMPARE(reply.status, 200L);
    QCOMPARE(reply.body, QByteArray(R"({"status":1})"));

    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(bytes(committed[0].body), kPostHogBatch);
    QCOMPARE(bytes(committed[0].path), path.split('?').first());
    QCOMPARE(toString(committed[0].vendor), std::string_view("posthog"));
    QCOMPARE(QString::fromUtf8(toString(committed[0].encoding)), encoding);
    QCOMPARE(committed[0].token, std::string("phc_test"));
    QVERIFY(harness.sink.rejected().empty());
}

void TestCollector::segmentCapture_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QByteArray>("expected");

    const QByteArray message =
        R"({"userId":"u1","event":"Signed Up","properties":{"plan":"pro"},"writeKey":"wk_1"})";
    for (const char* type : {"track", "identify", "page", "screen", "group", "alias"}) {
        const QByteArray inserted = R"({"type":")" + QByteArray(type) + R"(",)" + message.mid(1);
        QTest::addRow("/v1/%s without a type", type) << "/v1/" + QByteArray(type) << message << inserted;
        QTest::addRow("/v1/%s/ without a type", type)
            << "/v1/" + QByteArray(type) + "/" << message << inserted;
        // analytics-next (Analytics.js 2.0) posts to the type's first letter.
        QTest::addRow("/v1/%c without a type", type[0])
            << "/v1/" + QByteArray(1, type[0]) << message << inserted;
    }
    const QByteArray typed = R"({"type":"track","userId":"u1","event":"Signed Up","writeKey":"wk_1"})";
    QTest::newRow("/v1/track keeps its own type") << QByteArray("/v1/track") << typed << typed;
    QTest::newRow("/v1/page with a mismatching type keeps it") << QByteArray("/v1/page") << typed << typed;
    QTest::newRow("empty object gets only the type")
        << QByteArray("/v1/identify") << QByteArray(R"( { } )") << QByteArray(R"( {"type":"identify" } )");
    const QByteArray batch =
        R"({"batch":[{"type":"track","userId":"u1","event":"A"},{"type":"identify","userId":"u1"}],)"
        R"("writeKey":"wk_1"})";
    QTest::newRow("/v1/batch") << QByteArray("/v1/batch") << batch << batch;
    QTest::newRow("/v1/import/") << QByteArray("/v1/import/") << batch << batch;
    QTest::newRow("/v1/b (analytics-next batching)") << QByteArray("/v1/b") << batch << batch;
}

void TestCollector::segmentCapture() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, body);
    QFETCH(QByteArray, expected);

    Harness harness;
    for (const bool compressed : {false, true}) {
        const QList<QByteArray> headers =
            compressed ? QList<QByteArray>{"Content-Type: application/json", "Content-Encoding: gzip"}
                       : QList<QByteArray>{"Content-Type: application/json"};
        const HttpReply reply =
            send(harness.collector.port(), {"POST", path, compressed ? gzip(body) : body, headers, {}});
        QCOMPARE(reply.status, 200L);
        QCOMPARE(reply.body, QByteArray(R"({"success":true})"));
    }
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{2});
    for (const IngestRequest& request : committed) {
        QCOMPARE(bytes(request.body), expected);
        QCOMPARE(toString(request.vendor), std::string_view("segment"));
        QCOMPARE(bytes(request.path), path);
    }
    QCOMPARE(toString(committed[1].encoding), std::string_view("gzip"));
}

void TestCollector::lzStringPublishedExamples_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<QByteArray>("compressed");
    // Outputs of the JavaScript lz-string, as published by other projects' test suites
    // (CyberChef, langserve, lz-string-csharp).
    QTest::newRow("hello world") << "hello world" << QByteArray("BYUwNmD2AEDukCcwBMg=");
    QTest::newRow("non-ASCII")
        << QString::fromUtf8("Žluťoučký kůň úpěl ďábelské ódy!")
        << QByteArray("r6ABsK6KaAD2aLCADWBfgBPQ9oCAlAZAvgDobEARlB4QAEOAjAUxAGd4BL5AZ4BMBPAQiA==");
    QTest::newRow("JSON") << R"({ "key": "value" })" << QByteArray("N4AgRA1gpgnmBc4BuBDANgVymEBfIA==");
}

// The fixtures of the lz64 tests come from this compressor, so it must match the real one.
void TestCollector::lzStringPublishedExamples() {
    QFETCH(QString, text);
    QFETCH(QByteArray, compressed);
    QCOMPARE(lzCompressToBase64(text), compressed);
}

void TestCollector::lz64PublishedExampleDecodes() {
    Harness harness;
    const HttpReply reply =
        send(harness.collector.port(),
             {"POST", "/e/?compression=lz64", "N4AgRA1gpgnmBc4BuBDANgVymEBfIA==", {}, {}});
    QCOMPARE(reply.status, 200L);
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(committed[0].body, std::string(R"({ "key": "value" })"));
}

void TestCollector::tokenExtraction_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QByteArray>("userPassword");
    QTest::addColumn<QString>("token");

    QTest::newRow("envelope api_key")
        << QByteArray("/batch/")
        << QByteArray(R"({"api_key":"k1","batch":[{"event":"e","properties":{"token":"no"}}]})")
        << QByteArray() << "k1";
    QTest::newRow("top-level token") << QByteArray("/capture/")
                                     << QByteArray(R"({"token":"k2","event":"e","distinct_id":"d"})")
                                     << QByteArray() << "k2";
    QTest::newRow("top-level $token")
        << QByteArray("/e/") << QByteArray(R"({"$token":"k3","event":"e"})") << QByteArray() << "k3";
    QTest::newRow("Segment writeKey")
        << QByteArray("/v1/track") << QByteArray(R"({"writeKey":"k4","event":"e","userId":"u"})")
        << QByteArray() << "k4";
    QTest::newRow("properties.token")
        << QByteArray("/i/v0/e/") << QByteArray(R"({"event":"e","properties":{"token":"k5"}})")
        << QByteArray() << "k5";
    QTest::newRow("properties.$token")
        << QByteArray("/i/v0/e/") << QByteArray(R"({"event":"e","properties":{"$token":"k6"}})")
        << QByteArray() << "k6";
    QTest::newRow("first event of an array")
        << QByteArray("/e/")
        << QByteArray(
               R"([{"event":"a","properties":{"token":"k7"}},{"event":"b","properties":{"token":"other"}}])")
        << QByteArray() << "k7";
    QTest::newRow("first event of a batch")
        << QByteArray("/batch/") << QByteArray(R"({"batch":[{"event":"a","properties":{"token":"k8"}}]})")
        << QByteArray() << "k8";
    QTest::newRow("query token") << QByteArray("/e/?token=k9") << QByteArray(R"({"event":"e"})")
                                 << QByteArray() << "k9";
    QTest::newRow("query api_key") << QByteArray("/e/?api_key=k10") << QByteArray(R"({"event":"e"})")
                                   << QByteArray() << "k10";
    QTest::newRow("Basic auth write key")
        << QByteArray("/v1/track") << QByteArray(R"({"event":"e","userId":"u"})") << QByteArray("wk_basic:")
        << "wk_basic";
    QTest::newRow("body before query")
        << QByteArray("/e/?token=other") << QByteArray(R"({"event":"e","properties":{"token":"k11"}})")
        << QByteArray() << "k11";
    QTest::newRow("none") << QByteArray("/e/") << QByteArray(R"({"event":"e"})") << QByteArray() << "";
}

void TestCollector::tokenExtraction() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, body);
    QFETCH(QByteArray, userPassword);
    QFETCH(QString, token);

    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {"POST", path, body, {}, userPassword});
    QCOMPARE(reply.status, 200L);
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(QString::fromStdString(committed[0].token), token);
}

void TestCollector::unauthorized_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QByteArray>("userPassword");
    QTest::addColumn<long>("status");

    QTest::newRow("known token") << QByteArray("/e/")
                                 << QByteArray(R"({"event":"e","properties":{"token":"phc_good"}})")
                                 << QByteArray() << 200L;
    QTest::newRow("unknown token") << QByteArray("/e/")
                                   << QByteArray(R"({"event":"e","properties":{"token":"phc_bad"}})")
                                   << QByteArray() << 401L;
    QTest::newRow("no token") << QByteArray("/e/") << QByteArray(R"({"event":"e"})") << QByteArray() << 401L;
    QTest::newRow("known write key by Basic auth")
        << QByteArray("/v1/track") << QByteArray(R"({"event":"e","userId":"u"})") << QByteArray("wk_good:")
        << 200L;
    QTest::newRow("unknown write key by Basic auth")
        << QByteArray("/v1/track") << QByteArray(R"({"event":"e","userId":"u"})") << QByteArray("wk_bad:")
        << 401L;
    QTest::newRow("known write key in the body of /v1/t")
        << QByteArray("/v1/t") << QByteArray(R"({"event":"e","userId":"u","writeKey":"wk_good"})")
        << QByteArray() << 200L;
    QTest::newRow("unknown write key in the body of /v1/t")
        << QByteArray("/v1/t") << QByteArray(R"({"event":"e","userId":"u","writeKey":"wk_bad"})")
        << QByteArray() << 401L;
}

void TestCollector::unauthorized() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, body);
    QFETCH(QByteArray, userPassword);
    QFETCH(long, status);

    CollectorConfig config = testConfig();
    config.tokens = {"phc_good", "wk_good"};
    Harness harness(config);
    const HttpReply reply = send(harness.collector.port(), {"POST", path, body, {}, userPassword});
    QCOMPARE(reply.status, status);
    QCOMPARE(harness.sink.committed().size(), std::size_t(status == 200 ? 1 : 0));
    if (status == 401) {
        QCOMPARE(reply.json().value("error").toString(), QString("unauthorized"));
        QVERIFY(!reply.json().value("detail").toString().isEmpty());
    }
    // Refusals are counted, not silent.
    const CollectorStats stats = harness.collector.stats();
    QCOMPARE(stats.unauthorizedRequests, std::uint64_t(status == 401 ? 1 : 0));
    QCOMPARE(stats.responsesByStatus.count(401), std::size_t(status == 401 ? 1 : 0));
}

void TestCollector::undecodableBodyOfUnknownClient_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("userPassword");
    QTest::addColumn<long>("status");
    QTest::newRow("no token") << QByteArray("/e/") << QByteArray() << 401L;
    QTest::newRow("unknown ?token=") << QByteArray("/e/?token=phc_bad") << QByteArray() << 401L;
    QTest::newRow("unknown Basic auth") << QByteArray("/v1/batch") << QByteArray("wk_bad:") << 401L;
    QTest::newRow("known ?api_key=") << QByteArray("/e/?api_key=phc_good") << QByteArray() << 400L;
    QTest::newRow("known Basic auth") << QByteArray("/v1/batch") << QByteArray("wk_good:") << 400L;
}

// With tokens configured, an unreadable body is kept only when the request names a known
// token where it still can (query, Basic auth); anyone else gets 401 and stores nothing.
void TestCollector::undecodableBodyOfUnknownClient() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, userPassword);
    QFETCH(long, status);

    CollectorConfig config = testConfig();
    config.tokens = {"phc_good", "wk_good"};
    Harness harness(config);
    const HttpReply reply = send(harness.collector.port(),
                                 {"POST", path, "{nope", {"Content-Type: application/json"}, userPassword});
    QCOMPARE(reply.status, status);
    const CollectorStats stats = harness.collector.stats();
    if (status == 401) {
        QCOMPARE(reply.json().value("error").toString(), QString("unauthorized"));
        QVERIFY2(reply.json().value("detail").toString().contains("could not be decoded"),
                 qPrintable(reply.json().value("detail").toString()));
        QVERIFY(harness.sink.rejected().empty());
        QCOMPARE(stats.rejectedRequests, std::uint64_t{0});
        QCOMPARE(stats.unauthorizedRequests, std::uint64_t{1});
        QCOMPARE(stats.responsesByStatus.at(401), std::uint64_t{1});
    } else {
        QCOMPARE(reply.json().value("error").toString(), QString("not_json"));
        QCOMPARE(harness.sink.rejected().size(), std::size_t{1});
        QVERIFY(harness.sink.rejected()[0].token == "phc_good" ||
                harness.sink.rejected()[0].token == "wk_good");
        QCOMPARE(stats.unauthorizedRequests, std::uint64_t{0});
    }
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

// The 413 comes from the header alone: the body is never sent, and nothing of it is read.
void TestCollector::contentLengthBeyondLimitIsNotRead() {
    CollectorConfig config = testConfig();
    config.maxBodyBytes = 1 << 20;
    Harness harness(config);
    RawClient client(harness.collector.port());
    QVERIFY(client.connected());
    QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        "Content-Length: 1000000000\r\n\r\n[{\"event\":"));
    const QByteArray response = client.readResponse();
    QCOMPARE(statusOf(response), 413);
    QCOMPARE(QJsonDocument::fromJson(bodyOf(response)).object().value("error").toString(),
             QString("payload_too_large"));
    QVERIFY(client.waitClosed(5s));

    const CollectorStats stats = harness.collector.stats();
    QCOMPARE(stats.bytesReceived, std::uint64_t{0});
    QCOMPARE(stats.inFlightBytes, std::size_t{0});
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QVERIFY(harness.sink.rejected().empty());
}

// curl asks first (Expect: 100-continue) for a large body; the 413 stops it from sending any.
void TestCollector::expectContinueBeyondLimitIsNotSent() {
    CollectorConfig config = testConfig();
    config.maxBodyBytes = 1 << 20;
    Harness harness(config);

    struct Source {
        std::size_t provided = 0;
    } source;
    auto read = [](char* buffer, size_t size, size_t count, void* context) -> size_t {
        auto* from = static_cast<Source*>(context);
        std::memset(buffer, ' ', size * count);
        from->provided += size * count;
        return size * count;
    };
    CURL* handle = curl_easy_init();
    const QByteArray url = "http://127.0.0.1:" + QByteArray::number(harness.collector.port()) + "/batch/";
    HttpReply reply;
    curl_easy_setopt(handle, CURLOPT_URL, url.constData());
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(handle, CURLOPT_POST, 1L);
    curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(1'000'000'000));
    curl_easy_setopt(handle, CURLOPT_READFUNCTION, +read);
    curl_easy_setopt(handle, CURLOPT_READDATA, &source);
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &appendBody);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &reply);
    curl_easy_perform(handle);
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &reply.status);
    curl_easy_cleanup(handle);

    QCOMPARE(reply.status, 413L);
    QVERIFY2(source.provided < (1u << 20), qPrintable(QString::number(source.provided)));
    QCOMPARE(harness.collector.stats().bytesReceived, std::uint64_t{0});
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::chunkedBodyBeyondLimit() {
    CollectorConfig config = testConfig();
    config.maxBodyBytes = 64 * 1024;
    Harness harness(config);
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
    const QByteArray chunk(32 * 1024, 'x');
    for (int i = 0; i < 4; ++i)
        QVERIFY(client.send(QByteArray::number(chunk.size(), 16) + "\r\n" + chunk + "\r\n"));
    QVERIFY(client.send("0\r\n\r\n"));
    const QByteArray response = client.readResponse();
    QCOMPARE(statusOf(response), 413);
    QCOMPARE(QJsonDocument::fromJson(bodyOf(response)).object().value("error").toString(),
             QString("payload_too_large"));
    // Buffering stopped at the limit: no more than the limit (plus one read) was taken.
    QVERIFY(harness.collector.stats().bytesReceived <= config.maxBodyBytes + chunk.size() + 16);
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::endlessChunkedBodyIsCutOff() {
    CollectorConfig config = testConfig();
    config.maxBodyBytes = 64 * 1024;
    config.maxDiscardBytes = 256 * 1024;
    Harness harness(config);
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"));
    const QByteArray chunk(64 * 1024, 'x');
    const QByteArray framed = QByteArray::number(chunk.size(), 16) + "\r\n" + chunk + "\r\n";
    bool cutOff = false;
    for (int i = 0; i < 1024 && !cutOff; ++i) // at most 64 MB
        cutOff = !client.send(framed);
    // Told why before being dropped: the 413 is written straight to the socket.
    const QByteArray response = client.readResponse();
    QCOMPARE(statusOf(response), 413);
    QCOMPARE(QJsonDocument::fromJson(bodyOf(response)).object().value("error").toString(),
             QString("payload_too_large"));
    QVERIFY(cutOff || client.waitClosed(5s));
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QCOMPARE(harness.collector.stats().responsesByStatus.at(413), std::uint64_t{1});
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

void TestCollector::ambiguousFraming_data() {
    QTest::addColumn<QByteArray>("headers");
    QTest::addColumn<int>("status");
    QTest::addColumn<QString>("detailContains");
    QTest::newRow("two different Content-Length")
        << QByteArray("Content-Length: 13\r\nContent-Length: 4\r\n") << 400 << "conflicting Content-Length";
    QTest::newRow("Content-Length and chunked")
        << QByteArray("Content-Length: 13\r\nTransfer-Encoding: chunked\r\n") << 400 << "ambiguous";
    QTest::newRow("unknown Transfer-Encoding")
        << QByteArray("Transfer-Encoding: gzip, chunked\r\n") << 400 << "not supported";
    QTest::newRow("the same Content-Length twice")
        << QByteArray("Content-Length: 13\r\nContent-Length: 13\r\n") << 200 << "";
}

// Request smuggling: a body whose length two parsers could read differently is refused before
// it is read, and the connection is closed.
void TestCollector::ambiguousFraming() {
    QFETCH(QByteArray, headers);
    QFETCH(int, status);
    QFETCH(QString, detailContains);

    Harness harness;
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
                        headers + "\r\n" + R"({"event":"e"})"));
    const QByteArray response = client.readResponse();
    QCOMPARE(statusOf(response), status);
    if (status == 400) {
        const QJsonObject error = QJsonDocument::fromJson(bodyOf(response)).object();
        QCOMPARE(error.value("error").toString(), QString("bad_framing"));
        QVERIFY2(error.value("detail").toString().contains(detailContains),
                 qPrintable(error.value("detail").toString()));
        QVERIFY(client.waitClosed(5s));
        QCOMPARE(harness.collector.stats().bytesReceived, std::uint64_t{0});
        QCOMPARE(harness.sink.received(), std::size_t{0});
        QVERIFY(harness.sink.rejected().empty());
    } else {
        QCOMPARE(harness.sink.committed().size(), std::size_t{1});
    }
}

void TestCollector::malformedContentLength_data() {
    QTest::addColumn<QByteArray>("length");
    QTest::newRow("-1") << QByteArray("-1");
    QTest::newRow("abc") << QByteArray("abc");
}

// libmicrohttpd 0.9.75 refuses these itself, before the collector sees the request, and writes
// its status line and headers twice (its error path builds them, then its normal reply path
// builds them again) before its own HTML body. Nothing the application can hook sits in between;
// what is asserted: a 400 status line first, the connection closed, nothing stored, and the
// server serving others.
void TestCollector::malformedContentLength() {
    QFETCH(QByteArray, length);
    Harness harness;
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + length + "\r\n\r\n{}"));
    const QByteArray response = client.readResponse();
    QVERIFY2(response.startsWith("HTTP/1.1 400 "), response.constData());
    QVERIFY(client.waitClosed(5s));
    qInfo("status lines in the answer: %lld", static_cast<long long>(response.count("HTTP/1.1 400 ")));
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QVERIFY(harness.sink.rejected().empty());
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
}

void TestCollector::dangerousUrls_data() {
    QTest::addColumn<QByteArray>("target");
    QTest::addColumn<int>("status");
    QTest::newRow("escaped NUL then dot-dot") << QByteArray("/batch%00/../evil") << 400;
    QTest::newRow("escaped NUL") << QByteArray("/batch%00") << 400;
    QTest::newRow("escaped line feed") << QByteArray("/e%0A/") << 400;
    QTest::newRow("escaped DEL") << QByteArray("/e/%7f") << 400;
    QTest::newRow("NUL in the query") << QByteArray("/e/?token=phc%00x") << 400;
    QTest::newRow("dot-dot segment") << QByteArray("/batch/../e/") << 400;
    QTest::newRow("escaped dot-dot") << QByteArray("/x/%2e%2E/e/") << 400;
    QTest::newRow("dot segment") << QByteArray("/./e/") << 400;
    QTest::newRow("dots inside a name are fine") << QByteArray("/e..x/") << 404;
    QTest::newRow("plain escapes are fine") << QByteArray("/e/?x=%41%20b") << 200;
}

// MHD unescapes the target in place: "/batch%00/../evil" would be routed as "/batch".
void TestCollector::dangerousUrls() {
    QFETCH(QByteArray, target);
    QFETCH(int, status);
    Harness harness;
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST " + target +
                        " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        "Content-Length: 13\r\n\r\n" +
                        R"({"event":"e"})"));
    const QByteArray response = client.readResponse();
    QCOMPARE(statusOf(response), status);
    if (status == 400) {
        QCOMPARE(QJsonDocument::fromJson(bodyOf(response)).object().value("error").toString(),
                 QString("bad_url"));
        QCOMPARE(harness.sink.received(), std::size_t{0});
    }
    QCOMPARE(harness.sink.committed().size(), std::size_t(status == 200 ? 1 : 0));
}

// A request line with no space (a TLS hello, random bytes) is dropped by libmicrohttpd before
// the collector sees anything: no answer, the connection closed, nothing stored, others served.
void TestCollector::binaryRequestLine() {
    Harness harness;
    RawClient client(harness.collector.port());
    QVERIFY(client.send(QByteArray("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15)));
    QVERIFY(client.waitClosed(5s));
    QVERIFY(client.readResponse(100ms).isEmpty());
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QVERIFY(harness.sink.rejected().empty());
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
}

// A chunk size of 2^64-1 is a legal size to libmicrohttpd: its data streams in like any body and
// is cut at maxBodyBytes (+ maxDiscardBytes) with a 413. One beyond 64 bits is refused 413 by
// libmicrohttpd itself.
void TestCollector::hugeChunkSize() {
    CollectorConfig config = testConfig();
    config.maxBodyBytes = 64 * 1024;
    config.maxDiscardBytes = 64 * 1024;
    Harness harness(config);
    {
        RawClient client(harness.collector.port());
        QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "ffffffffffffffff\r\n"));
        const QByteArray data(16 * 1024, 'x');
        bool cutOff = false;
        for (int i = 0; i < 64 && !cutOff; ++i) // 1 MB at most, far past both allowances
            cutOff = !client.send(data);
        const QByteArray response = client.readResponse();
        QCOMPARE(statusOf(response), 413);
        QCOMPARE(QJsonDocument::fromJson(bodyOf(response)).object().value("error").toString(),
                 QString("payload_too_large"));
        QVERIFY(cutOff || client.waitClosed(5s));
    }
    {
        RawClient client(harness.collector.port());
        QVERIFY(client.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "1ffffffffffffffff\r\nabc"));
        const QByteArray response = client.readResponse();
        QCOMPARE(statusOf(response), 413);
        QVERIFY(client.waitClosed(5s));
    }
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QVERIFY(harness.sink.rejected().empty());
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
}

void TestCollector::decompressionBombs_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<QByteArray>("body");

    const QByteArray zeros = gzip(QByteArray(10 << 20, '\0'));
    QTest::newRow("gzip: 10 MB of zeros")
        << QByteArray("/e/") << QList<QByteArray>{"Content-Encoding: gzip"} << zeros;
    QTest::newRow("gzip by magic") << QByteArray("/v1/batch") << QList<QByteArray>{} << zeros;
    const QByteArray lzBomb = lzCompressToBase64("[\"" + QString(3'000'000, 'a') + "\"]");
    QTest::newRow("lz64: 3 M characters")
        << QByteArray("/e/?compression=lz64") << QList<QByteArray>{} << lzBomb;
    QTest::newRow("form lz64") << QByteArray("/e/") << QList<QByteArray>{}
                               << "data=" + formField(lzBomb) + "&compression=lz64";
}

void TestCollector::decompressionBombs() {
    QFETCH(QByteArray, path);
    QFETCH(QList<QByteArray>, headers);
    QFETCH(QByteArray, body);

    CollectorConfig config = testConfig();
    config.maxDecompressedBytes = 1 << 20;
    Harness harness(config);
    QVERIFY(body.size() < 64 * 1024); // a small body...
    const HttpReply reply = send(harness.collector.port(), {"POST", path, body, headers, {}});
    QCOMPARE(reply.status, 413L); // ...refused for what it would become
    QCOMPARE(reply.json().value("error").toString(), QString("decompressed_too_large"));
    QCOMPARE(harness.sink.received(), std::size_t{0});
    // Released when the request ends, just after its answer went out.
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

// kB of /proc/self/status's `field` (VmRSS, VmHWM); -1 when unreadable.
static long procStatusKb(const char* field) {
    QFile status("/proc/self/status");
    if (!status.open(QIODevice::ReadOnly)) return -1;
    for (const QByteArray& line : status.readAll().split('\n')) {
        if (line.startsWith(field))
            return line.mid(qstrlen(field) + 1).trimmed().split(' ').value(0).toLong();
    }
    return -1;
}

// Refused bombs cost about the cap, not what they would inflate to: the peak RSS of the whole
// process while answering them grows by a small multiple of the cap.
void TestCollector::decompressionBombsHoldLittle() {
    CollectorConfig config = testConfig();
    config.maxDecompressedBytes = 1 << 20;
    Harness harness(config);
    const QByteArray gzipBomb = gzip(QByteArray(64 << 20, '\0')); // 64 MiB of zeros in ~64 kB
    const QByteArray lzBomb = lzCompressToBase64("[\"" + QString(20'000'000, 'a') + "\"]");
    const std::vector<HttpCall> bombs{
        {"POST", "/e/", gzipBomb, {"Content-Encoding: gzip"}, {}},
        {"POST", "/e/?compression=lz64", lzBomb, {}, {}},
        {"POST", "/e/", "data=" + formField(lzBomb) + "&compression=lz64", {}, {}}};
    // Warm up libcurl and the server threads, then reset the peak (clear_refs 5: VmHWM = VmRSS).
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"warm"})", {}, {}}).status, 200L);
    {
        QFile clear("/proc/self/clear_refs");
        if (!clear.open(QIODevice::WriteOnly) || clear.write("5") != 1) QSKIP("cannot reset VmHWM");
    }
    const long before = procStatusKb("VmRSS:");
    for (const HttpCall& bomb : bombs) {
        QVERIFY(bomb.body.size() < 128 * 1024);
        const HttpReply reply = send(harness.collector.port(), bomb);
        QCOMPARE(reply.status, 413L);
        QCOMPARE(reply.json().value("error").toString(), QString("decompressed_too_large"));
    }
    const long peak = procStatusKb("VmHWM:");
    QVERIFY(before > 0 && peak > 0);
    qInfo("peak RSS growth while refusing the bombs: %ld kB (cap %zu kB)", peak - before,
          config.maxDecompressedBytes / 1024);
    QVERIFY2(peak - before < 16 * 1024, qPrintable(QString::number(peak - before) + " kB"));
    QCOMPARE(harness.sink.received(), std::size_t{1});
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

// While it inflates, a body counts against maxInFlightBytes: with the bound below the cap, a
// bomb is refused 429 for the memory it would hold, not inflated to the cap.
void TestCollector::inflatingCountsInFlight() {
    CollectorConfig config = testConfig();
    config.maxDecompressedBytes = 8 << 20;
    config.maxInFlightBytes = 1 << 20;
    Harness harness(config);
    const HttpReply reply =
        send(harness.collector.port(),
             {"POST", "/e/", gzip(QByteArray(32 << 20, '\0')), {"Content-Encoding: gzip"}, {}});
    QCOMPARE(reply.status, 429L);
    QCOMPARE(reply.json().value("error").toString(), QString("overloaded"));
    QVERIFY(reply.headers.contains("retry-after"));
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
    // A body that fits is decoded as ever.
    QCOMPARE(
        send(harness.collector.port(), {"POST", "/e/", gzip(kPostHogBatch), {"Content-Encoding: gzip"}, {}})
            .status,
        200L);
}

void TestCollector::truncatedGzipIsRejected() {
    Harness harness;
    const QByteArray whole = gzip(kPostHogBatch);
    const QByteArray truncated = whole.left(whole.size() / 2);
    const HttpReply reply = send(harness.collector.port(),
                                 {"POST", "/i/v0/e/?compression=gzip-js", truncated, {"X-Test: 1"}, {}});
    QCOMPARE(reply.status, 400L);
    QCOMPARE(reply.json().value("error").toString(), QString("gzip_truncated"));
    QVERIFY(reply.json().value("detail").toString().contains("truncated"));

    const auto rejected = harness.sink.rejected();
    QCOMPARE(rejected.size(), std::size_t{1});
    QCOMPARE(bytes(rejected[0].rawBody), truncated);
    QCOMPARE(rejected[0].reason, std::string("gzip_truncated"));
    QCOMPARE(rejected[0].path, std::string("/i/v0/e/"));
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::rejectAnsweredOnlyWhenKept_data() {
    QTest::addColumn<int>("sinkStatus");
    QTest::addColumn<long>("status");
    QTest::addColumn<QString>("error");
    QTest::newRow("kept") << int(IngestStatus::Committed) << 400L << "not_json";
    QTest::newRow("could not be kept") << int(IngestStatus::Failed) << 503L << "reject_failed";
}

// Clients never retry a 400: it must not go out before the dead letter is durable.
void TestCollector::rejectAnsweredOnlyWhenKept() {
    QFETCH(int, sinkStatus);
    QFETCH(long, status);
    QFETCH(QString, error);

    Harness harness;
    harness.sink.holdRejects();
    harness.sink.setRejectResult({static_cast<IngestStatus>(sinkStatus), 4, {}});
    const quint16 port = harness.collector.port();
    auto reply = std::async(std::launch::async, [port] {
        return send(port, {"POST", "/e/", "{nope", {}, {}});
    });
    QVERIFY(harness.sink.waitRejected(1));
    // The sink holds the body: no answer may come while it does.
    QCOMPARE(reply.wait_for(300ms), std::future_status::timeout);
    QCOMPARE(harness.collector.stats().pendingCommits, std::size_t{1});
    harness.sink.releaseRejects();
    const HttpReply answered = reply.get();
    QCOMPARE(answered.status, status);
    QCOMPARE(answered.json().value("error").toString(), error);
    if (status == 503) QCOMPARE(answered.headers.value("retry-after"), QByteArray("4"));
    QCOMPARE(harness.sink.rejected().size(), std::size_t{1});
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QCOMPARE(harness.collector.stats().pendingCommits, std::size_t{0});
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

// stop() treats a reject waiting for the sink like a commit waiting: 503 after the grace.
void TestCollector::stopWhileRejectsWait() {
    CollectorConfig config = testConfig();
    config.stopGraceMillis = 300;
    TestSink sink;
    Collector collector(config, sink);
    collector.start();
    sink.holdRejects();
    const quint16 port = collector.port();
    auto reply = std::async(std::launch::async, [port] {
        return send(port, {"POST", "/e/", "{nope", {}, {}});
    });
    QVERIFY(sink.waitRejected(1));
    const auto stopping = Clock::now();
    collector.stop();
    QVERIFY(Clock::now() - stopping < 3s);
    const HttpReply answered = reply.get();
    QCOMPARE(answered.status, 503L);
    QCOMPARE(answered.json().value("error").toString(), QString("reject_failed"));
    QVERIFY(answered.headers.contains("retry-after"));
    sink.releaseRejects(); // late: harmless, and the books settle
    QTRY_COMPARE_WITH_TIMEOUT(collector.stats().pendingCommits, std::size_t{0}, 5000);
    QCOMPARE(collector.stats().inFlightBytes, std::size_t{0});
}

void TestCollector::undecodableBodies_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QString>("reason");
    QTest::addColumn<QString>("detailContains");

    const QList<QByteArray> none;
    QTest::newRow("not JSON") << QByteArray("/e/") << none << QByteArray(R"({"event": nope})") << "not_json"
                              << "byte offset 11";
    QTest::newRow("trailing garbage")
        << QByteArray("/v1/track") << none << QByteArray(R"({"event":"e"} x)") << "not_json"
        << "byte offset";
    QTest::newRow("gzip of not JSON")
        << QByteArray("/e/") << QList<QByteArray>{"Content-Encoding: gzip"} << gzip("hello") << "not_json"
        << "byte offset 0";
    QTest::newRow("corrupt gzip") << QByteArray("/e/") << QList<QByteArray>{"Content-Encoding: gzip"}
                                  << QByteArray("\x1f\x8b\x08\x00garbage-garbage-garbage", 27)
                                  << "gzip_invalid"
                                  << "gzip";
    QTest::newRow("unsupported Content-Encoding")
        << QByteArray("/e/") << QList<QByteArray>{"Content-Encoding: br"} << QByteArray("{}")
        << "unsupported_content_encoding"
        << "br";
    QTest::newRow("bad base64 in form data")
        << QByteArray("/e/") << none << QByteArray("data=eyJh$$$") << "base64_invalid"
        << "offset 4";
    QTest::newRow("bad percent escape")
        << QByteArray("/e/") << none << QByteArray("data=%zz") << "form_invalid"
        << "%";
    QTest::newRow("form without data")
        << QByteArray("/e/") << QList<QByteArray>{"Content-Type: application/x-www-form-urlencoded"}
        << QByteArray("compression=lz64") << "form_invalid"
        << "data";
    QTest::newRow("lz64 with foreign characters")
        << QByteArray("/e/?compression=lz64") << none << QByteArray("N4Ig!!!!") << "lz64_invalid"
        << "offset 4";
    QTest::newRow("lz64 cut short") << QByteArray("/e/?compression=lz64") << none
                                    << QByteArray("N4AgRA1gpgnm") << "lz64_invalid"
                                    << "end marker";
    QTest::newRow("empty body") << QByteArray("/e/") << none << QByteArray() << "empty_body"
                                << "empty";
}

void TestCollector::undecodableBodies() {
    QFETCH(QByteArray, path);
    QFETCH(QList<QByteArray>, headers);
    QFETCH(QByteArray, body);
    QFETCH(QString, reason);
    QFETCH(QString, detailContains);

    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {"POST", path, body, headers, {}});
    QCOMPARE(reply.status, 400L);
    QCOMPARE(reply.json().value("error").toString(), reason);
    const QString detail = reply.json().value("detail").toString();
    QVERIFY2(detail.contains(detailContains), qPrintable(detail));

    const auto rejected = harness.sink.rejected();
    QCOMPARE(rejected.size(), std::size_t{1});
    QCOMPARE(bytes(rejected[0].rawBody), body);
    QCOMPARE(QString::fromStdString(rejected[0].reason), reason);
    QCOMPARE(QString::fromStdString(rejected[0].detail), detail);
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QCOMPARE(harness.collector.stats().rejectedRequests, std::uint64_t{1});
}

void TestCollector::invalidUtf8IsPassedOn() {
    Harness harness;
    const QByteArray body(
        "{\"event\":\"e\",\"properties\":{\"token\":\"t1\",\"name\":\"\xff\xfe\xc0\xaf\"}}");
    const HttpReply reply = send(harness.collector.port(), {"POST", "/e/", body, {}, {}});
    QCOMPARE(reply.status, 200L);
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(bytes(committed[0].body), body);
    QCOMPARE(committed[0].token, std::string("t1"));
}

void TestCollector::bigNumbersArePassedOn_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QString>("token");

    QTest::newRow("integer beyond 64 bits, envelope token")
        << QByteArray("/batch/")
        << QByteArray(
               R"({"api_key":"phc_big","batch":[{"event":"e","properties":{"n":123456789012345678901234567890}}]})")
        << "phc_big";
    QTest::newRow("double beyond range, event token")
        << QByteArray("/e/") << QByteArray(R"([{"event":"e","properties":{"x":1e400,"token":"phc_over"}}])")
        << "phc_over";
    QTest::newRow("negative overflow, Segment write key")
        << QByteArray("/v1/batch")
        << QByteArray(
               R"({"batch":[{"type":"track","event":"e","properties":{"n":-1E+400}}],"writeKey":"wk_over"})")
        << "wk_over";
    QTest::newRow("overflow and invalid UTF-8")
        << QByteArray("/e/")
        << QByteArray(
               "{\"event\":\"\xff\",\"properties\":{\"n\":99999999999999999999999,\"token\":\"phc_both\"}}")
        << "phc_both";
}

// Valid JSON that simdjson cannot hold (BIGINT / NUMBER errors) reaches the sink whole, with the
// token found: the pipeline dead-letters only the element it cannot decode.
void TestCollector::bigNumbersArePassedOn() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, body);
    QFETCH(QString, token);

    CollectorConfig config = testConfig();
    config.tokens = {token.toStdString()}; // the token must be found for the body to pass
    Harness harness(config);
    const HttpReply reply =
        send(harness.collector.port(), {"POST", path, body, {"Content-Type: application/json"}, {}});
    QCOMPARE(reply.status, 200L);
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(bytes(committed[0].body), body);
    QCOMPARE(QString::fromStdString(committed[0].token), token);
    QVERIFY(harness.sink.rejected().empty());

    // A malformed number is still not JSON (kept for the known ?api_key=).
    const HttpReply bad = send(
        harness.collector.port(),
        {"POST", path + "?api_key=" + token.toUtf8(), R"({"n":1e})", {"Content-Type: application/json"}, {}});
    QCOMPARE(bad.status, 400L);
    QCOMPARE(bad.json().value("error").toString(), QString("not_json"));
}

void TestCollector::deeplyNestedJson_data() {
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QString>("reason");
    const int depth = 100'000;
    QTest::newRow("arrays") << QByteArray(depth, '[') + QByteArray(depth, ']') << "json_too_deep";
    QTest::newRow("objects") << QByteArray("{\"a\":").repeated(depth) + "1" + QByteArray(depth, '}')
                             << "json_too_deep";
    QTest::newRow("unclosed") << QByteArray(depth, '[') << "not_json";
}

// No recursion anywhere on the way: the answer is a defined 400, and the server keeps serving.
void TestCollector::deeplyNestedJson() {
    QFETCH(QByteArray, body);
    QFETCH(QString, reason);
    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {"POST", "/e/", body, {}, {}});
    QCOMPARE(reply.status, 400L);
    QCOMPARE(reply.json().value("error").toString(), reason);
    QCOMPARE(harness.sink.rejected().size(), std::size_t{1});

    const HttpReply next = send(harness.collector.port(), {"POST", "/e/", R"({"event":"after"})", {}, {}});
    QCOMPARE(next.status, 200L);
}

void TestCollector::overloadedSink() {
    CollectorConfig config = testConfig();
    config.retryAfterSeconds = 7;
    Harness harness(config);
    harness.sink.setOverloaded(true);
    const HttpReply reply = send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}});
    QCOMPARE(reply.status, 429L);
    QCOMPARE(reply.headers.value("retry-after"), QByteArray("7"));
    QCOMPARE(reply.json().value("error").toString(), QString("overloaded"));
    QCOMPARE(harness.sink.received(), std::size_t{0});

    harness.sink.setOverloaded(false);
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
}

// Bodies waiting for their commit count against maxInFlightBytes.
void TestCollector::inFlightBytesBound() {
    CollectorConfig config = testConfig();
    config.maxInFlightBytes = 1000;
    Harness harness(config);
    harness.sink.hold();
    const QByteArray body = R"({"event":"e","properties":{"pad":")" + QByteArray(600, 'p') + "\"}}";
    const quint16 port = harness.collector.port();
    auto first = std::async(std::launch::async, [&] { return send(port, {"POST", "/e/", body, {}, {}}); });
    QVERIFY(harness.sink.waitReceived(1));
    QVERIFY(harness.collector.stats().inFlightBytes >= std::size_t(body.size()));

    const HttpReply second = send(port, {"POST", "/e/", body, {}, {}});
    QCOMPARE(second.status, 429L);
    QVERIFY(second.headers.contains("retry-after"));

    harness.sink.release();
    QCOMPARE(first.get().status, 200L);
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

void TestCollector::sinkVerdicts_data() {
    QTest::addColumn<int>("status");
    QTest::addColumn<int>("retryAfter");
    QTest::addColumn<long>("httpStatus");
    QTest::addColumn<QString>("error");
    QTest::newRow("backpressure") << int(IngestStatus::Backpressure) << 5 << 429L << "backpressure";
    QTest::newRow("failed") << int(IngestStatus::Failed) << 2 << 503L << "commit_failed";
}

void TestCollector::sinkVerdicts() {
    QFETCH(int, status);
    QFETCH(int, retryAfter);
    QFETCH(long, httpStatus);
    QFETCH(QString, error);

    Harness harness;
    harness.sink.setResult({static_cast<IngestStatus>(status), retryAfter, "disk says no"});
    const HttpReply reply = send(harness.collector.port(), {"POST", "/v1/track", R"({"event":"e"})", {}, {}});
    QCOMPARE(reply.status, httpStatus);
    QCOMPARE(reply.headers.value("retry-after"), QByteArray::number(retryAfter));
    QCOMPARE(reply.json().value("error").toString(), error);
    QCOMPARE(reply.json().value("detail").toString(), QString("disk says no"));
    QCOMPARE(harness.collector.stats().acceptedRequests, std::uint64_t{0});
}

void TestCollector::answersOnlyAfterCommit() {
    Harness harness;
    const quint16 port = harness.collector.port();

    // Held: the request reaches the sink, and no answer comes while the commit is outstanding.
    harness.sink.hold();
    auto held = std::async(std::launch::async, [&] {
        return send(port, {"POST", "/e/", R"({"event":"held"})", {}, {}});
    });
    QVERIFY(harness.sink.waitReceived(1));
    QCOMPARE(held.wait_for(300ms), std::future_status::timeout);
    QCOMPARE(harness.collector.stats().pendingCommits, std::size_t{1});
    harness.sink.release();
    QCOMPARE(held.get().status, 200L);
    QCOMPARE(harness.sink.committed().size(), std::size_t{1});

    // Delayed: the answer cannot come before the commit delay has passed.
    harness.sink.setCommitDelay(200ms);
    const auto started = Clock::now();
    const HttpReply reply = send(port, {"POST", "/e/", R"({"event":"delayed"})", {}, {}});
    QCOMPARE(reply.status, 200L);
    QVERIFY(Clock::now() - started >= 200ms);
    QCOMPARE(harness.sink.committed().size(), std::size_t{2});
    QCOMPARE(harness.collector.stats().pendingCommits, std::size_t{0});
}

// 50 requests wait for commits at once on 2 server threads: if a thread blocked per request,
// no group could hold more than 2.
void TestCollector::concurrentRequestsShareGroupCommit() {
    Harness harness;
    harness.sink.setCommitDelay(150ms);
    std::vector<HttpCall> calls;
    for (int i = 0; i < 50; ++i)
        calls.push_back(
            {"POST", "/e/", R"({"event":"e","properties":{"i":)" + QByteArray::number(i) + "}}", {}, {}});
    const std::vector<HttpReply> replies = sendConcurrently(harness.collector.port(), calls);
    for (const HttpReply& reply : replies) {
        QCOMPARE(reply.error, CURLE_OK);
        QCOMPARE(reply.status, 200L);
    }
    QCOMPARE(harness.sink.committed().size(), std::size_t{50});
    QVERIFY2(harness.sink.largestGroup() >= 10, qPrintable(QString::number(harness.sink.largestGroup())));
    QCOMPARE(harness.collector.stats().acceptedRequests, std::uint64_t{50});
}

void TestCollector::flagsAndConfig_data() {
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<QStringList>("objectKeys");

    const QStringList flagKeys{"featureFlags", "featureFlagPayloads", "flags", "config", "toolbarParams"};
    QTest::newRow("GET /flags?v=2") << QByteArray("GET") << QByteArray("/flags?v=2") << QByteArray()
                                    << QList<QByteArray>{} << flagKeys;
    QTest::newRow("POST /flags/?v=2&config=true")
        << QByteArray("POST") << QByteArray("/flags/?v=2&config=true")
        << QByteArray(R"({"token":"phc_x","distinct_id":"d"})") << QList<QByteArray>{} << flagKeys;
    QTest::newRow("POST /decide/?v=3 gzip")
        << QByteArray("POST") << QByteArray("/decide/?v=3&compression=gzip-js")
        << gzip(R"({"token":"phc_x","distinct_id":"d"})") << QList<QByteArray>{"Content-Type: text/plain"}
        << flagKeys;
    QTest::newRow("GET /decide") << QByteArray("GET") << QByteArray("/decide/") << QByteArray()
                                 << QList<QByteArray>{} << flagKeys;
    QTest::newRow("GET /array/<token>/config") << QByteArray("GET") << QByteArray("/array/phc_x/config")
                                               << QByteArray() << QList<QByteArray>{} << QStringList{};
}

void TestCollector::flagsAndConfig() {
    QFETCH(QByteArray, method);
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, body);
    QFETCH(QList<QByteArray>, headers);
    QFETCH(QStringList, objectKeys);

    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {method, path, body, headers, {}});
    QCOMPARE(reply.status, 200L);
    QVERIFY(reply.headers.value("content-type").startsWith("application/json"));
    QJsonParseError error{};
    const QJsonObject object = QJsonDocument::fromJson(reply.body, &error).object();
    QCOMPARE(error.error, QJsonParseError::NoError);
    for (const QString& key : objectKeys)
        QVERIFY2(object.value(key).isObject(), qPrintable(key));
    const QJsonArray compression = object.value("supportedCompression").toArray();
    // As PostHog announces it: posthog-js then sends gzip-js, as in production.
    QVERIFY(compression.contains("gzip") && compression.contains("gzip-js"));
    if (path.startsWith("/array/")) {
        QCOMPARE(object.value("token").toString(), QString("phc_x"));
    } else {
        QCOMPARE(object.value("errorsWhileComputingFlags"), QJsonValue(false));
        QCOMPARE(object.value("sessionRecording"), QJsonValue(false));
    }
    QCOMPARE(harness.sink.received(), std::size_t{0}); // flags are not events
}

void TestCollector::remoteConfigScriptEscapesToken() {
    Harness harness;
    // The path token decodes to  ph"c'x</script>
    const HttpReply reply =
        send(harness.collector.port(), {"GET", "/array/ph%22c'x%3C%2Fscript%3E/config.js", {}, {}, {}});
    QCOMPARE(reply.status, 200L);
    QVERIFY(reply.headers.value("content-type").startsWith("application/javascript"));
    const QByteArray script = reply.body;
    const QByteArray prefix = "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
                              "window._POSTHOG_REMOTE_CONFIG[\"ph\\\"c'x</script>\"]={config:";
    const QByteArray suffix = ",siteApps:[]}})();";
    QVERIFY2(script.startsWith(prefix), script.constData());
    QVERIFY(script.endsWith(suffix));
    const QByteArray config = script.mid(prefix.size(), script.size() - prefix.size() - suffix.size());
    QJsonParseError error{};
    const QJsonObject object = QJsonDocument::fromJson(config, &error).object();
    QCOMPARE(error.error, QJsonParseError::NoError);
    QCOMPARE(object.value("token").toString(), QString("ph\"c'x</script>"));
}

// What a local pipeline answers must not change what the SDK sends: no field of posthog-js's
// remote config / flags answer may switch a capture feature off behind the app's back.
void TestCollector::flagsAndConfigLeaveTheAppInCharge_data() {
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QByteArray>("path");
    QTest::newRow("GET /flags?v=2") << QByteArray("GET") << QByteArray("/flags/?v=2");
    QTest::newRow("POST /flags?v=2&config=true")
        << QByteArray("POST") << QByteArray("/flags/?v=2&config=true");
    QTest::newRow("POST /decide?v=3") << QByteArray("POST") << QByteArray("/decide/?v=3");
    QTest::newRow("GET /array/<token>/config") << QByteArray("GET") << QByteArray("/array/phc_x/config");
    QTest::newRow("GET /array/<token>/config.js")
        << QByteArray("GET") << QByteArray("/array/phc_x/config.js");
}

void TestCollector::flagsAndConfigLeaveTheAppInCharge() {
    QFETCH(QByteArray, method);
    QFETCH(QByteArray, path);
    Harness harness;
    const HttpReply reply =
        send(harness.collector.port(), {method, path, R"({"token":"phc_x","distinct_id":"d"})", {}, {}});
    QCOMPARE(reply.status, 200L);
    QByteArray json = reply.body;
    if (path.endsWith(".js")) { // ...={config:{...},siteApps:[]}})();
        const qsizetype start = json.indexOf("{config:") + 8;
        const qsizetype end = json.lastIndexOf(",siteApps:[]}");
        QVERIFY(start > 8 && end > start);
        json = json.mid(start, end - start);
    }
    QJsonParseError error{};
    const QJsonObject config = QJsonDocument::fromJson(json, &error).object();
    QCOMPARE(error.error, QJsonParseError::NoError);
    // posthog-js keeps autocapture off until an answer says autocapture_opt_out: false.
    QCOMPARE(config.value("autocapture_opt_out"), QJsonValue(false));
    // Absent, posthog-js keeps what the app configured; any value would override its default.
    for (const char* key : {"heatmaps", "captureDeadClicks", "capturePerformance", "autocaptureExceptions",
                            "errorTracking", "logs", "analytics"})
        QVERIFY2(!config.contains(key), key);
    // The collector takes no recordings and serves no surveys, tours, site apps or toolbar.
    QCOMPARE(config.value("sessionRecording"), QJsonValue(false));
    QCOMPARE(config.value("surveys"), QJsonValue(false));
    QCOMPARE(config.value("siteApps").toArray().size(), 0);
    QCOMPARE(config.value("toolbarParams").toObject().size(), 0);
    QCOMPARE(config.value("elementsChainAsString"), QJsonValue(true));
    if (path.startsWith("/array/")) {
        QCOMPARE(config.value("productTours"), QJsonValue(false));
        QCOMPARE(config.value("conversations"), QJsonValue(false));
    } else {
        // /decide of older posthog-js: autocapture only with enable_collect_everything.
        QCOMPARE(config.value("config").toObject().value("enable_collect_everything"), QJsonValue(true));
    }
}

// analytics-next's standard delivery, as it sends it: the type's first letter as the path,
// text/plain (no preflight for the type), the write key in the body and as Basic auth.
void TestCollector::analyticsNextRequest() {
    CollectorConfig config = testConfig();
    config.tokens = {"wk_next"};
    Harness harness(config);
    const QByteArray body =
        R"({"timestamp":"2026-01-02T03:04:05.678Z","integrations":{},"type":"page",)"
        R"("properties":{"path":"/"},"name":"Home","context":{"library":{"name":)"
        R"("analytics.js","version":"next-1.84.3"}},"messageId":"ajs-next-1",)"
        R"("anonymousId":"anon-1","writeKey":"wk_next","userId":null,"sentAt":)"
        R"("2026-01-02T03:04:05.700Z","_metadata":{"bundled":["Segment.io"],"unbundled":[]}})";
    const HttpReply reply =
        send(harness.collector.port(), {"POST",
                                        "/v1/p",
                                        body,
                                        {"Content-Type: text/plain", "Origin: http://127.0.0.1:1234",
                                         "Authorization: Basic " + QByteArray("wk_next:").toBase64()},
                                        {}});
    QCOMPARE(reply.status, 200L);
    QCOMPARE(reply.headers.value("access-control-allow-origin"), QByteArray("http://127.0.0.1:1234"));
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(bytes(committed[0].body), body); // it has its type: nothing inserted
    QCOMPARE(committed[0].token, std::string("wk_next"));
    QCOMPARE(toString(committed[0].vendor), std::string_view("segment"));
    QCOMPARE(toString(committed[0].encoding), std::string_view("plain"));
}

void TestCollector::sdkPathsPreflight_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("methods");
    for (const char* path :
         {"/v1/t", "/v1/p", "/v1/i", "/v1/a", "/v1/g", "/v1/s", "/v1/b", "/v1/m", "/i/v1/analytics/events"})
        QTest::newRow(path) << QByteArray(path) << QByteArray("POST, OPTIONS");
    QTest::newRow("/v1/projects/<writeKey>/settings")
        << QByteArray("/v1/projects/wk_1/settings") << QByteArray("GET, OPTIONS");
    QTest::newRow("/v1/projects/<writeKey>/settings/")
        << QByteArray("/v1/projects/wk_1/settings/") << QByteArray("GET, OPTIONS");
}

// analytics-next's Authorization and X-Retry-Count headers make every post a preflighted one.
void TestCollector::sdkPathsPreflight() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, methods);
    Harness harness;
    const HttpReply reply =
        send(harness.collector.port(),
             {"OPTIONS",
              path,
              {},
              {"Origin: http://127.0.0.1:4321", "Access-Control-Request-Method: POST",
               "Access-Control-Request-Headers: authorization,content-type,x-retry-count"},
              {}});
    QCOMPARE(reply.status, 204L);
    QCOMPARE(reply.headers.value("access-control-allow-origin"), QByteArray("http://127.0.0.1:4321"));
    QCOMPARE(reply.headers.value("access-control-allow-methods"), methods);
    QCOMPARE(reply.headers.value("access-control-allow-headers"),
             QByteArray("authorization,content-type,x-retry-count"));
    QVERIFY(!reply.headers.contains("access-control-allow-credentials"));
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::segmentSettings_data() {
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("host"); // empty: curl's own, 127.0.0.1:<port>
    QTest::addColumn<QByteArray>("writeKey");
    QTest::newRow("settings") << QByteArray("/v1/projects/wk_1/settings") << QByteArray()
                              << QByteArray("wk_1");
    QTest::newRow("settings/") << QByteArray("/v1/projects/wk_1/settings/") << QByteArray()
                               << QByteArray("wk_1");
    QTest::newRow("named host") << QByteArray("/v1/projects/wk_1/settings") << QByteArray("localhost:9999")
                                << QByteArray("wk_1");
    QTest::newRow("escaped write key")
        << QByteArray("/v1/projects/wk%22x/settings") << QByteArray() << QByteArray("wk\"x");
}

void TestCollector::segmentSettings() {
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, host);
    QFETCH(QByteArray, writeKey);
    Harness harness;
    const quint16 port = harness.collector.port();
    QList<QByteArray> headers{"Origin: http://127.0.0.1:4321"};
    if (!host.isEmpty()) headers << "Host: " + host;
    const HttpReply reply = send(port, {"GET", path, {}, headers, {}});
    QCOMPARE(reply.status, 200L);
    QVERIFY(reply.headers.value("content-type").startsWith("application/json"));
    QCOMPARE(reply.headers.value("access-control-allow-origin"), QByteArray("http://127.0.0.1:4321"));
    QJsonParseError error{};
    const QJsonObject settings = QJsonDocument::fromJson(reply.body, &error).object();
    QCOMPARE(error.error, QJsonParseError::NoError);
    // Only the Segment.io destination: one integration loads no destination bundle.
    const QJsonObject integrations = settings.value("integrations").toObject();
    QCOMPARE(integrations.keys(), QStringList{"Segment.io"});
    const QJsonObject segmentio = integrations.value("Segment.io").toObject();
    QCOMPARE(segmentio.value("apiKey").toString(), QString::fromUtf8(writeKey));
    // Delivered back here, to the host the page named.
    const QByteArray expectedHost = host.isEmpty() ? "127.0.0.1:" + QByteArray::number(port) : host;
    QCOMPARE(segmentio.value("apiHost").toString(), QString::fromUtf8(expectedHost + "/v1"));
    QCOMPARE(segmentio.value("protocol").toString(), QString("http"));
    QCOMPARE(segmentio.value("unbundledIntegrations").toArray().size(), 0);
    // Nothing else to load or send: no middleware, routing, plugins, edge function, metrics.
    QCOMPARE(settings.value("enabledMiddleware").toObject().size(), 0);
    QVERIFY(settings.value("middlewareSettings").toObject().value("routingRules").toArray().isEmpty());
    QCOMPARE(settings.value("remotePlugins").toArray().size(), 0);
    QCOMPARE(settings.value("edgeFunction").toObject().size(), 0);
    QCOMPARE(settings.value("legacyVideoPluginsEnabled"), QJsonValue(false));
    QCOMPARE(settings.value("metrics").toObject().value("sampleRate").toDouble(-1), 0.0);
    QCOMPARE(settings.value("autoInstrumentationSettings").toObject().value("sampleRate").toDouble(-1), 0.0);
    QVERIFY(settings.value("plan").toObject().value("track").isObject());
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::segmentSettingsForKnownWriteKeysOnly() {
    CollectorConfig config = testConfig();
    config.tokens = {"wk_good"};
    Harness harness(config);
    const quint16 port = harness.collector.port();
    QCOMPARE(send(port, {"GET", "/v1/projects/wk_good/settings", {}, {}, {}}).status, 200L);
    const HttpReply refused = send(port, {"GET", "/v1/projects/wk_bad/settings", {}, {}, {}});
    QCOMPARE(refused.status, 401L);
    QCOMPARE(refused.json().value("error").toString(), QString("unauthorized"));
    QVERIFY(refused.json().value("detail").toString().contains("wk_bad"));
}

// analytics-next's own telemetry ({"series": [...]}, when sampled): not events, not refused.
void TestCollector::segmentMetricsAreDropped() {
    Harness harness;
    const HttpReply reply = send(harness.collector.port(),
                                 {"POST",
                                  "/v1/m",
                                  R"({"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,)"
                                  R"("tags":{"library":"analytics.js"}}]})",
                                  {"Content-Type: text/plain"},
                                  {}});
    QCOMPARE(reply.status, 200L);
    QCOMPARE(harness.sink.received(), std::size_t{0});
    QCOMPARE(harness.collector.stats().acceptedRequests, std::uint64_t{0});
}

// posthog-node's Capture V1 (POSTHOG_CAPTURE_MODE=v1): POST /i/v1/analytics/events, Bearer auth,
// gzip unless compression is off, $lib / $lib_version stripped into PostHog-Sdk-Info, $session_id
// / $window_id lifted to the top level (posthog-node src/capture-v1/sender.ts, transform.ts).
void TestCollector::captureV1_data() {
    QTest::addColumn<QByteArray>("body");
    QTest::addColumn<QByteArray>("sdkInfo");
    QTest::addColumn<QByteArray>("expected");

    const QByteArray order =
        R"({"event":"order_completed","uuid":"0190-a","distinct_id":"user-1",)"
        R"("timestamp":"2026-07-11T10:00:00.000Z","session_id":"s-1","window_id":"w-1",)"
        R"("options":{"process_person_profile":false},"properties":{"amount":10,"big":123456789012345678901234}})";
    const QByteArray identify = R"({"event":"$identify","uuid":"0190-b","distinct_id":"user-1",)"
                                R"("timestamp":"2026-07-11T10:00:00.001Z","options":{},)"
                                R"("properties":{ "$set":{"plan":"pro"}}})";
    QTest::newRow("posthog-node batch")
        << (R"({"created_at":"2026-07-11T10:00:01.000Z","batch":[)" + order + "," + identify + "]}")
        << QByteArray("posthog-node/5.70.0")
        << QByteArray(
               R"({"api_key":"phc_v1","sent_at":"2026-07-11T10:00:01.000Z","batch":[)"
               R"({"event":"order_completed","uuid":"0190-a","distinct_id":"user-1",)"
               R"("timestamp":"2026-07-11T10:00:00.000Z","session_id":"s-1","window_id":"w-1",)"
               R"("options":{"process_person_profile":false},"properties":{"$lib":"posthog-node",)"
               R"("$lib_version":"5.70.0","$session_id":"s-1","$window_id":"w-1","amount":10,)"
               R"("big":123456789012345678901234}},)"
               R"({"event":"$identify","uuid":"0190-b","distinct_id":"user-1",)"
               R"("timestamp":"2026-07-11T10:00:00.001Z","options":{},)"
               R"("properties":{"$lib":"posthog-node","$lib_version":"5.70.0", "$set":{"plan":"pro"}}}]})");
    QTest::newRow("historical migration, $lib kept, no properties, odd elements")
        << QByteArray(R"({"batch":[{"event":"a","distinct_id":"d","properties":{"$lib":"mine","x":1}},)"
                      R"({"event":"b","distinct_id":"d"},{"event":"c","distinct_id":"d","properties":[1]},)"
                      R"( 42 ],"historical_migration":true,"created_at":"t"})")
        << QByteArray("posthog-node/5.70.0")
        << QByteArray(
               R"({"api_key":"phc_v1","sent_at":"t","historical_migration":true,"batch":[)"
               R"({"event":"a","distinct_id":"d","properties":{"$lib":"mine","x":1}},)"
               R"({"properties":{"$lib":"posthog-node","$lib_version":"5.70.0"},"event":"b","distinct_id":"d"},)"
               R"({"event":"c","distinct_id":"d","properties":[1]},42]})");
    QTest::newRow("a key that is only escaped \"properties\"")
        << QByteArray(
               R"({"batch":[{"event":"a","distinct_id":"d","x":{"properties":{}},"propert\u0069es":{}}]})")
        << QByteArray("posthog-go/1.2")
        << QByteArray(R"({"api_key":"phc_v1","batch":[{"event":"a","distinct_id":"d","x":{"properties":{}},)"
                      R"("propert\u0069es":{"$lib":"posthog-go","$lib_version":"1.2"}}]})");
    QTest::newRow("not a V1 batch: passed on as it is")
        << QByteArray(R"({"event":"a","distinct_id":"d"})") << QByteArray("posthog-node/5.70.0")
        << QByteArray(R"({"event":"a","distinct_id":"d"})");
}

void TestCollector::captureV1() {
    QFETCH(QByteArray, body);
    QFETCH(QByteArray, sdkInfo);
    QFETCH(QByteArray, expected);

    Harness harness;
    for (const bool compressed : {false, true}) {
        QList<QByteArray> headers{"Content-Type: application/json", "Authorization: Bearer phc_v1",
                                  "PostHog-Sdk-Info: " + sdkInfo, "PostHog-Attempt: 1",
                                  "PostHog-Request-Id: 0190-req"};
        if (compressed) headers << "Content-Encoding: gzip";
        const HttpReply reply =
            send(harness.collector.port(),
                 {"POST", "/i/v1/analytics/events", compressed ? gzip(body) : body, headers, {}});
        QCOMPARE(reply.status, 200L);
        // A result per uuid, none listed: every event is ok.
        QVERIFY(reply.json().value("results").isObject());
        QCOMPARE(reply.json().value("results").toObject().size(), 0);
    }
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{2});
    for (const IngestRequest& request : committed) {
        QCOMPARE(bytes(request.body), expected);
        QCOMPARE(request.token, std::string("phc_v1"));
        QCOMPARE(request.path, std::string("/i/v1/analytics/events"));
        QCOMPARE(toString(request.vendor), std::string_view("posthog"));
    }
    QCOMPARE(toString(committed[1].encoding), std::string_view("gzip"));
}

void TestCollector::captureV1Authorization_data() {
    QTest::addColumn<QByteArray>("authorization");
    QTest::addColumn<long>("status");
    QTest::newRow("known Bearer token") << QByteArray("Bearer phc_good") << 200L;
    QTest::newRow("bearer, any case") << QByteArray("bearer phc_good") << 200L;
    QTest::newRow("unknown Bearer token") << QByteArray("Bearer phc_bad") << 401L;
    QTest::newRow("no token") << QByteArray() << 401L;
}

void TestCollector::captureV1Authorization() {
    QFETCH(QByteArray, authorization);
    QFETCH(long, status);
    CollectorConfig config = testConfig();
    config.tokens = {"phc_good"};
    Harness harness(config);
    QList<QByteArray> headers{"Content-Type: application/json", "PostHog-Sdk-Info: posthog-node/5.70.0"};
    if (!authorization.isEmpty()) headers << "Authorization: " + authorization;
    const QByteArray body = R"({"created_at":"t","batch":[{"event":"e","uuid":"u","distinct_id":"d",)"
                            R"("timestamp":"t","options":{},"properties":{}}]})";
    const HttpReply reply =
        send(harness.collector.port(), {"POST", "/i/v1/analytics/events", body, headers, {}});
    QCOMPARE(reply.status, status);
    QCOMPARE(harness.sink.committed().size(), std::size_t(status == 200 ? 1 : 0));
    if (status == 401) {
        QCOMPARE(reply.json().value("error").toString(), QString("unauthorized"));
        QCOMPARE(harness.collector.stats().unauthorizedRequests, std::uint64_t{1});
    }
    // An undecodable body of an unknown Bearer client is not kept either.
    const HttpReply garbage =
        send(harness.collector.port(), {"POST", "/i/v1/analytics/events", "{not json", headers, {}});
    QCOMPARE(garbage.status, status == 200 ? 400L : 401L);
}

void TestCollector::cors_data() {
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<long>("status");
    QTest::addColumn<QByteArray>("allowOrigin");
    QTest::addColumn<QByteArray>("allowCredentials");

    const QList<QByteArray> preflight{"Origin: http://localhost:5173", "Access-Control-Request-Method: POST",
                                      "Access-Control-Request-Headers: content-type,x-idempotency-key"};
    // Never credentials: with them, any page the user visits could read answers made with the
    // user's cookies; the SDKs send none to capture endpoints.
    QTest::newRow("preflight") << QByteArray("OPTIONS") << preflight << 204L
                               << QByteArray("http://localhost:5173") << QByteArray();
    QTest::newRow("POST from another origin")
        << QByteArray("POST") << QList<QByteArray>{"Origin: http://localhost:5173"} << 200L
        << QByteArray("http://localhost:5173") << QByteArray();
    QTest::newRow("POST from any page")
        << QByteArray("POST") << QList<QByteArray>{"Origin: https://evil.example"} << 200L
        << QByteArray("https://evil.example") << QByteArray();
    QTest::newRow("POST without an origin")
        << QByteArray("POST") << QList<QByteArray>{} << 200L << QByteArray("*") << QByteArray();
}

void TestCollector::cors() {
    QFETCH(QByteArray, method);
    QFETCH(QList<QByteArray>, headers);
    QFETCH(long, status);
    QFETCH(QByteArray, allowOrigin);
    QFETCH(QByteArray, allowCredentials);

    Harness harness;
    const HttpReply reply =
        send(harness.collector.port(), {method, "/i/v0/e/", R"({"event":"e"})", headers, {}});
    QCOMPARE(reply.status, status);
    QCOMPARE(reply.headers.value("access-control-allow-origin"), allowOrigin);
    QCOMPARE(reply.headers.value("access-control-allow-credentials"), allowCredentials);
    QCOMPARE(reply.headers.contains("access-control-allow-credentials"), false);
    if (method == "OPTIONS") {
        QVERIFY(reply.headers.value("access-control-allow-methods").contains("POST"));
        QVERIFY(reply.headers.value("access-control-allow-headers").contains("content-type"));
        QVERIFY(reply.headers.value("access-control-allow-headers").contains("x-idempotency-key"));
        QCOMPARE(harness.sink.received(), std::size_t{0});
    }
}

void TestCollector::hostHeader_data() {
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QByteArray>("host");
    QTest::addColumn<QStringList>("allowedHosts");
    QTest::addColumn<long>("status");

    const QStringList none;
    QTest::newRow("localhost") << QByteArray("POST") << QByteArray("localhost:8089") << none << 200L;
    QTest::newRow("LOCALHOST.") << QByteArray("POST") << QByteArray("LOCALHOST.") << none << 200L;
    QTest::newRow("*.localhost") << QByteArray("POST") << QByteArray("app.localhost:3000") << none << 200L;
    QTest::newRow("IPv4 literal") << QByteArray("POST") << QByteArray("127.0.0.1:9") << none << 200L;
    QTest::newRow("other IPv4 literal") << QByteArray("POST") << QByteArray("10.1.2.3") << none << 200L;
    QTest::newRow("IPv6 literal") << QByteArray("POST") << QByteArray("[::1]:8089") << none << 200L;
    QTest::newRow("rebinding name") << QByteArray("POST") << QByteArray("evil.example") << none << 403L;
    QTest::newRow("rebinding name with port")
        << QByteArray("POST") << QByteArray("evil.example:8089") << none << 403L;
    QTest::newRow("localhost as a prefix")
        << QByteArray("POST") << QByteArray("localhost.evil.example") << none << 403L;
    QTest::newRow("IP as a prefix") << QByteArray("POST") << QByteArray("127.0.0.1.evil.example") << none
                                    << 403L;
    QTest::newRow("bad IPv6 literal") << QByteArray("POST") << QByteArray("[::1x]") << none << 403L;
    QTest::newRow("preflight too") << QByteArray("OPTIONS") << QByteArray("evil.example") << none << 403L;
    QTest::newRow("allowed name") << QByteArray("POST") << QByteArray("Collector.Corp.Example:443")
                                  << QStringList{"collector.corp.example"} << 200L;
    QTest::newRow("allowed suffix") << QByteArray("POST") << QByteArray("a.corp.example")
                                    << QStringList{"*.corp.example"} << 200L;
    QTest::newRow("suffix is not the name")
        << QByteArray("POST") << QByteArray("corp.example") << QStringList{"*.corp.example"} << 403L;
}

// DNS rebinding: a page whose name resolves to 127.0.0.1 must not reach the collector under it.
void TestCollector::hostHeader() {
    QFETCH(QByteArray, method);
    QFETCH(QByteArray, host);
    QFETCH(QStringList, allowedHosts);
    QFETCH(long, status);

    CollectorConfig config = testConfig();
    for (const QString& allowed : allowedHosts)
        config.allowedHosts.push_back(allowed.toStdString());
    Harness harness(config);
    const HttpReply reply =
        send(harness.collector.port(),
             {method, "/e/", R"({"event":"e"})", {"Host: " + host, "Origin: http://x.test"}, {}});
    QCOMPARE(reply.status, method == "OPTIONS" && status == 200 ? 204L : status);
    QCOMPARE(harness.sink.committed().size(), std::size_t(status == 200 && method == "POST" ? 1 : 0));
    if (status == 403) {
        QCOMPARE(reply.json().value("error").toString(), QString("host_not_allowed"));
        const QString detail = reply.json().value("detail").toString();
        QVERIFY2(detail.contains(QString::fromUtf8(host)), qPrintable(detail));
        QVERIFY2(detail.contains("collector.allowed_hosts"), qPrintable(detail));
        // Still with CORS, so a page can see why.
        QCOMPARE(reply.headers.value("access-control-allow-origin"), QByteArray("http://x.test"));
    }
}

// HTTP/1.0 without Host names nothing that could be rebound.
void TestCollector::requestWithoutHost() {
    Harness harness;
    RawClient client(harness.collector.port());
    QVERIFY(client.send("POST /e/ HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
                        R"({"event":"e"})"));
    QCOMPARE(statusOf(client.readResponse()), 200);
    QCOMPARE(harness.sink.committed().size(), std::size_t{1});
}

// This machine's name is accepted only when the collector is reachable from other machines
// (bound beyond loopback); on loopback, a name is only a rebinding vector.
void TestCollector::ownHostnameWhenBoundBeyondLoopback() {
    char name[256] = {};
    QVERIFY(gethostname(name, sizeof name - 1) == 0);
    const QByteArray hostname = QByteArray(name).toUpper(); // names compare case-insensitively
    if (hostname.isEmpty() || hostname == "LOCALHOST") QSKIP("no distinct hostname");

    Harness loopback;
    QCOMPARE(send(loopback.collector.port(), {"POST", "/e/", R"({"event":"e"})", {"Host: " + hostname}, {}})
                 .status,
             403L);

    CollectorConfig config = testConfig();
    config.bindAddress = "0.0.0.0";
    config.tokens = {"phc_host_test"}; // exposed for a moment: nothing unknown gets in
    Harness exposed(config);
    QCOMPARE(send(exposed.collector.port(),
                  {"POST", "/e/?token=phc_host_test", R"({"event":"e"})", {"Host: " + hostname + ":1"}, {}})
                 .status,
             200L);
    QCOMPARE(send(exposed.collector.port(),
                  {"POST", "/e/?token=phc_host_test", R"({"event":"e"})", {"Host: not-" + hostname}, {}})
                 .status,
             403L);
}

void TestCollector::idempotencyKey_data() {
    QTest::addColumn<QList<QByteArray>>("headers");
    QTest::addColumn<QString>("key");
    QTest::addColumn<bool>("present");
    QTest::newRow("with header") << QList<QByteArray>{"X-Idempotency-Key: order-42-attempt"}
                                 << "order-42-attempt" << true;
    QTest::newRow("without header") << QList<QByteArray>{} << "" << false;
}

void TestCollector::idempotencyKey() {
    QFETCH(QList<QByteArray>, headers);
    QFETCH(QString, key);
    QFETCH(bool, present);

    Harness harness;
    QCOMPARE(send(harness.collector.port(), {"POST", "/v1/track", R"({"event":"e"})", headers, {}}).status,
             200L);
    const auto committed = harness.sink.committed();
    QCOMPARE(committed.size(), std::size_t{1});
    QCOMPARE(committed[0].idempotencyKey.has_value(), present);
    if (present) QCOMPARE(QString::fromStdString(*committed[0].idempotencyKey), key);
}

void TestCollector::requestMetadata() {
    Harness harness;
    const std::int64_t before = QDateTime::currentMSecsSinceEpoch();
    const HttpReply reply =
        send(harness.collector.port(),
             {"POST",
              "/e/",
              R"({"event":"e"})",
              {"User-Agent: pipescope-test/1", "Content-Type: application/json; charset=utf-8"},
              {}});
    const std::int64_t after = QDateTime::currentMSecsSinceEpoch();
    QCOMPARE(reply.status, 200L);
    const IngestRequest request = harness.sink.committed().at(0);
    QCOMPARE(request.remoteAddress, std::string("127.0.0.1"));
    QCOMPARE(request.userAgent, std::string("pipescope-test/1"));
    QCOMPARE(request.contentType, std::string("application/json; charset=utf-8"));
    QVERIFY(request.receivedAtMillis >= before && request.receivedAtMillis <= after);
}

void TestCollector::unknownPathsAndWrongMethods_data() {
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<long>("status");
    QTest::addColumn<QByteArray>("allow");

    QTest::newRow("GET capture") << QByteArray("GET") << QByteArray("/e/") << 405L
                                 << QByteArray("POST, OPTIONS");
    QTest::newRow("PUT Segment") << QByteArray("PUT") << QByteArray("/v1/track") << 405L
                                 << QByteArray("POST, OPTIONS");
    QTest::newRow("DELETE flags") << QByteArray("DELETE") << QByteArray("/flags") << 405L
                                  << QByteArray("GET, POST, OPTIONS");
    QTest::newRow("POST config") << QByteArray("POST") << QByteArray("/array/phc_x/config") << 405L
                                 << QByteArray("GET, OPTIONS");
    QTest::newRow("unknown path") << QByteArray("POST") << QByteArray("/nope") << 404L << QByteArray();
    QTest::newRow("not a Segment endpoint")
        << QByteArray("POST") << QByteArray("/v1/x") << 404L << QByteArray();
    QTest::newRow("settings without a write key")
        << QByteArray("GET") << QByteArray("/v1/projects//settings") << 404L << QByteArray();
    QTest::newRow("POST settings") << QByteArray("POST") << QByteArray("/v1/projects/wk/settings") << 405L
                                   << QByteArray("GET, OPTIONS");
    QTest::newRow("GET Segment metrics")
        << QByteArray("GET") << QByteArray("/v1/m") << 405L << QByteArray("POST, OPTIONS");
    QTest::newRow("GET Capture V1") << QByteArray("GET") << QByteArray("/i/v1/analytics/events") << 405L
                                    << QByteArray("POST, OPTIONS");
    QTest::newRow("session recordings") << QByteArray("POST") << QByteArray("/s/") << 404L << QByteArray();
    QTest::newRow("config without a token")
        << QByteArray("GET") << QByteArray("/array//config") << 404L << QByteArray();
    QTest::newRow("prefix of a capture path")
        << QByteArray("POST") << QByteArray("/events") << 404L << QByteArray();
}

void TestCollector::unknownPathsAndWrongMethods() {
    QFETCH(QByteArray, method);
    QFETCH(QByteArray, path);
    QFETCH(long, status);
    QFETCH(QByteArray, allow);

    Harness harness;
    const HttpReply reply = send(harness.collector.port(), {method, path, R"({"event":"e"})", {}, {}});
    QCOMPARE(reply.status, status);
    QCOMPARE(reply.json().value("error").toString(),
             QString(status == 404 ? "not_found" : "method_not_allowed"));
    QCOMPARE(reply.headers.value("allow"), allow);
    QCOMPARE(harness.sink.received(), std::size_t{0});
}

void TestCollector::startFailsClearly() {
    Harness first;
    TestSink sink;
    CollectorConfig config = testConfig();
    config.port = first.collector.port();
    Collector second(config, sink);
    QString message;
    try {
        second.start();
    } catch (const CollectorError& error) {
        message = QString::fromUtf8(error.what());
    }
    QVERIFY2(message.contains("127.0.0.1:" + QString::number(config.port)), qPrintable(message));
    QVERIFY2(message.contains("in use"), qPrintable(message));
    QVERIFY(!second.running());

    config.bindAddress = "256.1.2.3";
    config.port = 0;
    Collector third(config, sink);
    message.clear();
    try {
        third.start();
    } catch (const CollectorError& error) {
        message = QString::fromUtf8(error.what());
    }
    QVERIFY2(message.contains("256.1.2.3:0"), qPrintable(message));

    // The first one is unaffected.
    QCOMPARE(send(first.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
}

void TestCollector::stopWhileRequestsWait_data() {
    QTest::addColumn<bool>("sinkCommits");
    QTest::addColumn<unsigned>("graceMillis");
    QTest::addColumn<long>("status");
    // The 8 requests may reach the sink in two groups of 150 ms each.
    QTest::newRow("commits within the grace period") << true << 3000u << 200L;
    QTest::newRow("commits never come") << false << 300u << 503L;
}

void TestCollector::stopWhileRequestsWait() {
    QFETCH(bool, sinkCommits);
    QFETCH(unsigned, graceMillis);
    QFETCH(long, status);

    CollectorConfig config = testConfig();
    config.stopGraceMillis = graceMillis;
    TestSink sink;
    Collector collector(config, sink);
    collector.start();
    if (sinkCommits)
        sink.setCommitDelay(150ms);
    else
        sink.hold();

    const quint16 port = collector.port();
    std::vector<HttpCall> calls(8, HttpCall{"POST", "/e/", R"({"event":"e"})", {}, {}});
    auto replies = std::async(std::launch::async, [&] { return sendConcurrently(port, calls); });
    QVERIFY(sink.waitReceived(calls.size()));

    const auto stopping = Clock::now();
    collector.stop();
    QVERIFY(Clock::now() - stopping < 5s); // bounded: grace + the moment for the 503s
    QVERIFY(!collector.running());

    for (const HttpReply& reply : replies.get()) {
        QCOMPARE(reply.status, status);
        if (status == 503) QVERIFY(reply.headers.contains("retry-after"));
    }
    // Completions after stop() are harmless and still settle the books.
    sink.release();
    QTRY_COMPARE_WITH_TIMEOUT(collector.stats().pendingCommits, std::size_t{0}, 5000);
    QCOMPARE(collector.stats().inFlightBytes, std::size_t{0});
    // Stopped means stopped.
    QVERIFY(send(port, {"POST", "/e/", R"({"event":"e"})", {}, {}}).error != CURLE_OK);
}

// An idle connection (half a request, then nothing) is closed after the timeout; it never held
// a thread: other requests go through meanwhile.
void TestCollector::slowClientIsDisconnected() {
    CollectorConfig config = testConfig();
    config.connectionTimeoutSeconds = 1;
    Harness harness(config);
    RawClient slow(harness.collector.port());
    QVERIFY(slow.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nContent-Le"));
    QCOMPARE(send(harness.collector.port(), {"POST", "/e/", R"({"event":"e"})", {}, {}}).status, 200L);
    QVERIFY(slow.waitClosed(5s));
}

// Connection slots are capacity, not threads: 2,000 idle connections and 1,100 trickling
// header bytes, from 16 addresses (under the per-address limit each, so that limit is not what
// saves the others), and a normal client is still answered at once.
void TestCollector::hostileConnectionsLeaveRoom() {
    rlimit files{};
    QVERIFY(getrlimit(RLIMIT_NOFILE, &files) == 0);
    files.rlim_cur = files.rlim_max; // both ends of every connection live in this process
    QVERIFY(setrlimit(RLIMIT_NOFILE, &files) == 0);
    constexpr int kIdle = 2000;
    constexpr int kSlow = 1100;
    if (files.rlim_cur < 2 * (kIdle + kSlow) + 512) QSKIP("RLIMIT_NOFILE hard limit too low");

    CollectorConfig config = testConfig();
    config.connectionTimeoutSeconds = 30; // the attackers must outlast the test
    Harness harness(config);
    const quint16 port = harness.collector.port();
    QCOMPARE(harness.collector.stats().connectionLimit, 10000u);

    std::vector<std::unique_ptr<RawClient>> idle;
    std::vector<std::unique_ptr<RawClient>> slow;
    for (int i = 0; i < kIdle + kSlow; ++i) {
        const QByteArray source = "127.0.0." + QByteArray::number(2 + i % 16);
        auto client = std::make_unique<RawClient>(port, source.constData());
        QVERIFY2(client->connected(), qPrintable(QString::number(i)));
        (i < kIdle ? idle : slow).push_back(std::move(client));
    }
    QTRY_VERIFY_WITH_TIMEOUT(harness.collector.stats().openConnections >= std::size_t(kIdle + kSlow), 10000);

    // The slow ones send a request header a byte at a time, each every ~2 s, meanwhile.
    const QByteArray header = "POST /e/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + QByteArray(200, 'z');
    std::mutex trickleMutex;
    std::condition_variable trickleWake;
    bool done = false;
    std::atomic<int> trickled{0};
    std::thread trickler([&] {
        std::unique_lock lock(trickleMutex);
        for (int round = 0; !done && round < header.size(); ++round) {
            lock.unlock();
            for (auto& client : slow)
                if (client->send(header.mid(round, 1))) ++trickled;
            lock.lock();
            trickleWake.wait_for(lock, 2s, [&] { return done; });
        }
    });
    auto stopTrickler = qScopeGuard([&] {
        {
            std::lock_guard lock(trickleMutex);
            done = true;
        }
        trickleWake.notify_all();
        trickler.join();
    });

    std::chrono::milliseconds slowest{0};
    for (int i = 0; i < 3; ++i) {
        const auto started = Clock::now();
        const HttpReply reply = send(port, {"POST", "/e/", R"({"event":"normal"})", {}, {}});
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
        QCOMPARE(reply.status, 200L);
        slowest = std::max(slowest, took);
    }
    qInfo("under %d idle + %d trickling connections: slowest of 3 normal requests %lld ms", kIdle, kSlow,
          static_cast<long long>(slowest.count()));
    QVERIFY2(slowest < 1s, qPrintable(QString::number(slowest.count()) + " ms"));
    QTRY_VERIFY_WITH_TIMEOUT(trickled.load() >= 2 * kSlow, 10000); // the slow ones did trickle
    // ...and every attacker still holds its slot: it was capacity that served the client.
    int closed = 0;
    for (auto& client : idle)
        closed += client->closedNow() ? 1 : 0;
    for (auto& client : slow)
        closed += client->closedNow() ? 1 : 0;
    QCOMPARE(closed, 0);
    QCOMPARE(harness.sink.committed().size(), std::size_t{3});
}

// One address cannot take more than perIpConnectionLimit slots; another is served meanwhile.
void TestCollector::perIpConnectionLimit() {
    CollectorConfig config = testConfig();
    config.perIpConnectionLimit = 8;
    Harness harness(config);
    const quint16 port = harness.collector.port();
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 8; ++i) {
        held.push_back(std::make_unique<RawClient>(port, "127.0.0.20"));
        QVERIFY(held.back()->connected());
    }
    QTRY_VERIFY_WITH_TIMEOUT(harness.collector.stats().openConnections >= 8, 5000);
    RawClient beyond(port, "127.0.0.20");
    QVERIFY(beyond.connected()); // the kernel accepts; the collector closes it, unanswered
    QVERIFY(beyond.waitClosed(5s));
    for (auto& client : held)
        QVERIFY(!client->closedNow());

    RawClient other(port, "127.0.0.21");
    QVERIFY(other.send("POST /e/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\n"
                       R"({"event":"e"})"));
    QCOMPARE(statusOf(other.readResponse()), 200);
    QCOMPARE(harness.sink.committed().size(), std::size_t{1});
}

void TestCollector::statistics() {
    Harness harness;
    const quint16 port = harness.collector.port();
    const QByteArray good = R"({"event":"e"})";
    QCOMPARE(send(port, {"POST", "/e/", good, {}, {}}).status, 200L);
    QCOMPARE(send(port, {"POST", "/e/", good, {}, {}}).status, 200L);
    QCOMPARE(send(port, {"POST", "/e/", "nope", {}, {}}).status, 400L);
    QCOMPARE(send(port, {"GET", "/nope", {}, {}, {}}).status, 404L);

    const CollectorStats stats = harness.collector.stats();
    QCOMPARE(stats.responsesByStatus.at(200), std::uint64_t{2});
    QCOMPARE(stats.responsesByStatus.at(400), std::uint64_t{1});
    QCOMPARE(stats.responsesByStatus.at(404), std::uint64_t{1});
    QCOMPARE(stats.acceptedRequests, std::uint64_t{2});
    QCOMPARE(stats.rejectedRequests, std::uint64_t{1});
    QCOMPARE(stats.bytesReceived, std::uint64_t(2 * good.size() + 4));
    QCOMPARE(stats.bytesDecoded, std::uint64_t(2 * good.size()));
    QCOMPARE(stats.pendingCommits, std::size_t{0});
    QTRY_COMPARE_WITH_TIMEOUT(harness.collector.stats().inFlightBytes, std::size_t{0}, 5000);
}

QTEST_GUILESS_MAIN(TestCollector)
#include "tst_collector.moc"
