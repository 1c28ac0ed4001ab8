#include "kafka/mock_cluster.h"

#include <charconv>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace pipescope {

struct KafkaMockCluster::Impl {
    rd_kafka_t* handle = nullptr;          // the mock cluster lives on this client's threads
    rd_kafka_mock_cluster_t* cluster = nullptr;
};

KafkaMockCluster::KafkaMockCluster(int brokers) : m_impl(std::make_unique<Impl>()) {
    if (brokers < 1 || brokers > 64) throw KafkaError("kafka-mock: --brokers must be 1..64, got " + std::to_string(brokers));
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // Quiet: the mock's own client never connects anywhere.
    rd_kafka_conf_set(conf, "log_level", "3", error, sizeof error);
    m_impl->handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (!m_impl->handle) {
        rd_kafka_conf_destroy(conf);
        throw KafkaError(std::string("kafka-mock: cannot create the mock cluster's client: ") + error);
    }
    m_impl->cluster = rd_kafka_mock_cluster_new(m_impl->handle, brokers);
    if (!m_impl->cluster) {
        rd_kafka_destroy(m_impl->handle);
        throw KafkaError("kafka-mock: cannot start a mock cluster of " + std::to_string(brokers) + " brokers");
    }
}

KafkaMockCluster::~KafkaMockCluster() {
    rd_kafka_mock_cluster_destroy(m_impl->cluster);
    rd_kafka_destroy(m_impl->handle);
}

std::string KafkaMockCluster::bootstrapServers() const { return rd_kafka_mock_cluster_bootstraps(m_impl->cluster); }

void KafkaMockCluster::createTopic(const std::string& name, int partitions, int replicationFactor) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(m_impl->cluster, name.c_str(), partitions, replicationFactor);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw KafkaError("kafka-mock: cannot create topic \"" + name + "\" (" + std::to_string(partitions) +
                         " partitions): " + rd_kafka_err2str(err));
}

void KafkaMockCluster::setBrokerDown(std::int32_t broker) {
    if (const auto err = rd_kafka_mock_broker_set_down(m_impl->cluster, broker); err != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw KafkaError("kafka-mock: broker " + std::to_string(broker) + ": " + rd_kafka_err2str(err));
}

void KafkaMockCluster::setBrokerUp(std::int32_t broker) {
    if (const auto err = rd_kafka_mock_broker_set_up(m_impl->cluster, broker); err != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw KafkaError("kafka-mock: broker " + std::to_string(broker) + ": " + rd_kafka_err2str(err));
}

void KafkaMockCluster::pushRequestErrors(std::int16_t apiKey, const std::vector<int>& errors) {
    std::vector<rd_kafka_resp_err_t> codes;
    codes.reserve(errors.size());
    for (const int e : errors) codes.push_back(static_cast<rd_kafka_resp_err_t>(e));
    rd_kafka_mock_push_request_errors_array(m_impl->cluster, apiKey, codes.size(), codes.data());
}

std::vector<std::pair<std::string, int>> parseTopicList(const std::string& text) {
    std::vector<std::pair<std::string, int>> topics;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t comma = text.find(',', start);
        const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        start = comma == std::string::npos ? text.size() + 1 : comma + 1;
        if (item.empty()) {
            if (text.empty()) break;
            throw KafkaError("--topics: empty topic name in \"" + text + "\"");
        }
        const std::size_t colon = item.rfind(':');
        std::string name = item.substr(0, colon);
        int partitions = 1;
        if (colon != std::string::npos) {
            const std::string count = item.substr(colon + 1);
            const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), partitions);
            if (ec != std::errc() || end != count.data() + count.size() || partitions < 1 || partitions > 10000)
                throw KafkaError("--topics: \"" + item + "\": partitions must be a number from 1 to 10000");
        }
        if (name.empty() || name.size() > 249 ||
            name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos)
            throw KafkaError("--topics: \"" + name + "\" is not a valid topic name (letters, digits, '.', '_', '-'; at most 249)");
        topics.emplace_back(std::move(name), partitions);
    }
    return topics;
}

} // namespace pipescope
