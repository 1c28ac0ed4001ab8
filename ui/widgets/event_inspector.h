#pragma once
// The event inspector: everything about the selected event. The event as a JSON tree (schema
// failures highlighted at their JSON Pointers with keyword and message) and as its raw bytes;
// the failures; dedup details (key and its source, the first occurrence — a click jumps to it —,
// the gap, the differing fields); delivery attempts per destination; its lineage (origin → each
// stage → deliveries); and "Follow this person".

#include <QWidget>

#include <optional>

#include "store/capture_store.h"

class QLabel;
class QPlainTextEdit;
class QPushButton;
class QTabWidget;
class QTreeView;
class QTreeWidget;
class QTextBrowser;

namespace pipescope {

class JsonTreeModel;

class EventInspector : public QWidget {
    Q_OBJECT

public:
    enum Tab { EventTab, FailuresTab, RawTab, DedupTab, DeliveriesTab, LineageTab };

    explicit EventInspector(QWidget* parent = nullptr);
    ~EventInspector() override;

    // Shows event `seq` of `reader` (nullptr or seq 0: nothing). `destinations` names the
    // run's destinations, for their dead letters.
    void showEvent(const CaptureReader* reader, std::int64_t seq, const std::vector<std::string>& destinations = {});
    void clear();
    std::int64_t seq() const { return m_event ? m_event->seq : 0; }
    const std::optional<StoredEvent>& event() const { return m_event; }

    JsonTreeModel* jsonModel() const { return m_jsonModel; }
    QTreeView* jsonView() const { return m_jsonView; }
    QTreeWidget* failuresView() const { return m_failures; }
    QTabWidget* tabs() const { return m_tabs; }
    QLabel* failureSummary() const { return m_failureSummary; }
    QPlainTextEdit* rawView() const { return m_raw; }
    QTextBrowser* dedupView() const { return m_dedup; }
    QTreeWidget* deliveriesView() const { return m_deliveries; }

signals:
    void followPerson(const QString& distinctId);
    void jumpToSeq(qint64 seq);

private:
    void showFailure(const QString& pointer);

    QLabel* m_title;
    QLabel* m_failureSummary;
    QPushButton* m_follow;
    QTabWidget* m_tabs;
    JsonTreeModel* m_jsonModel;
    QTreeView* m_jsonView;
    QTreeWidget* m_failures;
    QPlainTextEdit* m_raw;
    QPlainTextEdit* m_hex;
    QTextBrowser* m_dedup;
    QTreeWidget* m_deliveries;
    QTextBrowser* m_lineage;
    std::optional<StoredEvent> m_event;
};

} // namespace pipescope
