// The main window as a user meets it: started on its embedded default (a live RunEngine in
// process, a capture in the user's data folder), real posthog-node and Segment analytics-node
// events sent to it, seen in the table with their verdicts; a planted schema failure shown by the
// inspector at its JSON Pointer; the strip's stages and "follow this person" as filters; the
// live tail; a port that is taken; a capture opened read-only; Save As while live.
#include <QAbstractItemModelTester>
#include <QApplication>
#include <QDockWidget>
#include <QFrame>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSignalSpy>
#include <QTableView>
#include <QTcpServer>
#include <QTemporaryDir>
#include <QToolButton>
#include <QTreeView>
#include <QTreeWidget>
#include <QtTest>

#include "cli_test_support.h"
#include "capture_file_ops.h"
#include "main_window.h"
#include "models/event_table_model.h"
#include "models/json_tree_model.h"
#include "pipeline/check.h"
#include "widgets/event_inspector.h"
#include "widgets/filter_bar.h"
#include <QLineEdit>
#include "widgets/pipeline_strip.h"
#include "widgets/send_events_panel.h"
#include "widgets/settings_dialog.h"
#include <QSpinBox>

using namespace pipescope;
using namespace cli_test;

namespace {
// order_completed needs an amount of at least 12 and a known currency: posthog-node sends
// amounts 10..29 (2 below), analytics-node 0..19 (12 below).
constexpr const char* kOrderSchema =
    "{\"type\": \"object\", \"required\": [\"amount\", \"currency\"], \"properties\": {"
    "\"amount\": {\"type\": \"number\", \"minimum\": 12}, \"currency\": {\"enum\": [\"EUR\", \"USD\"]}}}";

QMap<QString, int> verdictsOf(const EventTableModel& model) {
    QMap<QString, int> counts;
    for (int row = 0; row < model.rowCount(); ++row)
        ++counts[model.index(row, EventTableModel::VerdictColumn).data().toString()];
    return counts;
}
} // namespace

class TestGuiWindow : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QApplication::setOrganizationName("PipescopeTest");
        QApplication::setApplicationName("pipescope-gui-test");
        QVERIFY(m_dir.isValid());
        // A clean data folder and settings for this run.
        QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).removeRecursively();
        QSettings().clear();
        writeFile(m_dir.filePath("schemas/order_completed/1.json"), kOrderSchema);
    }

    void startsOnItsDefaultAndShowsSdkEvents() {
        const QString error = installE2eNode(m_node, m_modules);
        QVERIFY2(error.isEmpty(), qPrintable(error));

        MainWindow window;
        window.show();
        RunConfig config = MainWindow::defaultConfig();
        // The embedded default: loopback, port 8089, a new capture in the data folder.
        QCOMPARE(QString::fromStdString(config.collector.bindAddress), QString("127.0.0.1"));
        QCOMPARE(int(config.collector.port), 8089);
        const QString dataDir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
        QVERIFY2(QString::fromStdString(config.capturePath.string()).startsWith(dataDir),
                 qPrintable(QString::fromStdString(config.capturePath.string())));
        config.collector.port = 0; // any free port: tests run side by side
        config.schemasDir = m_dir.filePath("schemas").toStdString();
        QVERIFY2(window.startLive(config), qPrintable(window.lastError()));
        QVERIFY(window.isLive());
        QVERIFY(window.collectorUrl().startsWith("http://127.0.0.1:"));
        QVERIFY(!window.portBanner()->isVisible());
        QCOMPARE(window.sendPanel()->url(), window.collectorUrl());
        QVERIFY(window.sendPanel()->currentSnippet().contains(window.collectorUrl()));
        for (int s = 0; s < SendEventsPanel::SnippetCount; ++s)
            QVERIFY(SendEventsPanel::snippet(SendEventsPanel::Snippet(s), window.collectorUrl()).contains(window.collectorUrl()));
        QCOMPARE(window.eventModel()->rowCount(), 0);
        QAbstractItemModelTester tester(window.eventModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);

        // Real SDKs, from a process of their own, while the window keeps running.
        QProcess sdk;
        sdk.setWorkingDirectory(m_modules);
        sdk.start(m_node, {m_modules + "/send_with_sdks.mjs", "--host", window.collectorUrl(), "--events", "20"});
        QVERIFY(sdk.waitForStarted(10000));
        QTRY_VERIFY_WITH_TIMEOUT(sdk.state() == QProcess::NotRunning, 60000);
        QVERIFY2(sdk.exitCode() == 0, sdk.readAllStandardError().constData());
        // 20 captures + identify + alias (posthog-node), 20 tracks + identify + page + alias (Segment).
        QTRY_COMPARE_WITH_TIMEOUT(window.eventModel()->rowCount(), 45, 30000);
        const QMap<QString, int> verdicts = verdictsOf(*window.eventModel());
        QCOMPARE(verdicts.value("invalid"), 14);
        QCOMPARE(verdicts.value("unplanned"), 5); // $identify, $create_alias, $pageview: no schemas
        QCOMPARE(verdicts.value("valid"), 26);
        QCOMPARE(verdicts.value("duplicate"), 0);
        // The strip says the same, from the engine's snapshots.
        QTRY_VERIFY_WITH_TIMEOUT(window.strip()->counts().invalid == 14, 5000);
        QVERIFY(window.strip()->button(PipelineStrip::Stage::Validate)->text().contains("✗ 14"));
        QCOMPARE(window.strip()->counts().events, 45u);
        // Following the tail: the view is at the bottom.
        QVERIFY(window.isFollowingTail());
        QScrollBar* bar = window.eventView()->verticalScrollBar();
        QTRY_COMPARE(bar->value(), bar->maximum());

        // The planted failure: posthog-node's first order (amount 10) at /amount.
        int invalidRow = -1;
        for (int row = 0; row < window.eventModel()->rowCount() && invalidRow < 0; ++row) {
            const auto name = window.eventModel()->index(row, EventTableModel::NameColumn).data().toString();
            const auto id = window.eventModel()->index(row, EventTableModel::DistinctIdColumn).data().toString();
            const auto verdict = window.eventModel()->index(row, EventTableModel::VerdictColumn).data().toString();
            if (name == "order_completed" && id.startsWith("node-user-") && verdict == "invalid") invalidRow = row;
        }
        QVERIFY(invalidRow >= 0);
        window.eventView()->setCurrentIndex(window.eventModel()->index(invalidRow, 0));
        EventInspector* inspector = window.inspector();
        QCOMPARE(inspector->seq(), window.eventModel()->seqAt(invalidRow));
        QVERIFY(!window.isFollowingTail() || bar->maximum() == 0); // selecting does not yank the view
        const QModelIndex amount = inspector->jsonModel()->indexOfPointer("/properties/amount");
        QVERIFY(amount.isValid());
        QVERIFY2(amount.data(JsonTreeModel::FailureRole).toString().startsWith("minimum: "),
                 qPrintable(amount.data(JsonTreeModel::FailureRole).toString()));
        QVERIFY(inspector->jsonView()->isExpanded(amount.parent()));
        QCOMPARE(inspector->failuresView()->topLevelItemCount(), 1);
        QCOMPARE(inspector->failuresView()->topLevelItem(0)->text(0), QString("/amount"));
        QCOMPARE(inspector->failuresView()->topLevelItem(0)->text(1), QString("minimum"));
        QVERIFY(inspector->rawView()->toPlainText().contains("order_completed"));

        // The tail: scrolled up it stops following, End resumes.
        window.eventView()->setFocus();
        bar->setValue(0);
        if (bar->maximum() > 0) {
            QVERIFY(!window.isFollowingTail());
            QTest::keyClick(window.eventView(), Qt::Key_End);
            QVERIFY(window.isFollowingTail());
            QCOMPARE(bar->value(), bar->maximum());
        }

        // Clicking "validate" filters to what it failed.
        QSignalSpy scanned(&window, &MainWindow::filterScanned);
        QTest::mouseClick(window.strip()->button(PipelineStrip::Stage::Validate), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(scanned.count(), 1, 20000);
        QVERIFY(window.isFiltering());
        QCOMPARE(window.eventModel()->rowCount(), 14);
        QCOMPARE(verdictsOf(*window.eventModel()).value("invalid"), 14);
        // "source" shows everything again.
        QTest::mouseClick(window.strip()->button(PipelineStrip::Stage::Source), Qt::LeftButton);
        QVERIFY(!window.isFiltering());
        QCOMPARE(window.eventModel()->rowCount(), 45);

        // The filter bar: checked as you type, red with the error's column; a property filter
        // runs off the UI thread and follows the live capture.
        FilterBar* bar2 = window.filterBar();
        bar2->edit()->setFocus();
        bar2->edit()->clear();
        QTest::keyClicks(bar2->edit(), "verdict = invalid");
        QVERIFY(!bar2->isValid());
        QCOMPARE(bar2->errorColumn(), 9);
        QVERIFY2(bar2->edit()->styleSheet().contains("#fde6e8"), qPrintable(bar2->edit()->styleSheet()));
        QVERIFY(!bar2->message().isEmpty());
        QVERIFY(!window.applyFilterText(bar2->text()));
        QVERIFY(!window.isFiltering());
        bar2->edit()->clear();
        QTest::keyClicks(bar2->edit(), "properties.amount < 12 && event == \"order_completed\"");
        QVERIFY2(bar2->isValid(), qPrintable(bar2->message()));
        QVERIFY(bar2->completions().contains("distinct_id"));
        QVERIFY(bar2->completions().contains("\"order_completed\""));
        scanned.clear();
        QTest::keyClick(bar2->edit(), Qt::Key_Return);
        QTRY_COMPARE_WITH_TIMEOUT(scanned.count(), 1, 20000);
        QCOMPARE(window.eventModel()->rowCount(), 14);
        QCOMPARE(verdictsOf(*window.eventModel()).value("invalid"), 14);
        QCOMPARE(bar2->history().value(0), QString("properties.amount < 12 && event == \"order_completed\""));
        window.clearFilter();
        QCOMPARE(window.eventModel()->rowCount(), 45);

        // Follow this person: node-user-0 and the alias it took (legacy-42).
        int personRow = -1;
        for (int row = 0; row < 45 && personRow < 0; ++row)
            if (window.eventModel()->index(row, EventTableModel::DistinctIdColumn).data().toString() == "node-user-0")
                personRow = row;
        QVERIFY(personRow >= 0);
        window.eventView()->setCurrentIndex(window.eventModel()->index(personRow, 0));
        auto* follow = inspector->findChild<QPushButton*>();
        QVERIFY(follow && follow->text() == "Follow this person");
        scanned.clear();
        follow->click();
        QTRY_COMPARE_WITH_TIMEOUT(scanned.count(), 1, 20000);
        // 4 captures (i % 5 == 0), the identify and the alias.
        QCOMPARE(window.eventModel()->rowCount(), 6);
        for (int row = 0; row < 6; ++row)
            QCOMPARE(window.eventModel()->index(row, EventTableModel::DistinctIdColumn).data().toString(), QString("node-user-0"));
        window.clearFilter();

        // Save As while live: a consistent copy, readable on its own.
        const QString copy = m_dir.filePath("copy.pipescope");
        std::atomic<bool> cancelled{false};
        QCOMPARE(QString::fromStdString(backupCapture(window.capturePath().toStdString(), copy.toStdString(), {}, cancelled)),
                 QString());
        QCOMPARE(CaptureReader(copy.toStdString()).verdictCounts().total(), 45);

        // Closing stops the engine cleanly; the capture stays where the data folder is.
        const QString capture = window.capturePath();
        window.close();
        QVERIFY(!window.isLive());
        QCOMPARE(CaptureReader(capture.toStdString()).verdictCounts().invalid, 14);
    }

    void portTakenIsSaidWithAnotherOffered() {
        QTcpServer squatter;
        QVERIFY(squatter.listen(QHostAddress::LocalHost, 0));
        MainWindow window;
        window.show();
        RunConfig config = MainWindow::defaultConfig();
        config.collector.port = squatter.serverPort();
        QVERIFY(!window.startLive(config));
        QVERIFY(!window.isLive());
        QVERIFY(window.portBanner()->isVisible());
        const QString text = window.portBanner()->findChild<QLabel*>()->text();
        QVERIFY2(text.contains(QString::number(squatter.serverPort())), qPrintable(text));
        QPushButton* any = nullptr;
        for (auto* button : window.portBanner()->findChildren<QPushButton*>())
            if (button->text() == "Any free port") any = button;
        QVERIFY(any);
        QSignalSpy started(&window, &MainWindow::liveStarted);
        any->click();
        QTRY_COMPARE_WITH_TIMEOUT(started.count(), 1, 10000);
        QVERIFY(window.isLive());
        QVERIFY(!window.portBanner()->isVisible());
        QVERIFY(!window.collectorUrl().endsWith(":" + QString::number(squatter.serverPort())));
        window.close();
    }

    void opensACaptureReadOnly() {
        const QString capture = m_dir.filePath("demo.pipescope");
        CheckOptions options;
        options.inputs = {PIPESCOPE_SOURCE_DIR "/resources/demo/web-client.ndjson",
                          PIPESCOPE_SOURCE_DIR "/resources/demo/backend-server.ndjson.gz"};
        options.schemasDir = PIPESCOPE_SOURCE_DIR "/resources/schemas";
        options.capturePath = capture.toStdString();
        const RunReport report = runCheck(options);
        QVERIFY(report.invalid > 0);

        MainWindow window;
        window.show();
        QVERIFY(window.openCapture(capture));
        QVERIFY(!window.isLive());
        QVERIFY(window.collectorUrl().isEmpty());
        QCOMPARE(window.sendPanel()->url(), QString());
        const VerdictCounts stored = CaptureReader(capture.toStdString()).verdictCounts();
        QVERIFY(stored.total() > 20);
        QCOMPARE(window.eventModel()->rowCount(), int(stored.total()));
        QCOMPARE(window.strip()->counts().invalid, report.invalid);
        QCOMPARE(window.windowTitle(), QString("demo.pipescope (read-only) — Pipescope"));
        // Seq 7: payment_completed with amount "49.90", a string.
        QVERIFY(window.selectSeq(7));
        const QModelIndex amount = window.inspector()->jsonModel()->indexOfPointer("/properties/amount");
        QVERIFY(amount.isValid());
        QCOMPARE(amount.data(JsonTreeModel::FailureRole).toString(), QString("type: expected number, got string"));
        // A file that is not a capture says so, in the window.
        writeFile(m_dir.filePath("not-a-capture.pipescope"), "hello");
        QVERIFY(!window.openCapture(m_dir.filePath("not-a-capture.pipescope")));
        QVERIFY(window.portBanner()->isVisible());
        QVERIFY2(window.lastError().contains("not a Pipescope capture"), qPrintable(window.lastError()));
    }

    void settingsAreCheckedByTheConfigParser() {
        const QString file = m_dir.filePath("settings/pipescope.json");
        SettingsDialog dialog(file);
        QCOMPARE(dialog.portField()->value(), 8089);
        // A window the parser refuses: its message names the field, and the field is marked.
        dialog.dedupWindowField()->setText("forever");
        const QString error = dialog.check();
        QVERIFY2(error.startsWith("dedup.window"), qPrintable(error));
        QVERIFY(dialog.dedupWindowField()->styleSheet().contains("border"));
        QVERIFY(!dialog.save());
        QVERIFY(!QFileInfo::exists(file));
        // Destinations that are not JSON say where.
        dialog.dedupWindowField()->setText("30m");
        dialog.destinationsField()->setPlainText("[{\"name\": \"archive\", ");
        QVERIFY2(dialog.check().startsWith("destinations: not JSON"), qPrintable(dialog.errorLabel()->text()));
        // A destination the parser refuses.
        dialog.destinationsField()->setPlainText("[{\"name\": \"archive\", \"type\": \"carrier-pigeon\"}]");
        QVERIFY2(dialog.check().startsWith("destinations"), qPrintable(dialog.errorLabel()->text()));
        QVERIFY(dialog.destinationsField()->styleSheet().contains("border"));
        // A good one is saved and reads back through loadRunConfig, as `run --config` reads it.
        dialog.destinationsField()->setPlainText(
            "[{\"name\": \"archive\", \"type\": \"ndjson\", \"path\": \"archive.ndjson\"}]");
        dialog.portField()->setValue(9099);
        QVERIFY2(dialog.check().isEmpty(), qPrintable(dialog.errorLabel()->text()));
        QVERIFY(dialog.save());
        const RunConfig config = loadRunConfig(file.toStdString());
        QCOMPARE(int(config.collector.port), 9099);
        QCOMPARE(config.pipeline.dedupOptions.windowMillis, std::int64_t(30 * 60 * 1000));
        QCOMPARE(config.destinations.size(), std::size_t(1));
        QCOMPARE(QString::fromStdString(config.destinations[0].name), QString("archive"));
        // Reopened, the form shows what was saved.
        SettingsDialog again(file);
        QCOMPARE(again.portField()->value(), 9099);
        QCOMPARE(again.dedupWindowField()->text(), QString("30m"));
    }

private:
    QTemporaryDir m_dir;
    QString m_node, m_modules;
};

QTEST_MAIN(TestGuiWindow)
#include "tst_gui_window.moc"
