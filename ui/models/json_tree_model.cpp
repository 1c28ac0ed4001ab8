#include "models/json_tree_model.h"

#include <QColor>
#include <QFont>

#include <nlohmann/json.hpp>

namespace pipescope {

namespace {
QString escapePointerToken(QString token) {
    token.replace('~', QStringLiteral("~0"));
    token.replace('/', QStringLiteral("~1"));
    return token;
}

QString scalarText(const nlohmann::ordered_json& value) {
    if (value.is_string()) return QString::fromStdString(value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return QString::fromStdString(value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

QString typeName(const nlohmann::ordered_json& value) {
    switch (value.type()) {
    case nlohmann::ordered_json::value_t::object: return QStringLiteral("object");
    case nlohmann::ordered_json::value_t::array: return QStringLiteral("array");
    case nlohmann::ordered_json::value_t::string: return QStringLiteral("string");
    case nlohmann::ordered_json::value_t::boolean: return QStringLiteral("boolean");
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return QStringLiteral("integer");
    case nlohmann::ordered_json::value_t::number_float: return QStringLiteral("number");
    case nlohmann::ordered_json::value_t::null: return QStringLiteral("null");
    default: return QStringLiteral("?");
    }
}
} // namespace

JsonTreeModel::JsonTreeModel(QObject* parent) : QAbstractItemModel(parent) { m_nodes.push_back({}); }
JsonTreeModel::~JsonTreeModel() = default;

void JsonTreeModel::clear() {
    beginResetModel();
    m_nodes.clear();
    m_nodes.push_back({});
    m_unplaced = 0;
    endResetModel();
}

void JsonTreeModel::build(const nlohmann::ordered_json& value, const QString& key, const QString& pointer, int parent) {
    if (int(m_nodes.size()) >= kMaxNodes) return;
    const int id = int(m_nodes.size());
    Node node;
    node.key = key;
    node.pointer = pointer;
    node.parent = parent;
    node.row = int(m_nodes[std::size_t(parent)].children.size());
    node.type = typeName(value);
    if (value.is_object()) node.value = tr("{%n keys}", nullptr, int(value.size()));
    else if (value.is_array()) node.value = tr("[%n items]", nullptr, int(value.size()));
    else node.value = scalarText(value);
    m_nodes.push_back(std::move(node));
    m_nodes[std::size_t(parent)].children.push_back(id);
    if (value.is_object()) {
        for (const auto& [k, v] : value.items()) {
            const QString childKey = QString::fromStdString(k);
            build(v, childKey, pointer + '/' + escapePointerToken(childKey), id);
        }
    } else if (value.is_array()) {
        int i = 0;
        for (const auto& v : value) {
            build(v, QStringLiteral("[%1]").arg(i), pointer + '/' + QString::number(i), id);
            ++i;
        }
    }
    if (int(m_nodes.size()) >= kMaxNodes && parent == 0) {
        Node note;
        note.key = tr("…");
        note.value = tr("document truncated at %1 nodes; see the Raw tab").arg(kMaxNodes);
        note.parent = 0;
        note.row = int(m_nodes[0].children.size());
        m_nodes.push_back(note);
        m_nodes[0].children.push_back(int(m_nodes.size()) - 1);
    }
}

void JsonTreeModel::setDocument(const nlohmann::ordered_json& document, const std::vector<JsonFailure>& failures,
                                const QString& failurePrefix) {
    beginResetModel();
    m_nodes.clear();
    m_nodes.push_back({});
    m_unplaced = 0;
    if (document.is_object() || document.is_array()) {
        // The document's members are the top-level rows (its own node would only add a level).
        if (document.is_object()) {
            for (const auto& [k, v] : document.items()) {
                const QString key = QString::fromStdString(k);
                build(v, key, '/' + escapePointerToken(key), 0);
            }
        } else {
            int i = 0;
            for (const auto& v : document) build(v, QStringLiteral("[%1]").arg(i), '/' + QString::number(i++), 0);
        }
    } else {
        build(document, tr("(value)"), QString(), 0);
    }
    for (const JsonFailure& failure : failures) {
        const QString pointer = failurePrefix + failure.pointer;
        int id = -1;
        for (std::size_t i = 1; i < m_nodes.size(); ++i)
            if (m_nodes[i].pointer == pointer) {
                id = int(i);
                break;
            }
        if (id < 0) {
            ++m_unplaced;
            continue;
        }
        Node& node = m_nodes[std::size_t(id)];
        node.failure += (node.failure.isEmpty() ? QString() : QStringLiteral("\n")) + failure.keyword +
                        QStringLiteral(": ") + failure.message;
        for (int p = node.parent; p > 0; p = m_nodes[std::size_t(p)].parent) m_nodes[std::size_t(p)].containsFailure = true;
    }
    endResetModel();
}

QModelIndex JsonTreeModel::indexOfPointer(const QString& pointer) const {
    for (std::size_t i = 1; i < m_nodes.size(); ++i)
        if (m_nodes[i].pointer == pointer) return createIndex(m_nodes[i].row, 0, quintptr(i));
    return {};
}

int JsonTreeModel::nodeOf(const QModelIndex& index) const { return index.isValid() ? int(index.internalId()) : 0; }

QModelIndex JsonTreeModel::index(int row, int column, const QModelIndex& parent) const {
    if (column < 0 || column >= ColumnCount || row < 0) return {};
    if (parent.isValid() && parent.column() != 0) return {};
    const Node& p = m_nodes[std::size_t(nodeOf(parent))];
    if (row >= int(p.children.size())) return {};
    return createIndex(row, column, quintptr(p.children[std::size_t(row)]));
}

QModelIndex JsonTreeModel::parent(const QModelIndex& child) const {
    if (!child.isValid()) return {};
    const int parentId = m_nodes[std::size_t(nodeOf(child))].parent;
    if (parentId <= 0) return {};
    return createIndex(m_nodes[std::size_t(parentId)].row, 0, quintptr(parentId));
}

int JsonTreeModel::rowCount(const QModelIndex& parent) const {
    if (parent.isValid() && parent.column() != 0) return 0;
    return int(m_nodes[std::size_t(nodeOf(parent))].children.size());
}

int JsonTreeModel::columnCount(const QModelIndex&) const { return ColumnCount; }

QVariant JsonTreeModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid)) return {};
    const Node& node = m_nodes[std::size_t(nodeOf(index))];
    switch (role) {
    case Qt::DisplayRole:
        switch (index.column()) {
        case KeyColumn: return node.key;
        case ValueColumn: return node.failure.isEmpty() ? node.value : node.value + QStringLiteral("   ✗ ") + node.failure.section('\n', 0, 0);
        case TypeColumn: return node.type;
        }
        return {};
    case Qt::ToolTipRole:
        if (!node.failure.isEmpty()) return node.pointer + QStringLiteral("\n") + node.failure;
        return node.pointer.isEmpty() ? QVariant() : QVariant(node.pointer);
    case Qt::BackgroundRole:
        if (!node.failure.isEmpty()) return QColor(0xfd, 0xd0, 0xd0);
        return {};
    case Qt::ForegroundRole:
        if (!node.failure.isEmpty()) return QColor(0x90, 0x00, 0x18);
        if (node.containsFailure && index.column() == KeyColumn) return QColor(0xb0, 0x00, 0x20);
        if (index.column() == TypeColumn) return QColor(Qt::darkGray);
        return {};
    case Qt::FontRole:
        if (!node.failure.isEmpty() || (node.containsFailure && index.column() == KeyColumn)) {
            QFont font;
            font.setBold(true);
            return font;
        }
        return {};
    case PointerRole: return node.pointer;
    case FailureRole: return node.failure;
    case ContainsFailureRole: return node.containsFailure;
    default: return {};
    }
}

QVariant JsonTreeModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
    case KeyColumn: return tr("Key");
    case ValueColumn: return tr("Value");
    case TypeColumn: return tr("Type");
    }
    return {};
}

} // namespace pipescope
