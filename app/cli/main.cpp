// pipescope-cli: the headless face of the engine. Exit codes: 0 clean, 1 findings, 2 usage or
// input errors.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <cstring>
#include <fstream>
#include <iostream>
#include <algorithm>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/duration.h"
#include "filter/filter.h"
#include "filter/filter_sql.h"
#include "kafka/mock_cluster.h"
#include "identity/identity_graph.h"
#include "input/line_reader.h"
#include "pipeline/capture_replay.h"
#include "pipeline/check.h"
#include "pipeline/run.h"
#include "report_text.h"
#include "schema/schema.h"
#include "store/capture_json.h"
#include "store/capture_store.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFindings = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage = R"(usage: pipescope-cli <command> [options]

commands:
  check     decode, deduplicate, validate and stitch identities of NDJSON traffic; report
  export    write events, dead letters or duplicates of a capture as NDJSON
  identity  explain a distinct id's person, or list the identity issues of a capture
  run       the local pipeline: a collector for PostHog / Segment SDKs, a capture, destinations
  kafka-mock  a local Kafka cluster (librdkafka's mock) for tests and demos
  help      show help for a command: pipescope-cli help check
  version   print the version
)";

constexpr const char* kCheckUsage = R"(usage: pipescope-cli check [options] INPUT...

Decodes every event of the inputs (NDJSON: PostHog events and /batch bodies, Segment messages
and batches, canonical events; .gz or plain, detected by content; "-" reads stdin), drops
duplicates (same uuid / messageId within the window), validates each event's properties against
its JSON Schema, dead-letters what cannot go on, stitches distinct ids into persons, and reports.

options:
  --schemas DIR          schemas as DIR/<event>/<version>.json (the latest version applies)
  --unplanned POLICY     events without a schema: allow (default), warn, dlq
  --format FORMAT        auto (default), posthog, segment, canonical
  --report FILE|-        write the JSON report to FILE, or to stdout with "-"
  --capture FILE         keep every event and dead letter in a capture file (.pipescope)
  --max-line-bytes N     longest accepted input line (default 16777216)
  --quiet                no human summary

deduplication (key: X-Idempotency-Key > PostHog uuid > Segment messageId):
  --dedup-window SPAN    how long a key is remembered, by event time: 90m, 24h (default), 7d
  --dedup-mode MODE      exact (default: every key, 20 bytes each) or bloom (fixed size,
                         false positives at --bloom-fp-rate)
  --dedup-max-keys N     exact mode: most keys held (default 10000000); beyond, the oldest go
  --bloom-keys N         bloom mode: keys expected per window (default 10000000)
  --bloom-fp-rate R      bloom mode: false-positive rate (default 0.001)
  --dedup-fingerprint    events without an id are keyed by name, distinct id, timestamp and
                         properties
  --dedup-state FILE     keep the window across runs: read FILE if it exists, write it after
  --no-dedup             no deduplication

identity:
  --correlate KEY        a property whose value ties events to one person (repeatable; besides
                         $session_id and $device_id), e.g. --correlate order_id

exit: 0 every event valid, unique and stitched; 1 findings (dead letters, unplanned under warn,
duplicates, identity issues); 2 usage or input errors (missing file, unreadable schema,
corrupt gzip, unreadable dedup state).
)";

constexpr const char* kExportUsage = R"(usage: pipescope-cli export --capture FILE [--events | --dlq | --duplicates | --deliveries] [--filter EXPR] [--raw] [--reason R] [--destination NAME] [--output FILE]

  --events     the captured events (default), one JSON object per line with their verdict
  --dlq        the dead-letter queue, one JSON object per line with reason and detail
  --duplicates the duplicates, with their key, first occurrence and gap
  --deliveries every delivery attempt to a destination (`run`): events, attempt, status, error,
               outcome (delivered, retrying, dead_lettered); --destination NAME for one
  --raw        only the original bytes, one input per line: feed them back to `check`
  --reason R   with --dlq: only entries of this reason (unparseable, rejected,
               schema_violation, unplanned)
  --filter EXPR  with --events or --dlq: only the records the filter matches, e.g.
               'event == "payment_completed" && properties.amount > 100', 'verdict == invalid',
               'time > -1h', 'reason == schema_violation && properties.amount ~ "^[0-9.]+$"'
               (the filter language: see the README)
  --output F   write to F instead of stdout
)";

constexpr const char* kIdentityUsage = R"(usage: pipescope-cli identity --capture FILE (--explain ID | --issues [--kind KIND]) [--json]

Rebuilds the identity graph from a capture's valid, unique events (in capture order, with the
correlation keys the capture was made with) and
  --explain ID   prints the person of ID: every id in it, the event that linked each one (time,
                 stream, origin), every link with its outcome, refused merges, and its issues
  --issues       lists every identity issue by kind: illegal_distinct_id, merge_refused,
                 split_identity, orphan_server_id, post_identify_anonymous, and the notes
                 probable_same_user (heuristic) and shared_device (persons one after another
                 on one device, as after posthog-js reset())
  --kind KIND    with --issues: only that kind
  --json         JSON instead of text

exit: 0 found (no issues, for --issues; notes alone do not count), 1 issues listed or ID not
found, 2 usage or input errors.
)";

constexpr const char* kRunUsage = R"(usage: pipescope-cli run [--config FILE] [options]

Starts the local collector (PostHog- and Segment-compatible) and runs every accepted request
through decode, dedup, validation and identity into a capture, and on to the destinations of the
config. Point an SDK's host at the collector (e.g. http://127.0.0.1:8089). Without --config:
collector on 127.0.0.1:8089, a new capture in the current folder, schemas from ./schemas when
present. A capture that exists is continued (after a crash or a stop): nothing acknowledged is
lost or counted twice. SIGINT/SIGTERM stop cleanly: in-flight requests finish, destinations flush.

options:
  --config FILE         JSON config (see resources/pipescope.json)
  --capture FILE        the capture to write or continue (overrides the config)
  --port N              collector port (0: any free port; the chosen one is printed)
  --address ADDR        collector address (default 127.0.0.1; anything else is reachable
                        from other machines: an explicit choice)
  --schemas DIR         schemas as DIR/<event>/<version>.json
  --stats               print a stats line every stats interval (default 5s)
  --stats-interval SPAN e.g. 1s, 5s
  --duration SPAN       stop by itself after SPAN (e.g. 30s), for scripted runs

endpoints (a trailing slash and a query string are allowed):
  PostHog   POST /e /i/v0/e /capture /batch /track       posthog-js, posthog-node and the
            POST /i/v1/analytics/events (Bearer token)   other PostHog SDKs
            GET|POST /flags /decide, GET /array/<token>/config[.js]
  Segment   POST /v1/track /v1/identify /v1/page /v1/screen /v1/group /v1/alias /v1/batch
            /v1/import, and analytics-next's /v1/t /v1/p /v1/i /v1/s /v1/g /v1/a /v1/b;
            GET /v1/projects/<write key>/settings (for analytics-next's cdnURL)
  answers   200 once committed to disk; 400 undecodable (kept as a dead letter first);
            401 unknown token; 403 Host not allowed; 413 too large; 429 + Retry-After
            backlog full; 503 + Retry-After the capture cannot be written (see README)
)";

constexpr const char* kKafkaMockUsage = R"(usage: pipescope-cli kafka-mock [--brokers N] [--topics NAME:PARTITIONS,...] [--duration SPAN]

Starts librdkafka's mock cluster on 127.0.0.1 (N brokers, default 1), creates the topics
(default partitions 1), prints the bootstrap servers on one line, and runs until stopped
(Ctrl-C, SIGTERM) or for --duration. Real Kafka clients (pipescope-cli run, kcat) talk the
Kafka protocol to it; what it holds is lost when it stops. For tests and demos: point a real
deployment at its own brokers.

  pipescope-cli kafka-mock --brokers 3 --topics web_events:6,server_events:6
)";

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A small argument parser: `--name value`, `--name=value`, flags, and positional arguments.
class Arguments {
public:
    Arguments(int argc, char** argv, int first, std::vector<std::string> valueOptions,
              std::vector<std::string> flags) {
        for (int i = first; i < argc; ++i) {
            std::string arg = argv[i];
            if (arg == "--") {
                for (++i; i < argc; ++i) m_positional.emplace_back(argv[i]);
                break;
            }
            if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
                std::string name = arg.substr(2);
                std::optional<std::string> inlineValue;
                if (const auto eq = name.find('='); eq != std::string::npos) {
                    inlineValue = name.substr(eq + 1);
                    name.resize(eq);
                }
                if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
                    if (inlineValue) throw UsageError("--" + name + " takes no value");
                    m_flags.insert(name);
                } else if (std::find(valueOptions.begin(), valueOptions.end(), name) != valueOptions.end()) {
                    if (!inlineValue) {
                        if (i + 1 >= argc) throw UsageError("--" + name + " needs a value");
                        inlineValue = argv[++i];
                    }
                    if (std::find(kRepeatable.begin(), kRepeatable.end(), name) != kRepeatable.end()) {
                        m_lists[name].push_back(*inlineValue);
                        continue;
                    }
                    if (m_values.count(name)) throw UsageError("--" + name + " given twice");
                    m_values[name] = *inlineValue;
                } else {
                    throw UsageError("unknown option --" + name);
                }
            } else {
                m_positional.push_back(arg);
            }
        }
    }
    bool flag(const std::string& name) const { return m_flags.count(name) > 0; }
    std::optional<std::string> value(const std::string& name) const {
        const auto it = m_values.find(name);
        return it == m_values.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    // A repeatable option: every value, in order (empty when not given).
    std::vector<std::string> values(const std::string& name) const {
        const auto it = m_lists.find(name);
        return it == m_lists.end() ? std::vector<std::string>{} : it->second;
    }
    const std::vector<std::string>& positional() const { return m_positional; }

private:
    static inline const std::vector<std::string> kRepeatable{"correlate"};
    std::map<std::string, std::vector<std::string>> m_lists;
    std::set<std::string> m_flags;
    std::map<std::string, std::string> m_values;
    std::vector<std::string> m_positional;
};

std::size_t parseSize(const std::string& option, const std::string& text) {
    std::size_t used = 0;
    unsigned long long value = 0;
    try {
        value = std::stoull(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || value == 0) throw UsageError("--" + option + ": expected a positive number, got \"" + text + "\"");
    return static_cast<std::size_t>(value);
}

int runCheckCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2,
                         {"schemas", "unplanned", "format", "report", "capture", "max-line-bytes", "dedup-window",
                          "dedup-mode", "dedup-max-keys", "bloom-keys", "bloom-fp-rate", "dedup-state", "correlate"},
                         {"quiet", "help", "dedup-fingerprint", "no-dedup"});
    if (args.flag("help")) {
        std::cout << kCheckUsage;
        return kExitOk;
    }
    pipescope::CheckOptions options;
    options.inputs = args.positional();
    if (options.inputs.empty()) throw UsageError("check: no input files (give NDJSON files, or - for stdin)");
    if (auto dir = args.value("schemas")) options.schemasDir = *dir;
    if (auto policy = args.value("unplanned")) {
        auto parsed = pipescope::parseUnplannedPolicy(*policy);
        if (!parsed) throw UsageError("--unplanned: expected allow, warn or dlq, got \"" + *policy + "\"");
        options.pipeline.unplanned = *parsed;
    }
    if (auto format = args.value("format")) {
        auto parsed = pipescope::parseFormat(*format);
        if (!parsed) throw UsageError("--format: expected auto, posthog, segment or canonical, got \"" + *format + "\"");
        options.pipeline.format = *parsed;
    }
    if (auto capture = args.value("capture")) options.capturePath = *capture;
    if (auto max = args.value("max-line-bytes")) options.maxLineBytes = parseSize("max-line-bytes", *max);
    pipescope::DedupOptions& dedup = options.pipeline.dedupOptions;
    if (auto window = args.value("dedup-window")) {
        std::string error;
        const auto millis = pipescope::parseDurationMillis(*window, &error);
        if (!millis) throw UsageError("--dedup-window: " + error);
        dedup.windowMillis = *millis;
    }
    if (auto mode = args.value("dedup-mode")) {
        if (*mode == "exact") dedup.mode = pipescope::DedupMode::Exact;
        else if (*mode == "bloom") dedup.mode = pipescope::DedupMode::Bloom;
        else throw UsageError("--dedup-mode: expected exact or bloom, got \"" + *mode + "\"");
    }
    if (auto keys = args.value("dedup-max-keys")) dedup.maxKeys = parseSize("dedup-max-keys", *keys);
    if (auto keys = args.value("bloom-keys")) dedup.bloomExpectedKeys = parseSize("bloom-keys", *keys);
    if (auto rate = args.value("bloom-fp-rate")) {
        char* end = nullptr;
        const double value = std::strtod(rate->c_str(), &end);
        if (rate->empty() || *end != '\0' || !(value > 0.0 && value <= 0.5))
            throw UsageError("--bloom-fp-rate: expected a rate in (0, 0.5], e.g. 0.001, got \"" + *rate + "\"");
        dedup.bloomFalsePositiveRate = value;
    }
    options.pipeline.fingerprint = args.flag("dedup-fingerprint");
    options.pipeline.dedup = !args.flag("no-dedup");
    if (!options.pipeline.dedup && (args.flag("dedup-fingerprint") || args.value("dedup-window") || args.value("dedup-state")))
        throw UsageError("--no-dedup cannot be combined with other --dedup options");
    if (auto state = args.value("dedup-state")) options.dedupState = *state;
    for (const auto& key : args.values("correlate")) {
        if (key.empty()) throw UsageError("--correlate: empty property name");
        options.pipeline.correlate.push_back(key);
    }
    const auto reportPath = args.value("report");
    const bool quiet = args.flag("quiet");

    const pipescope::RunReport report = pipescope::runCheck(options);
    const std::string json = report.toJson().dump(2) + "\n";
    if (reportPath && *reportPath == "-") {
        std::cout << json;
        if (!quiet) std::cerr << pipescope::summaryText(report);
    } else {
        if (reportPath) {
            std::ofstream out(*reportPath, std::ios::binary | std::ios::trunc);
            if (!out || !(out << json) || !out.flush())
                throw pipescope::InputError(*reportPath + ": cannot write the report: " + std::strerror(errno));
        }
        if (!quiet) std::cout << pipescope::summaryText(report);
    }
    if (report.hasInputErrors()) return kExitUsage;
    return report.hasFindings() ? kExitFindings : kExitOk;
}

int runExportCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2, {"capture", "output", "reason", "destination", "filter"},
                         {"events", "dlq", "duplicates", "deliveries", "raw", "help"});
    if (args.flag("help")) {
        std::cout << kExportUsage;
        return kExitOk;
    }
    const auto capturePath = args.value("capture");
    if (!capturePath) throw UsageError("export: --capture FILE is required");
    if (!args.positional().empty()) throw UsageError("export: unexpected argument \"" + args.positional().front() + "\"");
    if (int(args.flag("events")) + int(args.flag("dlq")) + int(args.flag("duplicates")) + int(args.flag("deliveries")) > 1)
        throw UsageError("export: choose one of --events, --dlq, --duplicates and --deliveries");
    if (args.value("destination") && !args.flag("deliveries")) throw UsageError("export: --destination goes with --deliveries");
    if (args.flag("deliveries") && args.flag("raw")) throw UsageError("export: --raw goes with --events or --dlq");
    if (args.flag("duplicates") && args.flag("raw")) throw UsageError("export: --raw goes with --events or --dlq");
    const auto reason = args.value("reason");
    if (reason && !args.flag("dlq")) throw UsageError("export: --reason goes with --dlq");
    std::optional<pipescope::FilterExpression> filter;
    if (const auto text = args.value("filter")) {
        if (args.flag("duplicates") || args.flag("deliveries"))
            throw UsageError("export: --filter goes with --events or --dlq");
        pipescope::FilterOptions filterOptions;
        filterOptions.target = args.flag("dlq") ? pipescope::FilterTarget::DeadLetters : pipescope::FilterTarget::Events;
        auto parsed = pipescope::FilterExpression::parse(*text, filterOptions);
        if (!parsed) {
            // The expression with a caret under the bytes the error is about, indented alike.
            std::string caret = parsed.error().caret(*text);
            caret.insert(0, "  ");
            caret.insert(caret.find('\n') + 1, "  ");
            std::cerr << "pipescope-cli: --filter: " << parsed.error().describe() << "\n" << caret << "\n";
            return kExitUsage;
        }
        if (!parsed.expression().matchesAll()) filter = std::move(parsed.expression());
    }

    const pipescope::CaptureReader reader(*capturePath);
    std::ofstream file;
    std::ostream* out = &std::cout;
    if (auto output = args.value("output")) {
        file.open(*output, std::ios::binary | std::ios::trunc);
        if (!file) throw pipescope::InputError(*output + ": cannot write: " + std::strerror(errno));
        out = &file;
    }
    const bool raw = args.flag("raw");
    const auto dump = [](const nlohmann::json& value) { return pipescope::toJsonLine(value); };
    std::uint64_t written = 0;
    if (args.flag("deliveries")) {
        for (const auto& d : reader.deliveries(args.value("destination").value_or(""))) {
            *out << dump(nlohmann::json(d)) << '\n';
            ++written;
        }
    } else if (args.flag("duplicates")) {
        constexpr std::int64_t kPage = 4096;
        for (std::int64_t offset = 0;; offset += kPage) {
            const auto page = reader.duplicates(offset, kPage);
            for (const auto& d : page) {
                const auto first = d.firstSeq ? reader.event(*d.firstSeq) : std::nullopt;
                const nlohmann::json record = pipescope::duplicateJson(d, reader.event(d.eventSeq), first);
                *out << dump(record) << '\n';
                ++written;
            }
            if (std::int64_t(page.size()) < kPage || !*out) break;
        }
    } else if (args.flag("dlq")) {
        reader.forEachDlq([&](const pipescope::DlqEntry& entry) {
            if (reason && entry.reason != *reason) return true;
            if (filter && !filter->matches(entry)) return true;
            if (raw) {
                *out << entry.raw << '\n';
            } else {
                *out << dump(nlohmann::json(entry)) << '\n';
            }
            ++written;
            return static_cast<bool>(*out);
        });
    } else {
        const auto visit = [&](const pipescope::StoredEvent& event) {
            if (raw) {
                *out << event.raw << '\n';
            } else {
                *out << dump(nlohmann::json(event)) << '\n';
            }
            ++written;
            return static_cast<bool>(*out);
        };
        // A filter reads only the events its field tests let through when they are few.
        if (filter) pipescope::CaptureFilter(*capturePath, *filter).forEachEvent(visit);
        else reader.forEachEvent(visit);
    }
    out->flush();
    if (!*out) throw pipescope::InputError("export: write failed after " + std::to_string(written) + " records");
    return kExitOk;
}

int runIdentityCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2, {"capture", "explain", "kind"}, {"issues", "json", "help"});
    if (args.flag("help")) {
        std::cout << kIdentityUsage;
        return kExitOk;
    }
    const auto capturePath = args.value("capture");
    if (!capturePath) throw UsageError("identity: --capture FILE is required");
    if (!args.positional().empty())
        throw UsageError("identity: unexpected argument \"" + args.positional().front() + "\"");
    const auto explainId = args.value("explain");
    if (explainId.has_value() == args.flag("issues")) throw UsageError("identity: give one of --explain ID and --issues");
    std::optional<pipescope::IdentityIssueKind> kind;
    if (auto text = args.value("kind")) {
        if (!args.flag("issues")) throw UsageError("identity: --kind goes with --issues");
        kind = pipescope::parseIdentityIssueKind(*text);
        if (!kind)
            throw UsageError("--kind: expected illegal_distinct_id, merge_refused, split_identity, orphan_server_id, "
                             "post_identify_anonymous, probable_same_user or shared_device, got \"" + *text + "\"");
    }
    const bool json = args.flag("json");

    const pipescope::CaptureReader reader(*capturePath);
    const pipescope::IdentityGraph graph = pipescope::replayIdentity(reader, *capturePath);
    if (explainId) {
        const auto explanation = graph.explain(*explainId);
        if (!explanation) {
            const auto similar = graph.similarIds(*explainId);
            if (json) {
                std::cout << nlohmann::json{{"id", *explainId}, {"found", false}, {"similar", similar}}.dump(2) << "\n";
            } else {
                std::cout << "no distinct id \"" << *explainId << "\" among the valid, unique events of " << *capturePath
                          << "\n";
                if (pipescope::isIllegalDistinctId(*explainId))
                    std::cout << "(it is an illegal distinct id: such ids are never added to the graph)\n";
                if (!similar.empty()) {
                    std::cout << "similar ids:";
                    for (const auto& id : similar) std::cout << " " << id;
                    std::cout << "\n";
                }
            }
            return kExitFindings;
        }
        if (json)
            std::cout << nlohmann::json(*explanation).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        else
            std::cout << pipescope::toText(*explanation);
        return kExitOk;
    }
    const std::vector<pipescope::IdentityIssue> issues = kind ? graph.issues(*kind) : graph.issues();
    if (json)
        std::cout << nlohmann::json{{"summary", graph.summary()}, {"issues", pipescope::groupedIssuesJson(issues)}}.dump(
                         2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << "\n";
    else
        std::cout << pipescope::toText(graph.summary(), issues);
    // Notes (probable_same_user, shared_device) are shown but are not findings, as in `check`.
    const bool findings = std::any_of(issues.begin(), issues.end(),
                                      [](const pipescope::IdentityIssue& issue) { return !pipescope::isInformational(issue.kind); });
    return findings ? kExitFindings : kExitOk;
}

std::atomic<bool> g_stopRequested{false};
extern "C" void requestStop(int) { g_stopRequested = true; }

int runKafkaMockCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2, {"brokers", "topics", "duration"}, {"help"});
    if (args.flag("help")) {
        std::cout << kKafkaMockUsage;
        return kExitOk;
    }
    if (!args.positional().empty()) throw UsageError("kafka-mock: unexpected argument \"" + args.positional().front() + "\"");
    int brokers = 1;
    if (auto b = args.value("brokers")) brokers = static_cast<int>(parseSize("brokers", *b));
    std::vector<std::pair<std::string, int>> topics;
    try {
        if (auto t = args.value("topics")) topics = pipescope::parseTopicList(*t);
    } catch (const pipescope::KafkaError& e) {
        throw UsageError(e.what());
    }
    std::optional<std::int64_t> duration;
    if (auto d = args.value("duration")) {
        std::string error;
        duration = pipescope::parseDurationMillis(*d, &error);
        if (!duration) throw UsageError("--duration: " + error);
    }
    pipescope::KafkaMockCluster cluster(brokers);
    for (const auto& [name, partitions] : topics) cluster.createTopic(name, partitions, std::min(brokers, 3));
    std::signal(SIGINT, requestStop);
    std::signal(SIGTERM, requestStop);
    std::cout << cluster.bootstrapServers() << std::endl;
    std::cerr << "pipescope kafka-mock: " << brokers << " broker(s)";
    for (const auto& [name, partitions] : topics) std::cerr << ", " << name << " (" << partitions << " partitions)";
    std::cerr << "; Ctrl-C stops it" << std::endl;
    const auto started = std::chrono::steady_clock::now();
    while (!g_stopRequested) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (duration && std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(*duration)) break;
    }
    return kExitOk;
}

int runRunCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2,
                         {"config", "capture", "port", "address", "schemas", "stats-interval", "duration"},
                         {"stats", "help"});
    if (args.flag("help")) {
        std::cout << kRunUsage;
        return kExitOk;
    }
    if (!args.positional().empty()) throw UsageError("run: unexpected argument \"" + args.positional().front() + "\"");
    const auto configPath = args.value("config");
    pipescope::RunConfig config =
        configPath ? pipescope::loadRunConfig(*configPath) : pipescope::defaultRunConfig(std::filesystem::current_path());
    if (auto capture = args.value("capture")) config.capturePath = *capture;
    if (auto schemas = args.value("schemas")) config.schemasDir = *schemas;
    if (auto address = args.value("address")) config.collector.bindAddress = *address;
    if (auto port = args.value("port")) {
        std::size_t used = 0;
        int value = -1;
        try {
            value = std::stoi(*port, &used);
        } catch (const std::exception&) {
        }
        if (used != port->size() || value < 0 || value > 65535)
            throw UsageError("--port: expected 0..65535, got \"" + *port + "\"");
        config.collector.port = static_cast<std::uint16_t>(value);
    }
    auto span = [](const char* option, const std::string& text) {
        std::string error;
        const auto millis = pipescope::parseDurationMillis(text, &error);
        if (!millis) throw UsageError(std::string("--") + option + ": " + error);
        return *millis;
    };
    if (auto interval = args.value("stats-interval")) config.statsIntervalMillis = span("stats-interval", *interval);
    std::optional<std::int64_t> duration;
    if (auto d = args.value("duration")) duration = span("duration", *d);
    const bool printStats = args.flag("stats");
    const std::int64_t statsEvery = std::max<std::int64_t>(100, config.statsIntervalMillis);
    const std::string address = config.collector.bindAddress;

    pipescope::RunEngine engine(std::move(config));
    std::signal(SIGINT, requestStop);
    std::signal(SIGTERM, requestStop);
    std::signal(SIGPIPE, SIG_IGN);
    // Continuing a big capture reads all its events first: say how far, and let Ctrl-C cancel.
    auto lastReport = std::chrono::steady_clock::now();
    try {
        engine.open([&](const pipescope::ReplayProgress& progress) {
            const auto now = std::chrono::steady_clock::now();
            if (now - lastReport >= std::chrono::seconds(1)) {
                lastReport = now;
                std::cerr << "pipescope run: reading the capture: " << progress.events << " of " << progress.total
                          << " events" << std::endl;
            }
            return !g_stopRequested.load();
        });
    } catch (const pipescope::ReplayCancelled&) {
        std::cerr << "pipescope run: stopped while reading the capture (nothing is lost: run it again to continue)" << std::endl;
        return kExitOk;
    }
    engine.start();
    const pipescope::ListeningText banner =
        pipescope::listeningText(address, engine.port(), engine.capturePath().string(), engine.resumed(),
                                 engine.tokensConfigured());
    std::cout << banner.out << std::flush;
    if (!banner.warning.empty()) std::cerr << banner.warning << std::flush;

    const auto started = std::chrono::steady_clock::now();
    auto nextStats = started + std::chrono::milliseconds(statsEvery);
    std::uint64_t eventsAtLastStats = 0;
    while (!g_stopRequested) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const auto now = std::chrono::steady_clock::now();
        if (duration && now - started >= std::chrono::milliseconds(*duration)) break;
        if (printStats && now >= nextStats) {
            const pipescope::RunStats stats = engine.stats();
            const double rate = double(stats.events - eventsAtLastStats) / (double(statsEvery) / 1000.0);
            eventsAtLastStats = stats.events;
            std::cout << pipescope::statsText(stats, rate) << std::endl;
            nextStats += std::chrono::milliseconds(statsEvery);
        }
    }
    std::cout << "pipescope run: stopping (finishing accepted requests, flushing destinations)" << std::endl;
    engine.stop();
    std::cout << pipescope::statsText(engine.stats(), 0) << "\n" << pipescope::summaryText(engine.report()) << std::flush;
    return kExitOk;
}

} // namespace

int main(int argc, char** argv) {
    std::ios::sync_with_stdio(false);
    if (argc < 2) {
        std::cerr << kUsage;
        return kExitUsage;
    }
    const std::string command = argv[1];
    try {
        if (command == "check") return runCheckCommand(argc, argv);
        if (command == "export") return runExportCommand(argc, argv);
        if (command == "identity") return runIdentityCommand(argc, argv);
        if (command == "run") return runRunCommand(argc, argv);
        if (command == "kafka-mock") return runKafkaMockCommand(argc, argv);
        if (command == "version" || command == "--version") {
            std::cout << "pipescope-cli " << PIPESCOPE_VERSION << "\n";
            return kExitOk;
        }
        if (command == "help" || command == "--help" || command == "-h") {
            const std::string topic = argc > 2 ? argv[2] : "";
            std::cout << (topic == "check"      ? kCheckUsage
                          : topic == "export"   ? kExportUsage
                          : topic == "identity" ? kIdentityUsage
                          : topic == "run"      ? kRunUsage
                          : topic == "kafka-mock" ? kKafkaMockUsage
                                                : kUsage);
            return kExitOk;
        }
        std::cerr << "pipescope-cli: unknown command \"" << command << "\"\n\n" << kUsage;
        return kExitUsage;
    } catch (const UsageError& e) {
        std::cerr << "pipescope-cli: " << e.what() << "\n(see pipescope-cli help " << command << ")\n";
        return kExitUsage;
    } catch (const std::exception& e) {
        // Input, schema and store errors: their messages name the file and the problem.
        std::cerr << "pipescope-cli: error: " << e.what() << "\n";
        return kExitUsage;
    }
}
