#pragma once
// Destinations: isolated delivery workers that forward the store's valid, unique events to
// PostHog, Segment, a webhook, an NDJSON file or a SQLite table.
//
// Contract
// - A worker *pulls*: it reads events from an EventFeed by its own cursor (the last seq it has
//   handled). Nothing is pushed into it; `notify(seq)` only says "there are events up to seq",
//   so the feeding thread never waits on a destination. Without notifications the worker polls
//   the feed every `pollIntervalMillis`.
// - Each worker runs on its own thread with its own HTTP connection (or file), so a destination
//   that is down, slow or hanging never slows another destination or the caller.
// - Delivery is at-least-once: a batch is delivered (HTTP 2xx, or the file write committed and
//   synced), and only then is the cursor saved. After a crash or a `stop(false)` in the middle
//   of a batch, that batch is delivered again by the next worker. Events that the destination's
//   filters reject advance the cursor without delivery.
// - Failures: 429, 408, 5xx, connection errors and timeouts are retried with exponential backoff
//   and full jitter; a Retry-After (seconds or HTTP date) on such an answer is a floor for the
//   wait (capped by maxRetryAfterMillis). Every attempt counts toward `maxAttempts`, 429s too;
//   then the batch's events are dead-lettered and delivery goes on with the next batch. Any other
//   4xx (and 3xx: redirects are not followed) dead-letters the batch at once with the response.
//   File destinations retry every error (a full disk or a locked database is transient).
// - Every attempt is recorded per batch (all its seqs) in the DeliveryLog; one cut short by
//   stop() is recorded as Retrying with the error "cancelled: destination stopping".

#include "config/config_reader.h"
#include "event/event.h"

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

// A stored event as a destination sees it: owned copies of the canonical fields.
struct OutgoingEvent {
    std::int64_t seq = 0;
    std::string eventId;  // dedup id, empty when none
    std::string idSource; // "posthog_uuid", "segment_message_id", ... or "none"
    std::string name;
    std::string distinctId;
    std::string anonymousId;
    std::string userId;
    std::string aliasId;                   // the id an alias event adds (see Event::aliasId)
    std::string stream;                    // "client" | "server" | "unknown"
    std::string format;                    // the source format: "posthog" | "segment" | "canonical"
    std::optional<std::int64_t> timestamp; // epoch ms
    std::string properties;                // JSON object text, forwarded verbatim; empty is taken as {}
    std::string raw;                       // the event's own input bytes (for the sqlite destination)
};

// The events a destination reads, implemented by the integrator over the capture store.
// Seqs ascend; some are never returned (invalid or duplicate events) and the worker passes over
// them. That is why lastSeq() must only count seqs whose events are committed with their final
// verdict: a seq at or below it that a later after() does not return is taken as "not for
// delivery" and never asked for again. (notify() is only a wake-up hint and is never trusted so.)
class EventFeed {
public:
    virtual ~EventFeed() = default;
    // Valid, unique events with seq > `seq`, ascending, at most `limit`. Called from worker
    // threads concurrently: must be thread-safe. May throw; the worker retries later.
    virtual std::vector<OutgoingEvent> after(std::int64_t seq, std::size_t limit) = 0;
    // The highest seq the feed holds (0 when empty), invalid and duplicate events included.
    virtual std::int64_t lastSeq() = 0;
};

enum class AttemptOutcome { Delivered, Retrying, DeadLettered };
std::string_view toString(AttemptOutcome outcome);

// One delivery attempt of one batch.
struct DeliveryAttempt {
    std::string destination;
    std::vector<std::int64_t> seqs;
    int attempt = 0;                  // 1-based, per batch
    std::int64_t startedAtMillis = 0; // epoch ms
    std::int64_t durationMillis = 0;
    int httpStatus = 0; // 0 when no HTTP response (connection error, file destination)
    std::string error;  // empty on success: "HTTP 500: <body>", "curl error 7: ...", ...
    AttemptOutcome outcome = AttemptOutcome::Delivered;
};

// Where workers record attempts, dead letters and cursors; implemented by the integrator over
// the capture store. Called from worker threads concurrently: must be thread-safe. Calls may
// throw; the worker records the error in its stats and retries later.
class DeliveryLog {
public:
    virtual ~DeliveryLog() = default;
    virtual void recordAttempt(const DeliveryAttempt& attempt) = 0;
    virtual void deadLetter(const std::string& destination, const std::vector<std::int64_t>& seqs,
                            const std::string& reason) = 0;
    virtual std::int64_t loadCursor(const std::string& destination) = 0; // 0 when none
    virtual void saveCursor(const std::string& destination, std::int64_t seq) = 0;
};

struct DestinationConfig {
    std::string name;     // unique; keys the cursor, the attempts and the dead letters
    std::string type;     // posthog | segment | webhook | ndjson | sqlite
    std::string url;      // posthog: base (POST <url>/batch/); segment: base (<url>/v1/batch); webhook: full
    std::string apiKey;   // posthog project key
    std::string writeKey; // segment write key (HTTP Basic username)
    std::string path;     // ndjson / sqlite file
    std::string table = "events";               // sqlite table, created when missing
    std::vector<std::string> events;            // name filter: exact, or a prefix ending in '*'; empty = all
    std::vector<Stream> streams;                // stream filter; empty = all
    std::map<std::string, std::string> headers; // extra HTTP headers (HTTP types)
    std::size_t batchSize = 100;
    std::int64_t flushIntervalMillis = 1000; // a partial batch goes out when it is this old
    int maxAttempts = 8;
    std::int64_t backoffInitialMillis = 500;
    std::int64_t backoffMaxMillis = 60000;
    double backoffMultiplier = 2.0;
    // A Retry-After above this is capped: a misconfigured receiver must not park us for days.
    std::int64_t maxRetryAfterMillis = 600000;
    std::int64_t timeoutMillis = 10000;       // whole request
    std::int64_t connectTimeoutMillis = 5000; // capped by timeoutMillis
    std::int64_t pollIntervalMillis = 250;    // feed polling when no notify() arrives
    std::int64_t drainTimeoutMillis = 5000;   // stop(true): how long pending batches may still take
};

// A configuration error naming the field: "destinations[2].url: required for type webhook".
class DestinationConfigError : public ConfigError {
public:
    DestinationConfigError(std::string field, const std::string& message) : ConfigError(std::move(field), message) {}
};

// Reads one destination object. `where` prefixes every error ("destinations[2]"). Unknown
// fields and fields the type does not use are errors, so typos do not pass silently.
DestinationConfig parseDestinationConfig(const nlohmann::json& object,
                                         std::string_view where = "destination");
// Reads an array of destination objects ("destinations[i]" in errors); names must be unique.
std::vector<DestinationConfig> parseDestinationConfigs(const nlohmann::json& array,
                                                       std::string_view where = "destinations");

enum class DestinationState {
    Ok,         // the last batch was delivered (or none was tried yet)
    BackingOff, // waiting before retrying a failed batch
    Failing,    // the last batch was dead-lettered, or the feed/log threw; cleared by a delivery
};
std::string_view toString(DestinationState state);

struct DestinationStats {
    std::string name;
    DestinationState state = DestinationState::Ok;
    std::int64_t deliveredEvents = 0;
    std::int64_t deliveredBatches = 0;
    std::int64_t retriedAttempts = 0; // attempts that failed and were retried
    std::int64_t deadLetteredEvents = 0;
    std::int64_t filteredEvents = 0; // skipped by the filters (cursor advanced)
    std::int64_t cursor = 0;         // last seq handled and saved
    std::int64_t lag = 0;            // seqs between the cursor and the newest known seq
    int lastHttpStatus = 0;
    std::string lastError; // empty after a delivery
    bool running = false;
};

// One destination's delivery thread. Not copyable; start() once, stop() any number of times
// (the destructor stops without draining). A stopped worker is not restarted: make a new one
// with the same DeliveryLog and it resumes from the saved cursor.
class DestinationWorker {
public:
    // Throws DestinationConfigError for an invalid config, std::runtime_error when the transport
    // cannot be set up. `feed` and `log` must outlive the worker.
    DestinationWorker(DestinationConfig config, EventFeed& feed, DeliveryLog& log);
    ~DestinationWorker();
    DestinationWorker(const DestinationWorker&) = delete;
    DestinationWorker& operator=(const DestinationWorker&) = delete;

    void start();
    // "There are events up to `lastSeq`": wakes the worker to read the feed now rather than at
    // its next poll. Takes a mutex for an instant; never waits on delivery.
    void notify(std::int64_t lastSeq);
    // drain = false: interrupt any backoff wait and in-flight request at once; the unacknowledged
    // batch is delivered again by the next worker. drain = true: deliver what is queued and what
    // the feed holds (partial batches go at once), with retries, for up to drainTimeoutMillis;
    // then interrupt as above. Blocks until the thread has ended.
    void stop(bool drain);
    // stop(drain) in two halves, so that many workers drain at once: beginStop() asks and returns
    // at once (each worker's drain deadline runs from this call), join() waits for the thread.
    void beginStop(bool drain);
    void join();

    DestinationStats stats() const;
    const DestinationConfig& config() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pipescope
