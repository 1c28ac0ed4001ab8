#include "pipeline/run_config.h"

#include "kafka/kafka_config.h"

#include <ctime>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "config/json_file.h"

namespace pipescope {

namespace {

using nlohmann::json;

std::filesystem::path resolved(const std::filesystem::path& base, const std::string& path) {
    const std::filesystem::path p(path);
    return p.is_absolute() ? p : base / p;
}

std::string newCaptureName() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char name[64];
    std::strftime(name, sizeof name, "pipescope-%Y%m%d-%H%M%S.pipescope", &utc);
    return name;
}

Stream parseStreamSetting(const std::string& field, const json& value) {
    const auto stream = value.is_string() ? parseStream(value.get<std::string>()) : std::nullopt;
    if (!stream || *stream == Stream::Unknown)
        throw RunConfigError(field, "expected \"client\" or \"server\", got " + shortJson(value));
    return *stream;
}

RunConfig readRunConfig(const json& value, const std::filesystem::path& baseDir, const std::string& where) {
    RunConfig config = defaultRunConfig(baseDir);
    config.schemasDir.reset();
    const ConfigReader root(value, where);
    root.allowOnly({"collector", "streams", "capture", "schemas", "unplanned", "dedup", "identity", "destinations",
                    "max_backlog_requests", "stats_interval", "durability", "kafka", "$comment"});
    if (const json* collector = root.find("collector")) {
        const ConfigReader c(*collector, root.field("collector"));
        c.allowOnly({"address", "port", "max_body_bytes", "max_decompressed_bytes", "max_in_flight_bytes", "tokens",
                     "threads", "connection_limit", "per_ip_connection_limit", "connection_timeout_seconds",
                     "retry_after_seconds", "allowed_hosts"});
        CollectorConfig& cc = config.collector;
        if (auto v = c.text("address")) cc.bindAddress = *v;
        if (auto v = c.number<int>("port", 0, 65535)) cc.port = static_cast<std::uint16_t>(*v);
        if (auto v = c.number<std::size_t>("max_body_bytes", 1024, std::size_t(1) << 34)) cc.maxBodyBytes = *v;
        if (auto v = c.number<std::size_t>("max_decompressed_bytes", 1024, std::size_t(1) << 36))
            cc.maxDecompressedBytes = *v;
        if (auto v = c.number<std::size_t>("max_in_flight_bytes", 1 << 20, std::size_t(1) << 36))
            cc.maxInFlightBytes = *v;
        cc.tokens = c.strings("tokens");
        if (auto v = c.number<unsigned>("threads", 1, 64)) cc.threads = *v;
        if (auto v = c.number<unsigned>("connection_limit", 1, 100000)) cc.connectionLimit = *v;
        if (auto v = c.number<unsigned>("per_ip_connection_limit", 0, 100000)) cc.perIpConnectionLimit = *v;
        cc.allowedHosts = c.strings("allowed_hosts");
        if (auto v = c.number<unsigned>("connection_timeout_seconds", 1, 3600)) cc.connectionTimeoutSeconds = *v;
        if (auto v = c.number<int>("retry_after_seconds", 1, 3600)) cc.retryAfterSeconds = *v;
    }
    if (const json* streams = root.find("streams")) {
        const ConfigReader s(*streams, root.field("streams"));
        s.allowOnly({"tokens", "paths"});
        for (const auto& [key, target] : std::initializer_list<std::pair<const char*, std::map<std::string, Stream>*>>{
                 {"tokens", &config.streamByToken}, {"paths", &config.streamByPath}}) {
            const json* map = s.find(key);
            if (!map) continue;
            if (!map->is_object()) s.fail(key, "expected an object of name: \"client\"|\"server\"");
            for (const auto& [name, stream] : map->items())
                (*target)[name] = parseStreamSetting(s.field(key) + "." + name, stream);
        }
    }
    if (auto capture = root.text("capture")) config.capturePath = resolved(baseDir, *capture);
    if (auto schemas = root.text("schemas")) config.schemasDir = resolved(baseDir, *schemas);
    if (auto unplanned = root.text("unplanned")) {
        const auto policy = parseUnplannedPolicy(*unplanned);
        if (!policy) root.fail("unplanned", "expected allow, warn or dlq, got \"" + *unplanned + "\"");
        config.pipeline.unplanned = *policy;
    }
    if (const json* dedup = root.find("dedup")) {
        const ConfigReader d(*dedup, root.field("dedup"));
        d.allowOnly({"enabled", "window", "mode", "max_keys", "bloom_keys", "bloom_fp_rate", "fingerprint"});
        DedupOptions& o = config.pipeline.dedupOptions;
        if (auto v = d.boolean("enabled")) config.pipeline.dedup = *v;
        if (auto v = d.duration("window")) o.windowMillis = *v;
        if (auto v = d.text("mode")) {
            if (*v == "exact") o.mode = DedupMode::Exact;
            else if (*v == "bloom") o.mode = DedupMode::Bloom;
            else d.fail("mode", "expected \"exact\" or \"bloom\", got \"" + *v + "\"");
        }
        if (auto v = d.number<std::size_t>("max_keys", 1, std::size_t(1) << 32)) o.maxKeys = *v;
        if (auto v = d.number<std::size_t>("bloom_keys", 1, std::size_t(1) << 34)) o.bloomExpectedKeys = *v;
        if (auto v = d.number<double>("bloom_fp_rate", 1e-9, 0.5)) o.bloomFalsePositiveRate = *v;
        if (auto v = d.boolean("fingerprint")) config.pipeline.fingerprint = *v;
    }
    if (const json* identity = root.find("identity")) {
        const ConfigReader i(*identity, root.field("identity"));
        i.allowOnly({"correlate"});
        config.pipeline.correlate = i.strings("correlate");
    }
    if (const json* destinations = root.find("destinations")) {
        config.destinations = parseDestinationConfigs(*destinations, root.field("destinations"));
        for (DestinationConfig& destination : config.destinations)
            if (!destination.path.empty()) destination.path = resolved(baseDir, destination.path).string();
    }
    if (const json* kafka = root.find("kafka")) config.kafka = parseKafkaSourceConfig(*kafka, root.field("kafka"), baseDir);
    if (auto v = root.number<std::size_t>("max_backlog_requests", 1, std::size_t(1) << 32)) config.maxBacklogRequests = *v;
    if (auto v = root.duration("stats_interval")) config.statsIntervalMillis = *v;
    if (auto v = root.text("durability")) {
        const auto durability = parseDurability(*v);
        if (!durability)
            root.fail("durability", "expected \"full\" (fsync every commit) or \"process\", got \"" + *v + "\"");
        config.durability = *durability;
    }
    return config;
}

} // namespace

RunConfig defaultRunConfig(const std::filesystem::path& directory) {
    RunConfig config;
    config.capturePath = directory / newCaptureName();
    std::error_code ec;
    if (std::filesystem::is_directory(directory / "schemas", ec)) config.schemasDir = directory / "schemas";
    return config;
}

RunConfig parseRunConfig(const json& value, const std::filesystem::path& baseDir, const std::string& where) {
    try {
        return readRunConfig(value, baseDir, where);
    } catch (const RunConfigError&) {
        throw;
    } catch (const ConfigError& e) {
        throw RunConfigError(e); // a destination's or the reader's error, with its field
    }
}

RunConfig loadRunConfig(const std::filesystem::path& file) {
    json value;
    try {
        value = parseJsonFile(file);
    } catch (const JsonFileError& e) {
        throw RunConfigError("", e.what());
    }
    const std::filesystem::path base = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    try {
        return parseRunConfig(value, base, "");
    } catch (const RunConfigError& e) {
        throw RunConfigError(e, file.string());
    }
}

} // namespace pipescope
