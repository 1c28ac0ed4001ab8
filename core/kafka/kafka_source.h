#pragma once
// Kafka topics as a source of the run pipeline. A consumer in a group reads the configured
// topics; each message becomes one ingest request (origin `kafka:<topic>:<partition>:<offset>`)
// handed to the same IngestSink the HTTP collector feeds, so a message goes through the durable
// ingest log and the whole pipeline like a request. Offsets are stored only once the sink has
// committed a message and every earlier message of its partition (at-least-once: a message
// processed but not yet committed is consumed again after a crash or a rebalance, and the dedup
// window makes that effectively once). Kafka spreads the partitions over the processes of a
// group; Pipescope does no clustering of its own.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "collector/collector.h"
#include "event/event.h"
#include "kafka/mock_cluster.h"

namespace pipescope {

struct KafkaTopicConfig {
    std::string name;
    std::optional<Stream> stream = {}; // client | server; nullopt: from the events (auto)
    std::string format = "auto";    // auto | posthog | segment
};

struct KafkaSourceConfig {
    enum class Start : std::uint8_t { Committed, Earliest, Latest, Offset, Timestamp };
    std::string brokers;            // bootstrap servers, "host:port,..."
    std::string group = "pipescope";
    std::vector<KafkaTopicConfig> topics = {};
    // Where a partition starts when this process is first given it: the group's committed
    // offset (the earliest when the group has none), the earliest or latest offset, an offset,
    // or the first message at or after a time (epoch ms).
    Start start = Start::Committed;
    std::int64_t startAt = 0;
    // librdkafka properties passed as they are (security.protocol, sasl.mechanism, sasl.username,
    // sasl.password, ssl.ca.location, partition.assignment.strategy, ...).
    std::map<std::string, std::string> properties = {};
    // Messages handed to the sink and not yet committed, beyond which consumption pauses.
    std::size_t maxInFlight = 20000;
};

// The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the payload.
struct KafkaValue {
    std::string_view payload;
    std::optional<std::uint32_t> schemaId;
};
KafkaValue unframeConfluent(std::string_view value);

struct KafkaPartitionStats {
    std::string topic;
    std::int32_t partition = 0;
    std::int64_t stored = -1;        // the next offset to consume, committed with the group (-1: none yet)
    std::int64_t highWatermark = -1; // -1: unknown yet
    std::int64_t lag = -1;           // highWatermark - stored (or - low watermark), -1 unknown
    std::size_t inFlight = 0;
};

struct KafkaSourceStats {
    std::uint64_t messages = 0;      // consumed
    std::uint64_t bytes = 0;
    std::uint64_t committed = 0;     // committed by the sink (offset stored)
    std::uint64_t confluentFramed = 0;
    std::uint64_t retried = 0;       // handed to the sink again after a 429/503-like answer
    std::uint64_t errors = 0;        // consumer errors reported by librdkafka
    std::uint64_t rebalances = 0;
    std::string lastError;
    bool paused = false;             // too many in flight, or the sink is overloaded
    std::vector<KafkaPartitionStats> partitions;
};

class KafkaSource {
public:
    // Throws KafkaError: no brokers or topics, a property librdkafka refuses (named).
    KafkaSource(KafkaSourceConfig config, IngestSink& sink);
    ~KafkaSource();
    KafkaSource(const KafkaSource&) = delete;
    KafkaSource& operator=(const KafkaSource&) = delete;

    void start();
    // Stops consuming, waits (bounded) for what is in flight, stores and commits the offsets and
    // leaves the group. Idempotent.
    void stop();
    KafkaSourceStats stats() const;
    const KafkaSourceConfig& config() const { return m_config; }

    // What a message becomes (also for tests): its ingest request.
    static IngestRequest requestFor(const KafkaTopicConfig& topic, std::int32_t partition, std::int64_t offset,
                                    std::string_view value, std::optional<std::string> idempotencyKey,
                                    std::int64_t timestampMillis, std::optional<std::uint32_t>* schemaId = nullptr);

private:
    struct Pending;
    struct Partition;
    struct Impl;

    void loop();

    KafkaSourceConfig m_config;
    IngestSink& m_sink;
    std::unique_ptr<Impl> m_impl;
    std::thread m_thread;
    std::atomic<bool> m_stopping{false};
    bool m_started = false;
    bool m_stopped = false;
};

} // namespace pipescope
