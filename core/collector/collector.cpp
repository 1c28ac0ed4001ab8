#include "collector/collector.h"

#include "collector/request_decoding.h"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <microhttpd.h>
#include <mutex>
#include <netdb.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_set>
#include <utility>

namespace pipescope {

std::string_view toString(Vendor vendor) {
    switch (vendor) {
    case Vendor::PostHog:
        return "posthog";
    case Vendor::Segment:
        return "segment";
    }
    return "posthog";
}

std::string_view toString(BodyEncoding encoding) {
    switch (encoding) {
    case BodyEncoding::Plain:
        return "plain";
    case BodyEncoding::Gzip:
        return "gzip";
    case BodyEncoding::Lz64:
        return "lz64";
    case BodyEncoding::Base64:
        return "base64";
    case BodyEncoding::Form:
        return "form";
    case BodyEncoding::FormLz64:
        return "form+lz64";
    }
    return "plain";
}

namespace collector_detail {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kConnectionMemoryBytes = 64 * 1024; // request line + headers
// File descriptors kept free of connections: listening socket, MHD's wake-up pipes, the store's
// files, logs.
constexpr rlim_t kReservedFds = 256;
constexpr auto kAbandonedAnswerWait = 1s; // stop(): for the 503s to go out
constexpr int kMinStatus = 100;
constexpr int kMaxStatus = 599;

// PostHog's flags answer (/flags, and /decide for older posthog-js, which also read the project
// config from it). No flags, and nothing that overrides what the app configured: every field
// that would switch a capture feature off is absent, or set to its "not opted out" value where
// posthog-js treats absence as "off until the server says" (autocapture_opt_out). Session
// recording stays off: the collector takes no recordings. Compression as PostHog announces it,
// so posthog-js sends what it sends in production (gzip-js).
constexpr std::string_view kFlagsBody =
    R"({"featureFlags":{},"featureFlagPayloads":{},"errorsWhileComputingFlags":false,"flags":{},)"
    R"("quotaLimited":[],"sessionRecording":false,"supportedCompression":["gzip","gzip-js"],)"
    R"("config":{"enable_collect_everything":true},"toolbarParams":{},"isAuthenticated":false,)"
    R"("siteApps":[],"autocapture_opt_out":false,"elementsChainAsString":true,"surveys":false})";

constexpr std::string_view kAllowedRequestHeaders =
    "Content-Type, Content-Encoding, Authorization, X-Idempotency-Key, X-Requested-With, User-Agent, "
    "X-Retry-Count";

std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

enum class EndpointKind {
    Capture,
    Flags,
    RemoteConfig,
    RemoteConfigScript,
    SegmentSettings, // GET /v1/projects/<writeKey>/settings
    SegmentMetrics,  // POST /v1/m: analytics-next's own telemetry, read and dropped
};

struct Endpoint {
    EndpointKind kind = EndpointKind::Capture;
    Vendor vendor = Vendor::PostHog;
    std::string_view messageType; // Segment single-message endpoints: the type the path implies
    std::string token;            // remote config / Segment settings: the token in the path
    bool captureV1 = false;       // posthog-node's Capture V1 body, converted to a PostHog batch
};

Endpoint capture(Vendor vendor, std::string_view messageType = {}) {
    return Endpoint{EndpointKind::Capture, vendor, messageType, {}, false};
}

std::optional<Endpoint> matchEndpoint(std::string_view path) {
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    for (std::string_view posthog : {"/e", "/i/v0/e", "/capture", "/batch", "/track"}) {
        if (path == posthog) return capture(Vendor::PostHog);
    }
    if (path == "/i/v1/analytics/events") {
        Endpoint endpoint = capture(Vendor::PostHog);
        endpoint.captureV1 = true;
        return endpoint;
    }
    constexpr std::string_view v1 = "/v1/";
    if (path.substr(0, v1.size()) == v1) {
        const std::string_view rest = path.substr(v1.size());
        // analytics-next posts to the type's first letter (/v1/t, /v1/b), the other SDKs to its name.
        for (std::string_view type : {"track", "identify", "page", "screen", "group", "alias"}) {
            if (rest == type || rest == type.substr(0, 1)) return capture(Vendor::Segment, type);
        }
        if (rest == "batch" || rest == "b" || rest == "import") return capture(Vendor::Segment);
        if (rest == "m") return Endpoint{EndpointKind::SegmentMetrics, Vendor::Segment, {}, {}, false};
        constexpr std::string_view projects = "projects/";
        constexpr std::string_view settings = "/settings";
        if (rest.size() > projects.size() + settings.size() && rest.substr(0, projects.size()) == projects &&
            rest.substr(rest.size() - settings.size()) == settings)
            return Endpoint{
                EndpointKind::SegmentSettings,
                Vendor::Segment,
                {},
                std::string(rest.substr(projects.size(), rest.size() - projects.size() - settings.size())),
                false};
        return std::nullopt;
    }
    if (path == "/flags" || path == "/decide")
        return Endpoint{EndpointKind::Flags, Vendor::PostHog, {}, {}, false};
    constexpr std::string_view arrayPrefix = "/array/";
    if (path.substr(0, arrayPrefix.size()) == arrayPrefix) {
        // The last slash: the token was percent-decoded and may itself hold one.
        const std::string_view rest = path.substr(arrayPrefix.size());
        const std::size_t slash = rest.rfind('/');
        if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
        const std::string_view file = rest.substr(slash + 1);
        if (file == "config")
            return Endpoint{
                EndpointKind::RemoteConfig, Vendor::PostHog, {}, std::string(rest.substr(0, slash)), false};
        if (file == "config.js")
            return Endpoint{EndpointKind::RemoteConfigScript,
                            Vendor::PostHog,
                            {},
                            std::string(rest.substr(0, slash)),
                            false};
    }
    return std::nullopt;
}

std::string errorBody(std::string_view error, std::string_view detail) {
    const nlohmann::json body{{"error", error}, {"detail", detail}};
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// posthog-js's remote config (/array/<token>/config[.js]). Each capture feature posthog-js reads
// from it (heatmaps, captureDeadClicks, capturePerformance for web vitals, autocaptureExceptions
// and errorTracking, logs) is left out: absent, posthog-js keeps what the app configured, where a
// `false` would be the project switching it off. autocapture_opt_out is the exception: absent,
// posthog-js keeps autocapture off until a config carrying it arrives, so it is sent, false.
// Recording, surveys, product tours, conversations, site apps and the toolbar stay off: the
// collector serves none of their endpoints. No `analytics.endpoint`: events go to /e/.
nlohmann::json remoteConfig(const std::string& token) {
    return {{"token", token},
            {"supportedCompression", {"gzip", "gzip-js"}},
            {"hasFeatureFlags", false},
            {"autocapture_opt_out", false},
            {"elementsChainAsString", true},
            {"sessionRecording", false},
            {"surveys", false},
            {"productTours", false},
            {"conversations", false},
            {"toolbarParams", nlohmann::json::object()},
            {"isAuthenticated", false},
            {"defaultIdentifiedOnly", true},
            {"siteApps", nlohmann::json::array()}};
}

// The source settings analytics-next loads from <cdnURL>/v1/projects/<writeKey>/settings. Only
// the Segment.io destination, pointed back at this collector (the host the request named), so
// no destination bundle is loaded; no middleware, routing rules, remote plugins, edge function
// or auto-instrumentation; metrics at sample rate 0 (otherwise they go to <apiHost>/m).
nlohmann::json segmentSettings(const std::string& writeKey, const std::string& host) {
    const nlohmann::json enabled{{"enabled", true}, {"integrations", nlohmann::json::object()}};
    return {{"integrations",
             {{"Segment.io",
               {{"apiKey", writeKey},
                {"apiHost", host + "/v1"},
                {"protocol", "http"},
                {"unbundledIntegrations", nlohmann::json::array()},
                {"addBundledMetadata", true},
                {"maybeBundledConfigIds", nlohmann::json::object()}}}}},
            {"plan",
             {{"track", {{"__default", enabled}}},
              {"identify", {{"__default", enabled}}},
              {"group", {{"__default", enabled}}}}},
            {"edgeFunction", nlohmann::json::object()},
            {"analyticsNextEnabled", true},
            {"middlewareSettings", nlohmann::json::object()},
            {"enabledMiddleware", nlohmann::json::object()},
            {"metrics", {{"sampleRate", 0}}},
            {"legacyVideoPluginsEnabled", false},
            {"remotePlugins", nlohmann::json::array()},
            {"autoInstrumentationSettings", {{"sampleRate", 0}}},
            {"consentSettings",
             {{"allCategories", nlohmann::json::array()}, {"hasUnmappedDestinations", false}}}};
}

std::string remoteConfigScript(const std::string& token) {
    // ensure_ascii: the token comes from the URL; escaped, it cannot end the string literal or
    // smuggle U+2028 line terminators into the script.
    const auto dump = [](const nlohmann::json& value) {
        return value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    };
    return "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
           "window._POSTHOG_REMOTE_CONFIG[" +
           dump(token) + "]={config:" + dump(remoteConfig(token)) + ",siteApps:[]}})();";
}

std::string endpointText(const std::string& address, std::uint16_t port) {
    if (address.find(':') != std::string::npos) return "[" + address + "]:" + std::to_string(port);
    return address + ":" + std::to_string(port);
}

std::string clientAddress(MHD_Connection* connection) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == nullptr || info->client_addr == nullptr) return {};
    char text[INET6_ADDRSTRLEN] = {};
    const sockaddr* address = info->client_addr;
    if (address->sa_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text, sizeof text);
    else if (address->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text, sizeof text);
    return text;
}

std::string_view lookup(MHD_Connection* connection, MHD_ValueKind kind, const char* key) {
    const char* value = MHD_lookup_connection_value(connection, kind, key);
    return value != nullptr ? std::string_view(value) : std::string_view();
}

std::optional<std::string> lookupHost(MHD_Connection* connection) {
    const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

std::string lowercase(std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); });
    return lower;
}

bool isPort(std::string_view text) {
    return !text.empty() && text.size() <= 5 &&
           std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// An IP literal cannot be re-pointed by DNS; "[v6]" with an optional port, or v4 with one.
// Otherwise the name with its port and a trailing dot removed, lower-cased, in `name`.
bool isIpLiteralHost(std::string_view host, std::string& name) {
    in6_addr v6{};
    in_addr v4{};
    if (!host.empty() && host.front() == '[') {
        const std::size_t close = host.find(']');
        if (close == std::string_view::npos) return false;
        const std::string inside(host.substr(1, close - 1));
        const std::string_view rest = host.substr(close + 1);
        return inet_pton(AF_INET6, inside.c_str(), &v6) == 1 &&
               (rest.empty() || (rest.front() == ':' && isPort(rest.substr(1))));
    }
    std::string_view hostname = host;
    if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
        if (!isPort(host.substr(colon + 1))) return false;
        hostname = host.substr(0, colon);
    }
    if (!hostname.empty() && hostname.back() == '.') hostname.remove_suffix(1);
    name = lowercase(hostname);
    return inet_pton(AF_INET, name.c_str(), &v4) == 1;
}

int hexDigit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

std::string escapedText(std::string_view text) {
    std::string out;
    for (const char ch : text) {
        const auto byte = static_cast<unsigned char>(ch);
        if (byte < 0x20 || byte >= 0x7F) {
            static constexpr char hex[] = "0123456789ABCDEF";
            out += '%';
            out += hex[byte >> 4];
            out += hex[byte & 0xF];
        } else {
            out += ch;
        }
    }
    return out;
}

// MHD unescapes the target in place, so "/batch%00/../evil" would be routed as "/batch": a
// control character, escaped or not, anywhere in the target, or a dot segment in the path, is
// refused rather than guessed at. Empty when the URL is fine.
std::string urlProblem(std::string_view rawUri, std::string_view decodedPath) {
    for (std::size_t i = 0; i < rawUri.size(); ++i) {
        int byte = static_cast<unsigned char>(rawUri[i]);
        if (rawUri[i] == '%' && i + 2 < rawUri.size() && hexDigit(rawUri[i + 1]) >= 0 &&
            hexDigit(rawUri[i + 2]) >= 0)
            byte = hexDigit(rawUri[i + 1]) * 16 + hexDigit(rawUri[i + 2]);
        if (byte < 0x20 || byte == 0x7F)
            return "the URL has a control character (byte " + std::to_string(byte) + ") at offset " +
                   std::to_string(i) + ": " + escapedText(rawUri);
    }
    std::size_t start = 0;
    while (start <= decodedPath.size()) {
        const std::size_t end = std::min(decodedPath.find('/', start), decodedPath.size());
        const std::string_view segment = decodedPath.substr(start, end - start);
        if (segment == "." || segment == "..")
            return "the URL path has a '" + std::string(segment) + "' segment: " + escapedText(rawUri);
        start = end + 1;
    }
    return {};
}

MHD_Result collectHeader(void* context, MHD_ValueKind, const char* key, const char* value) {
    auto& values = *static_cast<std::vector<std::pair<std::string, std::string>>*>(context);
    values.emplace_back(lowercase(key != nullptr ? key : ""), value != nullptr ? value : "");
    return MHD_YES;
}

// Request smuggling: MHD frames a body by the first Content-Length or by Transfer-Encoding; a
// proxy in front may pick another. Any ambiguity is refused before the body is read.
std::string framingProblem(MHD_Connection* connection) {
    std::vector<std::pair<std::string, std::string>> headers;
    MHD_get_connection_values(connection, MHD_HEADER_KIND, &collectHeader, &headers);
    std::vector<std::string_view> lengths;
    std::vector<std::string_view> encodings;
    for (const auto& [name, value] : headers) {
        if (name == "content-length") lengths.push_back(value);
        if (name == "transfer-encoding") encodings.push_back(value);
    }
    for (std::string_view length : lengths) {
        if (length != lengths.front())
            return "conflicting Content-Length headers ('" + std::string(lengths.front()) + "' and '" +
                   std::string(length) + "')";
    }
    if (!encodings.empty() && !lengths.empty())
        return "both Content-Length and Transfer-Encoding: the body length is ambiguous";
    if (encodings.size() > 1) return "more than one Transfer-Encoding header";
    if (!encodings.empty() && lowercase(encodings.front()) != "chunked")
        return "Transfer-Encoding '" + std::string(encodings.front()) + "' is not supported (only chunked)";
    return {};
}

bool isLoopback(const sockaddr_storage& address) {
    if (address.ss_family == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in&>(address).sin_addr.s_addr) >> 24) == 127;
    if (address.ss_family == AF_INET6) {
        const in6_addr& v6 = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    }
    return false;
}

// What a request waiting for its commit shares with the sink's completion.
struct PendingCommit {
    std::mutex mutex;
    MHD_Connection* connection = nullptr;
    bool suspended = false;
    bool answered = false; // `result` is final: the sink's, or stop()'s when it gave up waiting
    bool sinkDone = false; // the sink called done() (a second call is ignored)
    IngestResult result;
};

// Counters and the registry of pending commits. Completions hold it by shared_ptr, so a done()
// that arrives after the collector is gone touches only this.
struct CollectorLedger {
    std::array<std::atomic<std::uint64_t>, kMaxStatus + 1> responsesByStatus{};
    std::atomic<std::uint64_t> bytesReceived{0};
    std::atomic<std::uint64_t> bytesDecoded{0};
    std::atomic<std::uint64_t> acceptedRequests{0};
    std::atomic<std::uint64_t> rejectedRequests{0};
    std::atomic<std::uint64_t> unauthorizedRequests{0};
    std::atomic<std::size_t> inFlightBytes{0};

    std::mutex mutex;
    std::condition_variable changed;
    std::size_t activeRequests = 0; // between the first handler call and the completion notice
    bool abandoning = false;        // stop() gave up waiting for commits
    std::unordered_set<std::shared_ptr<PendingCommit>> pending;

    // A request alone may exceed the bound (else it could never pass); with others in flight
    // it must fit.
    bool tryReserve(std::size_t bytes, std::size_t limit) {
        std::size_t current = inFlightBytes.load();
        do {
            if (current != 0 && (bytes > limit || current > limit - bytes)) return false;
        } while (!inFlightBytes.compare_exchange_weak(current, current + bytes));
        return true;
    }

    void release(std::size_t bytes) {
        if (bytes != 0) inFlightBytes.fetch_sub(bytes);
    }
};

// Bytes held in flight for the length of a scope, growing as a decoder asks.
class InFlightReservation {
public:
    explicit InFlightReservation(CollectorLedger& ledger) : m_ledger(ledger) {}
    ~InFlightReservation() { reset(); }
    InFlightReservation(const InFlightReservation&) = delete;
    InFlightReservation& operator=(const InFlightReservation&) = delete;

    bool grow(std::size_t bytes, std::size_t limit) {
        if (!m_ledger.tryReserve(bytes, limit)) return false;
        m_bytes += bytes;
        return true;
    }
    void reset() { m_ledger.release(std::exchange(m_bytes, 0)); }

private:
    CollectorLedger& m_ledger;
    std::size_t m_bytes = 0;
};

void completeCommit(CollectorLedger& ledger, const std::shared_ptr<PendingCommit>& pending,
                    std::size_t reservedBytes, IngestResult result) {
    // Lock order everywhere: a PendingCommit's mutex before the ledger's, never the reverse.
    std::lock_guard lock(pending->mutex);
    if (pending->sinkDone) return;
    pending->sinkDone = true;
    // The books settle before the client can see its answer.
    ledger.release(reservedBytes);
    {
        std::lock_guard ledgerLock(ledger.mutex);
        ledger.pending.erase(pending);
    }
    ledger.changed.notify_all();
    if (!pending->answered) {
        pending->answered = true;
        pending->result = std::move(result);
        // Under the mutex: stop() must not see the request answered while its connection is
        // still suspended (MHD must not be stopped with a suspended connection).
        if (pending->suspended) MHD_resume_connection(pending->connection);
    }
}

// One HTTP request, from its headers to its answer (MHD's per-request context).
struct RequestState {
    bool begun = false; // the handler saw the headers (a request that never gets there is not active)
    std::string rawUri; // the request target before MHD unescaped it (in place, so a %00 cuts it)
    Endpoint endpoint;
    std::string path;
    std::int64_t startedAtMillis = 0;
    bool discardBody = false; // a flags POST or Segment metrics: the body is read and dropped
    std::optional<std::size_t> declaredLength;
    std::string body;
    std::size_t reservedBytes = 0; // in-flight bytes held for the raw body
    int refusal = 0;               // 413 / 429 decided while streaming; the rest is discarded
    std::string refusalError;
    std::string refusalDetail;
    std::size_t discardedBytes = 0;
    std::shared_ptr<PendingCommit> pending;
    // The pending completion is the sink's reject(): Committed answers 400 with these.
    bool rejecting = false;
    std::string rejectReason;
    std::string rejectDetail;

    std::string remoteAddress;
    std::string contentType;
    std::string contentEncoding;
    std::string userAgent;
    std::string compression;
    std::string queryToken;
    std::string basicAuthUser;
    std::string bearerToken;
    std::string sdkInfo; // PostHog-Sdk-Info, e.g. "posthog-node/5.70.0"
    std::optional<std::string> idempotencyKey;
};

struct ExtraHeader {
    std::string_view name;
    std::string value;
};

} // namespace

class CollectorServer {
public:
    CollectorServer(CollectorConfig config, IngestSink& sink)
        : m_config(std::move(config)), m_sink(sink), m_ledger(std::make_shared<CollectorLedger>()),
          m_tokens(m_config.tokens.begin(), m_config.tokens.end()) {
        for (const std::string& host : m_config.allowedHosts)
            m_allowedHosts.push_back(lowercase(host));
    }

    ~CollectorServer() { stop(); }

    void start();
    void stop();
    bool running() const { return m_daemon != nullptr; }
    std::uint16_t port() const { return m_port; }
    CollectorStats stats() const;
    const CollectorConfig& config() const { return m_config; }

private:
    static MHD_Result onRequest(void* self, MHD_Connection* connection, const char* url, const char* method,
                                const char* version, const char* uploadData, size_t* uploadSize,
                                void** context);
    static void* onUri(void* self, const char* uri, MHD_Connection* connection);
    static void onCompleted(void* self, MHD_Connection* connection, void** context,
                            MHD_RequestTerminationCode code);
    static void onServerMessage(void* self, const char* format, va_list arguments);

    int openListeningSocket();
    unsigned fitConnectionLimit();
    void abandonPendingCommits();

    MHD_Result begin(MHD_Connection* connection, RequestState& state, std::string_view method);
    MHD_Result receive(MHD_Connection* connection, RequestState& state, const char* data, std::size_t size);
    MHD_Result cutOff(MHD_Connection* connection, int status, std::string_view error,
                      std::string_view detail);
    MHD_Result finish(MHD_Connection* connection, RequestState& state);
    MHD_Result acceptCapture(MHD_Connection* connection, RequestState& state);
    MHD_Result answerCommit(MHD_Connection* connection, RequestState& state);
    MHD_Result answerRejected(MHD_Connection* connection, RequestState& state, std::string rawBody,
                              std::string reason, std::string detail);
    void refuseStream(RequestState& state, int status, std::string error, std::string detail);
    bool hostAllowed(std::string_view host) const;
    // The token a request names outside its body: ?token= / ?api_key=, else the Basic auth
    // username (Segment), else the Bearer token (Capture V1).
    static std::string requestToken(const RequestState& state) {
        if (!state.queryToken.empty()) return state.queryToken;
        if (!state.basicAuthUser.empty()) return state.basicAuthUser;
        return state.bearerToken;
    }
    std::shared_ptr<PendingCommit> suspendForSink(MHD_Connection* connection);
    MHD_Result answerUnauthorized(MHD_Connection* connection, const std::string& token,
                                  std::string_view context) {
        ++m_ledger->unauthorizedRequests;
        return answerError(connection, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                           (token.empty() ? std::string("no token or write key in the request")
                                          : "the token or write key '" + token + "' is not configured") +
                               std::string(context));
    }

    MHD_Result answer(MHD_Connection* connection, int status, std::string_view body,
                      std::string_view contentType = "application/json",
                      const std::vector<ExtraHeader>& extra = {});
    MHD_Result answerError(MHD_Connection* connection, int status, std::string_view error,
                           std::string_view detail, const std::vector<ExtraHeader>& extra = {}) {
        return answer(connection, status, errorBody(error, detail), "application/json", extra);
    }
    MHD_Result answerRetryLater(MHD_Connection* connection, int status, std::string_view error,
                                std::string_view detail, int retryAfterSeconds) {
        return answerError(connection, status, error, detail,
                           {{"Retry-After", std::to_string(std::max(retryAfterSeconds, 0))}});
    }

    CollectorConfig m_config;
    IngestSink& m_sink;
    std::shared_ptr<CollectorLedger> m_ledger;
    std::unordered_set<std::string> m_tokens;
    std::vector<std::string> m_allowedHosts; // lower-cased collector.allowed_hosts
    std::string m_ownHostname;               // lower-cased; set when bound beyond loopback
    MHD_Daemon* m_daemon = nullptr;
    std::uint16_t m_port = 0;
    unsigned m_connectionLimit = 0; // in force; 0 before start()
    std::atomic<bool> m_stopping{false};
    std::mutex m_serverMessageMutex;
    std::string m_lastServerMessage;
};

int CollectorServer::openListeningSocket() {
    const std::string where = endpointText(m_config.bindAddress, m_config.port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* addresses = nullptr;
    const std::string service = std::to_string(m_config.port);
    if (const int status = getaddrinfo(m_config.bindAddress.c_str(), service.c_str(), &hints, &addresses);
        status != 0)
        throw CollectorError("cannot listen on " + where + ": " + gai_strerror(status));
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(addresses, &freeaddrinfo);

    const int fd = socket(addresses->ai_family, addresses->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw CollectorError("cannot listen on " + where + ": socket: " + std::strerror(errno));
    const int on = 1;
    // Lets a restarted collector bind while old connections linger in TIME_WAIT; on Linux it
    // does not let two listeners share the port.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, addresses->ai_addr, addresses->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        const int error = errno;
        close(fd);
        throw CollectorError("cannot listen on " + where + ": " + std::strerror(error));
    }
    sockaddr_storage bound{};
    socklen_t boundLength = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &boundLength);
    m_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return fd;
}

// Every connection is an fd: the soft RLIMIT_NOFILE (often 1,024) is raised towards the hard
// one so the configured limit fits; if even the hard one is too low, the limit is lowered so
// accept() never fails for want of fds (MHD would then refuse everyone alike).
unsigned CollectorServer::fitConnectionLimit() {
    const unsigned wanted = std::max(1u, m_config.connectionLimit);
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) != 0) return wanted;
    const rlim_t needed = static_cast<rlim_t>(wanted) + kReservedFds;
    if (files.rlim_cur != RLIM_INFINITY && files.rlim_cur < needed) {
        rlimit raised = files;
        raised.rlim_cur = files.rlim_max == RLIM_INFINITY ? needed : std::min(needed, files.rlim_max);
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) files = raised;
    }
    if (files.rlim_cur == RLIM_INFINITY || files.rlim_cur >= needed) return wanted;
    const unsigned fitted =
        files.rlim_cur > kReservedFds + 1 ? static_cast<unsigned>(files.rlim_cur - kReservedFds) : 1u;
    std::fprintf(stderr,
                 "pipescope collector: connection limit lowered from %u to %u: the open-files limit "
                 "(RLIMIT_NOFILE) is %llu, hard limit %llu; raise it (ulimit -n) to allow more\n",
                 wanted, fitted, static_cast<unsigned long long>(files.rlim_cur),
                 static_cast<unsigned long long>(files.rlim_max));
    return fitted;
}

void CollectorServer::start() {
    if (m_daemon != nullptr)
        throw CollectorError("collector already running on " + endpointText(m_config.bindAddress, m_port));
    // Binding here, not in MHD, gives start() the real reason (errno) for a failure.
    const int listenFd = openListeningSocket();
    sockaddr_storage bound{};
    socklen_t boundLength = sizeof bound;
    getsockname(listenFd, reinterpret_cast<sockaddr*>(&bound), &boundLength);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (bound.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    m_ownHostname.clear();
    if (!isLoopback(bound)) {
        // Reachable from the network: other machines may name this one.
        std::array<char, 256> hostname{};
        if (gethostname(hostname.data(), hostname.size() - 1) == 0)
            m_ownHostname = lowercase(hostname.data());
    }
    m_stopping = false;
    {
        std::lock_guard lock(m_ledger->mutex);
        m_ledger->abandoning = false;
    }
    m_connectionLimit = fitConnectionLimit();
    m_daemon = MHD_start_daemon(
        flags, 0, nullptr, nullptr, &CollectorServer::onRequest, this, MHD_OPTION_LISTEN_SOCKET, listenFd,
        MHD_OPTION_THREAD_POOL_SIZE, std::max(1u, m_config.threads), MHD_OPTION_CONNECTION_LIMIT,
        m_connectionLimit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, m_config.perIpConnectionLimit,
        MHD_OPTION_CONNECTION_TIMEOUT, m_config.connectionTimeoutSeconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        kConnectionMemoryBytes, MHD_OPTION_URI_LOG_CALLBACK, &CollectorServer::onUri, this,
        MHD_OPTION_NOTIFY_COMPLETED, &CollectorServer::onCompleted, this, MHD_OPTION_EXTERNAL_LOGGER,
        &CollectorServer::onServerMessage, this, MHD_OPTION_END);
    if (m_daemon == nullptr) {
        close(listenFd);
        std::lock_guard lock(m_serverMessageMutex);
        throw CollectorError(
            "cannot start the HTTP server on " + endpointText(m_config.bindAddress, m_port) + ": " +
            (m_lastServerMessage.empty() ? std::string("libmicrohttpd refused the configuration")
                                         : m_lastServerMessage));
    }
}

void CollectorServer::abandonPendingCommits() {
    std::vector<std::shared_ptr<PendingCommit>> waiting;
    {
        std::lock_guard lock(m_ledger->mutex);
        m_ledger->abandoning = true;
        waiting.assign(m_ledger->pending.begin(), m_ledger->pending.end());
    }
    for (const auto& pending : waiting) {
        std::lock_guard lock(pending->mutex);
        if (pending->answered) continue;
        pending->answered = true;
        pending->result = {
            IngestStatus::Failed, m_config.retryAfterSeconds,
            "the collector stopped before the commit was confirmed; the request may or may not have "
            "been stored, retry it"};
        if (pending->suspended) MHD_resume_connection(pending->connection);
    }
}

void CollectorServer::stop() {
    if (m_daemon == nullptr) return;
    m_stopping = true;
    // MHD's worker threads take the listening socket out of their epoll sets a little later: it
    // must stay open until MHD_stop_daemon() (libmicrohttpd's MHD_quiesce_daemon docs; TSan saw
    // the close race an epoll_ctl). Shut down now, so that new connections are refused at once.
    const MHD_socket listenFd = MHD_quiesce_daemon(m_daemon);
    if (listenFd != MHD_INVALID_SOCKET) shutdown(listenFd, SHUT_RDWR);

    auto idle = [this] { return m_ledger->activeRequests == 0; };
    {
        std::unique_lock lock(m_ledger->mutex);
        m_ledger->changed.wait_until(
            lock, std::chrono::steady_clock::now() + std::chrono::milliseconds(m_config.stopGraceMillis),
            idle);
    }
    // MHD must not be stopped with suspended connections: every one still waiting is resumed
    // with a 503, and gets a moment for that answer to go out.
    abandonPendingCommits();
    {
        std::unique_lock lock(m_ledger->mutex);
        m_ledger->changed.wait_until(lock, std::chrono::steady_clock::now() + kAbandonedAnswerWait, idle);
    }
    MHD_stop_daemon(m_daemon);
    m_daemon = nullptr;
    if (listenFd != MHD_INVALID_SOCKET) close(listenFd);
}

bool CollectorServer::hostAllowed(std::string_view host) const {
    if (host.empty()) return true; // nothing a browser would send, and no name to rebind
    std::string name;
    if (isIpLiteralHost(host, name)) return true;
    if (name.empty()) return false;
    constexpr std::string_view localhostSuffix = ".localhost";
    if (name == "localhost" ||
        (name.size() > localhostSuffix.size() &&
         name.compare(name.size() - localhostSuffix.size(), localhostSuffix.size(), localhostSuffix) == 0))
        return true; // browsers resolve these to loopback themselves, never through DNS
    if (!m_ownHostname.empty() && name == m_ownHostname) return true;
    for (const std::string& allowed : m_allowedHosts) {
        if (allowed == "*" || allowed == name) return true;
        // "*.example.com": any name under example.com
        if (allowed.size() > 2 && allowed.compare(0, 2, "*.") == 0 && name.size() > allowed.size() - 1 &&
            name.compare(name.size() - (allowed.size() - 1), allowed.size() - 1, allowed, 1) == 0)
            return true;
    }
    return false;
}

CollectorStats CollectorServer::stats() const {
    CollectorStats stats;
    for (int status = kMinStatus; status <= kMaxStatus; ++status) {
        if (const std::uint64_t count = m_ledger->responsesByStatus[static_cast<std::size_t>(status)].load();
            count != 0)
            stats.responsesByStatus[status] = count;
    }
    stats.bytesReceived = m_ledger->bytesReceived.load();
    stats.bytesDecoded = m_ledger->bytesDecoded.load();
    stats.acceptedRequests = m_ledger->acceptedRequests.load();
    stats.rejectedRequests = m_ledger->rejectedRequests.load();
    stats.unauthorizedRequests = m_ledger->unauthorizedRequests.load();
    stats.inFlightBytes = m_ledger->inFlightBytes.load();
    stats.connectionLimit = m_connectionLimit;
    if (m_daemon != nullptr) {
        if (const MHD_DaemonInfo* info = MHD_get_daemon_info(m_daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            info != nullptr)
            stats.openConnections = info->num_connections;
    }
    std::lock_guard lock(m_ledger->mutex);
    stats.pendingCommits = m_ledger->pending.size();
    return stats;
}

MHD_Result CollectorServer::onRequest(void* self, MHD_Connection* connection, const char* url,
                                      const char* method, const char*, const char* uploadData,
                                      size_t* uploadSize, void** context) {
    auto& server = *static_cast<CollectorServer*>(self);
    auto* state = static_cast<RequestState*>(*context);
    if (state == nullptr) { // onUri() makes it; this is only a fallback
        state = new RequestState;
        *context = state;
    }
    if (!state->begun) {
        state->begun = true;
        {
            std::lock_guard lock(server.m_ledger->mutex);
            ++server.m_ledger->activeRequests;
        }
        state->path = url != nullptr ? url : "/";
        state->startedAtMillis = nowMillis();
        return server.begin(connection, *state, method != nullptr ? method : "");
    }
    if (*uploadSize != 0) {
        const std::size_t size = *uploadSize;
        *uploadSize = 0;
        return server.receive(connection, *state, uploadData, size);
    }
    return server.finish(connection, *state);
}

void CollectorServer::onCompleted(void* self, MHD_Connection*, void** context, MHD_RequestTerminationCode) {
    auto& server = *static_cast<CollectorServer*>(self);
    auto* state = static_cast<RequestState*>(*context);
    if (state == nullptr) return;
    *context = nullptr;
    server.m_ledger->release(state->reservedBytes);
    const bool begun = state->begun;
    delete state;
    if (!begun) return;
    {
        std::lock_guard lock(server.m_ledger->mutex);
        --server.m_ledger->activeRequests;
    }
    server.m_ledger->changed.notify_all();
}

// Called with the request target as received, before MHD unescapes it in place: the only moment
// an escaped NUL can still be seen. What it returns becomes the request's context.
void* CollectorServer::onUri(void*, const char* uri, MHD_Connection*) {
    auto* state = new RequestState;
    state->rawUri = uri != nullptr ? uri : "";
    return state;
}

void CollectorServer::onServerMessage(void* self, const char* format, va_list arguments) {
    auto& server = *static_cast<CollectorServer*>(self);
    std::array<char, 512> text{};
    std::vsnprintf(text.data(), text.size(), format, arguments);
    std::string message(text.data());
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r'))
        message.pop_back();
    std::lock_guard lock(server.m_serverMessageMutex);
    server.m_lastServerMessage = std::move(message);
}

MHD_Result CollectorServer::begin(MHD_Connection* connection, RequestState& state, std::string_view method) {
    if (m_stopping)
        return answerRetryLater(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                                "the collector is stopping", m_config.retryAfterSeconds);
    if (std::string problem = urlProblem(state.rawUri, state.path); !problem.empty())
        return answerError(connection, MHD_HTTP_BAD_REQUEST, "bad_url", problem);
    if (std::string problem = framingProblem(connection); !problem.empty())
        return answerError(connection, MHD_HTTP_BAD_REQUEST, "bad_framing", problem);
    if (std::optional<std::string> host = lookupHost(connection); host && !hostAllowed(*host))
        return answerError(connection, MHD_HTTP_FORBIDDEN, "host_not_allowed",
                           "Host '" + *host +
                               "' is not allowed: a web page could reach the collector under that name "
                               "(DNS rebinding). Use an IP address or localhost, or add the name to "
                               "collector.allowed_hosts");
    std::optional<Endpoint> endpoint = matchEndpoint(state.path);
    if (!endpoint)
        return answerError(connection, MHD_HTTP_NOT_FOUND, "not_found", "no endpoint at " + state.path);
    state.endpoint = std::move(*endpoint);

    const EndpointKind kind = state.endpoint.kind;
    const bool postOnly = kind == EndpointKind::Capture || kind == EndpointKind::SegmentMetrics;
    const std::string allowed = postOnly                      ? "POST, OPTIONS"
                                : kind == EndpointKind::Flags ? "GET, POST, OPTIONS"
                                                              : "GET, OPTIONS";
    if (method == MHD_HTTP_METHOD_OPTIONS) {
        const std::string_view requested =
            lookup(connection, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        return answer(connection, MHD_HTTP_NO_CONTENT, {}, {},
                      {{"Access-Control-Allow-Methods", allowed},
                       {"Access-Control-Allow-Headers",
                        std::string(requested.empty() ? kAllowedRequestHeaders : requested)},
                       {"Access-Control-Max-Age", "86400"},
                       {"Allow", allowed}});
    }
    const bool get = method == MHD_HTTP_METHOD_GET;
    const bool post = method == MHD_HTTP_METHOD_POST;
    if ((postOnly && !post) || (kind == EndpointKind::Flags && !get && !post) ||
        (!postOnly && kind != EndpointKind::Flags && !get))
        return answerError(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                           std::string(method) + " is not allowed on " + state.path +
                               " (allowed: " + allowed + ")",
                           {{"Allow", allowed}});

    if (const std::string_view length = lookup(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        !length.empty()) {
        std::size_t declared = 0;
        if (std::from_chars(length.data(), length.data() + length.size(), declared).ec == std::errc())
            state.declaredLength = declared;
        else
            state.declaredLength = std::numeric_limits<std::size_t>::max(); // out of range: too large
    }
    if (state.declaredLength && *state.declaredLength > m_config.maxBodyBytes)
        return answerError(connection, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                           "Content-Length " +
                               std::string(lookup(connection, MHD_HEADER_KIND, "Content-Length")) +
                               " exceeds the limit of " + std::to_string(m_config.maxBodyBytes) + " bytes");

    switch (kind) {
    case EndpointKind::Flags:
        if (get) return answer(connection, MHD_HTTP_OK, kFlagsBody);
        state.discardBody = true;
        return MHD_YES;
    case EndpointKind::RemoteConfig:
        return answer(connection, MHD_HTTP_OK, remoteConfig(state.endpoint.token).dump());
    case EndpointKind::RemoteConfigScript:
        return answer(connection, MHD_HTTP_OK, remoteConfigScript(state.endpoint.token),
                      "application/javascript; charset=utf-8");
    case EndpointKind::SegmentSettings: {
        // An unknown write key gets no settings: analytics-next then fails to load, saying so,
        // instead of sending every event into a 401.
        if (!m_tokens.empty() && !m_tokens.contains(state.endpoint.token))
            return answerUnauthorized(connection, state.endpoint.token, " (settings requested)");
        std::optional<std::string> host = lookupHost(connection);
        if (!host || host->empty()) host = endpointText(m_config.bindAddress, m_port);
        return answer(connection, MHD_HTTP_OK,
                      segmentSettings(state.endpoint.token, *host)
                          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    case EndpointKind::SegmentMetrics:
        state.discardBody = true;
        return MHD_YES;
    case EndpointKind::Capture:
        break;
    }

    if (m_sink.overloaded())
        return answerRetryLater(connection, MHD_HTTP_TOO_MANY_REQUESTS, "overloaded",
                                "the pipeline's buffer is full; retry later", m_config.retryAfterSeconds);
    if (state.declaredLength) {
        if (!m_ledger->tryReserve(*state.declaredLength, m_config.maxInFlightBytes))
            return answerRetryLater(connection, MHD_HTTP_TOO_MANY_REQUESTS, "overloaded",
                                    "too many bytes in flight (limit " +
                                        std::to_string(m_config.maxInFlightBytes) + "); retry later",
                                    m_config.retryAfterSeconds);
        state.reservedBytes = *state.declaredLength;
        // Small bodies arrive in one piece; larger ones grow as they come, so a client that
        // declares much and sends little costs little.
        state.body.reserve(std::min<std::size_t>(*state.declaredLength, 1u << 20));
    }

    state.remoteAddress = clientAddress(connection);
    state.contentType = lookup(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    state.contentEncoding = lookup(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    state.userAgent = lookup(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
    state.compression = lookup(connection, MHD_GET_ARGUMENT_KIND, "compression");
    state.queryToken = lookup(connection, MHD_GET_ARGUMENT_KIND, "token");
    if (state.queryToken.empty()) state.queryToken = lookup(connection, MHD_GET_ARGUMENT_KIND, "api_key");
    const std::string_view authorization = lookup(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    state.basicAuthUser = basicAuthUser(authorization);
    state.bearerToken = bearerToken(authorization);
    state.sdkInfo = lookup(connection, MHD_HEADER_KIND, "PostHog-Sdk-Info");
    if (const char* key = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Idempotency-Key");
        key != nullptr)
        state.idempotencyKey = std::string(key);
    return MHD_YES;
}

void CollectorServer::refuseStream(RequestState& state, int status, std::string error, std::string detail) {
    state.refusal = status;
    state.refusalError = std::move(error);
    state.refusalDetail = std::move(detail);
    m_ledger->release(state.reservedBytes);
    state.reservedBytes = 0;
    std::string().swap(state.body); // give the memory back now, not at the end of the request
}

MHD_Result CollectorServer::receive(MHD_Connection* connection, RequestState& state, const char* data,
                                    std::size_t size) {
    if (state.refusal != 0 || state.discardBody) {
        state.discardedBytes += size;
        const std::size_t allowance = state.refusal != 0 ? m_config.maxDiscardBytes : m_config.maxBodyBytes;
        // MHD answers only once the body is complete; a client that keeps streaming past the
        // allowance is cut off instead of being read forever, told why first.
        if (state.discardedBytes <= allowance) return MHD_YES;
        if (state.refusal != 0)
            return cutOff(connection, state.refusal, state.refusalError, state.refusalDetail);
        return cutOff(connection, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                      "the body passed the limit of " + std::to_string(m_config.maxBodyBytes) + " bytes");
    }
    m_ledger->bytesReceived += size;
    if (state.body.size() + size > m_config.maxBodyBytes) {
        refuseStream(state, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                     "the body passed the limit of " + std::to_string(m_config.maxBodyBytes) + " bytes");
        return MHD_YES;
    }
    if (!state.declaredLength) {
        if (!m_ledger->tryReserve(size, m_config.maxInFlightBytes)) {
            refuseStream(state, MHD_HTTP_TOO_MANY_REQUESTS, "overloaded",
                         "too many bytes in flight (limit " + std::to_string(m_config.maxInFlightBytes) +
                             "); retry later");
            return MHD_YES;
        }
        state.reservedBytes += size;
    }
    state.body.append(data, size);
    return MHD_YES;
}

// libmicrohttpd 0.9.75 queues an answer only before the body or after its end. A body that
// never ends is answered here, straight on the socket (nothing else was written for this
// request: a 100 Continue at most, which a final answer may follow), and then dropped: MHD_NO
// makes MHD close the connection.
MHD_Result CollectorServer::cutOff(MHD_Connection* connection, int status, std::string_view error,
                                   std::string_view detail) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == nullptr) return MHD_NO;
    const std::string body = errorBody(error, detail);
    std::string response =
        "HTTP/1.1 " + std::to_string(status) +
        (status == MHD_HTTP_TOO_MANY_REQUESTS ? " Too Many Requests" : " Content Too Large") +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
        "Access-Control-Expose-Headers: Retry-After\r\n";
    if (status == MHD_HTTP_TOO_MANY_REQUESTS)
        response += "Retry-After: " + std::to_string(std::max(m_config.retryAfterSeconds, 0)) + "\r\n";
    response += "\r\n" + body;
    // A few hundred bytes into an empty send buffer: never blocks, and a peer that does not
    // read loses only its own answer.
    if (::send(info->connect_fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT) ==
        static_cast<ssize_t>(response.size()))
        ++m_ledger->responsesByStatus[static_cast<std::size_t>(status)];
    return MHD_NO;
}

MHD_Result CollectorServer::finish(MHD_Connection* connection, RequestState& state) {
    if (state.pending) return answerCommit(connection, state);
    if (state.refusal == MHD_HTTP_TOO_MANY_REQUESTS)
        return answerRetryLater(connection, state.refusal, state.refusalError, state.refusalDetail,
                                m_config.retryAfterSeconds);
    if (state.refusal != 0)
        return answerError(connection, state.refusal, state.refusalError, state.refusalDetail);
    if (state.discardBody)
        return answer(connection, MHD_HTTP_OK,
                      state.endpoint.kind == EndpointKind::Flags ? kFlagsBody : R"({"success":true})");
    return acceptCapture(connection, state);
}

MHD_Result CollectorServer::answerRejected(MHD_Connection* connection, RequestState& state,
                                           std::string rawBody, std::string reason, std::string detail) {
    // An unreadable body is kept only for a known client: with tokens configured, one from the
    // query, Basic or Bearer auth must be among them, or anyone could fill the dead-letter queue.
    const std::string token = requestToken(state);
    if (!m_tokens.empty() && !m_tokens.contains(token))
        return answerUnauthorized(connection, token,
                                  " (the body could not be decoded, so only ?token=, ?api_key=, Basic "
                                  "or Bearer auth can name it)");

    RejectedRequest rejected;
    rejected.path = state.path;
    rejected.vendor = state.endpoint.vendor;
    rejected.rawBody = std::move(rawBody);
    rejected.reason = reason;
    rejected.detail = detail;
    rejected.token = token;
    rejected.receivedAtMillis = nowMillis();
    rejected.remoteAddress = state.remoteAddress;
    rejected.contentType = state.contentType;
    rejected.contentEncoding = state.contentEncoding;
    rejected.userAgent = state.userAgent;

    // Clients never retry a 400, so it waits, like a 200, until the sink kept the body.
    std::shared_ptr<PendingCommit> pending = suspendForSink(connection);
    if (!pending)
        return answerRetryLater(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                                "the collector is stopping", m_config.retryAfterSeconds);
    state.pending = pending;
    state.rejecting = true;
    state.rejectReason = std::move(reason);
    state.rejectDetail = std::move(detail);
    ++m_ledger->rejectedRequests;
    // The raw body stays in flight until the sink has it: the completion releases it.
    const std::size_t reservedBytes = std::exchange(state.reservedBytes, 0);
    IngestSink::Completion done = [ledger = m_ledger, pending, reservedBytes](IngestResult result) {
        completeCommit(*ledger, pending, reservedBytes, std::move(result));
    };
    try {
        m_sink.reject(std::move(rejected), done);
    } catch (const std::exception& error) {
        // Ignored if the sink called done() before throwing.
        done(IngestResult{IngestStatus::Failed, m_config.retryAfterSeconds,
                          "the undecodable body could not be kept: " + std::string(error.what())});
    }
    return MHD_YES;
}

// Registers a request that waits for the sink and suspends its connection; null when stop()
// already gave up on waiting (the caller answers 503 at once, the sink never sees the request).
std::shared_ptr<PendingCommit> CollectorServer::suspendForSink(MHD_Connection* connection) {
    auto pending = std::make_shared<PendingCommit>();
    pending->connection = connection;
    {
        std::lock_guard lock(m_ledger->mutex);
        if (!m_ledger->abandoning)
            m_ledger->pending.insert(pending);
        else
            pending->answered = true;
    }
    {
        std::lock_guard lock(pending->mutex);
        // stop() may have given up on this request between the two locks.
        if (!pending->answered) {
            MHD_suspend_connection(connection);
            pending->suspended = true;
        }
    }
    if (!pending->suspended) return nullptr;
    return pending;
}

MHD_Result CollectorServer::acceptCapture(MHD_Connection* connection, RequestState& state) {
    const std::int64_t receivedAt = nowMillis();
    const BodyHints hints{state.contentEncoding, state.contentType, state.compression};
    // What is being inflated is in flight too: counted as it grows, so 16 bombs at once cannot
    // hold 16 times the cap.
    InFlightReservation decoding(*m_ledger);
    const DecodeBudget budget = [&](std::size_t moreBytes) {
        return decoding.grow(moreBytes, m_config.maxInFlightBytes);
    };
    DecodedBody decoded = decodeRequestBody(state.body, hints, m_config.maxDecompressedBytes, budget);
    if (decoded.status == DecodedBody::Status::TooLarge)
        return answerError(connection, MHD_HTTP_CONTENT_TOO_LARGE, decoded.reason, decoded.detail);
    if (decoded.status == DecodedBody::Status::Overloaded)
        return answerRetryLater(connection, MHD_HTTP_TOO_MANY_REQUESTS, decoded.reason, decoded.detail,
                                m_config.retryAfterSeconds);
    if (decoded.status == DecodedBody::Status::Invalid)
        return answerRejected(connection, state, std::move(state.body), std::move(decoded.reason),
                              std::move(decoded.detail));

    JsonInspection inspection = inspectJson(decoded.json);
    if (!inspection.valid) {
        // A plain body was moved into `decoded`; every other encoding left the raw bytes in state.
        std::string raw =
            decoded.encoding == BodyEncoding::Plain ? std::move(decoded.json) : std::move(state.body);
        return answerRejected(connection, state, std::move(raw), std::move(inspection.reason),
                              std::move(inspection.detail));
    }

    std::string token = std::move(inspection.token);
    if (token.empty()) token = requestToken(state);
    if (!m_tokens.empty() && !m_tokens.contains(token)) return answerUnauthorized(connection, token, {});

    if (!state.endpoint.messageType.empty() && inspection.isObject && !inspection.hasType)
        insertTypeMember(decoded.json, state.endpoint.messageType);
    if (state.endpoint.captureV1) captureV1ToBatch(decoded.json, token, state.sdkInfo);

    // From here the decoded body is what is in flight, not the raw one.
    m_ledger->release(state.reservedBytes);
    state.reservedBytes = 0;
    decoding.reset();
    std::string().swap(state.body);
    const std::size_t decodedBytes = decoded.json.size();
    if (!m_ledger->tryReserve(decodedBytes, m_config.maxInFlightBytes))
        return answerRetryLater(connection, MHD_HTTP_TOO_MANY_REQUESTS, "overloaded",
                                "too many bytes in flight (limit " +
                                    std::to_string(m_config.maxInFlightBytes) + "); retry later",
                                m_config.retryAfterSeconds);

    IngestRequest request;
    request.path = state.path;
    request.vendor = state.endpoint.vendor;
    request.body = std::move(decoded.json);
    request.token = std::move(token);
    request.idempotencyKey = state.idempotencyKey;
    request.receivedAtMillis = receivedAt;
    request.remoteAddress = state.remoteAddress;
    request.encoding = decoded.encoding;
    request.contentType = state.contentType;
    request.userAgent = state.userAgent;

    std::shared_ptr<PendingCommit> pending = suspendForSink(connection);
    if (!pending) {
        m_ledger->release(decodedBytes);
        return answerRetryLater(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                                "the collector is stopping", m_config.retryAfterSeconds);
    }
    state.pending = pending;
    m_ledger->bytesDecoded += decodedBytes;

    IngestSink::Completion done = [ledger = m_ledger, pending, decodedBytes](IngestResult result) {
        completeCommit(*ledger, pending, decodedBytes, std::move(result));
    };
    try {
        m_sink.ingest(std::move(request), done);
    } catch (const std::exception& error) {
        // Ignored if the sink called done() before throwing.
        done(IngestResult{IngestStatus::Failed, m_config.retryAfterSeconds,
                          std::string("the sink failed: ") + error.what()});
    }
    return MHD_YES;
}

MHD_Result CollectorServer::answerCommit(MHD_Connection* connection, RequestState& state) {
    IngestResult result;
    {
        std::lock_guard lock(state.pending->mutex);
        if (!state.pending->answered) // MHD calls again only after a resume, which follows the answer
            return answerError(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                               "resumed before the commit was answered");
        result = state.pending->result;
    }
    if (state.rejecting) {
        if (result.status == IngestStatus::Committed)
            return answerError(connection, MHD_HTTP_BAD_REQUEST, state.rejectReason, state.rejectDetail);
        return answerRetryLater(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "reject_failed",
                                result.message.empty() ? "the undecodable body could not be kept; retry later"
                                                       : result.message,
                                result.retryAfterSeconds);
    }
    switch (result.status) {
    case IngestStatus::Committed:
        ++m_ledger->acceptedRequests;
        // Capture V1 answers a result per event uuid; none listed is "all ok".
        return answer(connection, MHD_HTTP_OK,
                      state.endpoint.vendor == Vendor::Segment ? R"({"success":true})"
                      : state.endpoint.captureV1               ? R"({"results":{}})"
                                                               : R"({"status":1})");
    case IngestStatus::Backpressure:
        return answerRetryLater(connection, MHD_HTTP_TOO_MANY_REQUESTS, "backpressure",
                                result.message.empty() ? "the pipeline is behind; retry later"
                                                       : result.message,
                                result.retryAfterSeconds);
    case IngestStatus::Failed:
        break;
    }
    return answerRetryLater(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "commit_failed",
                            result.message.empty() ? "the request could not be stored; retry later"
                                                   : result.message,
                            result.retryAfterSeconds);
}

MHD_Result CollectorServer::answer(MHD_Connection* connection, int status, std::string_view body,
                                   std::string_view contentType, const std::vector<ExtraHeader>& extra) {
    MHD_Response* response =
        MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    if (!contentType.empty())
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, std::string(contentType).c_str());
    // CORS on every answer: a browser SDK must be able to read errors and Retry-After too.
    const std::string_view origin = lookup(connection, MHD_HEADER_KIND, "Origin");
    if (origin.empty()) {
        MHD_add_response_header(response, "Access-Control-Allow-Origin", "*");
    } else {
        // Never Access-Control-Allow-Credentials: the browser SDKs send no cookies to capture
        // endpoints, and with it any page the user visits could read answers made with theirs.
        MHD_add_response_header(response, "Access-Control-Allow-Origin", std::string(origin).c_str());
        MHD_add_response_header(response, "Vary", "Origin");
    }
    MHD_add_response_header(response, "Access-Control-Expose-Headers", "Retry-After");
    for (const ExtraHeader& header : extra)
        MHD_add_response_header(response, std::string(header.name).c_str(), header.value.c_str());
    if (m_stopping) MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result queued = MHD_queue_response(connection, static_cast<unsigned>(status), response);
    MHD_destroy_response(response);
    if (queued == MHD_YES && status >= kMinStatus && status <= kMaxStatus)
        ++m_ledger->responsesByStatus[static_cast<std::size_t>(status)];
    return queued;
}

} // namespace collector_detail

Collector::Collector(CollectorConfig config, IngestSink& sink)
    : m_server(std::make_unique<collector_detail::CollectorServer>(std::move(config), sink)) {}

Collector::~Collector() = default;

void Collector::start() {
    m_server->start();
}
void Collector::stop() {
    m_server->stop();
}
bool Collector::running() const {
    return m_server->running();
}
std::uint16_t Collector::port() const {
    return m_server->port();
}
CollectorStats Collector::stats() const {
    return m_server->stats();
}
const CollectorConfig& Collector::config() const {
    return m_server->config();
}

} // namespace pipescope
