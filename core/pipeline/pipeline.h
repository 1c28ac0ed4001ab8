#pragma once
// The processing pass shared by every source:
//   decode -> dedup -> validate -> identity -> (capture, DLQ, report).
// Duplicates never reach validation (a retried bad event is dead-lettered once); identity sees
// the valid, unique events in processing order.
// `pipescope-cli check` feeds it files (check.h); `run` feeds it collector requests (run.h).

#include <cstdint>
#include <functional>
#include <map>
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

class CaptureReader;
class CaptureWriter;
struct StoredEvent;
struct ReplayProgress;
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

// The identity options a pipeline with these options uses (correlation keys, deduplicated).
IdentityOptions identityOptions(const PipelineOptions& options);

// A request the collector accepted, as the pipeline needs to know it.
struct RequestContext {
    std::int64_t ingestId = 0;    // its row in the capture's ingest log
    std::string origin;           // "http:/batch/": with the ingest id, where its events came from
    std::int64_t receivedAt = 0;  // epoch ms: the dedup window's clock
    std::optional<Stream> stream; // from the source mapping (token, write key, path), if any
    std::string idempotencyKey;   // X-Idempotency-Key: the dedup key of a single-event request
};

class Pipeline {
public:
    // `schemas` and `capture` may be null (no validation / nothing kept); both must outlive it.
    // `window` is a dedup window restored from saved state; a fresh one when absent. With a
    // capture, the options it was made with are written to it (capture_metadata.h).
    Pipeline(const SchemaRegistry* schemas, CaptureWriter* capture, PipelineOptions options,
             std::optional<DedupWindow> window = std::nullopt);

    // One non-blank input line. `origin.line` is the line number; `oversize` lines hold only
    // their first bytes and are dead-lettered as unparseable.
    void processLine(std::string_view line, Origin origin, bool padded, bool oversize = false,
                     std::uint64_t fullLength = 0);
    // One collector request's decoded body (not padded: it is copied).
    void processRequest(std::string_view body, const RequestContext& request);

    // Completes the identity graph (issues that need every event), fills the report's identity
    // section and writes the issues to the capture.
    void finish();

    // Continues from an existing capture: seqs go on after its last event, the dedup window and
    // the identity graph are rebuilt from the events it holds (capture_replay.h). `progress`
    // (optional) is called as the events are read and may cancel (ReplayCancelled); `where`
    // names the capture in errors.
    void restore(const CaptureReader& capture, const std::function<bool(const ReplayProgress&)>& progress = {},
                 const std::string& where = {});

    const DedupWindow& dedupWindow() const { return m_dedup; }
    const IdentityGraph& identityGraph() const { return m_identity; }
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
    std::string m_originText;
    std::string m_dedupKey; // the current event's key ("" when none)
    const RequestContext* m_request = nullptr; // the collector request being processed
};

} // namespace pipescope
