#pragma once
// Private to core/dedup. A zero-filled, 64-byte-aligned allocation for the dedup window's tables.
// Not std::vector: fresh anonymous pages are already zero, so a 250 MB table costs no memset up
// front (pages are faulted in as keys arrive), and a Bloom block must not straddle two cache
// lines. (Transparent huge pages were tried too: no measurable gain on the lookup rate here,
// slower first-touch faults, so no madvise.)

#include <cstddef>

namespace pipescope::dedup_detail {

class ZeroedPageBuffer {
public:
    ZeroedPageBuffer() = default;
    // Throws std::bad_alloc when the memory cannot be had.
    explicit ZeroedPageBuffer(std::size_t bytes);
    ~ZeroedPageBuffer();
    ZeroedPageBuffer(ZeroedPageBuffer&& other) noexcept;
    ZeroedPageBuffer& operator=(ZeroedPageBuffer&& other) noexcept;
    ZeroedPageBuffer(const ZeroedPageBuffer&) = delete;
    ZeroedPageBuffer& operator=(const ZeroedPageBuffer&) = delete;

    void* data() const { return m_data; }
    std::size_t size() const { return m_bytes; }

private:
    void release() noexcept;

    void* m_data = nullptr;
    std::size_t m_bytes = 0;
    bool m_mapped = false; // from mmap (large) rather than aligned_alloc (small)
};

} // namespace pipescope::dedup_detail
