#pragma once
// Private to core/dedup. The exact mode's store: an open-addressing table of 20-byte slots with
// linear probing in Robin Hood order, with ties broken by key — that is, an ordered hash table
// (Amble & Knuth, 1974): every run of occupied slots is sorted by key, descending.
//
// Why: most events are not duplicates, so the common lookup is a miss. Plain linear probing
// walks a miss to the end of its cluster (about 13 slots at load 0.8). Textbook Robin Hood
// stops early but computes each resident's home on the way. In the ordered table a lookup stops
// at the first key not greater than its own — one comparison a slot — so hits and misses both
// cost about 3 slots. Measured on the bare tables, 10M random keys at load 0.8, same slots,
// median of 3 runs (hits / misses / inserts per second): linear probing 14M / 4.5M / 14M,
// textbook Robin Hood 8.5M / 8.6M / 10M, ordered 18M / 23M / 12M.
//
// Layout: the home slot is "fast range" over the complement of the key, ((~key * homeSlots)
// >> 64), so it falls as the key rises and keys sorted descending are in home order. Fast range
// allows any table size, so the full table is exactly maxKeys / 0.8 slots instead of the next
// power of two. There is no wrap-around: a short tail of overflow slots follows the home slots
// (the longest displacement measured at 10M keys was 303), the last slot always stays empty
// so every scan stops, and an insert that would need it reports failure instead (the window
// then grows or evicts). Empty slots hold key 0, so freshly mapped zero pages are an empty table.

#include "dedup/zeroed_page_buffer.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace pipescope::dedup_detail {

__extension__ using Uint128 = unsigned __int128;

// 64-bit key hash + first-seen time + 32-bit content hash, packed to 20 bytes (aligned to 8 it
// would be 24). keyHash 0 marks an empty slot; callers map a real 0 to another value.
#pragma pack(push, 4)
struct KeySlot {
    std::uint64_t keyHash;
    std::int64_t firstSeenMillis;
    std::uint32_t contentHash;
};
#pragma pack(pop)
static_assert(sizeof(KeySlot) == 20);

class ExactKeyTable {
public:
    // Above this load factor the window grows the table (or reclaims, or evicts).
    static constexpr double kMaxLoad = 0.8;

    // homeSlots slots that keys hash to, plus the overflow tail.
    explicit ExactKeyTable(std::size_t homeSlots);

    static std::size_t tailSlotsFor(std::size_t homeSlots) {
        return std::clamp<std::size_t>(homeSlots / 16, 64, 4096);
    }

    std::size_t size() const { return m_size; }
    std::size_t homeSlots() const { return m_homeSlots; }
    std::size_t memoryBytes() const { return m_totalSlots * sizeof(KeySlot); }

    KeySlot* find(std::uint64_t keyHash) noexcept {
        KeySlot* slot = m_slots + homeSlot(keyHash);
        while (slot->keyHash > keyHash)
            ++slot; // stops at an empty slot (0) at the latest
        return slot->keyHash == keyHash ? slot : nullptr;
    }
    const KeySlot* find(std::uint64_t keyHash) const noexcept {
        return const_cast<ExactKeyTable*>(this)->find(keyHash);
    }

    // Precondition: the key (non-zero) is absent. Returns false, changing nothing, when the run
    // it joins would reach the last slot.
    bool insert(const KeySlot& entry) noexcept {
        KeySlot* position = m_slots + homeSlot(entry.keyHash);
        while (position->keyHash > entry.keyHash)
            ++position;
        KeySlot* firstEmpty = position;
        while (firstEmpty->keyHash != 0)
            ++firstEmpty;
        if (firstEmpty == m_slots + m_totalSlots - 1) return false;
        // Shifting the rest of the run up by one keeps it sorted and leaves every entry at or
        // after its home.
        std::memmove(static_cast<void*>(position + 1), position,
                     static_cast<std::size_t>(firstEmpty - position) * sizeof(KeySlot));
        *position = entry;
        ++m_size;
        return true;
    }

    // Removes every entry for which shouldErase(const KeySlot&) is true and closes the gaps, in
    // one forward pass. Returns how many were removed.
    template <class Predicate> std::size_t eraseIf(Predicate shouldErase) noexcept {
        // Each survivor goes to max(home, previous survivor's slot + 1): the order stays sorted
        // and entries only move back, into slots already visited.
        std::size_t erased = 0;
        std::size_t nextFree = 0;
        for (std::size_t pos = 0; pos < m_totalSlots; ++pos) {
            KeySlot& slot = m_slots[pos];
            if (slot.keyHash == 0) continue;
            if (shouldErase(static_cast<const KeySlot&>(slot))) {
                slot = KeySlot{};
                ++erased;
                continue;
            }
            const std::size_t target = std::max(homeSlot(slot.keyHash), nextFree);
            if (target != pos) {
                m_slots[target] = slot;
                slot = KeySlot{};
            }
            nextFree = target + 1;
        }
        m_size -= erased;
        return erased;
    }

    template <class Visit> void forEach(Visit visit) const {
        for (std::size_t pos = 0; pos < m_totalSlots; ++pos)
            if (m_slots[pos].keyHash != 0) visit(static_cast<const KeySlot&>(m_slots[pos]));
    }

    // First-seen times of up to out.size() entries spread evenly over the slots. Slot order
    // follows the hash, not the time, so this is a fair sample of the times. Returns how many.
    std::size_t sampleFirstSeen(std::span<std::int64_t> out) const noexcept;

    // Moves every entry into `into` (an empty table of another size). Returns false, leaving
    // this table as it was, if they would not fit.
    bool copyInto(ExactKeyTable& into) const noexcept;

private:
    std::size_t homeSlot(std::uint64_t keyHash) const noexcept {
        return static_cast<std::size_t>((static_cast<Uint128>(~keyHash) * m_homeSlots) >> 64);
    }

    ZeroedPageBuffer m_memory;
    KeySlot* m_slots = nullptr;
    std::size_t m_homeSlots = 0;
    std::size_t m_totalSlots = 0; // home slots + overflow tail
    std::size_t m_size = 0;
};

} // namespace pipescope::dedup_detail
