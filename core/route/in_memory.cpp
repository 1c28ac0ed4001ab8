#include "route/in_memory.h"

#include <algorithm>
#include <stdexcept>

namespace pipescope {

std::int64_t InMemoryEventFeed::append(OutgoingEvent event) {
    std::lock_guard lock(m_mutex);
    if (event.seq == 0) event.seq = m_lastSeq + 1;
    if (event.seq <= m_lastSeq)
        throw std::invalid_argument("InMemoryEventFeed: seq " + std::to_string(event.seq) +
                                    " does not ascend (last " + std::to_string(m_lastSeq) + ")");
    m_lastSeq = event.seq;
    m_events.push_back(std::move(event));
    return m_lastSeq;
}

std::int64_t InMemoryEventFeed::appendHidden() {
    std::lock_guard lock(m_mutex);
    return ++m_lastSeq;
}

std::vector<OutgoingEvent> InMemoryEventFeed::after(std::int64_t seq, std::size_t limit) {
    std::lock_guard lock(m_mutex);
    auto first =
        std::upper_bound(m_events.begin(), m_events.end(), seq,
                         [](std::int64_t value, const OutgoingEvent& event) { return value < event.seq; });
    const auto count = std::min<std::size_t>(limit, static_cast<std::size_t>(m_events.end() - first));
    return {first, first + static_cast<std::ptrdiff_t>(count)};
}

std::int64_t InMemoryEventFeed::lastSeq() {
    std::lock_guard lock(m_mutex);
    return m_lastSeq;
}

void InMemoryDeliveryLog::recordAttempt(const DeliveryAttempt& attempt) {
    std::lock_guard lock(m_mutex);
    m_attempts.push_back(attempt);
}

void InMemoryDeliveryLog::deadLetter(const std::string& destination, const std::vector<std::int64_t>& seqs,
                                     const std::string& reason) {
    std::lock_guard lock(m_mutex);
    m_deadLetters.push_back({destination, seqs, reason});
}

std::int64_t InMemoryDeliveryLog::loadCursor(const std::string& destination) {
    return cursor(destination);
}

void InMemoryDeliveryLog::saveCursor(const std::string& destination, std::int64_t seq) {
    std::lock_guard lock(m_mutex);
    m_cursors[destination] = seq;
}

std::vector<DeliveryAttempt> InMemoryDeliveryLog::attempts(const std::string& destination) const {
    std::lock_guard lock(m_mutex);
    std::vector<DeliveryAttempt> selected;
    for (const DeliveryAttempt& attempt : m_attempts)
        if (destination.empty() || attempt.destination == destination) selected.push_back(attempt);
    return selected;
}

std::vector<InMemoryDeliveryLog::DeadLetter>
InMemoryDeliveryLog::deadLetters(const std::string& destination) const {
    std::lock_guard lock(m_mutex);
    std::vector<DeadLetter> selected;
    for (const DeadLetter& letter : m_deadLetters)
        if (destination.empty() || letter.destination == destination) selected.push_back(letter);
    return selected;
}

std::int64_t InMemoryDeliveryLog::cursor(const std::string& destination) const {
    std::lock_guard lock(m_mutex);
    const auto found = m_cursors.find(destination);
    return found == m_cursors.end() ? 0 : found->second;
}

} // namespace pipescope
