#pragma once
// Outgoing HTTP for destinations: one reused libcurl easy handle per worker (keep-alive to the
// destination), driven through a private multi handle so that another thread can interrupt a
// request at once (curl_multi_wakeup) instead of waiting for the next progress tick.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

// Tells a running request (and a backoff wait) to give up: at once, or at a deadline.
class CancelToken {
public:
    void cancelNow() { m_cancelled.store(true); }
    void cancelAt(std::chrono::steady_clock::time_point deadline) {
        m_deadlineNanos.store(deadline.time_since_epoch().count());
    }
    bool isCancelled() const {
        return m_cancelled.load() ||
               std::chrono::steady_clock::now().time_since_epoch().count() >= m_deadlineNanos.load();
    }

private:
    std::atomic<bool> m_cancelled{false};
    std::atomic<std::chrono::steady_clock::rep> m_deadlineNanos{std::chrono::steady_clock::rep(INT64_MAX)};
};

struct HttpRequest {
    std::string url;
    std::string body;
    std::vector<std::string> headers; // "Name: value"
    std::string basicAuthUser;        // HTTP Basic with an empty password when not empty
    std::int64_t timeoutMillis = 10000;
    std::int64_t connectTimeoutMillis = 5000;
};

struct HttpResponse {
    int status = 0;    // 0 when no response arrived
    std::string body;  // the first 64 KiB
    std::string error; // transport error ("curl error 7: ..."), empty when a response arrived
    std::optional<std::int64_t> retryAfterMillis;
    bool cancelled = false;
};

// Parses a Retry-After value: delta seconds or an HTTP date (RFC 9110), relative to `nowMillis`
// (epoch ms). Past dates give 0; nullopt when the value is neither.
std::optional<std::int64_t> parseRetryAfterMillis(std::string_view value, std::int64_t nowMillis);

class HttpClient {
public:
    HttpClient(); // throws std::runtime_error when libcurl cannot make a handle
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // POSTs `request.body`; returns when answered, failed, timed out or cancelled.
    HttpResponse post(const HttpRequest& request, const CancelToken& cancel);
    // Makes a running post() look at its CancelToken now. Thread-safe.
    void wakeup();

private:
    struct Handles;
    std::unique_ptr<Handles> m_handles;
};

} // namespace pipescope
