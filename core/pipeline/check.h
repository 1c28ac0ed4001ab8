#pragma once
// `pipescope-cli check`: the pipeline (pipeline.h) over files, in order.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/capture_replay.h" // StoredIdentityReplay, for callers that used to find it here
#include "pipeline/pipeline.h"
#include "pipeline/report.h"

namespace pipescope {

struct CheckOptions {
    std::vector<std::string> inputs; // files, .gz files, "-" for stdin
    std::optional<std::filesystem::path> schemasDir;
    std::optional<std::filesystem::path> capturePath;
    PipelineOptions pipeline;
    std::size_t maxLineBytes = 16u << 20;
    // A saved dedup window: restored when the file exists, saved (atomically) after the run.
    std::optional<std::filesystem::path> dedupState;
};

// Runs `check` over every input in order. Throws InputError / SchemaError / StoreError for
// problems found before any input is processed (missing file, bad schema, unwritable capture);
// a read error in the middle of an input is recorded in the report and the run goes on with
// the next input.
RunReport runCheck(const CheckOptions& options);

} // namespace pipescope
