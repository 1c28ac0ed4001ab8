#pragma once
// The `kafka` section of run's config file:
//
//   "kafka": {
//     "brokers": "host:9092,host2:9092",
//     "group": "pipescope",
//     "topics": [{"name": "web_events", "stream": "client", "format": "posthog"}, "server_events"],
//     "start": "committed" | "earliest" | "latest" | {"offset": 1200} | {"timestamp": 1764000000000},
//     "security": {"protocol": "sasl_ssl", "sasl_mechanism": "SCRAM-SHA-512", "username": "u",
//                  "password": "p", "ca_file": "ca.pem"},
//     "properties": {"fetch.max.bytes": "1048576"}
//   }
//
// A topic given as a string has stream and format "auto". Errors name the field
// ("kafka.topics[1].stream").

#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "kafka/kafka_source.h"

namespace pipescope {

// Throws ConfigError. `baseDir` resolves a relative ca_file.
KafkaSourceConfig parseKafkaSourceConfig(const nlohmann::json& value, const std::string& where,
                                         const std::filesystem::path& baseDir);

} // namespace pipescope
