#include "format/json_error.h"

#include <nlohmann/json.hpp>

namespace pipescope {

namespace {

struct ErrorProbe {
    using json = nlohmann::json;
    JsonErrorLocation location;

    bool null() { return true; }
    bool boolean(bool) { return true; }
    bool number_integer(json::number_integer_t) { return true; }
    bool number_unsigned(json::number_unsigned_t) { return true; }
    bool number_float(json::number_float_t, const json::string_t&) { return true; }
    bool string(json::string_t&) { return true; }
    bool binary(json::binary_t&) { return true; }
    bool start_object(std::size_t) { return true; }
    bool key(json::string_t&) { return true; }
    bool end_object() { return true; }
    bool start_array(std::size_t) { return true; }
    bool end_array() { return true; }
    // Syntax errors and out-of-range numbers ("number overflow parsing '1e400'") both land here;
    // nlohmann counts the byte it stopped after.
    bool parse_error(std::size_t byte, const std::string&, const nlohmann::detail::exception& error) {
        location.found = true;
        location.offset = byte > 0 ? byte - 1 : 0;
        location.message = error.what();
        if (const std::size_t bracket = location.message.find("] ");
            !location.message.empty() && location.message.front() == '[' && bracket != std::string::npos)
            location.message.erase(0, bracket + 2);
        return false;
    }
};

} // namespace

JsonErrorLocation locateJsonError(std::string_view text) {
    ErrorProbe probe;
    nlohmann::json::sax_parse(text, &probe);
    return probe.location;
}

} // namespace pipescope
