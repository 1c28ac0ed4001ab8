#include "dedup/zeroed_page_buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#if defined(__unix__)
#include <sys/mman.h>
#endif

namespace pipescope::dedup_detail {

namespace {
constexpr std::size_t kAlignment = 64;
// Below this a memset is cheap and a whole mapping is not worth it.
constexpr std::size_t kMapThresholdBytes = std::size_t{1} << 20;
} // namespace

ZeroedPageBuffer::ZeroedPageBuffer(std::size_t bytes) : m_bytes(bytes) {
    if (bytes == 0) return;
#if defined(__unix__)
    if (bytes >= kMapThresholdBytes) {
        void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mapping == MAP_FAILED) throw std::bad_alloc();
        m_data = mapping;
        m_mapped = true;
        return;
    }
#endif
    const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    m_data = std::aligned_alloc(kAlignment, rounded);
    if (m_data == nullptr) throw std::bad_alloc();
    std::memset(m_data, 0, rounded);
}

ZeroedPageBuffer::~ZeroedPageBuffer() {
    release();
}

ZeroedPageBuffer::ZeroedPageBuffer(ZeroedPageBuffer&& other) noexcept
    : m_data(std::exchange(other.m_data, nullptr)), m_bytes(std::exchange(other.m_bytes, 0)),
      m_mapped(std::exchange(other.m_mapped, false)) {}

ZeroedPageBuffer& ZeroedPageBuffer::operator=(ZeroedPageBuffer&& other) noexcept {
    if (this != &other) {
        release();
        m_data = std::exchange(other.m_data, nullptr);
        m_bytes = std::exchange(other.m_bytes, 0);
        m_mapped = std::exchange(other.m_mapped, false);
    }
    return *this;
}

void ZeroedPageBuffer::release() noexcept {
#if defined(__unix__)
    if (m_mapped) {
        ::munmap(m_data, m_bytes);
        m_data = nullptr;
        m_mapped = false;
        return;
    }
#endif
    std::free(m_data);
    m_data = nullptr;
}

} // namespace pipescope::dedup_detail
