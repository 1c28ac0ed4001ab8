#include "dedup/dedup_window.h"

#include "dedup/exact_key_table.h"
#include "dedup/rotating_bloom_filter.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <limits>
#include <new>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <xxhash.h>

namespace pipescope {

using dedup_detail::ExactKeyTable;
using dedup_detail::KeySlot;
using dedup_detail::RotatingBloomFilter;

namespace {

constexpr std::int64_t kMinTime = std::numeric_limits<std::int64_t>::min();
// Below this the table is not worth shrinking further; grown tables start around this size.
constexpr std::size_t kSmallestTableSlots = 2048;
// Early eviction takes the oldest 1/8 of maxKeys, so it runs at most once per maxKeys/8 inserts.
constexpr std::size_t kEvictionShare = 8;
constexpr std::size_t kEvictionSamples = 1024;

std::int64_t saturatingSub(std::int64_t a, std::int64_t b) {
    std::int64_t result = 0;
    return __builtin_sub_overflow(a, b, &result) ? kMinTime : result;
}

std::uint64_t absoluteDifference(std::int64_t a, std::int64_t b) {
    // Unsigned wrap-around gives the exact distance even across the whole int64 range.
    return a >= b ? static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b)
                  : static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
}

// The tables place keys by their high bits. A bijective scramble (xor-shift, odd multiply)
// spreads keys that are not well mixed (sequential test ids, a weak caller-side hash) without
// merging any two. 0 marks an empty slot, so the one key that scrambles to 0 shares a slot
// identity with the one that scrambles to 1 (probability 2^-63 for a random pair).
std::uint64_t storedKeyOf(std::uint64_t keyHash) {
    std::uint64_t x = keyHash;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return x == 0 ? 1 : x;
}

// A second, independent scramble of a stored key, for choosing keys uncorrelated with slot order.
std::uint64_t mixedKey(std::uint64_t key) {
    key ^= key >> 31;
    key *= 0x7FB5D329728EA185ull;
    key ^= key >> 27;
    key *= 0x81DADEF4BC2DD44Dull;
    return key ^ (key >> 33);
}

// Table sizes run along maxSlots / 2^j (rounded up), so the last growth step doubles into
// exactly maxSlots instead of overshooting and clamping (which would copy a bigger old table).
std::size_t nextTableSlots(std::size_t currentSlots, std::size_t maxSlots) {
    std::size_t slots = maxSlots;
    while ((slots + 1) / 2 > currentSlots)
        slots = (slots + 1) / 2;
    return slots;
}

std::size_t smallestTableSlots(std::size_t maxSlots) {
    std::size_t slots = maxSlots;
    while (slots > kSmallestTableSlots)
        slots = (slots + 1) / 2;
    return slots;
}

void validate(const DedupOptions& options) {
    if (options.windowMillis <= 0)
        throw std::invalid_argument("dedup window must be positive, got " +
                                    std::to_string(options.windowMillis) + " ms");
    if (options.mode != DedupMode::Exact && options.mode != DedupMode::Bloom)
        throw std::invalid_argument("unknown dedup mode " + std::to_string(static_cast<int>(options.mode)));
    if (options.mode == DedupMode::Exact && options.maxKeys == 0)
        throw std::invalid_argument("dedup maxKeys must be at least 1");
    if (options.mode == DedupMode::Bloom) {
        if (options.bloomExpectedKeys == 0)
            throw std::invalid_argument("dedup bloomExpectedKeys must be at least 1");
        if (!(options.bloomFalsePositiveRate >= 1e-9 && options.bloomFalsePositiveRate <= 0.5))
            throw std::invalid_argument("dedup bloomFalsePositiveRate must be within [1e-9, 0.5], got " +
                                        std::to_string(options.bloomFalsePositiveRate));
        if (options.bloomGenerations < 2 || options.bloomGenerations > 64)
            throw std::invalid_argument("dedup bloomGenerations must be within [2, 64], got " +
                                        std::to_string(options.bloomGenerations));
    }
}

} // namespace

std::string_view toString(DedupMode mode) {
    switch (mode) {
    case DedupMode::Exact:
        return "exact";
    case DedupMode::Bloom:
        return "bloom";
    }
    return "unknown";
}

// ---------------------------------------------------------------------------------------------
// The window

DedupWindow::DedupWindow(const DedupOptions& options) : m_options(options) {
    validate(options);
    if (options.mode == DedupMode::Exact) {
        m_maxSlots = static_cast<std::size_t>(
            std::ceil(static_cast<double>(options.maxKeys) / ExactKeyTable::kMaxLoad));
        growTo(smallestTableSlots(m_maxSlots));
    } else {
        m_bloom =
            std::make_unique<RotatingBloomFilter>(options.bloomExpectedKeys, options.bloomFalsePositiveRate,
                                                  options.bloomGenerations, options.windowMillis);
    }
}

DedupWindow::~DedupWindow() = default;
DedupWindow::DedupWindow(DedupWindow&&) noexcept = default;
DedupWindow& DedupWindow::operator=(DedupWindow&&) noexcept = default;

void DedupWindow::advanceWatermark(std::int64_t timeMillis) {
    m_hasWatermark = true;
    m_watermarkMillis = timeMillis;
    m_liveFromMillis = saturatingSub(timeMillis, m_options.windowMillis);
    if (m_bloom) m_expiredReclaimed += m_bloom->advanceTo(timeMillis);
}

DedupVerdict DedupWindow::observe(std::uint64_t keyHash, std::uint32_t contentHash, std::int64_t timeMillis) {
    ++m_lookups;
    if (!m_hasWatermark || timeMillis > m_watermarkMillis) advanceWatermark(timeMillis);
    const std::uint64_t key = storedKeyOf(keyHash);

    if (m_bloom) {
        DedupVerdict verdict;
        verdict.approximate = true;
        const auto probe = m_bloom->probeFor(key);
        if (m_bloom->contains(probe, m_bloom->oldestLiveGeneration())) {
            verdict.duplicate = true;
            ++m_duplicates;
        } else if (timeMillis >= m_liveFromMillis) {
            m_bloom->insert(probe);
        }
        return verdict;
    }

    if (KeySlot* slot = m_exact->find(key)) {
        const std::int64_t firstSeen = slot->firstSeenMillis;
        if (firstSeen >= m_liveFromMillis) {
            // A live entry's first occurrence is within the window of any event not older than
            // the watermark's window; only a late event can fall outside it (and is then no
            // duplicate, and not remembered either).
            if (absoluteDifference(timeMillis, firstSeen) >
                static_cast<std::uint64_t>(m_options.windowMillis))
                return {};
            DedupVerdict verdict;
            verdict.duplicate = true;
            verdict.firstSeenMillis = firstSeen;
            verdict.conflicting = slot->contentHash != contentHash;
            ++m_duplicates;
            if (verdict.conflicting) ++m_conflicts;
            return verdict;
        }
        // Expired but not reclaimed yet: this occurrence starts the key's next window.
        if (timeMillis >= m_liveFromMillis) {
            slot->firstSeenMillis = timeMillis;
            slot->contentHash = contentHash;
        }
        return {};
    }
    if (timeMillis < m_liveFromMillis) return {}; // late: it would be expired on arrival
    if (m_exact->size() >= m_growAt) makeRoom();
    insertOrMakeRoom(KeySlot{key, timeMillis, contentHash});
    return {};
}

DedupVerdict DedupWindow::lookup(std::uint64_t keyHash, std::uint32_t contentHash,
                                 std::int64_t timeMillis) const {
    if (!m_hasWatermark) {
        DedupVerdict nothingSeenYet;
        nothingSeenYet.approximate = m_bloom != nullptr;
        return nothingSeenYet;
    }
    const std::int64_t watermark = std::max(m_watermarkMillis, timeMillis);
    const std::int64_t liveFrom = saturatingSub(watermark, m_options.windowMillis);
    const std::uint64_t key = storedKeyOf(keyHash);

    DedupVerdict verdict;
    if (m_bloom) {
        verdict.approximate = true;
        const std::int64_t oldest =
            m_bloom->generationOf(watermark) - static_cast<std::int64_t>(m_options.bloomGenerations) + 1;
        verdict.duplicate = m_bloom->contains(m_bloom->probeFor(key), oldest);
        return verdict;
    }
    const KeySlot* slot = m_exact->find(key);
    if (slot == nullptr) return verdict;
    const std::int64_t firstSeen = slot->firstSeenMillis; // a copy: the packed field is misaligned
    if (firstSeen < liveFrom ||
        absoluteDifference(timeMillis, firstSeen) > static_cast<std::uint64_t>(m_options.windowMillis))
        return verdict;
    verdict.duplicate = true;
    verdict.firstSeenMillis = firstSeen;
    verdict.conflicting = slot->contentHash != contentHash;
    return verdict;
}

bool DedupWindow::growTo(std::size_t homeSlots) {
    auto grown = std::make_unique<ExactKeyTable>(homeSlots);
    if (m_exact && !m_exact->copyInto(*grown)) return false;
    m_exact = std::move(grown);
    m_growAt = homeSlots >= m_maxSlots
                   ? m_options.maxKeys
                   : static_cast<std::size_t>(static_cast<double>(homeSlots) * ExactKeyTable::kMaxLoad);
    return true;
}

// An insert fails only when its run would spill past the overflow tail: practically never
// (the tail is ten times the longest run measured at 10M keys), but then growing or evicting
// shortens the runs, so the loop ends.
void DedupWindow::insertOrMakeRoom(const dedup_detail::KeySlot& entry) {
    while (!m_exact->insert(entry)) {
        if (m_exact->homeSlots() < m_maxSlots && growTo(nextTableSlots(m_exact->homeSlots(), m_maxSlots)))
            continue;
        evictOldest(std::max<std::size_t>(1, m_exact->size() / kEvictionShare));
    }
}

std::size_t DedupWindow::reclaimExpired() {
    if (!m_exact || !m_hasWatermark) return 0;
    const std::int64_t liveFrom = m_liveFromMillis;
    const std::size_t reclaimed =
        m_exact->eraseIf([liveFrom](const KeySlot& slot) { return slot.firstSeenMillis < liveFrom; });
    m_lastReclaimLiveFrom = liveFrom;
    m_expiredReclaimed += reclaimed;
    return reclaimed;
}

// Runs when the table reaches m_growAt. Cheapest first: reclaim expired entries (only if the
// watermark moved since the last time, else there are none); grow if that freed less than a
// quarter, so sweeps stay rare; at full size, evict the oldest keys early.
void DedupWindow::makeRoom() {
    if (m_hasWatermark && m_liveFromMillis != m_lastReclaimLiveFrom) reclaimExpired();
    if (m_exact->homeSlots() < m_maxSlots) {
        if (m_exact->size() > m_growAt - m_growAt / 4 &&
            !growTo(nextTableSlots(m_exact->homeSlots(), m_maxSlots)))
            evictOldest(std::max<std::size_t>(1, m_exact->size() / kEvictionShare));
        return;
    }
    // Keep at most 7/8 of maxKeys, and always make at least one slot free.
    const std::size_t keep = m_options.maxKeys - std::max<std::size_t>(1, m_options.maxKeys / kEvictionShare);
    if (m_exact->size() > keep) evictOldest(m_exact->size() - keep);
}

// Evicts roughly the `count` oldest keys. The cut-off time comes from a sample of first-seen
// times (slot order follows the hash, so an evenly spread sample is a fair one): exact enough
// for "about the oldest 1/8", and it needs no sort or copy of 10M times.
void DedupWindow::evictOldest(std::size_t count) {
    std::array<std::int64_t, kEvictionSamples> samples;
    const std::size_t taken = m_exact->sampleFirstSeen(samples);
    if (taken == 0) return;
    const double share = std::min(1.0, static_cast<double>(count) / static_cast<double>(m_exact->size()));
    const auto wanted =
        std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(share * static_cast<double>(taken))));
    const std::size_t rank = std::min(taken, wanted) - 1;
    std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(rank),
                     samples.begin() + static_cast<std::ptrdiff_t>(taken));
    const std::int64_t cutoff = samples[rank];
    std::size_t tiesAtCutoff = 0;
    std::size_t evicted = m_exact->eraseIf([cutoff, &tiesAtCutoff](const KeySlot& slot) {
        tiesAtCutoff += slot.firstSeenMillis == cutoff;
        return slot.firstSeenMillis < cutoff;
    });
    // Many keys can share the cut-off millisecond (a file without timestamps, second-resolution
    // clocks): take only the share of them still needed, so ties do not empty the window. The
    // share is picked by a salted mix of the key, not by slot order: evicting the first ties in
    // slot order would always thin out the front of the table and crowd its end (until inserts
    // fail). The salt changes every time, or the keys spared once would be spared forever and
    // the next share would again come from the newest keys only.
    if (evicted < count / 2 + 1 && tiesAtCutoff > 0) {
        const double share =
            static_cast<double>(count - std::min(count, evicted)) / static_cast<double>(tiesAtCutoff);
        const std::uint64_t below = share >= 1.0 ? std::numeric_limits<std::uint64_t>::max()
                                                 : static_cast<std::uint64_t>(std::ldexp(share, 64));
        const std::uint64_t salt = (m_evictedEarly + evicted + 1) * 0x9E3779B97F4A7C15ull;
        evicted += m_exact->eraseIf([cutoff, below, salt](const KeySlot& slot) {
            return slot.firstSeenMillis == cutoff && mixedKey(slot.keyHash ^ salt) <= below;
        });
        // That share is random; for small counts it can come out short, even at zero. The
        // caller needs a free slot, so top up in slot order (a few keys: no crowding to fear).
        if (evicted < count / 2 + 1) {
            std::size_t topUp = count - std::min(count, evicted);
            evicted += m_exact->eraseIf([cutoff, &topUp](const KeySlot& slot) {
                if (slot.firstSeenMillis != cutoff || topUp == 0) return false;
                --topUp;
                return true;
            });
        }
    }
    m_evictedEarly += evicted;
    const std::int64_t effective = std::max<std::int64_t>(0, saturatingSub(m_watermarkMillis, cutoff));
    if (!m_shortestEffectiveWindowMillis || effective < *m_shortestEffectiveWindowMillis)
        m_shortestEffectiveWindowMillis = effective;
}

std::optional<std::int64_t> DedupWindow::watermarkMillis() const {
    return m_hasWatermark ? std::optional<std::int64_t>(m_watermarkMillis) : std::nullopt;
}

std::size_t DedupWindow::size() const {
    return m_exact ? m_exact->size() : static_cast<std::size_t>(m_bloom->keysHeld());
}

std::size_t DedupWindow::memoryBytes() const {
    return sizeof(*this) + (m_exact ? sizeof(ExactKeyTable) + m_exact->memoryBytes()
                                    : sizeof(RotatingBloomFilter) + m_bloom->memoryBytes());
}

DedupStats DedupWindow::stats() const {
    DedupStats stats;
    stats.mode = m_options.mode;
    stats.keys = size();
    stats.capacity = m_exact ? m_growAt : m_options.bloomExpectedKeys;
    stats.memoryBytes = memoryBytes();
    stats.lookups = m_lookups;
    stats.duplicates = m_duplicates;
    stats.conflicts = m_conflicts;
    stats.evictedEarly = m_evictedEarly;
    stats.expiredReclaimed = m_expiredReclaimed;
    stats.shortestEffectiveWindowMillis = m_shortestEffectiveWindowMillis;
    stats.falsePositiveRate = m_exact ? std::ldexp(static_cast<double>(m_exact->size()), -64)
                                      : m_bloom->estimatedFalsePositiveRate();
    return stats;
}

// ---------------------------------------------------------------------------------------------
// Hashes

namespace {
// Distinct seeds keep ids, fingerprints and content hashes in separate hash domains.
constexpr XXH64_hash_t kKeySeed = 0x70736465647570'31ull;        // "psdedup1"
constexpr XXH64_hash_t kContentSeed = 0x7073636f6e74656eull;     // "psconten"
constexpr XXH64_hash_t kFingerprintSeed = 0x707366696e676572ull; // "psfinger"

XXH64_hash_t chain(std::string_view field, XXH64_hash_t seed) {
    return XXH3_64bits_withSeed(field.data(), field.size(), seed);
}
} // namespace

std::uint64_t dedupKeyHash(std::string_view key) {
    return chain(key, kKeySeed);
}

std::uint32_t dedupContentHash(std::string_view name, std::string_view distinctId,
                               std::string_view properties) {
    const XXH64_hash_t hash = chain(properties, chain(distinctId, chain(name, kContentSeed)));
    return static_cast<std::uint32_t>(hash ^ (hash >> 32));
}

std::uint64_t dedupFingerprint(std::string_view name, std::string_view distinctId,
                               std::optional<std::int64_t> timestampMillis, std::string_view properties) {
    std::array<char, 9> timestamp{}; // presence byte, then the value little-endian
    if (timestampMillis) {
        timestamp[0] = 1;
        const auto value = static_cast<std::uint64_t>(*timestampMillis);
        for (int i = 0; i < 8; ++i)
            timestamp[1 + i] = static_cast<char>((value >> (8 * i)) & 0xFF);
    }
    XXH64_hash_t hash = chain(distinctId, chain(name, kFingerprintSeed));
    hash = chain(std::string_view(timestamp.data(), timestamp.size()), hash);
    return chain(properties, hash);
}

// ---------------------------------------------------------------------------------------------
// Persistence
//
// File format, version 1, all integers little-endian:
//   header (72 bytes)
//     0  magic "PSDEDUPW"            8  u32 format version (1)      12 u8 mode (1 exact, 2 bloom), 3 zero
//     bytes 16 i64 windowMillis            24 u64 maxKeys                 32 u64 bloomExpectedKeys 40 f64
//     bloomFalsePositiveRate (IEEE-754 bits)                 48 u32 bloomGenerations 52 u32 flags (bit 0: a
//     watermark is set)                      56 i64 watermarkMillis 64 u64 payload bytes
//   payload, exact: u64 entry count, then per live entry: u64 stored key, i64 first-seen ms,
//     u32 content hash (20 bytes)
//   payload, bloom: u32 bits per key, u32 zero, u64 blocks per generation, i64 span ms,
//     i64 newest generation, per ring slot: i64 generation (INT64_MIN: unused), u64 keys
//     inserted; then every ring slot's blocks, 8 u64 words each
//   trailer: u64 XXH3-64 of everything before it.
// The checksum is verified before anything in the payload is believed.

namespace {

constexpr std::array<char, 8> kMagic{'P', 'S', 'D', 'E', 'D', 'U', 'P', 'W'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kHeaderBytes = 72;
constexpr std::size_t kChecksumBytes = 8;
constexpr std::size_t kExactEntryBytes = 20;
constexpr std::size_t kIoChunkBytes = std::size_t{1} << 20;
constexpr std::uint32_t kFlagHasWatermark = 1;

using Reason = DedupStateError::Reason;

class StateWriter {
public:
    using Sink = std::function<void(const char*, std::size_t)>;

    explicit StateWriter(Sink sink) : m_sink(std::move(sink)), m_hash(XXH3_createState()) {
        if (m_hash == nullptr) throw std::bad_alloc();
        XXH3_64bits_reset(m_hash);
        m_buffer.reserve(kIoChunkBytes);
    }
    ~StateWriter() { XXH3_freeState(m_hash); }
    StateWriter(const StateWriter&) = delete;
    StateWriter& operator=(const StateWriter&) = delete;

    void u8(std::uint8_t value) { m_buffer.push_back(static_cast<char>(value)); }
    void u32(std::uint32_t value) { little(value, 4); }
    void u64(std::uint64_t value) { little(value, 8); }
    void i64(std::int64_t value) { little(static_cast<std::uint64_t>(value), 8); }
    void bytes(const char* data, std::size_t size) {
        m_buffer.append(data, size);
        flushIfFull();
    }
    void words(const std::uint64_t* words, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i)
            u64(words[i]);
    }
    void finish() {
        flush();
        const std::uint64_t checksum = XXH3_64bits_digest(m_hash);
        std::array<char, 8> trailer;
        for (int i = 0; i < 8; ++i)
            trailer[i] = static_cast<char>((checksum >> (8 * i)) & 0xFF);
        m_sink(trailer.data(), trailer.size());
    }

private:
    void little(std::uint64_t value, int size) {
        for (int i = 0; i < size; ++i)
            m_buffer.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
        flushIfFull();
    }
    void flushIfFull() {
        if (m_buffer.size() >= kIoChunkBytes) flush();
    }
    void flush() {
        if (m_buffer.empty()) return;
        XXH3_64bits_update(m_hash, m_buffer.data(), m_buffer.size());
        m_sink(m_buffer.data(), m_buffer.size());
        m_buffer.clear();
    }

    Sink m_sink;
    XXH3_state_t* m_hash;
    std::string m_buffer;
};

// Random-access source of the saved bytes: a string in memory or a file read with pread().
using ReadAt = std::function<void(std::uint64_t offset, char* out, std::size_t size)>;

class StateReader {
public:
    StateReader(const ReadAt& readAt, std::uint64_t end, std::string origin)
        : m_readAt(readAt), m_end(end), m_origin(std::move(origin)) {}

    std::uint64_t offset() const { return m_offset; }
    std::uint8_t u8() { return static_cast<std::uint8_t>(littleAt(1)); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(littleAt(4)); }
    std::uint64_t u64() { return littleAt(8); }
    std::int64_t i64() { return static_cast<std::int64_t>(littleAt(8)); }
    void skip(std::size_t size) { take(size); }
    void words(std::uint64_t* out, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i)
            out[i] = u64();
    }

private:
    std::uint64_t littleAt(int size) {
        const char* data = take(static_cast<std::size_t>(size));
        std::uint64_t value = 0;
        for (int i = 0; i < size; ++i)
            value |= static_cast<std::uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
        return value;
    }
    const char* take(std::size_t size) {
        if (m_offset + size > m_end)
            throw DedupStateError(Reason::Truncated, m_origin + ": truncated: needs " + std::to_string(size) +
                                                         " more bytes at offset " + std::to_string(m_offset) +
                                                         " but the payload ends at " + std::to_string(m_end));
        if (m_bufferOffset + m_buffer.size() < m_offset + size || m_offset < m_bufferOffset) {
            const std::size_t chunk = static_cast<std::size_t>(
                std::min<std::uint64_t>(std::max(kIoChunkBytes, size), m_end - m_offset));
            m_buffer.resize(chunk);
            m_readAt(m_offset, m_buffer.data(), chunk);
            m_bufferOffset = m_offset;
        }
        const char* data = m_buffer.data() + (m_offset - m_bufferOffset);
        m_offset += size;
        return data;
    }

    const ReadAt& m_readAt;
    std::uint64_t m_end;
    std::string m_origin;
    std::uint64_t m_offset = 0;
    std::uint64_t m_bufferOffset = 0;
    std::string m_buffer;
};

std::string hex(std::uint64_t value) {
    char text[19];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

std::string printable(std::string_view bytes) {
    std::string text;
    for (char c : bytes) {
        if (c >= 0x20 && c < 0x7F) {
            text += c;
        } else {
            char escaped[5];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(c));
            text += escaped;
        }
    }
    return text;
}

} // namespace

namespace {

std::string systemError(const std::string& what, const std::filesystem::path& path, int code) {
    return what + " " + path.string() + ": " + std::strerror(code);
}

// Closes the descriptor on every path out; the file name is only for messages.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : m_fd(fd) {}
    ~FileDescriptor() {
        if (m_fd >= 0) ::close(m_fd);
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    int get() const { return m_fd; }
    int release() { return std::exchange(m_fd, -1); }

private:
    int m_fd;
};

} // namespace

struct DedupWindow::StateFormat {
    static DedupWindow restore(std::uint64_t totalBytes, const ReadAt& readAt, const DedupOptions* wanted,
                               const std::string& origin);
    static DedupWindow loadFile(const std::filesystem::path& path, const DedupOptions* options);
    static void write(const DedupWindow& window, StateWriter& writer);
};

void DedupWindow::StateFormat::write(const DedupWindow& window, StateWriter& writer) {
    const DedupOptions& options = window.m_options;
    std::uint64_t liveEntries = 0;
    std::uint64_t payloadBytes = 0;
    if (window.m_exact) {
        window.m_exact->forEach(
            [&](const KeySlot& slot) { liveEntries += slot.firstSeenMillis >= window.m_liveFromMillis; });
        payloadBytes = 8 + kExactEntryBytes * liveEntries;
    } else {
        const RotatingBloomFilter& bloom = *window.m_bloom;
        payloadBytes =
            32 + 16 * bloom.generations().size() +
            bloom.generations().size() * bloom.blocksPerGeneration() * RotatingBloomFilter::kBlockBits / 8;
    }

    writer.bytes(kMagic.data(), kMagic.size());
    writer.u32(kFormatVersion);
    writer.u8(static_cast<std::uint8_t>(options.mode));
    writer.bytes("\0\0\0", 3);
    writer.i64(options.windowMillis);
    writer.u64(options.maxKeys);
    writer.u64(options.bloomExpectedKeys);
    writer.u64(std::bit_cast<std::uint64_t>(options.bloomFalsePositiveRate));
    writer.u32(options.bloomGenerations);
    writer.u32(window.m_hasWatermark ? kFlagHasWatermark : 0);
    writer.i64(window.m_watermarkMillis);
    writer.u64(payloadBytes);

    if (window.m_exact) {
        writer.u64(liveEntries);
        window.m_exact->forEach([&](const KeySlot& slot) {
            if (slot.firstSeenMillis < window.m_liveFromMillis) return;
            writer.u64(slot.keyHash);
            writer.i64(slot.firstSeenMillis);
            writer.u32(slot.contentHash);
        });
    } else {
        const RotatingBloomFilter& bloom = *window.m_bloom;
        writer.u32(bloom.bitsPerKey());
        writer.u32(0);
        writer.u64(bloom.blocksPerGeneration());
        writer.i64(bloom.spanMillis());
        writer.i64(bloom.newestGeneration());
        for (const RotatingBloomFilter::Generation& generation : bloom.generations()) {
            writer.i64(generation.index);
            writer.u64(generation.inserted);
        }
        for (std::size_t slot = 0; slot < bloom.generations().size(); ++slot)
            writer.words(bloom.blockWords(slot, 0),
                         bloom.blocksPerGeneration() * RotatingBloomFilter::kBlockWords);
    }
    writer.finish();
}

DedupWindow DedupWindow::StateFormat::restore(std::uint64_t totalBytes, const ReadAt& readAt,
                                              const DedupOptions* wanted, const std::string& origin) {
    const auto error = [&](Reason reason, const std::string& message) {
        return DedupStateError(reason, origin + ": " + message);
    };

    // Magic and version come first: a file that is not ours, or from a newer build, should say
    // so rather than report a checksum mismatch.
    std::array<char, kMagic.size()> magic{};
    const auto magicBytes = static_cast<std::size_t>(std::min<std::uint64_t>(totalBytes, kMagic.size()));
    readAt(0, magic.data(), magicBytes);
    if (std::memcmp(magic.data(), kMagic.data(), magicBytes) != 0)
        throw error(Reason::BadMagic, "not a dedup window state: starts with \"" +
                                          printable(std::string_view(magic.data(), magicBytes)) +
                                          "\", expected \"" +
                                          printable(std::string_view(kMagic.data(), kMagic.size())) + "\"");
    if (totalBytes < kHeaderBytes + kChecksumBytes)
        throw error(Reason::Truncated, "truncated: " + std::to_string(totalBytes) + " bytes, less than the " +
                                           std::to_string(kHeaderBytes + kChecksumBytes) +
                                           "-byte header and checksum");

    StateReader header(readAt, kHeaderBytes, origin);
    header.skip(kMagic.size());
    const std::uint32_t version = header.u32();
    if (version != kFormatVersion)
        throw error(Reason::UnsupportedVersion, "format version " + std::to_string(version) +
                                                    ", this build reads version " +
                                                    std::to_string(kFormatVersion));
    DedupOptions saved;
    const std::uint8_t mode = header.u8();
    saved.mode = static_cast<DedupMode>(mode);
    header.skip(3);
    saved.windowMillis = header.i64();
    saved.maxKeys = static_cast<std::size_t>(header.u64());
    saved.bloomExpectedKeys = static_cast<std::size_t>(header.u64());
    saved.bloomFalsePositiveRate = std::bit_cast<double>(header.u64());
    saved.bloomGenerations = header.u32();
    const std::uint32_t flags = header.u32();
    const std::int64_t watermark = header.i64();
    const std::uint64_t payloadBytes = header.u64();

    const std::uint64_t payloadEnd = kHeaderBytes + payloadBytes;
    if (payloadBytes > totalBytes || payloadEnd + kChecksumBytes > totalBytes)
        throw error(Reason::Truncated, "truncated: the header announces " +
                                           std::to_string(payloadBytes + kHeaderBytes + kChecksumBytes) +
                                           " bytes, there are " + std::to_string(totalBytes));
    if (payloadEnd + kChecksumBytes < totalBytes)
        throw error(Reason::Corrupt, std::to_string(totalBytes - payloadEnd - kChecksumBytes) +
                                         " unexpected bytes after the checksum (the header announces " +
                                         std::to_string(payloadEnd + kChecksumBytes) + " bytes)");

    {
        std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
        if (!state) throw std::bad_alloc();
        XXH3_64bits_reset(state.get());
        std::string chunk(kIoChunkBytes, '\0');
        for (std::uint64_t offset = 0; offset < payloadEnd;) {
            const auto size =
                static_cast<std::size_t>(std::min<std::uint64_t>(kIoChunkBytes, payloadEnd - offset));
            readAt(offset, chunk.data(), size);
            XXH3_64bits_update(state.get(), chunk.data(), size);
            offset += size;
        }
        std::array<char, kChecksumBytes> trailer;
        readAt(payloadEnd, trailer.data(), trailer.size());
        std::uint64_t stored = 0;
        for (std::size_t i = 0; i < kChecksumBytes; ++i)
            stored |= static_cast<std::uint64_t>(static_cast<unsigned char>(trailer[i])) << (8 * i);
        const std::uint64_t computed = XXH3_64bits_digest(state.get());
        if (stored != computed)
            throw error(Reason::ChecksumMismatch, "checksum mismatch: stored " + hex(stored) + ", computed " +
                                                      hex(computed) + " over " + std::to_string(payloadEnd) +
                                                      " bytes");
    }

    try {
        validate(saved);
    } catch (const std::invalid_argument& invalid) {
        throw error(Reason::Corrupt, std::string("saved options are invalid: ") + invalid.what());
    }
    DedupOptions options = saved;
    if (wanted) {
        if (wanted->mode != saved.mode)
            throw error(Reason::OptionsMismatch, "saved in " + std::string(toString(saved.mode)) + " mode, " +
                                                     std::string(toString(wanted->mode)) +
                                                     " mode requested; the modes cannot be converted");
        if (saved.mode == DedupMode::Bloom) {
            const auto differs = [&](const char* name, const std::string& before, const std::string& now) {
                return error(Reason::OptionsMismatch, std::string("Bloom filter saved with ") + name + " " +
                                                          before + ", " + now +
                                                          " requested; a Bloom window cannot be resized");
            };
            if (wanted->windowMillis != saved.windowMillis)
                throw differs("window", formatDurationMillis(saved.windowMillis),
                              formatDurationMillis(wanted->windowMillis));
            if (wanted->bloomExpectedKeys != saved.bloomExpectedKeys)
                throw differs("expected keys", std::to_string(saved.bloomExpectedKeys),
                              std::to_string(wanted->bloomExpectedKeys));
            if (wanted->bloomFalsePositiveRate != saved.bloomFalsePositiveRate)
                throw differs("false-positive rate", std::to_string(saved.bloomFalsePositiveRate),
                              std::to_string(wanted->bloomFalsePositiveRate));
            if (wanted->bloomGenerations != saved.bloomGenerations)
                throw differs("generations", std::to_string(saved.bloomGenerations),
                              std::to_string(wanted->bloomGenerations));
        }
        options = *wanted; // Exact mode adapts to a new window and maxKeys
    }

    DedupWindow window(options);
    if (flags & kFlagHasWatermark) window.advanceWatermark(watermark);
    window.m_lastReclaimLiveFrom = window.m_liveFromMillis; // only live entries are loaded
    StateReader payload(readAt, payloadEnd, origin);
    payload.skip(kHeaderBytes);

    if (window.m_exact) {
        const std::uint64_t count = payload.u64();
        if (payloadBytes != 8 + kExactEntryBytes * count || count > payloadBytes)
            throw error(Reason::Corrupt, "exact payload of " + std::to_string(payloadBytes) +
                                             " bytes cannot hold " + std::to_string(count) + " entries");
        if (count > 0 && !(flags & kFlagHasWatermark))
            throw error(Reason::Corrupt, std::to_string(count) + " entries but no watermark");
        // Size the table for what will be loaded so it does not grow step by step.
        const auto target = static_cast<std::size_t>(std::min<std::uint64_t>(count, options.maxKeys));
        std::size_t slots = window.m_exact->homeSlots();
        while (slots < window.m_maxSlots &&
               static_cast<double>(slots) * ExactKeyTable::kMaxLoad < static_cast<double>(target))
            slots = nextTableSlots(slots, window.m_maxSlots);
        if (slots != window.m_exact->homeSlots()) window.growTo(slots); // empty: cannot fail
        for (std::uint64_t i = 0; i < count; ++i) {
            KeySlot entry{};
            entry.keyHash = payload.u64();
            entry.firstSeenMillis = payload.i64();
            entry.contentHash = payload.u32();
            if (entry.keyHash == 0)
                throw error(Reason::Corrupt, "entry " + std::to_string(i) + " has key hash 0");
            if (entry.firstSeenMillis > watermark)
                throw error(Reason::Corrupt,
                            "entry " + std::to_string(i) + " was first seen after the watermark");
            if (entry.firstSeenMillis < window.m_liveFromMillis) continue; // outside a shorter new window
            if (window.m_exact->find(entry.keyHash))
                throw error(Reason::Corrupt, "entry " + std::to_string(i) + " repeats an earlier key");
            if (window.m_exact->size() >= window.m_growAt) window.makeRoom();
            window.insertOrMakeRoom(entry);
        }
    } else {
        RotatingBloomFilter& bloom = *window.m_bloom;
        const std::uint32_t bitsPerKey = payload.u32();
        payload.skip(4);
        const std::uint64_t blocks = payload.u64();
        const std::int64_t span = payload.i64();
        const std::int64_t newest = payload.i64();
        if (bitsPerKey != bloom.bitsPerKey() || blocks != bloom.blocksPerGeneration() ||
            span != bloom.spanMillis())
            throw error(Reason::OptionsMismatch, "saved filter has " + std::to_string(blocks) +
                                                     " blocks, k=" + std::to_string(bitsPerKey) + ", span " +
                                                     std::to_string(span) + " ms; these options size it " +
                                                     std::to_string(bloom.blocksPerGeneration()) +
                                                     " blocks, k=" + std::to_string(bloom.bitsPerKey()) +
                                                     ", span " + std::to_string(bloom.spanMillis()) + " ms");
        const std::size_t ring = bloom.generations().size();
        const std::uint64_t expected = 32 + 16 * ring + ring * blocks * RotatingBloomFilter::kBlockBits / 8;
        if (payloadBytes != expected)
            throw error(Reason::Corrupt, "Bloom payload is " + std::to_string(payloadBytes) +
                                             " bytes, expected " + std::to_string(expected));
        std::vector<RotatingBloomFilter::Generation> generations(ring);
        for (RotatingBloomFilter::Generation& generation : generations) {
            generation.index = payload.i64();
            generation.inserted = payload.u64();
        }
        try {
            bloom.restore(newest, generations);
        } catch (const std::invalid_argument& invalid) {
            throw error(Reason::Corrupt, std::string("Bloom generations do not fit: ") + invalid.what());
        }
        if ((flags & kFlagHasWatermark) ? newest != bloom.generationOf(watermark)
                                        : newest != RotatingBloomFilter::kNoGeneration)
            throw error(Reason::Corrupt, "newest Bloom generation " + std::to_string(newest) +
                                             " does not match the saved watermark");
        for (std::size_t slot = 0; slot < ring; ++slot)
            payload.words(bloom.blockWords(slot, 0), blocks * RotatingBloomFilter::kBlockWords);
    }
    return window;
}

std::string DedupWindow::serialize() const {
    std::string bytes;
    StateWriter writer([&](const char* data, std::size_t size) { bytes.append(data, size); });
    StateFormat::write(*this, writer);
    return bytes;
}

DedupWindow DedupWindow::deserialize(std::string_view bytes) {
    const ReadAt readAt = [bytes](std::uint64_t offset, char* out, std::size_t size) {
        std::memcpy(out, bytes.data() + offset, size);
    };
    return StateFormat::restore(bytes.size(), readAt, nullptr, "dedup state");
}

DedupWindow DedupWindow::deserialize(std::string_view bytes, const DedupOptions& options) {
    const ReadAt readAt = [bytes](std::uint64_t offset, char* out, std::size_t size) {
        std::memcpy(out, bytes.data() + offset, size);
    };
    return StateFormat::restore(bytes.size(), readAt, &options, "dedup state");
}

DedupWindow DedupWindow::StateFormat::loadFile(const std::filesystem::path& path,
                                               const DedupOptions* options) {
    FileDescriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.get() < 0)
        throw DedupStateError(Reason::Io, systemError("cannot open dedup state", path, errno));
    struct stat info {};
    if (::fstat(file.get(), &info) != 0)
        throw DedupStateError(Reason::Io, systemError("cannot stat dedup state", path, errno));
    const ReadAt readAt = [&](std::uint64_t offset, char* out, std::size_t size) {
        while (size > 0) {
            const ssize_t got = ::pread(file.get(), out, size, static_cast<off_t>(offset));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0)
                throw DedupStateError(Reason::Io, systemError("cannot read dedup state", path, errno));
            if (got == 0)
                throw DedupStateError(Reason::Truncated, "dedup state " + path.string() +
                                                             ": truncated while reading (file shrank?)");
            out += got;
            size -= static_cast<std::size_t>(got);
            offset += static_cast<std::uint64_t>(got);
        }
    };
    if (info.st_size == 0)
        throw DedupStateError(Reason::Truncated,
                              "dedup state " + path.string() + ": truncated: the file is empty");
    return restore(static_cast<std::uint64_t>(info.st_size), readAt, options, "dedup state " + path.string());
}

DedupWindow DedupWindow::load(const std::filesystem::path& path) {
    return StateFormat::loadFile(path, nullptr);
}

DedupWindow DedupWindow::load(const std::filesystem::path& path, const DedupOptions& options) {
    return StateFormat::loadFile(path, &options);
}

void DedupWindow::save(const std::filesystem::path& path) const {
    std::filesystem::path temporary = path;
    temporary += ".tmp." + std::to_string(::getpid());
    FileDescriptor file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (file.get() < 0)
        throw DedupStateError(Reason::Io, systemError("cannot create dedup state", temporary, errno));
    try {
        StateWriter writer([&](const char* data, std::size_t size) {
            while (size > 0) {
                const ssize_t written = ::write(file.get(), data, size);
                if (written < 0 && errno == EINTR) continue;
                if (written < 0)
                    throw DedupStateError(Reason::Io,
                                          systemError("cannot write dedup state", temporary, errno));
                data += written;
                size -= static_cast<std::size_t>(written);
            }
        });
        StateFormat::write(*this, writer);
        // Data on disk before the rename makes it visible, or a crash could leave an empty file
        // under the real name.
        if (::fsync(file.get()) != 0)
            throw DedupStateError(Reason::Io, systemError("cannot sync dedup state", temporary, errno));
        if (::close(file.release()) != 0)
            throw DedupStateError(Reason::Io, systemError("cannot close dedup state", temporary, errno));
        if (::rename(temporary.c_str(), path.c_str()) != 0)
            throw DedupStateError(
                Reason::Io,
                systemError("cannot rename " + temporary.string() + " to dedup state", path, errno));
    } catch (...) {
        ::unlink(temporary.c_str());
        throw;
    }
    // Make the rename itself durable; failing here loses nothing already written, so best effort.
    const std::filesystem::path directory =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    FileDescriptor directoryFile(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (directoryFile.get() >= 0) ::fsync(directoryFile.get());
}

} // namespace pipescope
