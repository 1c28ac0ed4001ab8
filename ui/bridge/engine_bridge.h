#pragma once
// The bridge from a running engine to the UI. A poll thread of its own (never the UI thread,
// never an engine thread) takes RunEngine::stats() and the capture's newest seq every ~100 ms,
// turns them into an immutable EngineSnapshot with rates, and hands the newest one to the UI
// thread: at most one queued delivery is pending at a time, so a slow UI coalesces snapshots
// instead of queueing them, and neither side ever waits for the other.
//
// When RunEngine gains its observer interface, publish() is what the observer calls (from any
// thread); the poll thread is then not needed.

#include <QObject>
#include <QString>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "pipeline/run.h"

namespace pipescope {

struct EngineSnapshot {
    RunStats stats;
    std::int64_t newestSeq = 0;      // events committed to the capture up to this seq
    double eventsPerSecond = 0;      // over the last second
    double requestsPerSecond = 0;
    std::int64_t takenAtMillis = 0;  // epoch ms
    std::uint64_t sequence = 0;      // increases by one per snapshot taken
};

class EngineBridge : public QObject {
    Q_OBJECT

public:
    explicit EngineBridge(QObject* parent = nullptr);
    ~EngineBridge() override; // stops polling

    // Starts polling `stats` (called on the poll thread) and the capture at `capturePath`.
    void attach(std::function<RunStats()> stats, const QString& capturePath, int intervalMillis = 100);
    void detach();
    // Any thread: offers a snapshot; the UI gets the newest one on its next turn.
    void publish(EngineSnapshot snapshot);
    std::optional<EngineSnapshot> latest() const;

signals:
    void snapshot(const pipescope::EngineSnapshot& snapshot);

private:
    void deliver();

    std::thread m_thread;
    std::mutex m_stopMutex;
    std::condition_variable m_stopWake;
    bool m_stop = false;
    mutable std::mutex m_mutex; // guards m_latest
    std::optional<EngineSnapshot> m_latest;
    std::atomic<bool> m_deliveryPending{false};
};

} // namespace pipescope

Q_DECLARE_METATYPE(pipescope::EngineSnapshot)
