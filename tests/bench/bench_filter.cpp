// The filter language over a million events (issue 10's "must stay responsive"): a field filter
// and a property filter, in memory and from a capture file, each beside a reference measured in
// the same run — a hand-written C++ test, simdjson parses that only decode, plain SQLite counts
// (over the capture's columns, and json_extract over a side table holding the same properties as
// text, since a v2 capture keeps them compressed), and the reader's plain scan. Every figure's
// count must agree with its reference; a disagreement exits 1. Figures, never timed assertions.
//
//   bench_filter [--events N] [--no-file] [--keep FILE]

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <simdjson.h>
#include <string>
#include <string_view>
#include <vector>

#include "filter/filter.h"
#include "filter/filter_sql.h"
#include "store/capture_store.h"

using namespace pipescope;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::size_t events = 1000000;
    bool file = true;
    std::string keep;
};

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: bench_filter [--events N] [--no-file] [--keep FILE]\n");
    std::exit(2);
}

Options parseOptions(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--events" && i + 1 < argc) o.events = std::stoul(argv[++i]);
        else if (arg == "--no-file") o.file = false;
        else if (arg == "--keep" && i + 1 < argc) o.keep = argv[++i];
        else usage();
    }
    return o;
}

// Realistic PostHog-like events: about 400 bytes of properties, `amount` in the middle of them
// (a number on most payment events, a string on some, absent on others).
std::vector<StoredEvent> generate(std::size_t n) {
    std::mt19937_64 rng(42);
    const char* names[] = {"$pageview", "payment_completed", "checkout_started", "$autocapture", "signup", "$identify"};
    const Verdict verdicts[] = {Verdict::Valid, Verdict::Valid, Verdict::Valid, Verdict::Invalid, Verdict::Unplanned,
                                Verdict::Duplicate};
    std::vector<StoredEvent> events;
    events.reserve(n);
    const std::int64_t base = 1764000000000;
    for (std::size_t i = 0; i < n; ++i) {
        StoredEvent e;
        e.seq = std::int64_t(i + 1);
        e.eventId = "0190c3a0-" + std::to_string(i);
        e.idSource = "posthog_uuid";
        e.name = names[rng() % 6];
        e.distinctId = "user-" + std::to_string(rng() % 50000);
        e.stream = rng() % 2 ? "client" : "server";
        e.format = "posthog";
        e.timestamp = base + std::int64_t(i) * 10;
        e.receivedAt = *e.timestamp + 50;
        e.originSource = "http:/batch/";
        e.originLine = i + 1;
        e.verdict = verdicts[rng() % 6];
        e.failures = "[]";
        std::string amount;
        switch (rng() % 8) {
        case 0: break;
        case 1: amount = "\"amount\":\"" + std::to_string(rng() % 500) + ".90\","; break;
        default: amount = "\"amount\":" + std::to_string(rng() % 500) + "." + std::to_string(rng() % 100) + ",";
        }
        e.properties = "{\"$lib\":\"web\",\"$lib_version\":\"1.160.0\",\"$browser\":\"Chrome\",\"$os\":\"Mac OS X\","
                       "\"$current_url\":\"https://shop.example.com/checkout?step=" +
                       std::to_string(rng() % 5) + "\",\"$session_id\":\"sess-" + std::to_string(rng() % 100000) +
                       "\",\"$device_id\":\"dev-" + std::to_string(rng() % 100000) + "\"," + amount +
                       "\"currency\":\"EUR\",\"items\":[{\"sku\":\"SKU-" + std::to_string(rng() % 100) +
                       "\",\"qty\":" + std::to_string(1 + rng() % 3) + "}],\"order_id\":\"ord_" + std::to_string(i) +
                       "\",\"$screen_width\":1920,\"$screen_height\":1080}";
        e.raw = "{\"event\":\"" + e.name + "\",\"distinct_id\":\"" + e.distinctId + "\",\"properties\":" + e.properties + "}";
        events.push_back(std::move(e));
    }
    return events;
}

struct Figure {
    double seconds = 0;
    std::int64_t count = 0;
};

template <class F>
Figure time(F&& body) {
    const auto start = Clock::now();
    Figure f;
    f.count = body();
    f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return f;
}

bool g_disagree = false;

void row(const char* what, const Figure& f, std::size_t n, const Figure* reference = nullptr) {
    const double rate = double(n) / f.seconds;
    std::printf("  %-58s %9.3f s %12.0f events/s  count %8lld", what, f.seconds, rate, (long long)f.count);
    if (reference) {
        std::printf("  %5.2fx the reference", f.seconds / reference->seconds);
        if (f.count != reference->count) {
            std::printf("  COUNT DIFFERS (%lld)", (long long)reference->count);
            g_disagree = true;
        }
    }
    std::printf("\n");
}

std::int64_t sqlCount(sqlite3* db, const char* sql) {
    sqlite3_stmt* s = nullptr;
    std::int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    else std::fprintf(stderr, "sql: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return n;
}

FilterExpression compile(const char* text) {
    auto parsed = FilterExpression::parse(text);
    if (!parsed) {
        std::fprintf(stderr, "%s\n%s\n", parsed.error().describe().c_str(), parsed.error().caret(text).c_str());
        std::exit(2);
    }
    return parsed.expression();
}

} // namespace

int main(int argc, char** argv) {
    const Options options = parseOptions(argc, argv);
    const std::size_t n = options.events;
    const char* fieldText = R"(event == "payment_completed" && verdict == invalid)";
    const char* propertyText = "properties.amount > 100";
    const FilterExpression fieldFilter = compile(fieldText);
    const FilterExpression propertyFilter = compile(propertyText);

    std::printf("bench_filter: %zu events; simdjson %s kernel (on-demand builtin: %s)\n", n,
                simdjson::get_active_implementation()->name().c_str(),
                simdjson::builtin_implementation()->name().c_str());
    const auto start = Clock::now();
    const std::vector<StoredEvent> events = generate(n);
    std::size_t propertyBytes = 0;
    for (const auto& e : events) propertyBytes += e.properties.size();
    std::printf("  generated in %.2f s, %.0f bytes of properties per event\n\n",
                std::chrono::duration<double>(Clock::now() - start).count(), double(propertyBytes) / double(n));

    std::printf("in memory — field filter: %s\n", fieldText);
    const Figure handField = time([&] {
        std::int64_t c = 0;
        for (const auto& e : events) c += e.name == "payment_completed" && e.verdict == Verdict::Invalid;
        return c;
    });
    row("reference: hand-written C++ test", handField, n);
    const Figure filterField = time([&] {
        std::int64_t c = 0;
        for (const auto& e : events) c += fieldFilter.matches(e);
        return c;
    });
    row("filter", filterField, n, &handField);

    std::printf("\nin memory — property filter: %s\n", propertyText);
    simdjson::dom::parser dom;
    const Figure domParse = time([&] {
        std::int64_t c = 0;
        for (const auto& e : events) {
            simdjson::dom::element doc;
            if (dom.parse(e.properties).get(doc)) continue;
            double amount = 0;
            if (doc["amount"].get_double().get(amount) == simdjson::SUCCESS) c += amount > 100;
        }
        return c;
    });
    row("reference: simdjson DOM parse + at_key (decode only)", domParse, n);
    simdjson::ondemand::parser onDemand;
    std::string padded;
    const Figure onDemandFind = time([&] {
        std::int64_t c = 0;
        for (const auto& e : events) {
            padded.reserve(e.properties.size() + simdjson::SIMDJSON_PADDING);
            padded.assign(e.properties);
            simdjson::ondemand::document doc;
            if (onDemand.iterate(simdjson::padded_string_view(padded.data(), padded.size(), padded.capacity())).get(doc))
                continue;
            double amount = 0;
            if (doc["amount"].get_double().get(amount) == simdjson::SUCCESS) c += amount > 100;
        }
        return c;
    });
    row("reference: simdjson on-demand find (decode only)", onDemandFind, n, &domParse);
    const Figure filterProperty = time([&] {
        std::int64_t c = 0;
        for (const auto& e : events) c += propertyFilter.matches(e);
        return c;
    });
    row("filter", filterProperty, n, &domParse);

    if (!options.file) return g_disagree ? 1 : 0;

    const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("bench_filter-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::filesystem::path capture = options.keep.empty() ? dir / "bench.pipescope" : std::filesystem::path(options.keep);
    const std::filesystem::path side = dir / "reference.sqlite";
    std::printf("\nfrom a capture file (%s)\n", capture.c_str());
    const auto writeStart = Clock::now();
    {
        CaptureWriter::Options writerOptions;
        writerOptions.durability = Durability::Process;
        CaptureWriter writer(capture, writerOptions);
        for (const auto& e : events) writer.append(StoredEvent(e));
        writer.close();
    }
    std::printf("  written in %.2f s, %.1f MB\n", std::chrono::duration<double>(Clock::now() - writeStart).count(),
                double(std::filesystem::file_size(capture)) / 1e6);
    // The side table: the same properties as plain text, for SQLite's json_extract.
    {
        sqlite3* db = nullptr;
        sqlite3_open(side.c_str(), &db);
        sqlite3_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE ev(properties TEXT NOT NULL); BEGIN",
                     nullptr, nullptr, nullptr);
        sqlite3_stmt* insert = nullptr;
        sqlite3_prepare_v2(db, "INSERT INTO ev(properties) VALUES (?1)", -1, &insert, nullptr);
        for (const auto& e : events) {
            sqlite3_bind_text(insert, 1, e.properties.data(), int(e.properties.size()), SQLITE_STATIC);
            sqlite3_step(insert);
            sqlite3_reset(insert);
        }
        sqlite3_finalize(insert);
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
        sqlite3_close(db);
    }

    sqlite3* db = nullptr;
    sqlite3_open_v2(capture.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    const CaptureReader reader(capture);

    std::printf("field filter: %s\n", fieldText);
    const Figure sqlField = time([&] {
        return sqlCount(db, "SELECT count(*) FROM events WHERE name = 'payment_completed' AND verdict = 'invalid'");
    });
    row("reference: SQLite count over the columns", sqlField, n);
    const Figure scan = time([&] {
        std::int64_t c = 0;
        reader.forEachEvent([&](const StoredEvent&) {
            ++c;
            return true;
        });
        return c;
    });
    row("reference: reader scan, every event decoded", scan, n);
    const Figure fileField = time([&] {
        std::int64_t c = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            c += fieldFilter.matches(e);
            return true;
        });
        return c;
    });
    row("filter over the reader scan", fileField, n, &sqlField);
    const Figure pushedField = time([&] { return *CaptureFilter(capture, fieldFilter).count(); });
    row("CaptureFilter count (decided in SQLite)", pushedField, n, &sqlField);
    const Figure pushedSeqs = time([&] { return std::int64_t(CaptureFilter(capture, fieldFilter).seqs()->size()); });
    row("CaptureFilter seqs (decided in SQLite)", pushedSeqs, n, &sqlField);

    std::printf("property filter: %s\n", propertyText);
    sqlite3* sideDb = nullptr;
    sqlite3_open_v2(side.c_str(), &sideDb, SQLITE_OPEN_READONLY, nullptr);
    const Figure sqlProperty = time([&] {
        return sqlCount(sideDb, "SELECT count(*) FROM ev WHERE json_type(properties, '$.amount') IN ('integer', 'real') "
                                "AND json_extract(properties, '$.amount') > 100");
    });
    row("reference: SQLite json_extract over plain-text properties", sqlProperty, n);
    const Figure fileProperty = time([&] {
        std::int64_t c = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            c += propertyFilter.matches(e);
            return true;
        });
        return c;
    });
    row("filter over the reader scan", fileProperty, n, &sqlProperty);
    std::printf("  (the reader scan alone is %.0f%% of the filter's time)\n", 100.0 * scan.seconds / fileProperty.seconds);
    const Figure capturedProperty = time([&] { return *CaptureFilter(capture, propertyFilter).count(); });
    row("CaptureFilter count", capturedProperty, n, &sqlProperty);

    // A field and a property: SQL narrows the rows, the filter decides on the decoded ones.
    for (const char* mixedText : {R"(event == "payment_completed" && properties.amount > 100)",
                                  R"(distinct_id == "user-7" && properties.amount > 100)"}) {
        const FilterExpression mixed = compile(mixedText);
        std::printf("mixed filter: %s\n", mixedText);
        const Figure mixedScan = time([&] {
            std::int64_t c = 0;
            reader.forEachEvent([&](const StoredEvent& e) {
                c += mixed.matches(e);
                return true;
            });
            return c;
        });
        row("reference: filter over the reader scan", mixedScan, n);
        const Figure mixedPushed = time([&] { return *CaptureFilter(capture, mixed).count(); });
        row("CaptureFilter count (SQL narrows, filter decides)", mixedPushed, n, &mixedScan);
    }

    sqlite3_close(sideDb);
    sqlite3_close(db);
    if (options.keep.empty()) std::filesystem::remove_all(dir);
    else std::filesystem::remove(side);
    if (g_disagree) std::printf("\ncounts disagree\n");
    return g_disagree ? 1 : 0;
}
