#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QEventLoop>
#include <QFileDialog>
#include <QFileInfo>
#include <QFrame>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressDialog>
#include <QPushButton>
#include <QScrollBar>
#include <QSettings>
#include <QShortcut>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTableView>
#include <QTextBrowser>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include <set>

#include <nlohmann/json.hpp>

#include "bridge/engine_bridge.h"
#include "capture_file_ops.h"
#include "collector/collector.h"
#include "models/event_filter_runner.h"
#include "models/event_predicates.h"
#include "models/event_table_model.h"
#include "widgets/event_inspector.h"
#include "widgets/filter_bar.h"
#include "widgets/send_events_panel.h"
#include "widgets/settings_dialog.h"

#if PIPESCOPE_HAS_FILTER
#include "filter/filter.h"
#endif

namespace pipescope {

namespace {
constexpr int kRecentLimit = 10;
QString q(const std::string& s) { return QString::fromStdString(s); }
QString number(std::uint64_t n) { return QLocale().toString(qulonglong(n)); }

// Runs `work` on a thread of its own while the window keeps painting; returns when it is done.
template <typename Work>
void runWithoutFreezing(Work work) {
    std::atomic<bool> done{false};
    std::thread thread([&] {
        work();
        done = true;
    });
    QEventLoop loop;
    QTimer timer;
    QObject::connect(&timer, &QTimer::timeout, &loop, [&] {
        if (done) loop.quit();
    });
    timer.start(20);
    loop.exec(QEventLoop::ExcludeUserInputEvents);
    thread.join();
}
} // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setObjectName(QStringLiteral("PipescopeMainWindow"));
    m_model = new EventTableModel(this);
    m_bridge = new EngineBridge(this);
    m_filterRunner = new EventFilterRunner(this);
    buildLayout();
    buildActions();
    restoreLayout();
    updateTitle();
    updateStatus();

    connect(m_bridge, &EngineBridge::snapshot, this, &MainWindow::onSnapshot);
    connect(m_filterRunner, &EventFilterRunner::matched, this, [this](const QVector<qint64>& seqs) {
        m_model->appendMatches(std::vector<std::int64_t>(seqs.begin(), seqs.end()));
        m_filterBar->setMatches(m_model->rowCount(), false);
    });
    connect(m_filterRunner, &EventFilterRunner::progress, m_filterBar, &FilterBar::setProgress);
    connect(m_filterRunner, &EventFilterRunner::scanned, this, [this](qint64) {
        m_filterBar->setRunning(false);
        m_filterBar->setMatches(m_model->rowCount(), true);
        // A capture at rest: the first match is inspected rather than leaving the pane empty
        // (a live view keeps following its tail instead).
        if (!m_engine && !m_table->currentIndex().isValid() && m_model->rowCount() > 0)
            m_table->setCurrentIndex(m_model->index(0, EventTableModel::SeqColumn));
        updateStatus();
        emit filterScanned(m_model->rowCount());
    });
    connect(m_filterRunner, &EventFilterRunner::failed, this, [this](const QString& error) {
        m_filterBar->setRunning(false);
        statusBar()->showMessage(tr("Filter failed: %1").arg(error), 10000);
    });
}

MainWindow::~MainWindow() {
    m_filterRunner->cancel();
    stopLive(); // may start reading the stopped capture's summary: joined below
    if (m_summaryCancel) m_summaryCancel->store(true);
    if (m_summaryThread.joinable()) m_summaryThread.join();
}

// ---------------------------------------------------------------------------------------------
// Layout and actions

void MainWindow::buildLayout() {
    auto* central = new QWidget(this);
    auto* layout = new QVBoxLayout(central);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);

    // The banner that says when the collector could not start, with what to do about it.
    m_banner = new QFrame(central);
    m_banner->setObjectName(QStringLiteral("portBanner"));
    m_banner->setStyleSheet(QStringLiteral("#portBanner { background: #fff4d6; border-bottom: 1px solid #d29a2c; }"));
    auto* bannerLayout = new QHBoxLayout(m_banner);
    m_bannerText = new QLabel(m_banner);
    m_bannerText->setWordWrap(true);
    m_bannerText->setTextFormat(Qt::RichText);
    bannerLayout->addWidget(m_bannerText, 1);
    m_bannerOther = new QPushButton(m_banner);
    m_bannerAny = new QPushButton(tr("Any free port"), m_banner);
    m_bannerRetry = new QPushButton(tr("Retry"), m_banner);
    bannerLayout->addWidget(m_bannerOther);
    bannerLayout->addWidget(m_bannerAny);
    bannerLayout->addWidget(m_bannerRetry);
    m_banner->hide();
    layout->addWidget(m_banner);

    m_strip = new PipelineStrip(central);
    m_strip->setObjectName(QStringLiteral("pipelineStrip"));
    layout->addWidget(m_strip);
    connect(m_strip, &PipelineStrip::stageClicked, this, &MainWindow::onStageClicked);

    m_filterBar = new FilterBar(central);
    layout->addWidget(m_filterBar);
    connect(m_filterBar, &FilterBar::applyRequested, this, [this](const QString& text) { applyFilterText(text); });
    connect(m_filterBar, &FilterBar::clearRequested, this, &MainWindow::clearFilter);
    connect(m_filterBar, &FilterBar::cancelRequested, this, [this] {
        if (!m_filterRunner->isRunning()) return;
        m_filterRunner->cancel();
        m_filterBar->setRunning(false);
        m_filterBar->setMatches(m_model->rowCount(), false);
        statusBar()->showMessage(tr("Filter cancelled: the table shows the rows found so far"), 8000);
    });

    m_table = new QTableView(central);
    m_table->setObjectName(QStringLiteral("eventTable"));
    m_table->setModel(m_model);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setAlternatingRowColors(false);
    m_table->setWordWrap(false);
    m_table->setShowGrid(false);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
    m_table->verticalHeader()->setDefaultSectionSize(m_table->fontMetrics().height() + 6);
    m_table->horizontalHeader()->setSectionsMovable(true);
    m_table->horizontalHeader()->setHighlightSections(false);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->horizontalHeader()->setContextMenuPolicy(Qt::CustomContextMenu);
    m_table->setStyleSheet(QStringLiteral("QTableView::item:selected { background: #3d6fb6; color: white; }"));
    const int seqWidth = m_table->fontMetrics().horizontalAdvance(QStringLiteral("0000000")) + 12;
    const int timeWidth = m_table->fontMetrics().horizontalAdvance(QStringLiteral("2026-11-20 10:00:00.000")) + 16;
    m_table->setColumnWidth(EventTableModel::SeqColumn, seqWidth);
    m_table->setColumnWidth(EventTableModel::TimeColumn, timeWidth);
    m_table->setColumnWidth(EventTableModel::ReceivedColumn, timeWidth);
    m_table->setColumnWidth(EventTableModel::StreamColumn, 64);
    m_table->setColumnWidth(EventTableModel::OriginColumn, 215);
    m_table->setColumnWidth(EventTableModel::NameColumn, 170);
    m_table->setColumnWidth(EventTableModel::DistinctIdColumn, 130);
    m_table->setColumnWidth(EventTableModel::VerdictColumn, 100);
    m_table->setColumnHidden(EventTableModel::ReceivedColumn, true);
    m_table->setColumnHidden(EventTableModel::EventIdColumn, true);
    layout->addWidget(m_table, 1);

    // The verdict legend under the table.
    auto* legend = new QWidget(central);
    auto* legendLayout = new QHBoxLayout(legend);
    legendLayout->setContentsMargins(6, 2, 6, 2);
    legendLayout->addWidget(new QLabel(tr("Verdicts:"), legend));
    for (Verdict v : {Verdict::Valid, Verdict::Invalid, Verdict::Unplanned, Verdict::Duplicate}) {
        const VerdictStyle& style = verdictStyle(v);
        auto* chip = new QLabel(style.label, legend);
        chip->setToolTip(style.description);
        chip->setStyleSheet(QStringLiteral("QLabel { background: %1; color: %2; border: 1px solid %2; border-radius: 3px;"
                                           " padding: 1px 6px; }")
                                .arg(style.background.name(), style.foreground.name()));
        legendLayout->addWidget(chip);
    }
    legendLayout->addStretch(1);
    m_statusTail = new QLabel(legend);
    legendLayout->addWidget(m_statusTail);
    layout->addWidget(legend);
    setCentralWidget(central);

    connect(m_table->selectionModel(), &QItemSelectionModel::currentRowChanged, this, &MainWindow::onCurrentRowChanged);
    connect(m_table->horizontalHeader(), &QHeaderView::customContextMenuRequested, this,
            [this](const QPoint& pos) { m_columnsMenu->exec(m_table->horizontalHeader()->mapToGlobal(pos)); });
    // The live tail: follow while the view is at the bottom; scrolling up stops it, End resumes.
    QScrollBar* bar = m_table->verticalScrollBar();
    connect(bar, &QScrollBar::valueChanged, this, [this, bar](int value) {
        if (m_scrollingToTail) return;
        setFollowTail(value >= bar->maximum());
    });
    connect(bar, &QScrollBar::rangeChanged, this, [this, bar](int, int max) {
        if (!m_followTail) return;
        m_scrollingToTail = true;
        bar->setValue(max);
        m_scrollingToTail = false;
    });
    auto* end = new QShortcut(QKeySequence(Qt::Key_End), m_table, nullptr, nullptr, Qt::WidgetWithChildrenShortcut);
    connect(end, &QShortcut::activated, this, [this] { setFollowTail(true); });

    m_inspector = new EventInspector(this);
    m_inspectorDock = new QDockWidget(tr("Inspector"), this);
    m_inspectorDock->setObjectName(QStringLiteral("inspectorDock"));
    m_inspectorDock->setWidget(m_inspector);
    addDockWidget(Qt::RightDockWidgetArea, m_inspectorDock);
    connect(m_inspector, &EventInspector::followPerson, this,
            [this](const QString& id) { applyFilter(personFilter(id.toStdString())); });
    connect(m_inspector, &EventInspector::jumpToSeq, this, [this](qint64 seq) { selectSeq(seq); });

    m_sendPanel = new SendEventsPanel(this);
    m_sendDock = new QDockWidget(tr("Send events here"), this);
    m_sendDock->setObjectName(QStringLiteral("sendEventsDock"));
    m_sendDock->setWidget(m_sendPanel);
    addDockWidget(Qt::RightDockWidgetArea, m_sendDock);
    tabifyDockWidget(m_inspectorDock, m_sendDock);
    m_inspectorDock->raise();
    resizeDocks({m_inspectorDock}, {540}, Qt::Horizontal);

    m_statusListening = new QLabel(this);
    m_statusCapture = new QLabel(this);
    m_statusCapture->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_statusEvents = new QLabel(this);
    m_statusRate = new QLabel(this);
    m_statusBacklog = new QLabel(this);
    statusBar()->addWidget(m_statusListening);
    statusBar()->addWidget(m_statusCapture, 1);
    statusBar()->addPermanentWidget(m_statusEvents);
    statusBar()->addPermanentWidget(m_statusRate);
    statusBar()->addPermanentWidget(m_statusBacklog);
    resize(1400, 860);
}

void MainWindow::buildActions() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* newLive = file->addAction(tr("&New Live Capture"), this, &MainWindow::newLiveCapture);
    newLive->setShortcut(QKeySequence::New);
    newLive->setStatusTip(tr("Start the local collector and pipeline on a new capture"));
    QAction* open = file->addAction(tr("&Open Capture…"), this, &MainWindow::openFileDialog);
    open->setShortcut(QKeySequence::Open);
    m_recentMenu = file->addMenu(tr("Open &Recent"));
    rebuildRecentMenu();
    file->addSeparator();
    m_saveAsAction = file->addAction(tr("Save Capture &As…"), this, &MainWindow::saveAsDialog);
    m_saveAsAction->setShortcut(QKeySequence::SaveAs);
    m_exportAction = file->addAction(tr("&Export Shown Rows as NDJSON…"), this, &MainWindow::exportDialog);
    m_exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    file->addSeparator();
    file->addAction(tr("Choose &Schemas Folder…"), this, &MainWindow::chooseSchemasFolder);
    QAction* settings = file->addAction(tr("Se&ttings…"), this, &MainWindow::editSettings);
    settings->setShortcut(QKeySequence::Preferences);
    settings->setStatusTip(tr("The pipeline's configuration, saved as pipescope.json"));
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    QAction* find = view->addAction(tr("&Filter…"), this, [this] {
        m_filterBar->edit()->setFocus();
        m_filterBar->edit()->selectAll();
    });
    find->setShortcut(QKeySequence::Find);
    m_followAction = view->addAction(tr("Follow &Live Tail"), this, [this](bool on) { setFollowTail(on); });
    m_followAction->setCheckable(true);
    m_followAction->setChecked(true);
    m_followAction->setToolTip(tr("End in the table resumes following"));
    m_columnsMenu = view->addMenu(tr("&Columns"));
    for (int c = 0; c < EventTableModel::ColumnCount; ++c) {
        QAction* column = m_columnsMenu->addAction(m_model->headerData(c, Qt::Horizontal).toString());
        column->setCheckable(true);
        connect(m_columnsMenu, &QMenu::aboutToShow, column, [this, column, c] { column->setChecked(!m_table->isColumnHidden(c)); });
        connect(column, &QAction::toggled, this, [this, c](bool on) { m_table->setColumnHidden(c, !on); });
    }
    view->addSeparator();
    view->addAction(m_inspectorDock->toggleViewAction());
    view->addAction(m_sendDock->toggleViewAction());

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&Filter Language"), this, &MainWindow::showFilterHelp);
    help->addAction(tr("&About Pipescope"), this, [this] {
        QMessageBox::about(this, tr("About Pipescope"),
                           tr("<b>Pipescope</b> %1<br>An inspector for product-analytics event pipelines: "
                              "collector, dedup, schema validation, identity stitching, destinations.")
                               .arg(QApplication::applicationVersion()));
    });
}

void MainWindow::saveLayout() {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), saveState());
    settings.setValue(QStringLiteral("window/columns"), m_table->horizontalHeader()->saveState());
}

void MainWindow::restoreLayout() {
    QSettings settings;
    restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
    const QByteArray columns = settings.value(QStringLiteral("window/columns")).toByteArray();
    if (!columns.isEmpty()) m_table->horizontalHeader()->restoreState(columns);
}

void MainWindow::rememberRecent(const QString& path) {
    QSettings settings;
    QStringList recent = settings.value(QStringLiteral("recentFiles")).toStringList();
    const QString absolute = QFileInfo(path).absoluteFilePath();
    recent.removeAll(absolute);
    recent.prepend(absolute);
    while (recent.size() > kRecentLimit) recent.removeLast();
    settings.setValue(QStringLiteral("recentFiles"), recent);
    rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
    m_recentMenu->clear();
    const QStringList recent = QSettings().value(QStringLiteral("recentFiles")).toStringList();
    for (const QString& path : recent) {
        QAction* action = m_recentMenu->addAction(QFileInfo(path).fileName(), this, [this, path] { openCapture(path); });
        action->setToolTip(path);
        action->setStatusTip(path);
    }
    if (recent.isEmpty()) m_recentMenu->addAction(tr("(none)"))->setEnabled(false);
}

// ---------------------------------------------------------------------------------------------
// Live pipeline and files

QString MainWindow::settingsFile() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath(QStringLiteral("pipescope.json"));
}

RunConfig MainWindow::defaultConfig() {
    const QString dataDir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QDir().mkpath(dataDir);
    RunConfig config = defaultRunConfig(dataDir.toStdString());
    // The settings saved from the window (validated when saved; a file edited since that no
    // longer parses falls back to the defaults rather than keeping the window from starting).
    if (QFileInfo::exists(settingsFile())) {
        try {
            config = loadRunConfig(settingsFile().toStdString());
        } catch (const std::exception& e) {
            qWarning("pipescope: %s: %s (starting on the defaults)", qPrintable(settingsFile()), e.what());
        }
    }
    const QString schemas = QSettings().value(QStringLiteral("schemasDir")).toString();
    if (!config.schemasDir && !schemas.isEmpty() && QFileInfo(schemas).isDir()) config.schemasDir = schemas.toStdString();
    return config;
}

void MainWindow::editSettings() {
    SettingsDialog dialog(settingsFile(), this);
    if (dialog.exec() != QDialog::Accepted) return;
    if (m_engine) {
        // The same capture goes on under the new settings (a restart resumes it).
        RunConfig config = dialog.config();
        config.capturePath = m_engine->capturePath();
        startLive(config);
    } else {
        statusBar()->showMessage(tr("Saved %1; the next live capture starts from it").arg(settingsFile()), 8000);
    }
}

QString MainWindow::capturePath() const { return m_model->path(); }

bool MainWindow::startLive(RunConfig config) {
    stopLive();
    m_filterRunner->cancel();
    m_banner->hide();
    m_lastError.clear();
    const QString capture = q(config.capturePath.string());
    QDir().mkpath(QFileInfo(capture).absolutePath());
    try {
        auto engine = std::make_unique<RunEngine>(config);
        engine->start();
        m_engine = std::move(engine);
    } catch (const CollectorError& e) {
        showPortProblem(config, q(e.what()));
        return false;
    } catch (const std::exception& e) {
        showError(tr("The pipeline could not start"), q(e.what()));
        return false;
    }
    m_liveConfig = config;
    const std::string address = config.collector.bindAddress;
    const bool wildcard = address == "0.0.0.0" || address == "::" || address == "[::]";
    const std::string host = wildcard ? std::string("127.0.0.1")
                             : address.find(':') != std::string::npos && address.front() != '[' ? "[" + address + "]"
                                                                                                   : address;
    m_url = QStringLiteral("http://%1:%2").arg(q(host)).arg(m_engine->port());
    try {
        m_model->open(q(m_engine->capturePath().string()));
    } catch (const std::exception& e) {
        showError(tr("The capture cannot be read"), q(e.what()));
    }
    m_filterBar->showApplied({}, true);
    m_inspector->clear();
    m_sendPanel->setUrl(m_url);
    if (m_model->rowCount() == 0) m_sendDock->raise();
    StripCounts counts;
    counts.live = true;
    counts.source = tr("collector %1").arg(QString(m_url).remove(QStringLiteral("http://")));
    m_strip->setCounts(counts);
    m_newestSeq.reset();
    m_bridge->attach([engine = m_engine.get()] { return engine->stats(); }, m_model->path());
    setFollowTail(true);
    rememberRecent(m_model->path());
    updateTitle();
    updateStatus();
    QString warning;
    if (!(address == "localhost" || address == "::1" || address.rfind("127.", 0) == 0))
        warning = tr(" — reachable from the network (%1): anyone who can reach it can write into the capture").arg(q(address));
    statusBar()->showMessage(tr("Collector listening on %1%2").arg(m_url, warning), 10000);
    emit liveStarted(m_url);
    return true;
}

void MainWindow::showPortProblem(const RunConfig& config, const QString& error) {
    const int port = config.collector.port;
    const int other = port >= 65535 || port == 0 ? 8090 : port + 1;
    m_lastError = error;
    m_bannerText->setText(tr("<b>The collector could not listen on %1:%2.</b> %3<br>Another program (perhaps another "
                             "Pipescope) may be using the port. Point your SDKs at another port, or stop that program "
                             "and retry.")
                              .arg(q(config.collector.bindAddress))
                              .arg(port)
                              .arg(error.toHtmlEscaped()));
    m_bannerOther->setText(tr("Use port %1").arg(other));
    m_bannerOther->disconnect();
    m_bannerAny->disconnect();
    m_bannerRetry->disconnect();
    auto retryWith = [this, config](int newPort) {
        RunConfig next = config;
        next.collector.port = static_cast<std::uint16_t>(newPort);
        QTimer::singleShot(0, this, [this, next] { startLive(next); });
    };
    connect(m_bannerOther, &QPushButton::clicked, this, [retryWith, other] { retryWith(other); });
    connect(m_bannerAny, &QPushButton::clicked, this, [retryWith] { retryWith(0); });
    connect(m_bannerRetry, &QPushButton::clicked, this, [retryWith, port] { retryWith(port); });
    m_banner->show();
    m_url.clear();
    m_sendPanel->setUnavailable(tr("The collector is not listening: port %1 is taken. Choose another port in the "
                                   "banner above; the snippets below will point at it.").arg(port),
                                QStringLiteral("http://%1:%2").arg(q(config.collector.bindAddress)).arg(port));
    StripCounts counts;
    counts.live = true;
    counts.source = tr("collector not listening");
    counts.pipelineState = QStringLiteral("not started");
    m_strip->setCounts(counts);
    updateTitle();
    updateStatus();
}

void MainWindow::showError(const QString& title, const QString& message) {
    m_lastError = message;
    m_bannerText->setText(QStringLiteral("<b>%1.</b> %2").arg(title.toHtmlEscaped(), message.toHtmlEscaped()));
    m_bannerOther->hide();
    m_bannerAny->hide();
    m_bannerRetry->hide();
    m_banner->show();
    statusBar()->showMessage(title + QStringLiteral(": ") + message);
}

void MainWindow::stopLive() {
    if (!m_engine) return;
    m_bridge->detach();
    statusBar()->showMessage(tr("Stopping the pipeline (finishing accepted requests, flushing destinations)…"));
    RunEngine* engine = m_engine.get();
    runWithoutFreezing([engine] { engine->stop(); });
    m_engine.reset();
    m_url.clear();
    m_sendPanel->setUrl({});
    statusBar()->showMessage(tr("Pipeline stopped; the capture stays open read-only"), 8000);
    m_model->refresh();
    loadFileSummary();
    updateTitle();
    updateStatus();
}

bool MainWindow::openCapture(const QString& path) {
    stopLive();
    m_filterRunner->cancel();
    try {
        m_model->open(path);
    } catch (const std::exception& e) {
        showError(tr("Cannot open %1").arg(QFileInfo(path).fileName()), q(e.what()));
        return false;
    }
    m_banner->hide();
    m_lastError.clear();
    m_liveConfig.reset();
    m_url.clear();
    m_sendPanel->setUrl({});
    m_inspector->clear();
    m_filterBar->showApplied({}, true);
    m_inspectorDock->raise();
    setFollowTail(false);
    m_table->scrollToTop();
    rememberRecent(path);
    StripCounts counts;
    counts.source = tr("capture %1").arg(QFileInfo(path).fileName());
    if (const CaptureReader* reader = m_model->reader()) {
        const VerdictCounts verdicts = reader->verdictCounts();
        counts.events = std::uint64_t(verdicts.total());
        counts.valid = std::uint64_t(verdicts.valid);
        counts.invalid = std::uint64_t(verdicts.invalid);
        counts.unplanned = std::uint64_t(verdicts.unplanned);
        counts.duplicates = std::uint64_t(verdicts.duplicate);
    }
    m_strip->setCounts(counts);
    loadFileSummary();
    updateTitle();
    updateStatus();
    return true;
}

void MainWindow::loadFileSummary() {
    // Counts of a capture at rest, read on a worker thread with its own connection.
    if (m_summaryCancel) m_summaryCancel->store(true);
    if (m_summaryThread.joinable()) m_summaryThread.join();
    if (!m_model->isOpen()) return;
    m_summaryCancel = std::make_shared<std::atomic<bool>>(false);
    const std::uint64_t generation = ++m_summaryGeneration;
    const std::string path = m_model->path().toStdString();
    const QString source = tr("capture %1").arg(QFileInfo(m_model->path()).fileName());
    m_summaryThread = std::thread([this, path, source, generation, cancel = m_summaryCancel] {
        StripCounts counts;
        counts.source = source;
        std::set<std::string> names;
        try {
            const CaptureReader reader(path);
            const VerdictCounts verdicts = reader.verdictCounts(); // maintained by the store: no scan
            counts.events = std::uint64_t(verdicts.total());
            counts.valid = std::uint64_t(verdicts.valid);
            counts.invalid = std::uint64_t(verdicts.invalid);
            counts.unplanned = std::uint64_t(verdicts.unplanned);
            counts.duplicates = std::uint64_t(verdicts.duplicate);
            // Event names for completion: from the first rows (cheap, no decompression).
            for (const EventRow& row : reader.rowsAfter(0, 5000))
                if (names.size() < 500) names.insert(row.name);
            reader.forEachDlq([&](const DlqEntry& d) {
                if (d.reason == "unparseable" || d.reason == "rejected") ++counts.deadLettered;
                return !cancel->load();
            });
            counts.identityIssues = (long long)reader.identityIssues().size();
            std::map<std::string, DestinationStats> destinations;
            for (const auto& d : reader.deliveries("")) {
                DestinationStats& s = destinations[d.destination];
                s.name = d.destination;
                const auto seqs = nlohmann::json::parse(d.seqs, nullptr, false);
                const std::int64_t n = seqs.is_array() ? std::int64_t(seqs.size()) : 0;
                if (d.outcome == "delivered") s.deliveredEvents += n, ++s.deliveredBatches;
                else if (d.outcome == "retrying") ++s.retriedAttempts;
                else if (d.outcome == "dead_lettered") s.deadLetteredEvents += n;
                s.lastHttpStatus = d.httpStatus;
                s.lastError = d.outcome == "delivered" ? std::string() : d.error;
            }
            for (auto& [name, s] : destinations) {
                s.cursor = reader.cursor(name);
                s.lag = std::max<std::int64_t>(0, reader.maxEventSeq() - s.cursor);
                counts.destinations.push_back(s);
            }
        } catch (const std::exception&) {
            return; // the table says what is wrong with the file
        }
        if (cancel->load()) return;
        QStringList nameList;
        for (const auto& n : names) nameList << q(n);
        QMetaObject::invokeMethod(
            this,
            [this, counts, nameList, generation] {
                if (generation != m_summaryGeneration || m_engine) return;
                m_strip->setCounts(counts);
                m_filterBar->addEventNames(nameList);
            },
            Qt::QueuedConnection);
    });
}

void MainWindow::onSnapshot(const EngineSnapshot& s) {
    if (!m_engine) return;
    ++m_snapshots;
    m_newestSeq = s.newestSeq;
    m_eventsPerSecond = s.eventsPerSecond;
    m_backlog = s.stats.backlog;
    const int firstNew = m_model->rowCount();
    const int added = m_model->isFiltered() ? 0 : m_model->appendRows(s.newestSeq);
    // Event names for completion, from the rows just added (their page is read anyway when the
    // tail is on screen).
    if (added > 0) {
        QStringList names;
        for (int row = std::max(firstNew, firstNew + added - 200); row < firstNew + added; ++row)
            names << m_model->index(row, EventTableModel::NameColumn).data().toString();
        names.removeDuplicates();
        m_filterBar->addEventNames(names);
    }
    StripCounts counts;
    counts.live = true;
    counts.source = tr("collector %1").arg(QString(m_url).remove(QStringLiteral("http://")));
    counts.requests = s.stats.requestsAccepted;
    counts.requestsPerSecond = s.requestsPerSecond;
    counts.eventsPerSecond = s.eventsPerSecond;
    counts.backlog = s.stats.backlog;
    counts.refusedByStatus = s.stats.refusedByStatus;
    counts.pipelineState = q(s.stats.pipelineState);
    counts.events = s.stats.events;
    // The engine counts unplanned events as valid (or invalid under the dlq policy); the strip
    // shows the four verdicts apart, as the table does.
    const bool unplannedDeadLettered = m_liveConfig && m_liveConfig->pipeline.unplanned == UnplannedPolicy::Dlq;
    counts.unplanned = s.stats.unplanned;
    counts.valid = s.stats.valid - (unplannedDeadLettered ? 0 : std::min(s.stats.valid, s.stats.unplanned));
    counts.invalid = s.stats.invalid - (unplannedDeadLettered ? std::min(s.stats.invalid, s.stats.unplanned) : 0);
    counts.duplicates = s.stats.duplicates;
    counts.deadLettered = s.stats.rejected + s.stats.unparseable + s.stats.requestsRejected;
    counts.destinations = s.stats.destinations;
    m_strip->setCounts(counts);
    if (!s.stats.captureError.empty() && s.stats.pipelineState != "running")
        statusBar()->showMessage(tr("Pipeline %1: %2").arg(q(s.stats.pipelineState), q(s.stats.captureError)), 5000);
    updateStatus();
}

// ---------------------------------------------------------------------------------------------
// Filters, selection, tail

void MainWindow::applyFilter(const NamedFilter& filter) {
    if (!m_model->isOpen()) return;
    m_filterDescription = filter.description;
    m_inspector->clear();
    m_model->showFiltered();
    m_filterBar->showApplied(filter.description, filter.editable);
    m_filterBar->setRunning(true);
    m_filterBar->setMatches(0, false);
    m_filterRunner->start(m_model->path(), filter.factory, isLive(), filter.initialScan);
    updateStatus();
}

bool MainWindow::applyFilterText(const QString& text) {
    if (text.trimmed().isEmpty()) {
        clearFilter();
        return true;
    }
#if PIPESCOPE_HAS_FILTER
    const QByteArray utf8 = text.toUtf8();
    auto result = FilterExpression::parse(std::string_view(utf8.constData(), std::size_t(utf8.size())));
    if (!result.ok()) {
        m_filterBar->showApplied(text, true);
        m_filterBar->check();
        return false;
    }
    applyFilter(expressionFilter(text, result.expression()));
    return true;
#else
    m_filterBar->check();
    return false;
#endif
}

void MainWindow::clearFilter() {
    m_filterRunner->cancel();
    m_filterDescription.clear();
    const qint64 selected = m_inspector->seq();
    m_filterBar->setRunning(false);
    m_filterBar->showApplied({}, true);
    if (m_model->isOpen()) m_model->showAll();
    if (selected) selectSeq(selected);
    updateStatus();
}

bool MainWindow::isFiltering() const { return m_model->isFiltered(); }

void MainWindow::onStageClicked(PipelineStrip::Stage stage, const QString& destination) {
#if PIPESCOPE_HAS_FILTER
    // A stage is a filter anyone can read and edit in the bar.
    switch (stage) {
    case PipelineStrip::Stage::Source: clearFilter(); return;
    case PipelineStrip::Stage::Dedup: applyFilterText(QStringLiteral("verdict == duplicate")); return;
    case PipelineStrip::Stage::Validate: applyFilterText(QStringLiteral("verdict == invalid")); return;
    default: break;
    }
#endif
    switch (stage) {
    case PipelineStrip::Stage::Source: clearFilter(); break;
    case PipelineStrip::Stage::Dedup: applyFilter(verdictFilter({Verdict::Duplicate})); break;
    case PipelineStrip::Stage::Validate: applyFilter(verdictFilter({Verdict::Invalid})); break;
    case PipelineStrip::Stage::Identity:
        if (m_engine) {
            statusBar()->showMessage(tr("Identity issues are written when the run stops; stop it (File › Open, or quit) "
                                        "or use \"Follow this person\" in the inspector"),
                                     8000);
        } else {
            applyFilter(identityIssueFilter());
        }
        break;
    case PipelineStrip::Stage::Destination: applyFilter(destinationDeadLetterFilter(destination.toStdString())); break;
    }
}

void MainWindow::onCurrentRowChanged() {
    const QModelIndex current = m_table->currentIndex();
    const std::int64_t seq = current.isValid() ? m_model->seqAt(current.row()) : 0;
    if (seq == m_inspector->seq()) return;
    m_inspector->showEvent(m_model->reader(), seq, destinationNames());
    if (seq) m_inspectorDock->raise();
}

std::vector<std::string> MainWindow::destinationNames() const {
    std::vector<std::string> names;
    if (m_liveConfig)
        for (const auto& d : m_liveConfig->destinations) names.push_back(d.name);
    for (const auto& d : m_strip->counts().destinations)
        if (std::find(names.begin(), names.end(), d.name) == names.end()) names.push_back(d.name);
    return names;
}

bool MainWindow::selectSeq(qint64 seq) {
    int row = m_model->rowOfSeq(seq);
    if (row < 0 && m_model->isFiltered()) {
        clearFilter();
        row = m_model->rowOfSeq(seq);
    }
    if (row < 0) return false;
    setFollowTail(false);
    const QModelIndex index = m_model->index(row, EventTableModel::SeqColumn);
    m_table->setCurrentIndex(index);
    m_table->scrollTo(index, QAbstractItemView::PositionAtCenter);
    return true;
}

void MainWindow::setFollowTail(bool follow) {
    if (follow == m_followTail && (!follow || m_table->verticalScrollBar()->value() == m_table->verticalScrollBar()->maximum())) {
        updateStatus();
        return;
    }
    m_followTail = follow;
    if (m_followAction) m_followAction->setChecked(follow);
    if (follow) {
        m_scrollingToTail = true;
        m_table->scrollToBottom();
        m_scrollingToTail = false;
    }
    updateStatus();
}

// ---------------------------------------------------------------------------------------------
// Status, title, dialogs

void MainWindow::updateStatus() {
    if (m_engine) {
        m_statusListening->setText(tr("● listening on %1").arg(QString(m_url).remove(QStringLiteral("http://"))));
        m_statusListening->setStyleSheet(QStringLiteral("color: #1b6e20;"));
    } else if (m_banner->isVisible() && !m_url.isEmpty()) {
        m_statusListening->setText(tr("○ not listening"));
    } else if (m_model->isOpen()) {
        m_statusListening->setText(tr("read-only capture"));
        m_statusListening->setStyleSheet({});
    } else {
        m_statusListening->setText(tr("○ not listening"));
        m_statusListening->setStyleSheet(QStringLiteral("color: #b00020;"));
    }
    m_statusCapture->setText(m_model->isOpen() ? m_model->path() : tr("no capture"));
    const qint64 total = m_newestSeq && !m_model->isFiltered() ? qint64(*m_newestSeq) : qint64(m_model->isFiltered() ? -1 : m_model->rowCount());
    if (m_model->isFiltered())
        m_statusEvents->setText(tr("%1 rows shown (%2)").arg(QLocale().toString(m_model->rowCount()), m_filterDescription));
    else
        m_statusEvents->setText(tr("%1 events").arg(QLocale().toString(total)));
    m_statusRate->setText(m_engine ? tr("%1 events/s").arg(QLocale().toString(m_eventsPerSecond, 'f', m_eventsPerSecond < 10 ? 1 : 0)) : QString());
    m_statusBacklog->setText(m_engine ? tr("backlog %1").arg(number(m_backlog)) : QString());
    m_statusRate->setVisible(m_engine != nullptr);
    m_statusBacklog->setVisible(m_engine != nullptr);
    if (m_engine)
        m_statusTail->setText(m_followTail ? tr("● following new rows") : tr("○ not following — press End to follow"));
    else
        m_statusTail->setText({});
}

void MainWindow::updateTitle() {
    QString title = QStringLiteral("Pipescope");
    if (m_model->isOpen()) title = QFileInfo(m_model->path()).fileName() + (m_engine ? tr(" (live)") : tr(" (read-only)")) + QStringLiteral(" — ") + title;
    setWindowTitle(title);
    m_saveAsAction->setEnabled(m_model->isOpen());
    m_exportAction->setEnabled(m_model->isOpen());
}

void MainWindow::newLiveCapture() { startLive(defaultConfig()); }

void MainWindow::openFileDialog() {
    const QString dir = QSettings().value(QStringLiteral("lastOpenDir"), QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).toString();
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Capture"), dir, tr("Pipescope captures (*.pipescope);;All files (*)"));
    if (path.isEmpty()) return;
    QSettings().setValue(QStringLiteral("lastOpenDir"), QFileInfo(path).absolutePath());
    openCapture(path);
}

void MainWindow::saveAsDialog() {
    if (!m_model->isOpen()) return;
    const QString path = QFileDialog::getSaveFileName(this, tr("Save Capture As"), QFileInfo(m_model->path()).absolutePath(),
                                                      tr("Pipescope captures (*.pipescope)"));
    if (path.isEmpty()) return;
    QProgressDialog progress(tr("Copying the capture…"), tr("Cancel"), 0, 1000, this);
    progress.setWindowModality(Qt::WindowModal);
    progress.setMinimumDuration(300);
    std::atomic<bool> cancelled{false};
    std::atomic<int> done{0}, total{1};
    connect(&progress, &QProgressDialog::canceled, this, [&] { cancelled = true; });
    std::string error;
    const std::string source = m_model->path().toStdString();
    QTimer tick;
    connect(&tick, &QTimer::timeout, &progress, [&] { progress.setValue(int(1000LL * done / std::max(1, total.load()))); });
    tick.start(50);
    runWithoutFreezing([&] {
        error = backupCapture(source, path.toStdString(), [&](int d, int t) { done = d, total = t; }, cancelled);
    });
    progress.reset();
    if (!error.empty()) {
        if (error != "cancelled") QMessageBox::warning(this, tr("Save As failed"), q(error));
        return;
    }
    rememberRecent(path);
    statusBar()->showMessage(tr("Saved a copy as %1").arg(path), 8000);
}

void MainWindow::exportDialog() {
    if (!m_model->isOpen()) return;
    const QString path = QFileDialog::getSaveFileName(this, tr("Export Shown Rows"), QFileInfo(m_model->path()).absolutePath(),
                                                      tr("NDJSON (*.ndjson)"));
    if (path.isEmpty()) return;
    const std::vector<std::int64_t> seqs = m_model->seqs();
    QProgressDialog progress(tr("Exporting %1 events…").arg(QLocale().toString(qulonglong(seqs.size()))), tr("Cancel"), 0, 1000, this);
    progress.setWindowModality(Qt::WindowModal);
    progress.setMinimumDuration(300);
    std::atomic<bool> cancelled{false};
    std::atomic<std::int64_t> done{0};
    connect(&progress, &QProgressDialog::canceled, this, [&] { cancelled = true; });
    QTimer tick;
    connect(&tick, &QTimer::timeout, &progress,
            [&] { progress.setValue(int(1000 * done / std::max<std::int64_t>(1, std::int64_t(seqs.size())))); });
    tick.start(50);
    std::string error;
    const std::string source = m_model->path().toStdString();
    runWithoutFreezing([&] {
        error = exportRawNdjson(source, seqs, path.toStdString(), [&](std::int64_t d, std::int64_t) { done = d; }, cancelled);
    });
    progress.reset();
    if (!error.empty()) {
        if (error != "cancelled") QMessageBox::warning(this, tr("Export failed"), q(error));
        return;
    }
    statusBar()->showMessage(tr("Exported %1 events (their raw bytes, one per line) to %2").arg(QLocale().toString(qulonglong(seqs.size())), path), 8000);
}

void MainWindow::chooseSchemasFolder() {
    const QString current = QSettings().value(QStringLiteral("schemasDir")).toString();
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Schemas Folder (schemas/<event>/<version>.json)"), current);
    if (dir.isEmpty()) return;
    QSettings().setValue(QStringLiteral("schemasDir"), dir);
    if (m_engine && m_liveConfig) {
        // The same capture goes on with the new schemas (a restart resumes it).
        RunConfig config = *m_liveConfig;
        config.schemasDir = dir.toStdString();
        config.collector.port = m_engine->port();
        startLive(config);
    } else {
        statusBar()->showMessage(tr("The next live capture validates against %1").arg(dir), 8000);
    }
}

void MainWindow::showFilterHelp() {
    auto* box = new QMessageBox(this);
    box->setWindowTitle(tr("Filter language"));
    box->setTextFormat(Qt::RichText);
    box->setText(tr("<p>One expression over the events' fields and properties; Return applies it.</p>"
                    "<p><b>Fields</b>: <code>event</code>, <code>distinct_id</code>, <code>stream</code>, "
                    "<code>verdict</code>, <code>origin</code>, <code>time</code>, <code>received</code>, <code>id</code>, "
                    "<code>seq</code>, <code>format</code>, <code>anonymous_id</code>, <code>user_id</code>, <code>ingest</code>; "
                    "properties by path: <code>properties.amount</code>, <code>properties.items[0].sku</code>.</p>"
                    "<p><b>Operators</b>: <code>== != &lt; &lt;= &gt; &gt;=</code>, <code>~</code> / <code>!~</code> (PCRE2 regex), "
                    "<code>in {…}</code>, <code>exists</code>, <code>contains</code>, <code>&amp;&amp; || !</code>, parentheses; "
                    "times: <code>time &gt; -5m</code>, <code>time &lt; \"2026-11-20T10:00:00Z\"</code>.</p>"
                    "<p><b>Examples</b><br><code>event == \"payment_completed\" &amp;&amp; verdict == invalid</code><br>"
                    "<code>properties.amount &gt; 100 || distinct_id in {\"user-1\", \"user-2\"}</code><br>"
                    "<code>exists properties[\"$set\"] &amp;&amp; !(stream == server)</code></p>"
                    "<p>Clicking a stage of the pipeline strip filters to what it did; <i>Follow this person</i> in "
                    "the inspector filters to every event of a person.</p>"));
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->show();
}

void MainWindow::closeEvent(QCloseEvent* event) {
    saveLayout();
    m_filterRunner->cancel();
    stopLive();
    event->accept();
}

} // namespace pipescope
