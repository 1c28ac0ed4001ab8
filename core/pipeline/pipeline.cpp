#include "pipeline/pipeline.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>

#include "pipeline/capture_metadata.h"
#include "pipeline/capture_replay.h"
#include "store/capture_store.h"

namespace pipescope {

std::string_view toString(UnplannedPolicy policy) {
    switch (policy) {
    case UnplannedPolicy::Warn: return "warn";
    case UnplannedPolicy::Dlq: return "dlq";
    case UnplannedPolicy::Allow: break;
    }
    return "allow";
}

std::optional<UnplannedPolicy> parseUnplannedPolicy(std::string_view text) {
    if (text == "allow") return UnplannedPolicy::Allow;
    if (text == "warn") return UnplannedPolicy::Warn;
    if (text == "dlq") return UnplannedPolicy::Dlq;
    return std::nullopt;
}

namespace {

std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string where(const Origin& origin) {
    std::string text(origin.source);
    text += ':';
    text += std::to_string(origin.line);
    if (origin.index >= 0) text += "#" + std::to_string(origin.index);
    return text;
}

nlohmann::json failuresJson(const std::vector<ValidationFailure>& failures) {
    nlohmann::json array = nlohmann::json::array();
    for (const auto& failure : failures)
        array.push_back({{"pointer", failure.pointer}, {"keyword", failure.keyword}, {"message", failure.message}});
    return array;
}

// Raw bytes may be anything (invalid UTF-8, NULs); JSON text fields must still serialise.
std::string dumpLenient(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

IdentityOptions identityOptions(const PipelineOptions& options) {
    IdentityOptions identity;
    for (const auto& key : options.correlate)
        if (std::find(identity.correlationKeys.begin(), identity.correlationKeys.end(), key) ==
            identity.correlationKeys.end())
            identity.correlationKeys.push_back(key);
    return identity;
}

namespace {

std::string pointerText(const std::string& pointer) { return pointer.empty() ? "(root)" : pointer; }

std::string hex(std::uint64_t value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text(16, '0');
    for (int i = 15; i >= 0; --i, value >>= 4) text[static_cast<std::size_t>(i)] = kDigits[value & 0xf];
    return text;
}

} // namespace

Pipeline::Pipeline(const SchemaRegistry* schemas, CaptureWriter* capture, PipelineOptions options,
                   std::optional<DedupWindow> window)
    : m_schemas(schemas), m_capture(capture), m_options(std::move(options)), m_decoder(m_options.format),
      m_dedup(window ? std::move(*window) : DedupWindow(m_options.dedupOptions)),
      m_identity(identityOptions(m_options)), m_correlations(m_identity.options().correlationKeys) {
    m_report.unplannedPolicy = std::string(toString(m_options.unplanned));
    m_report.dedup.enabled = m_options.dedup;
    m_report.dedup.mode = std::string(toString(m_dedup.options().mode));
    m_report.dedup.windowMillis = m_dedup.options().windowMillis;
    m_report.dedup.fingerprint = m_options.fingerprint;
    if (m_capture) {
        // What a later reader (identity --explain, the GUI) needs to interpret the capture.
        CaptureMetadata metadata = CaptureMetadata::of(m_options);
        metadata.dedupMode = m_dedup.options().mode; // a restored window's own options
        metadata.dedupWindowMillis = m_dedup.options().windowMillis;
        writeCaptureMetadata(*m_capture, metadata);
    }
}

void Pipeline::deadLetter(std::string reason, std::string detail, const Origin& origin, std::string_view name,
                          std::string_view distinctId, std::optional<std::int64_t> eventSeq, std::string raw,
                          std::string message) {
    auto& shown = m_examplesPerReason[reason];
    if (shown < m_options.examplesPerReason) {
        ++shown;
        m_report.examples.push_back({reason, where(origin), std::move(message)});
    }
    if (!m_capture) return;
    DlqEntry entry;
    entry.reason = std::move(reason);
    entry.detail = std::move(detail);
    entry.originSource = std::string(origin.source);
    entry.originLine = origin.line;
    entry.originIndex = origin.index;
    entry.eventName = std::string(name);
    entry.distinctId = std::string(distinctId);
    entry.eventSeq = eventSeq;
    entry.raw = std::move(raw);
    entry.createdAt = nowMillis();
    entry.ingestId = m_request ? std::optional<std::int64_t>(m_request->ingestId) : std::nullopt;
    m_capture->append(std::move(entry));
}

void Pipeline::processRequest(std::string_view body, const RequestContext& request) {
    m_request = &request;
    processLine(body, Origin{request.origin, static_cast<std::uint64_t>(request.ingestId), -1}, false);
    m_request = nullptr;
}

void Pipeline::applyRequest(Event& event, std::size_t eventsInRequest) const {
    // The collector's clock is the received time; its source mapping outranks library fields;
    // an X-Idempotency-Key names the one event of a single-event request.
    event.receivedAt = m_request->receivedAt;
    if (m_request->stream) event.stream = *m_request->stream;
    if (!m_request->project.empty()) event.project = m_request->project;
    if (!m_request->idempotencyKey.empty() && eventsInRequest == 1) {
        event.id = m_request->idempotencyKey;
        event.idSource = IdSource::IdempotencyKey;
    }
}

void Pipeline::restore(const CaptureReader& capture, const ReplayProgressCallback& progress,
                       const std::string& where) {
    if (auto projects = ProjectMap::fromJson(capture.state("identity_projects").value_or(""))) m_projects = *projects;
    const std::int64_t last =
        replayCapture(capture, where, m_options.dedup ? &m_dedup : nullptr, m_identity, m_options.unplanned, progress);
    m_nextSeq = std::max(last, capture.maxEventSeq()) + 1;
}

void Pipeline::processLine(std::string_view line, Origin origin, bool padded, bool oversize,
                           std::uint64_t fullLength) {
    ++m_report.lines;
    if (oversize) {
        ++m_report.unparseable;
        const std::string message = "line of " + std::to_string(fullLength) +
                                    " bytes exceeds the line limit; only its first " +
                                    std::to_string(line.size()) + " bytes are kept";
        deadLetter("unparseable", dumpLenient({{"message", message}, {"length", fullLength}}), origin, {}, {},
                   std::nullopt, std::string(line), message);
        return;
    }
    const DecodedLine& decoded = m_decoder.decode(line, origin, padded);
    if (!decoded.parsed) {
        ++m_report.unparseable;
        nlohmann::json detail = {{"message", decoded.parseError}};
        std::string message = decoded.parseError;
        if (decoded.errorOffset != std::string::npos) {
            detail["offset"] = decoded.errorOffset;
            message += " (byte " + std::to_string(decoded.errorOffset) + ")";
        }
        deadLetter("unparseable", dumpLenient(detail), origin, {}, {}, std::nullopt, std::string(line),
                   std::move(message));
        return;
    }
    // An unparseable batch element counts as an event the line held, and as an unparseable
    // dead letter: `events` and `dlq.total` both still add up.
    m_report.events += decoded.eventCount();
    // Keep input order: rejected and unparseable elements and events of one batch are
    // interleaved by index.
    std::size_t nextRejected = 0;
    std::size_t nextUnparseable = 0;
    auto flushDeadLettersBefore = [&](std::int32_t index) {
        for (;;) {
            const bool rejectedDue = nextRejected < decoded.rejected.size() &&
                                     (index < 0 || decoded.rejected[nextRejected].origin.index < index);
            const bool unparseableDue = nextUnparseable < decoded.unparseable.size() &&
                                        (index < 0 || decoded.unparseable[nextUnparseable].origin.index < index);
            if (!rejectedDue && !unparseableDue) return;
            if (rejectedDue && (!unparseableDue || decoded.rejected[nextRejected].origin.index <
                                                       decoded.unparseable[nextUnparseable].origin.index)) {
                const RejectedEvent& rejected = decoded.rejected[nextRejected++];
                ++m_report.rejected;
                deadLetter("rejected", dumpLenient({{"message", rejected.message}}), rejected.origin,
                           rejected.name, rejected.distinctId, std::nullopt, rejected.rawBytes(), rejected.message);
            } else {
                const UnparseableElement& element = decoded.unparseable[nextUnparseable++];
                ++m_report.unparseable;
                ++m_report.unparseableElements;
                nlohmann::json detail = {{"message", element.message}};
                std::string message = element.message;
                if (element.errorOffset != std::string::npos) {
                    detail["offset"] = element.errorOffset; // in the element's own bytes, its raw
                    message += " (byte " + std::to_string(element.errorOffset) + " of the element)";
                }
                deadLetter("unparseable", dumpLenient(detail), element.origin, {}, {}, std::nullopt,
                           std::string(element.raw), std::move(message));
            }
        }
    };
    for (const Event& decodedEvent : decoded.events) {
        flushDeadLettersBefore(decodedEvent.origin.index);
        if (m_request) {
            Event event = decodedEvent;
            applyRequest(event, decoded.eventCount());
            processEvent(event);
        } else {
            processEvent(decodedEvent);
        }
    }
    flushDeadLettersBefore(-1);
}

StoredEvent Pipeline::toStored(const Event& event, std::int64_t seq, Verdict verdict, std::string properties) const {
    StoredEvent stored;
    stored.seq = seq;
    stored.eventId = std::string(event.id);
    stored.idSource = std::string(toString(event.idSource));
    stored.name = std::string(event.name);
    stored.distinctId = std::string(event.distinctId);
    stored.anonymousId = std::string(event.anonymousId);
    stored.userId = std::string(event.userId);
    stored.aliasId = std::string(event.aliasId);
    stored.stream = std::string(toString(event.stream));
    stored.format = std::string(toString(event.format));
    stored.timestamp = event.timestamp;
    stored.sentAt = event.sentAt;
    stored.receivedAt = event.receivedAt;
    stored.originSource = std::string(event.origin.source);
    stored.originLine = event.origin.line;
    stored.originIndex = event.origin.index;
    stored.verdict = verdict;
    stored.failures = "[]";
    stored.properties = std::move(properties);
    stored.raw = event.rawBytes();
    if (m_request) stored.ingestId = m_request->ingestId;
    stored.historicalMigration = event.historicalMigration;
    return stored;
}

bool Pipeline::deduplicate(const Event& event, std::int64_t seq, const std::string& properties) {
    DedupReport& dedup = m_report.dedup;
    m_dedupKey.clear();
    if (!m_options.dedup) {
        ++dedup.unique;
        return false;
    }
    std::uint64_t keyHash = 0;
    std::string_view keySource = toString(event.idSource);
    if (!event.id.empty()) {
        m_dedupKey = event.id;
        keyHash = dedupKeyHash(event.id);
    } else if (m_options.fingerprint) {
        keyHash = dedupFingerprint(event.name, event.distinctId, event.timestamp, properties);
        m_dedupKey = "fingerprint:" + hex(keyHash);
        keySource = "fingerprint";
    } else {
        ++dedup.withoutId;
        ++dedup.unique;
        return false;
    }
    // The window runs on the time the event was received; a file has only the event's own times.
    const std::int64_t time = event.receivedAt ? *event.receivedAt
                              : event.timestamp ? *event.timestamp
                              : event.sentAt    ? *event.sentAt
                                                : nowMillis();
    const DedupVerdict verdict =
        m_dedup.observe(keyHash, dedupContentHash(event.name, event.distinctId, properties), time);
    if (!verdict.duplicate) {
        ++dedup.unique;
        return false;
    }
    ++dedup.duplicates;
    if (verdict.conflicting) ++dedup.conflicting;
    if (dedup.examples.size() < m_options.examplesPerReason) {
        std::string message = std::string(keySource) + " " + m_dedupKey;
        if (verdict.firstSeenMillis)
            message += ", first seen " + formatTimestamp(*verdict.firstSeenMillis) + " (" +
                       std::to_string(time - *verdict.firstSeenMillis) + " ms earlier)";
        if (verdict.conflicting) message += "; name, distinct id or properties differ from the first";
        dedup.examples.push_back(
            {verdict.conflicting ? "conflicting duplicate" : "duplicate", where(event.origin), std::move(message)});
    }
    if (m_capture) {
        StoredEvent stored = toStored(event, seq, Verdict::Duplicate, properties);
        stored.dedupKey = m_dedupKey;
        m_capture->append(std::move(stored));
        DuplicateRecord record;
        record.eventSeq = seq;
        record.key = m_dedupKey;
        record.keySource = std::string(keySource);
        record.firstSeen = verdict.firstSeenMillis;
        record.seen = time;
        record.conflicting = verdict.conflicting;
        m_capture->append(std::move(record));
    }
    return true;
}

void Pipeline::processEvent(const Event& event) {
    switch (event.stream) {
    case Stream::Client: ++m_report.client; break;
    case Stream::Server: ++m_report.server; break;
    case Stream::Unknown: ++m_report.unknownStream; break;
    }
    const std::int64_t seq = m_nextSeq++;
    // One canonical serialisation of the properties serves the content hash, the fingerprint
    // and the capture.
    const bool needProperties = m_capture || (m_options.dedup && (!event.id.empty() || m_options.fingerprint));
    std::string properties = needProperties ? simdjson::minify(event.properties) : std::string();
    if (deduplicate(event, seq, properties)) return;

    Verdict verdict = Verdict::Valid;
    int schemaVersion = 0;
    m_failures.clear();
    const SchemaRegistry::Entry* entry = m_schemas ? m_schemas->find(event.name) : nullptr;
    if (!entry) {
        ++m_report.unplanned;
        ++m_report.unplannedEvents[std::string(event.name)];
        verdict = Verdict::Unplanned;
        if (m_options.unplanned == UnplannedPolicy::Dlq)
            ++m_report.invalid;
        else
            ++m_report.valid;
    } else {
        schemaVersion = entry->version;
        if (entry->schema->isValid(event.properties)) {
            ++m_report.valid;
        } else {
            verdict = Verdict::Invalid;
            ++m_report.invalid;
            entry->schema->validate(event.properties, m_failures);
            for (const auto& failure : m_failures) {
                auto& stats = m_report.failures[{std::string(event.name), failure.pointer, failure.keyword}];
                if (stats.count++ == 0) stats.exampleMessage = failure.message;
            }
        }
    }

    const bool deadLettered =
        verdict == Verdict::Invalid || (verdict == Verdict::Unplanned && m_options.unplanned == UnplannedPolicy::Dlq);
    if (!deadLettered) observeIdentity(event, seq);
    if (!m_capture) {
        if (deadLettered) {
            std::string message = verdict == Verdict::Invalid
                                      ? (m_failures.empty() ? std::string("schema violation")
                                                            : pointerText(m_failures.front().pointer) + ": " +
                                                                  m_failures.front().message)
                                      : "no schema for event \"" + std::string(event.name) + "\"";
            deadLetter(verdict == Verdict::Invalid ? "schema_violation" : "unplanned", {}, event.origin, event.name,
                       event.distinctId, std::nullopt, {}, std::move(message));
        }
        return;
    }

    StoredEvent stored = toStored(event, seq, verdict, std::move(properties));
    stored.dedupKey = m_dedupKey;
    stored.schemaVersion = schemaVersion;
    const nlohmann::json failures = m_failures.empty() ? nlohmann::json::array() : failuresJson(m_failures);
    if (!m_failures.empty()) stored.failures = dumpLenient(failures);

    if (deadLettered) {
        std::string message;
        std::string reason;
        nlohmann::json detail;
        if (verdict == Verdict::Invalid) {
            reason = "schema_violation";
            detail = {{"schema_version", schemaVersion}, {"failures", failures}};
            message = m_failures.empty() ? std::string("schema violation")
                                         : pointerText(m_failures.front().pointer) + ": " + m_failures.front().message;
            if (m_failures.size() > 1) message += " (+" + std::to_string(m_failures.size() - 1) + " more)";
        } else {
            reason = "unplanned";
            message = "no schema for event \"" + stored.name + "\"";
            detail = {{"message", message}};
        }
        deadLetter(std::move(reason), dumpLenient(detail), event.origin, event.name, event.distinctId, stored.seq,
                   stored.raw, std::move(message));
    }
    m_capture->append(std::move(stored));
}

void Pipeline::observeIdentity(const Event& event, std::int64_t seq) {
    m_originText = where(event.origin);
    IdentityEvent input;
    input.seq = seq;
    input.name = event.name;
    input.distinctId = event.distinctId;
    input.anonymousId = event.anonymousId;
    input.userId = event.userId;
    input.aliasId = event.aliasId;
    input.stream = event.stream;
    input.timeMillis = event.timestamp ? event.timestamp : event.receivedAt;
    input.origin = m_originText;
    input.correlations = m_correlations.extract(event.properties);
    input.project = event.project;
    m_projects.note(seq, event.project);
    input.personUpdates = m_personProperties.extract(event.name, event.properties, event.format);
    input.processPerson = m_personProperties.processPerson();
    if (m_groups.extract(event.name, event.format, event.properties)) {
        input.groupType = m_groups.type();
        input.groupKey = m_groups.key();
        input.groupProperties = m_groups.properties();
    }
    m_identity.observe(input);
}

void Pipeline::finish() {
    m_identity.finish();
    m_report.identity = m_identity.summary();
    m_report.dedup.evictedEarly = m_dedup.stats().evictedEarly;
    m_report.identityExamples.clear();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
        auto first = m_identity.issues(static_cast<IdentityIssueKind>(k), 1);
        if (!first.empty()) m_report.identityExamples.push_back(std::move(first.front()));
    }
    if (!m_capture) return;
    m_capture->putState("identity_projects", m_projects.toJson());
    // Person properties and their blame are not stored: a replay of the events (with their
    // projects) rebuilds them exactly, and stored they were 1.8x the size of the events themselves
    // on the bench corpus (194 MB of JSON for 200k events, 10 s of the capture's write time).
    for (const IdentityIssue& issue : m_identity.issues()) {
        IdentityIssueRecord record;
        record.category = std::string(toString(issue.kind));
        record.message = issue.message;
        record.ids = dumpLenient(issue.ids);
        record.events = nlohmann::json(issue.eventSeqs).dump();
        record.detail = dumpLenient(issue);
        m_capture->append(std::move(record));
    }
}

} // namespace pipescope
