#pragma once
// The event table: a window over a capture's `events` table. Rows are fetched from SQLite in
// pages of kPageRows when a view asks for them and kept in a small LRU cache; display strings
// are built the first time a cell is painted and cached with the page. A capture of millions of
// events costs the UI the pages on screen, plus (for a filtered view) one seq per matching row.
//
// Two row sets:
//   - the whole capture: row i is seq i + 1 (event seqs are dense 1..N);
//   - a filtered view: the ascending seqs that matched a filter (see EventFilterRunner).
// Live growth is announced in coalesced batches: one beginInsertRows per appendRows()/
// appendMatches() call, never one per event.

#include <QAbstractTableModel>
#include <QColor>
#include <QString>

#include <array>
#include <bitset>
#include <list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "store/capture_store.h"

namespace pipescope {

// A table row is the store's EventRow: no properties, no raw bytes, nothing to decompress (the
// inspector reads the whole event for the one selected row).
using TableRow = EventRow;

// Colours shared by the table, its legend and the pipeline strip.
struct VerdictStyle {
    QColor background;
    QColor foreground;
    QString label;
    QString description;
};
const VerdictStyle& verdictStyle(Verdict verdict);
QString verdictText(Verdict verdict);

class EventTableModel : public QAbstractTableModel {
    Q_OBJECT

public:
    enum Column { SeqColumn, TimeColumn, ReceivedColumn, StreamColumn, OriginColumn, NameColumn, DistinctIdColumn,
                  VerdictColumn, EventIdColumn, ColumnCount };
    enum Role { SortRole = Qt::UserRole, SeqRole, VerdictRole, RawRole };

    explicit EventTableModel(QObject* parent = nullptr);
    ~EventTableModel() override;

    // Opens a capture (replacing the current one) on the whole-capture row set. Throws
    // StoreError like CaptureReader.
    void open(const QString& path);
    void close();
    bool isOpen() const { return m_reader != nullptr; }
    QString path() const { return m_path; }
    const CaptureReader* reader() const { return m_reader.get(); }

    // Whole capture: re-reads the newest seq, for a capture that is still being written; new
    // rows arrive in one beginInsertRows. Returns the number of rows added.
    int refresh();
    // Whole capture: the capture holds events up to `newestSeq` (from an engine snapshot).
    int appendRows(std::int64_t newestSeq);

    // Switches to a filtered view (initially empty, filled by appendMatches) or back.
    void showFiltered();
    void showAll();
    bool isFiltered() const { return m_filtered; }
    // Filtered view: seqs that matched, ascending and after every seq already shown.
    int appendMatches(const std::vector<std::int64_t>& seqs);

    std::int64_t seqAt(int row) const;
    // The row showing `seq`, -1 when it is not in the current row set.
    int rowOfSeq(std::int64_t seq) const;
    // Every seq of the current row set, in order, for an export (`limit` bounds the copy).
    std::vector<std::int64_t> seqs() const;

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    static constexpr int kPageRows = 256;
    static constexpr std::size_t kCachedPages = 24;
    // Pages fetched from SQLite since open (for tests and the benchmark).
    std::uint64_t pagesFetched() const { return m_pagesFetched; }

private:
    struct CachedRow {
        TableRow row;
        std::array<QString, ColumnCount> text;
        std::bitset<ColumnCount> built;
    };
    using Page = std::vector<CachedRow>;
    const CachedRow* rowAt(int row) const;
    const Page& page(int pageIndex) const;
    void dropPagesFrom(int firstRow);
    void resetRows();
    QString displayText(const TableRow& row, int column) const;

    std::unique_ptr<CaptureReader> m_reader;
    QString m_path;
    bool m_filtered = false;
    int m_rows = 0;                      // whole capture: the newest seq shown
    std::vector<std::int64_t> m_matches; // filtered view
    // Least recently used pages, most recent first.
    mutable std::list<std::pair<int, Page>> m_pages;
    mutable std::unordered_map<int, decltype(m_pages)::iterator> m_pageIndex;
    mutable std::uint64_t m_pagesFetched = 0;
};

} // namespace pipescope
