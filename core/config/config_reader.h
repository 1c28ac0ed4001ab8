#pragma once
// One reader for config objects (`run`'s config file, its destinations): every error names the
// setting's path ("collector.port", "destinations[2].url"), and that path survives rewrapping,
// so a caller can point at the field (the GUI's settings dialog highlights it).
//
// JSON `null` counts as "not set" everywhere: a template with "port": null keeps the default.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace pipescope {

// what(): "[file: ]field: message"; without a field (the whole document) "[file: ]message".
class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string field, std::string message, std::string file = {});
    const std::string& field() const { return m_field; }     // "" for the document itself
    const std::string& message() const { return m_message; } // without file and field
    const std::string& file() const { return m_file; }       // "" when not read from a file

private:
    std::string m_field;
    std::string m_message;
    std::string m_file;
};

// The JSON text of a value for an error message, cut to 60 characters.
std::string shortJson(const nlohmann::json& value);

class ConfigReader {
public:
    // `where` is the object's own path ("" for the document root). Throws ConfigError when
    // `value` is not an object.
    ConfigReader(const nlohmann::json& value, std::string where);

    // Refuses keys not in `known` (a misspelt "destinatons" must not silently mean "no
    // destinations"): "<field>: unknown setting (known: a, b, c)".
    void allowOnly(const std::vector<std::string_view>& known) const;

    [[noreturn]] void fail(std::string_view key, const std::string& message) const;
    std::string field(std::string_view key) const; // "collector" + "port" -> "collector.port"
    const std::string& where() const { return m_where; }
    const nlohmann::json& value() const { return m_value; }

    // nullptr when the key is absent or null.
    const nlohmann::json* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // Each: nullopt when not set; ConfigError naming the field when set to something else.
    std::optional<std::string> text(std::string_view key) const;
    std::optional<bool> boolean(std::string_view key) const;
    // An integer (no fraction, no exponent beyond one): "expected an integer from MIN to MAX, got V".
    std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max) const;
    // Any JSON number (sizes may be written 1e9); integral T refuses a fraction.
    // Out of range: "<field>: V is out of range [MIN, MAX]".
    template <typename T>
    std::optional<T> number(std::string_view key, T min, T max) const;
    // A duration such as "30s" (config/duration.h).
    std::optional<std::int64_t> duration(std::string_view key) const;
    // An array of non-empty strings; empty when not set.
    std::vector<std::string> strings(std::string_view key) const;
    // The raw array / object, type-checked ("expected an array, got ...").
    const nlohmann::json* array(std::string_view key) const;
    const nlohmann::json* object(std::string_view key) const;

private:
    double numberIn(std::string_view key, double min, double max, bool integral) const;

    const nlohmann::json& m_value;
    std::string m_where;
};

template <typename T>
std::optional<T> ConfigReader::number(std::string_view key, T min, T max) const {
    if (!has(key)) return std::nullopt;
    return static_cast<T>(numberIn(key, static_cast<double>(min), static_cast<double>(max), std::is_integral_v<T>));
}

} // namespace pipescope
