#include "pipeline/capture_replay.h"

#include <charconv>

#include "dedup/dedup_window.h"
#include "pipeline/capture_metadata.h"
#include "store/capture_store.h"

namespace pipescope {

namespace {

constexpr std::int64_t kProgressEvery = 4096;

// The window's hash of a stored dedup key: a fingerprint is kept as "fingerprint:" and the 16
// hex digits of the hash itself; any other key is hashed as the live pipeline hashed it.
std::uint64_t storedKeyHash(const StoredEvent& stored, const std::string& where) {
    constexpr std::string_view kFingerprint = "fingerprint:";
    const std::string& key = stored.dedupKey;
    if (key.rfind(kFingerprint, 0) != 0) return dedupKeyHash(key);
    const char* begin = key.data() + kFingerprint.size();
    const char* end = key.data() + key.size();
    std::uint64_t hash = 0;
    const auto [stop, error] = std::from_chars(begin, end, hash, 16);
    if (error != std::errc() || stop != end || end - begin != 16)
        throw StoreError((where.empty() ? std::string("capture") : where) + ": event " + std::to_string(stored.seq) +
                         ": dedup key \"" + key.substr(0, 80) +
                         "\" is not a fingerprint (\"fingerprint:\" and 16 hex digits)");
    return hash;
}

} // namespace

std::int64_t replayCapture(const CaptureReader& capture, const std::string& where, DedupWindow* window,
                           IdentityGraph& graph, UnplannedPolicy unplanned, const ReplayProgressCallback& progress) {
    StoredIdentityReplay identity(graph, unplanned);
    ReplayProgress done{0, progress ? capture.eventCount() : 0};
    std::int64_t last = 0;
    bool cancelled = false;
    capture.forEachEvent([&](const StoredEvent& stored) {
        last = std::max(last, stored.seq);
        if (progress && ++done.events % kProgressEvery == 0 && !progress(done)) {
            cancelled = true;
            return false;
        }
        if (stored.verdict == Verdict::Duplicate) return true;
        if (window && !stored.dedupKey.empty()) {
            // The live pipeline's clock: received, else the event's own time, else when it was sent.
            const std::int64_t time = stored.receivedAt ? *stored.receivedAt
                                      : stored.timestamp ? *stored.timestamp
                                                         : stored.sentAt.value_or(0);
            window->observe(storedKeyHash(stored, where),
                            dedupContentHash(stored.name, stored.distinctId, stored.properties), time);
        }
        identity.observe(stored);
        return true;
    });
    if (cancelled || (progress && !progress(done))) throw ReplayCancelled();
    return last;
}

IdentityGraph replayIdentity(const CaptureReader& capture, const std::string& where,
                             const ReplayProgressCallback& progress) {
    const CaptureMetadata metadata = readCaptureMetadata(capture, where);
    IdentityGraph graph(metadata.identityOptions());
    replayCapture(capture, where, nullptr, graph, metadata.unplanned, progress);
    graph.finish();
    return graph;
}

StoredIdentityReplay::StoredIdentityReplay(IdentityGraph& graph, UnplannedPolicy unplanned)
    : m_graph(graph), m_unplanned(unplanned), m_correlations(graph.options().correlationKeys) {
    m_emptyObject = m_emptyParser.parse(std::string_view("{}")).value();
}

void StoredIdentityReplay::observe(const StoredEvent& stored) {
    // Only what went through identity the first time: valid, unique, not dead-lettered.
    if (stored.verdict == Verdict::Duplicate || stored.verdict == Verdict::Invalid) return;
    if (stored.verdict == Verdict::Unplanned && m_unplanned == UnplannedPolicy::Dlq) return;
    simdjson::dom::element properties;
    if (m_parser.parse(stored.properties).get(properties) != simdjson::SUCCESS || !properties.is_object())
        properties = m_emptyObject;
    m_origin = stored.originSource + ":" + std::to_string(stored.originLine);
    if (stored.originIndex >= 0) m_origin += "#" + std::to_string(stored.originIndex);
    IdentityEvent input;
    input.seq = stored.seq;
    input.name = stored.name;
    input.distinctId = stored.distinctId;
    input.anonymousId = stored.anonymousId;
    input.userId = stored.userId;
    input.aliasId = stored.aliasId;
    input.stream = parseStream(stored.stream).value_or(Stream::Unknown);
    input.timeMillis = stored.timestamp ? stored.timestamp : stored.receivedAt;
    input.origin = m_origin;
    input.correlations = m_correlations.extract(properties);
    if (m_groups.extract(stored.name, parseFormat(stored.format).value_or(Format::Auto), properties)) {
        input.groupType = m_groups.type();
        input.groupKey = m_groups.key();
        input.groupProperties = m_groups.properties();
    }
    m_graph.observe(input);
}


} // namespace pipescope
