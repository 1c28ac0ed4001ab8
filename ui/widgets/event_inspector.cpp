#include "widgets/event_inspector.h"

#include <QDateTime>
#include <QFontDatabase>
#include <QHeaderView>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSplitter>
#include <QTabWidget>
#include <QTextBrowser>
#include <QTreeView>
#include <QTreeWidget>
#include <QUrl>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

#include "models/capture_lookup.h"
#include "models/event_table_model.h"
#include "models/json_tree_model.h"

namespace pipescope {

namespace {
QString q(const std::string& s) { return QString::fromUtf8(s.data(), qsizetype(s.size())); }
QString html(const std::string& s) { return q(s).toHtmlEscaped(); }
QString time(std::optional<std::int64_t> millis) {
    if (!millis) return QObject::tr("—");
    return QDateTime::fromMSecsSinceEpoch(*millis, Qt::UTC).toString(QStringLiteral("yyyy-MM-dd HH:mm:ss.zzz 'UTC'"));
}
QString hexDump(const std::string& bytes, std::size_t limit) {
    QString out;
    const std::size_t n = std::min(bytes.size(), limit);
    for (std::size_t row = 0; row < n; row += 16) {
        out += QStringLiteral("%1  ").arg(qulonglong(row), 8, 16, QLatin1Char('0'));
        QString ascii;
        for (std::size_t i = 0; i < 16; ++i) {
            if (row + i < n) {
                const auto c = static_cast<unsigned char>(bytes[row + i]);
                out += QStringLiteral("%1 ").arg(uint(c), 2, 16, QLatin1Char('0'));
                ascii += c >= 0x20 && c < 0x7f ? QChar(c) : QChar('.');
            } else {
                out += QStringLiteral("   ");
            }
            if (i == 7) out += ' ';
        }
        out += ' ' + ascii + '\n';
    }
    if (bytes.size() > limit) out += QObject::tr("… %1 more bytes").arg(qulonglong(bytes.size() - limit));
    return out;
}
nlohmann::ordered_json parsed(const std::string& text) {
    auto value = nlohmann::ordered_json::parse(text, nullptr, false);
    return value.is_discarded() ? nlohmann::ordered_json(text) : value;
}
} // namespace

EventInspector::EventInspector(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    auto* header = new QHBoxLayout;
    m_title = new QLabel(this);
    m_title->setTextFormat(Qt::RichText);
    m_title->setWordWrap(true);
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    header->addWidget(m_title, 1);
    m_follow = new QPushButton(tr("Follow this person"), this);
    m_follow->setToolTip(tr("Filter the table to every event of this event's person, both streams"));
    header->addWidget(m_follow, 0, Qt::AlignTop);
    layout->addLayout(header);
    m_failureSummary = new QLabel(this);
    m_failureSummary->setWordWrap(true);
    m_failureSummary->setTextFormat(Qt::RichText);
    m_failureSummary->setStyleSheet(QStringLiteral("QLabel { background: #fde6e8; color: #7a0016; border: 1px solid #e3a1aa;"
                                                   " border-radius: 3px; padding: 3px 6px; }"));
    m_failureSummary->hide();
    layout->addWidget(m_failureSummary);

    const QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    m_tabs = new QTabWidget(this);
    m_jsonModel = new JsonTreeModel(this);
    m_jsonView = new QTreeView(this);
    m_jsonView->setModel(m_jsonModel);
    m_jsonView->setUniformRowHeights(true);
    m_jsonView->setAlternatingRowColors(true);
    m_jsonView->header()->setSectionResizeMode(JsonTreeModel::KeyColumn, QHeaderView::Interactive);
    m_jsonView->header()->resizeSection(JsonTreeModel::KeyColumn, 170);
    m_jsonView->header()->resizeSection(JsonTreeModel::ValueColumn, 260);
    m_tabs->addTab(m_jsonView, tr("Event"));

    m_failures = new QTreeWidget(this);
    m_failures->setHeaderLabels({tr("Pointer"), tr("Keyword"), tr("Message")});
    m_failures->setRootIsDecorated(false);
    m_failures->setWordWrap(true);
    m_failures->header()->resizeSection(0, 130);
    m_failures->header()->resizeSection(1, 110);
    m_tabs->addTab(m_failures, tr("Failures"));

    auto* rawSplit = new QSplitter(Qt::Vertical, this);
    m_raw = new QPlainTextEdit(rawSplit);
    m_raw->setReadOnly(true);
    m_raw->setFont(mono);
    m_raw->setLineWrapMode(QPlainTextEdit::WidgetWidth);
    m_hex = new QPlainTextEdit(rawSplit);
    m_hex->setReadOnly(true);
    m_hex->setFont(mono);
    m_hex->setLineWrapMode(QPlainTextEdit::NoWrap);
    rawSplit->addWidget(m_raw);
    rawSplit->addWidget(m_hex);
    m_tabs->addTab(rawSplit, tr("Raw"));

    m_dedup = new QTextBrowser(this);
    m_dedup->setOpenLinks(false);
    m_tabs->addTab(m_dedup, tr("Dedup"));

    m_deliveries = new QTreeWidget(this);
    m_deliveries->setHeaderLabels({tr("Destination"), tr("Attempt"), tr("Started (UTC)"), tr("ms"), tr("HTTP"),
                                   tr("Outcome"), tr("Error")});
    m_deliveries->setRootIsDecorated(false);
    m_tabs->addTab(m_deliveries, tr("Deliveries"));

    m_lineage = new QTextBrowser(this);
    m_lineage->setOpenLinks(false);
    m_tabs->addTab(m_lineage, tr("Lineage"));
    layout->addWidget(m_tabs, 1);

    connect(m_follow, &QPushButton::clicked, this, [this] {
        if (m_event) emit followPerson(q(m_event->distinctId));
    });
    connect(m_failures, &QTreeWidget::itemActivated, this,
            [this](QTreeWidgetItem* item) { showFailure(item->data(0, Qt::UserRole).toString()); });
    auto jump = [this](const QUrl& url) {
        if (url.scheme() == QStringLiteral("seq")) emit jumpToSeq(url.path().toLongLong());
    };
    connect(m_dedup, &QTextBrowser::anchorClicked, this, jump);
    connect(m_lineage, &QTextBrowser::anchorClicked, this, jump);
    clear();
}

EventInspector::~EventInspector() = default;

void EventInspector::clear() {
    m_event.reset();
    m_title->setText(tr("<i>Select an event to inspect it.</i>"));
    m_follow->setEnabled(false);
    m_failureSummary->hide();
    m_jsonModel->clear();
    m_failures->clear();
    m_raw->clear();
    m_hex->clear();
    m_dedup->clear();
    m_deliveries->clear();
    m_lineage->clear();
    for (int i = 0; i < m_tabs->count(); ++i) m_tabs->setTabText(i, m_tabs->tabText(i).section(' ', 0, 0));
}

void EventInspector::showFailure(const QString& pointer) {
    const QModelIndex index = m_jsonModel->indexOfPointer(QStringLiteral("/properties") + pointer);
    if (!index.isValid()) return;
    m_tabs->setCurrentIndex(EventTab);
    m_jsonView->scrollTo(index);
    m_jsonView->setCurrentIndex(index);
}

void EventInspector::showEvent(const CaptureReader* reader, std::int64_t seq, const std::vector<std::string>& destinations) {
    if (!reader || seq <= 0) {
        clear();
        return;
    }
    std::optional<StoredEvent> found = reader->event(seq);
    if (!found) {
        clear();
        m_title->setText(tr("Event %1 is not in the capture.").arg(seq));
        return;
    }
    m_event = std::move(found);
    const StoredEvent& e = *m_event;
    const VerdictStyle& verdict = verdictStyle(e.verdict);
    m_title->setText(QStringLiteral("<b>#%1 %2</b> &nbsp;·&nbsp; %3 &nbsp;·&nbsp; %4 &nbsp;·&nbsp; "
                                    "<span style='color:%5; font-weight:bold'>%6</span>")
                         .arg(e.seq)
                         .arg(html(e.name), html(e.distinctId.empty() ? std::string("(no distinct id)") : e.distinctId),
                              html(e.stream), verdict.foreground.name(), verdict.label));
    m_follow->setEnabled(!e.distinctId.empty());

    // The event tree: the canonical fields, then the properties the schema saw.
    nlohmann::ordered_json tree = nlohmann::ordered_json::object();
    tree["event"] = e.name;
    tree["distinct_id"] = e.distinctId;
    if (!e.anonymousId.empty()) tree["anonymous_id"] = e.anonymousId;
    if (!e.userId.empty()) tree["user_id"] = e.userId;
    if (!e.aliasId.empty()) tree["alias_id"] = e.aliasId;
    tree["stream"] = e.stream;
    tree["format"] = e.format;
    if (!e.eventId.empty()) tree["id"] = e.eventId, tree["id_source"] = e.idSource;
    tree["verdict"] = std::string(toString(e.verdict));
    if (e.schemaVersion) tree["schema_version"] = e.schemaVersion;
    if (e.timestamp) tree["timestamp"] = time(e.timestamp).toStdString();
    if (e.receivedAt) tree["received_at"] = time(e.receivedAt).toStdString();
    tree["properties"] = parsed(e.properties.empty() ? std::string("{}") : e.properties);

    std::vector<JsonFailure> failures;
    const auto failuresJson = parsed(e.failures.empty() ? std::string("[]") : e.failures);
    if (failuresJson.is_array())
        for (const auto& f : failuresJson)
            if (f.is_object())
                failures.push_back({q(f.value("pointer", std::string())), q(f.value("keyword", std::string())),
                                    q(f.value("message", std::string()))});
    m_jsonModel->setDocument(tree, failures, QStringLiteral("/properties"));
    m_jsonView->expandToDepth(0);
    // Open the way to every failure.
    for (const JsonFailure& f : failures) {
        QModelIndex index = m_jsonModel->indexOfPointer(QStringLiteral("/properties") + f.pointer);
        for (QModelIndex p = index.parent(); p.isValid(); p = p.parent()) m_jsonView->expand(p);
    }

    m_failures->clear();
    for (const JsonFailure& f : failures) {
        auto* item = new QTreeWidgetItem(m_failures, {f.pointer.isEmpty() ? QStringLiteral("/") : f.pointer, f.keyword, f.message});
        item->setData(0, Qt::UserRole, f.pointer);
        item->setForeground(0, QColor(0xb0, 0x00, 0x20));
        item->setToolTip(2, f.message);
    }
    if (failures.empty()) {
        m_failureSummary->hide();
    } else {
        QString summary;
        const std::size_t shown = std::min<std::size_t>(failures.size(), 3);
        for (std::size_t i = 0; i < shown; ++i)
            summary += (i ? QStringLiteral("<br>") : QString()) +
                       QStringLiteral("✗ <b><code>%1</code></b> %2: %3")
                           .arg((failures[i].pointer.isEmpty() ? QStringLiteral("/") : failures[i].pointer).toHtmlEscaped(),
                                failures[i].keyword.toHtmlEscaped(), failures[i].message.toHtmlEscaped());
        if (failures.size() > shown) summary += tr("<br>… and %1 more (Failures tab)").arg(failures.size() - shown);
        m_failureSummary->setText(summary);
        m_failureSummary->show();
    }
    m_tabs->setTabText(FailuresTab, failures.empty() ? tr("Failures") : tr("Failures (%1)").arg(failures.size()));

    m_raw->setPlainText(q(e.raw));
    m_hex->setPlainText(hexDump(e.raw, 64 * 1024));

    // Dedup.
    const std::optional<DuplicateRecord> duplicate = e.verdict == Verdict::Duplicate ? duplicateOfEvent(*reader, seq) : std::nullopt;
    QString dedup;
    if (duplicate) {
        dedup += tr("<p><b>Duplicate</b> of ");
        if (duplicate->firstSeq) {
            dedup += QStringLiteral("<a href='seq:%1'>#%1</a>").arg(*duplicate->firstSeq);
            if (const auto first = reader->event(*duplicate->firstSeq))
                dedup += tr(" (%1, from %2)").arg(html(first->name), html(first->originSource));
        } else {
            dedup += tr("an event seen before this capture began (a restored dedup window)");
        }
        dedup += QStringLiteral("</p><table cellspacing='4'>");
        dedup += tr("<tr><td>key</td><td><code>%1</code></td></tr>").arg(html(duplicate->key));
        dedup += tr("<tr><td>key source</td><td>%1</td></tr>").arg(html(duplicate->keySource));
        dedup += tr("<tr><td>seen</td><td>%1</td></tr>").arg(time(duplicate->seen));
        if (duplicate->firstSeen)
            dedup += tr("<tr><td>first seen</td><td>%1 (gap %2 ms)</td></tr>")
                         .arg(time(duplicate->firstSeen))
                         .arg(duplicate->seen - *duplicate->firstSeen);
        dedup += QStringLiteral("</table>");
        const auto differences = parsed(duplicate->differences.empty() ? std::string("[]") : duplicate->differences);
        if (duplicate->conflicting) {
            dedup += tr("<p style='color:#b00020'><b>Conflicting:</b> same key, different content:</p><ul>");
            if (differences.is_array())
                for (const auto& d : differences) dedup += QStringLiteral("<li><code>%1</code></li>").arg(html(d.is_string() ? d.get<std::string>() : d.dump()));
            dedup += QStringLiteral("</ul>");
        } else {
            dedup += tr("<p>Same content as the first occurrence (a retry).</p>");
        }
    } else if (e.verdict == Verdict::Duplicate) {
        dedup = tr("<p>Marked duplicate, but the capture holds no duplicate record for it.</p>");
    } else {
        dedup = tr("<p>Not a duplicate.</p><p>Dedup key: <code>%1</code> (%2)</p>")
                    .arg(e.dedupKey.empty() ? tr("none: events without an id are never duplicates") : html(e.dedupKey),
                         html(e.idSource));
    }
    m_dedup->setHtml(dedup);

    // Deliveries.
    m_deliveries->clear();
    const auto deliveries = deliveriesOfEvent(*reader, seq);
    for (const auto& d : deliveries) {
        auto* item = new QTreeWidgetItem(m_deliveries, {q(d.destination), QString::number(d.attempt), time(d.startedAt),
                                                        QString::number(d.durationMillis),
                                                        d.httpStatus ? QString::number(d.httpStatus) : QString(),
                                                        q(d.outcome), q(d.error)});
        if (d.outcome != "delivered") item->setForeground(5, QColor(0xb0, 0x00, 0x20));
    }
    const auto destinationDeadLetters = destinationDeadLettersOfEvent(*reader, seq, destinations);
    m_tabs->setTabText(DeliveriesTab, deliveries.empty() ? tr("Deliveries") : tr("Deliveries (%1)").arg(deliveries.size()));

    // Lineage: where it entered, what each stage said, where it went.
    QString lineage = QStringLiteral("<ol>");
    QString origin = html(e.originSource);
    if (e.ingestId) origin += tr(", collector request #%1").arg(*e.ingestId);
    else if (e.originLine) origin += tr(", line %1").arg(e.originLine);
    if (e.originIndex >= 0) origin += tr(", element %1 of its batch").arg(e.originIndex);
    lineage += tr("<li><b>entered</b>: %1; received %2</li>").arg(origin, time(e.receivedAt));
    lineage += tr("<li><b>decoded</b> as %1, stream %2, id %3 (%4)</li>")
                   .arg(html(e.format), html(e.stream), e.eventId.empty() ? tr("none") : html(e.eventId), html(e.idSource));
    if (e.verdict == Verdict::Duplicate) {
        lineage += tr("<li><b>dedup</b>: duplicate%1 — stops here</li>")
                       .arg(duplicate && duplicate->firstSeq ? tr(" of <a href='seq:%1'>#%1</a>").arg(*duplicate->firstSeq) : QString());
    } else {
        lineage += tr("<li><b>dedup</b>: first occurrence</li>");
        if (e.verdict == Verdict::Invalid)
            lineage += tr("<li><b>validate</b>: <span style='color:#b00020'>invalid</span> against schema version %1, "
                          "%n failure(s) — dead-lettered</li>", nullptr, int(failures.size()))
                           .arg(e.schemaVersion);
        else if (e.verdict == Verdict::Unplanned)
            lineage += tr("<li><b>validate</b>: unplanned (no schema for \"%1\")</li>").arg(html(e.name));
        else
            lineage += e.schemaVersion ? tr("<li><b>validate</b>: valid against schema version %1</li>").arg(e.schemaVersion)
                                       : tr("<li><b>validate</b>: valid</li>");
        if (e.verdict != Verdict::Invalid) lineage += tr("<li><b>identity</b>: observed as %1</li>").arg(html(e.distinctId));
    }
    for (const auto& d : deliveries)
        lineage += tr("<li><b>%1</b>: attempt %2 %3%4</li>")
                       .arg(html(d.destination))
                       .arg(d.attempt)
                       .arg(html(d.outcome), d.httpStatus ? tr(" (HTTP %1)").arg(d.httpStatus) : QString());
    for (const auto& [destination, reason] : destinationDeadLetters)
        lineage += tr("<li><b>%1</b>: <span style='color:#b00020'>dead-lettered</span>: %2</li>").arg(html(destination), html(reason));
    for (const auto& dlq : deadLettersOfEvent(*reader, seq))
        lineage += tr("<li><b>dead letter</b> #%1: %2</li>").arg(dlq.seq).arg(html(dlq.reason));
    lineage += QStringLiteral("</ol>");
    m_lineage->setHtml(lineage);

    if (!failures.empty() && m_tabs->currentIndex() == DedupTab) m_tabs->setCurrentIndex(EventTab);
}

} // namespace pipescope
