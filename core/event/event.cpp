#include "event/event.h"

#include <array>
#include <charconv>
#include <cstdio>

namespace pipescope {

std::string_view toString(Stream stream) {
    switch (stream) {
    case Stream::Client: return "client";
    case Stream::Server: return "server";
    case Stream::Unknown: break;
    }
    return "unknown";
}

std::string_view toString(IdSource source) {
    switch (source) {
    case IdSource::IdempotencyKey: return "idempotency_key";
    case IdSource::PostHogUuid: return "posthog_uuid";
    case IdSource::SegmentMessageId: return "segment_message_id";
    case IdSource::Canonical: return "canonical";
    case IdSource::None: break;
    }
    return "none";
}

std::string_view toString(Format format) {
    switch (format) {
    case Format::PostHog: return "posthog";
    case Format::Segment: return "segment";
    case Format::Canonical: return "canonical";
    case Format::Auto: break;
    }
    return "auto";
}

std::optional<Stream> parseStream(std::string_view text) {
    if (text == "client") return Stream::Client;
    if (text == "server") return Stream::Server;
    if (text == "unknown") return Stream::Unknown;
    return std::nullopt;
}

std::optional<Format> parseFormat(std::string_view text) {
    if (text == "auto") return Format::Auto;
    if (text == "posthog") return Format::PostHog;
    if (text == "segment") return Format::Segment;
    if (text == "canonical") return Format::Canonical;
    return std::nullopt;
}

std::string Event::rawBytes() const {
    if (!rawLine.empty()) return std::string(rawLine);
    if (rawElement.data() != nullptr) return std::string(rawElement);
    return simdjson::minify(element);
}

namespace {

// Howard Hinnant's days_from_civil: proleptic Gregorian date to days since 1970-01-01.
constexpr std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr bool isLeap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned daysInMonth(std::int64_t y, unsigned m) {
    static constexpr std::array<unsigned, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && isLeap(y) ? 29 : days[m - 1];
}

// Reads exactly `n` digits at `pos`.
bool digits(std::string_view s, std::size_t& pos, std::size_t n, unsigned& out) {
    if (pos + n > s.size()) return false;
    unsigned value = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = s[pos + i];
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    pos += n;
    out = value;
    return true;
}

} // namespace

Millis parseTimestamp(std::string_view s) {
    if (s.empty()) return std::nullopt;
    // Epoch milliseconds as text.
    if (s.find_first_not_of("0123456789") == std::string_view::npos && s.size() <= 15) {
        std::int64_t value = 0;
        std::from_chars(s.data(), s.data() + s.size(), value);
        return value;
    }
    std::size_t pos = 0;
    unsigned year = 0, month = 0, day = 0;
    if (!digits(s, pos, 4, year) || pos >= s.size() || s[pos++] != '-' || !digits(s, pos, 2, month) ||
        pos >= s.size() || s[pos++] != '-' || !digits(s, pos, 2, day))
        return std::nullopt;
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return std::nullopt;
    std::int64_t millis = daysFromCivil(year, month, day) * 86'400'000;
    if (pos == s.size()) return millis;
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return std::nullopt;
    ++pos;
    unsigned hour = 0, minute = 0, second = 0;
    if (!digits(s, pos, 2, hour) || pos >= s.size() || s[pos++] != ':' || !digits(s, pos, 2, minute))
        return std::nullopt;
    if (pos < s.size() && s[pos] == ':') {
        ++pos;
        if (!digits(s, pos, 2, second)) return std::nullopt;
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    millis += (hour * 3600 + minute * 60 + std::min(second, 59u)) * 1000LL;
    if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
        ++pos;
        unsigned scale = 100, fraction = 0;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            fraction += static_cast<unsigned>(s[pos] - '0') * scale;
            scale /= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
        millis += fraction;
    }
    if (pos == s.size()) return millis; // no zone: taken as UTC, as PostHog does
    if (s[pos] == 'Z' || s[pos] == 'z') return pos + 1 == s.size() ? Millis(millis) : std::nullopt;
    if (s[pos] != '+' && s[pos] != '-') return std::nullopt;
    const int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    unsigned offH = 0, offM = 0;
    if (!digits(s, pos, 2, offH)) return std::nullopt;
    if (pos < s.size() && s[pos] == ':') ++pos;
    if (pos < s.size() && !digits(s, pos, 2, offM)) return std::nullopt;
    if (pos != s.size() || offH > 23 || offM > 59) return std::nullopt;
    return millis - sign * static_cast<std::int64_t>(offH * 60 + offM) * 60'000;
}

std::string formatTimestamp(std::int64_t epochMillis) {
    std::int64_t days = epochMillis / 86'400'000;
    std::int64_t rem = epochMillis % 86'400'000;
    if (rem < 0) {
        rem += 86'400'000;
        --days;
    }
    // civil_from_days
    days += 719468;
    const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(days - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", static_cast<long long>(y), m,
                  d, static_cast<unsigned>(rem / 3'600'000), static_cast<unsigned>(rem / 60'000 % 60),
                  static_cast<unsigned>(rem / 1000 % 60), static_cast<unsigned>(rem % 1000));
    return buffer;
}

} // namespace pipescope
