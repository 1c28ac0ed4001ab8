// Dedup window throughput and memory, exact and Bloom modes, against std::unordered_set measured
// in the same run. Prints figures and ratios; no timed assertions. Exits 1 only when a
// correctness check fails (a key inserted within the window not found again, or a miss in exact
// mode reported as a duplicate).
//
//   bench_dedup                       1M and 10M keys
//   bench_dedup --keys 100000         one size (repeatable, or a comma-separated list)

#include "dedup/dedup_window.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <malloc.h>
#include <numeric>
#include <string>
#include <string_view>
#include <unistd.h>
#include <unordered_set>
#include <vector>

using namespace pipescope;

namespace {

constexpr std::int64_t kBaseTime = 1'700'000'000'000; // Nov 2023, epoch ms
constexpr double kBoundBytesPerKey = 400e6 / 10e6;    // 400 MB for 10M keys

// Keys are random 64-bit values, as dedupKeyHash() yields; inserted keys and fresh keys come
// from different streams so "misses" are keys never inserted.
std::uint64_t splitMix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
std::uint64_t insertedKey(std::uint64_t i) {
    return splitMix64(i);
}
std::uint64_t freshKey(std::uint64_t i) {
    return splitMix64(i ^ 0x5555'0000'0000'0000ull);
}

__extension__ using Uint128 = unsigned __int128;

// Lookups visit the inserted keys in a scrambled order: in insertion order a node-based set
// would find its nodes one after another in memory, which real retries do not do.
struct ScrambledOrder {
    std::uint64_t count;
    std::uint64_t stride; // coprime with count, so i -> i * stride mod count is a permutation
    explicit ScrambledOrder(std::uint64_t n) : count(n), stride(n > 2 ? 2654435761ull % n : 1) {
        while (std::gcd(stride, count) != 1)
            ++stride;
    }
    std::uint64_t operator()(std::uint64_t i) const {
        return static_cast<std::uint64_t>((static_cast<Uint128>(i) * stride) % count);
    }
};

double secondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Row {
    std::string name;
    std::uint64_t keys = 0;
    double insertPerSecond = 0;
    double hitPerSecond = 0;
    double missPerSecond = 0;
    double bytes = 0;
    double saveSeconds = 0; // save() of the full window, then load() into a new one
    double loadSeconds = 0;
    double fileBytes = 0;
};

void printRow(const Row& row) {
    std::printf("%-14s %11llu %12.2f %12.2f %12.2f %10.1f %10.1f\n", row.name.c_str(),
                static_cast<unsigned long long>(row.keys), row.insertPerSecond / 1e6, row.hitPerSecond / 1e6,
                row.missPerSecond / 1e6, row.bytes / static_cast<double>(row.keys), row.bytes / 1e6);
}

bool failed = false;
void check(bool ok, const std::string& what) {
    if (!ok) {
        std::printf("CHECK FAILED: %s\n", what.c_str());
        failed = true;
    }
}

// Times spread over the window: in exact mode within the first half so nothing expires; in
// Bloom mode across the whole window so the generations fill as they would in steady traffic.
Row runWindow(DedupMode mode, std::uint64_t keys, double* measuredFalsePositiveRate) {
    DedupOptions options;
    options.mode = mode;
    options.maxKeys = std::max<std::size_t>(options.maxKeys, keys);
    options.bloomExpectedKeys = keys;
    DedupWindow window(options);
    const double spread = mode == DedupMode::Exact ? 0.5 : 1.0;
    const auto timeOf = [&](std::uint64_t i) {
        return kBaseTime + static_cast<std::int64_t>(spread * static_cast<double>(options.windowMillis) *
                                                     static_cast<double>(i) / static_cast<double>(keys));
    };

    Row row;
    row.name = mode == DedupMode::Exact ? "exact" : "bloom";
    row.keys = keys;

    auto start = std::chrono::steady_clock::now();
    std::uint64_t reportedDuplicates = 0;
    for (std::uint64_t i = 0; i < keys; ++i)
        reportedDuplicates +=
            window.observe(insertedKey(i), static_cast<std::uint32_t>(i), timeOf(i)).duplicate;
    row.insertPerSecond = static_cast<double>(keys) / secondsSince(start);
    if (mode == DedupMode::Exact) {
        check(reportedDuplicates == 0, "exact: a new key was reported a duplicate");
        check(window.size() == keys,
              "exact: size " + std::to_string(window.size()) + " after " + std::to_string(keys) + " keys");
        check(window.stats().evictedEarly == 0, "exact: keys evicted below maxKeys");
    }

    // Hits go through observe(): a retry of a key still in the window is the real hot path.
    const std::int64_t now = timeOf(keys - 1);
    const ScrambledOrder order(keys);
    start = std::chrono::steady_clock::now();
    std::uint64_t found = 0;
    for (std::uint64_t i = 0; i < keys; ++i) {
        const std::uint64_t k = order(i);
        found += window.observe(insertedKey(k), static_cast<std::uint32_t>(k), now).duplicate;
    }
    row.hitPerSecond = static_cast<double>(keys) / secondsSince(start);
    check(found == keys,
          row.name + ": " + std::to_string(keys - found) + " inserted keys not found (false negatives)");

    // Misses use lookup(), which answers without inserting, so the table stays the same size.
    start = std::chrono::steady_clock::now();
    std::uint64_t falsePositives = 0;
    for (std::uint64_t i = 0; i < keys; ++i)
        falsePositives += window.lookup(freshKey(i), 0, now).duplicate;
    row.missPerSecond = static_cast<double>(keys) / secondsSince(start);
    if (mode == DedupMode::Exact) check(falsePositives == 0, "exact: a fresh key reported a duplicate");
    *measuredFalsePositiveRate = static_cast<double>(falsePositives) / static_cast<double>(keys);

    row.bytes = static_cast<double>(window.memoryBytes());

    // Restart cost: save the window and load it back, as a restarted pipeline would.
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("bench_dedup_" + std::to_string(::getpid()) + ".state");
    start = std::chrono::steady_clock::now();
    window.save(path);
    row.saveSeconds = secondsSince(start);
    row.fileBytes = static_cast<double>(std::filesystem::file_size(path));
    start = std::chrono::steady_clock::now();
    const DedupWindow loaded = DedupWindow::load(path);
    row.loadSeconds = secondsSince(start);
    std::filesystem::remove(path);
    check(loaded.size() == window.size(), row.name + ": " + std::to_string(loaded.size()) +
                                              " keys loaded of " + std::to_string(window.size()) + " saved");
    std::uint64_t foundAfterLoad = 0;
    for (std::uint64_t i = 0; i < keys; i += 97)
        foundAfterLoad += loaded.lookup(insertedKey(i), 0, now).duplicate;
    check(foundAfterLoad == (keys + 96) / 97, row.name + ": keys lost across save and load");
    return row;
}

Row runUnorderedSet(std::uint64_t keys) {
    Row row;
    row.name = "unordered_set";
    row.keys = keys;
    // Small blocks come from the heap (uordblks), the bucket array from its own mapping (hblkhd).
    const auto allocated = [] {
        const struct mallinfo2 info = mallinfo2();
        return info.uordblks + info.hblkhd;
    };
    const std::size_t before = allocated();
    {
        std::unordered_set<std::uint64_t> set;
        auto start = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < keys; ++i)
            set.insert(insertedKey(i));
        row.insertPerSecond = static_cast<double>(keys) / secondsSince(start);
        row.bytes = static_cast<double>(allocated() - before);

        const ScrambledOrder order(keys);
        start = std::chrono::steady_clock::now();
        std::uint64_t found = 0;
        for (std::uint64_t i = 0; i < keys; ++i)
            found += set.count(insertedKey(order(i)));
        row.hitPerSecond = static_cast<double>(keys) / secondsSince(start);
        check(found == keys, "unordered_set: inserted keys not found");

        start = std::chrono::steady_clock::now();
        std::uint64_t wrong = 0;
        for (std::uint64_t i = 0; i < keys; ++i)
            wrong += set.count(freshKey(i));
        row.missPerSecond = static_cast<double>(keys) / secondsSince(start);
        check(wrong == 0, "unordered_set: fresh keys found");
    }
    return row;
}

std::vector<std::uint64_t> parseKeyCounts(int argc, char** argv) {
    std::vector<std::uint64_t> counts;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--keys" && i + 1 < argc) {
            std::string list = argv[++i];
            std::size_t pos = 0;
            while (pos <= list.size()) {
                const std::size_t comma = std::min(list.find(',', pos), list.size());
                const std::string item = list.substr(pos, comma - pos);
                char* end = nullptr;
                const unsigned long long value = std::strtoull(item.c_str(), &end, 10);
                if (item.empty() || *end != '\0' || value == 0) {
                    std::fprintf(stderr, "bench_dedup: --keys wants positive whole numbers, got '%s'\n",
                                 item.c_str());
                    std::exit(2);
                }
                counts.push_back(value);
                pos = comma + 1;
            }
        } else {
            std::fprintf(stderr, "usage: bench_dedup [--keys N[,N...]]...\n");
            std::exit(2);
        }
    }
    if (counts.empty()) counts = {1'000'000, 10'000'000};
    return counts;
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::uint64_t> counts = parseKeyCounts(argc, argv);
    std::printf(
        "Dedup window: new-key inserts, hit lookups (observe of a retried key) and miss lookups\n"
        "(lookup of a fresh key); rates in millions a second. Exact: default options (maxKeys\n"
        "raised to the key count if above 10M); Bloom: expected keys = key count, target FP 0.001.\n\n");
    std::printf("%-14s %11s %12s %12s %12s %10s %10s\n", "structure", "keys", "insert M/s", "hit M/s",
                "miss M/s", "bytes/key", "total MB");
    for (const std::uint64_t keys : counts) {
        double exactFalsePositives = 0;
        double bloomFalsePositives = 0;
        const Row exact = runWindow(DedupMode::Exact, keys, &exactFalsePositives);
        printRow(exact);
        const Row bloom = runWindow(DedupMode::Bloom, keys, &bloomFalsePositives);
        printRow(bloom);
        const Row set = runUnorderedSet(keys);
        printRow(set);
        std::printf("%-14s %11s %11.2fx %11.2fx %11.2fx %9.2fx\n", "exact/set", "",
                    exact.insertPerSecond / set.insertPerSecond, exact.hitPerSecond / set.hitPerSecond,
                    exact.missPerSecond / set.missPerSecond, exact.bytes / set.bytes);
        std::printf("%-14s %11s %11.2fx %11.2fx %11.2fx %9.2fx\n", "bloom/set", "",
                    bloom.insertPerSecond / set.insertPerSecond, bloom.hitPerSecond / set.hitPerSecond,
                    bloom.missPerSecond / set.missPerSecond, bloom.bytes / set.bytes);
        for (const Row* row : {&exact, &bloom})
            std::printf("  %s save %.2f s, load %.2f s, file %.1f MB\n", row->name.c_str(), row->saveSeconds,
                        row->loadSeconds, row->fileBytes / 1e6);
        std::printf("  bloom measured false-positive rate on %llu fresh keys: %.5f (target 0.001)\n",
                    static_cast<unsigned long long>(keys), bloomFalsePositives);
        // The bound is for a window full at 10M keys; smaller windows are not fully grown, so
        // their bytes per key (the table doubles as it grows) say nothing about it.
        if (keys >= 10'000'000) {
            const double boundBytes = kBoundBytesPerKey * static_cast<double>(keys);
            std::printf("  exact window at %llu keys: %.1f MB, bound %.0f MB: %s\n",
                        static_cast<unsigned long long>(keys), exact.bytes / 1e6, boundBytes / 1e6,
                        exact.bytes <= boundBytes ? "PASS (below the bound)" : "OVER the bound");
        }
        std::printf("\n");
    }
    if (failed) {
        std::printf("correctness checks FAILED\n");
        return 1;
    }
    return 0;
}
