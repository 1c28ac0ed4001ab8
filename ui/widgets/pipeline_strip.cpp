#include "widgets/pipeline_strip.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QToolButton>

namespace pipescope {

namespace {
QString count(std::uint64_t n) { return QLocale().toString(qulonglong(n)); }
QString rate(double perSecond) {
    return perSecond >= 10 ? QLocale().toString(perSecond, 'f', 0) : QLocale().toString(perSecond, 'f', 1);
}
QString percent(std::uint64_t part, std::uint64_t whole) {
    if (whole == 0) return QStringLiteral("–");
    const double p = 100.0 * double(part) / double(whole);
    return QLocale().toString(p, 'f', p < 10 ? 1 : 0) + '%';
}
// Ten snapshots a second: a button is re-laid out only when its text changes.
void setTextIfChanged(QToolButton* button, const QString& text) {
    if (button->text() != text) button->setText(text);
}
QLabel* arrow(QWidget* parent) {
    auto* label = new QLabel(QStringLiteral("▶"), parent);
    label->setStyleSheet(QStringLiteral("color: #8a8f98; font-size: 14px;"));
    return label;
}
} // namespace

PipelineStrip::PipelineStrip(QWidget* parent) : QWidget(parent) {
    m_layout = new QHBoxLayout(this);
    m_layout->setContentsMargins(6, 4, 6, 4);
    m_layout->setSpacing(4);
    m_source = makeButton(Stage::Source, {});
    m_layout->addWidget(m_source);
    m_layout->addWidget(arrow(this));
    m_dedup = makeButton(Stage::Dedup, {});
    m_layout->addWidget(m_dedup);
    m_layout->addWidget(arrow(this));
    m_validate = makeButton(Stage::Validate, {});
    m_layout->addWidget(m_validate);
    m_layout->addWidget(arrow(this));
    m_identity = makeButton(Stage::Identity, {});
    m_layout->addWidget(m_identity);
    m_layout->addWidget(arrow(this));
    auto* none = new QLabel(tr("no destinations\n(configure them in pipescope.json)"), this);
    none->setStyleSheet(QStringLiteral("color: #6b7280;"));
    m_noDestinations = none;
    m_layout->addWidget(m_noDestinations);
    m_layout->addStretch(1);
    setCounts({});
}

QToolButton* PipelineStrip::makeButton(Stage stage, const QString& destination) {
    auto* button = new QToolButton(this);
    button->setToolButtonStyle(Qt::ToolButtonTextOnly);
    button->setMinimumWidth(150);
    button->setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Preferred);
    button->setCursor(Qt::PointingHandCursor);
    connect(button, &QToolButton::clicked, this, [this, stage, destination] { emit stageClicked(stage, destination); });
    return button;
}

void PipelineStrip::style(QToolButton* button, Health health) {
    // A style sheet re-polishes the widget: set it only when the health changes, not on every
    // snapshot (ten a second).
    const QVariant current = button->property("pipescopeHealth");
    if (current.isValid() && current.toInt() == int(health)) return;
    button->setProperty("pipescopeHealth", int(health));
    QString border, background;
    switch (health) {
    case Health::Idle: border = "#c9ced6"; background = "#f6f7f9"; break;
    case Health::Ok: border = "#6aa86e"; background = "#eef7ee"; break;
    case Health::Warn: border = "#d29a2c"; background = "#fdf3df"; break;
    case Health::Bad: border = "#c9364a"; background = "#fde6e8"; break;
    }
    button->setStyleSheet(QStringLiteral("QToolButton { border: 1px solid %1; border-radius: 5px; background: %2;"
                                         " color: #1f2328; padding: 3px 8px; text-align: left; }"
                                         "QToolButton:hover { border-width: 2px; }")
                              .arg(border, background));
}

QToolButton* PipelineStrip::button(Stage stage, const QString& destination) const {
    switch (stage) {
    case Stage::Source: return m_source;
    case Stage::Dedup: return m_dedup;
    case Stage::Validate: return m_validate;
    case Stage::Identity: return m_identity;
    case Stage::Destination: {
        const auto it = m_destinations.find(destination);
        return it == m_destinations.end() ? nullptr : it->second;
    }
    }
    return nullptr;
}

void PipelineStrip::setCounts(const StripCounts& c) {
    m_counts = c;
    // Source: what entered, how fast, what is waiting, what was refused.
    {
        QString text = (c.source.isEmpty() ? tr("source") : c.source) + '\n';
        std::uint64_t refused = 0;
        QString refusedText;
        for (const auto& [status, n] : c.refusedByStatus) {
            refused += n;
            refusedText += (refusedText.isEmpty() ? QString() : QStringLiteral(" ")) + QStringLiteral("%1×%2").arg(count(n)).arg(status);
        }
        if (c.live) {
            text += tr("%1 req · %2 ev/s").arg(count(c.requests), rate(c.eventsPerSecond)) + '\n' +
                    tr("backlog %1").arg(count(c.backlog));
            if (refused) text += tr(" · refused %1").arg(refusedText);
        } else {
            text += tr("%1 events").arg(count(c.events)) + '\n' + tr("opened read-only");
        }
        if (c.deadLettered) text += '\n' + tr("✗ %1 undecodable / rejected").arg(count(c.deadLettered));
        if (c.pipelineState != QStringLiteral("running")) text += '\n' + tr("pipeline %1").arg(c.pipelineState);
        setTextIfChanged(m_source, text);
        m_source->setToolTip(tr("Show every event (clears the filter)"));
        style(m_source, c.pipelineState != QStringLiteral("running") ? Health::Bad
                        : refused || c.deadLettered                 ? Health::Warn
                        : c.events || c.requests                    ? Health::Ok
                                                                    : Health::Idle);
    }
    // Dedup.
    {
        setTextIfChanged(m_dedup, tr("dedup") + '\n' + tr("%1 duplicates").arg(count(c.duplicates)) + '\n' +
                         tr("%1 of events").arg(percent(c.duplicates, c.events)));
        m_dedup->setToolTip(tr("Show the duplicates"));
        style(m_dedup, c.events == 0 ? Health::Idle : c.duplicates * 20 > c.events ? Health::Warn : Health::Ok);
    }
    // Validate.
    {
        const std::uint64_t checked = c.valid + c.invalid + c.unplanned;
        setTextIfChanged(m_validate, tr("validate") + '\n' + tr("✓ %1   ✗ %2").arg(count(c.valid), count(c.invalid)) + '\n' +
                            tr("%1 invalid · %2 unplanned").arg(percent(c.invalid, checked), count(c.unplanned)));
        m_validate->setToolTip(tr("Show the events that failed their schema"));
        style(m_validate, checked == 0 ? Health::Idle : c.invalid ? Health::Bad : c.unplanned ? Health::Warn : Health::Ok);
    }
    // Identity.
    {
        QString text = tr("identity") + '\n';
        if (c.identityIssues < 0) {
            text += tr("stitching %1 events").arg(count(c.valid + c.unplanned)) + '\n' + tr("issues listed at stop");
            style(m_identity, c.valid ? Health::Ok : Health::Idle);
        } else {
            text += tr("⚠ %1 issues").arg(count(std::uint64_t(c.identityIssues))) + '\n' + tr("click: their events");
            style(m_identity, c.identityIssues ? Health::Warn : c.valid ? Health::Ok : Health::Idle);
        }
        setTextIfChanged(m_identity, text);
        m_identity->setToolTip(tr("Show the events that prove an identity issue"));
    }
    // Destinations: one button each, created as they appear.
    std::map<QString, bool> seen;
    for (const DestinationStats& d : c.destinations) {
        const QString name = QString::fromStdString(d.name);
        seen[name] = true;
        QToolButton*& button = m_destinations[name];
        if (!button) {
            button = makeButton(Stage::Destination, name);
            m_layout->insertWidget(m_layout->indexOf(m_noDestinations), button);
        }
        const bool failing = d.state != DestinationState::Ok || !d.lastError.empty();
        QString text = name + '\n' + tr("✓ %1 delivered").arg(count(std::uint64_t(d.deliveredEvents))) + '\n' +
                       tr("lag %1").arg(count(std::uint64_t(std::max<std::int64_t>(0, d.lag))));
        if (d.retriedAttempts) text += tr(" · ⟳ %1").arg(count(std::uint64_t(d.retriedAttempts)));
        if (d.deadLetteredEvents) text += '\n' + tr("✗ %1 dead-lettered").arg(count(std::uint64_t(d.deadLetteredEvents)));
        if (failing && !d.lastError.empty())
            text += '\n' + QString::fromStdString(d.lastError).left(40);
        setTextIfChanged(button, text);
        button->setToolTip(tr("%1: %2%3\nClick: the events it dead-lettered")
                               .arg(name, QString::fromStdString(std::string(toString(d.state))),
                                    d.lastError.empty() ? QString() : QStringLiteral("\n") + QString::fromStdString(d.lastError)));
        style(button, d.deadLetteredEvents || d.state == DestinationState::Failing ? Health::Bad
                      : failing                                                   ? Health::Warn
                      : d.deliveredEvents                                         ? Health::Ok
                                                                                  : Health::Idle);
    }
    for (auto it = m_destinations.begin(); it != m_destinations.end();) {
        if (!seen.count(it->first)) {
            delete it->second;
            it = m_destinations.erase(it);
        } else {
            ++it;
        }
    }
    m_noDestinations->setVisible(m_destinations.empty());
}

} // namespace pipescope
