#pragma once
// The capture store: one SQLite file (`.pipescope`, WAL mode) that holds every event with its
// verdict and every dead-lettered input with its reason. Like a packet capture it can be saved,
// reopened and shared. One writer thread owns the write connection and commits in batched
// transactions; readers use their own read-only connections.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipescope {

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The current schema version of capture files. Opening an older file migrates it; opening a
// newer one fails with a StoreError saying so.
inline constexpr int kCaptureSchemaVersion = 3;

// Duplicates are kept too (the capture holds every event) but never reach validation.
enum class Verdict : std::uint8_t { Valid, Invalid, Unplanned, Duplicate };
std::string_view toString(Verdict verdict);

// An event as stored: owned copies of what the engine decoded.
struct StoredEvent {
    std::int64_t seq = 0;          // assigned by the store (rowid), 0 before insert
    std::string eventId;           // dedup id, empty when none
    std::string idSource;          // "posthog_uuid", "segment_message_id", ... or "none"
    std::string dedupKey;          // the key the dedup window saw (the id, or a fingerprint); empty when none
    std::string name;
    std::string distinctId;
    std::string anonymousId;
    std::string userId;
    std::string aliasId;           // the id an alias event adds (see Event::aliasId)
    std::string stream;            // "client" | "server" | "unknown"
    std::string format;            // "posthog" | "segment" | "canonical"
    std::optional<std::int64_t> timestamp;   // epoch ms
    std::optional<std::int64_t> sentAt;
    std::optional<std::int64_t> receivedAt;
    std::string originSource;
    std::uint64_t originLine = 0;
    std::int32_t originIndex = -1;
    Verdict verdict = Verdict::Valid;
    int schemaVersion = 0;         // 0 when unplanned
    std::string failures;          // JSON array of {pointer, keyword, message}; "[]" when none
    std::string properties;        // JSON object
    std::string raw;               // the event's own bytes
    std::optional<std::int64_t> ingestId;  // the collector request it came from (`run`)
    bool historicalMigration = false;      // sent as a historical import (posthog-node historicalMigration)
};

// What a row of an event table shows: an event without its properties, raw bytes and failures
// (read from the row alone: no decompression). The full event is CaptureReader::event().
struct EventRow {
    std::int64_t seq = 0;
    std::string eventId;
    std::string name;
    std::string distinctId;
    std::string stream;
    std::string format;
    std::optional<std::int64_t> timestamp;   // epoch ms
    std::optional<std::int64_t> receivedAt;
    std::string originSource;
    std::uint64_t originLine = 0;
    std::int32_t originIndex = -1;
    Verdict verdict = Verdict::Valid;
    std::optional<std::int64_t> ingestId;
};

// Events by verdict, maintained by the store as rows come and go (no count(*) over the table).
// The four are disjoint: `valid` does not include `unplanned`.
struct VerdictCounts {
    std::int64_t valid = 0;
    std::int64_t invalid = 0;
    std::int64_t unplanned = 0;
    std::int64_t duplicate = 0;
    std::int64_t total() const { return valid + invalid + unplanned + duplicate; }
    std::int64_t of(Verdict verdict) const;
};

// An input that could not go on: unparseable lines, rejected events, schema violations.
struct DlqEntry {
    std::int64_t seq = 0;
    std::string reason;            // "unparseable" | "rejected" | "schema_violation" | "unplanned"
    std::string detail;            // JSON: {"message": ..., "offset": N} or {"failures": [...]}
    std::string originSource;
    std::uint64_t originLine = 0;
    std::int32_t originIndex = -1;
    std::string eventName;         // empty when unknown
    std::string distinctId;
    std::optional<std::int64_t> eventSeq;  // the stored event, for schema violations
    std::string raw;               // the exact bytes that were dead-lettered
    std::int64_t createdAt = 0;    // epoch ms
    std::optional<std::int64_t> ingestId;
};

// A request the collector accepted, kept verbatim (decoded body) before any processing: the
// durable buffer between ingestion and the pipeline.
struct IngestRecord {
    std::int64_t id = 0;           // assigned by the store
    std::int64_t receivedAt = 0;   // epoch ms
    std::string path;              // "/batch/", "/v1/track"...
    std::string vendor;            // "posthog" | "segment"
    std::string token;             // api key / write key, empty when none
    std::string idempotencyKey;    // X-Idempotency-Key, empty when none
    std::string encoding;          // how the body came: plain, gzip, lz64, form...
    std::string remoteAddress;
    std::string body;              // decoded JSON
};

// One delivery attempt of a batch of events to a destination.
struct DeliveryRecord {
    std::string destination;
    std::string seqs;              // JSON array of event seqs
    int attempt = 1;
    std::int64_t startedAt = 0;
    std::int64_t durationMillis = 0;
    int httpStatus = 0;
    std::string error;
    std::string outcome;           // delivered | retrying | dead_lettered
};

// A duplicate event: which key matched, and what it duplicates. The first occurrence is looked
// up in the capture by key (`firstSeq`), unless it was seen before this capture began (a window
// restored from saved state), when only its time is known.
struct DuplicateRecord {
    std::int64_t eventSeq = 0;
    std::string key;
    std::string keySource;               // "idempotency_key" | "posthog_uuid" | "segment_message_id" | "fingerprint" ...
    std::optional<std::int64_t> firstSeq;    // resolved by the store
    std::optional<std::int64_t> firstSeen;   // epoch ms (unknown in Bloom mode)
    std::int64_t seen = 0;               // epoch ms: this occurrence's time
    bool conflicting = false;            // same key, different name / distinct id / properties
    std::string differences;             // JSON array of the fields that differ, resolved by the store ("[]")
};

// An identity issue with the ids and events that prove it (see core/identity/).
struct IdentityIssueRecord {
    std::int64_t seq = 0;
    std::string category;   // illegal_distinct_id, merge_refused, split_identity, orphan_server_id, ...
    std::string message;
    std::string ids;        // JSON array of distinct ids
    std::string events;     // JSON array of event seqs
    std::string detail;     // JSON object
};

// Everything the capture knows about one event, for "follow this event": the request it came in
// (without its body), what dedup said, its dead letters, and each delivery attempt that carried it.
struct EventLineage {
    StoredEvent event;
    std::optional<IngestRecord> request;         // `body` left empty
    std::optional<DuplicateRecord> duplicate;    // when the event is a duplicate
    std::vector<std::int64_t> duplicatedBy;      // later events that duplicate this one
    std::vector<DlqEntry> deadLetters;
    std::vector<DeliveryRecord> deliveries;      // in attempt order, each destination's
    std::vector<std::pair<std::string, std::string>> destinationDeadLetters; // destination, reason
};

struct CaptureInfo {
    int schemaVersion = 0;
    std::string createdBy;
    std::int64_t createdAt = 0;
    std::int64_t events = 0;
    std::int64_t dlqEntries = 0;
};

// What a commit promises. `Full`: the commit is fsynced (SQLite `synchronous = FULL` in WAL
// mode), so a committed record survives a power loss or an OS crash; `Process`: it survives a
// crash of the process, but an OS crash may lose the last commits (`synchronous = NORMAL`; the
// file is never corrupted either way).
enum class Durability : std::uint8_t { Full, Process };
std::string_view toString(Durability durability);                   // "full", "process"
std::optional<Durability> parseDurability(std::string_view text);

// Writes a capture. All append calls are cheap (they queue); the writer thread commits in
// batches. The queue is bounded: when it is full, append blocks until the writer catches up,
// so memory stays bounded whatever the input rate; the collector's calls (appendIngest,
// appendRejected) never block: they refuse instead.
//
// A capture has one writer at a time, across processes: the writer holds a lock on the file
// (an open-file-description lock, so the same file reached through a symlink, a `..` path or
// a hard link is the same capture) and a second writer fails with a StoreError saying so.
//
// Pipeline output (events, duplicates, identity issues, dead letters of ingested requests and
// the pipeline cursor) is committed in order or not at all: once a transaction holding some
// fails (a full disk), later pipeline output is discarded rather than committed past the gap,
// until resyncPipeline() has rolled the capture back to a cursor the pipeline can redo from.
class CaptureWriter {
public:
    struct Options {
        std::size_t maxQueued = 8192;     // records waiting for the writer
        std::size_t maxBatch = 4096;      // records per transaction
        bool replaceExisting = true;      // an existing *capture* file is replaced; other files never are
        // Instead of replacing, continue an existing capture (`run` after a restart). Output of
        // requests after the pipeline's cursor is discarded, to be produced again.
        bool resumeExisting = false;
        Durability durability = Durability::Full;
        // The commit notification: runs on the writer thread after each transaction that added
        // or removed events, with the largest event seq now committed ("events up to seq N are
        // in the file"). A value below an earlier one means a rollback (resyncPipeline, or a
        // resumed capture) removed the events above it. Keep it short: the writer waits for it.
        std::function<void(std::int64_t committedSeq)> onCommitted = {};
    };
    using Committed = std::function<void(const std::string& error)>; // error empty: committed

    // Creates (or replaces) the capture at `path`. Throws StoreError: unwritable directory, or
    // an existing file that is not a Pipescope capture (it is never overwritten).
    explicit CaptureWriter(const std::filesystem::path& path);
    CaptureWriter(const std::filesystem::path& path, Options options);
    ~CaptureWriter();  // flushes and closes
    CaptureWriter(const CaptureWriter&) = delete;
    CaptureWriter& operator=(const CaptureWriter&) = delete;

    void append(StoredEvent event);
    void append(DlqEntry entry);
    void append(DuplicateRecord duplicate);
    void append(IdentityIssueRecord issue);
    // Small named values: run options in `meta` (text), engine state such as the dedup window in
    // `state` (bytes). Both replace an earlier value of the same name.
    void putMeta(std::string key, std::string value);
    void putState(std::string name, std::string bytes);
    // The same, with `committed` run on the writer thread once the value is in the file (or the
    // write failed, or was discarded as pipeline output after a failure).
    void putState(std::string name, std::string bytes, Committed committed);
    // The durable buffer: `committed(id, error)` runs on the writer thread once the request is
    // in the file (error empty), or failed. Many requests share one transaction. Never blocks:
    // returns false (and never calls `committed`) when the write queue is full (twice maxQueued:
    // the collector's records have headroom above what blocks the pipeline).
    [[nodiscard]] bool appendIngest(IngestRecord request,
                                    std::function<void(std::int64_t id, const std::string& error)> committed);
    // A dead letter that must be durable before it is acknowledged (an undecodable body answered
    // 400): like appendIngest, never blocks, false when the queue is full.
    [[nodiscard]] bool appendRejected(DlqEntry entry, Committed committed);
    void append(DeliveryRecord delivery);
    void putCursor(std::string destination, std::int64_t seq);
    void appendDestinationDeadLetter(std::string destination, std::int64_t eventSeq, std::string reason);
    // Records waiting for the writer: the backlog a collector turns into 429s.
    std::size_t queued() const;
    // Blocks until everything appended so far is committed. Throws StoreError if a commit failed
    // (the first error since the writer opened or last resynced).
    void flush();
    // True once a transaction holding pipeline output failed, until resyncPipeline() succeeds.
    bool pipelineFenced() const;
    // Transactions that failed since the writer opened, and the last error ("" when none).
    std::uint64_t failedCommits() const;
    std::string lastError() const;
    // After a failure: waits for the queue to drain, then in one transaction discards the
    // pipeline output of requests after `cursor` and sets the pipeline cursor to it, and lifts
    // the fence. Throws StoreError when that transaction fails too (the disk is still full).
    void resyncPipeline(std::int64_t cursor);
    // Flushes and stops the writer thread; further appends throw.
    void close();

    const std::filesystem::path& path() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Reads a capture through its own read-only connection.
class CaptureReader {
public:
    // Throws StoreError: missing file, not a capture, or a capture written by a newer version.
    explicit CaptureReader(const std::filesystem::path& path);
    ~CaptureReader();
    CaptureReader(const CaptureReader&) = delete;
    CaptureReader& operator=(const CaptureReader&) = delete;

    CaptureInfo info() const;
    std::int64_t eventCount() const;
    std::int64_t dlqCount() const;

    // Row windows in insertion order, for views that page through large captures. events()
    // skips `offset` rows (its cost grows with the offset); eventsAfter() starts after a seq
    // through the primary key (constant cost: page with the last seq of the previous window).
    std::vector<StoredEvent> events(std::int64_t offset, std::int64_t limit) const;
    std::vector<StoredEvent> eventsAfter(std::int64_t afterSeq, std::int64_t limit) const;
    // Table rows (no decompression) after a seq, and the `limit` rows before one (in seq order).
    // Event seqs are dense, 1..N: they are rowids without AUTOINCREMENT, and only a tail is ever
    // removed (a rollback), so row i of the unfiltered table is seq i + 1.
    std::vector<EventRow> rowsAfter(std::int64_t afterSeq, std::int64_t limit) const;
    std::vector<EventRow> rowsBefore(std::int64_t beforeSeq, std::int64_t limit) const;
    std::vector<EventRow> rowsOf(const std::vector<std::int64_t>& seqs) const; // in the given order; missing seqs skipped
    // Maintained counts (constant time; a capture that could not be migrated counts its rows).
    VerdictCounts verdictCounts() const;
    // Seqs of one verdict after a seq, in order (through the verdict index).
    std::vector<std::int64_t> seqsWithVerdict(Verdict verdict, std::int64_t afterSeq, std::int64_t limit) const;
    // The events one collector request produced, in order.
    std::vector<std::int64_t> eventsOfIngest(std::int64_t ingestId) const;
    // One event's links: its delivery attempts (every destination), its duplicate record, the
    // dead letters that point at it; lineage() gathers them all.
    std::vector<DeliveryRecord> deliveriesOf(std::int64_t eventSeq) const;
    std::optional<DuplicateRecord> duplicateOf(std::int64_t eventSeq) const;
    std::vector<DlqEntry> dlqOfEvent(std::int64_t eventSeq) const;
    std::optional<EventLineage> lineage(std::int64_t eventSeq) const;
    std::optional<IngestRecord> ingest(std::int64_t id, bool withBody = true) const;
    std::vector<DlqEntry> dlq(std::int64_t offset, std::int64_t limit) const;
    std::vector<DuplicateRecord> duplicates(std::int64_t offset, std::int64_t limit) const;
    std::vector<IdentityIssueRecord> identityIssues() const;
    std::optional<StoredEvent> event(std::int64_t seq) const;
    std::string meta(const std::string& key) const;                 // empty when absent
    std::optional<std::string> state(const std::string& name) const;

    // For `run`: requests after `afterId`, in order; the largest event seq; valid, unique events
    // after a seq (what destinations deliver); a destination's cursor (0 when none).
    std::vector<IngestRecord> ingestAfter(std::int64_t afterId, std::int64_t limit) const;
    std::int64_t ingestCount() const;
    std::int64_t maxEventSeq() const;
    std::vector<StoredEvent> deliverableAfter(std::int64_t afterSeq, std::int64_t limit) const;
    std::int64_t cursor(const std::string& destination) const;
    std::vector<DeliveryRecord> deliveries(const std::string& destination) const; // "" for every destination
    std::vector<std::pair<std::int64_t, std::string>> destinationDeadLetters(const std::string& destination) const;

    // Streams every row in order; the callback returns false to stop early.
    void forEachEvent(const std::function<bool(const StoredEvent&)>& visit) const;
    void forEachDlq(const std::function<bool(const DlqEntry&)>& visit) const;
    // Every event's properties (what a filter on properties reads), decompressing only them, on
    // `threads` threads that each read a share of the seqs through their own connection.
    // `visit(seq, properties)` runs on those threads at once, in seq order within each share;
    // returning false stops them all. Throws StoreError (a damaged row) after they stopped.
    void scanProperties(unsigned threads, const std::function<bool(std::int64_t seq, std::string_view properties)>& visit) const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pipescope
