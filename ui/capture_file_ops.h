#pragma once
// File operations of the window that run on a worker thread: Save As (a consistent copy of a
// capture through SQLite's online backup API, safe while the capture is being written) and the
// export of a row set as NDJSON (each event's raw bytes, one per line, as it was sent — so the
// file can be fixed and checked again).

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pipescope {

// progress(done, total) in pages; returns an error message, empty on success. The copy is a
// snapshot of the capture at the moment the backup started. `destination` is replaced.
std::string backupCapture(const std::string& source, const std::string& destination,
                          const std::function<void(int done, int total)>& progress, const std::atomic<bool>& cancelled);

// Writes the raw bytes of the events `seqs` of the capture `source` to `destination`, one per
// line. progress(done, total) in events. Returns an error message, empty on success.
std::string exportRawNdjson(const std::string& source, const std::vector<std::int64_t>& seqs,
                            const std::string& destination,
                            const std::function<void(std::int64_t done, std::int64_t total)>& progress,
                            const std::atomic<bool>& cancelled);

} // namespace pipescope
