#pragma once
// One loader for the JSON files a person writes (schemas, the run config): read the file, parse
// it, and when it is not JSON say where — file, line and column — and what nlohmann found there.

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace pipescope {

// what(): "schemas/payment/1.json: line 3, column 20: not valid JSON: JSON syntax error while
// parsing object - ..." or "pipescope.json: cannot read the file: No such file or directory".
class JsonFileError : public std::runtime_error {
public:
    JsonFileError(std::filesystem::path file, std::size_t line, std::size_t column, const std::string& message);
    const std::filesystem::path& file() const { return m_file; }
    std::size_t line() const { return m_line; }     // 0 when the file could not be read
    std::size_t column() const { return m_column; } // 0 when the file could not be read

private:
    std::filesystem::path m_file;
    std::size_t m_line = 0;
    std::size_t m_column = 0;
};

// Throws JsonFileError when the file cannot be read or is not JSON.
nlohmann::json parseJsonFile(const std::filesystem::path& file);

} // namespace pipescope
