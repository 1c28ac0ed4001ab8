#include "models/event_table_model.h"

#include <QDateTime>
#include <QLocale>

#include <algorithm>
#include <limits>


namespace pipescope {

namespace {
constexpr std::int64_t kMaxRows = std::numeric_limits<int>::max();

QString fromStd(const std::string& text) { return QString::fromUtf8(text.data(), qsizetype(text.size())); }

QString timeText(const std::optional<std::int64_t>& millis) {
    if (!millis) return {};
    return QDateTime::fromMSecsSinceEpoch(*millis, Qt::UTC).toString(QStringLiteral("yyyy-MM-dd HH:mm:ss.zzz"));
}
} // namespace

const VerdictStyle& verdictStyle(Verdict verdict) {
    // Light tints that keep black text readable, each with a darker text colour for the verdict
    // cell itself; chosen to stay distinguishable for the common colour-vision deficiencies
    // (blue/orange/red-purple rather than red/green alone).
    static const VerdictStyle valid{QColor(0xf4, 0xfa, 0xf4), QColor(0x1b, 0x6e, 0x20), QObject::tr("valid"),
                                    QObject::tr("passed its schema (or no schema is required)")};
    static const VerdictStyle invalid{QColor(0xfd, 0xe4, 0xe4), QColor(0xb0, 0x00, 0x20), QObject::tr("invalid"),
                                      QObject::tr("failed its schema: dead-lettered, never delivered")};
    static const VerdictStyle unplanned{QColor(0xe6, 0xef, 0xfb), QColor(0x1a, 0x4f, 0x9c), QObject::tr("unplanned"),
                                        QObject::tr("no schema for this event name (policy decides)")};
    static const VerdictStyle duplicate{QColor(0xfd, 0xf0, 0xd8), QColor(0x8a, 0x4b, 0x00), QObject::tr("duplicate"),
                                        QObject::tr("seen before within the dedup window: not validated, not delivered")};
    switch (verdict) {
    case Verdict::Valid: return valid;
    case Verdict::Invalid: return invalid;
    case Verdict::Unplanned: return unplanned;
    case Verdict::Duplicate: return duplicate;
    }
    return valid;
}

QString verdictText(Verdict verdict) { return fromStd(std::string(toString(verdict))); }

EventTableModel::EventTableModel(QObject* parent) : QAbstractTableModel(parent) {}
EventTableModel::~EventTableModel() = default;

void EventTableModel::open(const QString& path) {
    auto reader = std::make_unique<CaptureReader>(path.toStdString());
    const std::int64_t newest = reader->maxEventSeq();
    beginResetModel();
    m_reader = std::move(reader);
    m_path = path;
    m_filtered = false;
    m_matches.clear();
    m_pages.clear();
    m_pageIndex.clear();
    m_rows = int(std::min(newest, kMaxRows));
    endResetModel();
}

void EventTableModel::close() {
    beginResetModel();
    m_reader.reset();
    m_path.clear();
    m_filtered = false;
    m_matches.clear();
    m_pages.clear();
    m_pageIndex.clear();
    m_rows = 0;
    endResetModel();
}

int EventTableModel::refresh() {
    if (!m_reader) return 0;
    return appendRows(m_reader->maxEventSeq());
}

void EventTableModel::dropPagesFrom(int firstRow) {
    // A page that was cached while it was partial must be read again.
    for (int p = firstRow / kPageRows; p <= (firstRow + kPageRows) / kPageRows; ++p)
        if (const auto it = m_pageIndex.find(p); it != m_pageIndex.end()) {
            m_pages.erase(it->second);
            m_pageIndex.erase(it);
        }
}

int EventTableModel::appendRows(std::int64_t newestSeq) {
    if (!m_reader || m_filtered) return 0;
    const int rows = int(std::min(newestSeq, kMaxRows));
    if (rows <= m_rows) return 0;
    dropPagesFrom(m_rows);
    const int added = rows - m_rows;
    beginInsertRows({}, m_rows, rows - 1);
    m_rows = rows;
    endInsertRows();
    return added;
}

void EventTableModel::resetRows() {
    m_pages.clear();
    m_pageIndex.clear();
    m_matches.clear();
}

void EventTableModel::showFiltered() {
    beginResetModel();
    resetRows();
    m_filtered = true;
    endResetModel();
}

void EventTableModel::showAll() {
    beginResetModel();
    resetRows();
    m_filtered = false;
    m_rows = m_reader ? int(std::min(m_reader->maxEventSeq(), kMaxRows)) : 0;
    endResetModel();
}

int EventTableModel::appendMatches(const std::vector<std::int64_t>& seqs) {
    if (!m_filtered || seqs.empty()) return 0;
    const std::int64_t last = m_matches.empty() ? 0 : m_matches.back();
    auto first = std::upper_bound(seqs.begin(), seqs.end(), last);
    const std::size_t room = std::size_t(kMaxRows) - m_matches.size();
    const std::size_t count = std::min<std::size_t>(std::size_t(seqs.end() - first), room);
    if (count == 0) return 0;
    const int firstRow = int(m_matches.size());
    dropPagesFrom(firstRow);
    beginInsertRows({}, firstRow, firstRow + int(count) - 1);
    m_matches.insert(m_matches.end(), first, first + std::ptrdiff_t(count));
    endInsertRows();
    return int(count);
}

std::int64_t EventTableModel::seqAt(int row) const {
    if (row < 0 || row >= rowCount()) return 0;
    return m_filtered ? m_matches[std::size_t(row)] : std::int64_t(row) + 1;
}

int EventTableModel::rowOfSeq(std::int64_t seq) const {
    if (!m_filtered) return seq >= 1 && seq <= m_rows ? int(seq - 1) : -1;
    const auto it = std::lower_bound(m_matches.begin(), m_matches.end(), seq);
    return it != m_matches.end() && *it == seq ? int(it - m_matches.begin()) : -1;
}

std::vector<std::int64_t> EventTableModel::seqs() const {
    if (m_filtered) return m_matches;
    std::vector<std::int64_t> all(static_cast<std::size_t>(m_rows));
    for (int i = 0; i < m_rows; ++i) all[std::size_t(i)] = i + 1;
    return all;
}

int EventTableModel::rowCount(const QModelIndex& parent) const {
    if (parent.isValid()) return 0;
    return m_filtered ? int(m_matches.size()) : m_rows;
}
int EventTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

const EventTableModel::Page& EventTableModel::page(int pageIndex) const {
    const int firstRow = pageIndex * kPageRows;
    const int rows = std::min(kPageRows, rowCount() - firstRow);
    if (const auto it = m_pageIndex.find(pageIndex); it != m_pageIndex.end()) {
        if (int(it->second->second.size()) >= rows) {
            m_pages.splice(m_pages.begin(), m_pages, it->second);
            return it->second->second;
        }
        // Cached while it was the partial last page (e.g. read by a view during an insert).
        m_pages.erase(it->second);
        m_pageIndex.erase(it);
    }
    ++m_pagesFetched;
    Page rowsOfPage(std::size_t(std::max(0, rows)));
    if (rows > 0) {
        if (!m_filtered) {
            // Dense seqs: the page holds seqs firstRow+1 .. firstRow+rows; each row goes where its
            // seq says, so a capture with a gap would show an empty row rather than shifted ones.
            for (EventRow& row : m_reader->rowsAfter(firstRow, rows)) {
                const std::int64_t slot = row.seq - 1 - firstRow;
                if (slot >= 0 && slot < rows) rowsOfPage[std::size_t(slot)].row = std::move(row);
            }
        } else {
            const auto first = m_matches.begin() + firstRow;
            std::size_t next = 0;
            for (EventRow& row : m_reader->rowsOf(std::vector<std::int64_t>(first, first + rows))) {
                while (next < std::size_t(rows) && m_matches[std::size_t(firstRow) + next] < row.seq) ++next;
                if (next < std::size_t(rows) && m_matches[std::size_t(firstRow) + next] == row.seq)
                    rowsOfPage[next++].row = std::move(row);
            }
        }
    }
    m_pages.emplace_front(pageIndex, std::move(rowsOfPage));
    m_pageIndex[pageIndex] = m_pages.begin();
    if (m_pages.size() > kCachedPages) {
        m_pageIndex.erase(m_pages.back().first);
        m_pages.pop_back();
    }
    return m_pages.front().second;
}

const EventTableModel::CachedRow* EventTableModel::rowAt(int row) const {
    if (!m_reader || row < 0 || row >= rowCount()) return nullptr;
    const Page& rows = page(row / kPageRows);
    const std::size_t offset = std::size_t(row % kPageRows);
    if (offset >= rows.size() || rows[offset].row.seq == 0) return nullptr;
    return &rows[offset];
}

QString EventTableModel::displayText(const TableRow& row, int column) const {
    switch (static_cast<Column>(column)) {
    case SeqColumn: return QString::number(row.seq);
    case TimeColumn: return timeText(row.timestamp);
    case ReceivedColumn: return timeText(row.receivedAt);
    case StreamColumn: return fromStd(row.stream);
    case OriginColumn: {
        // A file shows by its name (the tooltip has the path); a collector path as it is.
        QString origin = fromStd(row.originSource);
        if (!origin.startsWith(QStringLiteral("http"))) origin = origin.section('/', -1);
        if (row.ingestId) {
            origin += QStringLiteral(" #%1").arg(*row.ingestId);
        } else if (row.originLine) {
            origin += ':' + QString::number(row.originLine);
        }
        if (row.originIndex >= 0) origin += '[' + QString::number(row.originIndex) + ']';
        return origin;
    }
    case NameColumn: return fromStd(row.name);
    case DistinctIdColumn: return fromStd(row.distinctId);
    case VerdictColumn: return verdictText(row.verdict);
    case EventIdColumn: return fromStd(row.eventId);
    case ColumnCount: break;
    }
    return {};
}

QVariant EventTableModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const CachedRow* cached = rowAt(index.row());
    if (!cached) return {};
    const TableRow& row = cached->row;
    const int column = index.column();

    switch (role) {
    case Qt::DisplayRole:
    case Qt::ToolTipRole:
        if (!cached->built.test(std::size_t(column))) {
            auto& mutableRow = const_cast<CachedRow&>(*cached);
            mutableRow.text[std::size_t(column)] = displayText(row, column);
            mutableRow.built.set(std::size_t(column));
        }
        if (role == Qt::ToolTipRole && column == VerdictColumn) return verdictStyle(row.verdict).description;
        if (role == Qt::ToolTipRole && column == OriginColumn)
            return fromStd(row.originSource) + (row.originLine ? QStringLiteral(":%1").arg(row.originLine) : QString());
        return cached->text[std::size_t(column)];
    case Qt::BackgroundRole: return verdictStyle(row.verdict).background;
    case Qt::ForegroundRole:
        if (column == VerdictColumn) return verdictStyle(row.verdict).foreground;
        return QColor(Qt::black);
    case Qt::TextAlignmentRole:
        if (column == SeqColumn) return int(Qt::AlignRight | Qt::AlignVCenter);
        return {};
    case SeqRole: return qlonglong(row.seq);
    case VerdictRole: return verdictText(row.verdict);
    case RawRole: {
        const auto event = m_reader->event(row.seq);
        return event ? QByteArray::fromStdString(event->raw) : QByteArray();
    }
    case SortRole:
        switch (static_cast<Column>(column)) {
        case SeqColumn: return qlonglong(row.seq);
        case TimeColumn: return row.timestamp ? QVariant(qlonglong(*row.timestamp)) : QVariant();
        case ReceivedColumn: return row.receivedAt ? QVariant(qlonglong(*row.receivedAt)) : QVariant();
        default: return displayText(row, column);
        }
    default: return {};
    }
}

QVariant EventTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal) return {};
    if (role == Qt::ToolTipRole) {
        switch (static_cast<Column>(section)) {
        case SeqColumn: return tr("The event's sequence number in the capture");
        case TimeColumn: return tr("The event's own timestamp, UTC");
        case ReceivedColumn: return tr("When the collector received it, UTC");
        case OriginColumn: return tr("Where it entered: file:line or collector path #request, [index in batch]");
        case VerdictColumn: return tr("What the pipeline decided; invalid rows show their first failure");
        default: return {};
        }
    }
    if (role != Qt::DisplayRole) return {};
    switch (static_cast<Column>(section)) {
    case SeqColumn: return tr("Seq");
    case TimeColumn: return tr("Time (UTC)");
    case ReceivedColumn: return tr("Received (UTC)");
    case StreamColumn: return tr("Stream");
    case OriginColumn: return tr("Origin");
    case NameColumn: return tr("Event");
    case DistinctIdColumn: return tr("Distinct id");
    case VerdictColumn: return tr("Verdict");
    case EventIdColumn: return tr("Event id");
    case ColumnCount: break;
    }
    return {};
}

} // namespace pipescope
