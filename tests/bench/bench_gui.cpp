// bench_gui: how the desktop inspector holds up (issue 10), each figure beside a reference
// measured in the same run.
//
//   1. A capture of N events (default 1,000,000) opened in the window: time to the first rows
//      painted (reference: a bare CaptureReader open + its first 256-row window), scrolling to
//      the end, a field filter and a property filter over all of it (references: the same count
//      by a plain SQLite query, and by core/filter's CaptureFilter without the window), RSS.
//   2. The window on a live pipeline while a load generator posts E events/s (default 20,000)
//      to its collector: the longest UI event-loop stall (a 5 ms timer records its lateness) and
//      the lag until the rows are in the table.
//
//   bench_gui [--events N] [--rate E] [--seconds S] [--capture FILE]
#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QScrollBar>
#include <QStandardPaths>
#include <QTableView>
#include <QTemporaryDir>
#include <QTimer>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include <curl/curl.h>
#include <sqlite3.h>

#include "filter/filter.h"
#include "filter/filter_sql.h"
#include "main_window.h"
#include "models/event_table_model.h"
#include "store/capture_store.h"

using namespace pipescope;

namespace {

long rssKiB() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

double ms(QElapsedTimer& timer) { return double(timer.nsecsElapsed()) / 1e6; }

// Runs the event loop (as app.exec() would, without spinning) until `done` or the timeout.
void waitUntil(const std::function<bool()>& done, int timeoutMs = 600000) {
    QElapsedTimer t;
    t.start();
    if (done()) return;
    QEventLoop loop;
    QTimer check;
    QObject::connect(&check, &QTimer::timeout, &loop, [&] {
        if (done() || t.elapsed() >= timeoutMs) loop.quit();
    });
    check.start(2);
    loop.exec();
}

// A capture like a busy product's: page views, signups and payments (amount 1..200), a few
// percent invalid and duplicates, two streams.
void writeCapture(const std::string& path, std::int64_t events) {
    CaptureWriter writer(path);
    std::mt19937_64 rng(42);
    const char* names[] = {"$pageview", "signup_started", "payment_completed", "checkout/step_viewed", "$identify"};
    for (std::int64_t seq = 1; seq <= events; ++seq) {
        StoredEvent e;
        e.seq = seq;
        e.name = names[rng() % 5];
        e.distinctId = "user-" + std::to_string(rng() % 50000);
        e.eventId = "0190c3a0-" + std::to_string(seq);
        e.idSource = "posthog_uuid";
        e.stream = rng() % 3 ? "client" : "server";
        e.format = "posthog";
        e.timestamp = 1763632800000 + seq * 7;
        e.receivedAt = *e.timestamp + 40;
        e.originSource = "http:/batch/";
        e.ingestId = seq / 50 + 1;
        e.originIndex = std::int32_t(seq % 50);
        const int r = int(rng() % 100);
        e.verdict = r < 4 ? Verdict::Invalid : r < 7 ? Verdict::Duplicate : r < 15 ? Verdict::Unplanned : Verdict::Valid;
        const int amount = int(rng() % 200) + 1;
        e.properties = "{\"amount\":" + std::to_string(amount) + ",\"currency\":\"EUR\",\"$lib\":\"web\",\"$session_id\":\"s-" +
                       std::to_string(rng() % 100000) + "\",\"$current_url\":\"https://shop.example.com/p/" +
                       std::to_string(rng() % 1000) + "\"}";
        e.raw = "{\"event\":\"" + e.name + "\",\"distinct_id\":\"" + e.distinctId + "\",\"properties\":" + e.properties + "}";
        e.failures = e.verdict == Verdict::Invalid ? "[{\"pointer\":\"/amount\",\"keyword\":\"minimum\",\"message\":\"too small\"}]" : "[]";
        writer.append(std::move(e));
    }
    writer.close();
}

std::int64_t sqlCount(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
    std::int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

struct FilterFigures {
    double windowMs = 0;
    std::int64_t rows = 0;
};

FilterFigures filterInWindow(MainWindow& window, const QString& text) {
    bool scanned = false;
    const auto connection = QObject::connect(&window, &MainWindow::filterScanned, [&] { scanned = true; });
    QElapsedTimer t;
    t.start();
    window.applyFilterText(text);
    waitUntil([&] { return scanned; });
    QObject::disconnect(connection);
    return {ms(t), window.eventModel()->rowCount()};
}

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

} // namespace

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QStandardPaths::setTestModeEnabled(true);
    QApplication::setOrganizationName("PipescopeBench");
    QApplication::setApplicationName("bench_gui");
    std::int64_t events = 1000000;
    int rate = 20000, seconds = 5;
    std::string capture;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i];
        if (arg == "--events") events = std::stoll(argv[i + 1]);
        else if (arg == "--rate") rate = std::stoi(argv[i + 1]);
        else if (arg == "--seconds") seconds = std::stoi(argv[i + 1]);
        else if (arg == "--capture") capture = argv[i + 1];
    }
    QTemporaryDir dir;
    if (capture.empty()) {
        capture = dir.filePath("bench.pipescope").toStdString();
        QElapsedTimer t;
        t.start();
        writeCapture(capture, events);
        std::printf("capture: %lld events written in %.1f s (%s)\n", (long long)events, ms(t) / 1000, capture.c_str());
    }
    const long rssStart = rssKiB();

    // --- 1. a big capture, opened ---
    {
        QElapsedTimer t;
        t.start();
        {
            const CaptureReader reader(capture);
            const auto rows = reader.rowsAfter(0, 256);
            std::printf("reference  open + first 256 rows (CaptureReader)           %8.1f ms (%zu rows)\n", ms(t), rows.size());
        }
        MainWindow window;
        window.resize(1400, 900);
        window.show();
        QApplication::processEvents();
        t.restart();
        window.openCapture(QString::fromStdString(capture));
        window.eventView()->viewport()->repaint(); // the first rows painted
        const double firstRows = ms(t);
        std::printf("window     open to first rows painted                      %8.1f ms (%d rows in the model, %llu pages read)\n",
                    firstRows, window.eventModel()->rowCount(), (unsigned long long)window.eventModel()->pagesFetched());

        t.restart();
        window.eventView()->scrollToBottom();
        window.eventView()->viewport()->repaint();
        const QModelIndex last = window.eventView()->indexAt(window.eventView()->viewport()->rect().bottomLeft() - QPoint(0, 5));
        std::printf("window     scroll to the end, painted                      %8.1f ms (bottom row seq %lld)\n", ms(t),
                    (long long)window.eventModel()->seqAt(last.row()));
        t.restart();
        for (int i = 0; i < 200; ++i) {
            window.eventView()->verticalScrollBar()->setValue(int(std::int64_t(window.eventView()->verticalScrollBar()->maximum()) * i / 200));
            window.eventView()->viewport()->repaint();
        }
        std::printf("window     200 jumps across the capture, each painted      %8.1f ms per jump\n", ms(t) / 200);

        t.restart();
        const std::int64_t sqlInvalid = sqlCount(capture, "SELECT count(*) FROM events WHERE verdict = 'invalid'");
        std::printf("reference  verdict == invalid, plain SQLite count(*)       %8.1f ms (%lld)\n", ms(t), (long long)sqlInvalid);
        const FilterFigures field = filterInWindow(window, "verdict == invalid");
        std::printf("window     verdict == invalid, rows in the table           %8.1f ms (%lld)%s\n", field.windowMs,
                    (long long)field.rows, field.rows == sqlInvalid ? "" : "  MISMATCH");

        const auto parsed = FilterExpression::parse("properties.amount > 100");
        t.restart();
        const auto direct = CaptureFilter(capture, parsed.expression()).count();
        std::printf("reference  properties.amount > 100, CaptureFilter count    %8.1f ms (%lld)\n", ms(t),
                    (long long)direct.value_or(-1));
        t.restart();
        std::int64_t scanned = 0;
        CaptureReader(capture).forEachEvent([&](const StoredEvent& e) {
            scanned += parsed.expression().matches(e);
            return true;
        });
        std::printf("reference  properties.amount > 100, reader scan + matches  %8.1f ms (%lld)\n", ms(t), (long long)scanned);
        const FilterFigures property = filterInWindow(window, "properties.amount > 100");
        std::printf("window     properties.amount > 100, rows in the table      %8.1f ms (%lld)%s\n", property.windowMs,
                    (long long)property.rows, property.rows == direct.value_or(-2) ? "" : "  MISMATCH");
        window.eventView()->scrollToBottom();
        window.eventView()->viewport()->repaint();
        std::printf("window     RSS after open, scrolling and filters           %8.1f MB (%.1f MB before opening; goal < 300 MB)\n",
                    rssKiB() / 1024.0, rssStart / 1024.0);
        window.clearFilter();
    }

    // --- 2. live ingest: UI stalls while the collector takes `rate` events/s ---
    {
        MainWindow window;
        window.resize(1400, 900);
        window.show();
        RunConfig config = MainWindow::defaultConfig();
        config.collector.port = 0;
        config.capturePath = dir.filePath("live.pipescope").toStdString();
        config.durability = Durability::Process;
        if (!window.startLive(config)) {
            std::printf("live: the window could not start: %s\n", window.lastError().toStdString().c_str());
            return 1;
        }
        const std::string url = window.collectorUrl().toStdString() + "/batch/";
        // The stall probe: a 5 ms timer, its worst lateness.
        QElapsedTimer clock;
        clock.start();
        qint64 expected = 5, worstLate = 0;
        QTimer probe;
        probe.setTimerType(Qt::PreciseTimer);
        QObject::connect(&probe, &QTimer::timeout, [&] {
            const qint64 now = clock.elapsed();
            worstLate = std::max(worstLate, now - expected);
            expected = now + 5;
        });
        probe.start(5);

        constexpr int kPerRequest = 100;
        std::atomic<std::int64_t> sent{0}, refused{0};
        std::atomic<bool> stop{false}, loadDone{false};
        const int requestsPerSecond = std::max(1, rate / kPerRequest);
        std::thread load([&] {
            CURL* curl = curl_easy_init();
            curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
            curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
            const auto start = std::chrono::steady_clock::now();
            for (std::int64_t r = 0; !stop && r < std::int64_t(requestsPerSecond) * seconds; ++r) {
                std::this_thread::sleep_until(start + std::chrono::microseconds(r * 1000000 / requestsPerSecond));
                std::string body = "{\"api_key\":\"phc_bench\",\"batch\":[";
                for (int i = 0; i < kPerRequest; ++i) {
                    const std::int64_t n = r * kPerRequest + i;
                    body += (i ? "," : "") + std::string("{\"event\":\"payment_completed\",\"distinct_id\":\"user-") +
                            std::to_string(n % 5000) + "\",\"uuid\":\"00000000-0000-4000-8000-" + std::to_string(100000000000 + n) +
                            "\",\"properties\":{\"amount\":" + std::to_string(n % 300) + ",\"currency\":\"EUR\"}}";
                }
                body += "]}";
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
                long status = 0;
                if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
                if (status == 200) sent += kPerRequest;
                else refused += kPerRequest;
            }
            curl_slist_free_all(headers);
            curl_easy_cleanup(curl);
            loadDone = true;
        });
        // While it runs: how far the table is behind what the collector acknowledged.
        std::int64_t worstBehind = 0;
        waitUntil([&] {
            worstBehind = std::max<std::int64_t>(worstBehind, sent.load() - window.eventModel()->rowCount());
            return loadDone.load();
        }, seconds * 1000 + 60000);
        stop = true;
        load.join();
        QElapsedTimer lag;
        lag.start();
        waitUntil([&] { return window.eventModel()->rowCount() >= sent.load(); }, 60000);
        const double lagMs = ms(lag);
        std::printf("live       %d s at %d events/s asked: %lld accepted (%.0f/s), %lld refused (429/503)\n", seconds, rate,
                    (long long)sent.load(), double(sent.load()) / seconds, (long long)refused.load());
        std::printf("live       longest UI event-loop stall (5 ms timer lateness) %6lld ms (goal < 50 ms)\n", (long long)worstLate);
        std::printf("live       rows in the table after the last request        %8.1f ms (%d rows)\n", lagMs,
                    window.eventModel()->rowCount());
        std::printf("live       table behind the acknowledged events, at most  %8lld rows (%.0f ms at the rate)\n",
                    (long long)worstBehind, 1000.0 * double(worstBehind) / std::max(1.0, double(sent.load()) / seconds));
        probe.stop();
        window.close();
    }
    return 0;
}
