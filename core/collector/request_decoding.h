#pragma once
// Turning a capture request body into JSON, and the light look into that JSON the collector
// needs (the token, whether a Segment message has a type). Private to core/collector/.

#include "collector/collector.h"

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace pipescope::collector_detail {

// What the request says about its body.
struct BodyHints {
    std::string_view contentEncoding;  // Content-Encoding header
    std::string_view contentType;      // Content-Type header
    std::string_view compressionParam; // ?compression= (posthog-js: gzip-js, lz64, base64)
};

// Asked before the memory held for a decoded body grows, with the bytes added, so what is being
// inflated counts against the in-flight bound while it inflates; false refuses the body
// (DecodedBody::Status::Overloaded).
using DecodeBudget = std::function<bool(std::size_t moreBytes)>;

struct DecodedBody {
    enum class Status { Ok, Invalid, TooLarge, Overloaded };
    Status status = Status::Ok;
    BodyEncoding encoding = BodyEncoding::Plain;
    std::string json;   // Ok: the decoded JSON text (not validated yet)
    std::string reason; // Invalid / TooLarge: a RejectedRequest reason code
    std::string detail;
};

// Decodes `raw` by the hints and the body's first bytes. For a plain body the bytes are moved
// from `raw` into the result (no copy of a 20 MB body); otherwise `raw` is left untouched, so
// the caller still holds what was received. Every decoder stops at maxDecodedBytes (TooLarge)
// before holding much more than that; a plain body is not decoded and not counted.
DecodedBody decodeRequestBody(std::string& raw, const BodyHints& hints, std::size_t maxDecodedBytes,
                              const DecodeBudget& budget = {});

struct JsonInspection {
    bool valid = false;
    std::string reason; // when !valid: "not_json", "json_too_deep" or "empty_body"
    std::string detail; // when !valid: the parser's message and the byte offset
    std::string token;  // empty when the body names none
    bool isObject = false;
    bool hasType = false; // a top-level object with a "type" member
};

// Parses once (simdjson, depth-limited; no recursion however deep the input) to validate and
// read the token. Invalid UTF-8 and numbers simdjson cannot hold (integers beyond 64 bits,
// 1e400) inside otherwise valid JSON count as valid, the token still found. `json` gets
// SIMDJSON_PADDING spare capacity if it lacks it.
JsonInspection inspectJson(std::string& json);

// Makes `type` the first member of the top-level object `json`.
void insertTypeMember(std::string& json, std::string_view type);

// The username of an `Authorization: Basic <base64 user:password>` header (Segment's write
// key); empty when the header is absent or not Basic.
std::string basicAuthUser(std::string_view authorization);

// The token of an `Authorization: Bearer <token>` header (posthog-node's Capture V1); empty when
// the header is absent or not Bearer.
std::string bearerToken(std::string_view authorization);

// posthog-node's Capture V1 body, {created_at, historical_migration?, batch: [{event, uuid,
// distinct_id, timestamp, session_id?, window_id?, options, properties}]}, rewritten in place as
// the PostHog batch the pipeline decodes: {api_key: token, sent_at: created_at,
// historical_migration?, batch: [...]}. Each event keeps its bytes, with only what PostHog's
// capture would add spliced into the front of its properties: $lib / $lib_version from
// `sdkInfo` (PostHog-Sdk-Info, "posthog-node/5.70.0"; V1 strips them from the event) unless the
// event has a $lib, and $session_id / $window_id from the top-level session_id / window_id
// unless the properties hold them. An event that is not an object, or whose properties are not
// an object, is kept as it is. `json` must have passed inspectJson(); false (and `json`
// untouched) when it is not an object with a "batch" array.
bool captureV1ToBatch(std::string& json, std::string_view token, std::string_view sdkInfo);

// application/x-www-form-urlencoded value decoding ('+' is a space, %XX a byte); false when a
// '%' is not followed by two hex digits.
bool decodeFormComponent(std::string_view encoded, std::string& decoded);

} // namespace pipescope::collector_detail
