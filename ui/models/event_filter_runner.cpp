#include "models/event_filter_runner.h"

#include <QMetaObject>

#include <chrono>

namespace pipescope {

EventFilterRunner::EventFilterRunner(QObject* parent) : QObject(parent) {}

EventFilterRunner::~EventFilterRunner() {
    cancel();
    join();
}

void EventFilterRunner::join() {
    if (m_thread.joinable()) m_thread.join();
}

void EventFilterRunner::cancel() {
    if (m_cancel) m_cancel->store(true);
    ++m_generation;
    m_running = false;
}

void EventFilterRunner::start(const QString& capturePath, PredicateFactory factory, bool followLive,
                              InitialScan initialScan) {
    cancel();
    join();
    m_cancel = std::make_shared<std::atomic<bool>>(false);
    m_running = true;
    const std::uint64_t generation = ++m_generation;
    auto cancelled = m_cancel;
    const std::string path = capturePath.toStdString();

    // Results are posted to this object's thread; a result of an older generation (a scan that
    // was cancelled while its batch was in the queue) is dropped there.
    auto post = [this, generation](std::function<void(EventFilterRunner*)> function) {
        QMetaObject::invokeMethod(
            this,
            [this, generation, function = std::move(function)]() {
                if (generation == m_generation) function(this);
            },
            Qt::QueuedConnection);
    };

    m_thread = std::thread([path, factory = std::move(factory), followLive, cancelled, post,
                            initialScan = std::move(initialScan)]() {
        try {
            const CaptureReader reader(path);
            std::string error;
            const EventPredicate predicate = factory(reader, *cancelled, error);
            if (cancelled->load()) return;
            if (!predicate) {
                post([message = QString::fromStdString(error.empty() ? "the filter could not be prepared" : error)](
                         EventFilterRunner* runner) {
                    runner->m_running = false;
                    emit runner->failed(message);
                });
                return;
            }
            constexpr std::int64_t kBatch = 2048;
            std::int64_t last = 0;
            std::int64_t total = reader.maxEventSeq();
            qint64 matches = 0;
            bool reachedEnd = false;
            QVector<qint64> pending;
            if (initialScan) {
                auto lastProgress = std::chrono::steady_clock::now();
                const auto found = initialScan(path, [&](std::int64_t done, std::int64_t all) {
                    const auto now = std::chrono::steady_clock::now();
                    if (now - lastProgress >= std::chrono::milliseconds(50)) {
                        lastProgress = now;
                        post([done, all](EventFilterRunner* runner) { emit runner->progress(done, all); });
                    }
                    return !cancelled->load();
                });
                if (!found || cancelled->load()) return;
                // The scan saw at least the events up to `total`; the live part goes on after
                // them (a match it finds again is not shown twice: the model keeps seqs ascending).
                last = std::max(total, found->empty() ? 0 : found->back());
                matches = qint64(found->size());
                for (std::size_t i = 0; i < found->size(); i += 65536) {
                    QVector<qint64> batch(found->begin() + std::ptrdiff_t(i),
                                          found->begin() + std::ptrdiff_t(std::min(found->size(), i + 65536)));
                    post([batch = std::move(batch)](EventFilterRunner* runner) { emit runner->matched(batch); });
                }
                post([last](EventFilterRunner* runner) { emit runner->progress(last, last); });
                reachedEnd = true;
                post([matches, followLive](EventFilterRunner* runner) {
                    if (!followLive) runner->m_running = false;
                    emit runner->scanned(matches);
                });
                if (!followLive) return;
            }
            auto lastPost = std::chrono::steady_clock::now();
            while (!cancelled->load()) {
                const auto rows = reader.eventsAfter(last, kBatch);
                for (const StoredEvent& event : rows) {
                    if (cancelled->load()) return;
                    if (predicate(event)) {
                        pending.push_back(event.seq);
                        ++matches;
                    }
                    last = event.seq;
                }
                const bool atEnd = std::int64_t(rows.size()) < kBatch;
                const auto now = std::chrono::steady_clock::now();
                if (atEnd || now - lastPost >= std::chrono::milliseconds(50)) {
                    lastPost = now;
                    total = std::max(total, last);
                    QVector<qint64> batch;
                    batch.swap(pending);
                    post([batch = std::move(batch), last, total](EventFilterRunner* runner) {
                        if (!batch.isEmpty()) emit runner->matched(batch);
                        emit runner->progress(last, total);
                    });
                }
                if (atEnd) {
                    if (!reachedEnd) {
                        reachedEnd = true;
                        post([matches, followLive](EventFilterRunner* runner) {
                            if (!followLive) runner->m_running = false;
                            emit runner->scanned(matches);
                        });
                    }
                    if (!followLive) break;
                    std::this_thread::sleep_for(std::chrono::milliseconds(150));
                    total = std::max(total, reader.maxEventSeq());
                }
            }
        } catch (const std::exception& e) {
            if (cancelled->load()) return;
            post([message = QString::fromStdString(e.what())](EventFilterRunner* runner) {
                runner->m_running = false;
                emit runner->failed(message);
            });
        }
    });
}

} // namespace pipescope
