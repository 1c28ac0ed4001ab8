// Throughput of the decode + validation pipeline on one thread, against references measured in
// the same run: simdjson's DOM parse (the floor any decoder built on it pays) and nlohmann_json.
// ajv, the reference for validation alone, runs in ajv_validate.mjs on the properties this
// program writes; run_bench.sh puts both side by side. Figures are printed, never asserted:
// the only failure this program reports is a correctness one (--check).
//
//   bench_pipeline [--events N] [--seed S]            generate the corpus in memory and run
//   bench_pipeline --corpus FILE                      run on a corpus file (FILE.meta.json: truth)
//   bench_pipeline --generate FILE [--events N]       write a corpus (+ FILE.meta.json) and exit
//   options: --schemas DIR  --repeat R  --properties-out FILE  --invalid-out FILE  --check
//            --stages simdjson_parse,nlohmann_parse,decode,decode_validate,validate (default: all;
//            one stage alone is handy under a profiler)

#include "event/event.h"
#include "format/decoder.h"
#include "gen_corpus.h"
#include "schema/schema.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <simdjson.h>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#ifndef PIPESCOPE_BENCH_SCHEMAS
#define PIPESCOPE_BENCH_SCHEMAS "tests/bench/schemas"
#endif

using namespace pipescope;

namespace {

struct Options {
    std::size_t events = 200000;
    std::uint64_t seed = bench::kDefaultSeed;
    std::string corpusFile;
    std::string generateFile;
    std::string schemasDir = PIPESCOPE_BENCH_SCHEMAS;
    int repeat = 5;
    std::string propertiesOut;
    std::string invalidOut;
    bool check = false;
    std::vector<std::string> stages{"simdjson_parse", "nlohmann_parse", "decode", "decode_validate",
                                    "validate"};
    bool runs(std::string_view stage) const {
        return std::find(stages.begin(), stages.end(), stage) != stages.end();
    }
};

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr,
                 "bench_pipeline: %s\n"
                 "usage: bench_pipeline [--events N] [--seed S] [--corpus FILE | --generate FILE]\n"
                 "                      [--schemas DIR] [--repeat R] [--properties-out FILE]\n"
                 "                      [--invalid-out FILE] [--check] [--stages a,b,...]\n"
                 "stages: simdjson_parse nlohmann_parse decode decode_validate validate\n",
                 message);
    std::exit(2);
}

Options parseOptions(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value after " + std::string(arg)).c_str());
            return argv[++i];
        };
        auto number = [&]() -> std::uint64_t {
            const std::string text = value();
            char* end = nullptr;
            const auto parsed = std::strtoull(text.c_str(), &end, 0);
            if (text.empty() || *end != '\0') usage(("not a number: " + text).c_str());
            return parsed;
        };
        if (arg == "--events")
            options.events = number();
        else if (arg == "--seed")
            options.seed = number();
        else if (arg == "--corpus")
            options.corpusFile = value();
        else if (arg == "--generate")
            options.generateFile = value();
        else if (arg == "--schemas")
            options.schemasDir = value();
        else if (arg == "--repeat")
            options.repeat = std::max<int>(1, static_cast<int>(number()));
        else if (arg == "--properties-out")
            options.propertiesOut = value();
        else if (arg == "--invalid-out")
            options.invalidOut = value();
        else if (arg == "--check")
            options.check = true;
        else if (arg == "--stages") {
            const Options defaults;
            options.stages.clear();
            std::string list = value() + ",";
            for (std::size_t start = 0, comma; (comma = list.find(',', start)) != std::string::npos;
                 start = comma + 1) {
                std::string name = list.substr(start, comma - start);
                if (name.empty()) continue;
                if (!defaults.runs(name)) usage(("unknown stage " + name).c_str());
                options.stages.push_back(std::move(name));
            }
        } else if (arg == "--help" || arg == "-h")
            usage("help");
        else
            usage(("unknown option " + std::string(arg)).c_str());
    }
    if (options.events == 0) usage("--events must be positive");
    if (options.check && !(options.runs("decode_validate") && options.runs("validate")))
        usage("--check needs the stages decode_validate and validate");
    return options;
}

std::optional<std::string> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return std::move(text).str();
}

void writeFile(const std::string& path, std::string_view text) {
    std::ofstream out(path, std::ios::binary);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) {
        std::fprintf(stderr, "bench_pipeline: cannot write %s\n", path.c_str());
        std::exit(2);
    }
}

// The corpus in one buffer with SIMDJSON_PADDING readable bytes after the last line, so every
// line can be parsed in place (the bytes after a line are the next lines, then the padding).
struct Corpus {
    std::string buffer;
    std::size_t bytes = 0;
    std::vector<std::string_view> lines;
    std::optional<bench::CorpusTruth> truth;
};

void splitLines(Corpus& corpus) {
    const std::string_view text(corpus.buffer.data(), corpus.bytes);
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.empty()) corpus.lines.push_back(line);
        start = end + 1;
    }
}

// Defeats dead-code elimination of the timed loops.
volatile std::size_t g_sink = 0;

template <class Run> double bestSeconds(int repeat, Run&& run) {
    double best = std::numeric_limits<double>::infinity();
    for (int r = 0; r < repeat; ++r) {
        const auto start = std::chrono::steady_clock::now();
        g_sink = g_sink + run();
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        best = std::min(best, elapsed.count());
    }
    return best;
}

struct StageResult {
    std::string name;
    std::size_t events = 0;
    double seconds = 0;
    std::size_t bytes = 0;
    double eventsPerSecond() const { return static_cast<double>(events) / seconds; }
};

void printStage(const StageResult& stage, std::string_view description) {
    std::printf("BENCH %-16s events=%zu best_s=%.6f events_per_s=%.0f mb_per_s=%.1f   # %.*s\n",
                stage.name.c_str(), stage.events, stage.seconds, stage.eventsPerSecond(),
                static_cast<double>(stage.bytes) / stage.seconds / 1e6, static_cast<int>(description.size()),
                description.data());
    std::fflush(stdout);
}

struct Counts {
    std::size_t valid = 0;
    std::size_t invalid = 0;
    std::size_t unplanned = 0;
    bool operator==(const Counts&) const = default;
};

void printCounts(std::string_view who, const Counts& counts) {
    std::printf("COUNTS %-10.*s valid=%zu invalid=%zu unplanned=%zu\n", static_cast<int>(who.size()),
                who.data(), counts.valid, counts.invalid, counts.unplanned);
}

enum class Verdict : std::uint8_t { None, Valid, Invalid, Unplanned };

} // namespace

int main(int argc, char** argv) {
    const Options options = parseOptions(argc, argv);

    if (!options.generateFile.empty()) {
        const auto corpus = bench::generateCorpus(options.events, options.seed);
        writeFile(options.generateFile, corpus.text);
        writeFile(options.generateFile + ".meta.json", bench::truthToJson(corpus.truth));
        std::printf("generated %s: %zu events, %.2f MB (valid %zu, planted invalid %zu, unplanned %zu)\n",
                    options.generateFile.c_str(), corpus.truth.events,
                    static_cast<double>(corpus.text.size()) / 1e6, corpus.truth.valid, corpus.truth.invalid,
                    corpus.truth.unplanned);
        return 0;
    }

    // --- load -------------------------------------------------------------------------------
    Corpus corpus;
    std::string corpusName;
    if (!options.corpusFile.empty()) {
        auto text = readFile(options.corpusFile);
        if (!text) {
            std::fprintf(stderr, "bench_pipeline: cannot read corpus %s\n", options.corpusFile.c_str());
            return 2;
        }
        corpus.buffer = std::move(*text);
        corpusName = options.corpusFile;
        if (auto meta = readFile(options.corpusFile + ".meta.json")) {
            try {
                corpus.truth = bench::truthFromJson(*meta);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "bench_pipeline: %s.meta.json: %s\n", options.corpusFile.c_str(),
                             e.what());
                return 2;
            }
        }
    } else {
        auto generated = bench::generateCorpus(options.events, options.seed);
        corpus.buffer = std::move(generated.text);
        corpus.truth = std::move(generated.truth);
        corpusName = "generated in memory (seed " + std::to_string(options.seed) + ")";
    }
    corpus.bytes = corpus.buffer.size();
    corpus.buffer.append(simdjson::SIMDJSON_PADDING, '\0');
    splitLines(corpus);
    const auto& lines = corpus.lines;
    if (lines.empty()) {
        std::fprintf(stderr, "bench_pipeline: the corpus has no lines\n");
        return 2;
    }
    if (options.check && !corpus.truth) {
        std::fprintf(stderr,
                     "bench_pipeline: --check needs the corpus truth (%s.meta.json, written by --generate)\n",
                     options.corpusFile.c_str());
        return 2;
    }

    SchemaRegistry registry;
    try {
        registry = SchemaRegistry::loadDirectory(options.schemasDir);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_pipeline: cannot load schemas from %s: %s\n", options.schemasDir.c_str(),
                     e.what());
        return 2;
    }

    std::size_t lineBytes = 0;
    for (auto line : lines)
        lineBytes += line.size();
    std::printf("bench_pipeline: corpus %s\n", corpusName.c_str());
    std::printf("CORPUS lines=%zu bytes=%zu mb=%.2f mean_event_bytes=%.1f\n", lines.size(), corpus.bytes,
                static_cast<double>(corpus.bytes) / 1e6,
                static_cast<double>(lineBytes) / static_cast<double>(lines.size()));
    std::printf("SCHEMAS %zu from %s\n", registry.size(), options.schemasDir.c_str());
    std::printf("one thread, best of %d runs per stage\n", options.repeat);
    std::fflush(stdout);

    const std::size_t lineCount = lines.size();
    std::vector<StageResult> results;
    auto stage = [&](std::string name, std::size_t events, std::size_t bytes, double seconds,
                     std::string_view description) {
        results.push_back({std::move(name), events, seconds, bytes});
        printStage(results.back(), description);
    };

    // --- (a) simdjson DOM parse: the floor --------------------------------------------------
    if (options.runs("simdjson_parse")) {
        simdjson::dom::parser parser;
        std::size_t failed = 0;
        const double seconds = bestSeconds(options.repeat, [&] {
            std::size_t elements = 0;
            failed = 0;
            for (auto line : lines) {
                simdjson::dom::element root;
                if (parser.parse(line.data(), line.size(), false).get(root) != simdjson::SUCCESS)
                    ++failed;
                else
                    elements += root.is_object();
            }
            return elements;
        });
        stage("simdjson_parse", lineCount, corpus.bytes, seconds,
              "simdjson::dom::parser::parse per line (floor)");
        if (failed) std::printf("  note: simdjson rejected %zu lines\n", failed);
    }

    // --- (b) nlohmann_json parse -------------------------------------------------------------
    if (options.runs("nlohmann_parse")) {
        const double seconds = bestSeconds(options.repeat, [&] {
            std::size_t objects = 0;
            for (auto line : lines) {
                const auto json = nlohmann::json::parse(line, nullptr, false);
                objects += json.is_object();
            }
            return objects;
        });
        stage("nlohmann_parse", lineCount, corpus.bytes, seconds,
              "nlohmann::json::parse(line, nullptr, false)");
    }

    // --- (c) our decode -----------------------------------------------------------------------
    EventDecoder decoder;
    std::size_t decodedEvents = 0, rejectedEvents = 0, unparsedLines = 0;
    auto decodeAll = [&] {
        decodedEvents = rejectedEvents = unparsedLines = 0;
        std::uint64_t lineNumber = 0;
        for (auto line : lines) {
            const DecodedLine& decoded = decoder.decode(line, Origin{"bench", ++lineNumber, -1}, true);
            unparsedLines += !decoded.parsed;
            decodedEvents += decoded.events.size();
            rejectedEvents += decoded.rejected.size();
        }
        return decodedEvents;
    };
    if (options.runs("decode")) {
        const double seconds = bestSeconds(options.repeat, decodeAll);
        stage("decode", decodedEvents, corpus.bytes, seconds, "EventDecoder::decode (canonical events)");
    } else {
        decodeAll();
    }

    // --- (d) our decode + validate --------------------------------------------------------------
    std::vector<Verdict> lineVerdict(lineCount, Verdict::None);
    Counts pipelineCounts;
    if (options.runs("decode_validate")) {
        const double seconds = bestSeconds(options.repeat, [&] {
            Counts counts;
            std::size_t index = 0;
            for (auto line : lines) {
                const DecodedLine& decoded = decoder.decode(line, Origin{"bench", index + 1, -1}, true);
                Verdict verdict = Verdict::None;
                for (const Event& event : decoded.events) {
                    const SchemaRegistry::Entry* entry = registry.find(event.name);
                    if (entry == nullptr) {
                        ++counts.unplanned;
                        verdict = Verdict::Unplanned;
                    } else if (entry->schema->isValid(event.properties)) {
                        ++counts.valid;
                        verdict = Verdict::Valid;
                    } else {
                        ++counts.invalid;
                        verdict = Verdict::Invalid;
                    }
                }
                lineVerdict[index++] = verdict;
            }
            pipelineCounts = counts;
            return counts.valid;
        });
        stage("decode_validate", decodedEvents, corpus.bytes, seconds,
              "decode + SchemaRegistry::find + CompiledSchema::isValid");
    }

    // --- (e) validate only, on properties parsed beforehand ---------------------------------
    // Untimed preparation: every event's properties, minified, parsed once into its own kept
    // simdjson document; the schema is resolved beforehand too (ajv_validate.mjs does the same).
    std::string properties; // "name\tproperties\n" per event: what ajv validates
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    std::vector<const CompiledSchema*> schemaOf;
    std::vector<std::string> eventNames;
    {
        std::uint64_t lineNumber = 0;
        for (auto line : lines) {
            const DecodedLine& decoded = decoder.decode(line, Origin{"bench", ++lineNumber, -1}, true);
            for (const Event& event : decoded.events) {
                properties.append(event.name);
                properties += '\t';
                const std::size_t start = properties.size();
                properties += simdjson::minify(event.properties);
                spans.emplace_back(start, properties.size() - start);
                properties += '\n';
                const auto* entry = registry.find(event.name);
                schemaOf.push_back(entry ? entry->schema.get() : nullptr);
                eventNames.emplace_back(event.name);
            }
        }
    }
    const std::size_t propertiesBytes = properties.size();
    if (!options.propertiesOut.empty()) writeFile(options.propertiesOut, properties);
    properties.append(simdjson::SIMDJSON_PADDING, '\0');
    std::vector<simdjson::dom::document> documents(spans.size());
    std::vector<simdjson::dom::element> roots(spans.size());
    {
        simdjson::dom::parser parser;
        for (std::size_t i = 0; i < spans.size(); ++i) {
            const auto* bytes = reinterpret_cast<const std::uint8_t*>(properties.data() + spans[i].first);
            if (parser.parse_into_document(documents[i], bytes, spans[i].second, false).get(roots[i]) !=
                simdjson::SUCCESS) {
                std::fprintf(stderr, "bench_pipeline: cannot re-parse the properties of event %zu\n", i + 1);
                return 2;
            }
        }
    }
    std::printf("PROPERTIES events=%zu bytes=%zu mean_properties_bytes=%.1f\n", spans.size(), propertiesBytes,
                spans.empty() ? 0.0
                              : static_cast<double>(propertiesBytes) / static_cast<double>(spans.size()));

    std::vector<Verdict> eventVerdict(spans.size(), Verdict::None);
    Counts validateCounts;
    if (options.runs("validate")) {
        const double seconds = bestSeconds(options.repeat, [&] {
            Counts counts;
            for (std::size_t i = 0; i < roots.size(); ++i) {
                const CompiledSchema* schema = schemaOf[i];
                if (schema == nullptr) {
                    ++counts.unplanned;
                    eventVerdict[i] = Verdict::Unplanned;
                } else if (schema->isValid(roots[i])) {
                    ++counts.valid;
                    eventVerdict[i] = Verdict::Valid;
                } else {
                    ++counts.invalid;
                    eventVerdict[i] = Verdict::Invalid;
                }
            }
            validateCounts = counts;
            return counts.valid;
        });
        stage("validate", roots.size(), propertiesBytes, seconds,
              "CompiledSchema::isValid on pre-parsed properties (compare: ajv_validate)");
    }

    if (!options.invalidOut.empty()) {
        std::string text;
        for (std::size_t i = 0; i < eventVerdict.size(); ++i)
            if (eventVerdict[i] == Verdict::Invalid) text += std::to_string(i + 1) + "\n";
        writeFile(options.invalidOut, text);
    }

    // --- summary --------------------------------------------------------------------------------
    auto rate = [&](std::string_view name) {
        for (const auto& r : results)
            if (r.name == name) return r.eventsPerSecond();
        return std::numeric_limits<double>::quiet_NaN();
    };
    std::printf("RATIO decode_validate/simdjson_parse=%.3f nlohmann_parse/simdjson_parse=%.3f "
                "decode/simdjson_parse=%.3f\n",
                rate("decode_validate") / rate("simdjson_parse"),
                rate("nlohmann_parse") / rate("simdjson_parse"), rate("decode") / rate("simdjson_parse"));
    if (corpus.truth)
        printCounts("planted", {corpus.truth->valid, corpus.truth->invalid, corpus.truth->unplanned});
    if (options.runs("decode_validate")) printCounts("pipescope", pipelineCounts);
    if (rejectedEvents || unparsedLines)
        std::printf("DECODE rejected_events=%zu unparsed_lines=%zu\n", rejectedEvents, unparsedLines);

    if (!options.check) return 0;

    // --- correctness: our verdicts against what the generator planted --------------------------
    const auto& truth = *corpus.truth;
    int problems = 0;
    auto problem = [&](const std::string& text) {
        ++problems;
        std::printf("CHECK MISMATCH: %s\n", text.c_str());
    };
    if (lineCount != truth.events)
        problem("corpus has " + std::to_string(lineCount) + " lines, truth says " +
                std::to_string(truth.events));
    if (decodedEvents != lineCount || rejectedEvents != 0 || unparsedLines != 0)
        problem("decode: " + std::to_string(decodedEvents) + " events, " + std::to_string(rejectedEvents) +
                " rejected, " + std::to_string(unparsedLines) + " unparsed lines for " +
                std::to_string(lineCount) + " lines (expected one event per line)");
    if (!(pipelineCounts == Counts{truth.valid, truth.invalid, truth.unplanned}))
        problem("decode+validate counted valid/invalid/unplanned " + std::to_string(pipelineCounts.valid) +
                "/" + std::to_string(pipelineCounts.invalid) + "/" +
                std::to_string(pipelineCounts.unplanned) + ", planted " + std::to_string(truth.valid) + "/" +
                std::to_string(truth.invalid) + "/" + std::to_string(truth.unplanned));
    if (!(validateCounts == pipelineCounts))
        problem("validate-only counts differ from decode+validate counts");

    // Line by line, so a mismatch names the event and why.
    std::size_t next = 0, shown = 0;
    for (std::size_t i = 0; i < lineCount && i < truth.events; ++i) {
        const bool planted = next < truth.invalidLines.size() && truth.invalidLines[next] == i + 1;
        const std::string defect = planted ? truth.defects[next] : std::string();
        if (planted) ++next;
        const bool counted = lineVerdict[i] == Verdict::Invalid;
        if (planted == counted) continue;
        ++problems;
        if (shown++ >= 12) continue;
        std::printf("CHECK MISMATCH line %zu (%s): planted %s, validator says %s\n", i + 1,
                    i < eventNames.size() ? eventNames[i].c_str() : "?", planted ? defect.c_str() : "nothing",
                    lineVerdict[i] == Verdict::Valid       ? "valid"
                    : lineVerdict[i] == Verdict::Invalid   ? "invalid"
                    : lineVerdict[i] == Verdict::Unplanned ? "unplanned"
                                                           : "no event");
        if (i < schemaOf.size() && schemaOf[i] != nullptr) {
            std::vector<ValidationFailure> failures;
            schemaOf[i]->validate(roots[i], failures);
            for (const auto& failure : failures)
                std::printf("    at \"%s\" %s: %s\n", failure.pointer.c_str(), failure.keyword.c_str(),
                            failure.message.c_str());
            std::printf("    properties: %.*s\n",
                        static_cast<int>(std::min<std::size_t>(spans[i].second, 600)),
                        properties.data() + spans[i].first);
        }
    }
    if (problems) {
        std::printf("CHECK FAILED: %d problem(s)\n", problems);
        return 1;
    }
    std::printf("CHECK ok: %zu valid, %zu invalid (all planted), %zu unplanned\n", pipelineCounts.valid,
                pipelineCounts.invalid, pipelineCounts.unplanned);
    return 0;
}
