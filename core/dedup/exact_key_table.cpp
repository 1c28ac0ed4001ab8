#include "dedup/exact_key_table.h"

namespace pipescope::dedup_detail {

ExactKeyTable::ExactKeyTable(std::size_t homeSlots)
    : m_memory((homeSlots + tailSlotsFor(homeSlots)) * sizeof(KeySlot)),
      m_slots(static_cast<KeySlot*>(m_memory.data())), m_homeSlots(homeSlots),
      m_totalSlots(homeSlots + tailSlotsFor(homeSlots)) {}

std::size_t ExactKeyTable::sampleFirstSeen(std::span<std::int64_t> out) const noexcept {
    if (m_size == 0 || out.empty()) return 0;
    const std::size_t wanted = std::min(out.size(), m_size);
    for (std::size_t i = 0; i < wanted; ++i) {
        std::size_t pos = static_cast<std::size_t>((static_cast<Uint128>(i) * m_totalSlots) / wanted);
        while (m_slots[pos].keyHash == 0)
            pos = pos + 1 == m_totalSlots ? 0 : pos + 1;
        out[i] = m_slots[pos].firstSeenMillis;
    }
    return wanted;
}

bool ExactKeyTable::copyInto(ExactKeyTable& into) const noexcept {
    // Slot order is key order, and the new table's homes follow the same order, so each entry
    // goes right after the previous one or at its home, whichever is later: one sequential pass.
    std::size_t nextFree = 0;
    for (std::size_t pos = 0; pos < m_totalSlots; ++pos) {
        const KeySlot& slot = m_slots[pos];
        if (slot.keyHash == 0) continue;
        const std::size_t target = std::max(into.homeSlot(slot.keyHash), nextFree);
        if (target >= into.m_totalSlots - 1) {
            std::memset(static_cast<void*>(into.m_slots), 0, into.m_totalSlots * sizeof(KeySlot));
            into.m_size = 0;
            return false;
        }
        into.m_slots[target] = slot;
        nextFree = target + 1;
    }
    into.m_size = m_size;
    return true;
}

} // namespace pipescope::dedup_detail
