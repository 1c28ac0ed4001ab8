#pragma once
// Durations as a person writes them in options and config files: "30s", "90m", "24h", "7d",
// "250ms", or a sum such as "1h30m". Used by the dedup window, `run`'s intervals and the CLI.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pipescope {

// Text -> milliseconds. Returns nullopt and sets *error (when given) for anything else: empty
// input, no unit, an unknown unit, a sign, a zero or an overflowing total.
std::optional<std::int64_t> parseDurationMillis(std::string_view text, std::string* error = nullptr);
// The inverse for reports: the largest unit that divides exactly ("24h", "90m", "1500ms").
std::string formatDurationMillis(std::int64_t millis);

} // namespace pipescope
