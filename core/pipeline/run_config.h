#pragma once
// `run`'s configuration: the embedded defaults and the JSON config file (resources/pipescope.json).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "collector/collector.h"
#include "kafka/kafka_source.h"
#include "config/config_reader.h"
#include "pipeline/pipeline.h"
#include "route/destination.h"
#include "store/capture_store.h"

namespace pipescope {

// A config error: the field it names (ConfigError::field(), e.g. "collector.port") is kept
// when a destination's error or the file name is added.
class RunConfigError : public ConfigError {
public:
    using ConfigError::ConfigError;
    explicit RunConfigError(const ConfigError& error, std::string file = {})
        : ConfigError(error.field(), error.message(), file.empty() ? error.file() : std::move(file)) {}
};

struct RunConfig {
    CollectorConfig collector;
    // Streams by source, outranking the events' own library fields.
    std::map<std::string, Stream> streamByToken; // token or write key
    std::map<std::string, Stream> streamByPath;  // request path prefix, e.g. "/v1/"
    std::filesystem::path capturePath;           // an existing capture is continued
    std::optional<std::filesystem::path> schemasDir;
    PipelineOptions pipeline;
    std::vector<DestinationConfig> destinations;
    // Requests accepted but not yet processed beyond which the collector answers 429.
    std::size_t maxBacklogRequests = 20000;
    std::int64_t statsIntervalMillis = 5000;
    // `full`: a 200 means the request is fsynced to disk (survives a power loss); `process`:
    // it survives a crash of the process only, and the collector is faster.
    Durability durability = Durability::Full;
    // Kafka topics consumed as a second source beside the collector (`kafka` in the file).
    std::optional<KafkaSourceConfig> kafka;
};

// The embedded defaults: collector on 127.0.0.1:8089, a new capture in `directory`, schemas from
// `directory/schemas` when that folder exists.
RunConfig defaultRunConfig(const std::filesystem::path& directory);
// Reads a config file (see resources/pipescope.json): relative paths are taken from the file's
// folder. Throws RunConfigError naming the file and the field.
RunConfig loadRunConfig(const std::filesystem::path& file);
RunConfig parseRunConfig(const nlohmann::json& json, const std::filesystem::path& baseDir,
                         const std::string& where);

} // namespace pipescope
