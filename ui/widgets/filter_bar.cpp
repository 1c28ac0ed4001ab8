#include "widgets/filter_bar.h"

#include <QAbstractItemView>
#include <QCompleter>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMenu>
#include <QProgressBar>
#include <QSettings>
#include <QStringListModel>
#include <QToolButton>

#include <set>

#if PIPESCOPE_HAS_FILTER
#include "filter/filter.h"
#endif

namespace pipescope {

namespace {
constexpr int kHistoryLimit = 30;
const char* kValidStyle = "QLineEdit { background: #eaf6ea; border: 1px solid #6aa86e; padding: 2px 4px; }";
const char* kInvalidStyle = "QLineEdit { background: #fde6e8; border: 1px solid #c9364a; padding: 2px 4px; }";
const char* kNeutralStyle = "QLineEdit { padding: 2px 4px; }";

bool isWordChar(QChar c) { return c.isLetterOrNumber() || c == '_' || c == '.' || c == '$'; }
} // namespace

FilterBar::FilterBar(QWidget* parent) : QWidget(parent) {
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(6, 2, 6, 2);
    layout->setSpacing(4);
    auto* label = new QLabel(tr("Filter:"), this);
    layout->addWidget(label);
    m_edit = new QLineEdit(this);
    m_edit->setClearButtonEnabled(true);
    m_edit->setPlaceholderText(tr("e.g.  event == \"payment_completed\" && verdict == invalid   ·   properties.amount > 100"));
    m_edit->setToolTip(tr("The filter language (Help › Filter Language); Return applies, Up/Down recall, Esc cancels"));
    m_edit->installEventFilter(this);
    layout->addWidget(m_edit, 1);
    m_historyButton = new QToolButton(this);
    m_historyButton->setText(QStringLiteral("▾"));
    m_historyButton->setToolTip(tr("Recent filters (Up / Down in the field)"));
    m_historyButton->setPopupMode(QToolButton::InstantPopup);
    m_historyButton->setMenu(new QMenu(m_historyButton));
    layout->addWidget(m_historyButton);
    m_status = new QLabel(this);
    m_status->setMinimumWidth(160);
    m_status->setTextFormat(Qt::PlainText);
    layout->addWidget(m_status);
    m_progress = new QProgressBar(this);
    m_progress->setMaximumWidth(140);
    m_progress->setTextVisible(true);
    m_progress->hide();
    layout->addWidget(m_progress);
    m_cancel = new QToolButton(this);
    m_cancel->setText(tr("Cancel"));
    m_cancel->hide();
    layout->addWidget(m_cancel);
    m_clear = new QToolButton(this);
    m_clear->setText(tr("Show all"));
    m_clear->setToolTip(tr("Clear the filter"));
    layout->addWidget(m_clear);

    m_completionModel = new QStringListModel(this);
    m_completer = new QCompleter(m_completionModel, this);
    m_completer->setWidget(m_edit);
    m_completer->setCaseSensitivity(Qt::CaseInsensitive);
    m_completer->setCompletionMode(QCompleter::PopupCompletion);
    connect(m_completer, qOverload<const QString&>(&QCompleter::activated), this, &FilterBar::insertCompletion);

    m_history = QSettings().value(QStringLiteral("filter/history")).toStringList();
    connect(m_historyButton->menu(), &QMenu::aboutToShow, this, [this] {
        QMenu* menu = m_historyButton->menu();
        menu->clear();
        if (m_history.isEmpty()) menu->addAction(tr("(no filters yet)"))->setEnabled(false);
        for (const QString& h : m_history)
            menu->addAction(h, this, [this, h] {
                m_edit->setText(h);
                apply();
            });
    });
    connect(m_edit, &QLineEdit::textEdited, this, [this] {
        check();
        complete();
    });
    connect(m_edit, &QLineEdit::returnPressed, this, &FilterBar::apply);
    connect(m_cancel, &QToolButton::clicked, this, &FilterBar::cancelRequested);
    connect(m_clear, &QToolButton::clicked, this, [this] {
        m_edit->clear();
        check();
        emit clearRequested();
    });
    rebuildCompletions();
    check();
}

QString FilterBar::text() const { return m_edit->text(); }
QString FilterBar::message() const { return m_message; }

void FilterBar::showApplied(const QString& text, bool editable) {
    m_edit->setText(text);
    m_edit->setReadOnly(!editable);
    if (editable) {
        check();
    } else {
        m_edit->setStyleSheet(QString::fromLatin1(kValidStyle));
        m_valid = true;
        m_errorColumn = 0;
    }
}

bool FilterBar::check() {
    m_edit->setReadOnly(false);
    const QString text = m_edit->text();
    m_errorColumn = 0;
    if (text.trimmed().isEmpty()) {
        m_valid = true;
        m_message.clear();
        m_edit->setStyleSheet(QString::fromLatin1(kNeutralStyle));
        m_edit->setToolTip({});
        m_status->setText(tr("all events"));
        m_status->setStyleSheet({});
        return true;
    }
#if PIPESCOPE_HAS_FILTER
    const QByteArray utf8 = text.toUtf8();
    const auto result = FilterExpression::parse(std::string_view(utf8.constData(), std::size_t(utf8.size())));
    m_valid = result.ok();
    if (m_valid) {
        m_message.clear();
    } else {
        m_errorColumn = int(result.error().column());
        m_message = QString::fromStdString(result.error().describe());
        m_edit->setToolTip(QString::fromStdString(result.error().caret(std::string_view(utf8.constData(), std::size_t(utf8.size())))));
    }
#else
    m_valid = false;
    m_message = tr("the filter language is not in this build");
#endif
    m_edit->setStyleSheet(QString::fromLatin1(m_valid ? kValidStyle : kInvalidStyle));
    if (m_valid) m_edit->setToolTip(tr("Return: apply"));
    m_status->setText(m_valid ? tr("✓ Return to apply") : m_message);
    m_status->setStyleSheet(m_valid ? QStringLiteral("color: #1b6e20;") : QStringLiteral("color: #b00020;"));
    return m_valid;
}

void FilterBar::apply() {
    if (!check()) return;
    const QString text = m_edit->text().trimmed();
    if (text.isEmpty()) {
        emit clearRequested();
        return;
    }
    rememberHistory(text);
    emit applyRequested(text);
}

void FilterBar::rememberHistory(const QString& text) {
    m_history.removeAll(text);
    m_history.prepend(text);
    while (m_history.size() > kHistoryLimit) m_history.removeLast();
    m_historyIndex = -1;
    QSettings().setValue(QStringLiteral("filter/history"), m_history);
}

void FilterBar::setRunning(bool running) {
    m_progress->setVisible(running);
    m_cancel->setVisible(running);
    if (running) {
        m_progress->setRange(0, 0);
        m_status->setText(tr("filtering…"));
        m_status->setStyleSheet({});
    }
}

void FilterBar::setProgress(qint64 scanned, qint64 total) {
    if (total <= 0) return;
    m_progress->setRange(0, 1000);
    m_progress->setValue(int(std::min<qint64>(1000, scanned * 1000 / total)));
    m_progress->setFormat(QStringLiteral("%p%"));
}

void FilterBar::setMatches(qint64 matches, bool complete) {
    m_matches = matches;
    m_status->setText(complete ? tr("✓ %1 rows").arg(QLocale().toString(matches))
                               : tr("%1 rows so far…").arg(QLocale().toString(matches)));
    m_status->setStyleSheet(QStringLiteral("color: #1b6e20;"));
}

void FilterBar::addEventNames(const QStringList& names) {
    bool changed = false;
    for (const QString& name : names)
        if (!name.isEmpty() && !m_eventNames.contains(name)) {
            m_eventNames << name;
            changed = true;
        }
    if (changed) rebuildCompletions();
}

QStringList FilterBar::completions() const { return m_completionModel->stringList(); }

void FilterBar::rebuildCompletions() {
    QStringList words;
#if PIPESCOPE_HAS_FILTER
    for (const FilterField& field : filterFields(FilterTarget::Events)) {
        words << QString::fromUtf8(field.name.data(), qsizetype(field.name.size()));
        for (const auto& value : field.values) words << QString::fromUtf8(value.data(), qsizetype(value.size()));
    }
    for (const auto& keyword : filterKeywords())
        if (!keyword.empty() && keyword.front() >= 'a' && keyword.front() <= 'z')
            words << QString::fromUtf8(keyword.data(), qsizetype(keyword.size()));
#endif
    for (const QString& name : m_eventNames) words << '"' + name + '"';
    words.removeDuplicates();
    words.sort(Qt::CaseInsensitive);
    m_completionModel->setStringList(words);
}

void FilterBar::complete() {
    const QString text = m_edit->text();
    int start = m_edit->cursorPosition();
    while (start > 0 && (isWordChar(text[start - 1]) || text[start - 1] == '"')) --start;
    const QString prefix = text.mid(start, m_edit->cursorPosition() - start);
    if (prefix.size() < 1 || prefix == QStringLiteral("\"")) {
        m_completer->popup()->hide();
        return;
    }
    m_completer->setCompletionPrefix(prefix);
    if (m_completer->completionCount() == 0 ||
        (m_completer->completionCount() == 1 && m_completer->currentCompletion() == prefix)) {
        m_completer->popup()->hide();
        return;
    }
    // Under the word being completed.
    const int x = m_edit->fontMetrics().horizontalAdvance(text.left(start)) + 4;
    QRect rect(x, 0, 260, m_edit->height());
    m_completer->complete(rect);
}

void FilterBar::insertCompletion(const QString& completion) {
    const QString text = m_edit->text();
    const int end = m_edit->cursorPosition();
    int start = end;
    while (start > 0 && (isWordChar(text[start - 1]) || text[start - 1] == '"')) --start;
    m_edit->setText(text.left(start) + completion + text.mid(end));
    m_edit->setCursorPosition(start + int(completion.size()));
    check();
}

bool FilterBar::eventFilter(QObject* watched, QEvent* event) {
    if (watched == m_edit && event->type() == QEvent::KeyPress && !m_completer->popup()->isVisible()) {
        const int key = static_cast<QKeyEvent*>(event)->key();
        if ((key == Qt::Key_Up || key == Qt::Key_Down) && !m_history.isEmpty()) {
            m_historyIndex = key == Qt::Key_Up ? std::min(int(m_history.size()) - 1, m_historyIndex + 1)
                                               : std::max(-1, m_historyIndex - 1);
            m_edit->setText(m_historyIndex < 0 ? QString() : m_history[m_historyIndex]);
            check();
            return true;
        }
        if (key == Qt::Key_Escape) {
            emit cancelRequested();
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

} // namespace pipescope
