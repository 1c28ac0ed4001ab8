#include "capture_file_ops.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sqlite3.h>

#include "store/capture_store.h"

namespace pipescope {

namespace {
struct Db {
    sqlite3* handle = nullptr;
    ~Db() {
        if (handle) sqlite3_close_v2(handle);
    }
};
std::string sqliteError(sqlite3* db, const std::string& what) {
    return what + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
}
} // namespace

std::string backupCapture(const std::string& source, const std::string& destination,
                          const std::function<void(int, int)>& progress, const std::atomic<bool>& cancelled) {
    std::error_code ec;
    if (std::filesystem::equivalent(source, destination, ec)) return "the copy cannot replace the capture itself";
    Db src, dst;
    if (sqlite3_open_v2(source.c_str(), &src.handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
        return sqliteError(src.handle, source);
    sqlite3_busy_timeout(src.handle, 5000);
    const std::string partial = destination + ".partial";
    std::filesystem::remove(partial, ec);
    if (sqlite3_open_v2(partial.c_str(), &dst.handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
        return sqliteError(dst.handle, partial);
    // One read transaction on the source for the whole copy: the backup copies that snapshot,
    // and a writer committing meanwhile (WAL) neither blocks it nor makes it start over.
    if (sqlite3_exec(src.handle, "BEGIN; SELECT count(*) FROM sqlite_schema;", nullptr, nullptr, nullptr) != SQLITE_OK)
        return sqliteError(src.handle, source);
    sqlite3_backup* backup = sqlite3_backup_init(dst.handle, "main", src.handle, "main");
    if (!backup) return sqliteError(dst.handle, partial);
    int rc = SQLITE_OK;
    do {
        rc = sqlite3_backup_step(backup, 512);
        if (progress) {
            const int total = sqlite3_backup_pagecount(backup);
            progress(total - sqlite3_backup_remaining(backup), total);
        }
        if (cancelled.load()) {
            sqlite3_backup_finish(backup);
            sqlite3_exec(src.handle, "COMMIT", nullptr, nullptr, nullptr);
            sqlite3_close_v2(dst.handle);
            dst.handle = nullptr;
            std::filesystem::remove(partial, ec);
            return "cancelled";
        }
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(20);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    sqlite3_backup_finish(backup);
    sqlite3_exec(src.handle, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_DONE) {
        const std::string error = sqliteError(dst.handle, destination);
        sqlite3_close_v2(dst.handle);
        dst.handle = nullptr;
        std::filesystem::remove(partial, ec);
        return error;
    }
    // The copy is a standalone file: no WAL beside it.
    sqlite3_exec(dst.handle, "PRAGMA journal_mode=DELETE;", nullptr, nullptr, nullptr);
    sqlite3_close_v2(dst.handle);
    dst.handle = nullptr;
    std::filesystem::rename(partial, destination, ec);
    if (ec) return destination + ": " + ec.message();
    return {};
}

std::string exportRawNdjson(const std::string& source, const std::vector<std::int64_t>& seqs,
                            const std::string& destination,
                            const std::function<void(std::int64_t, std::int64_t)>& progress,
                            const std::atomic<bool>& cancelled) {
    try {
        const CaptureReader reader(source);
        std::ofstream out(destination, std::ios::binary | std::ios::trunc);
        if (!out) return destination + ": cannot write: " + std::strerror(errno);
        const std::int64_t total = std::int64_t(seqs.size());
        std::int64_t done = 0;
        // Runs of consecutive seqs are read as one window.
        std::size_t i = 0;
        while (i < seqs.size()) {
            if (cancelled.load()) return "cancelled";
            std::size_t j = i + 1;
            while (j < seqs.size() && j - i < 2048 && seqs[j] == seqs[j - 1] + 1) ++j;
            for (const StoredEvent& event : reader.eventsAfter(seqs[i] - 1, std::int64_t(j - i))) {
                std::string line = event.raw;
                // One event per line. A line break in JSON text can only be whitespace between
                // tokens (a string cannot hold one unescaped), so it becomes a space.
                for (char& c : line)
                    if (c == '\n' || c == '\r') c = ' ';
                out << line << '\n';
            }
            done += std::int64_t(j - i);
            i = j;
            if (progress) progress(done, total);
            if (!out) return destination + ": write failed after " + std::to_string(done) + " events";
        }
        out.flush();
        if (!out) return destination + ": write failed";
        return {};
    } catch (const std::exception& e) {
        return e.what();
    }
}

} // namespace pipescope
