#include "widgets/send_events_panel.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QVBoxLayout>

namespace pipescope {

SendEventsPanel::SendEventsPanel(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    m_intro = new QLabel(this);
    m_intro->setWordWrap(true);
    m_intro->setTextFormat(Qt::RichText);
    layout->addWidget(m_intro);

    auto* urlRow = new QHBoxLayout;
    m_urlEdit = new QLineEdit(this);
    m_urlEdit->setReadOnly(true);
    m_urlEdit->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    auto* copyUrl = new QPushButton(tr("Copy URL"), this);
    urlRow->addWidget(m_urlEdit, 1);
    urlRow->addWidget(copyUrl);
    layout->addLayout(urlRow);

    auto* choiceRow = new QHBoxLayout;
    m_choice = new QComboBox(this);
    for (int i = 0; i < SnippetCount; ++i) m_choice->addItem(snippetTitle(Snippet(i)));
    auto* copyCode = new QPushButton(tr("Copy snippet"), this);
    choiceRow->addWidget(m_choice, 1);
    choiceRow->addWidget(copyCode);
    layout->addLayout(choiceRow);

    m_code = new QPlainTextEdit(this);
    m_code->setReadOnly(true);
    m_code->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_code->setLineWrapMode(QPlainTextEdit::NoWrap);
    layout->addWidget(m_code, 1);

    connect(copyUrl, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(m_url); });
    connect(copyCode, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(currentSnippet()); });
    connect(m_choice, &QComboBox::currentIndexChanged, this, [this] { update(); });
    update();
}

void SendEventsPanel::setUrl(const QString& url) {
    m_url = url;
    m_unavailable.clear();
    m_plannedUrl.clear();
    update();
}

void SendEventsPanel::setUnavailable(const QString& reason, const QString& plannedUrl) {
    m_url.clear();
    m_unavailable = reason;
    m_plannedUrl = plannedUrl;
    update();
}

QString SendEventsPanel::currentSnippet() const {
    return snippet(Snippet(m_choice->currentIndex()), m_url.isEmpty() ? m_plannedUrl : m_url);
}
void SendEventsPanel::selectSnippet(Snippet which) { m_choice->setCurrentIndex(which); }

QString SendEventsPanel::snippetTitle(Snippet which) {
    switch (which) {
    case PosthogJs: return tr("posthog-js (browser)");
    case PosthogNode: return tr("posthog-node (server)");
    case SegmentAnalyticsJs: return tr("Segment analytics.js / analytics-next (browser)");
    case SegmentNode: return tr("Segment analytics-node (server)");
    case Curl: return tr("curl (one event)");
    case SnippetCount: break;
    }
    return {};
}

QString SendEventsPanel::snippet(Snippet which, const QString& url) {
    const QString u = url.isEmpty() ? QStringLiteral("http://127.0.0.1:8089") : url;
    switch (which) {
    case PosthogJs:
        return QStringLiteral("import posthog from 'posthog-js'\n\n"
                              "posthog.init('phc_local', {\n"
                              "  api_host: '%1',\n"
                              "  person_profiles: 'identified_only',\n"
                              "})\n"
                              "posthog.capture('signup_started', { plan: 'pro' })\n")
            .arg(u);
    case PosthogNode:
        return QStringLiteral("import { PostHog } from 'posthog-node'\n\n"
                              "const posthog = new PostHog('phc_local', { host: '%1' })\n"
                              "posthog.capture({\n"
                              "  distinctId: 'user-42',\n"
                              "  event: 'payment_completed',\n"
                              "  properties: { amount: 49.9, currency: 'EUR', order_id: 'ord_1a2b3c4d5e6f' },\n"
                              "})\n"
                              "await posthog.shutdown()\n")
            .arg(u);
    case SegmentAnalyticsJs:
        // The collector answers the source settings (cdnURL) with itself as the API host.
        return QStringLiteral("import { AnalyticsBrowser } from '@segment/analytics-next'\n\n"
                              "const analytics = AnalyticsBrowser.load({\n"
                              "  writeKey: 'wk_local',\n"
                              "  cdnURL: '%1',\n"
                              "})\n"
                              "analytics.track('Order Completed', { revenue: 49.9 })\n")
            .arg(u);
    case SegmentNode:
        return QStringLiteral("import { Analytics } from '@segment/analytics-node'\n\n"
                              "const analytics = new Analytics({ writeKey: 'wk_local', host: '%1' })\n"
                              "analytics.track({\n"
                              "  userId: 'user-42',\n"
                              "  event: 'Order Completed',\n"
                              "  properties: { revenue: 49.9 },\n"
                              "})\n"
                              "await analytics.closeAndFlush()\n")
            .arg(u);
    case Curl:
        return QStringLiteral("curl -s %1/capture/ -H 'Content-Type: application/json' -d '{\n"
                              "  \"api_key\": \"phc_local\", \"event\": \"signup_started\",\n"
                              "  \"distinct_id\": \"user-42\", \"properties\": {\"plan\": \"pro\"}\n"
                              "}'\n")
            .arg(u);
    case SnippetCount: break;
    }
    return {};
}

void SendEventsPanel::update() {
    if (!m_unavailable.isEmpty()) {
        m_intro->setText(QStringLiteral("<b>%1</b>").arg(m_unavailable.toHtmlEscaped()));
        m_urlEdit->setText(QString());
    } else if (m_url.isEmpty()) {
        m_intro->setText(tr("<b>No collector.</b> This capture was opened from a file, read-only. "
                            "Start a live pipeline with <i>File › New live capture</i> to receive events."));
        m_urlEdit->setText(QString());
    } else {
        m_intro->setText(tr("<b>Send events here.</b> Point the PostHog <code>api_host</code> or the Segment "
                            "<code>host</code> of your app at this address; every event appears in the table "
                            "as soon as it is committed."));
        m_urlEdit->setText(m_url);
    }
    m_code->setPlainText(currentSnippet());
}

} // namespace pipescope
