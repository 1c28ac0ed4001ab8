// The deduplication window: window semantics, conflicts, fingerprints, durations, persistence,
// growth and bounded memory in exact mode, and the Bloom mode's error rate and rotation.
#include "dedup/dedup_window.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <cstring>
#include <string>
#include <xxhash.h>

using namespace pipescope;

Q_DECLARE_METATYPE(pipescope::DedupMode)
Q_DECLARE_METATYPE(pipescope::DedupOptions)

// Readable QCOMPARE failures (found by argument-dependent lookup).
namespace pipescope {
char* toString(DedupStateError::Reason reason) {
    return qstrdup(QByteArray::number(int(reason)).constData());
}
char* toString(const DedupOptions& options) {
    return qstrdup(QString("{%1, window %2 ms, maxKeys %3, bloom %4 keys at %5 in %6 generations}")
                       .arg(QString::fromUtf8(std::string(toString(options.mode)).c_str()))
                       .arg(options.windowMillis)
                       .arg(options.maxKeys)
                       .arg(options.bloomExpectedKeys)
                       .arg(options.bloomFalsePositiveRate)
                       .arg(options.bloomGenerations)
                       .toUtf8()
                       .constData());
}
} // namespace pipescope

namespace {

// Random 64-bit values, as dedupKeyHash() yields; bulk tests use them to skip string building.
std::uint64_t randomKey(std::uint64_t i) {
    std::uint64_t x = i + 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
std::uint64_t freshKey(std::uint64_t i) {
    return randomKey(i ^ 0x5555'0000'0000'0000ull);
}

DedupOptions exactOptions(std::int64_t windowMillis, std::size_t maxKeys = 10'000'000) {
    DedupOptions options;
    options.mode = DedupMode::Exact;
    options.windowMillis = windowMillis;
    options.maxKeys = maxKeys;
    return options;
}

DedupOptions bloomOptions(std::int64_t windowMillis, std::size_t expectedKeys = 10'000,
                          double falsePositiveRate = 0.001) {
    DedupOptions options;
    options.mode = DedupMode::Bloom;
    options.windowMillis = windowMillis;
    options.bloomExpectedKeys = expectedKeys;
    options.bloomFalsePositiveRate = falsePositiveRate;
    return options;
}

// Runs a script of observations, each "key@time=new" or "key@time=dup", and checks every verdict.
void runScript(DedupWindow& window, const QStringList& steps) {
    for (const QString& step : steps) {
        const auto at = step.indexOf('@');
        const auto equals = step.indexOf('=');
        QVERIFY2(at > 0 && equals > at, qPrintable("malformed step " + step));
        const std::string key = step.left(at).toStdString();
        const qint64 time = step.mid(at + 1, equals - at - 1).toLongLong();
        const QString expected = step.mid(equals + 1);
        QVERIFY2(expected == "new" || expected == "dup", qPrintable("malformed step " + step));
        const DedupVerdict verdict = window.observe(dedupKeyHash(key), 7, time);
        QVERIFY2(verdict.duplicate == (expected == "dup"),
                 qPrintable(QString("step %1: got %2").arg(step, verdict.duplicate ? "dup" : "new")));
    }
}

QByteArray toBytes(const std::string& bytes) {
    return QByteArray(bytes.data(), static_cast<qsizetype>(bytes.size()));
}

void writeFile(const QString& path, const QByteArray& bytes) {
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    QCOMPARE(file.write(bytes), bytes.size());
}

// Rewrites the trailing checksum so a deliberately edited state passes the integrity check.
void resealChecksum(std::string& bytes) {
    const std::uint64_t checksum = XXH3_64bits(bytes.data(), bytes.size() - 8);
    for (int i = 0; i < 8; ++i)
        bytes[bytes.size() - 8 + i] = static_cast<char>((checksum >> (8 * i)) & 0xFF);
}

} // namespace

class TestDedup : public QObject {
    Q_OBJECT

private slots:
    void windowExpiry_data();
    void windowExpiry();
    void bothModes_data();
    void bothModes();
    void watermarkReclaim();
    void expiredKeysMakeRoomBeforeEviction();
    void conflicts_data();
    void conflicts();
    void lookupRecordsNothing();
    void fingerprint_data();
    void fingerprint();
    void hashesAreStable();
    void parseDuration_data();
    void parseDuration();
    void formatDuration_data();
    void formatDuration();
    void invalidOptions_data();
    void invalidOptions();
    void restartPersistence_data();
    void restartPersistence();
    void damagedState_data();
    void damagedState();
    void corruptEntryBehindValidChecksum();
    void loadWithOtherOptions();
    void saveReplacesAtomically();
    void saveAndLoadErrorsNameTheFile();
    void growth();
    void boundedMemory();
    void evictionWithTiedTimes();
    void bloomNoFalseNegatives();
    void bloomFalsePositiveRate_data();
    void bloomFalsePositiveRate();
    void bloomRotation_data();
    void bloomRotation();
    void bloomVerdictIsApproximate();
};

void TestDedup::windowExpiry_data() {
    QTest::addColumn<QStringList>("steps"); // window 1000 ms

    QTest::newRow("retry within the window") << QStringList{"a@0=new", "a@500=dup"};
    QTest::newRow("just inside the window") << QStringList{"a@0=new", "a@1000=dup"};
    QTest::newRow("just outside the window") << QStringList{"a@0=new", "a@1001=new"};
    QTest::newRow("outside starts a new window")
        << QStringList{"a@0=new", "a@1001=new", "a@2001=dup", "a@2002=new"};
    QTest::newRow("different keys") << QStringList{"a@0=new", "b@0=new", "c@1=new", "b@2=dup"};
    QTest::newRow("out of order, just inside") << QStringList{"a@5000=new", "a@4000=dup"};
    QTest::newRow("out of order, just outside") << QStringList{"a@5000=new", "a@3999=new", "a@4500=dup"};
    QTest::newRow("late event is not remembered") << QStringList{"b@5000=new", "a@3000=new", "a@3000=new"};
    QTest::newRow("earlier occurrence arrives after a later one")
        << QStringList{"a@4500=new", "b@4800=new", "a@4200=dup"};
    // Expired by the watermark: not a duplicate even though |900 - 0| <= 1000, so verdicts do not
    // depend on whether the entry was reclaimed yet.
    QTest::newRow("expired by the watermark") << QStringList{"a@0=new", "b@1001=new", "a@900=new"};
    QTest::newRow("expired entry restarts its window")
        << QStringList{"a@0=new", "b@2000=new", "a@1500=new", "a@2400=dup"};
    QTest::newRow("negative times") << QStringList{"a@-5000=new", "a@-4000=dup", "a@-3999=new"};
}

void TestDedup::windowExpiry() {
    QFETCH(QStringList, steps);
    DedupWindow window(exactOptions(1000));
    runScript(window, steps);
}

void TestDedup::bothModes_data() {
    QTest::addColumn<DedupMode>("mode");
    QTest::addColumn<QStringList>("steps"); // window 3000 ms; Bloom keeps keys up to 1000 ms longer

    const QList<std::pair<const char*, QStringList>> cases{
        {"immediate retry", {"a@0=new", "a@0=dup"}},
        {"retry within the window", {"a@0=new", "a@1500=dup", "a@2999=dup"}},
        {"distinct keys", {"a@0=new", "b@1=new", "c@2=new", "d@3=new", "e@4=new", "b@5=dup", "e@6=dup"}},
        {"forgotten well after the window", {"a@0=new", "a@5000=new", "a@5001=dup"}},
        {"late event is not remembered", {"b@10000=new", "a@5000=new", "a@5000=new"}},
        {"retry out of order", {"a@2000=new", "b@2500=new", "a@1000=dup"}},
    };
    for (const auto& [name, steps] : cases) {
        QTest::addRow("exact: %s", name) << DedupMode::Exact << steps;
        QTest::addRow("bloom: %s", name) << DedupMode::Bloom << steps;
    }
}

void TestDedup::bothModes() {
    QFETCH(DedupMode, mode);
    QFETCH(QStringList, steps);
    DedupWindow window(mode == DedupMode::Exact ? exactOptions(3000) : bloomOptions(3000));
    runScript(window, steps);
}

void TestDedup::watermarkReclaim() {
    // A crowded table (900 keys, 1250 slots), half of them expiring: reclaiming leaves gaps
    // everywhere, and every survivor must still be found behind them.
    DedupWindow window(exactOptions(1000, 1000));
    for (int i = 0; i < 900; ++i)
        QVERIFY(!window.observe(randomKey(i), 1, i % 2 == 0 ? 0 : 500).duplicate);
    QCOMPARE(window.size(), std::size_t{900});

    // Watermark 1200: the keys first seen at 0 are expired, those at 500 live.
    QVERIFY(!window.observe(randomKey(1000), 1, 1200).duplicate);
    QCOMPARE(window.reclaimExpired(), std::size_t{450});
    QCOMPARE(window.size(), std::size_t{451});
    QCOMPARE(window.stats().expiredReclaimed, std::uint64_t{450});
    QCOMPARE(window.reclaimExpired(), std::size_t{0});
    for (int i = 1; i < 900; i += 2)
        QVERIFY(window.lookup(randomKey(i), 1, 1200).duplicate);
    for (int i = 0; i < 900; i += 2)
        QVERIFY(!window.observe(randomKey(i), 1, 1200).duplicate);
    QCOMPARE(window.size(), std::size_t{901});
}

void TestDedup::expiredKeysMakeRoomBeforeEviction() {
    // 1000 keys at most, but only ~500 are ever live at once: reclaiming must keep up without
    // evicting a single live key.
    DedupWindow window(exactOptions(1000, 1000));
    const std::size_t fullMemory = [] {
        DedupWindow full(exactOptions(1000, 1000));
        for (int i = 0; i < 1000; ++i)
            full.observe(randomKey(i), 0, 0);
        return full.memoryBytes();
    }();
    for (int i = 0; i < 100'000; ++i)
        QVERIFY(!window.observe(randomKey(i), 0, 2 * i).duplicate);
    const DedupStats stats = window.stats();
    QCOMPARE(stats.evictedEarly, std::uint64_t{0});
    QVERIFY(stats.expiredReclaimed >= 100'000 - 1000);
    QVERIFY(stats.keys <= 1000);
    QVERIFY(stats.memoryBytes <= fullMemory);
    for (int i = 100'000 - 500; i < 100'000; ++i)
        QVERIFY(window.lookup(randomKey(i), 0, 200'000).duplicate);
}

void TestDedup::conflicts_data() {
    QTest::addColumn<QStringList>("first"); // name, distinct id, properties
    QTest::addColumn<QStringList>("second");
    QTest::addColumn<bool>("conflicting");

    const QStringList signup{"signup", "user-1", R"({"plan":"pro"})"};
    QTest::newRow("plain retry") << signup << signup << false;
    QTest::newRow("different properties")
        << signup << QStringList{"signup", "user-1", R"({"plan":"free"})"} << true;
    QTest::newRow("different name") << signup << QStringList{"login", "user-1", R"({"plan":"pro"})"} << true;
    QTest::newRow("different distinct id")
        << signup << QStringList{"signup", "user-2", R"({"plan":"pro"})"} << true;
    QTest::newRow("fields shifted across a boundary")
        << QStringList{"ab", "c", "{}"} << QStringList{"a", "bc", "{}"} << true;
}

void TestDedup::conflicts() {
    QFETCH(QStringList, first);
    QFETCH(QStringList, second);
    QFETCH(bool, conflicting);
    const auto content = [](const QStringList& fields) {
        return dedupContentHash(fields[0].toStdString(), fields[1].toStdString(), fields[2].toStdString());
    };
    DedupWindow window(exactOptions(60'000));
    const std::uint64_t key = dedupKeyHash("0b7c3c1e-5d2f-4c55-9d8e-1f2a3b4c5d6e");
    QVERIFY(!window.observe(key, content(first), 1000).duplicate);
    const DedupVerdict verdict = window.observe(key, content(second), 2500);
    QVERIFY(verdict.duplicate);
    QCOMPARE(verdict.conflicting, conflicting);
    QCOMPARE(verdict.firstSeenMillis, std::optional<std::int64_t>(1000));
    QVERIFY(!verdict.approximate);
    const DedupStats stats = window.stats();
    QCOMPARE(stats.lookups, std::uint64_t{2});
    QCOMPARE(stats.duplicates, std::uint64_t{1});
    QCOMPARE(stats.conflicts, std::uint64_t{conflicting ? 1u : 0u});
}

void TestDedup::lookupRecordsNothing() {
    DedupWindow window(exactOptions(1000));
    QVERIFY(!window.lookup(randomKey(1), 0, 10).duplicate);
    QVERIFY(!window.watermarkMillis());
    window.observe(randomKey(1), 0, 10);
    QVERIFY(!window.lookup(randomKey(2), 0, 20).duplicate);
    QVERIFY(!window.lookup(randomKey(2), 0, 20).duplicate); // still not recorded
    QVERIFY(window.lookup(randomKey(1), 0, 20).duplicate);
    QVERIFY(!window.lookup(randomKey(1), 0, 1011).duplicate); // would expire it at that time
    QCOMPARE(window.size(), std::size_t{1});
    QCOMPARE(window.stats().lookups, std::uint64_t{1});
    QCOMPARE(window.watermarkMillis(), std::optional<std::int64_t>(10));
}

void TestDedup::fingerprint_data() {
    QTest::addColumn<QStringList>("first"); // name, distinct id, timestamp ("" = absent), properties
    QTest::addColumn<QStringList>("second");
    QTest::addColumn<bool>("duplicate");

    const QStringList click{"click", "anon-7", "1700000000000", R"({"button":"buy"})"};
    QTest::newRow("same content twice") << click << click << true;
    QTest::newRow("timestamp differs")
        << click << QStringList{"click", "anon-7", "1700000000001", R"({"button":"buy"})"} << false;
    QTest::newRow("timestamp absent vs present")
        << QStringList{"click", "anon-7", "", "{}"} << QStringList{"click", "anon-7", "0", "{}"} << false;
    QTest::newRow("both without timestamp")
        << QStringList{"click", "anon-7", "", "{}"} << QStringList{"click", "anon-7", "", "{}"} << true;
    QTest::newRow("properties differ")
        << click << QStringList{"click", "anon-7", "1700000000000", R"({"button":"sell"})"} << false;
    QTest::newRow("distinct id differs")
        << click << QStringList{"click", "anon-8", "1700000000000", R"({"button":"buy"})"} << false;
    QTest::newRow("property order differs (bytes compared)")
        << QStringList{"click", "a", "5", R"({"x":1,"y":2})"}
        << QStringList{"click", "a", "5", R"({"y":2,"x":1})"} << false;
    QTest::newRow("fields shifted across a boundary")
        << QStringList{"clickx", "a", "5", "{}"} << QStringList{"click", "xa", "5", "{}"} << false;
}

void TestDedup::fingerprint() {
    QFETCH(QStringList, first);
    QFETCH(QStringList, second);
    QFETCH(bool, duplicate);
    const auto fingerprintOf = [](const QStringList& fields) {
        const std::optional<std::int64_t> timestamp =
            fields[2].isEmpty() ? std::nullopt : std::optional<std::int64_t>(fields[2].toLongLong());
        return dedupFingerprint(fields[0].toStdString(), fields[1].toStdString(), timestamp,
                                fields[3].toStdString());
    };
    QCOMPARE(fingerprintOf(first) == fingerprintOf(second), duplicate);
    DedupWindow window(exactOptions(60'000));
    QVERIFY(!window.observe(fingerprintOf(first), 0, 100).duplicate);
    QCOMPARE(window.observe(fingerprintOf(second), 0, 200).duplicate, duplicate);
}

void TestDedup::hashesAreStable() {
    // Saved windows hold these hashes: a change here silently breaks every saved state, so it
    // must come with a new state format version.
    QCOMPARE(dedupKeyHash("0b7c3c1e-5d2f-4c55-9d8e-1f2a3b4c5d6e"), std::uint64_t{0x68adc9f45de50b46ull});
    QCOMPARE(dedupContentHash("signup", "user-1", R"({"plan":"pro"})"), std::uint32_t{0x455cadb3u});
    QCOMPARE(dedupFingerprint("click", "anon-7", 1700000000000, "{}"), std::uint64_t{0x39ff5137c6843f64ull});
    QCOMPARE(dedupFingerprint("click", "anon-7", std::nullopt, "{}"), std::uint64_t{0xac10e25f89b9d435ull});
    QVERIFY(dedupKeyHash("a") != dedupKeyHash("b"));
    QVERIFY(dedupKeyHash("") != dedupFingerprint("", "", std::nullopt, ""));
}

void TestDedup::parseDuration_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<qint64>("millis"); // -1: rejected
    QTest::addColumn<QString>("error");

    QTest::newRow("seconds") << "30s" << qint64{30'000} << "";
    QTest::newRow("seconds, many") << "3600s" << qint64{3'600'000} << "";
    QTest::newRow("minutes") << "90m" << qint64{5'400'000} << "";
    QTest::newRow("hours") << "24h" << qint64{86'400'000} << "";
    QTest::newRow("days") << "7d" << qint64{604'800'000} << "";
    QTest::newRow("milliseconds") << "250ms" << qint64{250} << "";
    QTest::newRow("sum") << "1h30m" << qint64{5'400'000} << "";
    QTest::newRow("leading zeros") << "007s" << qint64{7'000} << "";

    QTest::newRow("empty") << "" << qint64{-1} << "empty duration";
    QTest::newRow("zero without unit") << "0" << qint64{-1} << "missing unit after 0 in duration '0'";
    QTest::newRow("zero") << "0s" << qint64{-1} << "zero duration '0s'";
    QTest::newRow("negative") << "-5m" << qint64{-1} << "negative duration '-5m'";
    QTest::newRow("unknown unit") << "12x" << qint64{-1} << "unknown unit 'x' in duration '12x'";
    QTest::newRow("no unit") << "24" << qint64{-1} << "missing unit after 24";
    QTest::newRow("unit only") << "h" << qint64{-1} << "unexpected 'h' in duration 'h'";
    QTest::newRow("fraction") << "1.5h" << qint64{-1} << "unexpected '.' after 1";
    QTest::newRow("space") << " 24h" << qint64{-1} << "unexpected ' '";
    QTest::newRow("plus sign") << "+5m" << qint64{-1} << "unexpected '+'";
    QTest::newRow("word unit") << "5min" << qint64{-1} << "unknown unit 'min'";
    QTest::newRow("overflowing number") << "99999999999999999999s" << qint64{-1} << "too large";
    QTest::newRow("overflowing total") << "9999999999999999d" << qint64{-1} << "too large";
}

void TestDedup::parseDuration() {
    QFETCH(QString, text);
    QFETCH(qint64, millis);
    QFETCH(QString, error);
    std::string message;
    const std::optional<std::int64_t> parsed = parseDurationMillis(text.toStdString(), &message);
    if (millis >= 0) {
        QCOMPARE(parsed, std::optional<std::int64_t>(millis));
        QVERIFY(message.empty());
    } else {
        QVERIFY(!parsed);
        QVERIFY2(QString::fromStdString(message).contains(error), message.c_str());
        // Every rejection says what would be accepted, except when the number is the problem.
        if (!error.contains("too large") && !error.contains("zero") && !error.contains("negative"))
            QVERIFY2(QString::fromStdString(message).contains("e.g. 30s"), message.c_str());
    }
}

void TestDedup::formatDuration_data() {
    QTest::addColumn<qint64>("millis");
    QTest::addColumn<QString>("text");
    QTest::newRow("day") << qint64{86'400'000} << "1d";
    QTest::newRow("hours") << qint64{75'600'000} << "21h";
    QTest::newRow("minutes") << qint64{5'400'000} << "90m";
    QTest::newRow("seconds") << qint64{61'000} << "61s";
    QTest::newRow("milliseconds") << qint64{1'500} << "1500ms";
    QTest::newRow("zero") << qint64{0} << "0ms";
    QTest::newRow("negative") << qint64{-3'600'000} << "-1h";
}

void TestDedup::formatDuration() {
    QFETCH(qint64, millis);
    QFETCH(QString, text);
    QCOMPARE(QString::fromStdString(formatDurationMillis(millis)), text);
    if (millis > 0) QCOMPARE(parseDurationMillis(text.toStdString()), std::optional<std::int64_t>(millis));
}

void TestDedup::invalidOptions_data() {
    QTest::addColumn<DedupOptions>("options");
    QTest::addColumn<QString>("error");
    QTest::newRow("zero window") << exactOptions(0) << "window must be positive";
    QTest::newRow("negative window") << bloomOptions(-1) << "window must be positive";
    QTest::newRow("zero maxKeys") << exactOptions(1000, 0) << "maxKeys";
    QTest::newRow("zero expected keys") << bloomOptions(1000, 0) << "bloomExpectedKeys";
    QTest::newRow("false-positive rate 0") << bloomOptions(1000, 100, 0.0) << "bloomFalsePositiveRate";
    QTest::newRow("false-positive rate 1") << bloomOptions(1000, 100, 1.0) << "bloomFalsePositiveRate";
    DedupOptions oneGeneration = bloomOptions(1000);
    oneGeneration.bloomGenerations = 1;
    QTest::newRow("one generation") << oneGeneration << "bloomGenerations";
}

void TestDedup::invalidOptions() {
    QFETCH(DedupOptions, options);
    QFETCH(QString, error);
    try {
        DedupWindow window(options);
        QFAIL("constructed a window from invalid options");
    } catch (const std::invalid_argument& invalid) {
        QVERIFY2(QString(invalid.what()).contains(error), invalid.what());
    }
}

void TestDedup::restartPersistence_data() {
    QTest::addColumn<DedupMode>("mode");
    QTest::newRow("exact") << DedupMode::Exact;
    QTest::newRow("bloom") << DedupMode::Bloom;
}

void TestDedup::restartPersistence() {
    QFETCH(DedupMode, mode);
    const std::int64_t hour = 3'600'000;
    const DedupOptions options =
        mode == DedupMode::Exact ? exactOptions(3 * hour) : bloomOptions(3 * hour, 10'000);
    QTemporaryDir directory;
    QVERIFY(directory.isValid());
    const std::filesystem::path path = QDir(directory.path()).filePath("dedup.state").toStdString();

    const std::uint32_t content = dedupContentHash("signup", "user-1", "{}");
    {
        DedupWindow window(options);
        window.observe(dedupKeyHash("old"), content, 0); // expired by the end
        for (int i = 0; i < 1000; ++i)
            window.observe(randomKey(i), content, 5 * hour + i);
        window.observe(dedupKeyHash("recent"), content, 6 * hour);
        window.observe(dedupKeyHash("latest"), content, 7 * hour); // watermark 7h
        window.save(path);
        // Round trip is exact: what is read back serializes to the same bytes.
        QCOMPARE(toBytes(DedupWindow::deserialize(window.serialize()).serialize()),
                 toBytes(window.serialize()));
    }

    DedupWindow restarted = DedupWindow::load(path);
    QCOMPARE(restarted.options(), options);
    QCOMPARE(restarted.watermarkMillis(), std::optional<std::int64_t>(7 * hour));
    const DedupVerdict recent = restarted.observe(dedupKeyHash("recent"), content, 7 * hour);
    QVERIFY(recent.duplicate);
    for (int i = 0; i < 1000; ++i)
        QVERIFY(restarted.lookup(randomKey(i), content, 7 * hour).duplicate);
    if (mode == DedupMode::Exact) {
        QCOMPARE(recent.firstSeenMillis, std::optional<std::int64_t>(6 * hour));
        QVERIFY(restarted.observe(dedupKeyHash("latest"), content ^ 1, 7 * hour).conflicting);
        QVERIFY(!restarted.lookup(dedupKeyHash("old"), content, 7 * hour).duplicate);
        QCOMPARE(restarted.size(), std::size_t{1002}); // the expired key was not saved
    } else {
        // The old key's generation rotated out; Bloom keeps at most window + window/3.
        QVERIFY(!restarted.lookup(dedupKeyHash("old"), content, 7 * hour).duplicate);
        QVERIFY(restarted.observe(dedupKeyHash("latest"), content, 7 * hour).approximate);
    }
    QVERIFY(!restarted.observe(dedupKeyHash("never seen"), content, 7 * hour).duplicate);
}

void TestDedup::damagedState_data() {
    QTest::addColumn<QString>("damage");
    QTest::addColumn<int>("reason");
    QTest::addColumn<QString>("message");

    using Reason = DedupStateError::Reason;
    QTest::newRow("empty file") << "empty" << int(Reason::Truncated) << "the file is empty";
    QTest::newRow("not a state file")
        << "magic" << int(Reason::BadMagic) << R"(not a dedup window state: starts with "{"events")";
    QTest::newRow("short non-state file")
        << "short-magic" << int(Reason::BadMagic) << "not a dedup window state";
    QTest::newRow("newer version") << "version" << int(Reason::UnsupportedVersion)
                                   << "format version 2, this build reads version 1";
    QTest::newRow("truncated in the header")
        << "truncate-header" << int(Reason::Truncated) << "truncated: 40 bytes";
    QTest::newRow("truncated in the payload")
        << "truncate-payload" << int(Reason::Truncated) << "truncated: the header announces";
    QTest::newRow("flipped payload byte")
        << "flip-payload" << int(Reason::ChecksumMismatch) << "checksum mismatch: stored";
    QTest::newRow("flipped checksum byte")
        << "flip-checksum" << int(Reason::ChecksumMismatch) << "checksum mismatch";
    QTest::newRow("trailing bytes") << "trailing" << int(Reason::Corrupt)
                                    << "5 unexpected bytes after the checksum";
}

void TestDedup::damagedState() {
    QFETCH(QString, damage);
    QFETCH(int, reason);
    QFETCH(QString, message);

    DedupWindow window(exactOptions(60'000));
    for (int i = 0; i < 50; ++i)
        window.observe(randomKey(i), 3, 1000 + i);
    std::string bytes = window.serialize();
    QCOMPARE(bytes.size(), std::size_t{72 + 8 + 50 * 20 + 8});
    if (damage == "empty") bytes.clear();
    if (damage == "magic") bytes = R"({"events":[1,2,3]})" + std::string(100, ' ');
    if (damage == "short-magic") bytes = "PSX";
    if (damage == "version") bytes[8] = 2;
    if (damage == "truncate-header") bytes.resize(40);
    if (damage == "truncate-payload") bytes.resize(bytes.size() - 30);
    if (damage == "flip-payload") bytes[200] = static_cast<char>(bytes[200] ^ 0x10);
    if (damage == "flip-checksum") bytes.back() = static_cast<char>(bytes.back() ^ 0x01);
    if (damage == "trailing") bytes += "extra";

    QTemporaryDir directory;
    QVERIFY(directory.isValid());
    const QString path = QDir(directory.path()).filePath("damaged.state");
    writeFile(path, toBytes(bytes));
    try {
        DedupWindow::load(path.toStdString());
        QFAIL("a damaged state loaded");
    } catch (const DedupStateError& error) {
        QCOMPARE(int(error.reason()), reason);
        QVERIFY2(QString(error.what()).contains(message), error.what());
        QVERIFY2(QString(error.what()).contains(path), error.what()); // names the file
    }
    // The in-memory path reports the same reason.
    try {
        DedupWindow::deserialize(bytes);
        QFAIL("damaged bytes deserialized");
    } catch (const DedupStateError& error) {
        QCOMPARE(int(error.reason()), reason);
    }
}

void TestDedup::corruptEntryBehindValidChecksum() {
    DedupWindow window(exactOptions(60'000));
    window.observe(randomKey(1), 3, 1000);
    std::string bytes = window.serialize();
    std::memset(bytes.data() + 72 + 8, 0, 8); // the only entry's key hash
    resealChecksum(bytes);
    try {
        DedupWindow::deserialize(bytes);
        QFAIL("an entry with key hash 0 loaded");
    } catch (const DedupStateError& error) {
        QCOMPARE(error.reason(), DedupStateError::Reason::Corrupt);
        QVERIFY2(QString(error.what()).contains("entry 0 has key hash 0"), error.what());
    }
}

void TestDedup::loadWithOtherOptions() {
    const std::int64_t minute = 60'000;
    DedupWindow window(exactOptions(60 * minute));
    for (int i = 0; i < 600; ++i)
        window.observe(randomKey(i), 0, i * minute / 10); // 0 .. 59.9 min
    const std::string exactBytes = window.serialize();

    // A shorter window adapts: keys older than watermark - 10 min are dropped.
    DedupWindow shorter = DedupWindow::deserialize(exactBytes, exactOptions(10 * minute));
    QCOMPARE(shorter.options().windowMillis, 10 * minute);
    QVERIFY(shorter.lookup(randomKey(599), 0, 599 * minute / 10).duplicate);
    QVERIFY(!shorter.lookup(randomKey(100), 0, 599 * minute / 10).duplicate);
    QVERIFY(shorter.size() <= 101);

    // A smaller maxKeys adapts by early eviction, counted.
    DedupWindow smaller = DedupWindow::deserialize(exactBytes, exactOptions(60 * minute, 100));
    QVERIFY(smaller.size() <= 100);
    QVERIFY(smaller.stats().evictedEarly >= 500);

    // Modes cannot be converted.
    try {
        DedupWindow::deserialize(exactBytes, bloomOptions(60 * minute));
        QFAIL("an exact state loaded as Bloom");
    } catch (const DedupStateError& error) {
        QCOMPARE(error.reason(), DedupStateError::Reason::OptionsMismatch);
        QVERIFY2(QString(error.what()).contains("saved in exact mode, bloom mode requested"), error.what());
    }
    // Nor can a Bloom filter be resized.
    DedupWindow bloom(bloomOptions(60 * minute, 1000, 0.01));
    bloom.observe(randomKey(1), 0, 0);
    try {
        DedupWindow::deserialize(bloom.serialize(), bloomOptions(60 * minute, 1000, 0.001));
        QFAIL("a Bloom state loaded with another false-positive rate");
    } catch (const DedupStateError& error) {
        QCOMPARE(error.reason(), DedupStateError::Reason::OptionsMismatch);
        QVERIFY2(QString(error.what()).contains("false-positive rate"), error.what());
    }
    QVERIFY(DedupWindow::deserialize(bloom.serialize(), bloomOptions(60 * minute, 1000, 0.01))
                .lookup(randomKey(1), 0, 0)
                .duplicate);
}

void TestDedup::saveReplacesAtomically() {
    QTemporaryDir directory;
    QVERIFY(directory.isValid());
    const QString path = QDir(directory.path()).filePath("dedup.state");
    DedupWindow window(exactOptions(60'000));
    window.observe(randomKey(1), 0, 0);
    window.save(path.toStdString());
    window.observe(randomKey(2), 0, 1);
    window.save(path.toStdString()); // over the existing file
    QCOMPARE(QDir(directory.path()).entryList(QDir::Files), QStringList{"dedup.state"}); // no temporary left
    DedupWindow loaded = DedupWindow::load(path.toStdString());
    QCOMPARE(loaded.size(), std::size_t{2});
    QVERIFY(loaded.lookup(randomKey(2), 0, 1).duplicate);
}

void TestDedup::saveAndLoadErrorsNameTheFile() {
    QTemporaryDir directory;
    QVERIFY(directory.isValid());
    const QString missingDirectory = QDir(directory.path()).filePath("no/such/dir/dedup.state");
    DedupWindow window(exactOptions(60'000));
    try {
        window.save(missingDirectory.toStdString());
        QFAIL("saved into a missing directory");
    } catch (const DedupStateError& error) {
        QCOMPARE(error.reason(), DedupStateError::Reason::Io);
        QVERIFY2(QString(error.what()).contains("no/such/dir/dedup.state"), error.what());
    }
    const QString missingFile = QDir(directory.path()).filePath("absent.state");
    try {
        DedupWindow::load(missingFile.toStdString());
        QFAIL("loaded a missing file");
    } catch (const DedupStateError& error) {
        QCOMPARE(error.reason(), DedupStateError::Reason::Io);
        QVERIFY2(QString(error.what()).contains(missingFile) &&
                     QString(error.what()).contains("No such file"),
                 error.what());
    }
}

void TestDedup::growth() {
    constexpr std::size_t keys = 1'000'000;
    DedupWindow window(exactOptions(86'400'000, keys));
    const std::size_t initialMemory = window.memoryBytes();
    std::size_t falseDuplicates = 0;
    for (std::size_t i = 0; i < keys; ++i)
        falseDuplicates += window.observe(randomKey(i), 0, static_cast<std::int64_t>(i)).duplicate;
    QCOMPARE(falseDuplicates, std::size_t{0});
    QCOMPARE(window.size(), keys);
    std::size_t found = 0;
    for (std::size_t i = 0; i < keys; ++i)
        found += window.observe(randomKey(i), 0, keys).duplicate;
    QCOMPARE(found, keys);
    const DedupStats stats = window.stats();
    QCOMPARE(stats.evictedEarly, std::uint64_t{0});
    QCOMPARE(stats.duplicates, std::uint64_t{keys});
    QCOMPARE(stats.capacity, keys);
    QVERIFY(stats.memoryBytes > 100 * initialMemory);
    // Full at maxKeys: 20-byte slots at load 0.8 = 25 bytes a key, within 400 MB per 10M keys.
    QVERIFY2(stats.memoryBytes <= keys * 26, qPrintable(QString::number(stats.memoryBytes)));
    QVERIFY(stats.falsePositiveRate > 0 && stats.falsePositiveRate < 1e-12);
}

void TestDedup::boundedMemory() {
    constexpr std::size_t maxKeys = 100'000;
    constexpr std::size_t inserted = 400'000;
    DedupWindow window(exactOptions(86'400'000, maxKeys));
    std::size_t memoryAtLimit = 0;
    for (std::size_t i = 0; i < inserted; ++i) {
        window.observe(randomKey(i), 0, static_cast<std::int64_t>(i));
        QVERIFY(window.size() <= maxKeys);
        if (i + 1 == maxKeys) memoryAtLimit = window.memoryBytes();
    }
    const DedupStats stats = window.stats();
    QCOMPARE(stats.memoryBytes, memoryAtLimit); // never grew past maxKeys
    QVERIFY(stats.memoryBytes <= maxKeys * 26);
    QCOMPARE(stats.evictedEarly + stats.keys, std::uint64_t{inserted});
    QVERIFY(stats.keys >= maxKeys - maxKeys / 4); // evicts about 1/8 at a time, not everything
    QCOMPARE(stats.expiredReclaimed, std::uint64_t{0});
    // The window was effectively shortened to at most the age of the keys kept.
    QVERIFY(stats.shortestEffectiveWindowMillis);
    QVERIFY(*stats.shortestEffectiveWindowMillis <= std::int64_t{maxKeys});
    QVERIFY(*stats.shortestEffectiveWindowMillis >= std::int64_t{maxKeys / 2});

    const auto now = static_cast<std::int64_t>(inserted);
    std::size_t recentFound = 0;
    for (std::size_t i = inserted - maxKeys / 2; i < inserted; ++i)
        recentFound += window.lookup(randomKey(i), 0, now).duplicate;
    QCOMPARE(recentFound, maxKeys / 2);
    std::size_t oldFound = 0;
    for (std::size_t i = 0; i < maxKeys; ++i)
        oldFound += window.lookup(randomKey(i), 0, now).duplicate;
    QCOMPARE(oldFound, std::size_t{0});
}

void TestDedup::evictionWithTiedTimes() {
    // All keys first seen in the same millisecond (a file without timestamps): eviction still
    // takes about 1/8 at a time instead of everything that ties with the oldest.
    constexpr std::size_t maxKeys = 1000;
    DedupWindow window(exactOptions(86'400'000, maxKeys));
    for (std::size_t i = 0; i < 3 * maxKeys; ++i) {
        window.observe(randomKey(i), 0, 42);
        QVERIFY(window.size() <= maxKeys);
        QVERIFY2(i < maxKeys || window.size() >= maxKeys - maxKeys / 4,
                 qPrintable(QString::number(window.size())));
    }
    const DedupStats stats = window.stats();
    QCOMPARE(stats.evictedEarly + stats.keys, std::uint64_t{3 * maxKeys});
    QCOMPARE(stats.shortestEffectiveWindowMillis, std::optional<std::int64_t>(0));
    QVERIFY(window.lookup(randomKey(3 * maxKeys - 1), 0, 42)
                .duplicate); // the newest is never evicted before insert
}

void TestDedup::bloomNoFalseNegatives() {
    constexpr std::size_t keys = 200'000;
    constexpr std::int64_t window = 3000;
    DedupWindow bloom(bloomOptions(window, keys, 0.01));
    for (std::size_t i = 0; i < keys; ++i)
        bloom.observe(randomKey(i), 0, static_cast<std::int64_t>(i * window / keys));
    std::size_t found = 0;
    for (std::size_t i = 0; i < keys; ++i)
        found += bloom.observe(randomKey(i), 0, window).duplicate;
    QCOMPARE(found, keys);
}

void TestDedup::bloomFalsePositiveRate_data() {
    QTest::addColumn<double>("configured");
    QTest::addColumn<int>("keys");
    QTest::newRow("1%") << 0.01 << 100'000;
    QTest::newRow("0.1%") << 0.001 << 200'000;
}

void TestDedup::bloomFalsePositiveRate() {
    QFETCH(double, configured);
    QFETCH(int, keys);
    constexpr std::int64_t window = 3000;
    DedupWindow bloom(bloomOptions(window, static_cast<std::size_t>(keys), configured));
    // Spread over the window, as the sizing assumes.
    for (int i = 0; i < keys; ++i)
        bloom.observe(randomKey(i), 0, std::int64_t{i} * window / keys);
    constexpr int fresh = 400'000;
    int falsePositives = 0;
    for (int i = 0; i < fresh; ++i)
        falsePositives += bloom.lookup(freshKey(i), 0, window - 1).duplicate;
    const double measured = double(falsePositives) / fresh;
    const double estimated = bloom.stats().falsePositiveRate;
    qInfo("configured %.4f, estimated %.5f, measured %.5f, %.1f bits/key", configured, estimated, measured,
          8.0 * double(bloom.memoryBytes()) / keys);
    QVERIFY2(measured <= 2 * configured && measured >= configured / 2, qPrintable(QString::number(measured)));
    QVERIFY2(std::abs(measured - estimated) <= 0.25 * estimated, qPrintable(QString::number(estimated)));
}

void TestDedup::bloomRotation_data() {
    QTest::addColumn<qint64>("insertedAt");
    QTest::addColumn<qint64>("checkedAt");
    QTest::addColumn<bool>("remembered");
    // Window 3000 ms with 4 generations: spans of 1000 ms, keys kept 3000..4000 ms.
    QTest::newRow("at the window, inserted at a span start") << qint64{0} << qint64{3000} << true;
    QTest::newRow("at the window, inserted at a span end") << qint64{999} << qint64{3999} << true;
    QTest::newRow("within the slack") << qint64{0} << qint64{3999} << true;
    QTest::newRow("after window + slack") << qint64{0} << qint64{4000} << false;
    QTest::newRow("just after the window, span end") << qint64{999} << qint64{4000} << false;
    QTest::newRow("long after") << qint64{500} << qint64{100'000} << false;
}

void TestDedup::bloomRotation() {
    QFETCH(qint64, insertedAt);
    QFETCH(qint64, checkedAt);
    QFETCH(bool, remembered);
    DedupWindow bloom(bloomOptions(3000));
    const std::uint64_t key = dedupKeyHash("rotating");
    QVERIFY(!bloom.observe(key, 0, insertedAt).duplicate);
    bloom.observe(dedupKeyHash("clock"), 0, checkedAt); // moves the watermark
    QCOMPARE(bloom.lookup(key, 0, checkedAt).duplicate, remembered);
    QCOMPARE(bloom.observe(key, 0, checkedAt).duplicate, remembered);
    QCOMPARE(bloom.stats().expiredReclaimed, std::uint64_t{remembered ? 0u : 1u});
}

void TestDedup::bloomVerdictIsApproximate() {
    DedupWindow bloom(bloomOptions(60'000, 1000));
    const DedupVerdict first = bloom.observe(dedupKeyHash("k"), 1, 0);
    QVERIFY(first.approximate && !first.duplicate);
    const DedupVerdict again = bloom.observe(dedupKeyHash("k"), 2, 10); // different content
    QVERIFY(again.duplicate && again.approximate);
    QVERIFY(!again.conflicting);     // unknown in Bloom mode
    QVERIFY(!again.firstSeenMillis); // unknown in Bloom mode
    const DedupStats stats = bloom.stats();
    QVERIFY(stats.mode == DedupMode::Bloom);
    QCOMPARE(stats.conflicts, std::uint64_t{0});
    QCOMPARE(stats.capacity, std::size_t{1000});
    QVERIFY(stats.memoryBytes > 0 && stats.memoryBytes < 1000 * 8); // a few bytes a key, not 25
    QVERIFY(stats.falsePositiveRate < 0.001);                       // one key in a filter sized for 1000
}

QTEST_GUILESS_MAIN(TestDedup)
#include "tst_dedup.moc"
