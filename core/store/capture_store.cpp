#include "store/capture_store.h"
#include "store/event_codec.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

namespace pipescope {

std::string_view toString(Verdict verdict) {
    switch (verdict) {
    case Verdict::Invalid: return "invalid";
    case Verdict::Unplanned: return "unplanned";
    case Verdict::Duplicate: return "duplicate";
    case Verdict::Valid: break;
    }
    return "valid";
}

std::string_view toString(Durability durability) { return durability == Durability::Process ? "process" : "full"; }

std::optional<Durability> parseDurability(std::string_view text) {
    if (text == "full") return Durability::Full;
    if (text == "process") return Durability::Process;
    return std::nullopt;
}

namespace {

// "PSCP" in the SQLite header's application_id: how a capture is told from any other SQLite file.
constexpr std::int32_t kApplicationId = 0x50534350;

std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string describe(const std::filesystem::path& path, sqlite3* db, const std::string& what) {
    return path.string() + ": " + what + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
}

// The dedup key's index entry (schema v2): its 64-bit XXH3 (stable across versions and
// platforms), a fraction of the key's size. Lookups compare the key itself too.
std::int64_t dedupKeyHash(std::string_view key) {
    return static_cast<std::int64_t>(XXH3_64bits(key.data(), key.size()));
}

// One connection, closed on scope exit.
struct Connection {
    sqlite3* db = nullptr;
    std::filesystem::path path;

    Connection(const std::filesystem::path& file, int flags) : path(file) {
        const int rc = sqlite3_open_v2(file.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
        if (rc != SQLITE_OK) {
            const std::string message = describe(path, db, "cannot open capture");
            sqlite3_close(db);
            db = nullptr;
            throw StoreError(message);
        }
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, 5000);
    }
    ~Connection() { sqlite3_close(db); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void exec(const char* sql) const {
        char* error = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
            std::string message = path.string() + ": " + (error ? error : "SQL error") + " (in: " + sql + ")";
            sqlite3_free(error);
            throw StoreError(message);
        }
    }

    std::int64_t scalar(const char* sql) const;
};

// A prepared statement with bind helpers; finalized on scope exit.
class Statement {
public:
    Statement(const Connection& connection, const char* sql) : m_connection(&connection) {
        if (sqlite3_prepare_v3(connection.db, sql, -1, SQLITE_PREPARE_PERSISTENT, &m_stmt, nullptr) != SQLITE_OK)
            throw StoreError(describe(connection.path, connection.db, std::string("cannot prepare \"") + sql + "\""));
    }
    ~Statement() { sqlite3_finalize(m_stmt); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    void text(int index, std::string_view value) {
        check(sqlite3_bind_text64(m_stmt, index, value.data(), value.size(), SQLITE_STATIC, SQLITE_UTF8));
    }
    // Empty strings are stored as NULL: "no id", "no anonymous id"...
    void textOrNull(int index, std::string_view value) {
        if (value.empty())
            null(index);
        else
            text(index, value);
    }
    void blob(int index, std::string_view value) {
        check(sqlite3_bind_blob64(m_stmt, index, value.data(), value.size(), SQLITE_STATIC));
    }
    void integer(int index, std::int64_t value) { check(sqlite3_bind_int64(m_stmt, index, value)); }
    void optional(int index, const std::optional<std::int64_t>& value) {
        if (value)
            integer(index, *value);
        else
            null(index);
    }
    void null(int index) { check(sqlite3_bind_null(m_stmt, index)); }

    // Runs an INSERT/UPDATE to completion and resets the statement for the next use.
    void run() {
        const int rc = sqlite3_step(m_stmt);
        sqlite3_reset(m_stmt);
        sqlite3_clear_bindings(m_stmt);
        if (rc != SQLITE_DONE) throw StoreError(describe(m_connection->path, m_connection->db, "write failed"));
    }
    // Ends a query early so the statement can be bound and run again.
    void reset() {
        sqlite3_reset(m_stmt);
        sqlite3_clear_bindings(m_stmt);
    }
    // Steps a query: true while there is a row.
    bool next() {
        const int rc = sqlite3_step(m_stmt);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw StoreError(describe(m_connection->path, m_connection->db, "read failed"));
    }

    std::int64_t columnInt(int column) const { return sqlite3_column_int64(m_stmt, column); }
    std::optional<std::int64_t> columnOptional(int column) const {
        if (sqlite3_column_type(m_stmt, column) == SQLITE_NULL) return std::nullopt;
        return sqlite3_column_int64(m_stmt, column);
    }
    std::string_view columnView(int column) const {
        const auto* data = static_cast<const char*>(sqlite3_column_blob(m_stmt, column));
        const int size = sqlite3_column_bytes(m_stmt, column);
        return data ? std::string_view(data, static_cast<std::size_t>(size)) : std::string_view();
    }
    bool columnIsNull(int column) const { return sqlite3_column_type(m_stmt, column) == SQLITE_NULL; }
    std::string columnText(int column) const {
        const auto* data = static_cast<const char*>(sqlite3_column_blob(m_stmt, column));
        const int size = sqlite3_column_bytes(m_stmt, column);
        return data ? std::string(data, static_cast<std::size_t>(size)) : std::string();
    }

private:
    void check(int rc) const {
        if (rc != SQLITE_OK) throw StoreError(describe(m_connection->path, m_connection->db, "bind failed"));
    }

    const Connection* m_connection;
    sqlite3_stmt* m_stmt = nullptr;
};

std::int64_t Connection::scalar(const char* sql) const {
    Statement statement(*this, sql);
    return statement.next() ? statement.columnInt(0) : 0;
}

// Version 1: events with their verdicts, the dead-letter queue, and key/value metadata.
// Each later version appends one migration step here; a capture of version N is brought up to
// date by running steps N..current-1 in one transaction.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT,
    id_source      TEXT NOT NULL,
    dedup_key      TEXT,
    name           TEXT NOT NULL,
    distinct_id    TEXT NOT NULL,
    anonymous_id   TEXT,
    user_id        TEXT,
    alias_id       TEXT,
    stream         TEXT NOT NULL,
    format         TEXT NOT NULL,
    timestamp      INTEGER,
    sent_at        INTEGER,
    received_at    INTEGER,
    origin_source  TEXT NOT NULL,
    origin_line    INTEGER NOT NULL,
    origin_index   INTEGER NOT NULL,
    verdict        TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    failures       TEXT NOT NULL,
    properties     TEXT NOT NULL,
    raw            BLOB NOT NULL,
    ingest_id      INTEGER
);
CREATE INDEX events_by_name ON events(name);
CREATE INDEX events_by_distinct_id ON events(distinct_id);
CREATE INDEX events_by_dedup_key ON events(dedup_key) WHERE dedup_key IS NOT NULL;
CREATE TABLE dlq (
    seq           INTEGER PRIMARY KEY,
    reason        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    origin_source TEXT NOT NULL,
    origin_line   INTEGER NOT NULL,
    origin_index  INTEGER NOT NULL,
    event_name    TEXT,
    distinct_id   TEXT,
    event_seq     INTEGER REFERENCES events(seq),
    raw           BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    ingest_id     INTEGER
);
CREATE INDEX dlq_by_reason ON dlq(reason);
CREATE TABLE duplicates (
    event_seq   INTEGER PRIMARY KEY REFERENCES events(seq),
    key         TEXT NOT NULL,
    key_source  TEXT NOT NULL,
    first_seq   INTEGER REFERENCES events(seq),
    first_seen  INTEGER,
    seen        INTEGER NOT NULL,
    conflicting INTEGER NOT NULL,
    differences TEXT NOT NULL
);
CREATE TABLE identity_issues (
    seq      INTEGER PRIMARY KEY,
    category TEXT NOT NULL,
    message  TEXT NOT NULL,
    ids      TEXT NOT NULL,
    events   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX identity_issues_by_category ON identity_issues(category);
CREATE TABLE ingest_log (
    id              INTEGER PRIMARY KEY,
    received_at     INTEGER NOT NULL,
    path            TEXT NOT NULL,
    vendor          TEXT NOT NULL,
    token           TEXT,
    idempotency_key TEXT,
    encoding        TEXT NOT NULL,
    remote_address  TEXT,
    body            BLOB NOT NULL
);
CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    seqs        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    http_status INTEGER NOT NULL,
    error       TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX deliveries_by_destination ON deliveries(destination);
CREATE TABLE cursors (
    destination TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE destination_dlq (
    id          INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    event_seq   INTEGER NOT NULL REFERENCES events(seq),
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE state (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// Version 2: an event's raw bytes and properties are kept once, in `body`: one zstd frame of
// raw then properties (`raw_size` says where raw ends), compressed with a dictionary of the
// `dictionaries` table once the capture has one (`codec`, see store/event_codec.h). Rows of a
// version-1 capture keep their `raw` and `properties` columns (codec 0); new rows leave them
// empty. The dedup key is indexed by its hash (`dedup_hash`, NULL when there is no key) and
// `dedup_key` is NULL when it is the event id. Version-1 rows keep their key in `dedup_key`,
// found through the version-1 index (`dedup_hash` NULL): nothing is rewritten. No query used the
// name and distinct-id indexes; each cost a random B-tree insert per event: they are gone.
constexpr const char* kMigrationV1ToV2 = R"sql(
ALTER TABLE events ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN raw_size INTEGER;
ALTER TABLE events ADD COLUMN body BLOB;
ALTER TABLE events ADD COLUMN dedup_hash INTEGER;
ALTER TABLE events ADD COLUMN historical_migration INTEGER NOT NULL DEFAULT 0;
DROP INDEX events_by_name;
DROP INDEX events_by_distinct_id;
CREATE INDEX events_by_dedup_hash ON events(dedup_hash) WHERE dedup_hash IS NOT NULL;
CREATE TABLE dictionaries (
    id         INTEGER PRIMARY KEY,
    bytes      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
)sql";

// Version 3: what views need without scanning the events. Counts per verdict, kept by the writer
// in the transaction that adds or removes the rows (not by triggers: a trigger makes every insert
// keep a statement journal, a temporary file written at each row, 50x the system calls); indexes on verdict, on the request an
// event came from (also what a rollback deletes by) and on the event a dead letter is about; and
// each delivery attempt linked to the events it carried (`delivery_events`; `deliveries.seqs`
// stays for older readers). An existing capture is counted and linked once, here.
constexpr const char* kMigrationV2ToV3 = R"sql(
CREATE TABLE event_counts (
    verdict TEXT PRIMARY KEY,
    n       INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO event_counts (verdict, n)
    SELECT v.column1, (SELECT count(*) FROM events WHERE verdict = v.column1)
    FROM (VALUES ('valid'), ('invalid'), ('unplanned'), ('duplicate')) AS v;
CREATE INDEX events_by_verdict ON events(verdict);
CREATE INDEX events_by_ingest ON events(ingest_id) WHERE ingest_id IS NOT NULL;
CREATE INDEX dlq_by_event ON dlq(event_seq) WHERE event_seq IS NOT NULL;
CREATE INDEX dlq_by_ingest ON dlq(ingest_id) WHERE ingest_id IS NOT NULL;
CREATE INDEX duplicates_by_first ON duplicates(first_seq) WHERE first_seq IS NOT NULL;
CREATE TABLE delivery_events (
    event_seq   INTEGER NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (event_seq, delivery_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO delivery_events (event_seq, delivery_id)
    SELECT j.value, d.id FROM deliveries AS d, json_each(d.seqs) AS j WHERE j.type = 'integer';
)sql";

struct Migration {
    int from;
    const char* sql;
};
// Steps from one version to the next.
constexpr Migration kMigrations[] = {{1, kMigrationV1ToV2}, {2, kMigrationV2ToV3}};
static_assert(std::size(kMigrations) == kCaptureSchemaVersion - 1, "one migration step per version");

std::optional<std::string> loadDictionary(const Connection& connection, std::uint32_t id) {
    Statement s(connection, "SELECT bytes FROM dictionaries WHERE id = ?1");
    s.integer(1, id);
    if (!s.next()) return std::nullopt;
    return s.columnText(0);
}

// An event's raw bytes and properties from the columns `properties, raw, codec, raw_size, body`
// (from `first` on): in their own columns (codec 0, version-1 rows) or in zstd frames.
void decodeEventBytes(const Statement& s, int first, std::int64_t seq, store::EventDecompressor& decompressor,
                      std::string& raw, std::string& properties) {
    const auto codec = static_cast<store::EventCodec>(s.columnInt(first + 2));
    if (codec == store::EventCodec::Columns || s.columnIsNull(first + 4)) {
        properties.assign(s.columnView(first));
        raw.assign(s.columnView(first + 1));
        return;
    }
    try {
        decompressor.decode(codec, s.columnView(first + 4), s.columnInt(first + 3), raw, properties, seq);
    } catch (const std::runtime_error& e) {
        throw StoreError(e.what());
    }
}

// Only the properties, from the same columns.
void decodeEventProperties(const Statement& s, int first, std::int64_t seq, store::EventDecompressor& decompressor,
                           std::string& properties) {
    const auto codec = static_cast<store::EventCodec>(s.columnInt(first + 2));
    if (codec == store::EventCodec::Columns || s.columnIsNull(first + 4)) {
        properties.assign(s.columnView(first));
        return;
    }
    try {
        decompressor.decodeProperties(codec, s.columnView(first + 4), s.columnInt(first + 3), properties, seq);
    } catch (const std::runtime_error& e) {
        throw StoreError(e.what());
    }
}

int readVersion(const Connection& connection) {
    return static_cast<int>(connection.scalar("PRAGMA user_version"));
}

bool isCapture(const Connection& connection) {
    return connection.scalar("PRAGMA application_id") == kApplicationId;
}

// True for a file that starts with the SQLite header and carries our application id.
//
// The header is read through SQLite's own VFS, never with a descriptor of our own: closing any
// descriptor of a file drops every POSIX lock this process holds on it, SQLite's included, and
// without its shared lock on a live capture another process closing its connection would believe
// it is the last one, checkpoint and delete the WAL under the writer. SQLite's unix VFS keeps the
// descriptor open while this process holds locks on the file.
bool fileIsCapture(const std::filesystem::path& path) {
    sqlite3_vfs* vfs = sqlite3_vfs_find(nullptr);
    if (!vfs) return false;
    // As sqlite3_open does: the VFS wants the full path (symlinks and `..` resolved), and keeps
    // a pointer to it until xClose.
    std::string name(static_cast<std::size_t>(vfs->mxPathname) + 1, '\0');
    // (SQLITE_OK_SYMLINK, an extended OK, says a symlink was resolved.)
    if ((vfs->xFullPathname(vfs, path.c_str(), vfs->mxPathname + 1, name.data()) & 0xff) != SQLITE_OK) return false;
    std::unique_ptr<char[]> storage(new char[static_cast<std::size_t>(vfs->szOsFile)]());
    auto* file = reinterpret_cast<sqlite3_file*>(storage.get());
    int outFlags = 0;
    if (vfs->xOpen(vfs, name.c_str(), file, SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB, &outFlags) != SQLITE_OK) {
        if (file->pMethods) file->pMethods->xClose(file);
        return false;
    }
    char header[72] = {};
    const int rc = file->pMethods->xRead(file, header, sizeof header, 0);
    file->pMethods->xClose(file);
    if (rc != SQLITE_OK) return false; // SQLITE_IOERR_SHORT_READ: smaller than a header
    if (std::string_view(header, 16) != std::string_view("SQLite format 3\0", 16)) return false;
    const auto byte = [&](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(header[i])); };
    const std::uint32_t applicationId = byte(68) << 24 | byte(69) << 16 | byte(70) << 8 | byte(71);
    return applicationId == static_cast<std::uint32_t>(kApplicationId);
}

void migrate(const Connection& connection, int from) {
    connection.exec("BEGIN IMMEDIATE");
    try {
        for (const Migration& step : kMigrations) {
            if (step.sql && step.from >= from && step.from < kCaptureSchemaVersion) connection.exec(step.sql);
        }
        connection.exec(("PRAGMA user_version = " + std::to_string(kCaptureSchemaVersion)).c_str());
        connection.exec("COMMIT");
    } catch (...) {
        sqlite3_exec(connection.db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

// Deletes what the pipeline wrote for requests after `cursor`: on resume, and after a failed
// commit, those requests are processed again and must not leave their first output behind.
void discardPipelineOutputAfter(const Connection& connection, std::int64_t cursor) {
    const std::string after = std::to_string(cursor);
    connection.exec(
        ("DELETE FROM duplicates WHERE event_seq IN (SELECT seq FROM events WHERE ingest_id > " + after + ")").c_str());
    connection.exec(("DELETE FROM dlq WHERE ingest_id > " + after).c_str());
    connection.exec(("UPDATE event_counts SET n = n - (SELECT count(*) FROM events WHERE ingest_id > " + after +
                     " AND events.verdict = event_counts.verdict)")
                        .c_str());
    connection.exec(("DELETE FROM events WHERE ingest_id > " + after).c_str());
    // Identity issues describe the whole graph; the pipeline's finish writes them anew.
    connection.exec("DELETE FROM identity_issues");
}

std::int64_t storedPipelineCursor(const Connection& connection) {
    Statement s(connection, "SELECT value FROM state WHERE name = 'pipeline_cursor'");
    if (!s.next()) return 0;
    const std::string text = s.columnText(0);
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0)
        throw StoreError(connection.path.string() + ": state 'pipeline_cursor' is not a request id: \"" +
                         text.substr(0, 40) + "\"");
    return value;
}

// One writer per capture, across processes and within one. The lock is an open-file-description
// lock (F_OFD_SETLK) on one byte far from SQLite's own lock bytes (at 1 GiB), so it follows the
// inode: a symlink, a `..` path or a hard link reach the same lock. The descriptors are never
// closed: closing any descriptor of a file drops every POSIX lock this process holds on it,
// SQLite's included; they are kept per inode and reused.
class CaptureLock {
public:
    CaptureLock() = default;
    // Locks `file` when it is an existing capture (before anything may replace or resume it).
    explicit CaptureLock(const std::filesystem::path& file) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(file, ec) && fileIsCapture(file)) acquire(file);
    }
    ~CaptureLock() { release(); }
    CaptureLock(const CaptureLock&) = delete;
    CaptureLock& operator=(const CaptureLock&) = delete;

    bool holds(const std::filesystem::path& file) const {
        struct stat st {};
        return m_locked && ::stat(file.c_str(), &st) == 0 && Key{st.st_dev, st.st_ino} == m_key;
    }

    void acquire(const std::filesystem::path& file) {
        release();
        struct stat st {};
        if (::stat(file.c_str(), &st) != 0)
            throw StoreError(file.string() + ": cannot lock the capture: " + std::strerror(errno));
        const Key key{st.st_dev, st.st_ino};
        Registry& registry = this->registry();
        std::lock_guard guard(registry.mutex);
        if (registry.held.count(key))
            throw StoreError(file.string() + ": this capture is already open for writing in this process; a capture "
                                             "has one writer at a time");
        int fd = -1;
        if (const auto it = registry.fds.find(key); it != registry.fds.end()) {
            struct stat cached {};
            if (::fstat(it->second, &cached) == 0 && cached.st_nlink > 0) fd = it->second;
            else registry.fds.erase(it); // a deleted file whose inode number came back: not this file
        }
        if (fd < 0) {
            fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
            if (fd < 0) throw StoreError(file.string() + ": cannot lock the capture: " + std::strerror(errno));
            registry.fds[key] = fd;
        }
        struct flock lock {};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        lock.l_start = kLockByte;
        lock.l_len = 1;
        if (::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
            if (errno == EAGAIN || errno == EACCES)
                throw StoreError(file.string() +
                                 ": this capture is being written by another Pipescope process (pipescope-cli run, "
                                 "check --capture or the GUI); a capture has one writer at a time: stop the other "
                                 "one, or choose another capture path");
            throw StoreError(file.string() + ": cannot lock the capture: " + std::strerror(errno));
        }
        registry.held.insert(key);
        m_fd = fd;
        m_key = key;
        m_locked = true;
    }

    void release() {
        if (!m_locked) return;
        struct flock unlock {};
        unlock.l_type = F_UNLCK;
        unlock.l_whence = SEEK_SET;
        unlock.l_start = kLockByte;
        unlock.l_len = 1;
        ::fcntl(m_fd, F_OFD_SETLK, &unlock);
        Registry& registry = this->registry();
        std::lock_guard guard(registry.mutex);
        registry.held.erase(m_key);
        m_locked = false;
    }

private:
    using Key = std::pair<dev_t, ino_t>;
    struct Registry {
        std::mutex mutex;
        std::map<Key, int> fds;
        std::set<Key> held;
    };
    static Registry& registry() {
        static Registry instance;
        return instance;
    }
    static constexpr off_t kLockByte = 0x7fff0000;

    int m_fd = -1;
    Key m_key{};
    bool m_locked = false;
};

} // namespace

// ---------------------------------------------------------------------------------------------
// CaptureWriter

struct MetaRecord {
    std::string key;
    std::string value;
};
struct StateRecord {
    std::string name;
    std::string bytes;
    CaptureWriter::Committed committed;
};
struct PendingIngest {
    IngestRecord request;
    std::function<void(std::int64_t, const std::string&)> committed;
};
struct PendingReject {
    DlqEntry entry;
    CaptureWriter::Committed committed;
};
// resyncPipeline(): runs alone, in its own transaction.
struct ResyncRecord {
    std::int64_t cursor = 0;
    std::shared_ptr<std::promise<void>> done;
};
// An event on its way to the writer: compressed by append() on the caller's thread (its raw
// bytes and properties cross as one small frame), or handed over whole for the writer to
// compress when the writer has time (see prepareEvent()).
struct PendingEvent {
    StoredEvent event;   // raw and properties emptied once compressed
    store::EncodedEvent encoded;
    std::size_t rawSize = 0;
    bool compressed = false;
};
struct CursorRecord {
    std::string destination;
    std::int64_t seq;
};
struct DestinationDeadLetter {
    std::string destination;
    std::int64_t eventSeq;
    std::string reason;
};

// How long the writer waits for a full batch of records nobody waits on (see run()).
constexpr std::chrono::milliseconds kLinger{25};

struct CaptureWriter::Impl {
    using Record = std::variant<PendingEvent, DlqEntry, DuplicateRecord, IdentityIssueRecord, MetaRecord, StateRecord,
                                PendingIngest, DeliveryRecord, CursorRecord, DestinationDeadLetter, PendingReject,
                                ResyncRecord>;

    std::filesystem::path path;
    Options options;
    bool resumed = false; // an existing capture was opened, not created (initialised before connection)
    CaptureLock lock;     // taken before the capture is resumed or replaced
    Connection connection;
    Statement insertEvent;
    Statement insertDlq;
    Statement insertDuplicate;
    Statement findFirst;
    Statement findFirstV1;
    bool hasV1Rows = false; // a migrated version-1 capture: its first events keep the old key column
    Statement findEvent;
    Statement insertIssue;
    Statement upsertMeta;
    Statement upsertState;
    Statement insertIngest;
    Statement insertDelivery;
    Statement addCount;
    Statement linkDelivery;
    Statement upsertCursor;
    Statement insertDestinationDlq;
    Statement insertDictionary;
    // Events are compressed by the threads that append them (a pipeline thread), one at a time,
    // or by the writer thread with its own compressor and the same dictionary while it keeps up:
    // the appending thread hands events over whole while fewer than kHandOver of them wait, so
    // the two threads share the work whichever is the slower one.
    static constexpr std::size_t kHandOver = 2048;
    std::mutex compressMutex;
    store::EventCompressor compressor;
    store::EventCompressor writerCompressor;   // writer thread
    std::atomic<std::size_t> handedOver{0};    // queued events the writer is to compress
    std::atomic<bool> trained{false};          // `compressor` has its dictionary: handing over may start
    store::EventDecompressor decompressor;
    std::string firstRaw, firstProperties, otherRaw, otherProperties; // duplicates' comparisons
    bool dictionaryInFile = false;        // committed; until then each transaction using it stores it
    bool dictionaryInTransaction = false;
    // Callbacks of the transaction being written, run after its COMMIT (or its failure).
    std::vector<std::function<void(const std::string& failure)>> pendingCallbacks;
    bool fenced = false; // writer thread; mirrored in `fence` for other threads
    bool eventsChanged = false; // writer thread: the transaction being written adds or removes events
    std::array<std::int64_t, 4> addedByVerdict{}; // writer thread: events of the transaction, by Verdict

    std::mutex mutex;
    std::condition_variable hasWork;      // writer waits for records
    std::condition_variable hasRoom;      // appenders wait for queue space
    std::condition_variable committed;    // flush() waits for the writer
    std::deque<Record> queue;
    std::uint64_t appended = 0;           // records handed to append()
    std::uint64_t done = 0;               // records committed (or lost to an error)
    std::size_t awaitedQueued = 0;        // queued records someone waits on (a callback, a resync)
    std::size_t flushing = 0;             // threads in flush()
    std::string error;                    // the first commit error since open or resync
    std::string lastError;
    std::uint64_t failedCommits = 0;
    std::atomic<bool> fence{false};
    bool stopping = false;
    bool closed = false;
    std::thread writer;

    Impl(const std::filesystem::path& file, Options opts)
        : path(file), options(opts), resumed(resumable(file, opts)), lock(file),
          connection(resumed ? file : prepare(file, opts), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE),
          insertEvent(resumed ? reopen(connection, opts) : initialise(connection, opts),
                      "INSERT INTO events (seq, event_id, id_source, name, distinct_id, anonymous_id, user_id, stream,"
                      " format, timestamp, sent_at, received_at, origin_source, origin_line, origin_index, verdict,"
                      " schema_version, failures, properties, raw, alias_id, dedup_key, ingest_id, codec, raw_size, body, dedup_hash,"
                      " historical_migration)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, '', x'',"
                      " ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"),
          insertDlq(connection,
                    "INSERT INTO dlq (reason, detail, origin_source, origin_line, origin_index, event_name,"
                    " distinct_id, event_seq, raw, created_at, ingest_id)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
          insertDuplicate(connection,
                          "INSERT INTO duplicates (event_seq, key, key_source, first_seq, first_seen, seen, conflicting,"
                          " differences) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
          findFirst(connection,
                    "SELECT seq, name, distinct_id, properties, raw, codec, raw_size, body FROM events"
                    " WHERE dedup_hash = ?3 AND coalesce(dedup_key, event_id) = ?1 AND verdict <> 'duplicate'"
                    " AND seq < ?2 ORDER BY seq LIMIT 1"),
          findFirstV1(connection,
                      "SELECT seq, name, distinct_id, properties, raw, codec, raw_size, body FROM events"
                      " WHERE dedup_key = ?1 AND dedup_hash IS NULL AND verdict <> 'duplicate' AND seq < ?2"
                      " ORDER BY seq LIMIT 1"),
          findEvent(connection, "SELECT name, distinct_id, properties, raw, codec, raw_size, body FROM events WHERE seq = ?1"),
          insertIssue(connection,
                      "INSERT INTO identity_issues (category, message, ids, events, detail) VALUES (?1, ?2, ?3, ?4, ?5)"),
          upsertMeta(connection, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)"),
          upsertState(connection, "INSERT OR REPLACE INTO state (name, value, updated_at) VALUES (?1, ?2, ?3)"),
          insertIngest(connection,
                       "INSERT INTO ingest_log (received_at, path, vendor, token, idempotency_key, encoding,"
                       " remote_address, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
          insertDelivery(connection,
                         "INSERT INTO deliveries (destination, seqs, attempt, started_at, duration_ms, http_status,"
                         " error, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
          addCount(connection, "UPDATE event_counts SET n = n + ?2 WHERE verdict = ?1"),
          linkDelivery(connection,
                       "INSERT OR IGNORE INTO delivery_events (event_seq, delivery_id)"
                       " SELECT value, ?1 FROM json_each(?2) WHERE type = 'integer'"),
          upsertCursor(connection, "INSERT OR REPLACE INTO cursors (destination, seq, updated_at) VALUES (?1, ?2, ?3)"),
          insertDestinationDlq(connection,
                               "INSERT INTO destination_dlq (destination, event_seq, reason, created_at)"
                               " VALUES (?1, ?2, ?3, ?4)"),
          insertDictionary(connection, "INSERT OR REPLACE INTO dictionaries (id, bytes, created_at) VALUES (?1, ?2, ?3)"),
          decompressor(file.string(), [this](std::uint32_t id) { return loadDictionary(connection, id); }) {
        {
            Statement oldest(connection, "SELECT codec FROM events ORDER BY seq LIMIT 1");
            hasV1Rows = oldest.next() && oldest.columnInt(0) == static_cast<int>(store::EventCodec::Columns);
        }
        // A resumed capture goes on with the dictionary it has (its newest, should there be several).
        {
            Statement newest(connection, "SELECT id, bytes FROM dictionaries ORDER BY created_at DESC, rowid DESC LIMIT 1");
            if (newest.next()) {
                compressor.useDictionary(static_cast<std::uint32_t>(newest.columnInt(0)), newest.columnText(1));
                dictionaryInFile = true;
            }
        }
        // A new capture (or one that replaced an earlier file) is a new inode: lock it now.
        if (!lock.holds(path)) lock.acquire(path);
        writer = std::thread([this] { run(); });
    }

    // Removes an earlier capture at `file` (never anything else) so that a fresh one is created.
    static const std::filesystem::path& prepare(const std::filesystem::path& file, const Options& opts) {
        std::error_code ec;
        if (!std::filesystem::exists(file, ec)) return file;
        if (std::filesystem::is_directory(file, ec)) throw StoreError(file.string() + ": is a directory, not a capture file");
        if (!fileIsCapture(file))
            throw StoreError(file.string() + ": exists and is not a Pipescope capture; it is left untouched "
                                             "(choose another --capture path)");
        if (!opts.replaceExisting) throw StoreError(file.string() + ": a capture already exists there");
        for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
            std::filesystem::path part = file;
            part += suffix;
            std::filesystem::remove(part, ec);
            if (ec) throw StoreError(part.string() + ": cannot replace the earlier capture: " + ec.message());
        }
        return file;
    }

    static bool resumable(const std::filesystem::path& file, const Options& opts) {
        std::error_code ec;
        return opts.resumeExisting && std::filesystem::is_regular_file(file, ec) && fileIsCapture(file);
    }

    // Continues an existing capture: brings its schema up to date and discards whatever the
    // pipeline wrote for requests after its last recorded cursor, so that they are processed
    // again exactly once.
    static void setDurability(const Connection& connection, Durability durability) {
        // In WAL mode FULL syncs the WAL at every commit: a committed request survives a power
        // loss. NORMAL syncs only at checkpoints: durable against a crash of the process, and a
        // power loss may lose the last transactions but never corrupts the file.
        connection.exec(durability == Durability::Full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
        // The writer's page cache holds the dedup-key index it inserts into at random (2 MiB by
        // default: evicted pages were read back with a pread each).
        connection.exec("PRAGMA cache_size = -32768");
        // Checkpoint at 4 MiB of WAL, as SQLite's default does with 4 KiB pages (its 1,000 pages
        // are 16 MiB with ours): on a nearly full disk a WAL that must reach 16 MiB before it is
        // reset fills the disk and can never be reset (tst_cli_run::fullDiskLosesNothing).
        connection.exec("PRAGMA wal_autocheckpoint = 256");
    }

    static const Connection& reopen(const Connection& connection, const Options& opts) {
        connection.exec("PRAGMA journal_mode = WAL");
        setDurability(connection, opts.durability);
        const int version = readVersion(connection);
        if (version > kCaptureSchemaVersion)
            throw StoreError(connection.path.string() + ": written by a newer Pipescope (capture version " +
                             std::to_string(version) + ")");
        if (version < kCaptureSchemaVersion) migrate(connection, version);
        const std::int64_t cursor = storedPipelineCursor(connection);
        connection.exec("BEGIN IMMEDIATE");
        try {
            discardPipelineOutputAfter(connection, cursor);
            connection.exec("COMMIT");
        } catch (...) {
            sqlite3_exec(connection.db, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
        return connection;
    }

    static const Connection& initialise(const Connection& connection, const Options& opts) {
        // 16 KiB pages (before anything is written: WAL mode fixes the page size): rows of a few
        // hundred bytes, fewer B-tree levels and page writes per transaction (bench_capture:
        // 5% smaller and about 10% faster than 4 KiB).
        connection.exec("PRAGMA page_size = 16384");
        connection.exec("PRAGMA journal_mode = WAL");
        setDurability(connection, opts.durability);
        connection.exec(("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str());
        connection.exec("BEGIN IMMEDIATE");
        connection.exec(kSchemaV1);
        for (const Migration& step : kMigrations) connection.exec(step.sql);
        connection.exec(("PRAGMA user_version = " + std::to_string(kCaptureSchemaVersion)).c_str());
        Statement meta(connection, "INSERT INTO meta (key, value) VALUES (?1, ?2)");
        meta.text(1, "created_by");
        meta.text(2, "pipescope " PIPESCOPE_VERSION);
        meta.run();
        const std::string created = std::to_string(nowMillis());
        meta.text(1, "created_at");
        meta.text(2, created);
        meta.run();
        connection.exec("COMMIT");
        // Put the header (with the application id) into the main file now: until a checkpoint,
        // WAL mode keeps every page in the -wal file, and readers opening the live capture
        // recognise it by that header.
        connection.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        return connection;
    }

    PendingEvent compress(StoredEvent&& e) {
        PendingEvent pending;
        pending.rawSize = e.raw.size();
        {
            std::lock_guard guard(compressMutex);
            compressor.encode(e.raw, e.properties.empty() ? std::string_view("{}") : std::string_view(e.properties),
                              pending.encoded);
            if (compressor.hasDictionary()) trained.store(true, std::memory_order_release);
        }
        pending.compressed = true;
        // Released here, on the thread that allocated them.
        std::string().swap(e.raw);
        std::string().swap(e.properties);
        pending.event = std::move(e);
        return pending;
    }

    PendingEvent prepareEvent(StoredEvent&& e) {
        // Until the dictionary exists every event goes through `compressor` (it trains on them).
        if (trained.load(std::memory_order_acquire) && handedOver.load(std::memory_order_relaxed) < kHandOver) {
            handedOver.fetch_add(1, std::memory_order_relaxed);
            PendingEvent pending;
            pending.rawSize = e.raw.size();
            pending.event = std::move(e);
            return pending;
        }
        return compress(std::move(e));
    }

    // Writer thread, before the transaction: compresses what was handed over.
    void compressHandedOver(std::vector<Record>& batch) {
        for (Record& record : batch) {
            auto* pending = std::get_if<PendingEvent>(&record);
            if (!pending || pending->compressed) continue;
            if (writerCompressor.dictionaryId() == 0) {
                std::lock_guard guard(compressMutex); // the dictionary never changes once trained
                writerCompressor.useDictionary(compressor.dictionaryId(), compressor.dictionary());
            }
            handedOver.fetch_sub(1, std::memory_order_relaxed);
            StoredEvent& e = pending->event;
            try {
                writerCompressor.encode(e.raw, e.properties.empty() ? std::string_view("{}") : std::string_view(e.properties),
                                        pending->encoded);
            } catch (const std::exception& error) {
                // Left uncompressed: writing it fails its transaction like any failed write.
                pending->encoded.body = error.what();
                continue;
            }
            pending->compressed = true;
            std::string().swap(e.raw);
            std::string().swap(e.properties);
        }
    }

    void write(const PendingEvent& pending) {
        if (!pending.compressed)
            throw StoreError(path.string() + ": cannot compress event " + std::to_string(pending.event.seq) + ": " +
                             pending.encoded.body);
        const StoredEvent& e = pending.event;
        const store::EncodedEvent& encoded = pending.encoded;
        if (e.seq > 0)
            insertEvent.integer(1, e.seq);
        else
            insertEvent.null(1);
        insertEvent.textOrNull(2, e.eventId);
        insertEvent.text(3, e.idSource.empty() ? std::string_view("none") : std::string_view(e.idSource));
        insertEvent.text(4, e.name);
        insertEvent.text(5, e.distinctId);
        insertEvent.textOrNull(6, e.anonymousId);
        insertEvent.textOrNull(7, e.userId);
        insertEvent.text(8, e.stream);
        insertEvent.text(9, e.format);
        insertEvent.optional(10, e.timestamp);
        insertEvent.optional(11, e.sentAt);
        insertEvent.optional(12, e.receivedAt);
        insertEvent.text(13, e.originSource);
        insertEvent.integer(14, static_cast<std::int64_t>(e.originLine));
        insertEvent.integer(15, e.originIndex);
        insertEvent.text(16, toString(e.verdict));
        insertEvent.integer(17, e.schemaVersion);
        insertEvent.text(18, e.failures.empty() ? std::string_view("[]") : std::string_view(e.failures));
        insertEvent.textOrNull(21, e.aliasId);
        if (e.dedupKey.empty()) {
            insertEvent.null(22);
            insertEvent.null(27);
        } else {
            // The key is most often the event id itself: stored once.
            if (e.dedupKey == e.eventId)
                insertEvent.null(22);
            else
                insertEvent.text(22, e.dedupKey);
            insertEvent.integer(27, dedupKeyHash(e.dedupKey));
        }
        insertEvent.optional(23, e.ingestId);
        if (encoded.codec == store::EventCodec::ZstdDictSplit && !dictionaryInFile && !dictionaryInTransaction) {
            // The dictionary goes into the transaction of the first row that needs it (the
            // compressor's dictionary never changes once it has one).
            std::lock_guard guard(compressMutex);
            insertDictionary.integer(1, compressor.dictionaryId());
            insertDictionary.blob(2, compressor.dictionary());
            insertDictionary.integer(3, nowMillis());
            insertDictionary.run();
            dictionaryInTransaction = true;
        }
        insertEvent.integer(24, static_cast<std::int64_t>(encoded.codec));
        insertEvent.integer(25, static_cast<std::int64_t>(pending.rawSize));
        insertEvent.blob(26, encoded.body);
        insertEvent.integer(28, e.historicalMigration ? 1 : 0);
        insertEvent.run();
        eventsChanged = true;
        ++addedByVerdict[static_cast<std::size_t>(e.verdict)];
    }

    void write(const DlqEntry& d) {
        insertDlq.text(1, d.reason);
        insertDlq.text(2, d.detail.empty() ? std::string_view("{}") : std::string_view(d.detail));
        insertDlq.text(3, d.originSource);
        insertDlq.integer(4, static_cast<std::int64_t>(d.originLine));
        insertDlq.integer(5, d.originIndex);
        insertDlq.textOrNull(6, d.eventName);
        insertDlq.textOrNull(7, d.distinctId);
        insertDlq.optional(8, d.eventSeq);
        insertDlq.blob(9, d.raw);
        insertDlq.integer(10, d.createdAt ? d.createdAt : nowMillis());
        insertDlq.optional(11, d.ingestId);
        insertDlq.run();
    }

    void write(const DuplicateRecord& d) {
        // The first occurrence is found by key among the events already written (it precedes the
        // duplicate in the same or an earlier transaction); it is absent when it was seen before
        // this capture began.
        std::optional<std::int64_t> firstSeq = d.firstSeq;
        std::string differences = d.differences.empty() ? "[]" : d.differences;
        // Version-1 rows (all before any version-2 row) first: the first occurrence is the oldest.
        Statement* found = nullptr;
        if (hasV1Rows) {
            findFirstV1.text(1, d.key);
            findFirstV1.integer(2, d.eventSeq);
            if (findFirstV1.next()) found = &findFirstV1;
        }
        if (!found) {
            findFirst.text(1, d.key);
            findFirst.integer(2, d.eventSeq);
            findFirst.integer(3, dedupKeyHash(d.key));
            if (findFirst.next()) found = &findFirst;
        }
        if (found) {
            const Statement& first = *found;
            firstSeq = first.columnInt(0);
            if (d.conflicting && d.differences.empty()) {
                const std::string name = first.columnText(1), distinct = first.columnText(2);
                decodeEventBytes(first, 3, *firstSeq, decompressor, firstRaw, firstProperties);
                const std::string& properties = firstProperties;
                findEvent.integer(1, d.eventSeq);
                if (findEvent.next()) {
                    decodeEventBytes(findEvent, 2, d.eventSeq, decompressor, otherRaw, otherProperties);
                    differences = "[";
                    const auto add = [&](const char* field) {
                        differences += differences.size() > 1 ? ",\"" : "\"";
                        differences += field;
                        differences += '"';
                    };
                    if (findEvent.columnText(0) != name) add("name");
                    if (findEvent.columnText(1) != distinct) add("distinct_id");
                    if (otherProperties != properties) add("properties");
                    differences += ']';
                }
                findEvent.reset();
            }
        }
        findFirst.reset();
        findFirstV1.reset();
        insertDuplicate.integer(1, d.eventSeq);
        insertDuplicate.text(2, d.key);
        insertDuplicate.text(3, d.keySource);
        insertDuplicate.optional(4, firstSeq);
        insertDuplicate.optional(5, d.firstSeen);
        insertDuplicate.integer(6, d.seen);
        insertDuplicate.integer(7, d.conflicting ? 1 : 0);
        insertDuplicate.text(8, differences);
        insertDuplicate.run();
    }

    void write(const IdentityIssueRecord& issue) {
        insertIssue.text(1, issue.category);
        insertIssue.text(2, issue.message);
        insertIssue.text(3, issue.ids.empty() ? std::string_view("[]") : std::string_view(issue.ids));
        insertIssue.text(4, issue.events.empty() ? std::string_view("[]") : std::string_view(issue.events));
        insertIssue.text(5, issue.detail.empty() ? std::string_view("{}") : std::string_view(issue.detail));
        insertIssue.run();
    }

    void write(const MetaRecord& meta) {
        upsertMeta.text(1, meta.key);
        upsertMeta.text(2, meta.value);
        upsertMeta.run();
    }

    void write(const StateRecord& state) {
        upsertState.text(1, state.name);
        upsertState.blob(2, state.bytes);
        upsertState.integer(3, nowMillis());
        upsertState.run();
        if (state.committed) pendingCallbacks.push_back(state.committed);
    }

    void write(const PendingReject& pending) {
        write(pending.entry);
        if (pending.committed) pendingCallbacks.push_back(pending.committed);
    }

    void write(const ResyncRecord&) {} // handled by resync(), never inside a batch

    void write(const PendingIngest& pending) {
        const IngestRecord& r = pending.request;
        insertIngest.integer(1, r.receivedAt ? r.receivedAt : nowMillis());
        insertIngest.text(2, r.path);
        insertIngest.text(3, r.vendor);
        insertIngest.textOrNull(4, r.token);
        insertIngest.textOrNull(5, r.idempotencyKey);
        insertIngest.text(6, r.encoding.empty() ? std::string_view("plain") : std::string_view(r.encoding));
        insertIngest.textOrNull(7, r.remoteAddress);
        insertIngest.blob(8, r.body);
        insertIngest.run();
        if (pending.committed)
            pendingCallbacks.push_back([committed = pending.committed, id = sqlite3_last_insert_rowid(connection.db)](
                                           const std::string& failure) { committed(failure.empty() ? id : 0, failure); });
    }

    void write(const DeliveryRecord& d) {
        insertDelivery.text(1, d.destination);
        insertDelivery.text(2, d.seqs.empty() ? std::string_view("[]") : std::string_view(d.seqs));
        insertDelivery.integer(3, d.attempt);
        insertDelivery.integer(4, d.startedAt);
        insertDelivery.integer(5, d.durationMillis);
        insertDelivery.integer(6, d.httpStatus);
        insertDelivery.text(7, d.error);
        insertDelivery.text(8, d.outcome);
        insertDelivery.run();
        linkDelivery.integer(1, sqlite3_last_insert_rowid(connection.db));
        linkDelivery.text(2, d.seqs.empty() ? std::string_view("[]") : std::string_view(d.seqs));
        linkDelivery.run();
    }

    void write(const CursorRecord& cursor) {
        upsertCursor.text(1, cursor.destination);
        upsertCursor.integer(2, cursor.seq);
        upsertCursor.integer(3, nowMillis());
        upsertCursor.run();
    }

    void write(const DestinationDeadLetter& dead) {
        insertDestinationDlq.text(1, dead.destination);
        insertDestinationDlq.integer(2, dead.eventSeq);
        insertDestinationDlq.text(3, dead.reason);
        insertDestinationDlq.integer(4, nowMillis());
        insertDestinationDlq.run();
    }

    // What the pipeline derives from the ingest log: committed in order or not at all (see the
    // header). Dead letters of undecodable requests (no ingest id) are the collector's, not this.
    static bool isPipelineOutput(const Record& record) {
        if (std::holds_alternative<PendingEvent>(record) || std::holds_alternative<DuplicateRecord>(record) ||
            std::holds_alternative<IdentityIssueRecord>(record))
            return true;
        if (const auto* dlq = std::get_if<DlqEntry>(&record)) return dlq->ingestId.has_value();
        if (const auto* state = std::get_if<StateRecord>(&record)) return state->name == "pipeline_cursor";
        return false;
    }

    // Callbacks of a record that is not written: it failed, or it was discarded by the fence.
    static void failCallbacks(const Record& record, const std::string& failure) {
        if (const auto* ingest = std::get_if<PendingIngest>(&record)) {
            if (ingest->committed) ingest->committed(0, failure);
        } else if (const auto* reject = std::get_if<PendingReject>(&record)) {
            if (reject->committed) reject->committed(failure);
        } else if (const auto* state = std::get_if<StateRecord>(&record)) {
            if (state->committed) state->committed(failure);
        }
    }

    void resync(const ResyncRecord& request) {
        // The failed transactions' frames sit in the WAL: give their room back to the disk first.
        checkpoint();
        try {
            connection.exec("BEGIN IMMEDIATE");
            try {
                discardPipelineOutputAfter(connection, request.cursor);
                write(StateRecord{"pipeline_cursor", std::to_string(request.cursor), {}});
                pendingCallbacks.clear();
                connection.exec("COMMIT");
            } catch (...) {
                sqlite3_exec(connection.db, "ROLLBACK", nullptr, nullptr, nullptr);
                throw;
            }
            fenced = false;
            fence = false;
            notifyCommitted();
            {
                std::lock_guard guard(mutex);
                error.clear();
                ++done;
            }
            request.done->set_value();
        } catch (const std::exception& e) {
            {
                std::lock_guard guard(mutex);
                ++done;
                ++failedCommits;
                lastError = e.what();
            }
            request.done->set_exception(std::make_exception_ptr(StoreError(e.what())));
        }
        committed.notify_all();
    }

    // The writer thread: takes whatever is queued (up to maxBatch) and commits it in one
    // transaction, so the commit cost is shared by everything that arrived meanwhile.
    void run() {
        std::vector<Record> batch;
        batch.reserve(options.maxBatch);
        for (;;) {
            {
                std::unique_lock lock(mutex);
                hasWork.wait(lock, [&] { return !queue.empty() || stopping; });
                if (queue.empty() && stopping) return;
                // Group commit with a linger: when nobody waits on the queued records (pipeline
                // output, deliveries), wait a little for a full batch, so that each transaction
                // fills its pages instead of rewriting the same ones into the WAL at every few
                // records (a writer faster than its producer otherwise commits a handful at a time).
                const auto deadline = std::chrono::steady_clock::now() + kLinger;
                while (!stopping && awaitedQueued == 0 && flushing == 0 && queue.size() < options.maxBatch)
                    if (hasWork.wait_until(lock, deadline) == std::cv_status::timeout) break;
                // A resync runs alone: everything before it is committed (or failed) first.
                while (!queue.empty() && batch.size() < options.maxBatch &&
                       (!std::holds_alternative<ResyncRecord>(queue.front()) || batch.empty())) {
                    const bool resyncRecord = std::holds_alternative<ResyncRecord>(queue.front());
                    if (isAwaited(queue.front())) --awaitedQueued;
                    batch.push_back(std::move(queue.front()));
                    queue.pop_front();
                    if (resyncRecord) break;
                }
            }
            hasRoom.notify_all();
            compressHandedOver(batch);
            if (batch.size() == 1 && std::holds_alternative<ResyncRecord>(batch.front())) {
                resync(std::get<ResyncRecord>(batch.front()));
                batch.clear();
                continue;
            }
            std::string failure;
            bool holdsPipelineOutput = false;
            const bool wasFenced = fenced;
            const auto attempt = [&](bool skipPipelineOutput) {
                failure.clear();
                pendingCallbacks.clear();
                dictionaryInTransaction = false;
                eventsChanged = false;
                addedByVerdict.fill(0);
                try {
                    connection.exec("BEGIN IMMEDIATE");
                    try {
                        for (const Record& record : batch) {
                            if (isPipelineOutput(record)) {
                                holdsPipelineOutput = true;
                                if (skipPipelineOutput) continue; // never committed past the gap
                            }
                            std::visit([&](const auto& r) { write(r); }, record);
                        }
                        writeCounts();
                        connection.exec("COMMIT");
                        if (dictionaryInTransaction) dictionaryInFile = true;
                    } catch (...) {
                        sqlite3_exec(connection.db, "ROLLBACK", nullptr, nullptr, nullptr);
                        throw;
                    }
                } catch (const std::exception& e) {
                    failure = e.what();
                }
            };
            attempt(wasFenced);
            std::string pipelineFailure = wasFenced ? "discarded: earlier pipeline output could not be written" : "";
            if (!failure.empty() && holdsPipelineOutput && !wasFenced) {
                // The pipeline's output is fenced from now on; what the collector and the
                // destinations wrote may still fit: try it once more without the pipeline's part.
                fenced = true;
                fence = true;
                pipelineFailure = failure;
                countFailure(failure, batch);
                attempt(true);
            }
            if (failure.empty()) {
                if (eventsChanged) notifyCommitted();
                // Only now are the requests durable: answer their clients.
                for (auto& callback : pendingCallbacks) callback(failure);
                if (!pipelineFailure.empty())
                    for (const Record& record : batch)
                        if (isPipelineOutput(record)) failCallbacks(record, pipelineFailure);
            } else {
                // Nothing of the batch is in the file: every record with a callback is told so.
                for (const Record& record : batch) failCallbacks(record, failure);
                checkpoint(); // a full disk: what the WAL holds of committed work goes to the file, the rest is freed
                if (holdsPipelineOutput) {
                    fenced = true;
                    fence = true;
                }
                countFailure(failure, batch);
            }
            pendingCallbacks.clear();
            {
                std::lock_guard lock(mutex);
                done += batch.size();
            }
            committed.notify_all();
            batch.clear();
        }
    }

    // The transaction's events into the maintained counts, with it.
    void writeCounts() {
        for (std::size_t i = 0; i < addedByVerdict.size(); ++i) {
            if (addedByVerdict[i] == 0) continue;
            addCount.text(1, toString(static_cast<Verdict>(i)));
            addCount.integer(2, addedByVerdict[i]);
            addCount.run();
        }
    }

    // The commit notification (Options::onCommitted) with the largest committed event seq.
    void notifyCommitted() {
        eventsChanged = false;
        if (!options.onCommitted) return;
        try {
            options.onCommitted(connection.scalar("SELECT coalesce(max(seq), 0) FROM events"));
        } catch (const std::exception&) {
            // A listener's failure is not the capture's: the commit stands.
        }
    }

    // A failure flush() and close() report: one that lost records whose writer was not told
    // through a callback (the collector's requests were answered 503; the pipeline's output is
    // redone after a resync, which clears it).
    void countFailure(const std::string& failure, const std::vector<Record>& lost) {
        const bool unreported = std::any_of(lost.begin(), lost.end(), [](const Record& record) {
            if (std::holds_alternative<PendingIngest>(record) || std::holds_alternative<PendingReject>(record)) return false;
            if (const auto* state = std::get_if<StateRecord>(&record)) return !state->committed;
            return true;
        });
        std::lock_guard lock(mutex);
        ++failedCommits;
        lastError = failure;
        if (unreported && error.empty()) error = failure;
    }

    bool tryEnqueue(Record&& record) {
        std::unique_lock lock(mutex);
        if (closed) throw StoreError(path.string() + ": capture is closed");
        // The collector's records get headroom above the bound the pipeline blocks at, so that a
        // burst of pipeline output does not turn into 429s; memory stays bounded all the same.
        if (queue.size() >= options.maxQueued * 2) return false;
        queue.emplace_back(std::move(record));
        ++appended;
        ++awaitedQueued;
        lock.unlock();
        hasWork.notify_one();
        return true;
    }

    static bool isAwaited(const Record& record) {
        if (std::holds_alternative<PendingIngest>(record) || std::holds_alternative<PendingReject>(record) ||
            std::holds_alternative<ResyncRecord>(record))
            return true;
        const auto* state = std::get_if<StateRecord>(&record);
        return state && state->committed;
    }

    template <typename R>
    void enqueue(R&& record) {
        std::unique_lock lock(mutex);
        if (closed) throw StoreError(path.string() + ": capture is closed");
        hasRoom.wait(lock, [&] { return queue.size() < options.maxQueued; });
        queue.emplace_back(std::forward<R>(record));
        ++appended;
        const bool awaited = isAwaited(queue.back());
        if (awaited) ++awaitedQueued;
        // The writer wakes for the first record, a full batch, or one somebody waits on; not
        // for each record in between (it lingers for a batch, see run()).
        const bool wake = awaited || queue.size() == 1 || queue.size() >= options.maxBatch;
        lock.unlock();
        if (wake) hasWork.notify_one();
    }

    void flush() {
        std::unique_lock lock(mutex);
        const std::uint64_t target = appended;
        ++flushing;
        lock.unlock();
        hasWork.notify_one();
        lock.lock();
        committed.wait(lock, [&] { return done >= target; });
        --flushing;
        if (!error.empty()) throw StoreError(error);
    }

    void stop() {
        {
            std::lock_guard lock(mutex);
            if (closed) return;
            closed = true;
            stopping = true;
        }
        hasWork.notify_one();
        if (writer.joinable()) writer.join();
    }

    void checkpoint() {
        // Fold the WAL back into the file so that a closed capture is one self-contained file.
        sqlite3_wal_checkpoint_v2(connection.db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    }
};

CaptureWriter::CaptureWriter(const std::filesystem::path& path) : CaptureWriter(path, Options{}) {}

CaptureWriter::CaptureWriter(const std::filesystem::path& path, Options options)
    : m_impl(std::make_unique<Impl>(path, options)) {}

CaptureWriter::~CaptureWriter() {
    if (!m_impl) return;
    m_impl->stop();
    m_impl->checkpoint();
}

void CaptureWriter::append(StoredEvent event) { m_impl->enqueue(m_impl->prepareEvent(std::move(event))); }
void CaptureWriter::append(DlqEntry entry) { m_impl->enqueue(std::move(entry)); }
void CaptureWriter::append(DuplicateRecord duplicate) { m_impl->enqueue(std::move(duplicate)); }
void CaptureWriter::append(IdentityIssueRecord issue) { m_impl->enqueue(std::move(issue)); }
void CaptureWriter::putMeta(std::string key, std::string value) {
    m_impl->enqueue(MetaRecord{std::move(key), std::move(value)});
}
void CaptureWriter::putState(std::string name, std::string bytes) {
    m_impl->enqueue(StateRecord{std::move(name), std::move(bytes), {}});
}
void CaptureWriter::putState(std::string name, std::string bytes, Committed committed) {
    m_impl->enqueue(StateRecord{std::move(name), std::move(bytes), std::move(committed)});
}
bool CaptureWriter::appendIngest(IngestRecord request, std::function<void(std::int64_t, const std::string&)> committed) {
    return m_impl->tryEnqueue(PendingIngest{std::move(request), std::move(committed)});
}
bool CaptureWriter::appendRejected(DlqEntry entry, Committed committed) {
    return m_impl->tryEnqueue(PendingReject{std::move(entry), std::move(committed)});
}
bool CaptureWriter::pipelineFenced() const { return m_impl->fence.load(); }
std::uint64_t CaptureWriter::failedCommits() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->failedCommits;
}
std::string CaptureWriter::lastError() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->lastError;
}
void CaptureWriter::resyncPipeline(std::int64_t cursor) {
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    m_impl->enqueue(ResyncRecord{cursor, done});
    finished.get(); // rethrows the StoreError of a failed resync
}
void CaptureWriter::append(DeliveryRecord delivery) { m_impl->enqueue(std::move(delivery)); }
void CaptureWriter::putCursor(std::string destination, std::int64_t seq) {
    m_impl->enqueue(CursorRecord{std::move(destination), seq});
}
void CaptureWriter::appendDestinationDeadLetter(std::string destination, std::int64_t eventSeq, std::string reason) {
    m_impl->enqueue(DestinationDeadLetter{std::move(destination), eventSeq, std::move(reason)});
}
std::size_t CaptureWriter::queued() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->queue.size();
}
void CaptureWriter::flush() { m_impl->flush(); }

void CaptureWriter::close() {
    m_impl->stop();
    m_impl->checkpoint();
    std::lock_guard lock(m_impl->mutex);
    if (!m_impl->error.empty()) throw StoreError(m_impl->error);
}

const std::filesystem::path& CaptureWriter::path() const { return m_impl->path; }

// ---------------------------------------------------------------------------------------------
// CaptureReader

namespace {

constexpr const char* kEventColumns =
    "seq, event_id, id_source, name, distinct_id, anonymous_id, user_id, stream, format, timestamp, sent_at,"
    " received_at, origin_source, origin_line, origin_index, verdict, schema_version, failures, alias_id,"
    " CASE WHEN dedup_hash IS NULL THEN dedup_key ELSE coalesce(dedup_key, event_id) END, ingest_id, properties,"
    " raw, codec, raw_size, body, historical_migration";
// A version-1 capture read as it is (it could not be migrated): every row has codec 0.
constexpr const char* kEventColumnsV1 =
    "seq, event_id, id_source, name, distinct_id, anonymous_id, user_id, stream, format, timestamp, sent_at,"
    " received_at, origin_source, origin_line, origin_index, verdict, schema_version, failures, alias_id,"
    " dedup_key, ingest_id, properties, raw, 0, NULL, NULL, 0";
// What an event table row shows (EventRow): the small columns only.
constexpr const char* kRowColumns =
    "seq, event_id, name, distinct_id, stream, format, timestamp, received_at, origin_source, origin_line,"
    " origin_index, verdict, ingest_id, anonymous_id, user_id";
constexpr int kRowColumnCount = 15;
constexpr const char* kDlqColumns =
    "seq, reason, detail, origin_source, origin_line, origin_index, event_name, distinct_id, event_seq, raw,"
    " created_at";

Verdict parseVerdict(const std::string& text) {
    if (text == "invalid") return Verdict::Invalid;
    if (text == "unplanned") return Verdict::Unplanned;
    if (text == "duplicate") return Verdict::Duplicate;
    return Verdict::Valid;
}

StoredEvent readEvent(const Statement& s, store::EventDecompressor& decompressor) {
    StoredEvent e;
    e.seq = s.columnInt(0);
    e.eventId = s.columnText(1);
    e.idSource = s.columnText(2);
    e.name = s.columnText(3);
    e.distinctId = s.columnText(4);
    e.anonymousId = s.columnText(5);
    e.userId = s.columnText(6);
    e.stream = s.columnText(7);
    e.format = s.columnText(8);
    e.timestamp = s.columnOptional(9);
    e.sentAt = s.columnOptional(10);
    e.receivedAt = s.columnOptional(11);
    e.originSource = s.columnText(12);
    e.originLine = static_cast<std::uint64_t>(s.columnInt(13));
    e.originIndex = static_cast<std::int32_t>(s.columnInt(14));
    e.verdict = parseVerdict(s.columnText(15));
    e.schemaVersion = static_cast<int>(s.columnInt(16));
    e.failures = s.columnText(17);
    e.aliasId = s.columnText(18);
    e.dedupKey = s.columnText(19);
    e.ingestId = s.columnOptional(20);
    decodeEventBytes(s, 21, e.seq, decompressor, e.raw, e.properties);
    e.historicalMigration = s.columnInt(26) != 0;
    return e;
}

EventRow readRow(const Statement& s) {
    EventRow r;
    r.seq = s.columnInt(0);
    r.eventId = s.columnText(1);
    r.name = s.columnText(2);
    r.distinctId = s.columnText(3);
    r.stream = s.columnText(4);
    r.format = s.columnText(5);
    r.timestamp = s.columnOptional(6);
    r.receivedAt = s.columnOptional(7);
    r.originSource = s.columnText(8);
    r.originLine = static_cast<std::uint64_t>(s.columnInt(9));
    r.originIndex = static_cast<std::int32_t>(s.columnInt(10));
    r.verdict = parseVerdict(s.columnText(11));
    r.ingestId = s.columnOptional(12);
    r.anonymousId = s.columnText(13);
    r.userId = s.columnText(14);
    return r;
}

DuplicateRecord readDuplicate(const Statement& s) {
    DuplicateRecord d;
    d.eventSeq = s.columnInt(0);
    d.key = s.columnText(1);
    d.keySource = s.columnText(2);
    d.firstSeq = s.columnOptional(3);
    d.firstSeen = s.columnOptional(4);
    d.seen = s.columnInt(5);
    d.conflicting = s.columnInt(6) != 0;
    d.differences = s.columnText(7);
    return d;
}

DeliveryRecord readDelivery(const Statement& s) {
    return {s.columnText(0), s.columnText(1), static_cast<int>(s.columnInt(2)), s.columnInt(3),
            s.columnInt(4), static_cast<int>(s.columnInt(5)), s.columnText(6), s.columnText(7)};
}

constexpr const char* kDuplicateColumns =
    "event_seq, key, key_source, first_seq, first_seen, seen, conflicting, differences";
constexpr const char* kDeliveryColumns =
    "destination, seqs, attempt, started_at, duration_ms, http_status, error, outcome";

DlqEntry readDlq(const Statement& s) {
    DlqEntry d;
    d.seq = s.columnInt(0);
    d.reason = s.columnText(1);
    d.detail = s.columnText(2);
    d.originSource = s.columnText(3);
    d.originLine = static_cast<std::uint64_t>(s.columnInt(4));
    d.originIndex = static_cast<std::int32_t>(s.columnInt(5));
    d.eventName = s.columnText(6);
    d.distinctId = s.columnText(7);
    d.eventSeq = s.columnOptional(8);
    d.raw = s.columnText(9);
    d.createdAt = s.columnInt(10);
    return d;
}

// Opens a capture for reading, first migrating it when it was written by an older version.
const std::filesystem::path& checkCapture(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw StoreError(path.string() + ": no such capture file");
    if (!fileIsCapture(path))
        throw StoreError(path.string() + ": not a Pipescope capture (no SQLite header with Pipescope's application id)");
    return path;
}

} // namespace

struct CaptureReader::Impl {
    Connection connection;
    mutable store::EventDecompressor decompressor;
    const char* eventColumns = kEventColumns;
    int version = kCaptureSchemaVersion; // what the file is read as (older when it could not be migrated)

    explicit Impl(const std::filesystem::path& path)
        : connection(checkCapture(path), SQLITE_OPEN_READONLY),
          decompressor(path.string(), [this](std::uint32_t id) { return loadDictionary(connection, id); }) {
        if (!isCapture(connection)) throw StoreError(path.string() + ": not a Pipescope capture");
        const int version = readVersion(connection);
        if (version > kCaptureSchemaVersion)
            throw StoreError(path.string() + ": written by a newer Pipescope (capture version " +
                             std::to_string(version) + ", this build reads up to " +
                             std::to_string(kCaptureSchemaVersion) + ")");
        if (version < kCaptureSchemaVersion) {
            // Migrate through a separate read-write connection, then read as usual. A capture
            // that cannot be written (a read-only file or directory, a shared medium) is read as
            // it is: versions 2 and 3 only add columns, tables and indexes; version-1 rows are
            // read from the old columns, and what version 3 maintains is computed instead.
            try {
                Connection writable(path, SQLITE_OPEN_READWRITE);
                migrate(writable, version);
            } catch (const StoreError&) {
                this->version = version;
                if (version == 1) eventColumns = kEventColumnsV1;
            }
        }
    }

    std::vector<EventRow> rows(const std::string& rest, std::int64_t first, std::int64_t second) const {
        Statement s(connection, (std::string("SELECT ") + kRowColumns + " FROM events " + rest).c_str());
        s.integer(1, first);
        s.integer(2, second);
        std::vector<EventRow> out;
        while (s.next()) out.push_back(readRow(s));
        return out;
    }

    StoredEvent read(const Statement& s) const { return readEvent(s, decompressor); }

    // Events of `SELECT <columns> FROM events <rest>`, with ?1 and ?2 bound to `first`, `second`.
    std::vector<StoredEvent> select(const char* rest, std::int64_t first, std::int64_t second) const {
        Statement s(connection, (std::string("SELECT ") + eventColumns + " FROM events " + rest).c_str());
        s.integer(1, first);
        s.integer(2, second);
        std::vector<StoredEvent> rows;
        while (s.next()) rows.push_back(read(s));
        return rows;
    }

    std::string meta(const char* key) const {
        Statement s(connection, "SELECT value FROM meta WHERE key = ?1");
        s.text(1, key);
        return s.next() ? s.columnText(0) : std::string();
    }
};

CaptureReader::CaptureReader(const std::filesystem::path& path) : m_impl(std::make_unique<Impl>(path)) {}
CaptureReader::~CaptureReader() = default;

CaptureInfo CaptureReader::info() const {
    CaptureInfo info;
    info.schemaVersion = readVersion(m_impl->connection);
    info.createdBy = m_impl->meta("created_by");
    const std::string created = m_impl->meta("created_at");
    if (!created.empty()) {
        const auto [end, ec] = std::from_chars(created.data(), created.data() + created.size(), info.createdAt);
        if (ec != std::errc() || end != created.data() + created.size())
            throw StoreError(m_impl->connection.path.string() + ": meta 'created_at' is not a time in epoch ms: \"" +
                             created.substr(0, 40) + "\"");
    }
    info.events = eventCount();
    info.dlqEntries = dlqCount();
    return info;
}

std::int64_t CaptureReader::eventCount() const { return m_impl->connection.scalar("SELECT count(*) FROM events"); }
std::int64_t CaptureReader::dlqCount() const { return m_impl->connection.scalar("SELECT count(*) FROM dlq"); }

std::vector<StoredEvent> CaptureReader::events(std::int64_t offset, std::int64_t limit) const {
    return m_impl->select("ORDER BY seq LIMIT ?1 OFFSET ?2", limit, offset);
}

std::vector<StoredEvent> CaptureReader::eventsAfter(std::int64_t afterSeq, std::int64_t limit) const {
    return m_impl->select("WHERE seq > ?1 ORDER BY seq LIMIT ?2", afterSeq, limit);
}

std::vector<DlqEntry> CaptureReader::dlq(std::int64_t offset, std::int64_t limit) const {
    Statement s(m_impl->connection,
                (std::string("SELECT ") + kDlqColumns + " FROM dlq ORDER BY seq LIMIT ?1 OFFSET ?2").c_str());
    s.integer(1, limit);
    s.integer(2, offset);
    std::vector<DlqEntry> rows;
    while (s.next()) rows.push_back(readDlq(s));
    return rows;
}

std::vector<DuplicateRecord> CaptureReader::duplicates(std::int64_t offset, std::int64_t limit) const {
    Statement s(m_impl->connection,
                (std::string("SELECT ") + kDuplicateColumns + " FROM duplicates ORDER BY event_seq LIMIT ?1 OFFSET ?2").c_str());
    s.integer(1, limit);
    s.integer(2, offset);
    std::vector<DuplicateRecord> rows;
    while (s.next()) rows.push_back(readDuplicate(s));
    return rows;
}

std::vector<IdentityIssueRecord> CaptureReader::identityIssues() const {
    Statement s(m_impl->connection,
                "SELECT seq, category, message, ids, events, detail FROM identity_issues ORDER BY seq");
    std::vector<IdentityIssueRecord> rows;
    while (s.next())
        rows.push_back({s.columnInt(0), s.columnText(1), s.columnText(2), s.columnText(3), s.columnText(4),
                        s.columnText(5)});
    return rows;
}

std::optional<StoredEvent> CaptureReader::event(std::int64_t seq) const {
    Statement s(m_impl->connection, (std::string("SELECT ") + m_impl->eventColumns + " FROM events WHERE seq = ?1").c_str());
    s.integer(1, seq);
    if (!s.next()) return std::nullopt;
    return m_impl->read(s);
}

std::string CaptureReader::meta(const std::string& key) const { return m_impl->meta(key.c_str()); }

std::vector<IngestRecord> CaptureReader::ingestAfter(std::int64_t afterId, std::int64_t limit) const {
    Statement s(m_impl->connection,
                "SELECT id, received_at, path, vendor, token, idempotency_key, encoding, remote_address, body"
                " FROM ingest_log WHERE id > ?1 ORDER BY id LIMIT ?2");
    s.integer(1, afterId);
    s.integer(2, limit);
    std::vector<IngestRecord> rows;
    while (s.next())
        rows.push_back({s.columnInt(0), s.columnInt(1), s.columnText(2), s.columnText(3), s.columnText(4),
                        s.columnText(5), s.columnText(6), s.columnText(7), s.columnText(8)});
    return rows;
}

std::int64_t CaptureReader::ingestCount() const { return m_impl->connection.scalar("SELECT count(*) FROM ingest_log"); }
std::int64_t CaptureReader::maxEventSeq() const {
    return m_impl->connection.scalar("SELECT coalesce(max(seq), 0) FROM events");
}

std::vector<StoredEvent> CaptureReader::deliverableAfter(std::int64_t afterSeq, std::int64_t limit) const {
    // What goes on to destinations: valid events, and unplanned ones unless they were dead-lettered.
    return m_impl->select("WHERE seq > ?1 AND (verdict = 'valid' OR (verdict = 'unplanned' AND"
                          " coalesce((SELECT value FROM meta WHERE key = 'unplanned_policy'), 'allow') <> 'dlq'))"
                          " ORDER BY seq LIMIT ?2",
                          afterSeq, limit);
}

std::int64_t CaptureReader::cursor(const std::string& destination) const {
    Statement s(m_impl->connection, "SELECT seq FROM cursors WHERE destination = ?1");
    s.text(1, destination);
    return s.next() ? s.columnInt(0) : 0;
}

std::vector<DeliveryRecord> CaptureReader::deliveries(const std::string& destination) const {
    Statement s(m_impl->connection, (std::string("SELECT ") + kDeliveryColumns +
                                     " FROM deliveries WHERE ?1 = '' OR destination = ?1 ORDER BY id").c_str());
    s.text(1, destination);
    std::vector<DeliveryRecord> rows;
    while (s.next()) rows.push_back(readDelivery(s));
    return rows;
}

std::vector<std::pair<std::int64_t, std::string>> CaptureReader::destinationDeadLetters(
    const std::string& destination) const {
    Statement s(m_impl->connection,
                "SELECT event_seq, reason FROM destination_dlq WHERE destination = ?1 ORDER BY id");
    s.text(1, destination);
    std::vector<std::pair<std::int64_t, std::string>> rows;
    while (s.next()) rows.emplace_back(s.columnInt(0), s.columnText(1));
    return rows;
}

std::optional<std::string> CaptureReader::state(const std::string& name) const {
    Statement s(m_impl->connection, "SELECT value FROM state WHERE name = ?1");
    s.text(1, name);
    if (!s.next()) return std::nullopt;
    return s.columnText(0);
}

void CaptureReader::forEachEvent(const std::function<bool(const StoredEvent&)>& visit) const {
    Statement s(m_impl->connection, (std::string("SELECT ") + m_impl->eventColumns + " FROM events ORDER BY seq").c_str());
    while (s.next())
        if (!visit(m_impl->read(s))) return;
}

std::vector<EventRow> CaptureReader::rowsAfter(std::int64_t afterSeq, std::int64_t limit) const {
    return m_impl->rows("WHERE seq > ?1 ORDER BY seq LIMIT ?2", afterSeq, limit);
}

std::vector<EventRow> CaptureReader::rowsBefore(std::int64_t beforeSeq, std::int64_t limit) const {
    auto rows = m_impl->rows("WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", beforeSeq, limit);
    std::reverse(rows.begin(), rows.end());
    return rows;
}

std::vector<EventRow> CaptureReader::rowsOf(const std::vector<std::int64_t>& seqs) const {
    Statement s(m_impl->connection, (std::string("SELECT ") + kRowColumns + " FROM events WHERE seq = ?1").c_str());
    std::vector<EventRow> rows;
    rows.reserve(seqs.size());
    for (const std::int64_t seq : seqs) {
        s.integer(1, seq);
        if (s.next()) rows.push_back(readRow(s));
        s.reset();
    }
    return rows;
}

std::int64_t VerdictCounts::of(Verdict verdict) const {
    switch (verdict) {
    case Verdict::Valid: return valid;
    case Verdict::Invalid: return invalid;
    case Verdict::Unplanned: return unplanned;
    case Verdict::Duplicate: return duplicate;
    }
    return 0;
}

VerdictCounts CaptureReader::verdictCounts() const {
    Statement s(m_impl->connection, m_impl->version >= 3
                                        ? "SELECT verdict, n FROM event_counts"
                                        : "SELECT verdict, count(*) FROM events GROUP BY verdict");
    VerdictCounts counts;
    while (s.next()) {
        const std::int64_t n = s.columnInt(1);
        switch (parseVerdict(s.columnText(0))) {
        case Verdict::Valid: counts.valid += n; break;
        case Verdict::Invalid: counts.invalid += n; break;
        case Verdict::Unplanned: counts.unplanned += n; break;
        case Verdict::Duplicate: counts.duplicate += n; break;
        }
    }
    return counts;
}

std::vector<std::int64_t> CaptureReader::seqsWithVerdict(Verdict verdict, std::int64_t afterSeq, std::int64_t limit) const {
    Statement s(m_impl->connection, "SELECT seq FROM events WHERE verdict = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
    s.text(1, toString(verdict));
    s.integer(2, afterSeq);
    s.integer(3, limit);
    std::vector<std::int64_t> seqs;
    while (s.next()) seqs.push_back(s.columnInt(0));
    return seqs;
}

std::vector<std::int64_t> CaptureReader::eventsOfIngest(std::int64_t ingestId) const {
    Statement s(m_impl->connection, "SELECT seq FROM events WHERE ingest_id = ?1 ORDER BY seq");
    s.integer(1, ingestId);
    std::vector<std::int64_t> seqs;
    while (s.next()) seqs.push_back(s.columnInt(0));
    return seqs;
}

std::vector<DeliveryRecord> CaptureReader::deliveriesOf(std::int64_t eventSeq) const {
    // Version 3 links attempts to events; an older capture read as it is searches the JSON lists.
    const std::string sql =
        m_impl->version >= 3
            ? std::string("SELECT ") + kDeliveryColumns +
                  " FROM deliveries WHERE id IN (SELECT delivery_id FROM delivery_events WHERE event_seq = ?1) ORDER BY id"
            : std::string("SELECT ") + kDeliveryColumns +
                  " FROM deliveries WHERE EXISTS (SELECT 1 FROM json_each(deliveries.seqs) WHERE value = ?1) ORDER BY id";
    Statement s(m_impl->connection, sql.c_str());
    s.integer(1, eventSeq);
    std::vector<DeliveryRecord> rows;
    while (s.next()) rows.push_back(readDelivery(s));
    return rows;
}

std::optional<DuplicateRecord> CaptureReader::duplicateOf(std::int64_t eventSeq) const {
    Statement s(m_impl->connection,
                (std::string("SELECT ") + kDuplicateColumns + " FROM duplicates WHERE event_seq = ?1").c_str());
    s.integer(1, eventSeq);
    if (!s.next()) return std::nullopt;
    return readDuplicate(s);
}

std::vector<DlqEntry> CaptureReader::dlqOfEvent(std::int64_t eventSeq) const {
    Statement s(m_impl->connection,
                (std::string("SELECT ") + kDlqColumns + " FROM dlq WHERE event_seq = ?1 ORDER BY seq").c_str());
    s.integer(1, eventSeq);
    std::vector<DlqEntry> rows;
    while (s.next()) rows.push_back(readDlq(s));
    return rows;
}

std::optional<IngestRecord> CaptureReader::ingest(std::int64_t id, bool withBody) const {
    Statement s(m_impl->connection,
                withBody ? "SELECT id, received_at, path, vendor, token, idempotency_key, encoding, remote_address, body"
                           " FROM ingest_log WHERE id = ?1"
                         : "SELECT id, received_at, path, vendor, token, idempotency_key, encoding, remote_address, ''"
                           " FROM ingest_log WHERE id = ?1");
    s.integer(1, id);
    if (!s.next()) return std::nullopt;
    return IngestRecord{s.columnInt(0), s.columnInt(1), s.columnText(2), s.columnText(3), s.columnText(4),
                        s.columnText(5), s.columnText(6), s.columnText(7), s.columnText(8)};
}

std::optional<EventLineage> CaptureReader::lineage(std::int64_t eventSeq) const {
    std::optional<StoredEvent> stored = event(eventSeq);
    if (!stored) return std::nullopt;
    EventLineage lineage;
    lineage.event = std::move(*stored);
    if (lineage.event.ingestId) lineage.request = ingest(*lineage.event.ingestId, false);
    lineage.duplicate = duplicateOf(eventSeq);
    {
        Statement s(m_impl->connection, "SELECT event_seq FROM duplicates WHERE first_seq = ?1 ORDER BY event_seq");
        s.integer(1, eventSeq);
        while (s.next()) lineage.duplicatedBy.push_back(s.columnInt(0));
    }
    lineage.deadLetters = dlqOfEvent(eventSeq);
    lineage.deliveries = deliveriesOf(eventSeq);
    {
        Statement s(m_impl->connection,
                    "SELECT destination, reason FROM destination_dlq WHERE event_seq = ?1 ORDER BY id");
        s.integer(1, eventSeq);
        while (s.next()) lineage.destinationDeadLetters.emplace_back(s.columnText(0), s.columnText(1));
    }
    return lineage;
}

void CaptureReader::scanProperties(unsigned threads,
                                   const std::function<bool(std::int64_t, std::string_view)>& visit) const {
    scanEvents(threads, false, [&](unsigned, const EventRow& row, std::string_view properties) {
        return visit(row.seq, properties);
    });
}

void CaptureReader::scanRows(unsigned threads,
                             const std::function<bool(unsigned, const EventRow&, std::string_view)>& visit) const {
    scanEvents(threads, true, visit);
}

void CaptureReader::scanEvents(unsigned threads, bool withRows,
                               const std::function<bool(unsigned, const EventRow&, std::string_view)>& visit) const {
    const std::int64_t last = maxEventSeq();
    if (last == 0) return;
    threads = std::clamp(threads, 1u, 16u);
    const std::string sql = std::string("SELECT ") + (withRows ? kRowColumns : "seq") + ", " +
                            (m_impl->version == 1 ? "properties, raw, 0, NULL, NULL" : "properties, raw, codec, raw_size, body") +
                            " FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq";
    const int first = withRows ? kRowColumnCount : 1;
    std::atomic<bool> stop{false};
    std::mutex errorMutex;
    std::string error;
    const auto scan = [&](unsigned worker, std::int64_t from, std::int64_t to, const Connection& connection) {
        try {
            store::EventDecompressor decompressor(connection.path.string(),
                                                  [&](std::uint32_t id) { return loadDictionary(connection, id); });
            Statement s(connection, sql.c_str());
            s.integer(1, from);
            s.integer(2, to);
            std::string properties;
            EventRow row;
            while (!stop.load(std::memory_order_relaxed) && s.next()) {
                if (withRows) row = readRow(s);
                else row.seq = s.columnInt(0);
                decodeEventProperties(s, first, row.seq, decompressor, properties);
                if (!visit(worker, row, properties)) stop = true;
            }
        } catch (const std::exception& e) {
            stop = true;
            std::lock_guard guard(errorMutex);
            if (error.empty()) error = e.what();
        }
    };
    // Each thread reads its share of the seq range through its own connection (one snapshot
    // each: a live capture may grow between them; rows past `last` are not visited).
    const std::int64_t share = (last + threads - 1) / threads;
    std::vector<std::unique_ptr<Connection>> connections;
    for (unsigned i = 1; i < threads; ++i)
        connections.push_back(std::make_unique<Connection>(m_impl->connection.path, SQLITE_OPEN_READONLY));
    std::vector<std::thread> workers;
    for (unsigned i = 1; i < threads; ++i)
        workers.emplace_back(scan, i, i * share + 1, std::min(last, (i + 1) * share), std::cref(*connections[i - 1]));
    scan(0, 1, std::min(last, share), m_impl->connection);
    for (auto& worker : workers) worker.join();
    if (!error.empty()) throw StoreError(error);
}

void CaptureReader::forEachDlq(const std::function<bool(const DlqEntry&)>& visit) const {
    Statement s(m_impl->connection, (std::string("SELECT ") + kDlqColumns + " FROM dlq ORDER BY seq").c_str());
    while (s.next())
        if (!visit(readDlq(s))) return;
}

} // namespace pipescope
