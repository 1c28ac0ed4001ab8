#include "kafka/kafka_source.h"

#include <algorithm>
#include <chrono>

#include <librdkafka/rdkafka.h>
#include <simdjson.h>

namespace pipescope {

namespace {

std::int64_t nowMillis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// PostHog or Segment, for a topic of format "auto": a Segment message has a "type" and one of
// messageId / anonymousId / userId; a PostHog event has "event" or "batch".
Vendor sniffVendor(std::string_view payload) {
    const auto has = [&](std::string_view key) {
        std::string quoted = "\"";
        quoted += key;
        quoted += '"';
        return payload.find(quoted) != std::string_view::npos;
    };
    if (has("type") && (has("messageId") || has("anonymousId") || has("userId")) && !has("distinct_id"))
        return Vendor::Segment;
    return Vendor::PostHog;
}

// The project key a message carries: api_key / token / $token / writeKey at the top, else
// properties.token / properties.$token. Empty when none (or not JSON: the pipeline says why).
std::string tokenOf(std::string_view payload) {
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(payload);
    auto document = parser.iterate(padded);
    simdjson::ondemand::object object;
    if (document.get_object().get(object)) return {};
    std::string token;
    for (auto field : object) {
        std::string_view key;
        if (field.unescaped_key().get(key)) return token;
        if (key == "api_key" || key == "token" || key == "$token" || key == "writeKey") {
            std::string_view value;
            if (!field.value().get_string().get(value)) return std::string(value);
        } else if (key == "properties" && token.empty()) {
            simdjson::ondemand::object properties;
            if (field.value().get_object().get(properties)) continue;
            for (auto p : properties) {
                std::string_view pk;
                if (p.unescaped_key().get(pk)) break;
                std::string_view value;
                if ((pk == "token" || pk == "$token") && !p.value().get_string().get(value)) {
                    token = std::string(value);
                    break;
                }
            }
        }
    }
    return token;
}

void setProperty(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
    char error[512];
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw KafkaError("kafka: property \"" + name + "\": " + error);
    }
}

} // namespace

KafkaValue unframeConfluent(std::string_view value) {
    if (value.size() >= 5 && value[0] == '\0') {
        const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(value[i])); };
        return {value.substr(5), (byte(1) << 24) | (byte(2) << 16) | (byte(3) << 8) | byte(4)};
    }
    return {value, std::nullopt};
}

IngestRequest KafkaSource::requestFor(const KafkaTopicConfig& topic, std::int32_t partition, std::int64_t offset,
                                      std::string_view value, std::optional<std::string> idempotencyKey,
                                      std::int64_t timestampMillis, std::optional<std::uint32_t>* schemaId) {
    const KafkaValue unframed = unframeConfluent(value);
    if (schemaId) *schemaId = unframed.schemaId;
    IngestRequest request;
    request.path = "kafka:" + topic.name + ":" + std::to_string(partition) + ":" + std::to_string(offset);
    request.vendor = topic.format == "segment"   ? Vendor::Segment
                     : topic.format == "posthog" ? Vendor::PostHog
                                                 : sniffVendor(unframed.payload);
    request.body.assign(unframed.payload);
    request.token = tokenOf(unframed.payload);
    request.idempotencyKey = std::move(idempotencyKey);
    request.receivedAtMillis = timestampMillis > 0 ? timestampMillis : nowMillis();
    request.remoteAddress = "kafka";
    request.contentType = "application/json";
    return request;
}

// A message handed to the sink, until its commit is reported.
struct KafkaSource::Pending {
    std::int64_t offset = 0;
    IngestRequest request;     // kept to hand over again after a refusal
    enum class State : std::uint8_t { InFlight, Committed, Refused } state = State::InFlight;
    int retryAfterSeconds = 1;
    std::string message;
};

struct KafkaSource::Partition {
    std::string topic;
    std::int32_t partition = 0;
    const KafkaTopicConfig* config = nullptr;
    std::deque<std::shared_ptr<Pending>> pending; // in offset order
    std::int64_t stored = -1;
    std::chrono::steady_clock::time_point retryAt{};
};

struct KafkaSource::Impl {
    rd_kafka_t* rk = nullptr;
    mutable std::mutex mutex;            // guards partitions, stats and the states of Pending
    std::condition_variable changed;     // a completion arrived
    std::map<std::pair<std::string, std::int32_t>, Partition> partitions;
    std::map<std::pair<std::string, std::int32_t>, bool> started; // partitions given a start position once
    KafkaSourceStats stats;
    std::size_t inFlight = 0;
    bool paused = false;
    bool cooperative = false;

    ~Impl() {
        if (rk) rd_kafka_destroy(rk);
    }
};

KafkaSource::KafkaSource(KafkaSourceConfig config, IngestSink& sink)
    : m_config(std::move(config)), m_sink(sink), m_impl(std::make_unique<Impl>()) {
    if (m_config.brokers.empty()) throw KafkaError("kafka: \"brokers\" is empty (bootstrap servers, host:port,...)");
    if (m_config.topics.empty()) throw KafkaError("kafka: no topics to consume");
    for (const KafkaTopicConfig& topic : m_config.topics) {
        if (topic.name.empty()) throw KafkaError("kafka: a topic without a name");
        if (topic.format != "auto" && topic.format != "posthog" && topic.format != "segment")
            throw KafkaError("kafka: topic \"" + topic.name + "\": format \"" + topic.format +
                             "\" (expected auto, posthog or segment)");
    }
    if (m_config.group.empty()) throw KafkaError("kafka: \"group\" is empty");
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    setProperty(conf, "bootstrap.servers", m_config.brokers);
    setProperty(conf, "group.id", m_config.group);
    setProperty(conf, "client.id", "pipescope");
    // Offsets are stored by us, for committed messages only, and committed by librdkafka in the
    // background (and once more at stop).
    setProperty(conf, "enable.auto.offset.store", "false");
    setProperty(conf, "enable.auto.commit", "true");
    setProperty(conf, "auto.commit.interval.ms", "1000");
    setProperty(conf, "auto.offset.reset", m_config.start == KafkaSourceConfig::Start::Latest ? "latest" : "earliest");
    setProperty(conf, "enable.partition.eof", "false");
    for (const auto& [name, value] : m_config.properties) setProperty(conf, name, value);
    m_impl->cooperative = false;
    {
        char value[128];
        size_t size = sizeof value;
        if (rd_kafka_conf_get(conf, "partition.assignment.strategy", value, &size) == RD_KAFKA_CONF_OK)
            m_impl->cooperative = std::string_view(value).find("cooperative-sticky") != std::string_view::npos;
    }
    rd_kafka_conf_set_opaque(conf, this);
    // librdkafka's own log lines (connection failures, retries) go to the stats, not to stderr:
    // warnings and errors become `lastError`.
    rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t* rk, int level, const char* facility, const char* line) {
        if (level > 4) return;
        auto* self = static_cast<KafkaSource*>(rd_kafka_opaque(rk));
        std::lock_guard guard(self->m_impl->mutex);
        self->m_impl->stats.lastError = std::string(facility) + ": " + line;
    });
    rd_kafka_conf_set_rebalance_cb(conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                            rd_kafka_topic_partition_list_t* list, void* opaque) {
        auto* self = static_cast<KafkaSource*>(opaque);
        const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
        std::unique_lock lock(self->m_impl->mutex);
        ++self->m_impl->stats.rebalances;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            for (int i = 0; i < list->cnt; ++i) {
                rd_kafka_topic_partition_t& tp = list->elems[i];
                const auto key = std::make_pair(std::string(tp.topic), tp.partition);
                Partition& p = self->m_impl->partitions[key];
                p.topic = tp.topic;
                p.partition = tp.partition;
                for (const KafkaTopicConfig& topic : self->m_config.topics)
                    if (topic.name == p.topic) p.config = &topic;
                // The configured start applies the first time this process gets the partition;
                // later assignments continue from the group's committed offset.
                if (!self->m_impl->started[key]) {
                    self->m_impl->started[key] = true;
                    switch (self->m_config.start) {
                    case KafkaSourceConfig::Start::Committed: break;
                    case KafkaSourceConfig::Start::Earliest: tp.offset = RD_KAFKA_OFFSET_BEGINNING; break;
                    case KafkaSourceConfig::Start::Latest: tp.offset = RD_KAFKA_OFFSET_END; break;
                    case KafkaSourceConfig::Start::Offset: tp.offset = self->m_config.startAt; break;
                    case KafkaSourceConfig::Start::Timestamp: tp.offset = self->m_config.startAt; break;
                    }
                }
            }
            if (self->m_config.start == KafkaSourceConfig::Start::Timestamp) {
                // offsets_for_times reads the times from the offset field and replaces them.
                lock.unlock();
                rd_kafka_offsets_for_times(rk, list, 10000);
                lock.lock();
            }
            lock.unlock();
            const rd_kafka_error_t* error = nullptr;
            if (cooperative) error = rd_kafka_incremental_assign(rk, list);
            else rd_kafka_assign(rk, list);
            if (error) rd_kafka_error_destroy(const_cast<rd_kafka_error_t*>(error));
            return;
        }
        // Revoked (or lost): wait, bounded, for what is in flight on these partitions, store the
        // offsets of what was committed and commit them, then let the partitions go. What was
        // not committed is consumed again by the next owner.
        std::vector<std::pair<std::string, std::int32_t>> keys;
        for (int i = 0; i < list->cnt; ++i) keys.emplace_back(list->elems[i].topic, list->elems[i].partition);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        const auto drained = [&] {
            for (const auto& key : keys) {
                const auto it = self->m_impl->partitions.find(key);
                if (it == self->m_impl->partitions.end()) continue;
                for (const auto& pending : it->second.pending)
                    if (pending->state == Pending::State::InFlight) return false;
            }
            return true;
        };
        self->m_impl->changed.wait_until(lock, deadline, drained);
        rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(keys.size()));
        for (const auto& key : keys) {
            const auto it = self->m_impl->partitions.find(key);
            if (it == self->m_impl->partitions.end()) continue;
            Partition& p = it->second;
            while (!p.pending.empty() && p.pending.front()->state == Pending::State::Committed) {
                p.stored = p.pending.front()->offset + 1;
                ++self->m_impl->stats.committed;
                p.pending.pop_front();
                --self->m_impl->inFlight;
            }
            if (p.stored >= 0) rd_kafka_topic_partition_list_add(offsets, key.first.c_str(), key.second)->offset = p.stored;
            self->m_impl->inFlight -= p.pending.size();
            self->m_impl->partitions.erase(it);
        }
        lock.unlock();
        if (offsets->cnt > 0) {
            rd_kafka_offsets_store(rk, offsets);
            rd_kafka_commit(rk, offsets, 0);
        }
        rd_kafka_topic_partition_list_destroy(offsets);
        if (cooperative) {
            if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(rk, list)) rd_kafka_error_destroy(error);
        } else {
            rd_kafka_assign(rk, nullptr);
        }
    });
    char error[512];
    m_impl->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (!m_impl->rk) {
        rd_kafka_conf_destroy(conf);
        throw KafkaError(std::string("kafka: cannot create a consumer: ") + error);
    }
    rd_kafka_poll_set_consumer(m_impl->rk);
}

KafkaSource::~KafkaSource() { stop(); }

void KafkaSource::start() {
    if (m_started) return;
    m_started = true;
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(static_cast<int>(m_config.topics.size()));
    for (const KafkaTopicConfig& topic : m_config.topics)
        rd_kafka_topic_partition_list_add(topics, topic.name.c_str(), RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t err = rd_kafka_subscribe(m_impl->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) throw KafkaError(std::string("kafka: cannot subscribe: ") + rd_kafka_err2str(err));
    m_thread = std::thread([this] { loop(); });
}

void KafkaSource::stop() {
    if (!m_started || m_stopped) return;
    m_stopped = true;
    m_stopping = true;
    if (m_thread.joinable()) m_thread.join();
}

void KafkaSource::loop() {
    rd_kafka_t* rk = m_impl->rk;
    // Hands a message (again) to the sink; its completion may run on any thread, at once or later.
    const auto submit = [this](const std::shared_ptr<Pending>& pending) {
        std::weak_ptr<Pending> weak = pending;
        m_sink.ingest(pending->request, [this, weak](IngestResult result) {
            std::lock_guard guard(m_impl->mutex);
            if (const auto p = weak.lock()) {
                p->state = result.status == IngestStatus::Committed ? Pending::State::Committed : Pending::State::Refused;
                p->retryAfterSeconds = std::max(1, result.retryAfterSeconds);
                p->message = result.message;
            }
            m_impl->changed.notify_all();
        });
    };
    // The committed prefix of each partition becomes its stored offset; refused messages are
    // handed over again after their Retry-After (their partition waits: offsets stay in order).
    const auto settle = [&] {
        std::vector<std::shared_ptr<Pending>> again;
        rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(8);
        {
            std::lock_guard guard(m_impl->mutex);
            const auto now = std::chrono::steady_clock::now();
            for (auto& [key, p] : m_impl->partitions) {
                bool advanced = false;
                while (!p.pending.empty() && p.pending.front()->state == Pending::State::Committed) {
                    p.stored = p.pending.front()->offset + 1;
                    p.pending.pop_front();
                    --m_impl->inFlight;
                    ++m_impl->stats.committed;
                    advanced = true;
                }
                if (advanced) rd_kafka_topic_partition_list_add(offsets, key.first.c_str(), key.second)->offset = p.stored;
                for (const auto& pending : p.pending) {
                    if (pending->state != Pending::State::Refused) continue;
                    if (p.retryAt == std::chrono::steady_clock::time_point{}) {
                        p.retryAt = now + std::chrono::seconds(pending->retryAfterSeconds);
                        m_impl->stats.lastError = "sink refused " + pending->request.path + ": " + pending->message;
                    }
                    if (now >= p.retryAt) {
                        pending->state = Pending::State::InFlight;
                        again.push_back(pending);
                        ++m_impl->stats.retried;
                    }
                }
                if (!again.empty()) p.retryAt = {};
            }
        }
        if (offsets->cnt > 0) rd_kafka_offsets_store(rk, offsets);
        rd_kafka_topic_partition_list_destroy(offsets);
        for (const auto& pending : again) submit(pending);
    };
    // Pauses every assigned partition while too much is in flight or the sink is overloaded.
    const auto throttle = [&] {
        bool pause = false;
        {
            std::lock_guard guard(m_impl->mutex);
            pause = m_impl->inFlight >= m_config.maxInFlight || m_sink.overloaded();
            if (pause == m_impl->paused) return;
            m_impl->paused = pause;
            m_impl->stats.paused = pause;
        }
        rd_kafka_topic_partition_list_t* assigned = nullptr;
        if (rd_kafka_assignment(rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR || !assigned) return;
        if (pause) rd_kafka_pause_partitions(rk, assigned);
        else rd_kafka_resume_partitions(rk, assigned);
        rd_kafka_topic_partition_list_destroy(assigned);
    };

    while (!m_stopping) {
        settle();
        throttle();
        rd_kafka_message_t* message = rd_kafka_consumer_poll(rk, 100);
        if (!message) continue;
        if (message->err) {
            std::lock_guard guard(m_impl->mutex);
            ++m_impl->stats.errors;
            m_impl->stats.lastError = rd_kafka_message_errstr(message);
            rd_kafka_message_destroy(message);
            continue;
        }
        const std::string topic = rd_kafka_topic_name(message->rkt);
        std::optional<std::string> key;
        rd_kafka_headers_t* headers = nullptr;
        if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
            const void* value = nullptr;
            size_t size = 0;
            if (rd_kafka_header_get_last(headers, "X-Idempotency-Key", &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR && value)
                key = std::string(static_cast<const char*>(value), size);
        }
        rd_kafka_timestamp_type_t type;
        const std::int64_t timestamp = rd_kafka_message_timestamp(message, &type);
        auto pending = std::make_shared<Pending>();
        pending->offset = message->offset;
        std::optional<std::uint32_t> schemaId;
        {
            std::lock_guard guard(m_impl->mutex);
            Partition& p = m_impl->partitions[{topic, message->partition}];
            static const KafkaTopicConfig fallback{};
            const KafkaTopicConfig& config = p.config ? *p.config : fallback;
            KafkaTopicConfig named = config;
            named.name = topic;
            pending->request = requestFor(named, message->partition, message->offset,
                                          std::string_view(static_cast<const char*>(message->payload), message->len),
                                          std::move(key), timestamp, &schemaId);
            p.topic = topic;
            p.partition = message->partition;
            p.pending.push_back(pending);
            ++m_impl->inFlight;
            ++m_impl->stats.messages;
            m_impl->stats.bytes += message->len;
            if (schemaId) ++m_impl->stats.confluentFramed;
        }
        rd_kafka_message_destroy(message);
        submit(pending);
    }

    // Stopping: what is in flight is given a bounded time to commit, then the offsets of the
    // committed prefix are stored and committed, and the consumer leaves the group.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        settle();
        std::unique_lock lock(m_impl->mutex);
        bool inFlight = false;
        for (const auto& [key, p] : m_impl->partitions)
            for (const auto& pending : p.pending)
                if (pending->state == Pending::State::InFlight) inFlight = true;
        if (!inFlight || std::chrono::steady_clock::now() >= deadline) break;
        m_impl->changed.wait_for(lock, std::chrono::milliseconds(50));
    }
    settle();
    rd_kafka_commit(rk, nullptr, 0);
    rd_kafka_consumer_close(rk);
}

KafkaSourceStats KafkaSource::stats() const {
    std::lock_guard guard(m_impl->mutex);
    KafkaSourceStats stats = m_impl->stats;
    for (const auto& [key, p] : m_impl->partitions) {
        KafkaPartitionStats s;
        s.topic = p.topic;
        s.partition = p.partition;
        s.stored = p.stored;
        s.inFlight = p.pending.size();
        int64_t low = -1, high = -1;
        if (rd_kafka_get_watermark_offsets(m_impl->rk, p.topic.c_str(), p.partition, &low, &high) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            high >= 0) {
            s.highWatermark = high;
            s.lag = std::max<std::int64_t>(0, high - (p.stored >= 0 ? p.stored : std::max<std::int64_t>(low, 0)));
        }
        stats.partitions.push_back(std::move(s));
    }
    return stats;
}

} // namespace pipescope
