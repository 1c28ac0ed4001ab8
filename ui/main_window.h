#pragma once
// The main window: the pipeline strip, the filter bar, the event table with its live tail, the
// inspector and the "Send events here" panel, over either a live pipeline (the same RunEngine
// as `pipescope-cli run`, in-process) or a capture opened read-only from a file.

#include <QMainWindow>
#include <QPointer>
#include <QString>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include "pipeline/run.h"
#include "widgets/pipeline_strip.h"

class QAction;
class QDockWidget;
class QFrame;
class QLabel;
class QMenu;
class QProgressBar;
class QPushButton;
class QTableView;
class QToolButton;

namespace pipescope {

class EngineBridge;
class EventFilterRunner;
class EventInspector;
class EventTableModel;
class FilterBar;
class SendEventsPanel;
struct EngineSnapshot;
struct NamedFilter;

class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override; // stops a live engine

    // The embedded default: collector on 127.0.0.1:8089 (or `port`), a new capture in the
    // user's data folder, schemas from the last used folder.
    static RunConfig defaultConfig();
    // The settings the window saves (File › Settings) and starts from: pipescope.json in the
    // user's data folder.
    static QString settingsFile();
    // Starts a live pipeline. When the collector cannot bind its port the window says so and
    // offers another; returns false then (and on any other error, shown in the window).
    bool startLive(RunConfig config);
    // Opens a capture read-only (no collector); false with the error shown when it cannot.
    bool openCapture(const QString& path);
    void stopLive();

    bool isLive() const { return m_engine != nullptr; }
    RunEngine* engine() const { return m_engine.get(); }
    QString collectorUrl() const { return m_url; }
    QString capturePath() const;
    QString lastError() const { return m_lastError; }

    // Filters the table (on a worker thread) to what `filter` matches; clearFilter() shows all.
    void applyFilter(const NamedFilter& filter);
    // Applies a filter-language expression; false (the error shown in the bar) when it does not parse.
    bool applyFilterText(const QString& text);
    void clearFilter();
    bool isFiltering() const;
    bool isFollowingTail() const { return m_followTail; }
    void setFollowTail(bool follow);
    // Selects the row of `seq` (clearing a filter that hides it) and shows it in the inspector.
    bool selectSeq(qint64 seq);

    EventTableModel* eventModel() const { return m_model; }
    QTableView* eventView() const { return m_table; }
    EventInspector* inspector() const { return m_inspector; }
    PipelineStrip* strip() const { return m_strip; }
    SendEventsPanel* sendPanel() const { return m_sendPanel; }
    QDockWidget* sendDock() const { return m_sendDock; }
    QDockWidget* inspectorDock() const { return m_inspectorDock; }
    QFrame* portBanner() const { return m_banner; }
    FilterBar* filterBar() const { return m_filterBar; }

signals:
    // A filter's initial scan is done (a live filter goes on following).
    void filterScanned(qint64 matches);
    void liveStarted(const QString& url);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void buildActions();
    void buildLayout();
    void onSnapshot(const EngineSnapshot& snapshot);
    void onStageClicked(PipelineStrip::Stage stage, const QString& destination);
    void onCurrentRowChanged();
    void showPortProblem(const RunConfig& config, const QString& error);
    void showError(const QString& title, const QString& message);
    void loadFileSummary();
    void updateStatus();
    void updateTitle();
    void rememberRecent(const QString& path);
    void rebuildRecentMenu();
    void saveLayout();
    void restoreLayout();
    void openFileDialog();
    void saveAsDialog();
    void exportDialog();
    void newLiveCapture();
    void chooseSchemasFolder();
    void editSettings();
    void showFilterHelp();
    std::vector<std::string> destinationNames() const;

    std::unique_ptr<RunEngine> m_engine;
    std::optional<RunConfig> m_liveConfig; // what the engine was started with
    EngineBridge* m_bridge;
    EventFilterRunner* m_filterRunner;
    EventTableModel* m_model;
    QTableView* m_table;
    EventInspector* m_inspector;
    PipelineStrip* m_strip;
    SendEventsPanel* m_sendPanel;
    FilterBar* m_filterBar;
    QDockWidget* m_sendDock;
    QDockWidget* m_inspectorDock;
    QFrame* m_banner;
    QLabel* m_bannerText;
    QPushButton* m_bannerOther;
    QPushButton* m_bannerAny;
    QPushButton* m_bannerRetry;
    QLabel* m_statusListening;
    QLabel* m_statusCapture;
    QLabel* m_statusEvents;
    QLabel* m_statusRate;
    QLabel* m_statusBacklog;
    QLabel* m_statusTail;
    QMenu* m_recentMenu;
    QMenu* m_columnsMenu;
    QAction* m_saveAsAction;
    QAction* m_exportAction;
    QAction* m_followAction;
    QString m_url;
    QString m_lastError;
    QString m_filterDescription;
    bool m_followTail = true;
    bool m_scrollingToTail = false;
    std::int64_t m_lastShownSeq = 0;
    std::uint64_t m_snapshots = 0;
    std::optional<std::int64_t> m_newestSeq;
    double m_eventsPerSecond = 0;
    std::thread m_summaryThread;                 // counts of a capture opened from a file
    std::shared_ptr<std::atomic<bool>> m_summaryCancel;
    std::uint64_t m_summaryGeneration = 0;
    std::uint64_t m_backlog = 0;
};

} // namespace pipescope
