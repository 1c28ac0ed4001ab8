// Screenshots of each main view with realistic traffic, saved as PNGs into
// <build>/screenshots/ (QWidget::grab() under QT_QPA_PLATFORM=offscreen) for a person to look at:
// what no assertion catches (clipped text, empty panes, unreadable colours). The demo traffic of
// resources/demo (with its planted problems) is checked into a capture and opened; the live views
// get real posthog-node and analytics-node events.
#include <QApplication>
#include <QDockWidget>
#include <QFrame>
#include <QLineEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTableView>
#include <QTcpServer>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

#include <filesystem>

#include "cli_test_support.h"
#include "main_window.h"
#include "models/event_table_model.h"
#include "pipeline/check.h"
#include "widgets/event_inspector.h"
#include "widgets/filter_bar.h"
#include "widgets/pipeline_strip.h"

using namespace pipescope;
using namespace cli_test;

class TestGuiScreenshots : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QApplication::setOrganizationName("PipescopeTest");
        QApplication::setApplicationName("pipescope-screenshots");
        QSettings().clear();
        QVERIFY(m_dir.isValid());
        m_out = QStringLiteral(PIPESCOPE_BINARY_DIR) + "/screenshots";
        QDir().mkpath(m_out);
        m_capture = m_dir.filePath("demo.pipescope");
        // The demo traffic, plus a browser's retry of its first two requests (duplicates).
        QFile web(PIPESCOPE_SOURCE_DIR "/resources/demo/web-client.ndjson");
        QVERIFY(web.open(QIODevice::ReadOnly));
        const QList<QByteArray> lines = web.readAll().split('\n');
        writeFile(m_dir.filePath("web-client-retry.ndjson"), lines.value(0) + "\n" + lines.value(1) + "\n");
        // Live traffic validates order_completed too (posthog-node and analytics-node send it).
        std::filesystem::copy(PIPESCOPE_SOURCE_DIR "/resources/schemas", m_dir.filePath("schemas").toStdString(),
                              std::filesystem::copy_options::recursive);
        writeFile(m_dir.filePath("schemas/order_completed/1.json"),
                  "{\"type\": \"object\", \"required\": [\"amount\", \"currency\"], \"properties\": {"
                  "\"amount\": {\"type\": \"number\", \"minimum\": 12}, \"currency\": {\"enum\": [\"EUR\", \"USD\"]}}}");
        CheckOptions options;
        options.inputs = {PIPESCOPE_SOURCE_DIR "/resources/demo/web-client.ndjson",
                          PIPESCOPE_SOURCE_DIR "/resources/demo/backend-server.ndjson.gz",
                          m_dir.filePath("web-client-retry.ndjson").toStdString()};
        options.schemasDir = PIPESCOPE_SOURCE_DIR "/resources/schemas";
        options.capturePath = m_capture.toStdString();
        runCheck(options);
    }

    void capturedViews() {
        MainWindow window;
        window.resize(1500, 900);
        window.show();
        QVERIFY(window.openCapture(m_capture));
        QTest::qWait(300); // the summary (identity issues, destinations) arrives from its worker
        save(window, "01-capture-overview");

        // An invalid event: the JSON tree with its failures, then each inspector tab.
        QVERIFY(window.selectSeq(7));
        window.inspector()->tabs()->setCurrentIndex(EventInspector::EventTab);
        save(window, "02-inspector-json-failure");
        window.inspector()->tabs()->setCurrentIndex(EventInspector::FailuresTab);
        save(window.inspector(), "03-inspector-failures");
        window.inspector()->tabs()->setCurrentIndex(EventInspector::RawTab);
        save(window.inspector(), "04-inspector-raw");
        window.inspector()->tabs()->setCurrentIndex(EventInspector::LineageTab);
        save(window.inspector(), "05-inspector-lineage");

        // A duplicate and its dedup details.
        qint64 duplicate = 0;
        for (int row = 0; row < window.eventModel()->rowCount() && !duplicate; ++row)
            if (window.eventModel()->index(row, EventTableModel::VerdictColumn).data().toString() == "duplicate")
                duplicate = window.eventModel()->seqAt(row);
        QVERIFY(duplicate);
        QVERIFY(window.selectSeq(duplicate));
        window.inspector()->tabs()->setCurrentIndex(EventInspector::DedupTab);
        save(window.inspector(), "06-inspector-dedup");

        // The strip's "validate" as a filter.
        QSignalSpy scanned(&window, &MainWindow::filterScanned);
        QTest::mouseClick(window.strip()->button(PipelineStrip::Stage::Validate), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(scanned.count(), 1, 20000);
        window.inspector()->tabs()->setCurrentIndex(EventInspector::EventTab);
        save(window, "07-filtered-invalid");

        // A filter being typed with an error.
        window.filterBar()->edit()->setText("event == \"payment_completed\" && verdict = invalid");
        window.filterBar()->check();
        save(window.filterBar(), "08-filter-bar-error");
        window.close();
    }

    void liveViews() {
        QString node, modules;
        const QString error = installE2eNode(node, modules);
        QVERIFY2(error.isEmpty(), qPrintable(error));
        MainWindow window;
        window.resize(1500, 900);
        window.show();
        RunConfig config = MainWindow::defaultConfig();
        config.collector.port = 0;
        config.schemasDir = m_dir.filePath("schemas").toStdString();
        QVERIFY(window.startLive(config));
        save(window, "09-live-empty-send-events-here");

        QProcess sdk;
        sdk.start(node, {modules + "/send_with_sdks.mjs", "--host", window.collectorUrl(), "--events", "60"});
        QVERIFY(sdk.waitForStarted(10000));
        QTRY_VERIFY_WITH_TIMEOUT(sdk.state() == QProcess::NotRunning, 60000);
        QTRY_COMPARE_WITH_TIMEOUT(window.eventModel()->rowCount(), 125, 30000);
        QTest::qWait(1200); // a snapshot or two more: the rates settle
        save(window, "10-live-traffic");
        window.close();

        QTcpServer squatter;
        QVERIFY(squatter.listen(QHostAddress::LocalHost, 0));
        MainWindow blocked;
        blocked.resize(1500, 900);
        blocked.show();
        config.collector.port = squatter.serverPort();
        QVERIFY(!blocked.startLive(config));
        save(blocked, "11-port-taken");
    }

private:
    void save(QWidget& widget, const QString& name) { save(&widget, name); }
    void save(QWidget* widget, const QString& name) {
        QApplication::processEvents();
        QTest::qWait(50);
        const QPixmap pixmap = widget->grab();
        QVERIFY(!pixmap.isNull());
        const QString path = m_out + "/" + name + ".png";
        QVERIFY2(pixmap.save(path), qPrintable(path));
        qInfo("saved %s (%dx%d)", qPrintable(path), pixmap.width(), pixmap.height());
    }

    QTemporaryDir m_dir;
    QString m_out, m_capture;
};

QTEST_MAIN(TestGuiScreenshots)
#include "tst_gui_screenshots.moc"
