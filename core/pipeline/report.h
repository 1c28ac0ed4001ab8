#pragma once
// What a pipeline run found, as counts a person and a machine can both read. The JSON form is
// the contract of `pipescope-cli check --report` (see README).

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "identity/identity_graph.h"

namespace pipescope {

struct InputStats {
    std::string path;
    bool compressed = false;
    std::uint64_t lines = 0;   // non-blank lines
    std::uint64_t events = 0;
    std::string error;         // a read error that ended this input early
};

struct FailureStats {
    std::uint64_t count = 0;
    std::string exampleMessage;
};

// One dead-lettered input, kept for the human summary (the capture keeps them all).
struct DeadLetterExample {
    std::string reason;
    std::string where;    // file:line[#index]
    std::string message;
};

struct DedupReport {
    bool enabled = true;
    std::string mode = "exact";
    std::int64_t windowMillis = 0;
    bool fingerprint = false;
    std::uint64_t unique = 0;      // first seen, or without an id
    std::uint64_t duplicates = 0;
    std::uint64_t conflicting = 0; // duplicates whose name, distinct id or properties differ
    std::uint64_t withoutId = 0;   // no id (and no fingerprint): never duplicates
    std::uint64_t evictedEarly = 0;
    std::string statePath;         // --dedup-state
    std::uint64_t keysRestored = 0;
    std::vector<DeadLetterExample> examples; // the first few duplicates
};

// Every decoded event ends in exactly one of these, so they add up to RunReport::events and a
// chart can stack them. (The report's `valid` / `invalid` are the policy's view and nest:
// unplanned events count as valid under allow and warn, as invalid under dlq.)
struct EventOutcomes {
    std::uint64_t schemaValid = 0;   // passed its schema
    std::uint64_t schemaInvalid = 0; // failed its schema (dead-lettered)
    std::uint64_t unplanned = 0;     // no schema (dead-lettered only under dlq)
    std::uint64_t duplicates = 0;    // never validated
    std::uint64_t rejected = 0;      // decoded but unusable (no distinct id, ...), dead-lettered
    std::uint64_t unparseable = 0;   // batch elements that are not events, dead-lettered
    std::uint64_t total() const {
        return schemaValid + schemaInvalid + unplanned + duplicates + rejected + unparseable;
    }
};

struct RunReport {
    std::vector<InputStats> files;
    std::uint64_t lines = 0;
    std::uint64_t events = 0;
    std::uint64_t unparseable = 0;         // dead letters: whole lines / bodies and batch elements
    std::uint64_t unparseableElements = 0; // of which batch elements (counted in `events` too)
    std::uint64_t rejected = 0;

    std::uint64_t client = 0;
    std::uint64_t server = 0;
    std::uint64_t unknownStream = 0;

    std::uint64_t valid = 0;
    std::uint64_t invalid = 0;
    std::uint64_t unplanned = 0;
    std::string unplannedPolicy = "allow";
    // (event, pointer, keyword) -> count
    std::map<std::tuple<std::string, std::string, std::string>, FailureStats> failures;
    std::map<std::string, std::uint64_t> unplannedEvents;

    DedupReport dedup;
    IdentitySummary identity;
    std::vector<IdentityIssue> identityExamples; // the first few issues of each kind

    std::uint64_t dlqTotal() const { return unparseable + rejected + invalid; }
    std::vector<DeadLetterExample> examples; // the first few per reason
    std::string schemasDir;
    std::size_t schemaCount = 0;
    std::string capturePath;

    // `run`: the collector's requests. `lines` counts the requests the pipeline processed;
    // undecodable ones never reach it (the collector dead-letters them: they count in
    // `unparseable`) and refused ones are counted by status.
    bool fromCollector = false;
    std::uint64_t undecodableRequests = 0;
    std::map<int, std::uint64_t> refusedByStatus; // 401, 403, 413, 429, 503 ...

    bool hasInputErrors() const;
    // Findings: anything dead-lettered, unplanned events under the `warn` policy, duplicates, and
    // identity issues (probable_same_user, a heuristic, and shared_device, a note, are not).
    bool hasFindings() const;

    EventOutcomes outcomes() const;

    // The `--report` JSON. Human text (the CLI's summary) is built by the CLI from the fields.
    nlohmann::json toJson() const;
};

} // namespace pipescope
