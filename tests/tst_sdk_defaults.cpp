// End-to-end, issue 13: every SDK with its defaults against the real `pipescope-cli run` on
// loopback. Real SDKs from the npm registry (tests/e2e/package.json): @segment/analytics-next and
// posthog-js in Debian's headless Chromium, posthog-node with its opt-in Capture V1 transport.
// The pages are served from an origin other than the collector's, as on a real site. Every wait
// is bounded.
#include "cli_test_support.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QProcessEnvironment>
#include <QRegularExpression>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>
#include <algorithm>
#include <functional>

using namespace cli_test;

namespace {

// serve_sdk_pages.mjs: the pages, and what they report they sent (one JSON line each).
class PageServer {
public:
    ~PageServer() {
        m_process.kill();
        m_process.waitForFinished(5000);
    }
    bool start(const QString& node, const QString& script, const QString& collector) {
        m_process.start(node, {script, "--collector", collector, "--seconds", "120"});
        if (!m_process.waitForStarted(10000)) return false;
        QElapsedTimer timer;
        timer.start();
        while (m_port == 0 && timer.elapsed() < 20000 && m_process.state() == QProcess::Running) {
            m_process.waitForReadyRead(200);
            readLines();
        }
        return m_port > 0;
    }
    // The first report the page posted, or an empty object after `timeoutMillis`.
    QJsonObject waitForReport(int timeoutMillis) {
        QElapsedTimer timer;
        timer.start();
        while (m_reports.isEmpty() && timer.elapsed() < timeoutMillis &&
               m_process.state() == QProcess::Running) {
            m_process.waitForReadyRead(200);
            readLines();
        }
        return m_reports.isEmpty() ? QJsonObject() : m_reports.first();
    }
    QString url(const QString& page) const { return QString("http://127.0.0.1:%1%2").arg(m_port).arg(page); }
    QByteArray errors() { return m_process.readAllStandardError(); }

private:
    void readLines() {
        m_buffer += m_process.readAllStandardOutput();
        qsizetype end;
        while ((end = m_buffer.indexOf('\n')) >= 0) {
            const QJsonObject line = QJsonDocument::fromJson(m_buffer.left(end)).object();
            m_buffer.remove(0, end + 1);
            if (line.contains("port")) m_port = line["port"].toInt();
            if (line.contains("report")) m_reports << line["report"].toObject();
        }
    }
    QProcess m_process;
    QByteArray m_buffer;
    QList<QJsonObject> m_reports;
    int m_port = 0;
};

// Polls the capture until `done` holds for its events (bounded); returns the last export.
QList<QJsonObject> waitForEvents(const QString& capture,
                                 const std::function<bool(const QList<QJsonObject>&)>& done,
                                 int timeoutMillis) {
    QElapsedTimer timer;
    timer.start();
    QList<QJsonObject> events = exportEvents(capture);
    while (!done(events) && timer.elapsed() < timeoutMillis) {
        QTest::qWait(300);
        events = exportEvents(capture);
    }
    return events;
}

QHash<QString, QJsonObject> byId(const QList<QJsonObject>& events) {
    QHash<QString, QJsonObject> index;
    for (const QJsonObject& event : events)
        index.insert(event["id"].toString(), event);
    return index;
}

QString names(const QList<QJsonObject>& events) {
    QStringList list;
    for (const QJsonObject& event : events)
        list << event["name"].toString() + "@" + event["origin"].toObject()["source"].toString();
    return list.join(", ");
}

// A desktop browser's user agent: posthog-js drops the traffic of what it takes for a bot, and
// headless Chromium's own says HeadlessChrome. The page also hides navigator.webdriver.
const QString kDesktopUserAgent =
    "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";

} // namespace

class TestSdkDefaults : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        QVERIFY2(!QStandardPaths::findExecutable("chromium").isEmpty(),
                 "Debian's chromium is required (packaging/install-deps.sh installs it)");
        // One npm install under the build directory, shared with tst_cli_run.
        const QString error = installE2eNode(m_node, m_modules);
        QVERIFY2(error.isEmpty(), qPrintable(error));
    }

    // analytics-next (Analytics.js 2.0) as a site loads it without a bundler (its UMD build),
    // delivering to the collector three ways: each call type arrives once, as sent.
    void analyticsNextInChromium_data() {
        QTest::addColumn<QString>("setup");
        QTest::addColumn<bool>("batched");
        QTest::newRow("standard delivery (settings inline)") << "standard" << false;
        QTest::newRow("batching delivery (/v1/b)") << "batching" << true;
        QTest::newRow("cdnURL = the collector (settings from /v1/projects/<writeKey>/settings)")
            << "cdn" << false;
    }
    void analyticsNextInChromium() {
        QFETCH(QString, setup);
        QFETCH(bool, batched);
        const QString capture = path("segment-" + setup + ".pipescope");
        RunProcess run;
        QVERIFY2(run.start({"--port", "0", "--capture", capture}), run.err().constData());
        PageServer pages;
        QVERIFY(pages.start(m_node, m_modules + "/serve_sdk_pages.mjs", run.url()));
        Browser browser;
        QVERIFY(browser.open(path("profile-" + setup), pages.url("/segment?setup=" + setup)));

        // The page awaits each call (analytics-next resolves it once delivered) and reports the
        // message ids the SDK made.
        const QJsonObject report = pages.waitForReport(45000);
        QVERIFY2(!report.isEmpty(), pages.errors().constData());
        QVERIFY2(!report.contains("error"), qPrintable(report["error"].toString()));
        const QJsonArray sent = report["sent"].toArray();
        QCOMPARE(sent.size(), 5);
        const auto allArrived = [&](const QList<QJsonObject>& events) {
            const auto index = byId(events);
            for (const auto& value : sent)
                if (!index.contains(value.toObject()["messageId"].toString())) return false;
            return true;
        };
        const QList<QJsonObject> events = waitForEvents(capture, allArrived, 30000);
        QCOMPARE(run.stop(), 0);
        QVERIFY2(allArrived(events), qPrintable(names(events)));
        QCOMPARE(events.size(), 5); // nothing twice, nothing else

        const auto index = byId(events);
        QStringList expectedNames;
        for (const auto& value : sent) {
            const QJsonObject expected = value.toObject();
            const QJsonObject got = index.value(expected["messageId"].toString());
            expectedNames << expected["name"].toString();
            QCOMPARE(got["name"].toString(), expected["name"].toString());
            QCOMPARE(got["distinct_id"].toString(), expected["distinct_id"].toString());
            QCOMPARE(got["format"].toString(), QString("segment"));
            QCOMPARE(got["id_source"].toString(), QString("segment_message_id"));
            QCOMPARE(got["stream"].toString(), QString("client")); // context.library.name analytics.js
            const QString type = expected["type"].toString();
            // Segment's short paths: the type's first letter, or /v1/b when batching.
            QCOMPARE(got["origin"].toObject()["source"].toString(),
                     batched ? QString("http:/v1/b") : "http:/v1/" + type.left(1));
        }
        QCOMPARE(expectedNames, (QStringList{"$pageview", "$identify", "Order Completed", "$groupidentify",
                                             "$create_alias"}));
        // The page view comes before identify: the anonymous id; the rest the user id.
        const QJsonObject pageview = index.value(sent[0].toObject()["messageId"].toString());
        QVERIFY(!pageview["distinct_id"].toString().isEmpty());
        QVERIFY(pageview["distinct_id"].toString() != "user-" + setup);
        QCOMPARE(index.value(sent[2].toObject()["messageId"].toString())["distinct_id"].toString(),
                 "user-" + setup);
        QCOMPARE(index.value(sent[2].toObject()["messageId"].toString())["properties"]
                     .toObject()["revenue"]
                     .toInt(),
                 42);
    }

    // posthog-js with the app's autocapture: true. The collector's remote config used to opt
    // the project out; now a click on a button is captured as $autocapture with its elements.
    void posthogJsAutocapture() {
        const QString capture = path("autocapture.pipescope");
        RunProcess run;
        QVERIFY2(run.start({"--port", "0", "--capture", capture}), run.err().constData());
        PageServer pages;
        QVERIFY(pages.start(m_node, m_modules + "/serve_sdk_pages.mjs", run.url()));
        Browser browser;
        QVERIFY(
            browser.open(path("profile-posthog"), pages.url("/posthog-autocapture"), {kDesktopUserAgent}));

        const QJsonObject report = pages.waitForReport(45000);
        QVERIFY2(!report.isEmpty(), pages.errors().constData());
        const QString distinctId = report["distinct_id"].toString();
        QVERIFY2(report["captured"].toArray().contains("$autocapture"),
                 QJsonDocument(report).toJson(QJsonDocument::Compact).constData());
        const auto hasAutocapture = [](const QList<QJsonObject>& events) {
            return std::any_of(events.begin(), events.end(),
                               [](const QJsonObject& e) { return e["name"].toString() == "$autocapture"; });
        };
        const QList<QJsonObject> events = waitForEvents(capture, hasAutocapture, 30000);
        QCOMPARE(run.stop(), 0);
        QVERIFY2(hasAutocapture(events), qPrintable(names(events)));

        int autocaptured = 0;
        for (const QJsonObject& event : events) {
            QCOMPARE(event["stream"].toString(), QString("client"));
            QCOMPARE(event["distinct_id"].toString(), distinctId);
            if (event["name"].toString() != "$autocapture") continue;
            ++autocaptured;
            const QJsonObject properties = event["properties"].toObject();
            QCOMPARE(properties["$event_type"].toString(), QString("click"));
            // elementsChainAsString: the chain as one string (older SDKs: a $elements array).
            const QString chain = properties.contains("$elements_chain")
                                      ? properties["$elements_chain"].toString()
                                      : QJsonDocument(properties["$elements"].toArray()).toJson();
            QVERIFY2(chain.startsWith("button") && chain.contains("buy-button"), qPrintable(chain));
        }
        QVERIFY(autocaptured >= 1);
        QVERIFY2(std::any_of(events.begin(), events.end(),
                             [](const QJsonObject& e) { return e["name"].toString() == "$pageview"; }),
                 qPrintable(names(events)));
    }

    // posthog-node's opt-in Capture V1 transport (POSTHOG_CAPTURE_MODE=v1): /i/v1/analytics/events
    // with the Bearer token and gzip. Every event arrives, with posthog-node's $lib restored from
    // PostHog-Sdk-Info, hence the server stream.
    void posthogNodeCaptureV1() {
        const QString capture = path("capture-v1.pipescope");
        RunProcess run;
        QVERIFY2(run.start({"--port", "0", "--capture", capture}), run.err().constData());
        QProcess sdk;
        QProcessEnvironment environment = QProcessEnvironment::systemEnvironment();
        environment.insert("POSTHOG_CAPTURE_MODE", "v1");
        sdk.setProcessEnvironment(environment);
        sdk.start(m_node, {m_modules + "/send_with_sdks.mjs", "--host", run.url(), "--events", "10",
                           "--token", "phc_v1_e2e"});
        QVERIFY(sdk.waitForFinished(60000));
        const QByteArray sdkErrors = sdk.readAllStandardError();
        QVERIFY2(sdk.exitCode() == 0, sdkErrors.constData());
        QVERIFY2(!sdkErrors.contains("posthog-node error"), sdkErrors.constData()); // no CaptureV1Error
        const QJsonArray sent =
            QJsonDocument::fromJson(sdk.readAllStandardOutput()).object()["posthog"].toArray();
        QCOMPARE(sent.size(), 12); // 10 captures, an identify, an alias
        const auto posthogEvents = [](const QList<QJsonObject>& events) {
            QList<QJsonObject> kept;
            for (const QJsonObject& e : events)
                if (e["origin"].toObject()["source"].toString() == "http:/i/v1/analytics/events") kept << e;
            return kept;
        };
        const QList<QJsonObject> events = waitForEvents(
            capture, [&](const QList<QJsonObject>& all) { return posthogEvents(all).size() >= 12; }, 30000);
        QCOMPARE(run.stop(), 0);
        const QList<QJsonObject> v1 = posthogEvents(events);
        QVERIFY2(v1.size() == 12, qPrintable(names(events)));

        const auto index = byId(v1);
        QMultiHash<QString, QJsonObject> byName;
        for (const QJsonObject& event : v1) {
            byName.insert(event["name"].toString(), event);
            QCOMPARE(event["stream"].toString(), QString("server"));
            QCOMPARE(event["id_source"].toString(), QString("posthog_uuid"));
            QCOMPARE(event["properties"].toObject()["$lib"].toString(), QString("posthog-node"));
        }
        for (const auto& value : sent) {
            const QJsonObject expected = value.toObject();
            if (!expected.contains("uuid")) continue;
            const QJsonObject got = index.value(expected["uuid"].toString());
            QCOMPARE(got["name"].toString(), expected["name"].toString());
            QCOMPARE(got["distinct_id"].toString(), expected["distinct_id"].toString());
        }
        QCOMPARE(byName.count("order_completed"), 10);
        QCOMPARE(byName.count("$identify"), 1);
        QCOMPARE(byName.count("$create_alias"), 1);
        QCOMPARE(byName.value("$create_alias")["distinct_id"].toString(), QString("node-user-0"));
    }

private:
    QString path(const QString& name) const { return m_dir.filePath(name); }
    QTemporaryDir m_dir;
    QString m_node;
    QString m_modules;
};

QTEST_GUILESS_MAIN(TestSdkDefaults)
#include "tst_sdk_defaults.moc"
