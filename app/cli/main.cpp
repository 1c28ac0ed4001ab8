// pipescope-cli: the headless face of the engine. Exit codes: 0 clean, 1 findings, 2 usage or
// input errors.

#include <cstdio>
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

#include "input/line_reader.h"
#include "pipeline/check.h"
#include "schema/schema.h"
#include "store/capture_store.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFindings = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage = R"(usage: pipescope-cli <command> [options]

commands:
  check   decode and validate NDJSON traffic, report, keep a capture
  export  write events or dead letters of a capture as NDJSON
  help    show help for a command: pipescope-cli help check
  version print the version
)";

constexpr const char* kCheckUsage = R"(usage: pipescope-cli check [options] INPUT...

Decodes every event of the inputs (NDJSON: PostHog events and /batch bodies, Segment messages
and batches, canonical events; .gz or plain, detected by content; "-" reads stdin), validates
each event's properties against its JSON Schema, dead-letters what cannot go on, and reports.

options:
  --schemas DIR          schemas as DIR/<event>/<version>.json (the latest version applies)
  --unplanned POLICY     events without a schema: allow (default), warn, dlq
  --format FORMAT        auto (default), posthog, segment, canonical
  --report FILE|-        write the JSON report to FILE, or to stdout with "-"
  --capture FILE         keep every event and dead letter in a capture file (.pipescope)
  --max-line-bytes N     longest accepted input line (default 16777216)
  --quiet                no human summary

exit: 0 every event valid, 1 findings (dead letters, or unplanned under warn), 2 usage or
input errors (missing file, unreadable schema, corrupt gzip).
)";

constexpr const char* kExportUsage = R"(usage: pipescope-cli export --capture FILE [--events | --dlq] [--raw] [--reason R] [--output FILE]

  --events     the captured events (default), one JSON object per line with their verdict
  --dlq        the dead-letter queue, one JSON object per line with reason and detail
  --raw        only the original bytes, one input per line: feed them back to `check`
  --reason R   with --dlq: only entries of this reason (unparseable, rejected,
               schema_violation, unplanned)
  --output F   write to F instead of stdout
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
    const std::vector<std::string>& positional() const { return m_positional; }

private:
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
    const Arguments args(argc, argv, 2, {"schemas", "unplanned", "format", "report", "capture", "max-line-bytes"},
                         {"quiet", "help"});
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
    const auto reportPath = args.value("report");
    const bool quiet = args.flag("quiet");

    const pipescope::RunReport report = pipescope::runCheck(options);
    const std::string json = report.toJson().dump(2) + "\n";
    if (reportPath && *reportPath == "-") {
        std::cout << json;
        if (!quiet) std::cerr << report.summary();
    } else {
        if (reportPath) {
            std::ofstream out(*reportPath, std::ios::binary | std::ios::trunc);
            if (!out || !(out << json) || !out.flush())
                throw pipescope::InputError(*reportPath + ": cannot write the report: " + std::strerror(errno));
        }
        if (!quiet) std::cout << report.summary();
    }
    if (report.hasInputErrors()) return kExitUsage;
    return report.hasFindings() ? kExitFindings : kExitOk;
}

nlohmann::json originJson(const std::string& source, std::uint64_t line, std::int32_t index) {
    nlohmann::json origin = {{"source", source}, {"line", line}};
    if (index >= 0) origin["index"] = index;
    return origin;
}

// JSON text stored by the engine, embedded as JSON (or as a string if it somehow is not).
nlohmann::json embedded(const std::string& text) {
    auto value = nlohmann::json::parse(text, nullptr, false);
    return value.is_discarded() ? nlohmann::json(text) : value;
}

int runExportCommand(int argc, char** argv) {
    const Arguments args(argc, argv, 2, {"capture", "output", "reason"}, {"events", "dlq", "raw", "help"});
    if (args.flag("help")) {
        std::cout << kExportUsage;
        return kExitOk;
    }
    const auto capturePath = args.value("capture");
    if (!capturePath) throw UsageError("export: --capture FILE is required");
    if (!args.positional().empty()) throw UsageError("export: unexpected argument \"" + args.positional().front() + "\"");
    if (args.flag("events") && args.flag("dlq")) throw UsageError("export: choose one of --events and --dlq");
    const auto reason = args.value("reason");
    if (reason && !args.flag("dlq")) throw UsageError("export: --reason goes with --dlq");

    const pipescope::CaptureReader reader(*capturePath);
    std::ofstream file;
    std::ostream* out = &std::cout;
    if (auto output = args.value("output")) {
        file.open(*output, std::ios::binary | std::ios::trunc);
        if (!file) throw pipescope::InputError(*output + ": cannot write: " + std::strerror(errno));
        out = &file;
    }
    const bool raw = args.flag("raw");
    const auto dump = [](const nlohmann::json& value) {
        return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    std::uint64_t written = 0;
    if (args.flag("dlq")) {
        reader.forEachDlq([&](const pipescope::DlqEntry& entry) {
            if (reason && entry.reason != *reason) return true;
            if (raw) {
                *out << entry.raw << '\n';
            } else {
                nlohmann::json record = {{"seq", entry.seq},
                                         {"reason", entry.reason},
                                         {"detail", embedded(entry.detail)},
                                         {"origin", originJson(entry.originSource, entry.originLine, entry.originIndex)},
                                         {"raw", entry.raw}};
                if (!entry.eventName.empty()) record["event"] = entry.eventName;
                if (!entry.distinctId.empty()) record["distinct_id"] = entry.distinctId;
                if (entry.eventSeq) record["event_seq"] = *entry.eventSeq;
                *out << dump(record) << '\n';
            }
            ++written;
            return static_cast<bool>(*out);
        });
    } else {
        reader.forEachEvent([&](const pipescope::StoredEvent& event) {
            if (raw) {
                *out << event.raw << '\n';
            } else {
                nlohmann::json record = {{"seq", event.seq},
                                         {"name", event.name},
                                         {"distinct_id", event.distinctId},
                                         {"stream", event.stream},
                                         {"format", event.format},
                                         {"verdict", pipescope::toString(event.verdict)},
                                         {"origin", originJson(event.originSource, event.originLine, event.originIndex)},
                                         {"properties", embedded(event.properties)}};
                if (!event.eventId.empty()) record["id"] = event.eventId, record["id_source"] = event.idSource;
                if (event.timestamp) record["timestamp"] = pipescope::formatTimestamp(*event.timestamp);
                if (event.verdict == pipescope::Verdict::Invalid) record["failures"] = embedded(event.failures);
                *out << dump(record) << '\n';
            }
            ++written;
            return static_cast<bool>(*out);
        });
    }
    out->flush();
    if (!*out) throw pipescope::InputError("export: write failed after " + std::to_string(written) + " records");
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
        if (command == "version" || command == "--version") {
            std::cout << "pipescope-cli " << PIPESCOPE_VERSION << "\n";
            return kExitOk;
        }
        if (command == "help" || command == "--help" || command == "-h") {
            const std::string topic = argc > 2 ? argv[2] : "";
            std::cout << (topic == "check" ? kCheckUsage : topic == "export" ? kExportUsage : kUsage);
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
