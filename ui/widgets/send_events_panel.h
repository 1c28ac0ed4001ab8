#pragma once
// "Send events here": the collector's URL and copyable snippets that point real SDKs at it
// (posthog-js, posthog-node, Segment analytics.js and analytics-node), plus a curl line.

#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;

namespace pipescope {

class SendEventsPanel : public QWidget {
    Q_OBJECT

public:
    enum Snippet { PosthogJs, PosthogNode, SegmentAnalyticsJs, SegmentNode, Curl, SnippetCount };

    explicit SendEventsPanel(QWidget* parent = nullptr);
    // An empty url: no collector (a capture opened from a file).
    void setUrl(const QString& url);
    // No collector although one was asked for (its port is taken): says why, with the snippets
    // for the address it would have had.
    void setUnavailable(const QString& reason, const QString& plannedUrl);
    QString url() const { return m_url; }
    static QString snippet(Snippet which, const QString& url);
    static QString snippetTitle(Snippet which);
    QString currentSnippet() const;
    void selectSnippet(Snippet which);

private:
    void update();

    QString m_url;
    QString m_unavailable;
    QString m_plannedUrl;
    QLabel* m_intro;
    QLineEdit* m_urlEdit;
    QComboBox* m_choice;
    QPlainTextEdit* m_code;
};

} // namespace pipescope
