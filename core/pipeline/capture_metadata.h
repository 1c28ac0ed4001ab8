#pragma once
// What a later reader of a capture (identity --explain, a resumed `run`, the GUI) must know of
// the options the pipeline ran with, as one typed record. Kept in the capture's `meta` table
// through CaptureWriter::putMeta / CaptureReader::meta; the keys and their text are this file's
// business alone:
//   unplanned_policy  "allow" | "warn" | "dlq"
//   correlation_keys  JSON array of property names
//   dedup             JSON {"enabled": bool, "mode": "exact"|"bloom", "window": "24h", "fingerprint": bool}
// A key that is absent (a capture written before it existed) reads as the default.

#include <cstdint>
#include <string>
#include <vector>

#include "dedup/dedup_window.h"
#include "pipeline/pipeline.h"

namespace pipescope {

class CaptureReader;
class CaptureWriter;

struct CaptureMetadata {
    UnplannedPolicy unplanned = UnplannedPolicy::Allow;
    std::vector<std::string> correlationKeys = IdentityOptions{}.correlationKeys;
    bool dedupEnabled = true;
    DedupMode dedupMode = DedupMode::Exact;
    std::int64_t dedupWindowMillis = DedupOptions{}.windowMillis;
    bool fingerprint = false;

    // The metadata a pipeline with these options writes.
    static CaptureMetadata of(const PipelineOptions& options);
    // Identity options as the capture's events were stitched with.
    IdentityOptions identityOptions() const;
};

void writeCaptureMetadata(CaptureWriter& capture, const CaptureMetadata& metadata);
// Throws StoreError naming `where` (the capture's path) and the key when a value is not what
// this version writes.
CaptureMetadata readCaptureMetadata(const CaptureReader& capture, const std::string& where);

} // namespace pipescope
