// Filters in SQLite: the translation of a filter's field tests into a WHERE with the filter's
// exact semantics, the PCRE2 function it calls for regexes, and CaptureFilter, which counts or
// lists the matching records of a capture file.

#include "filter/filter_sql.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>

#include "filter/filter_ast.h"
#include "store/capture_store.h"

namespace pipescope {

using namespace filter_detail;

namespace {

struct Column {
    std::string_view sql;
    bool text;
};

Column columnOf(FieldId field, FilterTarget target) {
    const bool events = target == FilterTarget::Events;
    switch (field) {
    case FieldId::Event: return {events ? "name" : "event_name", true};
    case FieldId::DistinctId: return {"distinct_id", true};
    case FieldId::Stream: return {"stream", true};
    case FieldId::Verdict: return {"verdict", true};
    case FieldId::Origin: return {"origin_source", true};
    case FieldId::Time: return {events ? "coalesce(timestamp, received_at)" : "created_at", false};
    case FieldId::Received: return {events ? "received_at" : "created_at", false};
    case FieldId::Id: return {"event_id", true};
    case FieldId::Seq: return {"seq", false};
    case FieldId::Format: return {"format", true};
    case FieldId::AnonymousId: return {"anonymous_id", true};
    case FieldId::UserId: return {"user_id", true};
    case FieldId::Ingest: return {"ingest_id", false};
    case FieldId::Reason: return {"reason", true};
    case FieldId::Detail: return {"detail", true};
    }
    return {"NULL", false};
}

class Translator {
public:
    explicit Translator(const FilterExpression::Impl& impl, FilterSql& out) : m_impl(impl), m_out(out) {}

    struct Part {
        bool translated = false;
        bool exact = false;
        std::string sql;
    };

    Part node(const Node& n) {
        switch (n.kind) {
        case Node::Kind::All: return {true, true, "1"};
        case Node::Kind::And: {
            Part out{false, true, {}};
            for (const auto& child : n.children) {
                Part p = node(child);
                if (!p.translated) {
                    out.exact = false;  // dropped: what is left lets more rows through
                    continue;
                }
                out.exact = out.exact && p.exact;
                if (out.translated) out.sql += " AND ";
                out.sql += p.sql;
                out.translated = true;
            }
            if (out.translated) out.sql = "(" + out.sql + ")";
            return out;
        }
        case Node::Kind::Or: {
            Part out{true, true, {}};
            const std::size_t mark = m_out.params.size();
            for (std::size_t i = 0; i < n.children.size(); ++i) {
                Part p = node(n.children[i]);
                if (!p.translated) {
                    m_out.params.resize(mark);  // an untranslatable branch: the whole `||` is
                    return {};
                }
                out.exact = out.exact && p.exact;
                if (i) out.sql += " OR ";
                out.sql += p.sql;
            }
            out.sql = "(" + out.sql + ")";
            return out;
        }
        case Node::Kind::Not: {
            const std::size_t mark = m_out.params.size();
            Part p = node(n.children.front());
            // NOT of a superset is not a subset: only an exact test can be negated.
            if (!p.translated || !p.exact) {
                m_out.params.resize(mark);
                return {};
            }
            return {true, true, "(NOT " + p.sql + ")"};
        }
        case Node::Kind::Exists: {
            if (n.lhs.kind != Operand::Kind::Field) return {};
            const Column c = columnOf(n.lhs.field, m_impl.target);
            return {true, true, c.text ? "(coalesce(" + std::string(c.sql) + ", '') <> '')"
                                       : "(" + std::string(c.sql) + " IS NOT NULL)"};
        }
        case Node::Kind::Compare: {
            if (n.lhs.kind == Operand::Kind::Property || n.rhs.kind == Operand::Kind::Property) return {};
            static constexpr std::string_view ops[] = {" = ", " <> ", " < ", " <= ", " > ", " >= "};
            std::string guard;
            const std::string a = operand(n.lhs, guard);
            const std::string b = operand(n.rhs, guard);
            return {true, true, "coalesce(" + guard + a + std::string(ops[static_cast<std::size_t>(n.op)]) + b + ", 0)"};
        }
        case Node::Kind::In: {
            if (n.lhs.kind != Operand::Kind::Field) return {};
            std::string guard;
            const std::string a = operand(n.lhs, guard);
            std::string list;
            for (std::size_t i = 0; i < n.set.size(); ++i) {
                if (i) list += ", ";
                list += literal(n.set[i]);
            }
            return {true, true, "coalesce(" + guard + a + (n.negated ? " NOT IN (" : " IN (") + list + "), 0)"};
        }
        case Node::Kind::Match:
        case Node::Kind::Contains: {
            if (n.lhs.kind != Operand::Kind::Field) return {};
            std::string guard;
            const std::string a = operand(n.lhs, guard);
            const std::string pattern = literal(n.rhs.literal);
            if (n.kind == Node::Kind::Contains) return {true, true, "coalesce(" + guard + "instr(" + a + ", " + pattern + ") > 0, 0)"};
            m_out.usesRegexp = true;
            return {true, true,
                    "coalesce(" + guard + (n.negated ? "NOT " : "") + "pipescope_regexp(" + pattern + ", " + a + "), 0)"};
        }
        }
        return {};
    }

private:
    // A field's column (and, for text, a guard that it is not empty: empty text does not
    // exist), or a bound literal.
    std::string operand(const Operand& o, std::string& guard) {
        if (o.kind == Operand::Kind::Literal) return literal(o.literal);
        const Column c = columnOf(o.field, m_impl.target);
        if (c.text) guard += std::string(c.sql) + " <> '' AND ";
        return std::string(c.sql);
    }

    std::string literal(const Literal& l) {
        switch (l.type) {
        case ValueType::String: m_out.params.emplace_back(l.text); break;
        case ValueType::Number:
            if (l.isInt) m_out.params.emplace_back(l.integer);
            else m_out.params.emplace_back(l.real);
            break;
        default: return "NULL";  // booleans and null never meet a field (the parser refuses them)
        }
        return "?" + std::to_string(m_out.params.size());
    }

    const FilterExpression::Impl& m_impl;
    FilterSql& m_out;
};

// pipescope_regexp(pattern, text): the compiled pattern is kept with the statement.
void regexpFunction(sqlite3_context* context, int, sqlite3_value** argv) {
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return sqlite3_result_null(context);
    auto* regex = static_cast<FilterRegex*>(sqlite3_get_auxdata(context, 0));
    std::unique_ptr<FilterRegex> compiled;
    if (!regex) {
        const auto* pattern = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
        const std::string_view source(pattern ? pattern : "", std::size_t(sqlite3_value_bytes(argv[0])));
        std::string message;
        std::size_t offset = 0;
        compiled = FilterRegex::compile(source, &message, &offset);
        if (!compiled) {
            sqlite3_result_error(context, ("invalid regex at " + std::to_string(offset) + ": " + message).c_str(), -1);
            return;
        }
        regex = compiled.get();
    }
    const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
    const bool found = regex->search(std::string_view(text ? text : "", std::size_t(sqlite3_value_bytes(argv[1]))));
    // Handed over after use: SQLite may free it at once when it cannot keep it.
    if (compiled) sqlite3_set_auxdata(context, 0, compiled.release(), [](void* p) { delete static_cast<FilterRegex*>(p); });
    sqlite3_result_int(context, found);
}

struct Database {
    sqlite3* db = nullptr;
    ~Database() { sqlite3_close(db); }
};

struct Query {
    sqlite3_stmt* statement = nullptr;
    Query(sqlite3* db, const std::string& sql, const std::vector<SqlParam>& params) {
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK)
            throw StoreError(std::string("filter query failed: ") + sqlite3_errmsg(db));
        for (std::size_t i = 0; i < params.size(); ++i) {
            const int at = int(i + 1);
            if (const auto* n = std::get_if<std::int64_t>(&params[i])) sqlite3_bind_int64(statement, at, *n);
            else if (const auto* d = std::get_if<double>(&params[i])) sqlite3_bind_double(statement, at, *d);
            else {
                const auto& s = std::get<std::string>(params[i]);
                sqlite3_bind_text(statement, at, s.data(), int(s.size()), SQLITE_TRANSIENT);
            }
        }
    }
    ~Query() { sqlite3_finalize(statement); }
    bool next(sqlite3* db) {
        const int rc = sqlite3_step(statement);
        if (rc == SQLITE_ROW) return true;
        if (rc != SQLITE_DONE) throw StoreError(std::string("filter query failed: ") + sqlite3_errmsg(db));
        return false;
    }
};

std::string_view columnText(sqlite3_stmt* s, int i) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return text ? std::string_view(text, std::size_t(sqlite3_column_bytes(s, i))) : std::string_view();
}

std::optional<std::int64_t> columnOptional(sqlite3_stmt* s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(s, i);
}

constexpr std::int64_t kProgressEvery = 1024;
// Reading one event by its seq costs about as much as scanning a handful in order; below this
// share of candidates, fetching them one by one beats decoding every event.
constexpr std::int64_t kFetchRatio = 8;

} // namespace

FilterSql toSql(const FilterExpression& filter) {
    FilterSql out;
    const FilterExpression::Impl& impl = filter.internals();
    Translator translator(impl, out);
    const Translator::Part part = translator.node(impl.root);
    if (!part.translated) {
        out.params.clear();
        out.usesRegexp = false;
        out.where = "1";
        out.exact = false;
        return out;
    }
    out.where = part.sql;
    out.exact = part.exact;
    return out;
}

void registerFilterSqlFunctions(sqlite3* db) {
    sqlite3_create_function_v2(db, "pipescope_regexp", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, regexpFunction,
                               nullptr, nullptr, nullptr);
}

std::vector<std::pair<std::string, std::int64_t>> frequentValues(const std::filesystem::path& capture,
                                                                 FilterTarget target, std::string_view field,
                                                                 std::size_t limit) {
    std::vector<std::pair<std::string, std::int64_t>> values;
    // The parser knows the fields: `exists <field>` names one, or fails.
    FilterOptions options;
    options.target = target;
    const auto parsed = FilterExpression::parse("exists " + std::string(field), options);
    if (!parsed || parsed.expression().internals().root.kind != Node::Kind::Exists) return values;
    const Operand& operand = parsed.expression().internals().root.lhs;
    if (operand.kind != Operand::Kind::Field) return values;
    const Column column = columnOf(operand.field, target);
    if (!column.text) return values;
    const CaptureReader reader(capture);  // checks (and migrates) the file
    Database database;
    if (sqlite3_open_v2(capture.c_str(), &database.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
        throw StoreError(capture.string() + ": cannot open: " + sqlite3_errmsg(database.db));
    sqlite3_busy_timeout(database.db, 5000);
    const std::string c(column.sql);
    Query q(database.db,
            "SELECT " + c + ", count(*) AS n FROM " + (target == FilterTarget::Events ? "events" : "dlq") + " WHERE " + c +
                " <> '' GROUP BY " + c + " ORDER BY n DESC, " + c + " LIMIT ?1",
            {SqlParam(std::int64_t(limit))});
    while (q.next(database.db)) values.emplace_back(std::string(columnText(q.statement, 0)), sqlite3_column_int64(q.statement, 1));
    return values;
}

struct CaptureFilter::Impl {
    std::filesystem::path path;
    FilterExpression filter;
    FilterSql sql;
    CaptureReader reader;
    Database database;
    unsigned threads = 1;

    Impl(const std::filesystem::path& p, FilterExpression f, Options options)
        : path(p), filter(std::move(f)), sql(toSql(filter)), reader(p) {
        threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
        threads = std::min(threads, 16u);
        // The reader has checked (and migrated) the file; this connection only reads columns.
        if (sqlite3_open_v2(path.c_str(), &database.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
            throw StoreError(path.string() + ": cannot open: " + sqlite3_errmsg(database.db));
        sqlite3_busy_timeout(database.db, 5000);
        registerFilterSqlFunctions(database.db);
    }

    bool events() const { return filter.target() == FilterTarget::Events; }
    std::string table() const { return events() ? "events" : "dlq"; }

    std::int64_t total() const { return events() ? reader.eventCount() : reader.dlqCount(); }

    // Visits the seq of every match; false from visit stops early. Returns false when cancelled.
    bool run(const Progress& progress, const std::function<void(std::int64_t)>& visit) const {
        const std::int64_t all = total();
        std::int64_t done = 0;
        auto tick = [&]() {
            ++done;
            return !(progress && done % kProgressEvery == 0 && !progress(done, all));
        };
        if (progress && !progress(0, all)) return false;
        if (sql.exact) {
            Query q(database.db, "SELECT seq FROM " + table() + " WHERE " + sql.where + " ORDER BY seq", sql.params);
            while (q.next(database.db)) {
                visit(sqlite3_column_int64(q.statement, 0));
                if (!tick()) return false;
            }
        } else if (!events()) {
            // Dead letters are plain rows: read them here, only those the SQL part lets through.
            Query q(database.db,
                    "SELECT seq, reason, detail, origin_source, event_name, distinct_id, raw, created_at, ingest_id"
                    " FROM dlq WHERE " + sql.where + " ORDER BY seq",
                    sql.params);
            while (q.next(database.db)) {
                FilterRecord r;
                r.seq = sqlite3_column_int64(q.statement, 0);
                r.reason = columnText(q.statement, 1);
                r.detail = columnText(q.statement, 2);
                r.origin = columnText(q.statement, 3);
                r.event = columnText(q.statement, 4);
                r.distinctId = columnText(q.statement, 5);
                const auto* raw = static_cast<const char*>(sqlite3_column_blob(q.statement, 6));
                r.properties = raw ? std::string_view(raw, std::size_t(sqlite3_column_bytes(q.statement, 6))) : std::string_view();
                r.propertiesInEvent = true;
                r.time = r.received = sqlite3_column_int64(q.statement, 7);
                r.ingest = columnOptional(q.statement, 8);
                if (filter.matches(r)) visit(*r.seq);
                if (!tick()) return false;
            }
        } else if (!fewCandidates(all)) {
            // Everything is examined: the store's scan of table rows and properties only (the raw
            // bytes are never decompressed), on `threads` threads over shares of the seqs.
            if (!rowScan(progress, visit)) return false;
        } else {
            bool stopped = false;
            if (!decoded(progress, [&](const StoredEvent& e) {
                    visit(e.seq);
                    return true;
                }, stopped))
                return false;
        }
        if (progress) progress(all, all);
        return true;
    }

    bool rowScan(const Progress& progress, const std::function<void(std::int64_t)>& visit) const {
        std::vector<std::vector<std::int64_t>> matches(threads);
        std::atomic<std::int64_t> scanned{0};
        std::atomic<bool> cancelled{false};
        std::mutex progressLock;
        const std::int64_t all = total();
        reader.scanRows(threads, [&](unsigned worker, const EventRow& row, std::string_view properties) {
            if (filter.matches(FilterRecord::of(row, properties))) matches[worker].push_back(row.seq);
            const std::int64_t n = ++scanned;
            if (progress && n % kProgressEvery == 0) {
                const std::lock_guard lock(progressLock); // the callback is called by one thread at a time
                if (!progress(std::min(n, all), all)) cancelled = true;
            }
            return !cancelled.load();
        });
        if (cancelled) return false;
        // Each worker scanned a contiguous share in order: their results are in order one after the other.
        for (const auto& share : matches)
            for (const std::int64_t seq : share) visit(seq);
        return true;
    }

    // The seqs SQL lets through, when they are few enough to read one by one.
    std::optional<std::vector<std::int64_t>> fewCandidates(std::int64_t all) const {
        if (sql.where == "1") return std::nullopt;
        Query q(database.db, "SELECT seq FROM events WHERE " + sql.where + " ORDER BY seq", sql.params);
        std::vector<std::int64_t> candidates;
        while (q.next(database.db)) {
            candidates.push_back(sqlite3_column_int64(q.statement, 0));
            if (std::int64_t(candidates.size()) * kFetchRatio > all) return std::nullopt;
        }
        return candidates;
    }

    // Every matching event, decoded. Returns false when cancelled; `stopped` when visit said so.
    bool decoded(const Progress& progress, const std::function<bool(const StoredEvent&)>& visit, bool& stopped) const {
        const std::int64_t all = total();
        std::int64_t done = 0;
        auto tick = [&]() {
            ++done;
            return !(progress && done % kProgressEvery == 0 && !progress(done, all));
        };
        if (const auto candidates = fewCandidates(all)) {
            for (const std::int64_t seq : *candidates) {
                if (const auto e = reader.event(seq); e && (sql.exact || filter.matches(*e)) && !visit(*e)) {
                    stopped = true;
                    return true;
                }
                if (!tick()) return false;
            }
            return true;
        }
        bool cancelled = false;
        reader.forEachEvent([&](const StoredEvent& e) {
            if (filter.matches(e) && !visit(e)) {
                stopped = true;
                return false;
            }
            if (!tick()) {
                cancelled = true;
                return false;
            }
            return true;
        });
        return !cancelled;
    }
};

CaptureFilter::CaptureFilter(const std::filesystem::path& capture, FilterExpression filter)
    : CaptureFilter(capture, std::move(filter), Options{}) {}
CaptureFilter::CaptureFilter(const std::filesystem::path& capture, FilterExpression filter, Options options)
    : m_impl(std::make_unique<Impl>(capture, std::move(filter), options)) {}
CaptureFilter::~CaptureFilter() = default;

std::optional<std::int64_t> CaptureFilter::count(const Progress& progress) const {
    if (m_impl->sql.exact) {
        if (progress && !progress(0, m_impl->total())) return std::nullopt;
        Query q(m_impl->database.db, "SELECT count(*) FROM " + m_impl->table() + " WHERE " + m_impl->sql.where,
                m_impl->sql.params);
        const std::int64_t n = q.next(m_impl->database.db) ? sqlite3_column_int64(q.statement, 0) : 0;
        if (progress) progress(m_impl->total(), m_impl->total());
        return n;
    }
    std::int64_t n = 0;
    if (!m_impl->run(progress, [&](std::int64_t) { ++n; })) return std::nullopt;
    return n;
}

std::optional<std::vector<std::int64_t>> CaptureFilter::seqs(const Progress& progress) const {
    std::vector<std::int64_t> out;
    if (!m_impl->run(progress, [&](std::int64_t seq) { out.push_back(seq); })) return std::nullopt;
    return out;
}

bool CaptureFilter::forEachEvent(const std::function<bool(const StoredEvent&)>& visit, const Progress& progress) const {
    if (!m_impl->events()) throw StoreError("forEachEvent: this filter runs over dead letters");
    const std::int64_t all = m_impl->total();
    if (progress && !progress(0, all)) return false;
    bool stopped = false;
    if (!m_impl->decoded(progress, visit, stopped)) return false;
    if (progress && !stopped) progress(all, all);
    return true;
}

bool CaptureFilter::forEachDlq(const std::function<bool(const DlqEntry&)>& visit, const Progress& progress) const {
    if (m_impl->events()) throw StoreError("forEachDlq: this filter runs over events");
    const std::int64_t all = m_impl->total();
    if (progress && !progress(0, all)) return false;
    std::int64_t done = 0;
    bool cancelled = false, stopped = false;
    m_impl->reader.forEachDlq([&](const DlqEntry& d) {
        if (m_impl->filter.matches(d) && !visit(d)) {
            stopped = true;
            return false;
        }
        if (progress && ++done % kProgressEvery == 0 && !progress(done, all)) {
            cancelled = true;
            return false;
        }
        return true;
    });
    if (cancelled) return false;
    if (progress && !stopped) progress(all, all);
    return true;
}

const FilterSql& CaptureFilter::sql() const { return m_impl->sql; }
const FilterExpression& CaptureFilter::filter() const { return m_impl->filter; }

} // namespace pipescope
