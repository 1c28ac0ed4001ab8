#pragma once
// In-memory EventFeed and DeliveryLog: for tests, and for runs that need no durable cursor.
// Both are thread-safe, as the interfaces require.

#include "route/destination.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace pipescope {

class InMemoryEventFeed final : public EventFeed {
public:
    // Appends an event; a seq of 0 takes the next one. Seqs must ascend. Returns the seq.
    std::int64_t append(OutgoingEvent event);
    // Takes the next seq for an event the feed never returns (invalid or duplicate), as the
    // store does: lastSeq() moves, after() skips it.
    std::int64_t appendHidden();

    std::vector<OutgoingEvent> after(std::int64_t seq, std::size_t limit) override;
    std::int64_t lastSeq() override;

private:
    std::mutex m_mutex;
    std::vector<OutgoingEvent> m_events;
    std::int64_t m_lastSeq = 0;
};

class InMemoryDeliveryLog final : public DeliveryLog {
public:
    struct DeadLetter {
        std::string destination;
        std::vector<std::int64_t> seqs;
        std::string reason;
    };

    void recordAttempt(const DeliveryAttempt& attempt) override;
    void deadLetter(const std::string& destination, const std::vector<std::int64_t>& seqs,
                    const std::string& reason) override;
    std::int64_t loadCursor(const std::string& destination) override;
    void saveCursor(const std::string& destination, std::int64_t seq) override;

    // Snapshots, filtered by destination when one is named.
    std::vector<DeliveryAttempt> attempts(const std::string& destination = {}) const;
    std::vector<DeadLetter> deadLetters(const std::string& destination = {}) const;
    std::int64_t cursor(const std::string& destination) const;

private:
    mutable std::mutex m_mutex;
    std::vector<DeliveryAttempt> m_attempts;
    std::vector<DeadLetter> m_deadLetters;
    std::map<std::string, std::int64_t> m_cursors;
};

} // namespace pipescope
