#include "config/duration.h"

#include <algorithm>
#include <array>
#include <limits>

namespace pipescope {

namespace {
constexpr std::int64_t kMinTime = std::numeric_limits<std::int64_t>::min();
struct DurationUnit {
    std::string_view suffix;
    std::int64_t millis;
};
constexpr std::array<DurationUnit, 5> kDurationUnits{
    {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};
constexpr std::string_view kDurationHint =
    "write a whole number and a unit (ms, s, m, h, d), e.g. 30s, 90m, 24h, 7d or 1h30m";

bool isDigit(char c) {
    return c >= '0' && c <= '9';
}
bool isLetter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
} // namespace

std::optional<std::int64_t> parseDurationMillis(std::string_view text, std::string* error) {
    const auto fail = [&](std::string message) -> std::optional<std::int64_t> {
        if (error) *error = std::move(message);
        return std::nullopt;
    };
    const std::string quoted = "'" + std::string(text) + "'";
    if (text.empty()) return fail("empty duration: " + std::string(kDurationHint));
    if (text.front() == '-') return fail("negative duration " + quoted + ": a duration must be positive");

    std::int64_t total = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (!isDigit(text[pos]))
            return fail("unexpected '" + std::string(1, text[pos]) + "' in duration " + quoted + ": " +
                        std::string(kDurationHint));
        std::int64_t value = 0;
        const std::size_t numberStart = pos;
        for (; pos < text.size() && isDigit(text[pos]); ++pos)
            if (__builtin_mul_overflow(value, 10, &value) ||
                __builtin_add_overflow(value, text[pos] - '0', &value))
                return fail("duration " + quoted + " is too large");
        const std::string_view number = text.substr(numberStart, pos - numberStart);
        const std::size_t unitStart = pos;
        while (pos < text.size() && isLetter(text[pos]))
            ++pos;
        const std::string_view unit = text.substr(unitStart, pos - unitStart);
        if (unit.empty()) {
            if (pos < text.size())
                return fail("unexpected '" + std::string(1, text[pos]) + "' after " + std::string(number) +
                            " in duration " + quoted + ": " + std::string(kDurationHint));
            return fail("missing unit after " + std::string(number) + " in duration " + quoted + ": " +
                        std::string(kDurationHint));
        }
        const auto found =
            std::find_if(kDurationUnits.begin(), kDurationUnits.end(),
                         [&](const DurationUnit& candidate) { return candidate.suffix == unit; });
        if (found == kDurationUnits.end())
            return fail("unknown unit '" + std::string(unit) + "' in duration " + quoted + ": " +
                        std::string(kDurationHint));
        std::int64_t millis = 0;
        if (__builtin_mul_overflow(value, found->millis, &millis) ||
            __builtin_add_overflow(total, millis, &total))
            return fail("duration " + quoted + " is too large");
    }
    if (total == 0) return fail("zero duration " + quoted + ": a duration must be positive");
    return total;
}

std::string formatDurationMillis(std::int64_t millis) {
    if (millis == 0) return "0ms";
    if (millis < 0) {
        if (millis == kMinTime) return std::to_string(millis) + "ms";
        return "-" + formatDurationMillis(-millis);
    }
    for (const DurationUnit& unit : kDurationUnits)
        if (millis % unit.millis == 0) return std::to_string(millis / unit.millis) + std::string(unit.suffix);
    return std::to_string(millis) + "ms";
}

} // namespace pipescope
