#pragma once
// The filter bar: one line in the filter language (core/filter), checked as you type — green
// when it parses, red with the error's column and message when it does not —, with a history
// (Up/Down, or the ▾ menu; kept in QSettings) and completion of field names, keywords and the
// event names seen in the capture. Return applies it; the window runs it on a worker thread and
// reports progress and the number of matching rows here, with a Cancel.

#include <QStringList>
#include <QWidget>

class QCompleter;
class QLabel;
class QLineEdit;
class QProgressBar;
class QStringListModel;
class QToolButton;

namespace pipescope {

class FilterBar : public QWidget {
    Q_OBJECT

public:
    explicit FilterBar(QWidget* parent = nullptr);

    QLineEdit* edit() const { return m_edit; }
    QString text() const;
    // Shows a filter the window applied (a click on the strip, "follow this person").
    void showApplied(const QString& text, bool editable);
    // Checks the current text; true when it parses (or is empty). Updates the colours and message.
    bool check();
    QString message() const;
    bool isValid() const { return m_valid; }
    // The byte column of the last error (1-based), 0 when none.
    int errorColumn() const { return m_errorColumn; }

    void setRunning(bool running);
    void setProgress(qint64 scanned, qint64 total);
    void setMatches(qint64 matches, bool complete);
    void addEventNames(const QStringList& names);
    QStringList history() const { return m_history; }
    QStringList completions() const;

signals:
    void applyRequested(const QString& text);
    void clearRequested();
    void cancelRequested();

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void apply();
    void complete();
    void insertCompletion(const QString& completion);
    void rememberHistory(const QString& text);
    void rebuildCompletions();

    QLineEdit* m_edit;
    QToolButton* m_historyButton;
    QLabel* m_status;
    QProgressBar* m_progress;
    QToolButton* m_cancel;
    QToolButton* m_clear;
    QCompleter* m_completer;
    QStringListModel* m_completionModel;
    QStringList m_history;
    int m_historyIndex = -1;
    QStringList m_eventNames;
    bool m_valid = true;
    int m_errorColumn = 0;
    QString m_message;
    qint64 m_matches = 0;
};

} // namespace pipescope
