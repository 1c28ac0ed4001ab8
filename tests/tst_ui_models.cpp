// Qt models over a real capture file, checked by QAbstractItemModelTester.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include "event_table_model.h"
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
        QCOMPARE(model.index(2, EventTableModel::OriginColumn).data().toString(), QString("client.ndjson:3#2"));
        QCOMPARE(model.index(0, EventTableModel::TimeColumn).data().toString(), QString("2025-11-20T10:00:00.001Z"));
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
};

QTEST_GUILESS_MAIN(TestUiModels)
#include "tst_ui_models.moc"
