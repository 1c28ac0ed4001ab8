// Collector load benchmark: a load generator (libcurl multi, keep-alive connections on loopback)
// against the real `pipescope-cli run` (durable: every 200 is committed to the capture, with an
// fsync per commit and, for comparison, without: `"durability": "process"`) and,
// side by side, against the same collector with an in-memory sink that acknowledges at once (the
// reference: HTTP and decoding without the store). Prints accepted events/s and p50/p99 latency
// for /batch/ with 100-event batches and for single-event /capture/, then the peak memory of the
// run process under a 10x overload, which must answer 429 and not grow.
//
//   bench_collector [--cli PATH] [--seconds N] [--connections N]
//
// Figures only: the exit status is non-zero only when something is wrong (no 200s at all, the
// process failed, a 5xx), never because of a timing.
#include <curl/curl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "collector/collector.h"
#include "store/capture_store.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

struct LoadResult {
    std::uint64_t requests = 0, events = 0;
    std::map<long, std::uint64_t> statuses;
    std::vector<double> latenciesMillis; // of 200s
    double seconds = 0;
    double percentile(double p) {
        if (latenciesMillis.empty()) return 0;
        std::sort(latenciesMillis.begin(), latenciesMillis.end());
        return latenciesMillis[std::min(latenciesMillis.size() - 1, std::size_t(p * latenciesMillis.size()))];
    }
};

std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

std::string eventJson(std::uint64_t i) {
    char buffer[512];
    std::snprintf(buffer, sizeof buffer,
                  R"({"event":"order_completed","distinct_id":"user-%llu","uuid":"bench-%llu","timestamp":"2026-11-20T10:00:00Z",)"
                  R"("properties":{"$lib":"posthog-node","amount":%llu.5,"currency":"EUR","sku":"SKU-%llu","coupon":null}})",
                  static_cast<unsigned long long>(i % 5000), static_cast<unsigned long long>(i),
                  static_cast<unsigned long long>(i % 997), static_cast<unsigned long long>(i % 131));
    return buffer;
}

// Keeps `connections` requests in flight for `seconds` (closed loop), or, with `eventsPerSecond`,
// starts requests on a fixed schedule (open loop: an offered load, up to `connections` in flight).
LoadResult drive(const std::string& url, int connections, double seconds, std::size_t eventsPerRequest,
                 std::atomic<std::uint64_t>& counter, double eventsPerSecond = 0) {
    LoadResult result;
    CURLM* multi = curl_multi_init();
    struct Slot {
        CURL* easy = nullptr;
        std::string body;
        curl_slist* headers = nullptr;
        Clock::time_point started;
    };
    std::vector<Slot> slots(static_cast<std::size_t>(connections));
    auto arm = [&](Slot& slot) {
        const std::uint64_t first = counter.fetch_add(eventsPerRequest);
        if (eventsPerRequest == 1) {
            slot.body = eventJson(first);
            slot.body.insert(1, R"("api_key":"phc_bench",)");
        } else {
            slot.body = R"({"api_key":"phc_bench","batch":[)";
            for (std::size_t k = 0; k < eventsPerRequest; ++k) slot.body += (k ? "," : "") + eventJson(first + k);
            slot.body += "]}";
        }
        curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDS, slot.body.data());
        curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(slot.body.size()));
        slot.started = Clock::now();
        curl_multi_add_handle(multi, slot.easy);
    };
    for (Slot& slot : slots) {
        slot.easy = curl_easy_init();
        slot.headers = curl_slist_append(nullptr, "Content-Type: application/json");
        slot.headers = curl_slist_append(slot.headers, "Expect:");
        curl_easy_setopt(slot.easy, CURLOPT_URL, url.c_str());
        curl_easy_setopt(slot.easy, CURLOPT_HTTPHEADER, slot.headers);
        curl_easy_setopt(slot.easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(slot.easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(slot.easy, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(slot.easy, CURLOPT_PRIVATE, &slot);
        if (eventsPerSecond <= 0) arm(slot);
    }
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    int running = eventsPerSecond <= 0 ? connections : 0;
    std::vector<Slot*> idle;
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(eventsPerSecond > 0 ? double(eventsPerRequest) / eventsPerSecond : 0));
    auto next = start;
    if (eventsPerSecond > 0)
        for (Slot& slot : slots) idle.push_back(&slot);
    const auto schedule = [&] {
        const auto now = Clock::now();
        while (!idle.empty() && now >= next && now < end) {
            arm(*idle.back());
            idle.pop_back();
            ++running;
            next += interval;
        }
    };
    if (eventsPerSecond > 0) schedule();
    while (running > 0 || (eventsPerSecond > 0 && Clock::now() < end)) {
        curl_multi_perform(multi, &running);
        int queued = 0;
        while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
            if (message->msg != CURLMSG_DONE) continue;
            Slot* slot = nullptr;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &slot);
            long status = 0;
            curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            ++result.requests;
            ++result.statuses[message->data.result == CURLE_OK ? status : -1];
            if (status == 200) {
                result.events += eventsPerRequest;
                result.latenciesMillis.push_back(
                    std::chrono::duration<double, std::milli>(Clock::now() - slot->started).count());
            }
            curl_multi_remove_handle(multi, message->easy_handle);
            if (eventsPerSecond > 0) {
                idle.push_back(slot);
                --running;
            } else if (Clock::now() < end) {
                arm(*slot);
                ++running;
            }
        }
        if (eventsPerSecond > 0) {
            schedule();
            const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
            curl_multi_poll(multi, nullptr, 0, static_cast<int>(std::clamp<long long>(wait, 0, 50)), nullptr);
        } else if (running > 0) {
            curl_multi_poll(multi, nullptr, 0, 50, nullptr);
        }
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    for (Slot& slot : slots) {
        curl_slist_free_all(slot.headers);
        curl_easy_cleanup(slot.easy);
    }
    curl_multi_cleanup(multi);
    return result;
}

// The in-memory reference: acknowledges every request at once.
class InstantSink final : public pipescope::IngestSink {
public:
    void ingest(pipescope::IngestRequest, Completion done) override { done({pipescope::IngestStatus::Committed, 0, {}}); }
    void reject(pipescope::RejectedRequest, Completion done) override { done({pipescope::IngestStatus::Committed, 0, {}}); }
    bool overloaded() const override { return false; }
};

struct RunChild {
    pid_t pid = -1;
    int port = 0;
};

RunChild startRun(const std::string& cli, const std::filesystem::path& capture, const std::string& backlog,
                  const std::string& durability = "full", const std::string& destinations = "[]") {
    const std::filesystem::path config = capture.parent_path() / "bench-run.json";
    std::ofstream(config) << R"({"collector": {"port": 0}, "max_backlog_requests": )" << backlog
                          << R"(, "durability": ")" << durability << R"(", "destinations": )" << destinations << "}\n";
    int pipeFds[2];
    if (pipe(pipeFds) != 0) return {};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipeFds[0]);
    std::vector<std::string> args{cli, "run", "--config", config.string(), "--capture", capture.string(), "--duration", "600s"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    RunChild child;
    if (posix_spawn(&child.pid, cli.c_str(), &actions, nullptr, argv.data(), environ) != 0) return {};
    close(pipeFds[1]);
    std::string out;
    char buffer[512];
    while (child.port == 0) {
        const ssize_t n = read(pipeFds[0], buffer, sizeof buffer);
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
        const auto at = out.find("listening on http://127.0.0.1:");
        if (at != std::string::npos && out.find('\n', at) != std::string::npos)
            child.port = std::atoi(out.c_str() + at + std::strlen("listening on http://127.0.0.1:"));
    }
    // Keep draining its output in the background so it never blocks on a full pipe.
    if (fork() == 0) {
        while (read(pipeFds[0], buffer, sizeof buffer) > 0) {
        }
        _exit(0);
    }
    close(pipeFds[0]);
    return child;
}

long peakRssKb(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

void print(const char* label, LoadResult& r, std::size_t eventsPerRequest) {
    std::string statuses;
    for (const auto& [status, count] : r.statuses)
        statuses += (statuses.empty() ? "" : " ") + (status < 0 ? std::string("err") : std::to_string(status)) + ":" +
                    std::to_string(count);
    std::printf("  %-34s %10.0f events/s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  [%s]\n", label,
                double(r.events) / r.seconds, double(r.requests) / r.seconds, r.percentile(0.50), r.percentile(0.99),
                statuses.c_str());
    (void)eventsPerRequest;
}

// Where a live run stands, read from its capture (a reader of its own, as the inspector is).
struct Progress {
    std::int64_t accepted = 0;  // requests in the ingest log
    std::int64_t processed = 0; // requests the pipeline finished (its cursor)
    std::int64_t events = 0;    // events in the capture
    std::int64_t delivered = 0; // the destination's cursor (an event seq)
};

Progress progressOf(const std::filesystem::path& capture, const std::string& destination) {
    Progress p;
    try {
        const pipescope::CaptureReader reader(capture);
        p.accepted = reader.ingestCount();
        const auto cursor = reader.state("pipeline_cursor");
        p.processed = cursor ? std::atoll(cursor->c_str()) : 0;
        p.events = reader.maxEventSeq();
        p.delivered = reader.cursor(destination);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_collector: cannot read %s: %s\n", capture.c_str(), e.what());
    }
    return p;
}

// Issue 9: `run` end to end at offered rates of /batch/ requests of 100 events, accepted,
// processed into the capture and delivered to an ndjson destination; the backlog at each rate
// says where the pipeline stops keeping up.
void sustainedRun(const std::string& cli, const std::filesystem::path& dir, int connections, double seconds,
                  std::atomic<std::uint64_t>& counter, bool& ok) {
    const std::filesystem::path capture = dir / "sustained.pipescope";
    const std::string destinations =
        R"([{"name": "archive", "type": "ndjson", "path": ")" + (dir / "archive.ndjson").string() + R"(", "batch_size": 1000}])";
    const RunChild child = startRun(cli, capture, "20000", "full", destinations);
    if (child.port == 0) {
        std::fprintf(stderr, "bench_collector: could not start the sustained run\n");
        ok = false;
        return;
    }
    const std::string url = "http://127.0.0.1:" + std::to_string(child.port) + "/batch/";
    std::printf("\n  run end to end: /batch/ of 100 events -> capture (fsync) -> ndjson destination, %.0f s per rate\n",
                seconds);
    std::printf("  %12s %12s %12s %12s %14s %14s  %s\n", "offered/s", "accepted/s", "processed/s", "delivered/s",
                "backlog (req)", "delivery lag", "backlog");
    double lastFlat = 0;
    for (const double rate : {25000.0, 50000.0, 75000.0, 100000.0, 125000.0, 150000.0}) {
        // Start each step drained (bounded: 30 s).
        for (int i = 0; i < 300; ++i) {
            const Progress p = progressOf(capture, "archive");
            if (p.accepted == p.processed && p.delivered >= p.events) break;
            usleep(100000);
        }
        const Progress before = progressOf(capture, "archive");
        const auto started = Clock::now();
        LoadResult load = drive(url, connections, seconds, 100, counter, rate);
        const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
        const Progress after = progressOf(capture, "archive");
        const std::int64_t backlog = after.accepted - after.processed;
        const std::int64_t lag = after.events - after.delivered;
        // Kept up: the offered load accepted (within 5%, no 429s), and at most a second's worth
        // of requests waiting for the pipeline and of events for the destination when it stops.
        const double accepted = double(load.events) / load.seconds;
        const bool flat = accepted >= 0.95 * rate && double(backlog) <= rate / 100.0 && double(lag) <= rate &&
                          load.statuses[429] == 0;
        if (flat) lastFlat = std::max(lastFlat, accepted);
        std::printf("  %12.0f %12.0f %12.0f %12.0f %14lld %14lld  %s%s\n", rate, double(load.events) / load.seconds,
                    double(after.events - before.events) / elapsed, double(after.delivered - before.delivered) / elapsed,
                    static_cast<long long>(backlog), static_cast<long long>(lag), flat ? "flat" : accepted < 0.95 * rate ? "NOT ACCEPTED" : "GROWS",
                    load.statuses[429] ? (" (" + std::to_string(load.statuses[429]) + " answers 429)").c_str() : "");
        for (const auto& [status, count] : load.statuses)
            if (status >= 500 && count > 0) ok = false;
    }
    kill(child.pid, SIGTERM);
    waitpid(child.pid, nullptr, 0);
    std::printf("\n  target (issue 9): >= 100,000 events/s end to end with a flat backlog: %s (highest flat rate %.0f events/s)\n",
                lastFlat >= 100000 ? "met" : "NOT MET", lastFlat);
}

} // namespace

int main(int argc, char** argv) {
    std::string cli = PIPESCOPE_CLI;
    double seconds = 5;
    int connections = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i];
        if (arg == "--cli") cli = argv[i + 1];
        else if (arg == "--seconds") seconds = std::atof(argv[i + 1]);
        else if (arg == "--connections") connections = std::atoi(argv[i + 1]);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("pipescope-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::atomic<std::uint64_t> counter{0};
    bool ok = true;

    std::printf("Pipescope collector benchmark: %d keep-alive connections, %.0f s per run, loopback, 2 cores shared "
                "by client and server\n\n",
                connections, seconds);

    // Reference: the collector alone, acknowledging at once.
    InstantSink sink;
    pipescope::CollectorConfig config;
    config.port = 0;
    pipescope::Collector reference(config, sink);
    reference.start();
    const std::string refUrl = "http://127.0.0.1:" + std::to_string(reference.port());
    LoadResult refBatch = drive(refUrl + "/batch/", connections, seconds, 100, counter);
    LoadResult refSingle = drive(refUrl + "/capture/", connections, seconds, 1, counter);
    reference.stop();

    // The real thing: `pipescope-cli run`, a 200 only once the request is committed to SQLite,
    // with an fsync per commit and without ("durability": "process"): what power-loss safety costs.
    struct DurableRun {
        LoadResult batch, single;
        long peakRssKb = 0;
    };
    const auto durableRun = [&](const char* capture, const char* durability) -> std::optional<DurableRun> {
        const RunChild child = startRun(cli, dir / capture, "20000", durability);
        if (child.port == 0) return std::nullopt;
        const std::string url = "http://127.0.0.1:" + std::to_string(child.port);
        DurableRun result{drive(url + "/batch/", connections, seconds, 100, counter),
                          drive(url + "/capture/", connections, seconds, 1, counter), 0};
        result.peakRssKb = peakRssKb(child.pid);
        kill(child.pid, SIGTERM);
        waitpid(child.pid, nullptr, 0);
        return result;
    };
    const auto synced = durableRun("bench.pipescope", "full");
    const auto unsynced = durableRun("unsynced.pipescope", "process");
    if (!synced || !unsynced) {
        std::fprintf(stderr, "bench_collector: could not start %s run\n", cli.c_str());
        return 2;
    }
    LoadResult durableBatch = synced->batch, durableSingle = synced->single;
    LoadResult processBatch = unsynced->batch, processSingle = unsynced->single;
    const long rssNormal = synced->peakRssKb;

    // 10x overload: ten times the connections, no pause, on a run whose backlog bound is low.
    const RunChild small = startRun(cli, dir / "overload.pipescope", "200");
    const std::string smallUrl = "http://127.0.0.1:" + std::to_string(small.port);
    LoadResult warm = drive(smallUrl + "/batch/", connections, seconds, 100, counter);
    const long rssBefore = peakRssKb(small.pid);
    LoadResult overload = drive(smallUrl + "/batch/", connections * 10, seconds, 100, counter);
    const long rssOverload = peakRssKb(small.pid);
    // As long again: bounded memory means the peak does not move any more.
    LoadResult overload2 = drive(smallUrl + "/batch/", connections * 10, seconds, 100, counter);
    const long rssOverload2 = peakRssKb(small.pid);
    kill(small.pid, SIGTERM);
    waitpid(small.pid, nullptr, 0);

    std::printf("  %-34s %10s %16s %13s %13s\n", "", "accepted", "", "latency", "");
    print("reference /batch/ (in-memory sink)", refBatch, 100);
    print("durable   /batch/ (run, fsync)", durableBatch, 100);
    print("durable   /batch/ (run, no fsync)", processBatch, 100);
    print("reference /capture/ (in-memory)", refSingle, 1);
    print("durable   /capture/ (run, fsync)", durableSingle, 1);
    print("durable   /capture/ (run, no fsync)", processSingle, 1);
    print("overload warm-up /batch/", warm, 100);
    print("10x overload /batch/", overload, 100);
    print("10x overload /batch/, again", overload2, 100);
    std::printf("\n  ratios\n");
    std::printf("    durable / reference, /batch/     %5.2fx\n",
                (double(durableBatch.events) / durableBatch.seconds) / (double(refBatch.events) / refBatch.seconds));
    std::printf("    durable / reference, /capture/   %5.2fx\n",
                (double(durableSingle.events) / durableSingle.seconds) / (double(refSingle.events) / refSingle.seconds));
    std::printf("    fsync / no fsync, /batch/        %5.2fx\n",
                (double(durableBatch.events) / durableBatch.seconds) / (double(processBatch.events) / processBatch.seconds));
    std::printf("    fsync / no fsync, /capture/      %5.2fx\n",
                (double(durableSingle.events) / durableSingle.seconds) /
                    (double(processSingle.events) / processSingle.seconds));
    std::printf("\n  memory of the run process (peak RSS)\n");
    std::printf("    after normal load                %8.1f MB\n", rssNormal / 1024.0);
    std::printf("    before overload / after overload %8.1f MB / %.1f MB (%.2fx), %llu answers 429\n",
                rssBefore / 1024.0, rssOverload / 1024.0, double(rssOverload) / double(std::max(1L, rssBefore)),
                static_cast<unsigned long long>(overload.statuses[429]));
    std::printf("    after twice as long in overload  %8.1f MB (%.2fx of the first overload peak), %llu answers 429\n",
                rssOverload2 / 1024.0, double(rssOverload2) / double(std::max(1L, rssOverload)),
                static_cast<unsigned long long>(overload2.statuses[429]));
    const double durableRate = double(durableBatch.events) / durableBatch.seconds;
    std::printf("\n  target (information only): >= 50,000 durable events/s through /batch/: %s (%.0f)\n",
                durableRate >= 50000 ? "PASS" : "BELOW", durableRate);

    sustainedRun(cli, dir, connections, seconds, counter, ok);

    for (LoadResult* r : {&refBatch, &durableBatch, &durableSingle, &processBatch, &processSingle})
        if (r->statuses[200] == 0) ok = false;
    for (LoadResult* r : {&durableBatch, &durableSingle, &processBatch, &processSingle, &overload, &overload2})
        for (const auto& [status, count] : r->statuses)
            if (status >= 500 && count > 0) ok = false;
    std::filesystem::remove_all(dir);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
