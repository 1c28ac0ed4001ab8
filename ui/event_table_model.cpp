#include "event_table_model.h"

#include <QColor>
#include <QDateTime>

#include <limits>

namespace pipescope {

EventTableModel::EventTableModel(QObject* parent) : QAbstractTableModel(parent) {}
EventTableModel::~EventTableModel() = default;

void EventTableModel::open(const QString& path) {
    auto reader = std::make_unique<CaptureReader>(path.toStdString());
    beginResetModel();
    m_reader = std::move(reader);
    m_pages.clear();
    m_pageIndex.clear();
    m_rows = static_cast<int>(std::min<std::int64_t>(m_reader->eventCount(), std::numeric_limits<int>::max()));
    endResetModel();
}

void EventTableModel::close() {
    beginResetModel();
    m_reader.reset();
    m_pages.clear();
    m_pageIndex.clear();
    m_rows = 0;
    endResetModel();
}

void EventTableModel::refresh() {
    if (!m_reader) return;
    const int rows = static_cast<int>(std::min<std::int64_t>(m_reader->eventCount(), std::numeric_limits<int>::max()));
    if (rows <= m_rows) return;
    // The last page may have been cached while it was partial.
    const int lastPage = m_rows / kPageRows;
    if (const auto it = m_pageIndex.find(lastPage); it != m_pageIndex.end()) {
        m_pages.erase(it->second);
        m_pageIndex.erase(it);
    }
    beginInsertRows({}, m_rows, rows - 1);
    m_rows = rows;
    endInsertRows();
}

int EventTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : m_rows; }
int EventTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

const std::vector<StoredEvent>& EventTableModel::page(int pageIndex) const {
    if (const auto it = m_pageIndex.find(pageIndex); it != m_pageIndex.end()) {
        m_pages.splice(m_pages.begin(), m_pages, it->second);
        return it->second->second;
    }
    m_pages.emplace_front(pageIndex, m_reader->events(std::int64_t(pageIndex) * kPageRows, kPageRows));
    m_pageIndex[pageIndex] = m_pages.begin();
    if (m_pages.size() > kCachedPages) {
        m_pageIndex.erase(m_pages.back().first);
        m_pages.pop_back();
    }
    return m_pages.front().second;
}

QVariant EventTableModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid) || !m_reader)
        return {};
    const auto& rows = page(index.row() / kPageRows);
    const std::size_t offset = static_cast<std::size_t>(index.row() % kPageRows);
    if (offset >= rows.size()) return {};
    const StoredEvent& event = rows[offset];

    switch (role) {
    case SeqRole: return qlonglong(event.seq);
    case VerdictRole: return QString::fromStdString(std::string(toString(event.verdict)));
    case RawRole: return QByteArray::fromStdString(event.raw);
    case Qt::ForegroundRole:
        if (index.column() == VerdictColumn && event.verdict == Verdict::Invalid) return QColor(Qt::red);
        if (index.column() == VerdictColumn && event.verdict == Verdict::Duplicate) return QColor(Qt::darkYellow);
        return {};
    case SortRole:
        if (index.column() == SeqColumn) return qlonglong(event.seq);
        if (index.column() == TimeColumn) return event.timestamp ? QVariant(qlonglong(*event.timestamp)) : QVariant();
        [[fallthrough]];
    case Qt::DisplayRole:
        switch (static_cast<Column>(index.column())) {
        case SeqColumn: return qlonglong(event.seq);
        case TimeColumn:
            return event.timestamp
                       ? QDateTime::fromMSecsSinceEpoch(*event.timestamp, Qt::UTC).toString(Qt::ISODateWithMs)
                       : QString();
        case NameColumn: return QString::fromStdString(event.name);
        case DistinctIdColumn: return QString::fromStdString(event.distinctId);
        case StreamColumn: return QString::fromStdString(event.stream);
        case VerdictColumn: return QString::fromStdString(std::string(toString(event.verdict)));
        case OriginColumn: {
            QString origin = QString::fromStdString(event.originSource) + ':' + QString::number(event.originLine);
            if (event.originIndex >= 0) origin += '#' + QString::number(event.originIndex);
            return origin;
        }
        case ColumnCount: break;
        }
        return {};
    default: return {};
    }
}

QVariant EventTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (static_cast<Column>(section)) {
    case SeqColumn: return tr("#");
    case TimeColumn: return tr("Time (UTC)");
    case NameColumn: return tr("Event");
    case DistinctIdColumn: return tr("Distinct id");
    case StreamColumn: return tr("Stream");
    case VerdictColumn: return tr("Verdict");
    case OriginColumn: return tr("Origin");
    case ColumnCount: break;
    }
    return {};
}

} // namespace pipescope
