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

// Keeps `connections` requests in flight for `seconds`; each body comes from makeBody(i).
LoadResult drive(const std::string& url, int connections, double seconds, std::size_t eventsPerRequest,
                 std::atomic<std::uint64_t>& counter) {
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
        arm(slot);
    }
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    int running = connections;
    while (running > 0) {
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
            if (Clock::now() < end) {
                arm(*slot);
                ++running;
            }
        }
        if (running > 0) curl_multi_poll(multi, nullptr, 0, 50, nullptr);
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
                  const std::string& durability = "full") {
    const std::filesystem::path config = capture.parent_path() / "bench-run.json";
    std::ofstream(config) << R"({"collector": {"port": 0}, "max_backlog_requests": )" << backlog
                          << R"(, "durability": ")" << durability << "\"}\n";
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

    for (LoadResult* r : {&refBatch, &durableBatch, &durableSingle, &processBatch, &processSingle})
        if (r->statuses[200] == 0) ok = false;
    for (LoadResult* r : {&durableBatch, &durableSingle, &processBatch, &processSingle, &overload, &overload2})
        for (const auto& [status, count] : r->statuses)
            if (status >= 500 && count > 0) ok = false;
    std::filesystem::remove_all(dir);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
