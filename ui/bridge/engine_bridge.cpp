#include "bridge/engine_bridge.h"

#include <QMetaObject>

#include <chrono>
#include <memory>

#include "store/capture_store.h"

namespace pipescope {

namespace {
std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}
} // namespace

EngineBridge::EngineBridge(QObject* parent) : QObject(parent) { qRegisterMetaType<pipescope::EngineSnapshot>(); }

EngineBridge::~EngineBridge() { detach(); }

void EngineBridge::attach(std::function<RunStats()> stats, const QString& capturePath, int intervalMillis) {
    detach();
    {
        std::lock_guard lock(m_stopMutex);
        m_stop = false;
    }
    const std::string path = capturePath.toStdString();
    m_thread = std::thread([this, stats = std::move(stats), path, intervalMillis]() {
        std::unique_ptr<CaptureReader> reader;
        // Rates over about the last second: (time, events, requests) of recent polls.
        struct Sample {
            std::int64_t at;
            std::uint64_t events;
            std::uint64_t requests;
        };
        std::deque<Sample> samples;
        std::uint64_t sequence = 0;
        for (;;) {
            {
                std::unique_lock lock(m_stopMutex);
                if (m_stopWake.wait_for(lock, std::chrono::milliseconds(intervalMillis), [this] { return m_stop; }))
                    return;
            }
            EngineSnapshot s;
            s.stats = stats();
            s.takenAtMillis = nowMillis();
            s.sequence = ++sequence;
            try {
                if (!reader) reader = std::make_unique<CaptureReader>(path);
                s.newestSeq = reader->maxEventSeq();
            } catch (const std::exception&) {
                reader.reset(); // not created yet, or unreadable for a moment: next poll
            }
            samples.push_back({s.takenAtMillis, s.stats.events, s.stats.requestsAccepted});
            while (samples.size() > 2 && samples.front().at < s.takenAtMillis - 1000) samples.pop_front();
            const auto& first = samples.front();
            const double seconds = double(s.takenAtMillis - first.at) / 1000.0;
            if (seconds > 0) {
                s.eventsPerSecond = double(s.stats.events - first.events) / seconds;
                s.requestsPerSecond = double(s.stats.requestsAccepted - first.requests) / seconds;
            }
            publish(std::move(s));
        }
    });
}

void EngineBridge::detach() {
    {
        std::lock_guard lock(m_stopMutex);
        m_stop = true;
    }
    m_stopWake.notify_all();
    if (m_thread.joinable()) m_thread.join();
}

void EngineBridge::publish(EngineSnapshot snapshot) {
    {
        std::lock_guard lock(m_mutex);
        m_latest = std::move(snapshot);
    }
    if (!m_deliveryPending.exchange(true))
        QMetaObject::invokeMethod(this, &EngineBridge::deliver, Qt::QueuedConnection);
}

std::optional<EngineSnapshot> EngineBridge::latest() const {
    std::lock_guard lock(m_mutex);
    return m_latest;
}

void EngineBridge::deliver() {
    m_deliveryPending = false;
    std::optional<EngineSnapshot> s = latest();
    if (s) emit snapshot(*s);
}

} // namespace pipescope
