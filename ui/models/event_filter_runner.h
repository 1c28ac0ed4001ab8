#pragma once
// Runs a filter over a capture off the UI thread: a worker thread with its own read-only
// connection scans the events in seq order and reports the matching seqs in batches (queued,
// at most every ~50 ms), with progress; cancel() stops it between two events. With `followLive`
// the worker keeps scanning the events committed after it reached the end, so a filtered view of
// a live capture keeps growing.

#include <QObject>
#include <QString>
#include <QVector>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>
#include <thread>

#include "store/capture_store.h"

namespace pipescope {

using EventPredicate = std::function<bool(const StoredEvent&)>;
// Built on the worker thread before the scan (it may read the capture itself, e.g. to find the
// ids of a person); returns an empty function and sets `error` when it cannot. `cancelled` says
// when to give up early.
using PredicateFactory =
    std::function<EventPredicate(const CaptureReader& reader, const std::atomic<bool>& cancelled, std::string& error)>;

// Optionally, the initial scan done faster than event by event (the filter language pushed down
// into SQLite): returns the matching seqs, or nullopt when cancelled. progress(done, total)
// returns false to cancel.
using InitialScan = std::function<std::optional<std::vector<std::int64_t>>(
    const std::string& capturePath, const std::function<bool(std::int64_t done, std::int64_t total)>& progress)>;

class EventFilterRunner : public QObject {
    Q_OBJECT

public:
    explicit EventFilterRunner(QObject* parent = nullptr);
    ~EventFilterRunner() override; // cancels and joins

    // Cancels a running scan (its results are dropped) and starts a new one.
    // With `initialScan`, it finds the matches among the events already captured, and the
    // predicate only those committed after (when following a live capture).
    void start(const QString& capturePath, PredicateFactory factory, bool followLive, InitialScan initialScan = {});
    void cancel();
    bool isRunning() const { return m_running; }

signals:
    void matched(const QVector<qint64>& seqs);
    void progress(qint64 scanned, qint64 total);
    // The initial scan reached the end (a live scan goes on following).
    void scanned(qint64 matches);
    void failed(const QString& error);

private:
    void join();

    std::thread m_thread;
    std::shared_ptr<std::atomic<bool>> m_cancel;
    std::uint64_t m_generation = 0;
    bool m_running = false;
};

} // namespace pipescope
