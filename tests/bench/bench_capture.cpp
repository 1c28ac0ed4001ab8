// The capture store at line rate (issue 9): `check` with and without `--capture` on the same
// corpus in one run, the capture's size against its input, a byte-for-byte round trip of every
// event's raw bytes, and the reader's full scan and 256-row windows. Figures and ratios against
// the reference measured in the same run, never timed assertions: the machine is shared.
//
//   bench_capture [--corpus FILE | --events N] [--schemas DIR] [--repeat R] [--keep FILE]
//
// Without --corpus, a corpus of N events (default 200000) is generated as bench_pipeline does.

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "gen_corpus.h"
#include "store/capture_store.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string corpus;
    std::size_t events = 200000;
    std::string schemas = PIPESCOPE_BENCH_SCHEMAS;
    int repeat = 3;
    std::string keep;
};

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: bench_capture [--corpus FILE | --events N] [--schemas DIR] [--repeat R] [--keep FILE]\n");
    std::exit(2);
}

Options parseOptions(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (arg == "--corpus") o.corpus = value();
        else if (arg == "--events") o.events = std::stoul(value());
        else if (arg == "--schemas") o.schemas = value();
        else if (arg == "--repeat") o.repeat = std::max(1, std::stoi(value()));
        else if (arg == "--keep") o.keep = value();
        else usage();
    }
    return o;
}

struct Timed {
    double wall = 0, user = 0, sys = 0;
    int exitCode = -1;
};

// Runs pipescope-cli with its output discarded; wall and the child's CPU times.
Timed runCli(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    std::string cli = PIPESCOPE_CLI;
    argv.push_back(cli.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    Timed t;
    const auto start = Clock::now();
    pid_t pid = 0;
    if (posix_spawn(&pid, cli.c_str(), &actions, nullptr, argv.data(), environ) != 0) return t;
    int status = 0;
    rusage usage {};
    wait4(pid, &status, 0, &usage);
    t.wall = std::chrono::duration<double>(Clock::now() - start).count();
    t.user = static_cast<double>(usage.ru_utime.tv_sec) + static_cast<double>(usage.ru_utime.tv_usec) / 1e6;
    t.sys = static_cast<double>(usage.ru_stime.tv_sec) + static_cast<double>(usage.ru_stime.tv_usec) / 1e6;
    t.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    posix_spawn_file_actions_destroy(&actions);
    return t;
}

Timed median(std::vector<Timed> runs) {
    std::sort(runs.begin(), runs.end(), [](const Timed& a, const Timed& b) { return a.wall < b.wall; });
    return runs[runs.size() / 2];
}

template <typename F>
double seconds(F&& f) {
    const auto start = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double mb(std::uintmax_t bytes) { return static_cast<double>(bytes) / 1e6; }

std::uintmax_t captureBytes(const std::filesystem::path& capture) {
    std::error_code ec;
    std::uintmax_t total = std::filesystem::file_size(capture, ec);
    for (const char* suffix : {"-wal", "-shm"}) {
        std::filesystem::path part = capture;
        part += suffix;
        if (std::filesystem::exists(part, ec)) total += std::filesystem::file_size(part, ec);
    }
    return total;
}

} // namespace

int main(int argc, char** argv) {
    using namespace pipescope;
    const Options options = parseOptions(argc, argv);
    const std::filesystem::path work = std::filesystem::temp_directory_path() / ("bench_capture." + std::to_string(getpid()));
    std::filesystem::create_directories(work);
    std::string corpus = options.corpus;
    if (corpus.empty()) {
        corpus = (work / "corpus.ndjson").string();
        const bench::GeneratedCorpus generated = bench::generateCorpus(options.events);
        std::ofstream(corpus, std::ios::binary) << generated.text;
    }
    const std::uintmax_t inputBytes = std::filesystem::file_size(corpus);
    const std::filesystem::path capture = options.keep.empty() ? work / "bench.pipescope" : std::filesystem::path(options.keep);

    std::printf("bench_capture: %s (%.1f MB), schemas %s, %d repeats (median wall)\n", corpus.c_str(), mb(inputBytes),
                options.schemas.c_str(), options.repeat);

    // 1. check with and without a capture, interleaved so that both see the same machine load.
    std::vector<Timed> plain, captured;
    for (int r = 0; r < options.repeat; ++r) {
        plain.push_back(runCli({"check", "--schemas", options.schemas, corpus, "--report", "/dev/null", "--quiet"}));
        captured.push_back(runCli({"check", "--schemas", options.schemas, corpus, "--report", "/dev/null", "--quiet",
                                   "--capture", capture.string()}));
    }
    const Timed reference = median(plain), withCapture = median(captured);
    std::int64_t events = 0;
    {
        const CaptureReader reader(capture);
        events = reader.eventCount();
    }
    const double rateRatio = reference.wall / withCapture.wall;
    std::printf("\n%-34s %9s %9s %9s %12s\n", "check", "wall s", "user s", "sys s", "events/s");
    std::printf("%-34s %9.2f %9.2f %9.2f %12.0f\n", "without capture (reference)", reference.wall, reference.user,
                reference.sys, static_cast<double>(events) / reference.wall);
    std::printf("%-34s %9.2f %9.2f %9.2f %12.0f\n", "with --capture", withCapture.wall, withCapture.user, withCapture.sys,
                static_cast<double>(events) / withCapture.wall);
    std::printf("  all runs, wall s: without");
    for (const Timed& t : plain) std::printf(" %.2f", t.wall);
    std::printf("; with");
    for (const Timed& t : captured) std::printf(" %.2f", t.wall);
    std::printf("\n");

    // 2. Size, and every event's raw bytes against the input, line for line.
    const std::uintmax_t bytes = captureBytes(capture);
    const double sizeRatio = static_cast<double>(bytes) / static_cast<double>(inputBytes);
    std::int64_t compared = 0, differing = 0;
    bool sameBytes = true;
    double scan = 0, scanMin = 1e9;
    double propsScan[2] = {1e9, 1e9}; // properties only, on 1 and on 2 threads
    {
        const CaptureReader reader(capture);
        std::ifstream input(corpus, std::ios::binary);
        std::string line;
        reader.forEachEvent([&](const StoredEvent& e) {
            // One event per line in the bench corpus: its raw bytes are the line.
            if (!std::getline(input, line) || line != e.raw) {
                if (++differing <= 3) std::fprintf(stderr, "bench_capture: event %lld differs from its line\n", static_cast<long long>(e.seq));
            }
            ++compared;
            return true;
        });
        sameBytes = differing == 0 && compared == events && !std::getline(input, line);
        // 3. Reading: a full scan (raw + properties of every event), and 256-row windows.
        for (int r = 0; r < options.repeat; ++r) {
            std::uintmax_t touched = 0;
            scan = seconds([&] {
                reader.forEachEvent([&](const StoredEvent& e) {
                    touched += e.raw.size() + e.properties.size();
                    return true;
                });
            });
            scanMin = std::min(scanMin, scan);
            if (touched == 0) std::fprintf(stderr, "bench_capture: the scan read nothing\n");
            for (unsigned threads = 1; threads <= 2; ++threads) {
                std::atomic<std::uintmax_t> bytesSeen{0};
                const double t = seconds([&] {
                    reader.scanProperties(threads, [&](std::int64_t, std::string_view properties) {
                        bytesSeen.fetch_add(properties.size(), std::memory_order_relaxed);
                        return true;
                    });
                });
                propsScan[threads - 1] = std::min(propsScan[threads - 1], t);
                if (bytesSeen == 0) std::fprintf(stderr, "bench_capture: the properties scan read nothing\n");
            }
        }
    }
    std::printf("\n%-34s %9.1f MB  %.2fx the input (%.1f MB)\n", "capture file", mb(bytes), sizeRatio, mb(inputBytes));
    std::printf("%-34s %s (%lld events compared, %lld differ)\n", "raw bytes round trip", sameBytes ? "identical" : "DIFFERENT",
                static_cast<long long>(compared), static_cast<long long>(differing));
    std::printf("%-34s %9.2f s  (%.0f events/s; %.2fx the reference check)\n", "full scan, raw + properties", scanMin,
                static_cast<double>(events) / scanMin, scanMin / reference.wall);
    for (int k = 0; k < 2; ++k)
        std::printf("%-34s %9.2f s  (%.0f events/s; %.2f s per 1,000,000 events)\n",
                    k == 0 ? "properties scan, 1 thread" : "properties scan, 2 threads", propsScan[k],
                    static_cast<double>(events) / propsScan[k], propsScan[k] * 1e6 / static_cast<double>(events));

    std::printf("\n%-34s %12s %12s %12s\n", "256-row window, ms (best of R)", "at start", "middle", "end");
    {
        const CaptureReader reader(capture);
        const std::int64_t offsets[] = {0, events / 2, std::max<std::int64_t>(0, events - 256)};
        double byOffset[3], bySeq[3], rows[3];
        for (int k = 0; k < 3; ++k) {
            byOffset[k] = bySeq[k] = rows[k] = 1e9;
            // Seqs are dense from 1 in a capture `check` wrote: offset N starts after seq N.
            const std::int64_t afterSeq = reader.events(offsets[k], 1).front().seq - 1;
            for (int r = 0; r < std::max(3, options.repeat); ++r) {
                byOffset[k] = std::min(byOffset[k], 1000 * seconds([&] { (void)reader.events(offsets[k], 256); }));
                bySeq[k] = std::min(bySeq[k], 1000 * seconds([&] { (void)reader.eventsAfter(afterSeq, 256); }));
                rows[k] = std::min(rows[k], 1000 * seconds([&] { (void)reader.rowsAfter(afterSeq, 256); }));
            }
        }
        std::printf("%-34s %12.2f %12.2f %12.2f\n", "events(offset, 256)", byOffset[0], byOffset[1], byOffset[2]);
        std::printf("%-34s %12.2f %12.2f %12.2f\n", "eventsAfter(seq, 256)", bySeq[0], bySeq[1], bySeq[2]);
        std::printf("%-34s %12.2f %12.2f %12.2f\n", "rowsAfter(seq, 256), table rows", rows[0], rows[1], rows[2]);
        double counts = 1e9, countStar = 1e9;
        for (int r = 0; r < std::max(3, options.repeat); ++r) {
            counts = std::min(counts, 1000 * seconds([&] { (void)reader.verdictCounts(); }));
            countStar = std::min(countStar, 1000 * seconds([&] { (void)reader.seqsWithVerdict(pipescope::Verdict::Invalid, 0, 1 << 30); }));
        }
        std::printf("%-34s %9.3f ms (reference: every invalid seq through the verdict index %.1f ms)\n",
                    "verdictCounts()", counts, countStar);
    }

    std::printf("\nGoals (issue 9)\n");
    std::printf("  1. check --capture at >= 0.5x the event rate of check:   %.2fx  %s\n", rateRatio,
                rateRatio >= 0.5 ? "met" : "NOT MET");
    std::printf("  2. capture <= 0.5x the NDJSON input, raw bytes intact:  %.2fx, %s  %s\n", sizeRatio,
                sameBytes ? "identical" : "DIFFERENT", sizeRatio <= 0.5 && sameBytes ? "met" : "NOT MET");
    const double perMillion = propsScan[1] * 1e6 / static_cast<double>(events);
    std::printf("  3. properties of 1,000,000 events in < 1 s (2 threads): %.2f s per 1M  %s; 256-row windows above (< 5 ms)\n",
                perMillion, perMillion < 1.0 ? "met" : "NOT MET");

    if (options.keep.empty()) std::filesystem::remove_all(work);
    else if (options.corpus.empty()) std::filesystem::remove(corpus);
    return sameBytes ? 0 : 1;
}
