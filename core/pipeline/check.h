#pragma once
// The processing pass shared by every source: decode -> validate -> (capture, DLQ, report).
// `pipescope-cli check` feeds it files; the collector and Kafka sources feed it batches.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "event/event.h"
#include "format/decoder.h"
#include "pipeline/report.h"
#include "schema/schema.h"

namespace pipescope {

class CaptureWriter;

enum class UnplannedPolicy : std::uint8_t { Allow, Warn, Dlq };
std::string_view toString(UnplannedPolicy policy);
std::optional<UnplannedPolicy> parseUnplannedPolicy(std::string_view text);

struct PipelineOptions {
    Format format = Format::Auto;
    UnplannedPolicy unplanned = UnplannedPolicy::Allow;
    std::size_t examplesPerReason = 5;
};

class Pipeline {
public:
    // `schemas` and `capture` may be null (no validation / nothing kept); both must outlive it.
    Pipeline(const SchemaRegistry* schemas, CaptureWriter* capture, PipelineOptions options);

    // One non-blank input line. `origin.line` is the line number; `oversize` lines hold only
    // their first bytes and are dead-lettered as unparseable.
    void processLine(std::string_view line, Origin origin, bool padded, bool oversize = false,
                     std::uint64_t fullLength = 0);

    RunReport& report() { return m_report; }
    const RunReport& report() const { return m_report; }

private:
    void processEvent(const Event& event);
    void deadLetter(std::string reason, std::string detail, const Origin& origin, std::string_view name,
                    std::string_view distinctId, std::optional<std::int64_t> eventSeq, std::string raw,
                    std::string message);

    const SchemaRegistry* m_schemas;
    CaptureWriter* m_capture;
    PipelineOptions m_options;
    EventDecoder m_decoder;
    RunReport m_report;
    std::int64_t m_nextSeq = 1;
    std::vector<ValidationFailure> m_failures;
    std::map<std::string, std::size_t> m_examplesPerReason;
};

struct CheckOptions {
    std::vector<std::string> inputs; // files, .gz files, "-" for stdin
    std::optional<std::filesystem::path> schemasDir;
    std::optional<std::filesystem::path> capturePath;
    PipelineOptions pipeline;
    std::size_t maxLineBytes = 16u << 20;
};

// Runs `check` over every input in order. Throws InputError / SchemaError / StoreError for
// problems found before any input is processed (missing file, bad schema, unwritable capture);
// a read error in the middle of an input is recorded in the report and the run goes on with
// the next input.
RunReport runCheck(const CheckOptions& options);

} // namespace pipescope
