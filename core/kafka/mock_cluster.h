#pragma once
// librdkafka's mock cluster: an in-process Kafka cluster on loopback that real clients (ours,
// kcat) talk the Kafka protocol to. What tests and `pipescope-cli kafka-mock` use; real users
// point Pipescope at their own brokers.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipescope {

class KafkaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class KafkaMockCluster {
public:
    // Starts `brokers` brokers (ids 1..brokers) listening on 127.0.0.1, random ports.
    explicit KafkaMockCluster(int brokers = 1);
    ~KafkaMockCluster();
    KafkaMockCluster(const KafkaMockCluster&) = delete;
    KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;

    // "127.0.0.1:port,127.0.0.1:port,..."
    std::string bootstrapServers() const;
    // Throws KafkaError (e.g. replication above the broker count).
    void createTopic(const std::string& name, int partitions, int replicationFactor = 1);
    // A broker stops answering (connections are closed) / answers again.
    void setBrokerDown(std::int32_t broker);
    void setBrokerUp(std::int32_t broker);
    // The next `errors.size()` requests of Kafka API `apiKey` (e.g. 1 Fetch, 0 Produce, 8
    // OffsetCommit) fail with these error codes (rd_kafka_resp_err_t values), in order.
    void pushRequestErrors(std::int16_t apiKey, const std::vector<int>& errors);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Parses "name:partitions,name:partitions" (`--topics`); partitions default to 1. Throws
// KafkaError naming the bad item.
std::vector<std::pair<std::string, int>> parseTopicList(const std::string& text);

} // namespace pipescope
