#include "route/destination.h"

#include "route/encoders.h"
#include "route/sinks.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace pipescope {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string_view toString(AttemptOutcome outcome) {
    switch (outcome) {
    case AttemptOutcome::Delivered:
        return "delivered";
    case AttemptOutcome::Retrying:
        return "retrying";
    case AttemptOutcome::DeadLettered:
        break;
    }
    return "dead_lettered";
}

std::string_view toString(DestinationState state) {
    switch (state) {
    case DestinationState::Ok:
        return "ok";
    case DestinationState::BackingOff:
        return "backing_off";
    case DestinationState::Failing:
        break;
    }
    return "failing";
}

// --- configuration ----------------------------------------------------------------------------

namespace {

bool isHttpType(std::string_view type) {
    return type == "posthog" || type == "segment" || type == "webhook";
}
bool isFileType(std::string_view type) {
    return type == "ndjson" || type == "sqlite";
}

bool isIdentifier(std::string_view text) {
    if (text.empty() || std::isdigit(static_cast<unsigned char>(text[0]))) return false;
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// A destination's own checks on top of the shared reader: its numbers are written as the
// destination tests have always stated them, and every error is a DestinationConfigError.
class DestinationReader {
public:
    DestinationReader(const json& object, std::string_view where) : m_reader(object, std::string(where)) {}

    [[noreturn]] void fail(std::string_view key, const std::string& message) const {
        throw DestinationConfigError(m_reader.field(key), message);
    }
    bool has(std::string_view key) const { return m_reader.has(key); }
    std::string string(std::string_view key) const { return *m_reader.text(key); }
    std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const {
        return *m_reader.integer(key, min, max);
    }
    double number(std::string_view key, double min, double max) const {
        const json& value = *m_reader.find(key);
        if (!value.is_number() || value.get<double>() < min || value.get<double>() > max)
            fail(key, "expected a number from " + shortJson(min) + " to " + shortJson(max) + ", got " +
                          shortJson(value));
        return value.get<double>();
    }
    const json& array(std::string_view key) const { return *m_reader.array(key); }
    const json& object(std::string_view key) const { return *m_reader.object(key); }

private:
    ConfigReader m_reader;
};

// Each field and the types that use it (empty: every type).
struct FieldUse {
    std::string_view key;
    std::vector<std::string_view> types;
};

const std::vector<FieldUse>& knownFields() {
    static const std::vector<FieldUse> fields = {
        {"name", {}},
        {"type", {}},
        {"url", {"posthog", "segment", "webhook"}},
        {"api_key", {"posthog"}},
        {"write_key", {"segment"}},
        {"path", {"ndjson", "sqlite"}},
        {"table", {"sqlite"}},
        {"events", {}},
        {"streams", {}},
        {"headers", {"posthog", "segment", "webhook"}},
        {"batch_size", {}},
        {"flush_interval_ms", {}},
        {"max_attempts", {}},
        {"backoff_initial_ms", {}},
        {"backoff_max_ms", {}},
        {"backoff_multiplier", {}},
        {"max_retry_after_ms", {}},
        {"timeout_ms", {"posthog", "segment", "webhook"}},
        {"connect_timeout_ms", {"posthog", "segment", "webhook"}},
        {"poll_interval_ms", {}},
        {"drain_timeout_ms", {}},
    };
    return fields;
}

constexpr std::int64_t kHour = 3'600'000;

DestinationConfig readDestinationConfig(const json& object, std::string_view where) {
    const DestinationReader reader(object, where);
    DestinationConfig config;

    if (!reader.has("name")) reader.fail("name", "required");
    config.name = reader.string("name");
    if (config.name.empty() || !std::all_of(config.name.begin(), config.name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
        }))
        reader.fail("name", "expected letters, digits, '_', '-' or '.', got " + shortJson(object.at("name")));

    if (!reader.has("type")) reader.fail("type", "required");
    config.type = reader.string("type");
    if (!isHttpType(config.type) && !isFileType(config.type))
        reader.fail("type", "unknown type \"" + config.type +
                                "\" (expected posthog, segment, webhook, ndjson or sqlite)");

    for (const auto& [key, value] : object.items()) {
        const auto& fields = knownFields();
        const auto field =
            std::find_if(fields.begin(), fields.end(), [&](const FieldUse& use) { return use.key == key; });
        if (field == fields.end()) reader.fail(key, "unknown field");
        if (!field->types.empty() &&
            std::find(field->types.begin(), field->types.end(), config.type) == field->types.end())
            reader.fail(key, "not used by type " + config.type);
    }

    const auto requireFor = [&](std::string_view key) {
        if (!reader.has(key)) reader.fail(key, "required for type " + config.type);
        std::string value = reader.string(key);
        if (value.empty()) reader.fail(key, "must not be empty");
        return value;
    };
    if (isHttpType(config.type)) {
        config.url = requireFor("url");
        if (!config.url.starts_with("http://") && !config.url.starts_with("https://"))
            reader.fail("url", "expected an http:// or https:// URL, got \"" + config.url + "\"");
    }
    if (config.type == "posthog") config.apiKey = requireFor("api_key");
    if (config.type == "segment") config.writeKey = requireFor("write_key");
    if (isFileType(config.type)) config.path = requireFor("path");
    if (reader.has("table")) {
        config.table = reader.string("table");
        if (!isIdentifier(config.table))
            reader.fail("table",
                        "expected a plain SQL name (letters, digits, '_'), got \"" + config.table + "\"");
    }

    if (reader.has("events")) {
        const json& events = reader.array("events");
        for (std::size_t i = 0; i < events.size(); ++i) {
            const std::string key = "events[" + std::to_string(i) + "]";
            if (!events[i].is_string())
                reader.fail(key, "expected an event name, got " + shortJson(events[i]));
            const std::string name = events[i].get<std::string>();
            if (name.empty()) reader.fail(key, "must not be empty");
            if (const auto star = name.find('*'); star != std::string::npos && star + 1 != name.size())
                reader.fail(key, "'*' is only allowed at the end, got \"" + name + "\"");
            config.events.push_back(name);
        }
    }
    if (reader.has("streams")) {
        const json& streams = reader.array("streams");
        for (std::size_t i = 0; i < streams.size(); ++i) {
            const std::string key = "streams[" + std::to_string(i) + "]";
            const auto stream =
                streams[i].is_string() ? parseStream(streams[i].get<std::string>()) : std::nullopt;
            if (!stream) reader.fail(key, "expected client, server or unknown, got " + shortJson(streams[i]));
            config.streams.push_back(*stream);
        }
    }
    if (reader.has("headers")) {
        for (const auto& [name, value] : reader.object("headers").items()) {
            const std::string key = "headers." + name;
            const bool validName = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
            });
            if (!validName) reader.fail(key, "expected a header name of letters, digits, '-' or '_'");
            if (!value.is_string()) reader.fail(key, "expected a string, got " + shortJson(value));
            const std::string text = value.get<std::string>();
            if (text.find_first_of("\r\n") != std::string::npos)
                reader.fail(key, "must not contain a line break");
            config.headers[name] = text;
        }
    }

    if (reader.has("batch_size"))
        config.batchSize = static_cast<std::size_t>(reader.integer("batch_size", 1, 10000));
    if (reader.has("flush_interval_ms"))
        config.flushIntervalMillis = reader.integer("flush_interval_ms", 0, kHour);
    if (reader.has("max_attempts"))
        config.maxAttempts = static_cast<int>(reader.integer("max_attempts", 1, 1000));
    if (reader.has("backoff_initial_ms"))
        config.backoffInitialMillis = reader.integer("backoff_initial_ms", 0, kHour);
    if (reader.has("backoff_max_ms"))
        config.backoffMaxMillis = reader.integer("backoff_max_ms", 0, 24 * kHour);
    if (config.backoffMaxMillis < config.backoffInitialMillis)
        reader.fail("backoff_max_ms", "must be at least backoff_initial_ms (" +
                                            std::to_string(config.backoffInitialMillis) + ")");
    if (reader.has("backoff_multiplier"))
        config.backoffMultiplier = reader.number("backoff_multiplier", 1.0, 100.0);
    if (reader.has("max_retry_after_ms"))
        config.maxRetryAfterMillis = reader.integer("max_retry_after_ms", 0, 24 * kHour);
    if (reader.has("timeout_ms")) config.timeoutMillis = reader.integer("timeout_ms", 1, kHour);
    if (reader.has("connect_timeout_ms"))
        config.connectTimeoutMillis = reader.integer("connect_timeout_ms", 1, kHour);
    if (reader.has("poll_interval_ms"))
        config.pollIntervalMillis = reader.integer("poll_interval_ms", 1, 60'000);
    if (reader.has("drain_timeout_ms"))
        config.drainTimeoutMillis = reader.integer("drain_timeout_ms", 0, kHour);
    return config;
}

} // namespace

DestinationConfig parseDestinationConfig(const json& object, std::string_view where) {
    try {
        return readDestinationConfig(object, where);
    } catch (const DestinationConfigError&) {
        throw;
    } catch (const ConfigError& e) {
        throw DestinationConfigError(e.field(), e.message()); // the shared reader's checks
    }
}
std::vector<DestinationConfig> parseDestinationConfigs(const json& array, std::string_view where) {
    if (!array.is_array())
        throw DestinationConfigError(std::string(where), "expected an array, got " + shortJson(array));
    std::vector<DestinationConfig> configs;
    for (std::size_t i = 0; i < array.size(); ++i) {
        const std::string here = std::string(where) + "[" + std::to_string(i) + "]";
        DestinationConfig config = parseDestinationConfig(array[i], here);
        for (std::size_t j = 0; j < configs.size(); ++j) {
            if (configs[j].name == config.name)
                throw DestinationConfigError(here + ".name", "duplicate destination name \"" + config.name +
                                                                 "\" (also " + std::string(where) + "[" +
                                                                 std::to_string(j) + "])");
        }
        configs.push_back(std::move(config));
    }
    return configs;
}

// --- worker -----------------------------------------------------------------------------------

namespace {

std::int64_t epochMillisNow() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A worker constructed from a hand-built config gets the same checks as one read from JSON.
void validate(const DestinationConfig& config) {
    json object = {{"name", config.name}, {"type", config.type}};
    if (isHttpType(config.type)) object["url"] = config.url;
    if (config.type == "posthog") object["api_key"] = config.apiKey;
    if (config.type == "segment") object["write_key"] = config.writeKey;
    if (isFileType(config.type)) object["path"] = config.path;
    if (config.type == "sqlite") object["table"] = config.table;
    object["events"] = config.events;
    object["streams"] = json::array();
    for (const Stream stream : config.streams)
        object["streams"].push_back(toString(stream));
    object["batch_size"] = config.batchSize;
    object["flush_interval_ms"] = config.flushIntervalMillis;
    object["max_attempts"] = config.maxAttempts;
    object["backoff_initial_ms"] = config.backoffInitialMillis;
    object["backoff_max_ms"] = config.backoffMaxMillis;
    object["backoff_multiplier"] = config.backoffMultiplier;
    object["max_retry_after_ms"] = config.maxRetryAfterMillis;
    if (isHttpType(config.type)) {
        object["timeout_ms"] = config.timeoutMillis;
        object["connect_timeout_ms"] = config.connectTimeoutMillis;
        object["headers"] = config.headers;
    }
    object["poll_interval_ms"] = config.pollIntervalMillis;
    object["drain_timeout_ms"] = config.drainTimeoutMillis;
    parseDestinationConfig(object, config.name.empty() ? "destination" : config.name);
}

} // namespace

struct DestinationWorker::Impl {
    struct Queued {
        OutgoingEvent event;
        Clock::time_point seenAt; // a partial batch's age counts from when the worker read it
    };

    Impl(DestinationConfig configIn, EventFeed& feedIn, DeliveryLog& logIn)
        : config(std::move(configIn)), feed(feedIn), log(logIn), filter(config.events, config.streams),
          sink(makeDeliverySink(config)), random(std::random_device{}()) {
        stats.name = config.name;
    }

    void run();
    bool refill();
    void deliverBatch();
    void advanceCursor();
    // Waits `delay` unless told to quit first; false when the worker must quit.
    bool sleepFor(std::chrono::milliseconds delay);
    void waitForWork();
    std::chrono::milliseconds backoffDelay(int failedAttempt);
    bool quitRequested() const { return cancel.isCancelled(); }
    bool draining() const { return stopRequested.load() && drain.load(); }
    template <typename Update> void updateStats(Update update) {
        std::lock_guard lock(statsMutex);
        update(stats);
    }

    const DestinationConfig config;
    EventFeed& feed;
    DeliveryLog& log;
    const EventFilter filter;
    const std::unique_ptr<DeliverySink> sink;

    std::thread thread;
    std::mutex joinMutex;
    bool started = false;

    // Wake-up state, shared with notify() and stop().
    std::mutex wakeMutex;
    std::condition_variable wake;
    std::int64_t notifiedSeq = 0;
    std::int64_t answeredNotifySeq = 0; // the newest notification a refill has looked at
    std::atomic<bool> stopRequested{false};
    std::atomic<bool> drain{false};
    Clock::time_point drainDeadline = Clock::time_point::max();
    CancelToken cancel;

    // Worker thread only.
    std::deque<Queued> queue;
    std::int64_t fetchedThrough = 0; // every seq up to here is queued, handled or filtered
    std::int64_t savedCursor = 0;
    bool cursorLoaded = false;
    std::mt19937_64 random;

    mutable std::mutex statsMutex;
    DestinationStats stats;
    std::int64_t knownLastSeq = 0;
};

void DestinationWorker::Impl::run() {
    updateStats([](DestinationStats& s) { s.running = true; });
    while (!quitRequested()) {
        try {
            if (!cursorLoaded) {
                savedCursor = fetchedThrough = log.loadCursor(config.name);
                cursorLoaded = true;
                updateStats([&](DestinationStats& s) { s.cursor = savedCursor; });
            }
            const bool feedHasMore = queue.size() < config.batchSize && refill();
            const bool flushDue =
                !queue.empty() && (queue.size() >= config.batchSize || draining() ||
                                   Clock::now() - queue.front().seenAt >=
                                       std::chrono::milliseconds(config.flushIntervalMillis));
            if (flushDue) {
                deliverBatch();
                continue;
            }
            // Everything read so far was filtered out: the cursor moves past it without a delivery.
            if (queue.empty() && savedCursor < fetchedThrough) advanceCursor();
            if (feedHasMore) continue;
            if (draining() && queue.empty()) break;
            waitForWork();
        } catch (const std::exception& error) {
            // The feed or the log failed (the store is busy, say). Forget what was read and not
            // acknowledged, and read it again from the saved cursor: at-least-once, nothing skipped.
            queue.clear();
            fetchedThrough = savedCursor;
            updateStats([&](DestinationStats& s) {
                s.state = DestinationState::Failing;
                s.lastError = error.what();
            });
            sleepFor(std::chrono::milliseconds(std::max<std::int64_t>(config.backoffInitialMillis, 100)));
        }
    }
    updateStats([](DestinationStats& s) { s.running = false; });
}

bool DestinationWorker::Impl::refill() {
    {
        // Notifications up to here are answered by this read; only a newer one wakes us early.
        std::lock_guard lock(wakeMutex);
        answeredNotifySeq = notifiedSeq;
    }
    // Read before after(): every event up to this seq is visible to the call that follows. Only
    // the feed's own figure is trusted for passing over seqs, never a notification, which may
    // run ahead of the store's commit.
    const std::int64_t lastSeq = feed.lastSeq();
    const std::vector<OutgoingEvent> events = feed.after(fetchedThrough, config.batchSize);
    const auto now = Clock::now();
    std::int64_t filtered = 0;
    for (const OutgoingEvent& event : events) {
        if (event.seq <= fetchedThrough) continue; // a feed that breaks its contract must not loop us
        fetchedThrough = event.seq;
        if (!filter.accepts(event)) {
            ++filtered;
            continue;
        }
        if (!event.properties.empty() && !isJsonObjectText(event.properties)) {
            // Would make the whole batch unparseable at the receiver: this event alone goes.
            log.deadLetter(config.name, {event.seq}, "properties is not a JSON object");
            updateStats([](DestinationStats& s) { ++s.deadLetteredEvents; });
            continue;
        }
        queue.push_back({event, now});
    }
    const bool pageWasFull = events.size() >= config.batchSize;
    // Seqs the feed holds but never returns (invalid, duplicate events) are passed over too, or a
    // notification for one of them would wake us forever.
    if (!pageWasFull) fetchedThrough = std::max(fetchedThrough, lastSeq);
    updateStats([&](DestinationStats& s) {
        s.filteredEvents += filtered;
        knownLastSeq = std::max(knownLastSeq, lastSeq);
    });
    return pageWasFull;
}

void DestinationWorker::Impl::advanceCursor() {
    const std::int64_t cursor = queue.empty() ? fetchedThrough : queue.front().event.seq - 1;
    if (cursor <= savedCursor) return;
    log.saveCursor(config.name, cursor);
    savedCursor = cursor;
    updateStats([&](DestinationStats& s) { s.cursor = cursor; });
}

std::chrono::milliseconds DestinationWorker::Impl::backoffDelay(int failedAttempt) {
    // Full jitter (uniform in [0, cap]): retries of many workers after a shared outage spread out
    // instead of arriving together.
    const double cap = std::min(static_cast<double>(config.backoffMaxMillis),
                                static_cast<double>(config.backoffInitialMillis) *
                                    std::pow(config.backoffMultiplier, failedAttempt - 1));
    std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(cap));
    return std::chrono::milliseconds(pick(random));
}

void DestinationWorker::Impl::deliverBatch() {
    const std::size_t count = std::min(config.batchSize, queue.size());
    std::vector<OutgoingEvent> batch;
    std::vector<std::int64_t> seqs;
    batch.reserve(count);
    seqs.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        seqs.push_back(queue.front().event.seq);
        batch.push_back(std::move(queue.front().event));
        queue.pop_front();
    }
    // The batch has left the queue: whatever happens below, the cursor must not pass it unless it
    // was delivered or dead-lettered. On an exception run() rereads from the saved cursor.
    for (int attempt = 1;; ++attempt) {
        const std::int64_t startedAt = epochMillisNow();
        const auto started = Clock::now();
        const SinkResult result = sink->deliver(batch, cancel);
        DeliveryAttempt record;
        record.destination = config.name;
        record.seqs = seqs;
        record.attempt = attempt;
        record.startedAtMillis = startedAt;
        record.durationMillis =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
        record.httpStatus = result.httpStatus;
        record.error = result.error;

        if (result.kind == SinkResult::Kind::Cancelled) {
            // Not acknowledged: the next worker delivers this batch again from the saved cursor.
            record.outcome = AttemptOutcome::Retrying;
            log.recordAttempt(record);
            return;
        }
        if (result.kind == SinkResult::Kind::Delivered) {
            record.outcome = AttemptOutcome::Delivered;
            log.recordAttempt(record);
            advanceCursor();
            updateStats([&](DestinationStats& s) {
                s.deliveredEvents += static_cast<std::int64_t>(count);
                ++s.deliveredBatches;
                s.state = DestinationState::Ok;
                s.lastHttpStatus = result.httpStatus;
                s.lastError.clear();
            });
            return;
        }
        const bool permanent = result.kind == SinkResult::Kind::Permanent;
        if (permanent || attempt >= config.maxAttempts) {
            record.outcome = AttemptOutcome::DeadLettered;
            log.recordAttempt(record);
            const std::string reason =
                permanent ? "rejected: " + result.error
                          : "gave up after " + std::to_string(attempt) + " attempts; last: " + result.error;
            log.deadLetter(config.name, seqs, reason);
            advanceCursor();
            updateStats([&](DestinationStats& s) {
                s.deadLetteredEvents += static_cast<std::int64_t>(count);
                s.state = DestinationState::Failing;
                s.lastHttpStatus = result.httpStatus;
                s.lastError = reason;
            });
            return;
        }
        record.outcome = AttemptOutcome::Retrying;
        log.recordAttempt(record);
        updateStats([&](DestinationStats& s) {
            ++s.retriedAttempts;
            s.state = DestinationState::BackingOff;
            s.lastHttpStatus = result.httpStatus;
            s.lastError = result.error;
        });
        // Retry-After is a floor, not a replacement: "Retry-After: 0" from an overloaded receiver
        // must not turn the retries into a tight loop.
        auto delay = backoffDelay(attempt);
        if (result.retryAfterMillis)
            delay = std::max(delay, std::chrono::milliseconds(
                                        std::min(*result.retryAfterMillis, config.maxRetryAfterMillis)));
        if (!sleepFor(delay)) return;
    }
}

bool DestinationWorker::Impl::sleepFor(std::chrono::milliseconds delay) {
    const auto retryAt = Clock::now() + delay;
    std::unique_lock lock(wakeMutex);
    // The drain deadline may be set while we wait (stop(true) during a backoff): look again on
    // every wake-up.
    while (!quitRequested() && Clock::now() < retryAt)
        wake.wait_until(lock, std::min(retryAt, drainDeadline));
    return !quitRequested();
}

void DestinationWorker::Impl::waitForWork() {
    std::unique_lock lock(wakeMutex);
    auto until = Clock::now() + std::chrono::milliseconds(config.pollIntervalMillis);
    if (!queue.empty())
        until = std::min(until, queue.front().seenAt + std::chrono::milliseconds(config.flushIntervalMillis));
    wake.wait_until(lock, until, [&] { return stopRequested.load() || notifiedSeq > answeredNotifySeq; });
}

DestinationWorker::DestinationWorker(DestinationConfig config, EventFeed& feed, DeliveryLog& log) {
    validate(config);
    m_impl = std::make_unique<Impl>(std::move(config), feed, log);
}

DestinationWorker::~DestinationWorker() {
    stop(false);
}

void DestinationWorker::start() {
    std::lock_guard lock(m_impl->joinMutex);
    if (m_impl->started)
        throw std::logic_error("DestinationWorker " + m_impl->config.name + ": started twice");
    m_impl->started = true;
    m_impl->thread = std::thread([impl = m_impl.get()] { impl->run(); });
}

void DestinationWorker::notify(std::int64_t lastSeq) {
    {
        std::lock_guard lock(m_impl->wakeMutex);
        if (lastSeq <= m_impl->notifiedSeq) return;
        m_impl->notifiedSeq = lastSeq;
    }
    m_impl->wake.notify_all();
}

void DestinationWorker::stop(bool drain) {
    beginStop(drain);
    join();
}

void DestinationWorker::beginStop(bool drain) {
    {
        std::lock_guard lock(m_impl->wakeMutex);
        // A stop without drain may cut a draining stop short; a drain never extends a hard stop.
        if (!drain) {
            m_impl->cancel.cancelNow();
            m_impl->drain = false;
        } else if (!m_impl->stopRequested) {
            m_impl->drainDeadline =
                Clock::now() + std::chrono::milliseconds(m_impl->config.drainTimeoutMillis);
            m_impl->cancel.cancelAt(m_impl->drainDeadline);
            m_impl->drain = true;
        }
        m_impl->stopRequested = true;
    }
    m_impl->wake.notify_all();
    m_impl->sink->wakeup();
}

void DestinationWorker::join() {
    std::lock_guard lock(m_impl->joinMutex);
    if (m_impl->thread.joinable()) m_impl->thread.join();
}

DestinationStats DestinationWorker::stats() const {
    std::int64_t notified;
    {
        std::lock_guard lock(m_impl->wakeMutex);
        notified = m_impl->notifiedSeq;
    }
    std::lock_guard lock(m_impl->statsMutex);
    DestinationStats stats = m_impl->stats;
    stats.lag = std::max<std::int64_t>(0, std::max(m_impl->knownLastSeq, notified) - stats.cursor);
    return stats;
}

const DestinationConfig& DestinationWorker::config() const {
    return m_impl->config;
}

} // namespace pipescope
