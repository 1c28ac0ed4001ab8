#pragma once
// Compact containers of the identity graph: an arena for bytes that live as long as the graph, a
// vector that grows by fixed chunks, and an open-addressing index over entries kept elsewhere.
// Generic (nothing identity-specific), private to core/identity/.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

namespace pipescope::compact {

inline constexpr std::uint32_t kNoIndex = std::numeric_limits<std::uint32_t>::max();

// Bytes that live as long as the graph: ids, origins, names. Never moves what it handed out.
class TextArena {
public:
    const char* store(std::string_view first, std::string_view second = {}) {
        const std::size_t size = first.size() + second.size();
        if (size > m_left) {
            const std::size_t blockSize = std::max(size, kBlockSize);
            m_blocks.push_back(std::make_unique_for_overwrite<char[]>(blockSize));
            m_cursor = m_blocks.back().get();
            m_left = blockSize;
        }
        char* out = m_cursor;
        if (!first.empty()) std::memcpy(out, first.data(), first.size());
        if (!second.empty()) std::memcpy(out + first.size(), second.data(), second.size());
        m_cursor += size;
        m_left -= size;
        return out;
    }

private:
    static constexpr std::size_t kBlockSize = 64 * 1024;
    std::vector<std::unique_ptr<char[]>> m_blocks;
    char* m_cursor = nullptr;
    std::size_t m_left = 0;
};

// A vector that grows by fixed chunks: no doubling slack and no copy on growth.
template <class T> class ChunkedVector {
public:
    T& operator[](std::size_t i) { return m_chunks[i >> kChunkBits][i & kChunkMask]; }
    const T& operator[](std::size_t i) const { return m_chunks[i >> kChunkBits][i & kChunkMask]; }
    std::size_t size() const { return m_size; }
    T& push_back(const T& value) {
        if ((m_size & kChunkMask) == 0) m_chunks.push_back(std::make_unique<T[]>(kChunkMask + 1));
        T& slot = (*this)[m_size++];
        slot = value;
        return slot;
    }
    void clear() {
        m_chunks.clear();
        m_size = 0;
    }

private:
    static constexpr std::size_t kChunkBits = 12;
    static constexpr std::size_t kChunkMask = (std::size_t{1} << kChunkBits) - 1;
    std::vector<std::unique_ptr<T[]>> m_chunks;
    std::size_t m_size = 0;
};

// Open addressing (linear probing) over entries kept elsewhere, by index: a slot holds the high half
// of the hash as a tag and index + 1, so most mismatches are rejected without touching the entry.
class IndexTable {
public:
    IndexTable() : m_slots(1024, 0), m_mask(1023) {}

    template <class Matches> std::uint32_t find(std::uint64_t hash, Matches matches) const {
        const std::uint64_t tag = hash >> 32;
        for (std::size_t i = hash & m_mask;; i = (i + 1) & m_mask) {
            const std::uint64_t slot = m_slots[i];
            if (slot == 0) return kNoIndex;
            const auto index = static_cast<std::uint32_t>(slot) - 1;
            if ((slot >> 32) == tag && matches(index)) return index;
        }
    }

    // Entries are 0..index-1 before this one; hashOf(i) re-hashes them when the table grows.
    template <class HashOf> void insert(std::uint64_t hash, std::uint32_t index, HashOf hashOf) {
        if ((std::size_t{index} + 1) * 4 > m_slots.size() * 3) {
            m_slots.assign(m_slots.size() * 2, 0);
            m_mask = m_slots.size() - 1;
            for (std::uint32_t i = 0; i < index; ++i)
                place(hashOf(i), i);
        }
        place(hash, index);
    }

private:
    void place(std::uint64_t hash, std::uint32_t index) {
        std::size_t i = hash & m_mask;
        while (m_slots[i] != 0)
            i = (i + 1) & m_mask;
        m_slots[i] = (hash >> 32 << 32) | (std::uint64_t{index} + 1);
    }

    std::vector<std::uint64_t> m_slots; // 0 = empty
    std::size_t m_mask;
};


} // namespace pipescope::compact
