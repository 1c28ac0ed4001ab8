#include "dedup/rotating_bloom_filter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace pipescope::dedup_detail {

namespace {

__extension__ using Uint128 = unsigned __int128;

constexpr std::uint32_t kMaxBitsPerKey = 24;

std::uint64_t splitMix64(std::uint64_t x) noexcept {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

} // namespace

double RotatingBloomFilter::falsePositiveRateOf(std::uint64_t keys, std::uint64_t blocks,
                                                std::uint32_t bitsPerKey) {
    if (keys == 0 || blocks == 0) return 0.0;
    // Keys land in blocks as a Poisson process with mean lambda; a block holding i keys has
    // 1 - (1 - 1/512)^(k i) of its bits set, and a fresh key is a false positive when all k of
    // its bits are among them.
    const double lambda = static_cast<double>(keys) / static_cast<double>(blocks);
    const double bitStaysClear = std::log1p(-1.0 / kBlockBits) * bitsPerKey; // log of (1-1/512)^k
    const auto lastTerm = static_cast<std::uint64_t>(lambda + 15.0 * std::sqrt(lambda) + 30.0);
    double rate = 0.0;
    double logPoisson = -lambda; // log P(i keys), starting at i = 0
    for (std::uint64_t i = 0; i <= lastTerm; ++i) {
        const double setFraction = -std::expm1(bitStaysClear * static_cast<double>(i));
        rate += std::exp(logPoisson) * std::pow(setFraction, bitsPerKey);
        logPoisson += std::log(lambda) - std::log(static_cast<double>(i + 1));
    }
    return rate;
}

RotatingBloomFilter::Sizing RotatingBloomFilter::sizeFor(std::uint64_t keys, double falsePositiveRate) {
    keys = std::max<std::uint64_t>(keys, 1);
    const auto bestFor = [&](std::uint64_t blocks) {
        Sizing best{blocks, 1};
        double bestRate = 2.0;
        for (std::uint32_t k = 1; k <= kMaxBitsPerKey; ++k) {
            const double rate = falsePositiveRateOf(keys, blocks, k);
            if (rate < bestRate) {
                bestRate = rate;
                best.bitsPerKey = k;
            }
        }
        return std::pair{best, bestRate};
    };
    // The rate falls as blocks are added: binary search for the fewest blocks that meet it.
    std::uint64_t low = 1;
    std::uint64_t high = std::max<std::uint64_t>(1, keys * 64 / kBlockBits + 1); // 64 bits a key
    while (bestFor(high).second > falsePositiveRate)
        high *= 2;
    while (low < high) {
        const std::uint64_t middle = low + (high - low) / 2;
        if (bestFor(middle).second <= falsePositiveRate)
            high = middle;
        else
            low = middle + 1;
    }
    return bestFor(low).first;
}

RotatingBloomFilter::RotatingBloomFilter(std::uint64_t expectedKeys, double falsePositiveRate,
                                         std::uint32_t generations, std::int64_t windowMillis)
    : m_sizing(
          sizeFor((expectedKeys + generations - 2) / (generations - 1), falsePositiveRate / generations)),
      m_spanMillis((windowMillis + generations - 2) / (generations - 1)), m_generations(generations),
      m_memory(generations * m_sizing.blocksPerGeneration * kBlockBits / 8) {}

RotatingBloomFilter::Probe RotatingBloomFilter::probeFor(std::uint64_t keyHash) const noexcept {
    Probe probe;
    probe.block =
        static_cast<std::uint64_t>((static_cast<Uint128>(keyHash) * m_sizing.blocksPerGeneration) >> 64);
    // Start loading the key's block in every generation now, so the cache misses run while the
    // bit mask is computed.
    for (std::size_t slot = 0; slot < m_generations.size(); ++slot)
        __builtin_prefetch(blockWords(slot, probe.block));
    // The bit positions come from a different function of the key than the block index (which
    // uses its high bits), so the two are independent. 9 bits per position, 7 per 64-bit draw.
    std::uint64_t bits = 0;
    std::uint64_t state = keyHash;
    for (std::uint32_t i = 0; i < m_sizing.bitsPerKey; ++i) {
        if (i % 7 == 0) {
            state += 0x632BE59BD9B4E019ull;
            bits = splitMix64(state);
        }
        const auto bit = static_cast<unsigned>(bits & (kBlockBits - 1));
        bits >>= 9;
        probe.mask[bit >> 6] |= std::uint64_t{1} << (bit & 63);
    }
    return probe;
}

std::int64_t RotatingBloomFilter::generationOf(std::int64_t timeMillis) const noexcept {
    return floorDiv(timeMillis, m_spanMillis);
}

std::size_t RotatingBloomFilter::ringSlotOf(std::int64_t generation) const noexcept {
    const auto count = static_cast<std::int64_t>(m_generations.size());
    return static_cast<std::size_t>(((generation % count) + count) % count);
}

void RotatingBloomFilter::clear(std::size_t ringSlot) {
    if (m_generations[ringSlot].inserted != 0)
        std::memset(blockWords(ringSlot, 0), 0, m_sizing.blocksPerGeneration * kBlockBits / 8);
    m_generations[ringSlot] = Generation{};
}

std::uint64_t RotatingBloomFilter::advanceTo(std::int64_t watermarkMillis) {
    const std::int64_t target = generationOf(watermarkMillis);
    if (m_newest != kNoGeneration && target <= m_newest) return 0;
    std::uint64_t forgotten = 0;
    const auto count = static_cast<std::int64_t>(m_generations.size());
    // Only the last `count` generations up to target survive; older ring slots are recycled.
    const std::int64_t first =
        m_newest == kNoGeneration || target - m_newest >= count ? target - count + 1 : m_newest + 1;
    for (std::int64_t generation = first; generation <= target; ++generation) {
        const std::size_t slot = ringSlotOf(generation);
        if (m_generations[slot].index != kNoGeneration) forgotten += m_generations[slot].inserted;
        clear(slot);
        m_generations[slot].index = generation;
    }
    m_newest = target;
    return forgotten;
}

bool RotatingBloomFilter::contains(const Probe& probe, std::int64_t oldestGeneration) const noexcept {
    const std::size_t count = m_generations.size();
    for (std::size_t slot = 0; slot < count; ++slot) {
        const Generation& generation = m_generations[slot];
        if (generation.index == kNoGeneration || generation.index < oldestGeneration ||
            generation.inserted == 0)
            continue;
        const std::uint64_t* words = blockWords(slot, probe.block); // prefetched by probeFor()
        bool all = true;
        for (std::size_t w = 0; w < kBlockWords; ++w)
            all &= (words[w] & probe.mask[w]) == probe.mask[w];
        if (all) return true;
    }
    return false;
}

void RotatingBloomFilter::insert(const Probe& probe) noexcept {
    const std::size_t slot = ringSlotOf(m_newest);
    std::uint64_t* words = blockWords(slot, probe.block);
    for (std::size_t w = 0; w < kBlockWords; ++w)
        words[w] |= probe.mask[w];
    ++m_generations[slot].inserted;
}

std::uint64_t RotatingBloomFilter::keysHeld() const {
    std::uint64_t keys = 0;
    for (const Generation& generation : m_generations)
        keys += generation.inserted;
    return keys;
}

double RotatingBloomFilter::estimatedFalsePositiveRate() const {
    double allClear = 1.0;
    for (const Generation& generation : m_generations)
        allClear *=
            1.0 - falsePositiveRateOf(generation.inserted, m_sizing.blocksPerGeneration, m_sizing.bitsPerKey);
    return 1.0 - allClear;
}

void RotatingBloomFilter::restore(std::int64_t newestGeneration, const std::vector<Generation>& generations) {
    if (generations.size() != m_generations.size())
        throw std::invalid_argument("holds " + std::to_string(generations.size()) +
                                    " generations, expected " + std::to_string(m_generations.size()));
    for (std::size_t slot = 0; slot < generations.size(); ++slot) {
        const Generation& generation = generations[slot];
        if (generation.index == kNoGeneration) continue;
        if (generation.index > newestGeneration ||
            newestGeneration - generation.index >= static_cast<std::int64_t>(generations.size()) ||
            ringSlotOf(generation.index) != slot)
            throw std::invalid_argument("generation " + std::to_string(generation.index) +
                                        " does not belong in ring slot " + std::to_string(slot) +
                                        " with newest generation " + std::to_string(newestGeneration));
    }
    m_generations = generations;
    m_newest = newestGeneration;
}

} // namespace pipescope::dedup_detail
