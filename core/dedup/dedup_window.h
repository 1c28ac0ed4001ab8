#pragma once
// The deduplication window: remembers which event ids were first seen within a time window,
// in bounded memory, so at-least-once delivery upstream becomes effectively-once downstream.
//
// The caller picks the key (X-Idempotency-Key > PostHog `uuid` > Segment `messageId`) and hashes
// it with dedupKeyHash(); events with no id skip the window (counted `without_id` by the caller)
// unless fingerprint mode is on, where dedupFingerprint() stands in for the id. The time passed
// in is the event's received time (for file input, its timestamp).
//
// Semantics, with W the watermark (the latest time observed) and `window` the configured span:
//   - an event is a duplicate when its key was first seen at F with |t - F| <= window, so
//     out-of-order input (files) is judged by event time in both directions;
//   - an entry with F < W - window is expired: it never makes a duplicate again, whether or not
//     its memory was reclaimed yet (so verdicts do not depend on when reclaiming ran), and the
//     next occurrence of its key starts a new window;
//   - a late event (t < W - window) can still be a duplicate of a live entry, but is not itself
//     remembered: it would be expired on arrival.
//
// Two modes:
//   Exact — every key is kept (64-bit hash, first-seen time, 32-bit content hash) in an
//     open-addressing table that grows up to maxKeys. Duplicates report their first-seen time
//     and whether they conflict: the same id reused for different content (name, distinct id or
//     properties differ). When maxKeys is reached, expired entries are reclaimed first; if that
//     is not enough, about the oldest 1/8 of the keys are evicted early and counted in
//     DedupStats::evictedEarly — the window was then effectively shorter
//     (DedupStats::shortestEffectiveWindowMillis says how short).
//     Memory: 20-byte slots at most 80% full: 25 bytes a key at the maxKeys limit (250 MB for
//     10M keys). Growth doubles along maxKeys / 0.8 / 2^j, so the last step copies 125 MB into
//     250 MB and the peak while growing stays at 375 MB for 10M keys.
//     Collisions: two different keys share a 64-bit hash with probability about n^2 / 2^65
//     among n keys (2.7e-6 for all of 10M keys together); a single new key falsely matches one
//     of 10M stored keys with probability 10^7 / 2^64 = 5.4e-13.
//   Bloom — fixed size from (bloomExpectedKeys per window, bloomFalsePositiveRate), expiry by
//     rotating `bloomGenerations` sub-filters that each cover window / (generations - 1): a key
//     is remembered at least `window` and at most window + window / (generations - 1) from the
//     watermark at which it was inserted. A duplicate verdict may be a false positive (at about
//     the configured rate while the traffic per window stays within bloomExpectedKeys and spread
//     over it; bursts fill one sub-filter faster — DedupStats::falsePositiveRate reports the rate reached).
//     There are no false negatives within the window. First-seen times and conflicts are unknown.
//
// Persistence: save()/load() (or serialize()/deserialize()) keep the window across restarts;
// only live entries are written. Loading with different options: in Exact mode the window and
// maxKeys adapt (entries outside the new window are dropped, keys beyond maxKeys are evicted
// oldest first and counted as evictedEarly); a different mode, or any different Bloom option,
// fails with DedupStateError::Reason::OptionsMismatch because the filters cannot be converted.
//
// Not thread-safe: one pipeline worker owns a window. observe() allocates nothing except when the
// table grows, and its cost is dominated by one or two cache misses.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

// Durations ("24h") are read and written by config/duration.h; included here because every user
// of a dedup window states its length as one.
#include "config/duration.h"

namespace pipescope {

namespace dedup_detail {
class ExactKeyTable;
class RotatingBloomFilter;
struct KeySlot;
} // namespace dedup_detail

enum class DedupMode : std::uint8_t { Exact = 1, Bloom = 2 };
std::string_view toString(DedupMode mode);

struct DedupOptions {
    std::int64_t windowMillis = 24LL * 60 * 60 * 1000;
    DedupMode mode = DedupMode::Exact;
    std::size_t maxKeys = 10'000'000;           // Exact: the most keys held at once
    std::size_t bloomExpectedKeys = 10'000'000; // Bloom: distinct keys expected per window
    double bloomFalsePositiveRate = 0.001;      // Bloom: target rate for a fresh key
    std::uint32_t bloomGenerations = 4;         // Bloom: sub-filters; the slack is window / (this - 1)

    bool operator==(const DedupOptions&) const = default;
};

struct DedupVerdict {
    bool duplicate = false;
    // Exact mode, duplicates only: the key's first occurrence had different content.
    bool conflicting = false;
    // Exact mode, duplicates only: when the key was first seen.
    std::optional<std::int64_t> firstSeenMillis;
    // Bloom mode: a duplicate may be a false positive, and first-seen time and conflicts are
    // unknown (conflicting stays false, firstSeenMillis empty).
    bool approximate = false;
};

struct DedupStats {
    DedupMode mode = DedupMode::Exact;
    // Exact: entries held, including expired ones not reclaimed yet (reclaimExpired() first for
    // an exact live count). Bloom: keys inserted into the live generations.
    std::size_t keys = 0;
    // Exact: keys the current table holds before it grows, reclaims or evicts (maxKeys once
    // fully grown). Bloom: keys per window it is sized for.
    std::size_t capacity = 0;
    std::size_t memoryBytes = 0;
    // Counted since construction or load, not persisted.
    std::uint64_t lookups = 0; // observe() calls
    std::uint64_t duplicates = 0;
    std::uint64_t conflicts = 0;        // duplicates whose content differs from the first occurrence
    std::uint64_t evictedEarly = 0;     // live keys dropped to stay within maxKeys
    std::uint64_t expiredReclaimed = 0; // expired keys whose memory was reclaimed (Bloom: rotated out)
    // After an early eviction: the smallest age a key could have and still be forgotten, i.e. the
    // window the report can say was effectively in force. Empty when nothing was evicted early.
    std::optional<std::int64_t> shortestEffectiveWindowMillis;
    // Probability that a fresh key is reported a duplicate right now (Exact: a 64-bit hash
    // collision with a stored key; Bloom: from how full the sub-filters are).
    double falsePositiveRate = 0.0;
};

// A saved window that cannot be used, with the reason and enough context to act on.
class DedupStateError : public std::runtime_error {
public:
    enum class Reason : std::uint8_t {
        Io,
        BadMagic,
        UnsupportedVersion,
        Truncated,
        ChecksumMismatch,
        Corrupt,
        OptionsMismatch
    };
    DedupStateError(Reason reason, const std::string& message)
        : std::runtime_error(message), m_reason(reason) {}
    Reason reason() const { return m_reason; }

private:
    Reason m_reason;
};

class DedupWindow {
public:
    // Throws std::invalid_argument for options that make no sense (a window or maxKeys of 0, a
    // false-positive rate outside [1e-9, 0.5], Bloom generations outside [2, 64]).
    explicit DedupWindow(const DedupOptions& options = {});
    ~DedupWindow();
    DedupWindow(DedupWindow&&) noexcept;
    DedupWindow& operator=(DedupWindow&&) noexcept;
    DedupWindow(const DedupWindow&) = delete;
    DedupWindow& operator=(const DedupWindow&) = delete;

    // Records one occurrence of a key and says whether it duplicates an earlier one.
    // keyHash: dedupKeyHash() of the id, or dedupFingerprint(); contentHash: dedupContentHash().
    DedupVerdict observe(std::uint64_t keyHash, std::uint32_t contentHash, std::int64_t timeMillis);
    // What observe() would answer, without recording anything or counting a lookup.
    DedupVerdict lookup(std::uint64_t keyHash, std::uint32_t contentHash, std::int64_t timeMillis) const;

    // Frees the memory of expired entries now (it also happens on its own before the table
    // grows). Returns how many were reclaimed. Bloom mode rotates on its own; returns 0.
    std::size_t reclaimExpired();

    const DedupOptions& options() const { return m_options; }
    // The latest time observed, if any.
    std::optional<std::int64_t> watermarkMillis() const;
    std::size_t size() const;
    std::size_t memoryBytes() const;
    DedupStats stats() const;

    // The live window as bytes (format in dedup_window.cpp), and back. deserialize() without
    // options takes the saved ones. Throws DedupStateError.
    std::string serialize() const;
    static DedupWindow deserialize(std::string_view bytes);
    static DedupWindow deserialize(std::string_view bytes, const DedupOptions& options);
    // save() writes a temporary file next to `path`, syncs it and renames it over `path`, so a
    // crash leaves either the old state or the new one. It streams, so saving a full 10M-key
    // window needs no second copy in memory. Throws DedupStateError naming the file.
    void save(const std::filesystem::path& path) const;
    static DedupWindow load(const std::filesystem::path& path);
    static DedupWindow load(const std::filesystem::path& path, const DedupOptions& options);

private:
    struct StateFormat;
    friend struct StateFormat;

    void advanceWatermark(std::int64_t timeMillis);
    void makeRoom();
    void evictOldest(std::size_t count);
    bool growTo(std::size_t homeSlots);
    void insertOrMakeRoom(const dedup_detail::KeySlot& entry);

    DedupOptions m_options;
    std::unique_ptr<dedup_detail::ExactKeyTable> m_exact;
    std::unique_ptr<dedup_detail::RotatingBloomFilter> m_bloom;
    bool m_hasWatermark = false;
    std::int64_t m_watermarkMillis = 0;
    std::int64_t m_liveFromMillis = 0;      // entries first seen before this are expired
    std::int64_t m_lastReclaimLiveFrom = 0; // nothing can have expired since, if equal
    std::size_t m_maxSlots = 0;             // Exact: home slots once fully grown
    std::size_t m_growAt = 0;               // Exact: size at which makeRoom() runs
    std::uint64_t m_lookups = 0;
    std::uint64_t m_duplicates = 0;
    std::uint64_t m_conflicts = 0;
    std::uint64_t m_evictedEarly = 0;
    std::uint64_t m_expiredReclaimed = 0;
    std::optional<std::int64_t> m_shortestEffectiveWindowMillis;
};

// Hash of a dedup id (idempotency key, uuid, messageId). XXH3-64 with a fixed seed: stable
// across runs and platforms, which the saved window depends on.
std::uint64_t dedupKeyHash(std::string_view key);
// Hash of what a duplicate should repeat: name, distinct id and the properties' bytes (fields
// are hashed separately, so "ab"+"c" and "a"+"bc" differ). Conflicts are judged on it.
std::uint32_t dedupContentHash(std::string_view name, std::string_view distinctId,
                               std::string_view properties);
// Fingerprint mode's stand-in key for events without an id. A missing timestamp hashes
// differently from any timestamp. `properties` is compared byte for byte, so pass them in one
// canonical serialization; differently ordered keys make a different fingerprint.
std::uint64_t dedupFingerprint(std::string_view name, std::string_view distinctId,
                               std::optional<std::int64_t> timestampMillis, std::string_view properties);


} // namespace pipescope
