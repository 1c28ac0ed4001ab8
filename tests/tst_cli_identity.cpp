// End-to-end for deduplication and identity stitching: `pipescope-cli check` on generated mixed
// client/server traffic (posthog-js, posthog-node, analytics.js, analytics-node) with planted
// retries, conflicting ids, illegal ids, refused merges and split identities must report exactly
// what was planted; the capture keeps the duplicates and the issues; `identity --explain` and
// `--issues` read them back; the dedup window survives a restart through --dedup-state.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include "cli_test_support.h"

using namespace cli_test;

namespace {

constexpr qint64 kBaseMillis = 1795687200000; // 2026-11-20T10:00:00Z

QString at(qint64 offsetSeconds) {
    return QDateTime::fromMSecsSinceEpoch(kBaseMillis + offsetSeconds * 1000, Qt::UTC).toString(Qt::ISODateWithMs);
}

// A PostHog event as posthog-js (client) or posthog-node (server) sends it.
QByteArray posthog(const QString& name, const QString& distinctId, const QString& uuid, qint64 second, bool server,
                   QJsonObject properties = {}) {
    properties["$lib"] = server ? "posthog-node" : "web";
    if (!server) properties["distinct_id"] = distinctId;
    QJsonObject event{{"event", name}, {"properties", properties}, {"timestamp", at(second)}};
    if (server) event["distinct_id"] = distinctId;
    if (!uuid.isEmpty()) event["uuid"] = uuid;
    return json(event) + "\n";
}

QByteArray segment(const QString& type, const QJsonObject& ids, const QString& messageId, qint64 second, bool server,
                   QJsonObject extra = {}) {
    QJsonObject message = extra;
    message["type"] = type;
    for (auto it = ids.begin(); it != ids.end(); ++it) message[it.key()] = it.value();
    message["messageId"] = messageId;
    message["timestamp"] = at(second);
    message["context"] = QJsonObject{
        {"library", QJsonObject{{"name", server ? "@segment/analytics-node" : "analytics.js"}}}};
    return json(message) + "\n";
}

// What was planted, counted as it is written.
struct Planted {
    QByteArray client, server, late;
    int events = 0, duplicates = 0, conflicting = 0, withoutId = 0, invalid = 0;
};

constexpr int kUsers = 20;

Planted plant() {
    Planted p;
    auto client = [&](const QByteArray& line) { p.client += line, ++p.events; };
    auto server = [&](const QByteArray& line) { p.server += line, ++p.events; };
    const QJsonObject amount{{"amount", 25.5}, {"currency", "EUR"}};

    // kUsers anonymous visitors who sign in: persons = kUsers, merges = kUsers. Their server
    // orders share a person with a client id, so none is an orphan.
    for (int i = 0; i < kUsers; ++i) {
        const QString anon = QString("anon-%1").arg(i), user = QString("user-%1").arg(i);
        const QJsonObject session{{"$session_id", QString("sess-%1").arg(i)}};
        client(posthog("$pageview", anon, QString("pv-%1").arg(i), i, false, session));
        QJsonObject identify = session;
        identify["$anon_distinct_id"] = anon;
        client(posthog("$identify", user, QString("id-%1").arg(i), 100 + i, false, identify));
        server(posthog("order_completed", user, QString("srv-%1").arg(i), 200 + i, true, amount));
    }
    // Retries: five exact resends (duplicates), one reuse of an id for another event (conflicting).
    for (int i = 0; i < 5; ++i)
        client(posthog("$pageview", QString("anon-%1").arg(i), QString("pv-%1").arg(i), i, false,
                       {{"$session_id", QString("sess-%1").arg(i)}})),
            ++p.duplicates;
    client(posthog("button_clicked", "anon-0", "pv-0", 300, false)), ++p.duplicates, ++p.conflicting;
    // A bad event retried: dead-lettered once, the retry is a duplicate.
    server(posthog("order_completed", "user-0", "bad-1", 301, true, {{"currency", "EUR"}})), ++p.invalid;
    server(posthog("order_completed", "user-0", "bad-1", 302, true, {{"currency", "EUR"}})), ++p.duplicates;

    // Illegal distinct ids: three events, and one identify whose anonymous side is illegal.
    client(posthog("$pageview", "undefined", "ill-1", 400, false));
    client(posthog("$pageview", "null", "ill-2", 401, false));
    client(posthog("$pageview", "[object Object]", "ill-3", 402, false));
    client(posthog("$identify", "user-ill", "ill-4", 403, false, {{"$anon_distinct_id", "anonymous"}}));

    // Two identified people; an alias between them is refused, $merge_dangerously merges them.
    client(posthog("$pageview", "anon-A", "ra-1", 500, false));
    client(posthog("$identify", "user-A", "ra-2", 501, false, {{"$anon_distinct_id", "anon-A"}}));
    client(posthog("$pageview", "anon-B", "rb-1", 502, false));
    client(posthog("$identify", "user-B", "rb-2", 503, false, {{"$anon_distinct_id", "anon-B"}}));
    server(posthog("$create_alias", "user-A", "rc-1", 504, true, {{"alias", "user-B"}}));
    server(posthog("$merge_dangerously", "user-A", "rc-2", 505, true, {{"alias", "user-B"}}));

    // Segment: a browser page, the server's identify links it, an alias adds a new user id.
    client(segment("page", {{"anonymousId", "seg-anon-1"}}, "s-0", 600, false));
    server(segment("identify", {{"userId", "seg-user-1"}, {"anonymousId", "seg-anon-1"}}, "s-1", 601, true,
                   {{"traits", QJsonObject{{"plan", "pro"}}}}));
    server(segment("alias", {{"userId", "seg-user-2"}, {"previousId", "seg-user-1"}}, "s-2", 602, true));

    // Orphans: server ids that no client id is stitched to.
    server(posthog("order_completed", "srv-only-1", "o-1", 700, true, amount));
    server(posthog("order_completed", "srv-only-2", "o-2", 701, true, amount));

    // Split identities: one session seen with two unrelated ids; one order_id on a client id and
    // an unrelated server id (which is also an orphan).
    client(posthog("$pageview", "anon-X", "sp-1", 800, false, {{"$session_id", "sess-split"}}));
    client(posthog("$pageview", "anon-Y", "sp-2", 801, false, {{"$session_id", "sess-split"}}));
    client(posthog("checkout_started", "anon-Z", "sp-3", 802, false, {{"order_id", "o-77"}}));
    QJsonObject order = amount;
    order["order_id"] = "o-77";
    server(posthog("order_completed", "cust-9", "sp-4", 803, true, order));

    // Sent again with an anonymous id that was already identified.
    client(posthog("$pageview", "anon-3", "pa-1", 900, false, {{"$session_id", "sess-3"}}));

    // Two identical events without an id: never duplicates, unless fingerprinted.
    client(posthog("$pageview", "anon-X", "", 1000, false)), ++p.withoutId;
    client(posthog("$pageview", "anon-X", "", 1000, false)), ++p.withoutId;

    // Three days later, the first pageview of anon-X again: outside a 24 h window, inside 7 d.
    p.late = posthog("$pageview", "anon-X", "sp-1", 800 + 3 * 24 * 3600, false, {{"$session_id", "sess-split"}});
    ++p.events;
    return p;
}

// Identity figures of the planted traffic, derived by hand in the comments above.
// Each illegal distinct id is a person of its own, as PostHog gives it one (never merged).
constexpr int kPersons = kUsers + 1 /*user-ill*/ + 1 /*A+B*/ + 1 /*seg*/ + 2 /*orphans*/ + 2 /*X,Y*/ + 2 /*Z,cust-9*/ +
                         3 /*undefined, null, [object Object]*/;
constexpr int kMerges = kUsers + 2 /*A,B identify*/ + 1 /*dangerous*/ + 2 /*segment identify, alias*/;

const QByteArray kOrderSchema = R"({"type": "object", "required": ["amount", "currency"],
  "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}}})";

} // namespace

class TestCliIdentity : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        m_planted = plant();
        writeFile(path("schemas/order_completed/1.json"), kOrderSchema);
        writeFile(path("client.ndjson"), m_planted.client);
        writeGzip(path("server.ndjson.gz"), m_planted.server);
        writeFile(path("late.ndjson"), m_planted.late);
    }

    void reportsExactlyWhatWasPlanted() {
        const Run run = cli({"check", "--schemas", path("schemas"), path("client.ndjson"), path("server.ndjson.gz"),
                             path("late.ndjson"), "--correlate", "order_id", "--report", path("report.json"),
                             "--capture", path("run.pipescope")});
        QVERIFY2(run.exitCode == 1, run.err.constData());
        const QJsonObject report = readJson(path("report.json"));
        const Planted& p = m_planted;
        QCOMPARE(report["inputs"].toObject()["events"].toInt(), p.events);

        const QJsonObject dedup = report["dedup"].toObject();
        QCOMPARE(dedup["duplicates"].toInt(), p.duplicates);
        QCOMPARE(dedup["conflicting"].toInt(), p.conflicting);
        QCOMPARE(dedup["without_id"].toInt(), p.withoutId);
        QCOMPARE(dedup["unique"].toInt(), p.events - p.duplicates);
        QCOMPARE(dedup["window_ms"].toInteger(), 24LL * 3600 * 1000);
        // unique + duplicates = decoded events; valid + invalid = unique.
        const QJsonObject streams = report["streams"].toObject();
        QCOMPARE(dedup["unique"].toInt() + dedup["duplicates"].toInt(),
                 streams["client"].toInt() + streams["server"].toInt() + streams["unknown"].toInt());
        const QJsonObject validation = report["validation"].toObject();
        QCOMPARE(validation["invalid"].toInt(), p.invalid);
        QCOMPARE(validation["valid"].toInt() + validation["invalid"].toInt(), dedup["unique"].toInt());
        QCOMPARE(report["dlq"].toObject()["total"].toInt(), p.invalid); // the retried bad event only once

        const QJsonObject identity = report["identity"].toObject();
        QCOMPARE(identity["persons"].toInt(), kPersons);
        QCOMPARE(identity["merges"].toInt(), kMerges);
        const QJsonObject issues = identity["issues"].toObject();
        QCOMPARE(issues["illegal_distinct_id"].toInt(), 4);
        QCOMPARE(issues["merge_refused"].toInt(), 1);
        QCOMPARE(issues["split_identity"].toInt(), 2);
        QCOMPARE(issues["orphan_server_id"].toInt(), 3);
        QCOMPARE(issues["post_identify_anonymous"].toInt(), 1);

        QVERIFY2(run.out.contains("Dedup"), run.out.constData());
        QVERIFY(run.out.contains("conflicting"));
        QVERIFY(run.out.contains("merge_refused"));
    }

    void captureKeepsDuplicatesAndIssues() {
        const Run dups = cli({"export", "--capture", path("run.pipescope"), "--duplicates"});
        QCOMPARE(dups.exitCode, 0);
        const QList<QJsonObject> rows = ndjson(dups.out);
        QCOMPARE(rows.size(), m_planted.duplicates);
        int conflicting = 0;
        for (const QJsonObject& row : rows) {
            QVERIFY(row["first_seq"].isDouble());
            QVERIFY(row["first_origin"].toObject()["source"].toString().endsWith(".ndjson") ||
                    row["first_origin"].toObject()["source"].toString().endsWith(".gz"));
            if (row["conflicting"].toBool()) {
                ++conflicting;
                QCOMPARE(row["key"].toString(), QString("pv-0"));
                QCOMPARE(row["name"].toString(), QString("button_clicked"));
                QVERIFY(row["differences"].toArray().contains(QJsonValue("name")));
                QCOMPARE(row["gap_ms"].toInteger(), 300000);
            } else {
                QCOMPARE(row["differences"].toArray().size(), 0);
            }
        }
        QCOMPARE(conflicting, 1);

        const Run issues = cli({"identity", "--capture", path("run.pipescope"), "--issues", "--json"});
        QCOMPARE(issues.exitCode, 1);
        const QJsonObject grouped = QJsonDocument::fromJson(issues.out).object()["issues"].toObject();
        QCOMPARE(grouped["merge_refused"].toArray().size(), 1);
        QCOMPARE(grouped["orphan_server_id"].toArray().size(), 3);
        QCOMPARE(grouped["split_identity"].toArray().size(), 2);
        QCOMPARE(grouped["illegal_distinct_id"].toArray().size(), 4);
        QCOMPARE(grouped["post_identify_anonymous"].toArray().size(), 1);

        const Run orphans = cli({"identity", "--capture", path("run.pipescope"), "--issues", "--kind", "orphan_server_id"});
        QCOMPARE(orphans.exitCode, 1);
        for (const char* id : {"srv-only-1", "srv-only-2", "cust-9"})
            QVERIFY2(orphans.out.contains(id), orphans.out.constData());
        const Run onlyOrphans = cli(
            {"identity", "--capture", path("run.pipescope"), "--issues", "--kind", "orphan_server_id", "--json"});
        const QJsonObject only = QJsonDocument::fromJson(onlyOrphans.out).object()["issues"].toObject();
        QCOMPARE(only["orphan_server_id"].toArray().size(), 3);
        QCOMPARE(only["merge_refused"].toArray().size(), 0);
    }

    void explainsAPerson() {
        const Run run = cli({"identity", "--capture", path("run.pipescope"), "--explain", "user-B", "--json"});
        QCOMPARE(run.exitCode, 0);
        const QJsonObject person = QJsonDocument::fromJson(run.out).object();
        QStringList ids;
        for (const auto& member : person["ids"].toArray()) ids << member.toObject()["id"].toString();
        ids.sort();
        QCOMPARE(ids, (QStringList{"anon-A", "anon-B", "user-A", "user-B"}));
        QCOMPARE(person["refused_merges"].toArray().size(), 1);

        const Run text = cli({"identity", "--capture", path("run.pipescope"), "--explain", "seg-anon-1"});
        QCOMPARE(text.exitCode, 0);
        for (const char* part : {"seg-user-1", "seg-user-2", "server.ndjson.gz:", "client.ndjson:"})
            QVERIFY2(text.out.contains(part), text.out.constData());

        const Run missing = cli({"identity", "--capture", path("run.pipescope"), "--explain", "user-404"});
        QCOMPARE(missing.exitCode, 1);
        QVERIFY(missing.out.contains("no distinct id \"user-404\""));
    }

    void windowAndFingerprintOptions_data() {
        QTest::addColumn<QStringList>("options");
        QTest::addColumn<int>("extraDuplicates");
        QTest::addColumn<int>("withoutId");
        QTest::newRow("24h default") << QStringList{} << 0 << 2;
        QTest::newRow("7d window") << QStringList{"--dedup-window", "7d"} << 1 << 2;
        QTest::newRow("fingerprint") << QStringList{"--dedup-fingerprint"} << 1 << 0;
        QTest::newRow("bloom") << QStringList{"--dedup-mode", "bloom", "--bloom-keys", "10000"} << 0 << 2;
    }
    void windowAndFingerprintOptions() {
        QFETCH(QStringList, options);
        QFETCH(int, extraDuplicates);
        QFETCH(int, withoutId);
        const Run run = cli(QStringList{"check", "--schemas", path("schemas"), path("client.ndjson"),
                                        path("server.ndjson.gz"), path("late.ndjson"), "--report", "-", "--quiet"}
                            + options);
        QCOMPARE(run.exitCode, 1);
        const QJsonObject dedup = QJsonDocument::fromJson(run.out).object()["dedup"].toObject();
        QCOMPARE(dedup["duplicates"].toInt(), m_planted.duplicates + extraDuplicates);
        QCOMPARE(dedup["without_id"].toInt(), withoutId);
        // Bloom mode cannot tell a conflicting duplicate from a retry.
        QCOMPARE(dedup["conflicting"].toInt(), options.contains("bloom") ? 0 : m_planted.conflicting);
    }

    void windowSurvivesARestart() {
        // First run: the client traffic, the window saved. Second run: the same traffic again, as a
        // client would retry after the collector restarted: every event with an id is a duplicate.
        const QString state = path("window.state");
        const Run first = cli({"check", path("client.ndjson"), "--dedup-state", state, "--report", "-", "--quiet"});
        QCOMPARE(first.exitCode, 1);
        QVERIFY(QFileInfo::exists(state));
        const QJsonObject firstDedup = QJsonDocument::fromJson(first.out).object()["dedup"].toObject();
        const int uniqueWithId = firstDedup["unique"].toInt() - firstDedup["without_id"].toInt();

        const Run second = cli({"check", path("client.ndjson"), "--dedup-state", state, "--report", "-", "--quiet",
                                "--capture", path("restart.pipescope")});
        QCOMPARE(second.exitCode, 1);
        const QJsonObject dedup = QJsonDocument::fromJson(second.out).object()["dedup"].toObject();
        QCOMPARE(dedup["state"].toObject()["keys_restored"].toInt(), uniqueWithId);
        QCOMPARE(dedup["duplicates"].toInt(), firstDedup["duplicates"].toInt() + uniqueWithId);
        QCOMPARE(dedup["unique"].toInt(), firstDedup["without_id"].toInt());
        // Every key was first seen before this capture began: no duplicate has a first event in it.
        const Run dups = cli({"export", "--capture", path("restart.pipescope"), "--duplicates"});
        const QList<QJsonObject> rows = ndjson(dups.out);
        QCOMPARE(rows.size(), dedup["duplicates"].toInt());
        for (const QJsonObject& row : rows) {
            QVERIFY(row["first_seq"].isNull());
            QVERIFY(row["first_seen"].isString());
        }

        // A damaged state file is an input error that names the file, and is left as it was.
        writeFile(path("broken.state"), "not a dedup window");
        const Run broken = cli({"check", path("client.ndjson"), "--dedup-state", path("broken.state")});
        QCOMPARE(broken.exitCode, 2);
        QVERIFY2(broken.err.contains("broken.state"), broken.err.constData());
    }

    void usageErrors_data() {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("message");
        QTest::newRow("bad window") << QStringList{"--dedup-window", "12x"} << "--dedup-window";
        QTest::newRow("zero window") << QStringList{"--dedup-window", "0h"} << "--dedup-window";
        QTest::newRow("bad mode") << QStringList{"--dedup-mode", "fuzzy"} << "exact or bloom";
        QTest::newRow("bad rate") << QStringList{"--dedup-mode", "bloom", "--bloom-fp-rate", "2"} << "--bloom-fp-rate";
        QTest::newRow("no-dedup with window") << QStringList{"--no-dedup", "--dedup-window", "1h"} << "--no-dedup";
    }
    void usageErrors() {
        QFETCH(QStringList, args);
        QFETCH(QString, message);
        const Run run = cli(QStringList{"check", path("client.ndjson")} + args);
        QCOMPARE(run.exitCode, 2);
        QVERIFY2(run.err.contains(message.toUtf8()), run.err.constData());
    }

    // The capture rebuilds the same graph: groups are no persons, the late pageview raises
    // nothing, reset() on a shared device is a note.
    void sdkDefaultsFromCapture() {
        const QByteArray traffic =
            R"({"api_key":"phc","batch":[{"distinct_id":"$company_acme","event":"$groupidentify","properties":)"
            R"({"$group_type":"company","$group_key":"acme","$group_set":{"name":"Acme"},"$lib":"posthog-node"},)"
            R"("timestamp":"2024-05-01T11:00:00.000Z","uuid":"n-1"},{"distinct_id":"user-ada","event":"$groupidentify",)"
            R"("properties":{"$group_type":"company","$group_key":"acme","$lib":"posthog-node"},"uuid":"n-2",)"
            R"("timestamp":"2024-05-01T11:00:01.000Z"}]})" "\n"
            R"([{"uuid":"j-2","event":"$identify","properties":{"token":"phc","distinct_id":"user-ada","$anon_distinct_id":"anon-1",)"
            R"("$lib":"web","$device_id":"dev-1"},"$set":{"email":"a@example.com"},"timestamp":"2024-05-01T12:00:05.000Z"}])" "\n"
            R"([{"uuid":"j-1","event":"$pageview","properties":{"token":"phc","distinct_id":"anon-1","$lib":"web","$device_id":"dev-1"},)"
            R"("timestamp":"2024-05-01T12:00:04.924Z"}])" "\n"
            R"([{"uuid":"j-3","event":"$identify","properties":{"token":"phc","distinct_id":"user-bob","$anon_distinct_id":"anon-2",)"
            R"("$lib":"web","$device_id":"dev-1"},"timestamp":"2024-05-01T12:30:00.000Z"}])" "\n";
        writeFile(path("sdk.ndjson"), traffic);
        const Run check = cli({"check", path("sdk.ndjson"), "--report", path("sdk-report.json"), "--capture",
                               path("sdk.pipescope")});
        // No findings: user-ada is used by client and server, the group is no person, the late
        // pageview was sent before the identify, and a shared device is a note.
        QVERIFY2(check.exitCode == 0, check.out.constData());
        const QJsonObject identity = readJson(path("sdk-report.json"))["identity"].toObject();
        QCOMPARE(identity["shared_device"].toInt(), 1);
        QCOMPARE(identity["groups"].toInt(), 1);

        const Run issues = cli({"identity", "--capture", path("sdk.pipescope"), "--issues", "--json"});
        const QJsonObject listed = QJsonDocument::fromJson(issues.out).object();
        const QJsonObject byKind = listed["issues"].toObject();
        QCOMPARE(byKind["post_identify_anonymous"].toArray().size(), 0);
        QCOMPARE(byKind["orphan_server_id"].toArray().size(), 0);
        QCOMPARE(byKind["split_identity"].toArray().size(), 0);
        QCOMPARE(byKind["shared_device"].toArray().size(), 1);
        QCOMPARE(listed["summary"].toObject()["shared_device"].toInt(), 1);
        QCOMPARE(listed["summary"].toObject()["groups"].toInt(), 1);
        QCOMPARE(listed["summary"].toObject()["persons"].toInt(), identity["persons"].toInt());

        const Run group = cli({"identity", "--capture", path("sdk.pipescope"), "--explain", "$company_acme"});
        QCOMPARE(group.exitCode, 1); // not a person
        const Run ada = cli({"identity", "--capture", path("sdk.pipescope"), "--explain", "user-ada", "--json"});
        QCOMPARE(ada.exitCode, 0);
        const QJsonObject explanation = QJsonDocument::fromJson(ada.out).object();
        QCOMPARE(explanation["groups"].toArray().size(), 1);
        QCOMPARE(explanation["groups"].toArray()[0].toObject()["key"].toString(), QString("acme"));
        QCOMPARE(explanation["issue_counts"].toObject()["shared_device"].toInt(), 1);
    }

    // Person properties with their blame, and persons per project, as a user reads them from a
    // capture: posthog-js sends its token in every event, posthog-node in the batch envelope.
    void explainShowsPropertiesAndProjects() {
        const QByteArray traffic =
            R"([{"uuid":"p-1","event":"$pageview","properties":{"token":"phc_web","distinct_id":"anon-7","$lib":"web",)"
            R"("$browser":"Firefox","utm_source":"news"},"timestamp":"2024-05-01T12:00:00.000Z"}])" "\n"
            R"([{"uuid":"p-2","event":"$identify","properties":{"token":"phc_web","distinct_id":"user-7",)"
            R"("$anon_distinct_id":"anon-7","$lib":"web"},"$set":{"plan":"free","email":"u7@example.com"},)"
            R"("timestamp":"2024-05-01T12:00:05.000Z"}])" "\n"
            R"({"api_key":"phc_web","batch":[{"distinct_id":"user-7","event":"$set","properties":{"$set":{"plan":"pro"},)"
            R"("$lib":"posthog-node"},"uuid":"n-1","timestamp":"2024-05-01T12:10:00.000Z"}]})" "\n"
            // The same distinct id in another project is another person.
            R"({"api_key":"phc_other","batch":[{"distinct_id":"user-7","event":"$set","properties":{"$set":{"plan":"team"},)"
            R"("$lib":"posthog-node"},"uuid":"n-2","timestamp":"2024-05-01T12:11:00.000Z"}]})" "\n";
        writeFile(path("props.ndjson"), traffic);
        const Run check = cli({"check", path("props.ndjson"), "--report", path("props-report.json"), "--capture",
                               path("props.pipescope")});
        QVERIFY2(check.exitCode == 0 || check.exitCode == 1, check.err.constData());
        const QJsonObject projects = readJson(path("props-report.json"))["identity"].toObject()["projects"].toObject();
        QCOMPARE(projects["phc_web"].toObject()["persons"].toInt(), 1);
        QCOMPARE(projects["phc_other"].toObject()["persons"].toInt(), 1);

        // Text: one person per project, the plan set by the posthog-node $set over the identify's.
        const Run text = cli({"identity", "--capture", path("props.pipescope"), "--explain", "anon-7"});
        QCOMPARE(text.exitCode, 0);
        for (const char* expected : {"in project \"phc_web\"", "identified (by #2 $identify", "plan = \"pro\"",
                                     "set by #3 $set ($set, distinct id \"user-7\")", "over #2 $identify ($set",
                                     "$initial_utm_source = \"news\"", "email = \"u7@example.com\""})
            QVERIFY2(text.out.contains(expected), qPrintable(QString("missing \"%1\" in:\n%2").arg(expected, text.out)));
        QVERIFY2(!text.out.contains("\"team\""), text.out.constData());

        // user-7 is in both projects: --explain shows both; --project picks one.
        const Run both = cli({"identity", "--capture", path("props.pipescope"), "--explain", "user-7", "--json"});
        QCOMPARE(both.exitCode, 0);
        const QJsonArray explanations = QJsonDocument::fromJson(both.out).array();
        QCOMPARE(explanations.size(), 2);
        const Run other = cli({"identity", "--capture", path("props.pipescope"), "--explain", "user-7", "--project",
                               "phc_other", "--json"});
        const QJsonObject person = QJsonDocument::fromJson(other.out).object();
        QCOMPARE(person["project"].toString(), QString("phc_other"));
        QCOMPARE(person["identified"].toBool(), false);
        const QJsonArray properties = person["properties"].toArray();
        QCOMPARE(properties.size(), 1);
        QCOMPARE(properties[0].toObject()["key"].toString(), QString("plan"));
        QCOMPARE(properties[0].toObject()["value"].toString(), QString("team"));
        QCOMPARE(properties[0].toObject()["set_by"].toObject()["seq"].toInt(), 4);

        // Not there in that project: exit 1, said plainly.
        const Run missing = cli({"identity", "--capture", path("props.pipescope"), "--explain", "anon-7", "--project",
                                 "phc_other"});
        QCOMPARE(missing.exitCode, 1);
        QVERIFY2(missing.out.contains("in project \"phc_other\""), missing.out.constData());

        // --issues per project counts only that project's.
        const Run issues = cli({"identity", "--capture", path("props.pipescope"), "--issues", "--project", "phc_other",
                                "--json"});
        const QJsonObject summary = QJsonDocument::fromJson(issues.out).object()["summary"].toObject();
        QCOMPARE(summary["projects"].toObject().keys(), QStringList{"phc_other"});
    }

private:
    QString path(const QString& name) const { return m_dir.filePath(name); }
    QTemporaryDir m_dir;
    Planted m_planted;
};

QTEST_GUILESS_MAIN(TestCliIdentity)
#include "tst_cli_identity.moc"
