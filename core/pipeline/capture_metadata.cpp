#include "pipeline/capture_metadata.h"

#include <nlohmann/json.hpp>

#include "store/capture_store.h"

namespace pipescope {

namespace {

constexpr const char* kUnplannedPolicy = "unplanned_policy";
constexpr const char* kCorrelationKeys = "correlation_keys";
constexpr const char* kDedup = "dedup";

[[noreturn]] void badValue(const std::string& where, const char* key, const std::string& value, const char* expected) {
    throw StoreError((where.empty() ? std::string("capture") : where) + ": meta '" + key + "' is " +
                     (value.size() > 80 ? "\"" + value.substr(0, 77) + "...\"" : "\"" + value + "\"") + ", expected " +
                     expected);
}

} // namespace

CaptureMetadata CaptureMetadata::of(const PipelineOptions& options) {
    CaptureMetadata metadata;
    metadata.unplanned = options.unplanned;
    metadata.correlationKeys = pipescope::identityOptions(options).correlationKeys;
    metadata.dedupEnabled = options.dedup;
    metadata.dedupMode = options.dedupOptions.mode;
    metadata.dedupWindowMillis = options.dedupOptions.windowMillis;
    metadata.fingerprint = options.fingerprint;
    return metadata;
}

IdentityOptions CaptureMetadata::identityOptions() const {
    IdentityOptions options;
    options.correlationKeys = correlationKeys;
    return options;
}

void writeCaptureMetadata(CaptureWriter& capture, const CaptureMetadata& metadata) {
    capture.putMeta(kUnplannedPolicy, std::string(toString(metadata.unplanned)));
    capture.putMeta(kCorrelationKeys, nlohmann::json(metadata.correlationKeys).dump());
    capture.putMeta(kDedup, nlohmann::json{{"enabled", metadata.dedupEnabled},
                                           {"mode", toString(metadata.dedupMode)},
                                           {"window", formatDurationMillis(metadata.dedupWindowMillis)},
                                           {"fingerprint", metadata.fingerprint}}
                                .dump());
}

CaptureMetadata readCaptureMetadata(const CaptureReader& capture, const std::string& where) {
    CaptureMetadata metadata;
    if (const std::string text = capture.meta(kUnplannedPolicy); !text.empty()) {
        const auto policy = parseUnplannedPolicy(text);
        if (!policy) badValue(where, kUnplannedPolicy, text, "allow, warn or dlq");
        metadata.unplanned = *policy;
    }
    if (const std::string text = capture.meta(kCorrelationKeys); !text.empty()) {
        const auto parsed = nlohmann::json::parse(text, nullptr, false);
        if (!parsed.is_array()) badValue(where, kCorrelationKeys, text, "a JSON array of property names");
        metadata.correlationKeys.clear();
        for (const auto& key : parsed) {
            if (!key.is_string()) badValue(where, kCorrelationKeys, text, "a JSON array of property names");
            metadata.correlationKeys.push_back(key.get<std::string>());
        }
    }
    if (const std::string text = capture.meta(kDedup); !text.empty()) {
        const char* expected = R"({"enabled": bool, "mode": "exact"|"bloom", "window": "24h", "fingerprint": bool})";
        const auto parsed = nlohmann::json::parse(text, nullptr, false);
        if (!parsed.is_object()) badValue(where, kDedup, text, expected);
        const auto flag = [&](const char* name, bool& out) {
            if (const auto it = parsed.find(name); it != parsed.end()) {
                if (!it->is_boolean()) badValue(where, kDedup, text, expected);
                out = it->get<bool>();
            }
        };
        flag("enabled", metadata.dedupEnabled);
        flag("fingerprint", metadata.fingerprint);
        if (const auto it = parsed.find("mode"); it != parsed.end()) {
            if (*it == "exact") metadata.dedupMode = DedupMode::Exact;
            else if (*it == "bloom") metadata.dedupMode = DedupMode::Bloom;
            else badValue(where, kDedup, text, expected);
        }
        if (const auto it = parsed.find("window"); it != parsed.end()) {
            const auto millis = it->is_string() ? parseDurationMillis(it->get<std::string>()) : std::nullopt;
            if (!millis) badValue(where, kDedup, text, expected);
            metadata.dedupWindowMillis = *millis;
        }
    }
    return metadata;
}

} // namespace pipescope
