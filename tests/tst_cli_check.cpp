// End-to-end: drives the real pipescope-cli on generated traffic (PostHog and Segment, client and
// server, plain and gzip, batches with bad elements) and asserts exact counts, exit codes, the
// capture's contents and the error messages a user sees.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include "cli_test_support.h"

using namespace cli_test;

namespace {

// The traffic the tests plant, with the counts each part contributes.
struct Traffic {
    QByteArray client;
    QByteArray server;
    int lines = 0, events = 0, unparseable = 0, rejected = 0;
    int clientEvents = 0, serverEvents = 0, unknownEvents = 0;
    int valid = 0, invalid = 0, unplanned = 0;
    int missingPrice = 0, priceType = 0;
};

QJsonObject productViewed(int i, bool valid, bool priceAsString = false) {
    QJsonObject properties{{"sku", QString("SKU-%1").arg(i)}};
    if (valid) properties["price"] = 9.5 + i;
    else if (priceAsString) properties["price"] = "cheap";
    return properties;
}

Traffic makeTraffic() {
    Traffic t;
    // Client: posthog-js events one per line, arrays of events, Segment analytics.js messages.
    for (int i = 0; i < 300; ++i) {
        const bool valid = i % 10 != 0; // 30 invalid: 15 missing price, 15 with a string price
        QJsonObject properties = productViewed(i, valid, i % 20 == 0);
        properties["distinct_id"] = QString("anon-%1").arg(i % 37);
        properties["$lib"] = "web";
        QJsonObject event{{"event", "product_viewed"},
                          {"uuid", QString("00000000-0000-7000-8000-%1").arg(i, 12, 10, QChar('0'))},
                          {"properties", properties},
                          {"timestamp", "2026-11-20T10:00:00Z"}};
        t.client += json(event) + "\n";
        ++t.lines, ++t.events, ++t.clientEvents;
        valid ? ++t.valid : ++t.invalid;
        if (!valid) (i % 20 == 0 ? t.priceType : t.missingPrice)++;
    }
    for (int i = 0; i < 40; ++i) { // arrays of 3, the middle one unplanned
        QJsonArray array;
        for (int k = 0; k < 3; ++k) {
            QJsonObject properties = k == 1 ? QJsonObject{{"button", "buy"}} : productViewed(1000 + i, true);
            properties["distinct_id"] = QString("anon-%1").arg(i);
            properties["$lib"] = "posthog-js";
            array.append(QJsonObject{{"event", k == 1 ? "button_clicked" : "product_viewed"}, {"properties", properties}});
        }
        t.client += QJsonDocument(array).toJson(QJsonDocument::Compact) + "\n";
        ++t.lines, t.events += 3, t.clientEvents += 3, t.valid += 3, ++t.unplanned;
    }
    for (int i = 0; i < 100; ++i) { // Segment analytics.js
        QJsonObject message{{"type", "track"},
                            {"event", "product_viewed"},
                            {"anonymousId", QString("ajs-%1").arg(i)},
                            {"messageId", QString("ajs-msg-%1").arg(i)},
                            {"properties", productViewed(2000 + i, true)},
                            {"context", QJsonObject{{"library", QJsonObject{{"name", "analytics.js"}}}}}};
        t.client += json(message) + "\n";
        ++t.lines, ++t.events, ++t.clientEvents, ++t.valid;
    }
    t.client += "\n   \n";                                                    // blank lines: not counted
    t.client += "{\"event\":\"product_viewed\",\"properties\":{\"distinct_id\":\n"; // truncated JSON
    t.client += "not json at all\n";
    t.lines += 2, t.unparseable += 2;
    t.client += "{\"event\":\"product_viewed\",\"properties\":{\"$lib\":\"web\",\"sku\":\"x\",\"price\":1}}\n"; // no distinct id
    ++t.lines, ++t.events, ++t.rejected;

    // Server: posthog-node /batch bodies (one bad element each) and Segment analytics-node batches.
    for (int b = 0; b < 50; ++b) {
        QJsonArray batch;
        for (int k = 0; k < 10; ++k) {
            QJsonObject properties = productViewed(3000 + b * 10 + k, true);
            properties["$lib"] = "posthog-node";
            QJsonObject event{{"event", "product_viewed"}, {"properties", properties}};
            if (k != 4) event["distinct_id"] = QString("user-%1").arg(b);
            batch.append(event);
        }
        t.server += json(QJsonObject{{"api_key", "phc_test"}, {"sent_at", "2026-11-20T10:00:01Z"}, {"batch", batch}}) + "\n";
        ++t.lines, t.events += 10, t.serverEvents += 9, t.valid += 9, ++t.rejected;
    }
    for (int b = 0; b < 20; ++b) {
        QJsonArray batch;
        for (int k = 0; k < 5; ++k) {
            batch.append(QJsonObject{{"type", k == 0 ? "identify" : "track"},
                                     {"event", "product_viewed"},
                                     {"userId", QString("user-%1").arg(b)},
                                     {"traits", QJsonObject{{"plan", "pro"}}},
                                     {"properties", productViewed(4000 + b * 5 + k, true)},
                                     {"context", QJsonObject{{"library", QJsonObject{{"name", "@segment/analytics-node"}}}}}});
        }
        t.server += json(QJsonObject{{"batch", batch}}) + "\n";
        // identify becomes $identify: no schema, so unplanned (valid under allow).
        ++t.lines, t.events += 5, t.serverEvents += 5, t.valid += 5, ++t.unplanned;
    }
    // Unknown stream: a PostHog event with no $lib.
    t.server += "{\"event\":\"product_viewed\",\"distinct_id\":\"x\",\"properties\":{\"sku\":\"s\",\"price\":2}}\n";
    ++t.lines, ++t.events, ++t.unknownEvents, ++t.valid;
    return t;
}

const QByteArray kSchema = R"({
  "type": "object",
  "required": ["sku", "price"],
  "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}}
})";

// Issue 13, every SDK with its defaults: what each SDK sends, shaped as its source builds it.
//  posthog-js (packages/browser/src/posthog-core.ts): /e bodies are arrays; identify() captures
//    $identify with $anon_distinct_id in properties and $set / $set_once at the top level; reset()
//    keeps $device_id and starts a new anonymous id and session.
//  posthog-node (packages/core/src/posthog-core-stateless.ts): /batch bodies {api_key, batch,
//    sent_at[, historical_migration]}; identify puts $set in properties; groupIdentify sends
//    $groupidentify under "$<type>_<key>".
//  analytics.js (analytics-next): page name in properties.name too; group has groupId and traits.
const QByteArray kSdkClient =
    // posthog-js sends its token in every event's properties (persons are per project).
    // The $pageview was captured 76 ms before identify() but reached us in the next request.
    R"([{"uuid":"js-2","event":"$identify","properties":{"token":"phc_test","distinct_id":"user-ada","$anon_distinct_id":"anon-ada",)"
    R"("$lib":"web","$lib_version":"1.200.0","$device_id":"dev-shared","$session_id":"s-ada"},)"
    R"("$set":{"email":"ada@example.com"},"$set_once":{"$initial_referrer":"$direct"},)"
    R"("timestamp":"2024-05-01T12:00:05.000Z"}])" "\n"
    R"([{"uuid":"js-1","event":"$pageview","properties":{"token":"phc_test","distinct_id":"anon-ada","$lib":"web",)"
    R"("$device_id":"dev-shared","$session_id":"s-ada"},"timestamp":"2024-05-01T12:00:04.924Z"}])" "\n"
    R"([{"uuid":"js-3","event":"$pageview","properties":{"token":"phc_test","distinct_id":"user-ada","$lib":"web",)"
    R"("$device_id":"dev-shared","$session_id":"s-ada"},"timestamp":"2024-05-01T12:00:06.000Z"}])" "\n"
    // reset(), then grace logs in on the same device: new anonymous id, new session.
    R"([{"uuid":"js-4","event":"$pageview","properties":{"token":"phc_test","distinct_id":"anon-grace","$lib":"web",)"
    R"("$device_id":"dev-shared","$session_id":"s-grace"},"timestamp":"2024-05-01T12:10:00.000Z"},)"
    R"({"uuid":"js-5","event":"$identify","properties":{"token":"phc_test","distinct_id":"user-grace","$anon_distinct_id":"anon-grace",)"
    R"("$lib":"web","$device_id":"dev-shared","$session_id":"s-grace"},"$set":{"email":"grace@example.com"},)"
    R"("$set_once":{},"timestamp":"2024-05-01T12:10:02.000Z"}])" "\n"
    // An identify without an email: the schema still bites.
    R"([{"uuid":"js-6","event":"$identify","properties":{"token":"phc_test","distinct_id":"user-eve","$anon_distinct_id":"anon-eve",)"
    R"("$lib":"web"},"$set":{"name":"Eve"},"timestamp":"2024-05-01T12:20:00.000Z"}])" "\n"
    R"({"type":"page","messageId":"ajs-1","anonymousId":"anon-seg","name":"Pricing","category":"Docs",)"
    R"("properties":{"path":"/pricing","url":"https://example.com/pricing"},)"
    R"("context":{"library":{"name":"analytics.js","version":"npm:next-1.70.0"}},"timestamp":"2024-05-01T13:00:00.000Z"})" "\n"
    R"({"type":"group","messageId":"ajs-2","anonymousId":"anon-seg","userId":"user-seg","groupId":"acme",)"
    R"("traits":{"name":"Acme Inc","plan":"enterprise"},)"
    R"("context":{"library":{"name":"analytics.js","version":"npm:next-1.70.0"}},"timestamp":"2024-05-01T13:00:01.000Z"})" "\n";
const QByteArray kSdkServer =
    R"({"api_key":"phc_test","batch":[{"distinct_id":"user-ada","event":"$identify","properties":)"
    R"({"$set":{"email":"ada@example.com"},"$lib":"posthog-node","$lib_version":"5.8.0"},)"
    R"("timestamp":"2024-05-01T12:00:07.000Z","uuid":"node-1"},)"
    R"({"distinct_id":"$company_acme","event":"$groupidentify","properties":{"$group_type":"company",)"
    R"("$group_key":"acme","$group_set":{"name":"Acme Inc"},"$lib":"posthog-node","$lib_version":"5.8.0"},)"
    R"("timestamp":"2024-05-01T12:00:08.000Z","uuid":"node-2"}],)"
    R"("sent_at":"2024-05-01T12:00:09.000Z","historical_migration":true})" "\n";
const QByteArray kIdentifySchema = R"({"type":"object","required":["$set"],
  "properties":{"$set":{"type":"object","required":["email"],"properties":{"email":{"type":"string"}}}}})";

} // namespace

class TestCliCheck : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void mixedTrafficExactReport();
    void captureReopensAndReplays();
    void cleanInputExitsZero();
    void unplannedPolicies_data();
    void unplannedPolicies();
    void stdinInput();
    void usageAndInputErrors_data();
    void usageAndInputErrors();
    void refusesToOverwriteNonCapture();
    void truncatedGzipKeepsWhatWasRead();
    void demoTraffic();
    void hostileBatches();
    void everySdkWithItsDefaults();
    void captureKeepsEveryRawByte();

private:
    QTemporaryDir m_dir;
    Traffic m_traffic;
    QString path(const QString& name) const { return m_dir.filePath(name); }
};

void TestCliCheck::initTestCase() {
    QVERIFY(m_dir.isValid());
    m_traffic = makeTraffic();
    writeFile(path("schemas/product_viewed/1.json"), R"({"type":"object"})");
    writeFile(path("schemas/product_viewed/2.json"), kSchema); // the latest version applies
    writeFile(path("client.ndjson"), m_traffic.client);
    writeGzip(path("server.ndjson.gz"), m_traffic.server);
}

void TestCliCheck::mixedTrafficExactReport() {
    const Run run = cli({"check", "--schemas", path("schemas"), path("client.ndjson"), path("server.ndjson.gz"),
                         "--report", path("report.json"), "--capture", path("run.pipescope")});
    QVERIFY2(run.exitCode == 1, run.err.constData());
    const Traffic& t = m_traffic;
    const QJsonObject report = readJson(path("report.json"));
    const QJsonObject inputs = report["inputs"].toObject();
    QCOMPARE(inputs["lines"].toInt(), t.lines);
    QCOMPARE(inputs["events"].toInt(), t.events);
    QCOMPARE(inputs["unparseable"].toInt(), t.unparseable);
    QCOMPARE(inputs["rejected"].toInt(), t.rejected);
    const QJsonArray files = inputs["files"].toArray();
    QCOMPARE(files.size(), 2);
    QCOMPARE(files[0].toObject()["compressed"].toBool(), false);
    QCOMPARE(files[1].toObject()["compressed"].toBool(), true);

    const QJsonObject streams = report["streams"].toObject();
    QCOMPARE(streams["client"].toInt(), t.clientEvents);
    QCOMPARE(streams["server"].toInt(), t.serverEvents);
    QCOMPARE(streams["unknown"].toInt(), t.unknownEvents);
    QCOMPARE(streams["client"].toInt() + streams["server"].toInt() + streams["unknown"].toInt(), t.events - t.rejected);

    const QJsonObject validation = report["validation"].toObject();
    QCOMPARE(validation["valid"].toInt(), t.valid);
    QCOMPARE(validation["invalid"].toInt(), t.invalid);
    QCOMPARE(validation["unplanned"].toInt(), t.unplanned);
    const QJsonArray failures = validation["failures"].toArray();
    QCOMPARE(failures.size(), 2);
    QMap<QString, int> byKey;
    for (const auto& value : failures) {
        const QJsonObject failure = value.toObject();
        QCOMPARE(failure["event"].toString(), QString("product_viewed"));
        byKey[failure["pointer"].toString() + " " + failure["keyword"].toString()] = failure["count"].toInt();
    }
    QCOMPARE(byKey.value(" required"), t.missingPrice);
    QCOMPARE(byKey.value("/price type"), t.priceType);
    QCOMPARE(report["dlq"].toObject()["total"].toInt(), t.unparseable + t.rejected + t.invalid);

    // The human summary says the same.
    QVERIFY(run.out.contains("Result: FINDINGS"));
    QVERIFY2(run.out.contains("client.ndjson:"), run.out.constData());
    QVERIFY(run.out.contains("unparseable"));
}

void TestCliCheck::captureReopensAndReplays() {
    const Traffic& t = m_traffic;
    const QString capture = path("run.pipescope");
    QVERIFY(QFileInfo::exists(capture));

    const Run dlq = cli({"export", "--capture", capture, "--dlq"});
    QCOMPARE(dlq.exitCode, 0);
    QMap<QString, int> reasons;
    int rejectedInBatches = 0;
    for (const QJsonObject& row : ndjson(dlq.out)) {
        reasons[row["reason"].toString()]++;
        const QJsonObject origin = row["origin"].toObject();
        QVERIFY(!origin["source"].toString().isEmpty());
        QVERIFY(origin["line"].toInt() > 0);
        if (row["reason"] == "rejected" && origin.contains("index")) {
            QCOMPARE(origin["index"].toInt(), 4);
            QVERIFY(row["detail"].toObject()["message"].toString().contains("no distinct id"));
            ++rejectedInBatches;
        }
        if (row["reason"] == "unparseable") {
            QVERIFY(row["detail"].toObject().contains("offset"));
            QVERIFY(!row["raw"].toString().isEmpty());
        }
        if (row["reason"] == "schema_violation") {
            QVERIFY(row["event_seq"].toInt() > 0);
            QVERIFY(!row["detail"].toObject()["failures"].toArray().isEmpty());
        }
    }
    QCOMPARE(reasons.value("unparseable"), t.unparseable);
    QCOMPARE(reasons.value("rejected"), t.rejected);
    QCOMPARE(reasons.value("schema_violation"), t.invalid);
    QCOMPARE(rejectedInBatches, 50);

    // Every decoded event is in the capture, the other nine of each bad batch included.
    const Run events = cli({"export", "--capture", capture, "--events"});
    QCOMPARE(events.exitCode, 0);
    const QList<QJsonObject> rows = ndjson(events.out);
    QCOMPARE(rows.size(), t.events - t.rejected);
    int fromBatches = 0, invalid = 0;
    for (const QJsonObject& row : rows) {
        if (row["origin"].toObject()["source"].toString().endsWith("server.ndjson.gz") &&
            row["stream"] == "server" && row["format"] == "posthog")
            ++fromBatches;
        if (row["verdict"] == "invalid") ++invalid;
    }
    QCOMPARE(fromBatches, 50 * 9);
    QCOMPARE(invalid, t.invalid);

    // The raw dead letters go back into check unchanged: same findings again.
    const Run raw = cli({"export", "--capture", capture, "--dlq", "--raw", "--output", path("dlq.ndjson")});
    QCOMPARE(raw.exitCode, 0);
    const Run again = cli({"check", "--schemas", path("schemas"), path("dlq.ndjson"), "--report", "-", "--quiet"});
    QCOMPARE(again.exitCode, 1);
    const QJsonObject report = QJsonDocument::fromJson(again.out).object();
    QCOMPARE(report["inputs"].toObject()["unparseable"].toInt(), t.unparseable);
    QCOMPARE(report["inputs"].toObject()["rejected"].toInt(), t.rejected);
    QCOMPARE(report["validation"].toObject()["invalid"].toInt(), t.invalid);
    QCOMPARE(report["validation"].toObject()["valid"].toInt(), 0);
}

void TestCliCheck::cleanInputExitsZero() {
    QByteArray clean;
    for (int i = 0; i < 10; ++i)
        clean += R"({"event":"product_viewed","distinct_id":"u","properties":{"sku":"a","price":1}})"
                 "\n";
    writeFile(path("clean.ndjson"), clean);
    const Run run = cli({"check", "--schemas", path("schemas"), path("clean.ndjson")});
    QCOMPARE(run.exitCode, 0);
    QVERIFY(run.out.contains("Result: OK"));
}

void TestCliCheck::unplannedPolicies_data() {
    QTest::addColumn<QString>("policy");
    QTest::addColumn<int>("exitCode");
    QTest::addColumn<int>("valid");
    QTest::addColumn<int>("invalid");
    QTest::addColumn<int>("dlq");
    QTest::newRow("allow") << "allow" << 0 << 2 << 0 << 0;
    QTest::newRow("warn") << "warn" << 1 << 2 << 0 << 0;
    QTest::newRow("dlq") << "dlq" << 1 << 1 << 1 << 1;
}

void TestCliCheck::unplannedPolicies() {
    QFETCH(QString, policy);
    QFETCH(int, exitCode);
    QFETCH(int, valid);
    QFETCH(int, invalid);
    QFETCH(int, dlq);
    writeFile(path("unplanned.ndjson"), R"({"event":"product_viewed","distinct_id":"u","properties":{"sku":"a","price":1}}
{"event":"mystery","distinct_id":"u"}
)");
    const QString capture = path("unplanned-" + policy + ".pipescope");
    const Run run = cli({"check", "--schemas", path("schemas"), "--unplanned", policy, path("unplanned.ndjson"),
                         "--report", "-", "--capture", capture});
    QCOMPARE(run.exitCode, exitCode);
    const QJsonObject report = QJsonDocument::fromJson(run.out).object();
    const QJsonObject validation = report["validation"].toObject();
    QCOMPARE(validation["valid"].toInt(), valid);
    QCOMPARE(validation["invalid"].toInt(), invalid);
    QCOMPARE(validation["unplanned"].toInt(), 1);
    QCOMPARE(validation["unplanned_events"].toObject()["mystery"].toInt(), 1);
    QCOMPARE(report["dlq"].toObject()["total"].toInt(), dlq);
    const Run exported = cli({"export", "--capture", capture, "--dlq"});
    QCOMPARE(ndjson(exported.out).size(), dlq);
    if (dlq) QCOMPARE(ndjson(exported.out).front()["reason"].toString(), QString("unplanned"));
}

void TestCliCheck::stdinInput() {
    const Run run = cli({"check", "--schemas", path("schemas"), "-", "--report", "-", "--quiet"},
                        R"({"type":"track","event":"product_viewed","userId":"u","properties":{"sku":"a","price":1}})");
    QCOMPARE(run.exitCode, 0);
    const QJsonObject report = QJsonDocument::fromJson(run.out).object();
    QCOMPARE(report["inputs"].toObject()["events"].toInt(), 1);
    QCOMPARE(report["validation"].toObject()["valid"].toInt(), 1);
}

void TestCliCheck::usageAndInputErrors_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QStringList>("messageParts");
    const QString client = m_dir.filePath("client.ndjson");
    writeFile(m_dir.filePath("bad-schemas/checkout/1.json"), "{\n  \"type\": \"object\",\n  \"required\": [\"a\",]\n}\n");
    writeFile(m_dir.filePath("bad-version/checkout/latest.json"), "{}");

    QTest::newRow("no command") << QStringList{} << QStringList{"usage"};
    QTest::newRow("unknown command") << QStringList{"chekc"} << QStringList{"unknown command", "chekc"};
    QTest::newRow("no inputs") << QStringList{"check"} << QStringList{"no input files"};
    QTest::newRow("unknown option") << QStringList{"check", "--schema", "x", client} << QStringList{"unknown option --schema"};
    QTest::newRow("missing value") << QStringList{"check", client, "--report"} << QStringList{"--report needs a value"};
    QTest::newRow("bad policy") << QStringList{"check", "--unplanned", "maybe", client} << QStringList{"allow, warn or dlq", "maybe"};
    QTest::newRow("bad format") << QStringList{"check", "--format", "amplitude", client} << QStringList{"amplitude"};
    QTest::newRow("missing input") << QStringList{"check", client, m_dir.filePath("nope.ndjson")}
                                   << QStringList{"nope.ndjson", "No such file"};
    QTest::newRow("missing schema dir") << QStringList{"check", "--schemas", m_dir.filePath("no-schemas"), client}
                                        << QStringList{"no-schemas"};
    QTest::newRow("schema syntax error") << QStringList{"check", "--schemas", m_dir.filePath("bad-schemas"), client}
                                         << QStringList{"checkout/1.json", "line 3"};
    QTest::newRow("schema version name") << QStringList{"check", "--schemas", m_dir.filePath("bad-version"), client}
                                         << QStringList{"latest.json"};
    QTest::newRow("export without capture") << QStringList{"export", "--dlq"} << QStringList{"--capture FILE is required"};
    QTest::newRow("export of a missing capture") << QStringList{"export", "--capture", m_dir.filePath("none.pipescope")}
                                                 << QStringList{"none.pipescope"};
}

void TestCliCheck::usageAndInputErrors() {
    QFETCH(QStringList, args);
    QFETCH(QStringList, messageParts);
    const Run run = cli(args);
    QCOMPARE(run.exitCode, 2);
    for (const QString& part : messageParts)
        QVERIFY2(run.err.contains(part.toUtf8()), qPrintable("stderr lacks \"" + part + "\": " + run.err));
}

void TestCliCheck::refusesToOverwriteNonCapture() {
    const QByteArray precious = "my notes, not a capture\n";
    writeFile(path("notes.txt"), precious);
    const Run run = cli({"check", path("clean.ndjson"), "--capture", path("notes.txt")});
    QCOMPARE(run.exitCode, 2);
    QVERIFY2(run.err.contains("notes.txt"), run.err.constData());
    QFile file(path("notes.txt"));
    QVERIFY(file.open(QIODevice::ReadOnly));
    QCOMPARE(file.readAll(), precious);
}

void TestCliCheck::truncatedGzipKeepsWhatWasRead() {
    QByteArray lines;
    for (int i = 0; i < 30000; ++i)
        lines += R"({"event":"product_viewed","distinct_id":"u","properties":{"sku":"a","price":)" + QByteArray::number(i) + "}}\n";
    writeGzip(path("full.ndjson.gz"), lines);
    QFile full(path("full.ndjson.gz"));
    QVERIFY(full.open(QIODevice::ReadOnly));
    const QByteArray packed = full.readAll();
    writeFile(path("cut.ndjson.gz"), packed.left(packed.size() * 2 / 3));
    const Run run = cli({"check", "--schemas", path("schemas"), path("cut.ndjson.gz"), path("clean.ndjson"),
                         "--report", path("cut-report.json")});
    QCOMPARE(run.exitCode, 2);
    QVERIFY2(run.out.contains("truncated gzip"), run.out.constData());
    const QJsonObject report = readJson(path("cut-report.json"));
    const QJsonArray files = report["inputs"].toObject()["files"].toArray();
    QVERIFY(files[0].toObject()["error"].toString().contains("cut.ndjson.gz"));
    const int fromCut = files[0].toObject()["events"].toInt();
    QVERIFY(fromCut > 1000 && fromCut < 30000);
    // The next input is still processed in full.
    QCOMPARE(files[1].toObject()["events"].toInt(), 10);
}

void TestCliCheck::demoTraffic() {
    // The main job of packaging/run.sh, on the demo traffic shipped in resources/.
    const QString root = QStringLiteral(PIPESCOPE_SOURCE_DIR);
    const Run run = cli({"check", "--schemas", root + "/resources/schemas", root + "/resources/demo/web-client.ndjson",
                         root + "/resources/demo/backend-server.ndjson.gz", "--report", "-", "--quiet"});
    QCOMPARE(run.exitCode, 1);
    const QJsonObject report = QJsonDocument::fromJson(run.out).object();
    const QJsonObject inputs = report["inputs"].toObject();
    QCOMPARE(inputs["lines"].toInt(), 19);
    QCOMPARE(inputs["events"].toInt(), 24);
    QCOMPARE(inputs["unparseable"].toInt(), 2);
    QCOMPARE(inputs["rejected"].toInt(), 2);
    const QJsonObject validation = report["validation"].toObject();
    QCOMPARE(validation["invalid"].toInt(), 7);
    QCOMPARE(validation["valid"].toInt(), 15);
    QCOMPARE(validation["unplanned"].toInt(), 6);
    QCOMPARE(report["dlq"].toObject()["total"].toInt(), 11);
}

void TestCliCheck::hostileBatches() {
    // One bad element never takes its batch with it; every dead letter keeps its exact bytes.
    const QByteArray a = R"({"event":"a","distinct_id":"u1","properties":{"z":-0}})";
    const QByteArray overflow = R"({"event":"b","distinct_id":"u1","properties":{"n":1e400}})";
    const QByteArray c = R"({"event":"c","distinct_id":"u1"})";
    const QByteArray big = R"({"event":"d","distinct_id":"u2","properties":{"big":123456789012345678901234567890}})";
    const QByteArray utf8 = "{\"event\":\"e\xff\",\"distinct_id\":\"u2\"}";
    const QByteArray noId = R"({ "event" : "f" })";
    const QByteArray duplicate = R"({"batch":[{"event":"g","distinct_id":"u3"}],"batch":[{"event":"h","distinct_id":"u3"}]})";
    const QByteArray broken = "[{\"event\":\"i\",\"distinct_id\":\"u4\"},{\"event\":\"\xff\"";
    const QByteArray single = R"({"event":"j","distinct_id":"u5","properties":{"n":-0,"big":98765432109876543210987}})";
    QByteArray input;
    input += "[" + a + ", " + overflow + " ," + c + "]\n";                       // 2 decoded, 1 unparseable
    input += R"({"api_key":"phc","sent_at":"2026-11-20T10:00:01Z","batch":[ )" + big + " ," + utf8 + "," + noId +
             "]}\n";                                                             // 1 decoded, 1 unparseable, 1 rejected
    input += duplicate + "\n";                                                   // rejected whole
    input += broken + "\n";                                                      // unparseable whole
    input += single + "\n";                                                      // 1 decoded
    writeFile(path("hostile.ndjson"), input);

    const QString capture = path("hostile.pipescope");
    const Run run = cli({"check", path("hostile.ndjson"), "--report", "-", "--quiet", "--capture", capture});
    QVERIFY2(run.exitCode == 1, run.err.constData());
    const QJsonObject report = QJsonDocument::fromJson(run.out).object();
    const QJsonObject inputs = report["inputs"].toObject();
    QCOMPARE(inputs["lines"].toInt(), 5);
    // An unparseable element is an event its line held: 3 + 3 + 1 (the rejected body) + 0 + 1.
    QCOMPARE(inputs["events"].toInt(), 8);
    QCOMPARE(inputs["unparseable"].toInt(), 3); // two elements and one whole line
    QCOMPARE(inputs["rejected"].toInt(), 2);
    const QJsonObject streams = report["streams"].toObject();
    QCOMPARE(streams["client"].toInt() + streams["server"].toInt() + streams["unknown"].toInt(), 4);
    QCOMPARE(report["validation"].toObject()["valid"].toInt(), 4);
    QCOMPARE(report["dlq"].toObject()["total"].toInt(), 5);

    const QList<QJsonObject> dlq = ndjson(cli({"export", "--capture", capture, "--dlq"}).out);
    QCOMPARE(dlq.size(), 5);
    QStringList where;
    for (const QJsonObject& row : dlq) {
        const QJsonObject origin = row["origin"].toObject();
        where << row["reason"].toString() + "@" + QString::number(origin["line"].toInt()) +
                     (origin.contains("index") ? "#" + QString::number(origin["index"].toInt()) : QString());
    }
    QCOMPARE(where, (QStringList{"unparseable@1#1", "unparseable@2#1", "rejected@2#2", "rejected@3", "unparseable@4"}));
    QVERIFY2(dlq[0]["detail"].toObject()["message"].toString().contains("number overflow"),
             qPrintable(dlq[0]["detail"].toObject()["message"].toString()));
    QCOMPARE(dlq[1]["detail"].toObject()["offset"].toInt(), 11); // the bad byte, in the element's own bytes
    QVERIFY(dlq[3]["detail"].toObject()["message"].toString().startsWith("duplicate \"batch\" member at byte"));

    const Run raw = cli({"export", "--capture", capture, "--dlq", "--raw", "--output", path("hostile-dlq.ndjson")});
    QCOMPARE(raw.exitCode, 0);
    QFile dlqFile(path("hostile-dlq.ndjson"));
    QVERIFY(dlqFile.open(QIODevice::ReadOnly));
    QCOMPARE(dlqFile.readAll(), overflow + "\n" + utf8 + "\n" + noId + "\n" + duplicate + "\n" + broken + "\n");
    QCOMPARE(cli({"export", "--capture", capture, "--events", "--raw"}).out,
             a + "\n" + c + "\n" + big + "\n" + single + "\n");

    // The raw dead letters, checked again, are the same findings, one line each.
    const Run again = cli({"check", path("hostile-dlq.ndjson"), "--report", "-", "--quiet"});
    const QJsonObject inputsAgain = QJsonDocument::fromJson(again.out).object()["inputs"].toObject();
    QCOMPARE(inputsAgain["unparseable"].toInt(), 3);
    QCOMPARE(inputsAgain["rejected"].toInt(), 2);
}

void TestCliCheck::everySdkWithItsDefaults() {
    writeFile(path("sdk/schemas/$identify/1.json"), kIdentifySchema);
    writeFile(path("sdk/client.ndjson"), kSdkClient);
    writeFile(path("sdk/server.ndjson"), kSdkServer);
    const QString capture = path("sdk/run.pipescope");
    const Run run = cli({"check", "--schemas", path("sdk/schemas"), path("sdk/client.ndjson"), path("sdk/server.ndjson"),
                         "--report", path("sdk/report.json"), "--capture", capture});
    QVERIFY2(run.exitCode == 1, run.err.constData()); // eve's identify lacks an email
    const QJsonObject report = readJson(path("sdk/report.json"));

    // posthog-js's top-level $set is what the schema sees, as posthog-node's properties.$set is.
    const QJsonObject validation = report["validation"].toObject();
    QCOMPARE(validation["invalid"].toInt(), 1);
    const QJsonArray failures = validation["failures"].toArray();
    QCOMPARE(failures.size(), 1);
    QCOMPARE(failures[0].toObject()["event"].toString(), QString("$identify"));
    QCOMPARE(failures[0].toObject()["pointer"].toString(), QString("/$set"));

    const QJsonObject identity = report["identity"].toObject();
    const QJsonObject issues = identity["issues"].toObject();
    QCOMPARE(issues["post_identify_anonymous"].toInt(), 0); // the late pageview was sent before identify
    QCOMPARE(issues["orphan_server_id"].toInt(), 0);        // "$company_acme" is a group, not a person
    QCOMPARE(issues["split_identity"].toInt(), 0);          // dev-shared: ada, then grace
    QCOMPARE(identity["shared_device"].toInt(), 1);
    QCOMPARE(identity["groups"].toInt(), 2);
    QCOMPARE(identity["groups_by_type"].toObject(), (QJsonObject{{"company", 1}, {"segment", 1}}));
    // ada, grace, anon-seg, user-seg (a group call links no ids); eve's identify is dead-lettered.
    QCOMPARE(identity["persons"].toInt(), 4);
    QVERIFY2(run.out.contains("2 groups"), run.out.constData());
    QVERIFY2(run.out.contains("shared_device"), run.out.constData());

    // The capture shows the folded properties; the raw bytes are as sent.
    const Run events = cli({"export", "--capture", capture, "--events"});
    QCOMPARE(events.exitCode, 0);
    int seen = 0;
    for (const QJsonObject& row : ndjson(events.out)) {
        const QJsonObject properties = row["properties"].toObject();
        if (row["name"] == "$identify" && properties["distinct_id"] == "user-ada") {
            QCOMPARE(properties["$set"].toObject()["email"].toString(), QString("ada@example.com"));
            QCOMPARE(properties["$set_once"].toObject()["$initial_referrer"].toString(), QString("$direct"));
            ++seen;
        }
        if (row["name"] == "$pageview" && properties["path"] == "/pricing") {
            QCOMPARE(properties["name"].toString(), QString("Pricing"));
            QCOMPARE(properties["category"].toString(), QString("Docs"));
            ++seen;
        }
        if (row["name"] == "$groupidentify" && row["format"] == "segment") {
            QCOMPARE(properties["$group_key"].toString(), QString("acme"));
            QCOMPARE(properties["plan"].toString(), QString("enterprise"));
            ++seen;
        }
        // posthog-node's historicalMigration flags its whole body: kept on the captured events.
        const bool historical = row["id"] == "node-1" || row["id"] == "node-2";
        QCOMPARE(row["historical_migration"].toBool(), historical);
        seen += historical;
    }
    QVERIFY2(seen == 5, events.out.constData());
}

// Captures compress each event (schema v2: one zstd frame per event, a dictionary trained on the
// first 2000): enough events for the dictionary, in both vendors' shapes, with what minifying
// would change (spaces, 32.00, escapes, non-ASCII), come back byte for byte.
void TestCliCheck::captureKeepsEveryRawByte() {
    QByteArray input;
    for (int i = 0; i < 3000; ++i) {
        QByteArray line;
        if (i % 3 == 0)
            line = "{\"type\":\"track\",\"event\":\"product_viewed\",\"userId\":\"user-" + QByteArray::number(i % 97) +
                   "\",\"messageId\":\"m-" + QByteArray::number(i) + "\",\"properties\":{ \"sku\" : \"s-" +
                   QByteArray::number(i) + "\", \"price\": 32.00, \"note\": \"caf\xc3\xa9 \\u00e9 \\\"q\\\"\" }}";
        else
            line = "{\"event\":\"product_viewed\",\"distinct_id\":\"d-" + QByteArray::number(i % 211) +
                   "\",\"uuid\":\"0190f3a1-0000-7000-8000-" + QByteArray::number(100000000000LL + i) +
                   "\",\"properties\":{\"$lib\":\"web\",\"sku\":\"s-" + QByteArray::number(i * 7) +
                   "\",\"price\":" + QByteArray::number(i % 50) + ".5e0,\"tags\":[\"a\", \"b\"]}}";
        if (i % 101 == 0) line.append("   "); // trailing spaces are the line's bytes too
        input += line + "\n";
    }
    writeFile(path("roundtrip.ndjson"), input);
    const QString capture = path("roundtrip.pipescope");
    const Run check = cli({"check", path("roundtrip.ndjson"), "--capture", capture, "--quiet"});
    QVERIFY2(check.exitCode == 0 || check.exitCode == 1, check.err.constData());
    const Run raw = cli({"export", "--capture", capture, "--events", "--raw", "--output", path("roundtrip-raw.ndjson")});
    QCOMPARE(raw.exitCode, 0);
    QFile exported(path("roundtrip-raw.ndjson"));
    QVERIFY(exported.open(QIODevice::ReadOnly));
    const QByteArray out = exported.readAll();
    const QList<QByteArray> expected = input.split('\n'), got = out.split('\n');
    QCOMPARE(got.size(), expected.size());
    for (int i = 0; i < expected.size(); ++i)
        QVERIFY2(got[i] == expected[i], qPrintable(QString("line %1: %2 != %3").arg(i + 1).arg(got[i], expected[i])));
    QCOMPARE(out, input);
}

QTEST_GUILESS_MAIN(TestCliCheck)
#include "tst_cli_check.moc"
