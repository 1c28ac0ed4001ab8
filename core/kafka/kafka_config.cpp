#include "kafka/kafka_config.h"

#include <nlohmann/json.hpp>

#include "config/config_reader.h"

namespace pipescope {

KafkaSourceConfig parseKafkaSourceConfig(const nlohmann::json& value, const std::string& where,
                                         const std::filesystem::path& baseDir) {
    const ConfigReader k(value, where);
    k.allowOnly({"brokers", "group", "topics", "start", "security", "properties", "max_in_flight"});
    KafkaSourceConfig config;
    const auto brokers = k.text("brokers");
    if (!brokers || brokers->empty()) k.fail("brokers", "required: the bootstrap servers, \"host:port,host:port\"");
    config.brokers = *brokers;
    if (auto group = k.text("group")) {
        if (group->empty()) k.fail("group", "must not be empty");
        config.group = *group;
    }
    const nlohmann::json* topics = k.array("topics");
    if (!topics || topics->empty()) k.fail("topics", "required: at least one topic (a name, or {name, stream, format})");
    for (std::size_t i = 0; i < topics->size(); ++i) {
        const nlohmann::json& item = (*topics)[i];
        const std::string field = k.field("topics") + "[" + std::to_string(i) + "]";
        KafkaTopicConfig topic;
        if (item.is_string()) {
            topic.name = item.get<std::string>();
        } else {
            const ConfigReader t(item, field);
            t.allowOnly({"name", "stream", "format"});
            if (auto name = t.text("name")) topic.name = *name;
            if (auto stream = t.text("stream")) {
                if (*stream == "client") topic.stream = Stream::Client;
                else if (*stream == "server") topic.stream = Stream::Server;
                else if (*stream != "auto") t.fail("stream", "expected \"client\", \"server\" or \"auto\", got \"" + *stream + "\"");
            }
            if (auto format = t.text("format")) {
                if (*format != "auto" && *format != "posthog" && *format != "segment")
                    t.fail("format", "expected \"auto\", \"posthog\" or \"segment\", got \"" + *format + "\"");
                topic.format = *format;
            }
        }
        if (topic.name.empty()) throw ConfigError(field, "a topic needs a name");
        config.topics.push_back(std::move(topic));
    }
    if (const nlohmann::json* start = k.find("start")) {
        if (start->is_string()) {
            const std::string s = start->get<std::string>();
            if (s == "committed") config.start = KafkaSourceConfig::Start::Committed;
            else if (s == "earliest") config.start = KafkaSourceConfig::Start::Earliest;
            else if (s == "latest") config.start = KafkaSourceConfig::Start::Latest;
            else k.fail("start", "expected committed, earliest, latest, {\"offset\": N} or {\"timestamp\": epoch ms}, got \"" + s + "\"");
        } else {
            const ConfigReader s(*start, k.field("start"));
            s.allowOnly({"offset", "timestamp"});
            if (auto offset = s.integer("offset", 0, INT64_MAX)) {
                config.start = KafkaSourceConfig::Start::Offset;
                config.startAt = *offset;
            } else if (auto timestamp = s.integer("timestamp", 0, INT64_MAX)) {
                config.start = KafkaSourceConfig::Start::Timestamp;
                config.startAt = *timestamp;
            } else {
                k.fail("start", "expected {\"offset\": N} or {\"timestamp\": epoch ms}");
            }
        }
    }
    if (const nlohmann::json* security = k.find("security")) {
        const ConfigReader s(*security, k.field("security"));
        s.allowOnly({"protocol", "sasl_mechanism", "username", "password", "ca_file"});
        if (auto v = s.text("protocol")) {
            if (*v != "plaintext" && *v != "ssl" && *v != "sasl_plaintext" && *v != "sasl_ssl")
                s.fail("protocol", "expected plaintext, ssl, sasl_plaintext or sasl_ssl, got \"" + *v + "\"");
            config.properties["security.protocol"] = *v;
        }
        if (auto v = s.text("sasl_mechanism")) config.properties["sasl.mechanism"] = *v;
        if (auto v = s.text("username")) config.properties["sasl.username"] = *v;
        if (auto v = s.text("password")) config.properties["sasl.password"] = *v;
        if (auto v = s.text("ca_file")) {
            const std::filesystem::path p(*v);
            config.properties["ssl.ca.location"] = (p.is_absolute() ? p : baseDir / p).string();
        }
    }
    if (const nlohmann::json* properties = k.object("properties")) {
        for (const auto& [name, v] : properties->items()) {
            if (v.is_string()) config.properties[name] = v.get<std::string>();
            else if (v.is_number() || v.is_boolean()) config.properties[name] = v.dump();
            else throw ConfigError(k.field("properties") + "." + name, "expected a string, number or boolean, got " + shortJson(v));
        }
    }
    if (auto v = k.number<std::size_t>("max_in_flight", 1, std::size_t(1) << 24)) config.maxInFlight = *v;
    return config;
}

} // namespace pipescope
