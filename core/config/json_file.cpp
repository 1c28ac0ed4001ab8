#include "config/json_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

namespace pipescope {

namespace {

std::string located(const std::filesystem::path& file, std::size_t line, std::size_t column,
                    const std::string& message) {
    std::string text = file.string() + ": ";
    if (line > 0) text += "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
    return text + message;
}

// 1-based line and column of a byte offset (0-based) in `text`.
std::pair<std::size_t, std::size_t> lineAndColumn(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    const std::size_t line = 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
    const auto lastNewline = text.substr(0, offset).rfind('\n');
    const std::size_t column = lastNewline == std::string_view::npos ? offset + 1 : offset - lastNewline;
    return {line, column};
}

} // namespace

JsonFileError::JsonFileError(std::filesystem::path file, std::size_t line, std::size_t column,
                             const std::string& message)
    : std::runtime_error(located(file, line, column, message)), m_file(std::move(file)), m_line(line),
      m_column(column) {}

nlohmann::json parseJsonFile(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw JsonFileError(file, 0, 0, std::string("cannot read the file: ") + std::strerror(errno));
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) throw JsonFileError(file, 0, 0, std::string("cannot read the file: ") + std::strerror(errno));
    const std::string content = buffer.str();
    nlohmann::json document = nlohmann::json::parse(content, nullptr, false);
    if (!document.is_discarded()) return document;
    // Parse again with exceptions, only for the message and the byte offset.
    try {
        const nlohmann::json reparsed = nlohmann::json::parse(content);
        (void)reparsed;
    } catch (const nlohmann::json::parse_error& e) {
        // e.byte counts from 1 and points at the character that broke the parse.
        const auto [line, column] = lineAndColumn(content, e.byte == 0 ? 0 : e.byte - 1);
        std::string detail = e.what();
        if (const auto pos = detail.find("syntax error"); pos != std::string::npos)
            detail = "JSON " + detail.substr(pos);
        else if (const auto colon = detail.find(": "); colon != std::string::npos)
            detail = "JSON syntax error: " + detail.substr(colon + 2);
        throw JsonFileError(file, line, column, "not valid JSON: " + detail);
    }
    throw JsonFileError(file, 0, 0, "not valid JSON");
}

} // namespace pipescope
