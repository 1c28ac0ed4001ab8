#pragma once
// The processing pass shared by every source:
//   decode -> dedup -> validate -> identity -> (capture, DLQ, report).
// Duplicates never reach validation (a retried bad event is dead-lettered once); identity sees
// the valid, unique events in processing order.
// `pipescope-cli check` feeds it files; the collector and Kafka sources feed it batches.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dedup/dedup_window.h"
#include "event/event.h"
#include "format/decoder.h"
#include "identity/identity_graph.h"
#include "pipeline/report.h"
#include "schema/schema.h"

namespace pipescope {

class CaptureWriter;
struct StoredEvent;
enum class Verdict : std::uint8_t;

enum class UnplannedPolicy : std::uint8_t { Allow, Warn, Dlq };
std::string_view toString(UnplannedPolicy policy);
std::optional<UnplannedPolicy> parseUnplannedPolicy(std::string_view text);

struct PipelineOptions {
    Format format = Format::Auto;
    UnplannedPolicy unplanned = UnplannedPolicy::Allow;
    std::size_t examplesPerReason = 5;
    bool dedup = true;
    DedupOptions dedupOptions;
    // Events without an id get a fingerprint (name, distinct id, timestamp, properties) as key.
    bool fingerprint = false;
    // Correlation keys beyond $session_id and $device_id (e.g. order_id).
    std::vector<std::string> correlate;
};

// A request the collector accepted, as the pipeline needs to know it.
struct RequestContext {
    std::int64_t ingestId = 0;    // its row in the capture's ingest log
    std::string origin;           // "http:/batch/": with the ingest id, where its events came from
    std::int64_t receivedAt = 0;  // epoch ms: the dedup window's clock
    std::optional<Stream> stream; // from the source mapping (token, write key, path), if any
    std::string idempotencyKey;   // X-Idempotency-Key: the dedup key of a single-event request
    std::string project;          // the request's token / write key: its events' project
};

class CaptureReader;

// Feeds stored events to an identity graph as the pipeline did when it processed them: a capture
// read back (`identity --explain`, a resumed `run`) rebuilds the same graph.
class StoredIdentityReplay {
public:
    StoredIdentityReplay(IdentityGraph& graph, UnplannedPolicy unplanned);
    void observe(const StoredEvent& stored);
    // Which project each stored event was in (the capture's "identity_projects" state).
    void setProjects(ProjectMap projects) { m_projects = std::move(projects); }

private:
    IdentityGraph& m_graph;
    UnplannedPolicy m_unplanned;
    CorrelationExtractor m_correlations;
    GroupExtractor m_groups;
    simdjson::dom::parser m_parser;
    simdjson::dom::parser m_emptyParser; // its document outlives every parse of m_parser
    simdjson::dom::element m_emptyObject;
    std::string m_origin;
    ProjectMap m_projects;
    PersonPropertyExtractor m_personProperties;
};

class Pipeline {
public:
    // `schemas` and `capture` may be null (no validation / nothing kept); both must outlive it.
    // `window` is a dedup window restored from saved state; a fresh one when absent.
    Pipeline(const SchemaRegistry* schemas, CaptureWriter* capture, PipelineOptions options,
             std::optional<DedupWindow> window = std::nullopt);

    // One non-blank input line. `origin.line` is the line number; `oversize` lines hold only
    // their first bytes and are dead-lettered as unparseable.
    void processLine(std::string_view line, Origin origin, bool padded, bool oversize = false,
                     std::uint64_t fullLength = 0);

    // Completes the identity graph (issues that need every event), fills the report's identity
    // section and writes the issues to the capture.
    void finish();

    const DedupWindow& dedupWindow() const { return m_dedup; }
    const IdentityGraph& identityGraph() const { return m_identity; }
    // One collector request's decoded body (not padded: it is copied).
    void processRequest(std::string_view body, const RequestContext& request);
    // Continues from an existing capture: seqs go on after its last event, the dedup window and
    // the identity graph are rebuilt from the events it holds.
    void restore(const CaptureReader& capture);
    std::int64_t lastSeq() const { return m_nextSeq - 1; }

    RunReport& report() { return m_report; }
    const RunReport& report() const { return m_report; }

private:
    void processEvent(const Event& event);
    // Returns true when the event is a duplicate (and has been recorded as one).
    bool deduplicate(const Event& event, std::int64_t seq, const std::string& properties);
    StoredEvent toStored(const Event& event, std::int64_t seq, Verdict verdict, std::string properties) const;
    void observeIdentity(const Event& event, std::int64_t seq);
    void applyRequest(Event& event, std::size_t eventsInRequest) const;
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
    DedupWindow m_dedup;
    IdentityGraph m_identity;
    CorrelationExtractor m_correlations;
    GroupExtractor m_groups;
    PersonPropertyExtractor m_personProperties;
    ProjectMap m_projects; // kept in the capture for a replay
    std::string m_originText;
    std::string m_dedupKey; // the current event's key ("" when none)
    const RequestContext* m_request = nullptr; // the collector request being processed
};

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
