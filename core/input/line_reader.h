#pragma once
// Reads NDJSON input line by line from a file, a gzip file (detected by its magic bytes, not
// its name) or stdin ("-"), with bounded memory: a line longer than the limit is reported as
// oversize with its first bytes, and reading goes on at the next line.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

class InputError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct InputLine {
    std::string_view text;        // without the line terminator; readable with padding past the end
    std::uint64_t number = 0;     // 1-based
    bool oversize = false;        // text holds only the first bytes of a longer line
    std::uint64_t fullLength = 0; // the line's real length when oversize
};

class LineReader {
public:
    static constexpr std::size_t kDefaultMaxLineBytes = 16u << 20;

    // "-" reads stdin. Throws InputError naming the file when it cannot be opened.
    explicit LineReader(const std::string& path, std::size_t maxLineBytes = kDefaultMaxLineBytes);
    ~LineReader();
    LineReader(const LineReader&) = delete;
    LineReader& operator=(const LineReader&) = delete;

    // Next line (blank lines included), or nullopt at the end. Throws InputError for a read
    // error or a corrupt/truncated gzip stream, naming the file and the line reached.
    std::optional<InputLine> next();

    bool compressed() const;
    const std::string& path() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pipescope
