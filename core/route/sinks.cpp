#include "route/sinks.h"

#include "route/encoders.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <sqlite3.h>
#include <unistd.h>

namespace pipescope {

namespace {

constexpr std::size_t kMaxErrorBody = 512;

std::int64_t epochMillisNow() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string joinUrl(const std::string& base, std::string_view suffix) {
    std::string url = base;
    while (!url.empty() && url.back() == '/')
        url.pop_back();
    return url + std::string(suffix);
}

bool hasHeader(const std::map<std::string, std::string>& headers, std::string_view name) {
    return std::any_of(headers.begin(), headers.end(), [&](const auto& header) {
        return std::equal(header.first.begin(), header.first.end(), name.begin(), name.end(),
                          [](char a, char b) {
                              return std::tolower(static_cast<unsigned char>(a)) ==
                                     std::tolower(static_cast<unsigned char>(b));
                          });
    });
}

// posthog, segment and webhook differ only in where they POST, the body and the auth.
class HttpSink final : public DeliverySink {
public:
    using Encode = std::function<std::string(std::span<const OutgoingEvent>)>;

    HttpSink(const DestinationConfig& config, std::string url, Encode encode) : m_encode(std::move(encode)) {
        m_request.url = std::move(url);
        m_request.timeoutMillis = config.timeoutMillis;
        m_request.connectTimeoutMillis = config.connectTimeoutMillis;
        if (config.type == "segment") m_request.basicAuthUser = config.writeKey;
        if (!hasHeader(config.headers, "content-type"))
            m_request.headers.push_back("Content-Type: application/json");
        for (const auto& [name, value] : config.headers)
            m_request.headers.push_back(name + ": " + value);
    }

    SinkResult deliver(std::span<const OutgoingEvent> batch, const CancelToken& cancel) override {
        m_request.body = m_encode(batch);
        return classifyHttpResponse(m_client.post(m_request, cancel));
    }

    void wakeup() override { m_client.wakeup(); }

private:
    HttpClient m_client;
    HttpRequest m_request;
    Encode m_encode;
};

std::string errnoText(const std::string& what, int error) {
    return what + ": " + std::strerror(error);
}

class NdjsonSink final : public DeliverySink {
public:
    explicit NdjsonSink(std::filesystem::path path) : m_path(std::move(path)) {}
    ~NdjsonSink() override {
        if (m_fd >= 0) ::close(m_fd);
    }

    SinkResult deliver(std::span<const OutgoingEvent> batch, const CancelToken&) override {
        std::string text;
        for (const OutgoingEvent& event : batch) {
            text += encodeCanonicalEvent(event);
            text += '\n';
        }
        if (m_fd < 0 && !open()) return failure(m_openError);
        std::size_t written = 0;
        while (written < text.size()) {
            const ssize_t n = ::write(m_fd, text.data() + written, text.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return failure(errnoText("ndjson " + m_path.string() + ": write failed", errno));
            written += static_cast<std::size_t>(n);
        }
        if (::fsync(m_fd) != 0)
            return failure(errnoText("ndjson " + m_path.string() + ": fsync failed", errno));
        return {};
    }

private:
    bool open() {
        const bool existed = std::filesystem::exists(m_path);
        m_fd = ::open(m_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (m_fd < 0) {
            m_openError = errnoText("ndjson " + m_path.string() + ": cannot open", errno);
            return false;
        }
        // A new file's directory entry must be durable too, or a crash could lose the whole file.
        if (!existed) {
            const auto directory =
                m_path.has_parent_path() ? m_path.parent_path() : std::filesystem::path(".");
            if (const int dirFd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dirFd >= 0) {
                ::fsync(dirFd);
                ::close(dirFd);
            }
        }
        return true;
    }

    // The next attempt reopens: the file may have been moved away or the disk remounted.
    SinkResult failure(std::string message) {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = -1;
        return {SinkResult::Kind::Retryable, 0, std::move(message), std::nullopt};
    }

    std::filesystem::path m_path;
    int m_fd = -1;
    std::string m_openError;
};

class SqliteSink final : public DeliverySink {
public:
    SqliteSink(std::filesystem::path path, std::string table)
        : m_path(std::move(path)), m_table(std::move(table)) {}
    ~SqliteSink() override { close(); }

    SinkResult deliver(std::span<const OutgoingEvent> batch, const CancelToken&) override {
        if (!m_db && !open()) return failure("cannot open");
        if (!exec("BEGIN IMMEDIATE")) return failure("cannot begin a transaction");
        for (const OutgoingEvent& event : batch) {
            sqlite3_reset(m_insert);
            sqlite3_clear_bindings(m_insert);
            sqlite3_bind_int64(m_insert, 1, event.seq);
            sqlite3_bind_text(m_insert, 2, event.name.data(), static_cast<int>(event.name.size()),
                              SQLITE_STATIC);
            sqlite3_bind_text(m_insert, 3, event.distinctId.data(), static_cast<int>(event.distinctId.size()),
                              SQLITE_STATIC);
            sqlite3_bind_text(m_insert, 4, event.stream.data(), static_cast<int>(event.stream.size()),
                              SQLITE_STATIC);
            if (event.timestamp) sqlite3_bind_int64(m_insert, 5, *event.timestamp);
            const std::string_view properties =
                event.properties.empty() ? "{}" : std::string_view(event.properties);
            sqlite3_bind_text(m_insert, 6, properties.data(), static_cast<int>(properties.size()),
                              SQLITE_STATIC);
            sqlite3_bind_blob(m_insert, 7, event.raw.data(), static_cast<int>(event.raw.size()),
                              SQLITE_STATIC);
            if (sqlite3_step(m_insert) != SQLITE_DONE) {
                const std::string message = "insert of seq " + std::to_string(event.seq) + " failed";
                sqlite3_reset(m_insert);
                exec("ROLLBACK");
                return failure(message);
            }
        }
        sqlite3_reset(m_insert);
        if (!exec("COMMIT")) return failure("commit failed");
        return {};
    }

private:
    bool open() {
        if (sqlite3_open_v2(m_path.c_str(), &m_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
            SQLITE_OK)
            return false;
        // Another process may hold the file (a viewer, a backup): wait a little rather than fail at once.
        sqlite3_busy_timeout(m_db, 2000);
        const std::string quoted = "\"" + m_table + "\"";
        // INSERT OR REPLACE by seq: a batch delivered again after a restart (at-least-once) leaves
        // one row per event.
        const std::string create =
            "CREATE TABLE IF NOT EXISTS " + quoted +
            " (seq INTEGER PRIMARY KEY, name TEXT NOT NULL, distinct_id TEXT NOT NULL,"
            " stream TEXT NOT NULL, timestamp INTEGER, properties TEXT NOT NULL, raw BLOB)";
        const std::string insert = "INSERT OR REPLACE INTO " + quoted +
                                   " (seq, name, distinct_id, stream, timestamp, properties, raw)"
                                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        return exec(create.c_str()) &&
               sqlite3_prepare_v2(m_db, insert.c_str(), -1, &m_insert, nullptr) == SQLITE_OK;
    }

    void close() {
        if (m_insert) sqlite3_finalize(m_insert);
        if (m_db) sqlite3_close(m_db);
        m_insert = nullptr;
        m_db = nullptr;
    }

    bool exec(const char* sql) { return sqlite3_exec(m_db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }

    SinkResult failure(const std::string& what) {
        std::string message = "sqlite " + m_path.string() + " table " + m_table + ": " + what;
        if (m_db) message += ": " + std::string(sqlite3_errmsg(m_db));
        // Reopen on the next attempt: the file may have been replaced or the table dropped.
        close();
        return {SinkResult::Kind::Retryable, 0, std::move(message), std::nullopt};
    }

    std::filesystem::path m_path;
    std::string m_table;
    sqlite3* m_db = nullptr;
    sqlite3_stmt* m_insert = nullptr;
};

} // namespace

SinkResult classifyHttpResponse(const HttpResponse& response) {
    SinkResult result;
    result.httpStatus = response.status;
    if (response.cancelled) {
        result.kind = SinkResult::Kind::Cancelled;
        result.error = response.error;
        return result;
    }
    if (response.status == 0) {
        result.kind = SinkResult::Kind::Retryable;
        result.error = response.error;
        return result;
    }
    if (response.status >= 200 && response.status < 300) return result;
    std::string body = response.body.substr(0, kMaxErrorBody);
    while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back())))
        body.pop_back();
    result.error = "HTTP " + std::to_string(response.status) + (body.empty() ? "" : ": " + body);
    const bool retryable = response.status == 408 || response.status == 429 || response.status >= 500;
    result.kind = retryable ? SinkResult::Kind::Retryable : SinkResult::Kind::Permanent;
    if (retryable) result.retryAfterMillis = response.retryAfterMillis;
    return result;
}

std::unique_ptr<DeliverySink> makeDeliverySink(const DestinationConfig& config) {
    if (config.type == "posthog") {
        return std::make_unique<HttpSink>(config, joinUrl(config.url, "/batch/"),
                                          [apiKey = config.apiKey](std::span<const OutgoingEvent> batch) {
                                              return encodePostHogBatch(batch, apiKey, epochMillisNow());
                                          });
    }
    if (config.type == "segment") {
        return std::make_unique<HttpSink>(
            config, joinUrl(config.url, "/v1/batch"),
            [](std::span<const OutgoingEvent> batch) { return encodeSegmentBatch(batch, epochMillisNow()); });
    }
    if (config.type == "webhook") {
        return std::make_unique<HttpSink>(config, config.url, [](std::span<const OutgoingEvent> batch) {
            return encodeWebhookBody(batch);
        });
    }
    if (config.type == "ndjson") return std::make_unique<NdjsonSink>(config.path);
    if (config.type == "sqlite") return std::make_unique<SqliteSink>(config.path, config.table);
    throw DestinationConfigError(config.name + ".type", "unknown destination type \"" + config.type + "\"");
}

} // namespace pipescope
