#pragma once
// The event table: a window over a capture's `events` table. Rows are fetched from SQLite in
// pages when a view asks for them and kept in a small cache, so a capture of millions of events
// costs the UI only the pages on screen.

#include <QAbstractTableModel>
#include <QString>

#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "store/capture_store.h"

namespace pipescope {

class EventTableModel : public QAbstractTableModel {
    Q_OBJECT

public:
    enum Column { SeqColumn, TimeColumn, NameColumn, DistinctIdColumn, StreamColumn, VerdictColumn, OriginColumn,
                  ColumnCount };
    enum Role { SortRole = Qt::UserRole, SeqRole, VerdictRole, RawRole };

    explicit EventTableModel(QObject* parent = nullptr);
    ~EventTableModel() override;

    // Opens a capture (replacing the current one). Throws StoreError like CaptureReader.
    void open(const QString& path);
    void close();
    // Re-reads the row count, for a capture that is still being written; new rows are
    // announced with one beginInsertRows for the whole batch.
    void refresh();

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    static constexpr int kPageRows = 256;
    static constexpr std::size_t kCachedPages = 16;

private:
    const std::vector<StoredEvent>& page(int pageIndex) const;

    std::unique_ptr<CaptureReader> m_reader;
    int m_rows = 0;
    // Least recently used pages, most recent first.
    mutable std::list<std::pair<int, std::vector<StoredEvent>>> m_pages;
    mutable std::unordered_map<int, decltype(m_pages)::iterator> m_pageIndex;
};

} // namespace pipescope
