// End-to-end for `pipescope-cli export --filter`: generated PostHog and Segment traffic through
// `check --capture`, then the real executable exports what a filter selects (events and dead
// letters, with --raw and --reason), compared with what the generator planted; bad filters exit 2
// with the column, the message and a caret line.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include "cli_test_support.h"

using namespace cli_test;

class TestCliExport : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void filtersEvents_data();
    void filtersEvents();
    void filtersDeadLetters();
    void rawAndOutput();
    void badFilters_data();
    void badFilters();

private:
    QString path(const QString& name) const { return m_dir.filePath(name); }
    QTemporaryDir m_dir;
    QString m_capture;
    // What was planted, per generated event (in input order = capture order).
    struct Planted {
        QString name, distinctId, stream;
        QJsonValue amount{QJsonValue::Undefined};  // undefined when absent
        bool invalid = false;
        bool segment = false;
        int index = 0;
        qint64 second = 0;
    };
    QList<Planted> m_planted;
};

namespace {
constexpr qint64 kBaseMillis = 1795687200000;  // 2026-11-26T10:00:00Z

QString at(qint64 second) {
    return QDateTime::fromMSecsSinceEpoch(kBaseMillis + second * 1000, Qt::UTC).toString(Qt::ISODateWithMs);
}
} // namespace

void TestCliExport::initTestCase() {
    QVERIFY(m_dir.isValid());
    // payment_completed needs a numeric amount: string amounts are dead-lettered.
    writeFile(path("schemas/payment_completed/1.json"),
              R"({"type":"object","required":["amount"],"properties":{"amount":{"type":"number"}}})");
    QByteArray input;
    const QStringList names = {"$pageview", "payment_completed", "signup", "item viewed"};
    for (int i = 0; i < 240; ++i) {
        Planted p;
        p.name = names[i % names.size()];
        p.distinctId = QString("user-%1").arg(i % 17);
        p.second = i * 30;
        p.index = i;
        p.segment = i % 2 == 0;
        const bool server = i % 3 == 0;
        p.stream = server ? "server" : "client";
        QJsonObject properties;
        if (p.name == "payment_completed") {
            p.amount = i % 5 == 0 ? QJsonValue(QString::number(i)) : QJsonValue(i * 1.5);
            properties["amount"] = p.amount;
            p.invalid = p.amount.isString();
        } else if (i % 2 == 0) {
            p.amount = QJsonValue(i);
            properties["amount"] = p.amount;
        }
        properties["items"] = QJsonArray{QJsonObject{{"sku", QString("SKU-%1").arg(i % 4)}}};
        if (i % 2 == 1)
            properties["key with space"] = "yes";
        if (i % 2 == 0) {
            // Segment (analytics-node on the server, analytics.js in the browser).
            QJsonObject message{{"type", "track"}, {"event", p.name}, {"userId", p.distinctId},
                                {"messageId", QString("m-%1").arg(i)}, {"timestamp", at(p.second)},
                                {"properties", properties},
                                {"context", QJsonObject{{"library", QJsonObject{{"name", server ? "analytics-node" : "analytics.js"}}}}}};
            input += json(message) + "\n";
        } else {
            properties["$lib"] = server ? "posthog-node" : "web";
            QJsonObject event{{"event", p.name}, {"distinct_id", p.distinctId}, {"uuid", QString("u-%1").arg(i)},
                              {"timestamp", at(p.second)}, {"properties", properties}};
            input += json(event) + "\n";
        }
        m_planted << p;
    }
    input += "{not json\n";
    writeFile(path("traffic.ndjson"), input);
    m_capture = path("traffic.pipescope");
    const Run run = cli({"check", "--schemas", path("schemas"), path("traffic.ndjson"), "--capture", m_capture, "--quiet"});
    QCOMPARE(run.exitCode, 1);  // findings: the dead letters
    QCOMPARE(exportEvents(m_capture).size(), m_planted.size());
}

void TestCliExport::filtersEvents_data() {
    QTest::addColumn<QString>("filter");
    QTest::addColumn<int>("expected");
    auto count = [this](const std::function<bool(const Planted&)>& pick) {
        int n = 0;
        for (const auto& p : m_planted) n += pick(p);
        return n;
    };
    QTest::newRow("all") << "" << int(m_planted.size());
    QTest::newRow("name") << R"(event == "payment_completed")" << count([](const Planted& p) { return p.name == "payment_completed"; });
    QTest::newRow("invalid") << "verdict == invalid" << count([](const Planted& p) { return p.invalid; });
    QTest::newRow("property number") << "properties.amount > 100"
                                     << count([](const Planted& p) { return p.amount.isDouble() && p.amount.toDouble() > 100; });
    QTest::newRow("string amounts") << R"(event == "payment_completed" && properties.amount ~ "^[0-9]+$")"
                                    << count([](const Planted& p) { return p.amount.isString(); });
    QTest::newRow("stream and format") << "stream == server && format == segment"
                                       << count([](const Planted& p) { return p.stream == "server" && p.segment; });
    QTest::newRow("time window") << "time >= " + at(1800) + " && time < " + at(3600)
                                 << count([](const Planted& p) { return p.second >= 1800 && p.second < 3600; });
    QTest::newRow("array and bracket") << R"(properties.items[0].sku == "SKU-1" || properties["key with space"] == "yes")"
                                       << count([](const Planted& p) { return p.index % 2 == 1; });
    QTest::newRow("set and not") << R"(distinct_id in {"user-1", "user-2"} && !(event == "signup"))"
                                 << count([](const Planted& p) {
                                        return (p.distinctId == "user-1" || p.distinctId == "user-2") && p.name != "signup";
                                    });
    QTest::newRow("missing property") << "!exists properties.amount"
                                      << count([](const Planted& p) { return p.amount.isUndefined(); });
}

void TestCliExport::filtersEvents() {
    QFETCH(QString, filter);
    QFETCH(int, expected);
    const Run run = cli({"export", "--capture", m_capture, "--events", "--filter", filter});
    QCOMPARE(run.exitCode, 0);
    QVERIFY2(run.err.isEmpty(), run.err.constData());
    const QList<QJsonObject> rows = ndjson(run.out);
    QCOMPARE(rows.size(), expected);
    QVERIFY(expected > 0);
}

void TestCliExport::filtersDeadLetters() {
    int stringAmounts = 0;
    for (const auto& p : m_planted) stringAmounts += p.amount.isString();
    // Schema violations, by the event's properties in the dead letter's raw bytes.
    Run run = cli({"export", "--capture", m_capture, "--dlq", "--filter",
                   R"(reason == schema_violation && properties.amount ~ "^[0-9]+$")"});
    QCOMPARE(run.exitCode, 0);
    QList<QJsonObject> rows = ndjson(run.out);
    QCOMPARE(rows.size(), stringAmounts);
    for (const auto& row : rows) QCOMPARE(row["reason"].toString(), QString("schema_violation"));
    // The unparseable line has no event and no properties.
    run = cli({"export", "--capture", m_capture, "--dlq", "--filter", "!exists event"});
    rows = ndjson(run.out);
    QCOMPARE(rows.size(), 1);
    QCOMPARE(rows.front()["reason"].toString(), QString("unparseable"));
    // With --reason, both apply.
    run = cli({"export", "--capture", m_capture, "--dlq", "--reason", "unparseable", "--filter", "exists event"});
    QCOMPARE(run.exitCode, 0);
    QCOMPARE(ndjson(run.out).size(), 0);
    // Fields of events are not fields of dead letters.
    run = cli({"export", "--capture", m_capture, "--dlq", "--filter", "verdict == invalid"});
    QCOMPARE(run.exitCode, 2);
    QVERIFY2(run.err.contains(R"("verdict" is a field of events; this filter runs over dead letters)"), run.err.constData());
}

void TestCliExport::rawAndOutput() {
    const QString out = path("pay.ndjson");
    const Run run = cli({"export", "--capture", m_capture, "--raw", "--output", out, "--filter",
                         R"(event == "payment_completed" && verdict == valid)"});
    QCOMPARE(run.exitCode, 0);
    QFile file(out);
    QVERIFY(file.open(QIODevice::ReadOnly));
    int lines = 0, expected = 0;
    for (const auto& p : m_planted) expected += p.name == "payment_completed" && !p.invalid;
    for (const QByteArray& line : file.readAll().split('\n')) {
        if (line.isEmpty()) continue;
        ++lines;
        QVERIFY(line.contains("payment_completed"));
    }
    QCOMPARE(lines, expected);
}

void TestCliExport::badFilters_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("stderrText");
    const QString c = "CAPTURE";
    QTest::newRow("unknown field") << QStringList{"--events", "--filter", R"(evnt == "x")"}
                                   << "pipescope-cli: --filter: error at column 1: unknown field \"evnt\" (did you mean "
                                      "\"event\"?)\n  evnt == \"x\"\n  ^~~~\n";
    QTest::newRow("unterminated") << QStringList{"--filter", R"(event == "pay)"}
                                  << "pipescope-cli: --filter: error at column 10: unterminated string: missing the "
                                     "closing \"\n  event == \"pay\n           ^~~~\n";
    QTest::newRow("regex") << QStringList{"--filter", R"(event ~ "(ab")"}
                           << "pipescope-cli: --filter: error at column 13: invalid regex at 3: missing closing "
                              "parenthesis\n  event ~ \"(ab\"\n              ^\n";
    QTest::newRow("at the end") << QStringList{"--filter", "seq >"}
                                << "pipescope-cli: --filter: error at column 6: expected a value after > at the end of "
                                   "the filter\n  seq >\n       ^\n";
    QTest::newRow("with duplicates") << QStringList{"--duplicates", "--filter", "seq > 1"}
                                     << "pipescope-cli: export: --filter goes with --events or --dlq\n(see pipescope-cli "
                                        "help export)\n";
    QTest::newRow("no value") << QStringList{"--filter"} << "pipescope-cli: --filter needs a value\n(see pipescope-cli help export)\n";
}

void TestCliExport::badFilters() {
    QFETCH(QStringList, args);
    QFETCH(QString, stderrText);
    const Run run = cli(QStringList{"export", "--capture", m_capture} + args);
    QCOMPARE(run.exitCode, 2);
    QCOMPARE(QString::fromUtf8(run.err), stderrText);
    QVERIFY(run.out.isEmpty());
}

QTEST_GUILESS_MAIN(TestCliExport)
#include "tst_cli_export.moc"
