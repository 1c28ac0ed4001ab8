#pragma once
// Private to route/: the transports behind a DestinationWorker. A sink delivers one batch once;
// retries, backoff, cursors and dead letters are the worker's business.

#include "route/destination.h"
#include "route/http_client.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace pipescope {

struct SinkResult {
    enum class Kind { Delivered, Retryable, Permanent, Cancelled };
    Kind kind = Kind::Delivered;
    int httpStatus = 0;
    std::string error;
    std::optional<std::int64_t> retryAfterMillis;
};

class DeliverySink {
public:
    virtual ~DeliverySink() = default;
    // Must not throw: every failure is a SinkResult.
    virtual SinkResult deliver(std::span<const OutgoingEvent> batch, const CancelToken& cancel) = 0;
    // Makes a running deliver() look at its CancelToken now; called from another thread.
    virtual void wakeup() {}
};

// Throws std::runtime_error when the transport cannot be set up (no curl handle).
std::unique_ptr<DeliverySink> makeDeliverySink(const DestinationConfig& config);

// How an HTTP answer counts: 2xx delivered; 408, 429, 5xx and transport errors retryable;
// anything else (other 4xx, unexpected 3xx/1xx) permanent for the batch.
SinkResult classifyHttpResponse(const HttpResponse& response);

} // namespace pipescope
