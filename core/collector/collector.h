#pragma once
// The local HTTP collector: the edge where real PostHog and Segment SDKs deliver events. It
// speaks just enough of both vendors' ingestion APIs for their SDKs to run against it unchanged,
// turns each request body into plain JSON (gzip, lz64, form-encoded and base64 bodies are
// decoded here), and hands it to an IngestSink. It does not parse events: the sink's pipeline
// does (core/format/decoder.h), so a bad event inside a good batch is the pipeline's to
// dead-letter, not the collector's to refuse.
//
// Endpoints (a trailing slash and a query string are always allowed):
//   PostHog capture   POST /e  /i/v0/e  /capture  /batch  /track
//   PostHog V1        POST /i/v1/analytics/events     posthog-node's Capture V1 (opt-in): Bearer
//                                                     token; converted to a PostHog batch (see
//                                                     IngestRequest::body), answered
//                                                     {"results":{}} (every event ok)
//   Segment           POST /v1/track /v1/identify /v1/page /v1/screen /v1/group /v1/alias
//                          /v1/batch /v1/import, and analytics-next's short forms
//                          /v1/t /v1/i /v1/p /v1/s /v1/g /v1/a /v1/b
//   Segment metrics   POST /v1/m                      analytics-next's telemetry: read, dropped, 200
//   Segment settings  GET /v1/projects/<writeKey>/settings   the source settings analytics-next
//                          loads from its cdnURL: only the Segment.io destination, delivering to
//                          http://<the request's Host>/v1, nothing else to load, metrics off;
//                          401 for a write key not in `tokens` (when configured)
//   PostHog flags     GET|POST /flags  /decide          no flags, nothing switched off
//   PostHog config    GET /array/<token>/config[.js]    remote config (JSON or JS)
//   any of the above  OPTIONS                           a CORS preflight answer
// The flags and config answers leave the app's own settings in force: autocapture_opt_out is
// false (posthog-js keeps autocapture off while it is absent), and heatmaps, dead clicks, web
// vitals (capturePerformance), exception autocapture, error tracking and logs are absent (any
// value would override what the app did not set). Session recording, surveys, product tours,
// conversations, site apps and the toolbar are off: the collector serves none of them.
// supportedCompression is PostHog's ["gzip", "gzip-js"], so posthog-js compresses as in
// production.
// Every answer carries CORS headers (the Origin echoed, never Access-Control-Allow-Credentials:
// the SDKs send no credentials), so browser SDKs on a page served from another origin can post
// to it; a preflight allows whatever headers it asks for.
//
// Durability contract: a capture request is answered 200 only after the sink reported it
// committed (IngestStatus::Committed). While the sink works the connection is suspended
// (libmicrohttpd suspend/resume), so no server thread waits for a commit and any number of
// requests can wait for one group commit.
//
// Answers, in the order they are decided ("error" code of the JSON body in brackets):
//   503 + Retry-After  the collector is stopping [stopping]
//   400                the request target has a control character, escaped (%00, %0A, %7F...) or
//                      not, anywhere, or a "." / ".." path segment: MHD unescapes in place, so
//                      "/batch%00/../evil" would otherwise be routed as "/batch" [bad_url]
//   400                the body's length is ambiguous: Content-Length headers that differ, both
//                      Content-Length and Transfer-Encoding, or a Transfer-Encoding other than
//                      chunked (request smuggling); decided before the body is read, the
//                      connection is closed after the answer [bad_framing]
//   403                the Host header names neither an IP literal, localhost / *.localhost,
//                      this machine (when bound beyond loopback) nor an allowedHosts entry: DNS
//                      rebinding [host_not_allowed] (a request without Host, HTTP/1.0, passes)
//   404 / 405          unknown path / wrong method [not_found / method_not_allowed]
//   413                Content-Length above maxBodyBytes: decided from the header, the body is
//                      never read (the connection is closed after the answer) [payload_too_large]
//   429 + Retry-After  sink.overloaded(), or the body would push the bytes in flight (bodies
//                      being received or waiting for their commit) above maxInFlightBytes
//                      [overloaded]
//   413 / 429          a chunked body that passes maxBodyBytes / the in-flight bound while
//                      streaming: buffering stops at once and the rest is read and discarded,
//                      then answered (libmicrohttpd 0.9.75 cannot queue an answer before the body
//                      ends); a client that streams more than maxDiscardBytes after that gets the
//                      same answer written straight to the socket and is disconnected. A chunk
//                      size of ffffffffffffffff is such a body; one beyond 64 bits is answered
//                      413 by libmicrohttpd itself (HTML body)
//   413                the decoded body passes maxDecompressedBytes: every decoder (gzip, lz64,
//                      base64, form) stops there, holding about the cap at most (lz64: twice,
//                      as UTF-16) [decompressed_too_large]
//   429 + Retry-After  what is being inflated counts in flight as it grows: inflating would push
//                      the bytes in flight above maxInFlightBytes [overloaded]
//   401                the body cannot be decoded, tokens are configured, and the query / Basic
//                      / Bearer auth token is not one of them (or there is none): not kept
//                      [unauthorized]
//   400                the body cannot be decoded: the raw bytes go to sink.reject(), and the 400
//                      is answered only once its done() reported Committed (the connection is
//                      suspended meanwhile, as for a commit) [RejectedRequest::reason]
//   503 + Retry-After  reject()'s done() reported Failed / Backpressure, or stop() gave up
//                      waiting for it [reject_failed]
//   401                tokens are configured and the request's token is not one of them
//                      [unauthorized]
//   200                committed ({"status":1} for PostHog, {"results":{}} for Capture V1,
//                      {"success":true} for Segment)
//   429 / 503          the sink answered Backpressure / Failed, or stop() gave up waiting
//                      [backpressure / commit_failed]
// Error bodies are JSON: {"error": "<code>", "detail": "<what exactly is wrong>"}.
//
// What libmicrohttpd 0.9.75 decides before the collector sees a request (no hook exists):
//   - a request line without a space (a TLS hello, binary noise): the connection is closed
//     unanswered; bytes without any line end are held until connectionTimeoutSeconds;
//   - a malformed request line or header line: 400 with MHD's HTML body;
//   - Content-Length not a number (-1, abc): 400 with MHD's HTML body, but its status line and
//     headers are written twice (its error path builds them and its reply path builds them
//     again); the connection is then closed. Nothing reaches the sink in any of these.
//
// Holding connections: an idle or slowly trickling client holds one connection slot (never a
// thread) until connectionTimeoutSeconds pass without a byte from it. libmicrohttpd 0.9.75 has
// no deadline for a whole header block, so a client sending a byte every few seconds keeps
// its slot; what keeps others served is capacity (connectionLimit, 10,000 by default) and
// perIpConnectionLimit (256), beyond which a connection is closed unanswered.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

enum class Vendor : std::uint8_t { PostHog, Segment };
std::string_view toString(Vendor vendor); // "posthog", "segment"

// How the body arrived; the sink always receives it decoded to JSON.
enum class BodyEncoding : std::uint8_t {
    Plain,    // JSON as is
    Gzip,     // Content-Encoding: gzip, ?compression=gzip-js, or gzip magic bytes
    Lz64,     // ?compression=lz64: lz-string compressToBase64 of the JSON
    Base64,   // ?compression=base64: base64 of the JSON
    Form,     // application/x-www-form-urlencoded data=<base64 or url-encoded JSON>
    FormLz64, // the same with compression=lz64 (form field or query)
};
std::string_view toString(BodyEncoding encoding); // "plain", "gzip", "lz64", "base64", "form", "form+lz64"

// One decoded capture request, as handed to the sink.
struct IngestRequest {
    std::string path; // the URL path without the query, e.g. "/i/v0/e/"
    Vendor vendor = Vendor::PostHog;
    // Decoded JSON: a PostHog event, array of events or {api_key, batch} envelope, a Segment
    // message or {batch: [...]}. On the single-message Segment endpoints a message without a
    // "type" has the path's type inserted as its first member. Invalid UTF-8 is passed on as is.
    // A Capture V1 body {created_at, batch: [...]} becomes {api_key: <token>, sent_at:
    // <created_at>, batch: [...]}: each event keeps its bytes, with $lib / $lib_version (from the
    // PostHog-Sdk-Info header, which V1 moves them to) and $session_id / $window_id (from its
    // top-level session_id / window_id) spliced into the front of its properties when they are
    // not there, as PostHog's capture adds them.
    std::string body;
    // api_key / token / $token / writeKey from the body's top level, else the first event's
    // properties.token / properties.$token, else ?token= / ?api_key=, else the HTTP Basic
    // username, else the Bearer token; empty when none.
    std::string token;
    std::optional<std::string> idempotencyKey; // X-Idempotency-Key
    std::int64_t receivedAtMillis = 0;         // Unix epoch ms when the body was complete
    std::string remoteAddress;                 // "127.0.0.1", "::1"
    BodyEncoding encoding = BodyEncoding::Plain;
    std::string contentType;
    std::string userAgent;
};

enum class IngestStatus : std::uint8_t { Committed, Backpressure, Failed };

struct IngestResult {
    IngestStatus status = IngestStatus::Committed;
    int retryAfterSeconds = 1; // Backpressure and Failed: the Retry-After of the 429 / 503
    std::string message;       // Backpressure and Failed: the detail of the error body
};

// A capture body that could not be decoded; answered 400 after the sink kept it.
struct RejectedRequest {
    std::string path;
    Vendor vendor = Vendor::PostHog;
    std::string rawBody; // the bytes exactly as received (still compressed / encoded)
    std::string reason;  // machine code, also the "error" of the 400 body: "not_json",
                         // "json_too_deep", "gzip_truncated", "gzip_invalid", "base64_invalid",
                         // "lz64_invalid", "form_invalid", "empty_body",
                         // "unsupported_content_encoding"
    std::string detail;  // e.g. the JSON parser's message with the byte offset
    std::string token;   // from the query, Basic or Bearer auth when present (the body is unreadable)
    std::int64_t receivedAtMillis = 0;
    std::string remoteAddress;
    std::string contentType;
    std::string contentEncoding;
    std::string userAgent;
};

// Where accepted requests go. Implemented by the integrator (durable store + pipeline) and by
// tests. All three functions are called from the collector's server threads, concurrently.
class IngestSink {
public:
    using Completion = std::function<void(IngestResult)>;

    virtual ~IngestSink() = default;

    // Takes the request and must call `done` exactly once, from any thread, at any later time
    // (also from inside ingest()). Must not block on the commit: the calling thread serves
    // other connections. `done` stays safe to call after Collector::stop() and after the
    // Collector is destroyed (the answer is then dropped).
    virtual void ingest(IngestRequest request, Completion done) = 0;

    // Keeps an undecodable body (the dead-letter queue) and must call `done` exactly once, as
    // ingest() does: the 400 is answered only after `done` reported Committed (clients never
    // retry a 400, so the body must be durable first); Failed answers 503 instead.
    virtual void reject(RejectedRequest rejected, Completion done) = 0;

    // True while the sink's backlog is above its bound: capture requests are answered 429
    // before their body is read.
    virtual bool overloaded() const = 0;
};

struct CollectorConfig {
    // Loopback by default; anything else exposes the collector to the network, so it must be
    // asked for explicitly. A numeric IPv4 / IPv6 address or a host name.
    std::string bindAddress = "127.0.0.1";
    std::uint16_t port = 8089; // 0: any free port, see Collector::port()
    std::size_t maxBodyBytes = 20u << 20;
    std::size_t maxDecompressedBytes = 100u << 20;
    // Bodies being received or waiting for their commit, raw until decoded, decoded after.
    std::size_t maxInFlightBytes = 256u << 20;
    // After a streamed body was refused (413 / 429), how much more of it is read and discarded
    // so the client still gets the answer; beyond that the connection is dropped.
    std::size_t maxDiscardBytes = 4u << 20;
    std::vector<std::string> tokens; // accepted tokens / write keys; empty: no authentication
    // Host names accepted in the Host header besides IP literals, localhost, *.localhost and
    // (when bound beyond loopback) this machine's hostname; "*.example.com" accepts any name
    // under example.com, "*" any name at all. Anything else is answered 403: a name that a web
    // page's DNS can point at 127.0.0.1 would let that page write into the capture.
    std::vector<std::string> allowedHosts;
    unsigned threads = 2; // server threads (each polls many connections)
    // Open connections at most. Idle or trickling clients cost a connection slot (an fd and a
    // little memory, never a thread), so the limit is high: filling it must take more sockets
    // than anyone casually has. start() raises the soft RLIMIT_NOFILE towards the hard limit as
    // needed and, when that is not enough, lowers this to what fits (and says so on stderr).
    unsigned connectionLimit = 10000;
    // Open connections per client address at most (0: no limit); a connection beyond it is
    // closed at once, unanswered. One host cannot take every slot; many hosts still can, hence
    // the capacity above.
    unsigned perIpConnectionLimit = 256;
    // A connection idle this long is closed, so a slow client holds a connection slot (never a
    // thread) for at most this long between two bytes.
    unsigned connectionTimeoutSeconds = 30;
    int retryAfterSeconds = 1; // Retry-After of the collector's own 429s
    // stop() waits this long for requests in progress (and their commits) before answering the
    // ones still waiting 503 and closing every connection.
    unsigned stopGraceMillis = 5000;
};

struct CollectorStats {
    std::map<int, std::uint64_t> responsesByStatus; // status code -> answers sent
    std::uint64_t bytesReceived = 0;                // capture body bytes read, as sent (compressed)
    std::uint64_t bytesDecoded = 0;                 // decoded JSON bytes handed to the sink
    std::uint64_t acceptedRequests = 0;             // capture requests answered 200
    std::uint64_t rejectedRequests = 0;             // bodies handed to reject()
    std::uint64_t unauthorizedRequests = 0;         // capture requests answered 401
    std::size_t inFlightBytes = 0;                  // now: bodies received or waiting for a commit
    std::size_t pendingCommits = 0;                 // now: ingest()s and reject()s not yet done
    std::size_t openConnections = 0;                // now: connections the server holds
    unsigned connectionLimit = 0;                   // the limit in force (after fitting the fd limit)
};

// start() failures; the message names the address and port and the reason.
class CollectorError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace collector_detail {
class CollectorServer;
}

class Collector {
public:
    // The sink must outlive the Collector (completions may arrive later; they are safe).
    Collector(CollectorConfig config, IngestSink& sink);
    ~Collector(); // stop()s
    Collector(const Collector&) = delete;
    Collector& operator=(const Collector&) = delete;

    // Binds and starts serving. Throws CollectorError, e.g. "cannot listen on 127.0.0.1:8089:
    // Address already in use". Calling start() on a started collector throws too.
    void start();

    // Stops accepting connections, lets requests in progress finish (their commits and rejects
    // included) for up to stopGraceMillis, answers those still waiting for the sink 503 +
    // Retry-After (commit_failed / reject_failed), then closes every connection. Never hangs
    // longer than about stopGraceMillis + 1 s.
    void stop();

    bool running() const;
    // The bound port (the chosen one when configured with port 0); 0 before start().
    std::uint16_t port() const;
    CollectorStats stats() const;
    const CollectorConfig& config() const;

private:
    std::unique_ptr<collector_detail::CollectorServer> m_server;
};

} // namespace pipescope
