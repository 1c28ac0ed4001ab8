// The capture store: a real SQLite file per test, written through the writer thread and read
// back through separate read-only connections.
#include <QTemporaryDir>
#include <QtTest>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <thread>


#include "store/capture_store.h"

using namespace pipescope;

namespace {

StoredEvent makeEvent(std::int64_t seq, std::string name, std::string distinctId) {
    StoredEvent e;
    e.seq = seq;
    e.eventId = "id-" + std::to_string(seq);
    e.idSource = "posthog_uuid";
    e.dedupKey = e.eventId;
    e.name = std::move(name);
    e.distinctId = std::move(distinctId);
    e.stream = "client";
    e.format = "posthog";
    e.timestamp = 1714564800000 + seq;
    e.originSource = "client.ndjson";
    e.originLine = static_cast<std::uint64_t>(seq);
    e.properties = R"({"n":)" + std::to_string(seq) + "}";
    e.raw = R"({"event":"x"})";
    return e;
}

void runSql(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    QCOMPARE(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
    const std::string message = error ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    QVERIFY2(rc == SQLITE_OK, message.c_str());
}


// Rows as SQL sees them, for comparing a capture before and after the reader migrated it.
struct V1Row {
    std::int64_t seq = 0;
    std::string name, raw, properties, dedupKey;
};
std::vector<V1Row> readV1Rows(const std::string& path) {
    std::vector<V1Row> rows;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return rows;
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT seq, name, raw, properties, coalesce(dedup_key, '') FROM events ORDER BY seq", -1, &s,
                       nullptr);
    const auto text = [&](int c) {
        const auto* data = static_cast<const char*>(sqlite3_column_blob(s, c));
        return data ? std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(s, c))) : std::string();
    };
    while (sqlite3_step(s) == SQLITE_ROW) rows.push_back({sqlite3_column_int64(s, 0), text(1), text(2), text(3), text(4)});
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rows;
}

std::int64_t sqlScalar(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    std::int64_t value = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
            value = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return value;
}

// A varied event, so that a dictionary trained on such events is worth it.
StoredEvent variedEvent(std::int64_t seq) {
    StoredEvent e = makeEvent(seq, seq % 3 ? "product_viewed" : "checkout", "user-" + std::to_string(seq % 17));
    e.properties = R"({"sku":"s-)" + std::to_string(seq * 7919 % 100003) + R"(","price":)" + std::to_string(seq % 90) +
                   R"(.5,"tags":["a","b"]})";
    e.raw = R"({"event":")" + e.name + R"(","distinct_id":")" + e.distinctId + R"(","properties":)" + e.properties +
            "}";
    if (seq % 250 == 0) e.raw += std::string("\0\xff tail", 7); // bytes no JSON tool would keep
    return e;
}

} // namespace

class TestStore : public QObject {
    Q_OBJECT

private slots:
    void init() { QVERIFY(m_dir.isValid()); }

    void roundTripsEveryField() {
        const std::string path = file("all.pipescope");
        StoredEvent e = makeEvent(1, "payment_completed", "user-1");
        e.anonymousId = "anon-1";
        e.userId = "user-1";
        e.aliasId = "old-id";
        e.sentAt = 1714564800500;
        e.originIndex = 3;
        e.verdict = Verdict::Invalid;
        e.schemaVersion = 2;
        e.failures = R"([{"pointer":"/amount","keyword":"type","message":"expected number"}])";
        e.raw = std::string("{\"bad\":\"\xff\xfe\0nul\"}", 18); // invalid UTF-8 and a NUL byte survive
        DlqEntry d;
        d.reason = "schema_violation";
        d.detail = R"({"failures":[]})";
        d.originSource = "client.ndjson";
        d.originLine = 1;
        d.originIndex = 3;
        d.eventName = "payment_completed";
        d.distinctId = "user-1";
        d.eventSeq = 1;
        d.raw = e.raw;
        d.createdAt = 42;
        {
            CaptureWriter writer(path);
            writer.append(e);
            writer.append(d);
            writer.close();
        }
        const CaptureReader reader(path);
        QCOMPARE(reader.eventCount(), 1);
        QCOMPARE(reader.dlqCount(), 1);
        const auto events = reader.events(0, 10);
        QCOMPARE(events.size(), std::size_t(1));
        const StoredEvent& r = events.front();
        QCOMPARE(r.seq, 1);
        QCOMPARE(r.eventId, e.eventId);
        QCOMPARE(r.dedupKey, e.dedupKey);
        QCOMPARE(r.anonymousId, e.anonymousId);
        QCOMPARE(r.aliasId, e.aliasId);
        QCOMPARE(r.sentAt, e.sentAt);
        QVERIFY(!r.receivedAt);
        QCOMPARE(r.originIndex, 3);
        QVERIFY(r.verdict == Verdict::Invalid);
        QCOMPARE(r.schemaVersion, 2);
        QCOMPARE(r.failures, e.failures);
        QCOMPARE(r.raw.size(), e.raw.size());
        QVERIFY(r.raw == e.raw);
        const auto dlq = reader.dlq(0, 10);
        QCOMPARE(dlq.size(), std::size_t(1));
        QCOMPARE(dlq.front().reason, d.reason);
        QCOMPARE(dlq.front().eventSeq, std::optional<std::int64_t>(1));
        QVERIFY(dlq.front().raw == d.raw);
        QCOMPARE(dlq.front().createdAt, 42);
        const CaptureInfo info = reader.info();
        QCOMPARE(info.schemaVersion, kCaptureSchemaVersion);
        QVERIFY(info.createdBy.find("pipescope") == 0);
        QVERIFY(info.createdAt > 0);
    }

    void pagesInInsertionOrder() {
        const std::string path = file("pages.pipescope");
        {
            CaptureWriter writer(path, {.maxQueued = 16, .maxBatch = 7, .replaceExisting = true});
            for (int i = 1; i <= 1000; ++i) writer.append(makeEvent(i, "e", "u" + std::to_string(i % 10)));
        }
        const CaptureReader reader(path);
        QCOMPARE(reader.eventCount(), 1000);
        const auto window = reader.events(500, 3);
        QCOMPARE(window.size(), std::size_t(3));
        QCOMPARE(window[0].seq, 501);
        QCOMPARE(window[2].seq, 503);
        std::int64_t expected = 1;
        bool ordered = true;
        reader.forEachEvent([&](const StoredEvent& ev) {
            ordered = ordered && ev.seq == expected++;
            return ev.seq < 10; // stops early
        });
        QVERIFY(ordered);
        QCOMPARE(expected, 11);
        QCOMPARE(reader.event(777)->distinctId, std::string("u7"));
        QVERIFY(!reader.event(5000));
    }

    void concurrentAppendersShareCommits() {
        const std::string path = file("concurrent.pipescope");
        CaptureWriter writer(path, {.maxQueued = 64, .maxBatch = 32, .replaceExisting = true});
        std::atomic<std::int64_t> next{1};
        auto produce = [&] {
            for (int i = 0; i < 2000; ++i) writer.append(makeEvent(next++, "e", "u"));
        };
        std::thread a(produce), b(produce);
        a.join();
        b.join();
        writer.flush();
        // Readers see every flushed row while the writer is still open (WAL).
        const CaptureReader reader(path);
        QCOMPARE(reader.eventCount(), 4000);
        writer.close();
        QVERIFY_THROWS_EXCEPTION(StoreError, writer.append(makeEvent(9999, "late", "u")));
    }

    void duplicatesResolveTheirFirstOccurrence() {
        const std::string path = file("dups.pipescope");
        {
            CaptureWriter writer(path);
            writer.append(makeEvent(1, "signup", "u1"));
            StoredEvent retry = makeEvent(2, "signup", "u1");
            retry.eventId = retry.dedupKey = "id-1";
            retry.properties = R"({"n":1})";
            retry.verdict = Verdict::Duplicate;
            writer.append(retry);
            writer.append(DuplicateRecord{2, "id-1", "posthog_uuid", std::nullopt, 1714564800001, 1714564800002,
                                          false, ""});
            StoredEvent reused = makeEvent(3, "purchase", "u1");
            reused.eventId = reused.dedupKey = "id-1";
            reused.verdict = Verdict::Duplicate;
            writer.append(reused);
            writer.append(DuplicateRecord{3, "id-1", "posthog_uuid", std::nullopt, 1714564800001, 1714564800003,
                                          true, ""});
            // First seen before this capture began: no first event to point at.
            StoredEvent restored = makeEvent(4, "signup", "u2");
            restored.verdict = Verdict::Duplicate;
            writer.append(restored);
            writer.append(DuplicateRecord{4, "id-4", "posthog_uuid", std::nullopt, 1714000000000, 1714564800004,
                                          false, ""});
        }
        const CaptureReader reader(path);
        const auto dups = reader.duplicates(0, 10);
        QCOMPARE(dups.size(), std::size_t(3));
        QCOMPARE(dups[0].firstSeq, std::optional<std::int64_t>(1));
        QCOMPARE(dups[0].differences, std::string("[]"));
        QVERIFY(dups[1].conflicting);
        QCOMPARE(dups[1].firstSeq, std::optional<std::int64_t>(1));
        QCOMPARE(dups[1].differences, std::string(R"(["name","properties"])"));
        QVERIFY(!dups[2].firstSeq);
        QCOMPARE(dups[2].firstSeen, std::optional<std::int64_t>(1714000000000));
        QVERIFY(reader.event(2)->verdict == Verdict::Duplicate);
    }

    void metaStateAndIssues() {
        const std::string path = file("meta.pipescope");
        const std::string blob("\x00\x01\x02\xff", 4);
        {
            CaptureWriter writer(path);
            writer.putMeta("correlate", R"(["order_id"])");
            writer.putState("dedup_window", "old");
            writer.putState("dedup_window", blob);
            writer.append(IdentityIssueRecord{0, "merge_refused", "refused", R"(["a","b"])", "[3]", "{}"});
        }
        const CaptureReader reader(path);
        QCOMPARE(reader.meta("correlate"), std::string(R"(["order_id"])"));
        QCOMPARE(reader.meta("absent"), std::string());
        QVERIFY(reader.state("dedup_window") == blob);
        QVERIFY(!reader.state("absent"));
        const auto issues = reader.identityIssues();
        QCOMPARE(issues.size(), std::size_t(1));
        QCOMPARE(issues[0].category, std::string("merge_refused"));
        QCOMPARE(issues[0].events, std::string("[3]"));
    }

    void replacesOnlyEarlierCaptures() {
        const std::string path = file("again.pipescope");
        { CaptureWriter(path).append(makeEvent(1, "a", "u")); }
        { CaptureWriter(path).append(makeEvent(1, "b", "u")); }
        QCOMPARE(CaptureReader(path).events(0, 5).front().name, std::string("b"));

        // Another application's SQLite database and a text file are never overwritten.
        const std::string other = file("other.db");
        runSql(other, "CREATE TABLE notes(text)");
        const std::string text = file("notes.txt");
        std::ofstream(text) << "keep me\n";
        for (const std::string& target : {other, text}) {
            try {
                CaptureWriter writer(target);
                QFAIL("expected a StoreError");
            } catch (const StoreError& e) {
                QVERIFY2(std::string(e.what()).find("not a Pipescope capture") != std::string::npos, e.what());
            }
        }
        QVERIFY(std::filesystem::file_size(text) == 8);
        QVERIFY_THROWS_EXCEPTION(StoreError, CaptureWriter(path, {.replaceExisting = false}));
    }

    void readerErrors_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::newRow("missing") << "missing.pipescope" << "no such capture file";
        QTest::newRow("text file") << "text.pipescope" << "not a Pipescope capture";
        QTest::newRow("foreign sqlite") << "foreign.pipescope" << "not a Pipescope capture";
        QTest::newRow("newer version") << "newer.pipescope" << "written by a newer Pipescope";
    }
    void readerErrors() {
        QFETCH(QString, name);
        QFETCH(QString, expected);
        const std::string path = file(name.toStdString());
        if (name.startsWith("text")) std::ofstream(path) << "hello\n";
        if (name.startsWith("foreign")) runSql(path, "CREATE TABLE t(x)");
        if (name.startsWith("newer")) {
            { CaptureWriter(path).append(makeEvent(1, "a", "u")); }
            runSql(path, "PRAGMA user_version = 99");
        }
        try {
            CaptureReader reader(path);
            QFAIL("expected a StoreError");
        } catch (const StoreError& e) {
            QVERIFY2(QString(e.what()).contains(expected), e.what());
            QVERIFY2(QString(e.what()).contains(name), e.what());
        }
    }

    void ingestIsAcknowledgedAfterCommit() {
        const std::string path = file("ingest.pipescope");
        CaptureWriter writer(path);
        std::mutex mutex;
        std::vector<std::int64_t> ids;
        std::vector<bool> visibleWhenAcknowledged;
        for (int i = 0; i < 50; ++i) {
            IngestRecord request;
            request.path = "/batch/";
            request.vendor = "posthog";
            request.body = R"({"batch":[]})";
            request.idempotencyKey = i % 2 ? "key-" + std::to_string(i) : "";
            const bool queued = writer.appendIngest(std::move(request), [&, path](std::int64_t id, const std::string& error) {
                // The acknowledgement comes only once another connection can read the request.
                const bool visible = error.empty() && CaptureReader(path).ingestAfter(id - 1, 1).size() == 1;
                std::lock_guard lock(mutex);
                ids.push_back(id);
                visibleWhenAcknowledged.push_back(visible);
            });
            QVERIFY(queued);
        }
        writer.flush();
        std::lock_guard lock(mutex);
        QCOMPARE(ids.size(), std::size_t(50));
        for (std::size_t i = 0; i < ids.size(); ++i) {
            QCOMPARE(ids[i], std::int64_t(i + 1));
            QVERIFY(visibleWhenAcknowledged[i]);
        }
        const auto rows = CaptureReader(path).ingestAfter(48, 10);
        QCOMPARE(rows.size(), std::size_t(2));
        QCOMPARE(rows[1].idempotencyKey, std::string("key-49"));
        QCOMPARE(rows[1].encoding, std::string("plain"));
    }

    void resumeDiscardsUnfinishedRequests() {
        const std::string path = file("resume.pipescope");
        {
            CaptureWriter writer(path);
            for (int request = 1; request <= 3; ++request) {
                QVERIFY(writer.appendIngest(IngestRecord{0, 1, "/batch/", "posthog", "", "", "plain", "", "{}"}, {}));
                for (int k = 0; k < 2; ++k) {
                    StoredEvent e = makeEvent(request * 10 + k, "e", "u");
                    e.ingestId = request;
                    writer.append(e);
                }
                // The pipeline's cursor lags: request 3 was only partly processed at the "crash".
                if (request < 3) writer.putState("pipeline_cursor", std::to_string(request));
            }
            writer.putCursor("webhook", 20);
        }
        {
            CaptureWriter writer(path, {.resumeExisting = true});
            writer.flush();
        }
        const CaptureReader reader(path);
        QCOMPARE(reader.ingestCount(), 3);
        QCOMPARE(reader.eventCount(), 4);
        QCOMPARE(reader.maxEventSeq(), 21);
        QCOMPARE(reader.cursor("webhook"), 20);
        QCOMPARE(reader.cursor("other"), 0);
        QCOMPARE(reader.deliverableAfter(11, 10).size(), std::size_t(2));
    }

    void oneWriterPerCapture() {
        const std::string path = file("locked.pipescope");
        const std::string sub = file("sub");
        std::filesystem::create_directories(sub);
        std::filesystem::create_symlink(path, file("link.pipescope"));
        {
            CaptureWriter first(path);
            first.append(makeEvent(1, "a", "u"));
            first.flush();
            std::filesystem::create_hard_link(path, file("hard.pipescope"));
            // The same file by any name: its path, a symlink, a `..` path, a hard link; to
            // resume it or to replace it.
            for (const std::string& other : {path, file("link.pipescope"), sub + "/../locked.pipescope",
                                             file("hard.pipescope")}) {
                for (const bool resume : {true, false}) {
                    try {
                        CaptureWriter second(other, {.resumeExisting = resume});
                        QFAIL(qPrintable(QString::fromStdString("a second writer opened " + other)));
                    } catch (const StoreError& e) {
                        QVERIFY2(QString(e.what()).contains("one writer at a time"), e.what());
                    }
                }
            }
            // Nothing was replaced or discarded by the refused attempts.
            first.append(makeEvent(2, "b", "u"));
            first.flush();
            QCOMPARE(CaptureReader(path).eventCount(), 2);
        }
        // Closed: the lock is gone, and any name opens it again. (Read it by the name it is
        // written by: SQLite names the WAL after the path, so a hard link has a WAL of its own.)
        CaptureWriter again(file("hard.pipescope"), {.resumeExisting = true});
        again.append(makeEvent(3, "c", "u"));
        again.flush();
        QCOMPARE(CaptureReader(file("hard.pipescope")).eventCount(), 3);
    }

    void failedPipelineOutputIsNeverCommittedPastTheGap() {
        const std::string path = file("fence.pipescope");
        CaptureWriter writer(path, {.maxBatch = 2});
        const auto event = [](std::int64_t seq, const char* name, std::int64_t ingest) {
            StoredEvent e = makeEvent(seq, name, "u");
            e.ingestId = ingest;
            return e;
        };
        std::mutex mutex;
        std::vector<std::string> cursorResults;
        const auto cursor = [&](std::int64_t id) {
            writer.putState("pipeline_cursor", std::to_string(id), [&](const std::string& error) {
                std::lock_guard lock(mutex);
                cursorResults.push_back(error);
            });
        };
        writer.append(event(1, "ok", 1));
        cursor(1);
        writer.flush();
        QVERIFY(!writer.pipelineFenced());
        // A write that fails as on a full disk.
        runSql(path, "CREATE TRIGGER full_disk BEFORE INSERT ON events WHEN NEW.name = 'boom'"
                     " BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END");
        writer.append(event(2, "boom", 2));
        writer.append(event(3, "later", 2));
        cursor(2);
        writer.append(event(4, "later", 3));
        cursor(3);
        // The collector's records still go in: only the pipeline's are fenced.
        std::atomic<int> ingestOk{0};
        QVERIFY(writer.appendIngest(IngestRecord{0, 1, "/batch/", "posthog", "", "", "plain", "", "{}"},
                                    [&](std::int64_t id, const std::string& error) { ingestOk += error.empty() && id > 0; }));
        QVERIFY_THROWS_EXCEPTION(StoreError, writer.flush());
        QVERIFY(writer.pipelineFenced());
        QCOMPARE(ingestOk.load(), 1);
        QVERIFY(writer.lastError().find("disk is full") != std::string::npos);
        QVERIFY(writer.failedCommits() >= 1);
        {
            const CaptureReader reader(path);
            QCOMPARE(reader.eventCount(), 1); // not 2 or 3: nothing after the gap
            QCOMPARE(reader.state("pipeline_cursor").value_or(""), std::string("1"));
        }
        {
            std::lock_guard lock(mutex);
            QCOMPARE(cursorResults.size(), std::size_t(3));
            QCOMPARE(cursorResults[0], std::string());
            QVERIFY(!cursorResults[1].empty() && !cursorResults[2].empty());
        }
        // While the disk is still full, a resync fails and the fence stays.
        runSql(path, "CREATE TRIGGER full_disk_state BEFORE UPDATE ON state"
                     " BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END");
        runSql(path, "CREATE TRIGGER full_disk_state_insert BEFORE INSERT ON state"
                     " BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END");
        QVERIFY_THROWS_EXCEPTION(StoreError, writer.resyncPipeline(1));
        QVERIFY(writer.pipelineFenced());
        // Space again: the resync lifts the fence and the pipeline redoes requests 2 and 3.
        runSql(path, "DROP TRIGGER full_disk; DROP TRIGGER full_disk_state; DROP TRIGGER full_disk_state_insert");
        writer.resyncPipeline(1);
        QVERIFY(!writer.pipelineFenced());
        writer.append(event(2, "redone", 2));
        writer.append(event(3, "redone", 3));
        cursor(3);
        writer.flush();
        const CaptureReader reader(path);
        QCOMPARE(reader.eventCount(), 3);
        QCOMPARE(reader.event(2)->name, std::string("redone"));
        QCOMPARE(reader.state("pipeline_cursor").value_or(""), std::string("3"));
        QCOMPARE(reader.ingestCount(), 1);
    }

    void durabilityNames() {
        QCOMPARE(parseDurability("full"), std::optional<Durability>(Durability::Full));
        QCOMPARE(parseDurability("process"), std::optional<Durability>(Durability::Process));
        QVERIFY(!parseDurability("fsync"));
        QCOMPARE(toString(Durability::Full), std::string_view("full"));
        // Both open and write; `full` syncs every commit.
        for (const Durability durability : {Durability::Full, Durability::Process}) {
            const std::string path = file(std::string("durability-") + std::string(toString(durability)) + ".pipescope");
            CaptureWriter writer(path, {.durability = durability});
            writer.append(makeEvent(1, "a", "u"));
            writer.flush();
            QCOMPARE(CaptureReader(path).eventCount(), 1);
        }
    }

    void writesWalWithOneWriter() {
        const std::string path = file("wal.pipescope");
        CaptureWriter writer(path);
        writer.append(makeEvent(1, "a", "u"));
        writer.flush();
        QVERIFY(std::filesystem::exists(path + "-wal"));
        writer.close();
        // Closed captures are one self-contained file.
        QVERIFY(!std::filesystem::exists(path + "-wal") || std::filesystem::file_size(path + "-wal") == 0);
    }

    // Schema v3 compresses each event (a frame of its properties and one of its raw bytes); after
    // kTrainingEvents with a dictionary kept in the file.
    // Every byte comes back through every read path, and a resumed writer goes on with the same
    // dictionary.
    void compressesWithATrainedDictionary() {
        const std::string path = file("dictionary.pipescope");
        constexpr std::int64_t kEvents = 5000;
        {
            CaptureWriter writer(path);
            for (std::int64_t seq = 1; seq <= kEvents; ++seq) writer.append(variedEvent(seq));
            writer.close();
        }
        QCOMPARE(sqlScalar(path, "SELECT count(*) FROM dictionaries"), 1);
        QVERIFY(sqlScalar(path, "SELECT count(*) FROM events WHERE codec = 3") >= 1);  // before the dictionary
        QVERIFY(sqlScalar(path, "SELECT count(*) FROM events WHERE codec = 4") >= 2900); // with it
        QCOMPARE(sqlScalar(path, "SELECT count(*) FROM events WHERE length(raw) > 0 OR length(properties) > 0"), 0);
        {
            // The properties-only scan, on two threads: each event once, its properties exact.
            const CaptureReader reader(path);
            std::vector<std::atomic<int>> seen(kEvents + 1);
            std::atomic<int> wrong{0};
            reader.scanProperties(2, [&](std::int64_t seq, std::string_view properties) {
                if (seq < 1 || seq > kEvents || properties != variedEvent(seq).properties) ++wrong;
                else ++seen[static_cast<std::size_t>(seq)];
                return true;
            });
            QCOMPARE(wrong.load(), 0);
            for (std::int64_t seq = 1; seq <= kEvents; ++seq) QCOMPARE(seen[static_cast<std::size_t>(seq)].load(), 1);
            std::atomic<int> visited{0};
            reader.scanProperties(2, [&](std::int64_t, std::string_view) { return ++visited < 10; });
            QVERIFY(visited.load() >= 10 && visited.load() < 100); // stopped early, both threads
        }
        {
            CaptureWriter writer(path, {.resumeExisting = true});
            for (std::int64_t seq = kEvents + 1; seq <= kEvents + 10; ++seq) writer.append(variedEvent(seq));
        }
        QCOMPARE(sqlScalar(path, "SELECT count(*) FROM dictionaries"), 1);
        const CaptureReader reader(path);
        std::int64_t seq = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            const StoredEvent want = variedEvent(++seq);
            if (e.raw != want.raw || e.properties != want.properties || e.dedupKey != want.dedupKey) {
                qWarning("event %lld differs", static_cast<long long>(seq));
                return false;
            }
            return true;
        });
        QCOMPARE(seq, kEvents + 10);
        // Windows: by offset and by seq are the same rows.
        const auto byOffset = reader.events(4000, 256);
        const auto bySeq = reader.eventsAfter(4000, 256);
        QCOMPARE(byOffset.size(), std::size_t(256));
        QCOMPARE(bySeq.size(), std::size_t(256));
        for (std::size_t i = 0; i < bySeq.size(); ++i) {
            QCOMPARE(bySeq[i].seq, std::int64_t(4001 + i));
            QVERIFY(bySeq[i].raw == byOffset[i].raw && bySeq[i].raw == variedEvent(bySeq[i].seq).raw);
        }
        QCOMPARE(reader.eventsAfter(kEvents + 10, 10).size(), std::size_t(0));
        QCOMPARE(reader.event(250)->raw, variedEvent(250).raw);
    }

    // What an event table and an inspector read: compact rows by keyset, maintained counts per
    // verdict (through appends and a rollback), and one event's links.
    void rowWindowsCountsAndLineage() {
        const std::string path = file("views.pipescope");
        std::vector<std::int64_t> notified;
        std::mutex notifiedMutex;
        CaptureWriter::Options options;
        options.onCommitted = [&](std::int64_t seq) {
            std::lock_guard guard(notifiedMutex);
            notified.push_back(seq);
        };
        CaptureWriter writer(path, options);
        const auto verdictOf = [](std::int64_t seq) {
            return seq % 10 == 0 ? Verdict::Invalid : seq % 7 == 0 ? Verdict::Duplicate : seq % 5 == 0 ? Verdict::Unplanned : Verdict::Valid;
        };
        constexpr std::int64_t kEvents = 3000;
        for (std::int64_t seq = 1; seq <= kEvents; ++seq) {
            StoredEvent e = variedEvent(seq);
            e.seq = 0; // numbered by the store
            e.verdict = verdictOf(seq);
            e.ingestId = (seq + 99) / 100; // 100 events per request
            writer.append(std::move(e));
        }
        writer.append(DuplicateRecord{14, "id-3", "posthog_uuid", std::nullopt, std::nullopt, 1, false, ""});
        DlqEntry dead;
        dead.reason = "schema_violation";
        dead.eventSeq = 20;
        dead.raw = "{}";
        dead.ingestId = 1;
        writer.append(dead);
        writer.append(DeliveryRecord{"warehouse", "[18,19,20,21]", 1, 1000, 5, 500, "HTTP 500", "retrying"});
        writer.append(DeliveryRecord{"warehouse", "[18,19,21]", 2, 2000, 5, 200, "", "delivered"});
        writer.append(DeliveryRecord{"webhook", "[19]", 1, 2100, 3, 200, "", "delivered"});
        writer.appendDestinationDeadLetter("webhook", 21, "HTTP 400");
        IngestRecord request;
        request.path = "/batch/";
        request.vendor = "posthog";
        request.body = "{\"batch\":[]}";
        QVERIFY(writer.appendIngest(request, [](std::int64_t, const std::string&) {}));
        writer.flush();
        {
            std::lock_guard guard(notifiedMutex);
            QVERIFY(!notified.empty());
            QCOMPARE(notified.back(), kEvents);
            QVERIFY(std::is_sorted(notified.begin(), notified.end()));
        }

        const CaptureReader reader(path);
        VerdictCounts expected;
        for (std::int64_t seq = 1; seq <= kEvents; ++seq) {
            switch (verdictOf(seq)) {
            case Verdict::Valid: ++expected.valid; break;
            case Verdict::Invalid: ++expected.invalid; break;
            case Verdict::Unplanned: ++expected.unplanned; break;
            case Verdict::Duplicate: ++expected.duplicate; break;
            }
        }
        const auto sameCounts = [](const VerdictCounts& a, const VerdictCounts& b) {
            return a.valid == b.valid && a.invalid == b.invalid && a.unplanned == b.unplanned && a.duplicate == b.duplicate;
        };
        QVERIFY(sameCounts(reader.verdictCounts(), expected));
        QCOMPARE(sqlScalar(path, "SELECT count(*) FROM events WHERE verdict = 'invalid'"), expected.invalid);

        // Rows are the small columns of the same events, dense from 1.
        const auto rows = reader.rowsAfter(2000, 256);
        const auto full = reader.eventsAfter(2000, 256);
        QCOMPARE(rows.size(), std::size_t(256));
        for (std::size_t i = 0; i < rows.size(); ++i) {
            QCOMPARE(rows[i].seq, std::int64_t(2001 + i));
            QCOMPARE(rows[i].name, full[i].name);
            QCOMPARE(rows[i].distinctId, full[i].distinctId);
            QVERIFY(rows[i].verdict == full[i].verdict);
            QCOMPARE(rows[i].ingestId, full[i].ingestId);
            QCOMPARE(rows[i].timestamp, full[i].timestamp);
        }
        const auto before = reader.rowsBefore(kEvents + 1, 10);
        QCOMPARE(before.size(), std::size_t(10));
        QCOMPARE(before.front().seq, kEvents - 9);
        QCOMPARE(before.back().seq, kEvents);
        const auto picked = reader.rowsOf({30, 5, 99999, 7});
        QCOMPARE(picked.size(), std::size_t(3));
        QCOMPARE(picked[0].seq, std::int64_t(30));
        QCOMPARE(picked[2].seq, std::int64_t(7));
        const auto invalid = reader.seqsWithVerdict(Verdict::Invalid, 100, 3);
        QCOMPARE(invalid, (std::vector<std::int64_t>{110, 120, 130}));
        const auto ofRequest = reader.eventsOfIngest(2);
        QCOMPARE(ofRequest.size(), std::size_t(100));
        QCOMPARE(ofRequest.front(), std::int64_t(101));

        // One event's links.
        QCOMPARE(reader.deliveriesOf(19).size(), std::size_t(3));
        QCOMPARE(reader.deliveriesOf(20).size(), std::size_t(1));
        QCOMPARE(reader.deliveriesOf(20).front().outcome, std::string("retrying"));
        QVERIFY(reader.deliveriesOf(22).empty());
        QCOMPARE(reader.duplicateOf(14)->firstSeq, std::optional<std::int64_t>(3));
        QVERIFY(!reader.duplicateOf(15));
        const auto lineage = reader.lineage(21);
        QVERIFY(lineage);
        QCOMPARE(lineage->event.seq, std::int64_t(21));
        QVERIFY(lineage->request); // request 1 is in the ingest log
        QVERIFY(lineage->request->body.empty());
        QCOMPARE(lineage->deliveries.size(), std::size_t(2));
        QCOMPARE(lineage->destinationDeadLetters.size(), std::size_t(1));
        QCOMPARE(lineage->destinationDeadLetters.front().first, std::string("webhook"));
        QCOMPARE(reader.lineage(3)->duplicatedBy, (std::vector<std::int64_t>{14}));
        QCOMPARE(reader.lineage(20)->deadLetters.size(), std::size_t(1));
        QVERIFY(!reader.lineage(kEvents + 1));

        // A rollback (resync) removes a tail: counts follow and the notification goes back.
        writer.resyncPipeline(20); // the events of requests after 20: seqs 2001..3000
        {
            std::lock_guard guard(notifiedMutex);
            QCOMPARE(notified.back(), std::int64_t(2000));
        }
        VerdictCounts kept;
        for (std::int64_t seq = 1; seq <= 2000; ++seq) {
            switch (verdictOf(seq)) {
            case Verdict::Valid: ++kept.valid; break;
            case Verdict::Invalid: ++kept.invalid; break;
            case Verdict::Unplanned: ++kept.unplanned; break;
            case Verdict::Duplicate: ++kept.duplicate; break;
            }
        }
        QVERIFY(sameCounts(reader.verdictCounts(), kept));
        // New events take the freed numbers: seqs stay dense.
        writer.append(variedEvent(0));
        writer.flush();
        QCOMPARE(reader.maxEventSeq(), std::int64_t(2001));
        QCOMPARE(reader.verdictCounts().total(), std::int64_t(2001));
    }

    // tests/data/capture-v1.pipescope was written by the version-1 store (main before schema v2).
    // The reader migrates a copy; every event reads as before; a resumed writer appends to it, and
    // a duplicate of a version-1 event finds its first occurrence through the new key index.
    void migratesAVersion1Capture() {
        const std::string path = file("v1.pipescope");
        std::filesystem::copy_file(PIPESCOPE_SOURCE_DIR "/tests/data/capture-v1.pipescope", path);
        const std::vector<V1Row> before = readV1Rows(path);
        QCOMPARE(before.size(), std::size_t(13));
        QCOMPARE(sqlScalar(path, "PRAGMA user_version"), 1);
        {
            const CaptureReader reader(path);
            QCOMPARE(reader.info().schemaVersion, kCaptureSchemaVersion);
            std::size_t i = 0;
            reader.forEachEvent([&](const StoredEvent& e) {
                const V1Row& row = before.at(i++);
                if (e.seq != row.seq || e.name != row.name || e.raw != row.raw || e.properties != row.properties ||
                    e.dedupKey != row.dedupKey) {
                    qWarning("event %lld differs after migration", static_cast<long long>(e.seq));
                    return false;
                }
                return true;
            });
            QCOMPARE(i, before.size());
        }
        QCOMPARE(sqlScalar(path, "PRAGMA user_version"), kCaptureSchemaVersion);
        {
            const CaptureReader reader(path);
            QCOMPARE(reader.verdictCounts().total(), std::int64_t(before.size())); // counted by the migration
            QCOMPARE(reader.rowsAfter(0, 100).size(), before.size());
        }
        const V1Row& first = before.front();
        QVERIFY(!first.dedupKey.empty());
        const std::int64_t next = before.back().seq + 1;
        {
            CaptureWriter writer(path, {.resumeExisting = true});
            StoredEvent again = makeEvent(next, first.name, "someone-else");
            again.eventId = again.dedupKey = first.dedupKey;
            again.verdict = Verdict::Duplicate;
            writer.append(again);
            writer.append(DuplicateRecord{next, first.dedupKey, "posthog_uuid", std::nullopt, std::nullopt, 1, true, ""});
            writer.append(variedEvent(next + 1));
        }
        const CaptureReader reader(path);
        QCOMPARE(reader.eventCount(), std::int64_t(before.size() + 2));
        QCOMPARE(reader.event(first.seq)->raw, first.raw);
        QCOMPARE(reader.event(next)->raw, makeEvent(next, "", "").raw);
        QCOMPARE(reader.event(next + 1)->properties, variedEvent(next + 1).properties);
        const auto dups = reader.duplicates(0, 10);
        QCOMPARE(dups.size(), std::size_t(1));
        QCOMPARE(dups[0].firstSeq, std::optional<std::int64_t>(first.seq));
        QCOMPARE(dups[0].differences, std::string(R"(["distinct_id","properties"])"));
        QCOMPARE(reader.verdictCounts().total(), std::int64_t(before.size() + 2));
        QCOMPARE(reader.verdictCounts().duplicate, std::int64_t(1));
    }

    // A version-1 capture that cannot be migrated (here: another connection holds the write lock
    // past the busy timeout; likewise a read-only file or medium) is read as it is.
    void readsAVersion1CaptureItCannotMigrate() {
        const std::string path = file("v1-busy.pipescope");
        std::filesystem::copy_file(PIPESCOPE_SOURCE_DIR "/tests/data/capture-v1.pipescope", path);
        const std::vector<V1Row> before = readV1Rows(path);
        sqlite3* holder = nullptr;
        QCOMPARE(sqlite3_open(path.c_str(), &holder), SQLITE_OK);
        QCOMPARE(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
        {
            const CaptureReader reader(path);
            QCOMPARE(reader.info().schemaVersion, 1);
            const auto events = reader.events(0, 100);
            QCOMPARE(events.size(), before.size());
            for (std::size_t i = 0; i < events.size(); ++i) {
                QVERIFY(events[i].raw == before[i].raw);
                QVERIFY(events[i].properties == before[i].properties);
            }
            QCOMPARE(reader.eventsAfter(before[5].seq, 2).front().seq, before[6].seq);
            // What version 3 maintains is computed from the rows instead.
            QCOMPARE(reader.verdictCounts().total(), std::int64_t(before.size()));
            QCOMPARE(reader.rowsAfter(before[5].seq, 2).front().name, before[6].name);
            QVERIFY(reader.deliveriesOf(before[0].seq).empty());
        }
        sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(holder);
        QCOMPARE(sqlScalar(path, "PRAGMA user_version"), 1);
    }

private:
    std::string file(const std::string& name) const { return m_dir.filePath(QString::fromStdString(name)).toStdString(); }
    QTemporaryDir m_dir;
};

QTEST_GUILESS_MAIN(TestStore)
#include "tst_store.moc"
