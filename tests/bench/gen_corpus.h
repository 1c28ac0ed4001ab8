#pragma once
// A deterministic NDJSON corpus of product-analytics events for the pipeline benchmark: the
// shapes real SDKs send (posthog-js, posthog-node, Segment analytics.js and analytics-node),
// one event per line, dominated by payment_completed, with a few percent of events planted
// invalid against the schemas in tests/bench/schemas/ and a few unplanned events (no schema).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pipescope::bench {

inline constexpr std::uint64_t kDefaultSeed = 0x9e3779b97f4a7c15ull;

struct CorpusTruth {
    std::uint64_t seed = 0;
    std::size_t events = 0;
    std::size_t valid = 0;     // planned events that match their schema
    std::size_t invalid = 0;   // planned events with one planted defect
    std::size_t unplanned = 0; // events with no schema in the registry
    // 1-based line numbers of the planted-invalid events, ascending.
    std::vector<std::uint64_t> invalidLines;
    // What was planted on each of those lines (same order), e.g. "payment_completed:item_quantity_zero".
    std::vector<std::string> defects;
};

struct GeneratedCorpus {
    std::string text; // NDJSON, '\n' after every line
    CorpusTruth truth;
};

// Same (events, seed) gives the same bytes on every platform: the generator uses its own PRNG
// and integer arithmetic only (money in cents), no <random> distributions, no locale.
GeneratedCorpus generateCorpus(std::size_t events, std::uint64_t seed = kDefaultSeed);

// The sidecar `<corpus>.meta.json` with the truth, so a corpus read back from a file can be
// checked.
std::string truthToJson(const CorpusTruth& truth);
// Throws std::runtime_error on a malformed sidecar.
CorpusTruth truthFromJson(const std::string& text);

} // namespace pipescope::bench
