// Qt models over a real capture file, checked by QAbstractItemModelTester.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include "models/event_filter_runner.h"
#include "models/event_predicates.h"
#include "models/event_table_model.h"
#include "models/json_tree_model.h"
#include <nlohmann/json.hpp>
#include "store/capture_store.h"

using namespace pipescope;

namespace {
StoredEvent storedEvent(std::int64_t seq, Verdict verdict) {
    StoredEvent e;
    e.seq = seq;
    e.name = seq % 2 ? "signup" : "purchase";
    e.distinctId = "user-" + std::to_string(seq % 7);
    e.stream = "client";
    e.format = "posthog";
    e.timestamp = 1763632800000 + seq; // 2025-11-20T10:00:00Z + seq ms
    e.originSource = "client.ndjson";
    e.originLine = static_cast<std::uint64_t>(seq);
    e.originIndex = seq % 3 == 0 ? 2 : -1;
    e.verdict = verdict;
    e.raw = "{\"n\":" + std::to_string(seq) + "}";
    return e;
}
} // namespace

class TestUiModels : public QObject {
    Q_OBJECT

private slots:
    void eventTableWindowsOverTheCapture() {
        QTemporaryDir dir;
        const QString path = dir.filePath("run.pipescope");
        CaptureWriter writer(path.toStdString());
        const int total = EventTableModel::kPageRows * 3 + 17;
        for (int i = 1; i <= total; ++i) writer.append(storedEvent(i, i % 50 == 0 ? Verdict::Invalid : Verdict::Valid));
        writer.flush();

        EventTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.open(path);
        QCOMPARE(model.rowCount(), total);
        QCOMPARE(model.columnCount(), int(EventTableModel::ColumnCount));
        QCOMPARE(model.index(0, EventTableModel::SeqColumn).data().toLongLong(), 1);
        QCOMPARE(model.index(299, EventTableModel::NameColumn).data().toString(), QString("purchase"));
        QCOMPARE(model.index(49, EventTableModel::VerdictColumn).data().toString(), QString("invalid"));
        QCOMPARE(model.index(2, EventTableModel::OriginColumn).data().toString(), QString("client.ndjson:3[2]"));
        QCOMPARE(model.index(0, EventTableModel::TimeColumn).data().toString(), QString("2025-11-20 10:00:00.001"));
        QCOMPARE(model.index(total - 1, 0).data(EventTableModel::RawRole).toByteArray(),
                 QByteArray("{\"n\":") + QByteArray::number(total) + "}");

        // Rows appended while the model is open arrive in one insert.
        QSignalSpy inserted(&model, &QAbstractItemModel::rowsInserted);
        for (int i = total + 1; i <= total + 40; ++i) writer.append(storedEvent(i, Verdict::Duplicate));
        writer.flush();
        model.refresh();
        QCOMPARE(inserted.count(), 1);
        QCOMPARE(inserted.first().at(1).toInt(), total);
        QCOMPARE(inserted.first().at(2).toInt(), total + 39);
        QCOMPARE(model.index(total + 39, EventTableModel::VerdictColumn).data().toString(), QString("duplicate"));
        // The partial last page was re-read, not served stale.
        QCOMPARE(model.index(total, EventTableModel::SeqColumn).data().toLongLong(), total + 1);
        writer.close();
        model.close();
        QCOMPARE(model.rowCount(), 0);
    }

    void filteredViewHoldsOnlyTheMatches() {
        QTemporaryDir dir;
        const QString path = dir.filePath("run.pipescope");
        const int total = 3000;
        {
            CaptureWriter writer(path.toStdString());
            for (int i = 1; i <= total; ++i)
                writer.append(storedEvent(i, i % 7 == 0 ? Verdict::Invalid : i % 11 == 0 ? Verdict::Duplicate : Verdict::Valid));
            writer.flush();
        }
        EventTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.open(path);
        QCOMPARE(model.rowCount(), total);

        // The runner scans on its worker thread and reports matches in batches.
        EventFilterRunner runner;
        QObject::connect(&runner, &EventFilterRunner::matched, &model, [&](const QVector<qint64>& seqs) {
            model.appendMatches(std::vector<std::int64_t>(seqs.begin(), seqs.end()));
        });
        QSignalSpy scanned(&runner, &EventFilterRunner::scanned);
        QSignalSpy inserted(&model, &QAbstractItemModel::rowsInserted);
        model.showFiltered();
        QCOMPARE(model.rowCount(), 0);
        runner.start(path, verdictFilter({Verdict::Invalid}).factory, false);
        QTRY_COMPARE_WITH_TIMEOUT(scanned.count(), 1, 20000);
        const int expected = total / 7;
        QCOMPARE(scanned.first().at(0).toLongLong(), qint64(expected));
        QCOMPARE(model.rowCount(), expected);
        // Batched: far fewer inserts than rows.
        QVERIFY2(inserted.count() < expected / 10, qPrintable(QString::number(inserted.count())));
        for (int row : {0, 1, expected / 2, expected - 1}) {
            QCOMPARE(model.seqAt(row), qint64(7 * (row + 1)));
            QCOMPARE(model.index(row, EventTableModel::SeqColumn).data().toLongLong(), qlonglong(7 * (row + 1)));
            QCOMPARE(model.index(row, EventTableModel::VerdictColumn).data().toString(), QString("invalid"));
        }
        QCOMPARE(model.rowOfSeq(14), 1);
        QCOMPARE(model.rowOfSeq(15), -1);
        // Matches already shown are not inserted twice.
        QCOMPARE(model.appendMatches({7, 14}), 0);

        // A cancelled scan reports nothing more.
        model.showFiltered();
        runner.start(path, verdictFilter({Verdict::Duplicate}).factory, false);
        runner.cancel();
        QTest::qWait(300);
        QCOMPARE(model.rowCount(), 0);

        model.showAll();
        QCOMPARE(model.rowCount(), total);
        QCOMPARE(model.index(total - 1, EventTableModel::SeqColumn).data().toLongLong(), qlonglong(total));
    }

    void filterRunnerFollowsALiveCapture() {
        QTemporaryDir dir;
        const QString path = dir.filePath("live.pipescope");
        CaptureWriter writer(path.toStdString());
        for (int i = 1; i <= 100; ++i) writer.append(storedEvent(i, i % 10 == 0 ? Verdict::Invalid : Verdict::Valid));
        writer.flush();
        EventFilterRunner runner;
        QVector<qint64> seen;
        QObject::connect(&runner, &EventFilterRunner::matched, [&](const QVector<qint64>& seqs) { seen += seqs; });
        runner.start(path, verdictFilter({Verdict::Invalid}).factory, true);
        QTRY_COMPARE_WITH_TIMEOUT(seen.size(), 10, 10000);
        for (int i = 101; i <= 200; ++i) writer.append(storedEvent(i, i % 10 == 0 ? Verdict::Invalid : Verdict::Valid));
        writer.flush();
        QTRY_COMPARE_WITH_TIMEOUT(seen.size(), 20, 10000);
        QCOMPARE(seen.last(), qint64(200));
        runner.cancel();
        writer.close();
    }

    void jsonTreePlacesFailuresAtTheirPointers() {
        JsonTreeModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        const auto document = nlohmann::ordered_json::parse(R"({"event": "payment_completed", "properties":
            {"amount": "49.90", "currency": "EUR", "items": [{"sku": "", "quantity": 1}, {"sku": "a/b", "quantity": 0}],
             "a/b~c": true}})");
        model.setDocument(document,
                          {{"/amount", "type", "expected number, got string"},
                           {"/items/1/quantity", "minimum", "must be >= 1, is 0"},
                           {"/a~1b~0c", "const", "odd key"},
                           {"/missing/deeper", "type", "nowhere"}},
                          "/properties");
        QCOMPARE(model.rowCount(), 2);
        const QModelIndex amount = model.indexOfPointer("/properties/amount");
        QVERIFY(amount.isValid());
        QCOMPARE(amount.data().toString(), QString("amount"));
        QCOMPARE(amount.data(JsonTreeModel::FailureRole).toString(), QString("type: expected number, got string"));
        QVERIFY(model.index(amount.row(), JsonTreeModel::ValueColumn, amount.parent()).data().toString().contains("\"49.90\""));
        const QModelIndex quantity = model.indexOfPointer("/properties/items/1/quantity");
        QVERIFY(quantity.isValid());
        QCOMPARE(quantity.data(JsonTreeModel::FailureRole).toString(), QString("minimum: must be >= 1, is 0"));
        // Every ancestor says something inside failed; a sibling does not.
        QVERIFY(quantity.parent().data(JsonTreeModel::ContainsFailureRole).toBool());
        QVERIFY(model.indexOfPointer("/properties/items").data(JsonTreeModel::ContainsFailureRole).toBool());
        QVERIFY(!model.indexOfPointer("/properties/items/0").data(JsonTreeModel::ContainsFailureRole).toBool());
        QVERIFY(model.indexOfPointer("/properties/currency").data(JsonTreeModel::FailureRole).toString().isEmpty());
        // RFC 6901 escapes.
        QVERIFY(!model.indexOfPointer("/properties/a~1b~0c").data(JsonTreeModel::FailureRole).toString().isEmpty());
        QCOMPARE(model.unplacedFailures(), 1);
        model.clear();
        QCOMPARE(model.rowCount(), 0);
    }
};

QTEST_MAIN(TestUiModels)
#include "tst_ui_models.moc"
