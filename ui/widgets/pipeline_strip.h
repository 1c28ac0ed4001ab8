#pragma once
// The pipeline strip across the top of the window: sources → dedup → validate → identity → each
// destination, each a button with its live counts, rate and backlog, coloured by its health
// (duplicate %, invalid %, a destination failing). Clicking a stage asks the window to filter the
// table to what that stage did.

#include <QString>
#include <QWidget>

#include <map>
#include <vector>

#include "route/destination.h"

class QHBoxLayout;
class QToolButton;

namespace pipescope {

struct StripCounts {
    bool live = false;
    QString source;              // "collector 127.0.0.1:8089", "capture run.pipescope"
    std::uint64_t requests = 0;  // accepted requests (live)
    double requestsPerSecond = 0;
    double eventsPerSecond = 0;
    std::uint64_t backlog = 0;
    std::map<int, std::uint64_t> refusedByStatus;
    QString pipelineState = QStringLiteral("running");
    std::uint64_t events = 0;
    std::uint64_t valid = 0, invalid = 0, unplanned = 0, duplicates = 0;
    std::uint64_t deadLettered = 0; // undecodable bodies, rejected and unparseable events
    long long identityIssues = -1;  // -1: not known yet (written when a live run stops)
    std::vector<DestinationStats> destinations;
};

class PipelineStrip : public QWidget {
    Q_OBJECT

public:
    enum class Stage { Source, Dedup, Validate, Identity, Destination };
    Q_ENUM(Stage)

    explicit PipelineStrip(QWidget* parent = nullptr);
    void setCounts(const StripCounts& counts);
    const StripCounts& counts() const { return m_counts; }
    // The button of a stage (for tests and screenshots); `destination` names one destination.
    QToolButton* button(Stage stage, const QString& destination = {}) const;

signals:
    void stageClicked(pipescope::PipelineStrip::Stage stage, const QString& destination);

private:
    enum class Health { Idle, Ok, Warn, Bad };
    QToolButton* makeButton(Stage stage, const QString& destination);
    static void style(QToolButton* button, Health health);

    QHBoxLayout* m_layout;
    QToolButton* m_source;
    QToolButton* m_dedup;
    QToolButton* m_validate;
    QToolButton* m_identity;
    std::map<QString, QToolButton*> m_destinations;
    QWidget* m_noDestinations;
    StripCounts m_counts;
};

} // namespace pipescope
