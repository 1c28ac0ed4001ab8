#include "route/http_client.h"

#include <algorithm>
#include <cctype>
#include <curl/curl.h>
#include <mutex>
#include <stdexcept>

namespace pipescope {

namespace {

constexpr std::size_t kMaxResponseBody = 64 * 1024;

void initCurlOnce() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
        text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.remove_suffix(1);
    return text;
}

struct Transfer {
    HttpResponse* response;
    const CancelToken* cancel;
    std::int64_t startedAtMillis;
};

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const std::size_t bytes = size * count;
    std::string& body = transfer->response->body;
    if (body.size() < kMaxResponseBody) body.append(data, std::min(bytes, kMaxResponseBody - body.size()));
    return bytes;
}

std::size_t onHeader(char* data, std::size_t size, std::size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const std::size_t bytes = size * count;
    const std::string_view line(data, bytes);
    // A new status line starts a new header block (after a 100 Continue, say): forget the old one.
    if (line.starts_with("HTTP/")) transfer->response->retryAfterMillis.reset();
    constexpr std::string_view kRetryAfter = "retry-after:";
    if (line.size() > kRetryAfter.size() &&
        std::equal(kRetryAfter.begin(), kRetryAfter.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
        transfer->response->retryAfterMillis =
            parseRetryAfterMillis(line.substr(kRetryAfter.size()), transfer->startedAtMillis);
    }
    return bytes;
}

int onProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Transfer*>(user)->cancel->isCancelled() ? 1 : 0;
}

std::int64_t epochMillisNow() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace

std::optional<std::int64_t> parseRetryAfterMillis(std::string_view value, std::int64_t nowMillis) {
    value = trimmed(value);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (value.size() > 9) return std::int64_t{999'999'999} * 1000; // saturate: "forever"
        return std::stoll(std::string(value)) * 1000;
    }
    // An HTTP date must name a weekday or month; curl_getdate alone also takes bare numbers and words.
    if (value.find(',') == std::string_view::npos && value.find(' ') == std::string_view::npos)
        return std::nullopt;
    const time_t when = curl_getdate(std::string(value).c_str(), nullptr);
    if (when == -1) return std::nullopt;
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(when) * 1000 - nowMillis);
}

struct HttpClient::Handles {
    CURLM* multi = nullptr;
    CURL* easy = nullptr;
    char errorBuffer[CURL_ERROR_SIZE] = {};
};

HttpClient::HttpClient() : m_handles(std::make_unique<Handles>()) {
    initCurlOnce();
    m_handles->multi = curl_multi_init();
    m_handles->easy = curl_easy_init();
    if (!m_handles->multi || !m_handles->easy) {
        if (m_handles->easy) curl_easy_cleanup(m_handles->easy);
        if (m_handles->multi) curl_multi_cleanup(m_handles->multi);
        throw std::runtime_error("libcurl: cannot create a transfer handle");
    }
}

HttpClient::~HttpClient() {
    curl_easy_cleanup(m_handles->easy);
    curl_multi_cleanup(m_handles->multi);
}

void HttpClient::wakeup() {
    curl_multi_wakeup(m_handles->multi);
}

HttpResponse HttpClient::post(const HttpRequest& request, const CancelToken& cancel) {
    HttpResponse response;
    Transfer transfer{&response, &cancel, epochMillisNow()};
    CURL* easy = m_handles->easy;
    m_handles->errorBuffer[0] = '\0';

    curl_slist* headers = nullptr;
    for (const std::string& header : request.headers)
        headers = curl_slist_append(headers, header.c_str());
    // curl would wait up to a second for "100 Continue" on large bodies; receivers rarely send it.
    headers = curl_slist_append(headers, "Expect:");

    curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "pipescope/" PIPESCOPE_VERSION);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeoutMillis));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min(request.connectTimeoutMillis, request.timeoutMillis)));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, onProgress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, m_handles->errorBuffer);
    if (request.basicAuthUser.empty()) {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_NONE);
        curl_easy_setopt(easy, CURLOPT_USERNAME, nullptr);
        curl_easy_setopt(easy, CURLOPT_PASSWORD, nullptr);
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(easy, CURLOPT_USERNAME, request.basicAuthUser.c_str());
        curl_easy_setopt(easy, CURLOPT_PASSWORD, "");
    }

    CURLcode result = CURLE_OK;
    bool finished = false;
    CURLMcode multiCode = curl_multi_add_handle(m_handles->multi, easy);
    while (multiCode == CURLM_OK) {
        int running = 0;
        multiCode = curl_multi_perform(m_handles->multi, &running);
        int queued = 0;
        while (CURLMsg* message = curl_multi_info_read(m_handles->multi, &queued)) {
            if (message->msg == CURLMSG_DONE) {
                result = message->data.result;
                finished = true;
            }
        }
        if (finished || multiCode != CURLM_OK) break;
        if (cancel.isCancelled()) {
            response.cancelled = true;
            break;
        }
        // Bounded so that a deadline-based cancel is seen even without a wakeup.
        multiCode = curl_multi_poll(m_handles->multi, nullptr, 0, 100, nullptr);
    }
    curl_multi_remove_handle(m_handles->multi, easy);
    curl_slist_free_all(headers);

    if (response.cancelled || result == CURLE_ABORTED_BY_CALLBACK) {
        response.cancelled = true;
        response.error = "cancelled: destination stopping";
    } else if (multiCode != CURLM_OK) {
        response.error = std::string("curl multi error: ") + curl_multi_strerror(multiCode);
    } else if (result != CURLE_OK) {
        response.error = "curl error " + std::to_string(static_cast<int>(result)) + ": " +
                         (m_handles->errorBuffer[0] ? m_handles->errorBuffer : curl_easy_strerror(result));
    } else {
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        response.status = static_cast<int>(status);
    }
    if (response.status == 0) response.retryAfterMillis.reset();
    return response;
}

} // namespace pipescope
