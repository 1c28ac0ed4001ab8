#include "pipeline/check.h"

#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>

#include "input/line_reader.h"
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

Pipeline::Pipeline(const SchemaRegistry* schemas, CaptureWriter* capture, PipelineOptions options)
    : m_schemas(schemas), m_capture(capture), m_options(options), m_decoder(options.format) {
    m_report.unplannedPolicy = std::string(toString(options.unplanned));
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
    m_capture->append(std::move(entry));
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
    m_report.events += decoded.eventCount();
    // Keep input order: rejected elements and events of one batch are interleaved by index.
    std::size_t nextRejected = 0;
    auto flushRejectedBefore = [&](std::int32_t index) {
        while (nextRejected < decoded.rejected.size() &&
               (index < 0 || decoded.rejected[nextRejected].origin.index < index)) {
            const RejectedEvent& rejected = decoded.rejected[nextRejected++];
            ++m_report.rejected;
            deadLetter("rejected", dumpLenient({{"message", rejected.message}}), rejected.origin, rejected.name,
                       rejected.distinctId, std::nullopt, rejected.rawBytes(), rejected.message);
        }
    };
    for (const Event& event : decoded.events) {
        flushRejectedBefore(event.origin.index);
        processEvent(event);
    }
    flushRejectedBefore(-1);
}

void Pipeline::processEvent(const Event& event) {
    switch (event.stream) {
    case Stream::Client: ++m_report.client; break;
    case Stream::Server: ++m_report.server; break;
    case Stream::Unknown: ++m_report.unknownStream; break;
    }

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
    if (!m_capture) {
        if (deadLettered) {
            std::string message = verdict == Verdict::Invalid
                                      ? (m_failures.empty() ? std::string("schema violation")
                                                            : m_failures.front().pointer + ": " +
                                                                  m_failures.front().message)
                                      : "no schema for event \"" + std::string(event.name) + "\"";
            deadLetter(verdict == Verdict::Invalid ? "schema_violation" : "unplanned", {}, event.origin, event.name,
                       event.distinctId, std::nullopt, {}, std::move(message));
        }
        return;
    }

    StoredEvent stored;
    stored.seq = m_nextSeq++;
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
    stored.schemaVersion = schemaVersion;
    const nlohmann::json failures = m_failures.empty() ? nlohmann::json::array() : failuresJson(m_failures);
    stored.failures = m_failures.empty() ? std::string("[]") : dumpLenient(failures);
    stored.properties = simdjson::minify(event.properties);
    stored.raw = event.rawBytes();

    if (deadLettered) {
        std::string message;
        std::string reason;
        nlohmann::json detail;
        if (verdict == Verdict::Invalid) {
            reason = "schema_violation";
            detail = {{"schema_version", schemaVersion}, {"failures", failures}};
            message = m_failures.empty() ? std::string("schema violation")
                                         : m_failures.front().pointer + ": " + m_failures.front().message;
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

RunReport runCheck(const CheckOptions& options) {
    // Everything that can fail up front fails before any input is read or any file is written.
    std::vector<std::unique_ptr<LineReader>> readers;
    for (const auto& input : options.inputs)
        readers.push_back(std::make_unique<LineReader>(input, options.maxLineBytes));

    SchemaRegistry schemas;
    if (options.schemasDir) schemas = SchemaRegistry::loadDirectory(*options.schemasDir);

    std::unique_ptr<CaptureWriter> capture;
    if (options.capturePath) capture = std::make_unique<CaptureWriter>(*options.capturePath);

    Pipeline pipeline(options.schemasDir ? &schemas : nullptr, capture.get(), options.pipeline);
    RunReport& report = pipeline.report();
    if (options.schemasDir) {
        report.schemasDir = options.schemasDir->string();
        report.schemaCount = schemas.size();
    }
    if (options.capturePath) report.capturePath = options.capturePath->string();

    for (std::size_t i = 0; i < readers.size(); ++i) {
        LineReader& reader = *readers[i];
        InputStats stats;
        stats.path = options.inputs[i];
        const std::uint64_t linesBefore = report.lines;
        const std::uint64_t eventsBefore = report.events;
        try {
            while (auto line = reader.next()) {
                if (line->text.find_first_not_of(" \t\r\f\v") == std::string_view::npos && !line->oversize)
                    continue;
                Origin origin{options.inputs[i], line->number, -1};
                pipeline.processLine(line->text, origin, true, line->oversize, line->fullLength);
            }
        } catch (const InputError& e) {
            stats.error = e.what();
        }
        stats.compressed = reader.compressed();
        stats.lines = report.lines - linesBefore;
        stats.events = report.events - eventsBefore;
        report.files.push_back(std::move(stats));
        readers[i].reset(); // close each input as soon as it is done
    }
    if (capture) capture->close();
    return report;
}

} // namespace pipescope
