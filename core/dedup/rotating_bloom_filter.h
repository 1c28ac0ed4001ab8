#pragma once
// Private to core/dedup. The Bloom mode's store: a ring of `generations` blocked Bloom filters,
// each covering a span of window / (generations - 1) of watermark time. Queries look in all of
// them, inserts go into the newest, and when the watermark enters a new span the oldest filter
// is cleared and becomes the newest. A key inserted when the watermark was W is therefore
// remembered until the watermark passes W + window at the earliest and W + window + span at
// the latest.
//
// Blocked: each key's bits all fall in one 64-byte block (one cache line) instead of k lines.
// Blocking raises the false-positive rate a little for a given size; the sizing below uses the
// exact blocked formula (a Poisson mix over block loads), so the configured rate holds anyway,
// at a few more bits per key. A query consults every generation, so probeFor() starts loading
// the key's block in each of them before it computes the bit mask, and the misses overlap.

#include "dedup/zeroed_page_buffer.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace pipescope::dedup_detail {

class RotatingBloomFilter {
public:
    static constexpr std::int64_t kNoGeneration = std::numeric_limits<std::int64_t>::min();
    static constexpr std::size_t kBlockBits = 512;
    static constexpr std::size_t kBlockWords = kBlockBits / 64;

    struct Sizing {
        std::uint64_t blocksPerGeneration = 0;
        std::uint32_t bitsPerKey = 0; // k: bits set in the key's block
    };
    // Smallest filter for `keys` keys whose false-positive rate is at most `falsePositiveRate`.
    static Sizing sizeFor(std::uint64_t keys, double falsePositiveRate);
    // False-positive rate of one filter of `blocks` blocks holding `keys` keys with k bits each.
    static double falsePositiveRateOf(std::uint64_t keys, std::uint64_t blocks, std::uint32_t bitsPerKey);

    struct Generation {
        std::int64_t index = kNoGeneration; // floor(time / span); kNoGeneration when unused
        std::uint64_t inserted = 0;
    };

    // expectedKeys are distinct keys per window; each generation is sized for its share of them
    // (expectedKeys / (generations - 1)) at a rate of falsePositiveRate / generations, since a
    // query consults every generation.
    RotatingBloomFilter(std::uint64_t expectedKeys, double falsePositiveRate, std::uint32_t generations,
                        std::int64_t windowMillis);

    struct Probe {
        std::uint64_t block = 0;
        std::array<std::uint64_t, kBlockWords> mask{};
    };
    Probe probeFor(std::uint64_t keyHash) const noexcept;

    // Moves the newest generation to the span holding watermarkMillis, clearing the ones that
    // fall out. Returns how many keys were forgotten that way.
    std::uint64_t advanceTo(std::int64_t watermarkMillis);

    // Whether the key may be in any generation at or after oldestGeneration.
    bool contains(const Probe& probe, std::int64_t oldestGeneration) const noexcept;
    // Precondition: advanceTo() was called at least once.
    void insert(const Probe& probe) noexcept;

    std::int64_t generationOf(std::int64_t timeMillis) const noexcept;
    std::int64_t newestGeneration() const { return m_newest; }
    std::int64_t oldestLiveGeneration() const {
        return m_newest - static_cast<std::int64_t>(m_generations.size()) + 1;
    }
    std::int64_t spanMillis() const { return m_spanMillis; }
    std::uint64_t blocksPerGeneration() const { return m_sizing.blocksPerGeneration; }
    std::uint32_t bitsPerKey() const { return m_sizing.bitsPerKey; }
    std::size_t memoryBytes() const { return m_memory.size(); }
    std::uint64_t keysHeld() const;
    // The rate for a fresh key right now, from how full each generation is.
    double estimatedFalsePositiveRate() const;

    // For persistence: generations in ring order and the 8 words of one block of one of them.
    const std::vector<Generation>& generations() const { return m_generations; }
    std::uint64_t* blockWords(std::size_t ringSlot, std::uint64_t block) noexcept {
        return static_cast<std::uint64_t*>(m_memory.data()) +
               (ringSlot * m_sizing.blocksPerGeneration + block) * kBlockWords;
    }
    const std::uint64_t* blockWords(std::size_t ringSlot, std::uint64_t block) const noexcept {
        return const_cast<RotatingBloomFilter*>(this)->blockWords(ringSlot, block);
    }
    // Restores a saved ring; throws std::invalid_argument when it does not fit this filter.
    void restore(std::int64_t newestGeneration, const std::vector<Generation>& generations);

private:
    std::size_t ringSlotOf(std::int64_t generation) const noexcept;
    void clear(std::size_t ringSlot);

    Sizing m_sizing;
    std::int64_t m_spanMillis = 0;
    std::vector<Generation> m_generations;
    std::int64_t m_newest = kNoGeneration;
    ZeroedPageBuffer m_memory; // generations x blocksPerGeneration blocks of 64 bytes
};

} // namespace pipescope::dedup_detail
