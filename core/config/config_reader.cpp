#include "config/config_reader.h"

#include <cmath>
#include <sstream>

#include "config/duration.h"

namespace pipescope {

namespace {

std::string joined(std::string_view file, std::string_view field, std::string_view message) {
    std::string text;
    if (!file.empty()) text.append(file).append(": ");
    if (!field.empty()) text.append(field).append(": ");
    return text.append(message);
}

// 1e9 -> "1000000000", 0.5 -> "0.5": ranges read as the person wrote them.
std::string numberText(double value) {
    if (std::floor(value) == value && std::fabs(value) < 1e18) return std::to_string(static_cast<long long>(value));
    std::ostringstream out;
    out << value;
    return out.str();
}

} // namespace

ConfigError::ConfigError(std::string field, std::string message, std::string file)
    : std::runtime_error(joined(file, field, message)), m_field(std::move(field)), m_message(std::move(message)),
      m_file(std::move(file)) {}

std::string shortJson(const nlohmann::json& value) {
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

ConfigReader::ConfigReader(const nlohmann::json& value, std::string where) : m_value(value), m_where(std::move(where)) {
    if (!value.is_object()) throw ConfigError(m_where, "expected an object, got " + shortJson(value));
}

void ConfigReader::allowOnly(const std::vector<std::string_view>& known) const {
    for (const auto& [key, _] : m_value.items()) {
        bool found = false;
        for (const std::string_view k : known) found = found || k == key;
        if (found) continue;
        std::string list;
        for (const std::string_view k : known) list.append(list.empty() ? "" : ", ").append(k);
        fail(key, "unknown setting (known: " + list + ")");
    }
}

void ConfigReader::fail(std::string_view key, const std::string& message) const {
    throw ConfigError(field(key), message);
}

std::string ConfigReader::field(std::string_view key) const {
    if (key.empty()) return m_where;
    if (m_where.empty()) return std::string(key);
    return m_where + "." + std::string(key);
}

const nlohmann::json* ConfigReader::find(std::string_view key) const {
    const auto it = m_value.find(key);
    return it == m_value.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> ConfigReader::text(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_string()) fail(key, "expected a string, got " + shortJson(*value));
    return value->get<std::string>();
}

std::optional<bool> ConfigReader::boolean(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) fail(key, "expected true or false, got " + shortJson(*value));
    return value->get<bool>();
}

std::optional<std::int64_t> ConfigReader::integer(std::string_view key, std::int64_t min, std::int64_t max) const {
    const nlohmann::json* value = find(key);
    if (!value) return std::nullopt;
    std::int64_t number = 0;
    bool inRange = false;
    if (value->is_number_unsigned()) {
        inRange = value->get<std::uint64_t>() <= static_cast<std::uint64_t>(max);
        number = inRange ? value->get<std::int64_t>() : 0;
        inRange = inRange && number >= min;
    } else if (value->is_number_integer()) {
        number = value->get<std::int64_t>();
        inRange = number >= min && number <= max;
    }
    if (!inRange)
        fail(key, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", got " +
                      shortJson(*value));
    return number;
}

double ConfigReader::numberIn(std::string_view key, double min, double max, bool integral) const {
    const nlohmann::json& value = *find(key);
    if (!value.is_number()) fail(key, "expected a number, got " + shortJson(value));
    const double d = value.get<double>();
    if (integral && std::floor(d) != d) fail(key, "expected a whole number, got " + shortJson(value));
    if (d < min || d > max)
        fail(key, value.dump() + " is out of range [" + numberText(min) + ", " + numberText(max) + "]");
    return d;
}

std::optional<std::int64_t> ConfigReader::duration(std::string_view key) const {
    const auto spec = text(key);
    if (!spec) return std::nullopt;
    std::string error;
    const auto millis = parseDurationMillis(*spec, &error);
    if (!millis) fail(key, error);
    return millis;
}

std::vector<std::string> ConfigReader::strings(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (!value) return {};
    if (!value->is_array()) fail(key, "expected an array of strings, got " + shortJson(*value));
    std::vector<std::string> out;
    for (const auto& item : *value) {
        if (!item.is_string() || item.get<std::string>().empty())
            fail(key, "expected non-empty strings, got " + shortJson(item));
        out.push_back(item.get<std::string>());
    }
    return out;
}

const nlohmann::json* ConfigReader::array(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (value && !value->is_array()) fail(key, "expected an array, got " + shortJson(*value));
    return value;
}

const nlohmann::json* ConfigReader::object(std::string_view key) const {
    const nlohmann::json* value = find(key);
    if (value && !value->is_object()) fail(key, "expected an object, got " + shortJson(*value));
    return value;
}

} // namespace pipescope
