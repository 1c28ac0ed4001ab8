#pragma once
// A JSON document as a tree (key, value), for the inspector, keys in the order they were written. Each node knows its JSON Pointer;
// schema failures are attached at their pointers (under a prefix: the event's failures point
// into its properties) and highlighted, with every ancestor marked so a collapsed branch still
// shows that something inside it failed.

#include <QAbstractItemModel>
#include <QString>

#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace pipescope {

struct JsonFailure {
    QString pointer;  // as the validator reports it, e.g. "/items/0/sku"
    QString keyword;
    QString message;
};

class JsonTreeModel : public QAbstractItemModel {
    Q_OBJECT

public:
    enum Column { KeyColumn, ValueColumn, TypeColumn, ColumnCount };
    enum Role { PointerRole = Qt::UserRole, FailureRole, ContainsFailureRole };

    explicit JsonTreeModel(QObject* parent = nullptr);
    ~JsonTreeModel() override;

    // `failures` point into `document` at `failurePrefix` + pointer ("" for the root).
    void setDocument(const nlohmann::ordered_json& document, const std::vector<JsonFailure>& failures = {},
                     const QString& failurePrefix = {});
    void clear();

    // The index of the node at `pointer` (RFC 6901), invalid when there is none.
    QModelIndex indexOfPointer(const QString& pointer) const;
    // Failures that matched no node (e.g. a `required` property that is absent points at its
    // parent, which exists; a pointer into a missing branch would not): shown on the root.
    int unplacedFailures() const { return m_unplaced; }

    QModelIndex index(int row, int column, const QModelIndex& parent = {}) const override;
    QModelIndex parent(const QModelIndex& child) const override;
    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    // Nodes beyond this many are not built (a huge array shows its first elements and a note).
    static constexpr int kMaxNodes = 20000;

private:
    struct Node {
        QString key;
        QString value;
        QString type;
        QString pointer;
        QString failure;          // "keyword: message" lines
        bool containsFailure = false;
        int parent = -1;
        int row = 0;
        std::vector<int> children;
    };
    void build(const nlohmann::ordered_json& value, const QString& key, const QString& pointer, int parent);
    int nodeOf(const QModelIndex& index) const;

    std::vector<Node> m_nodes; // m_nodes[0] is an invisible root
    int m_unplaced = 0;
};

} // namespace pipescope
