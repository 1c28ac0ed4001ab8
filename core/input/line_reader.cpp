#include "input/line_reader.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <simdjson.h>
#include <zlib.h>

namespace pipescope {

namespace {
constexpr std::size_t kChunk = 1u << 20;
// How much of an oversize line is kept (for the dead-letter entry that reports it).
constexpr std::size_t kOversizePrefix = 64u << 10;
} // namespace

struct LineReader::Impl {
    std::string path;
    std::size_t maxLineBytes = 0;
    gzFile file = nullptr;
    // m_buffer[begin, end) holds unread bytes; simdjson::SIMDJSON_PADDING spare bytes always follow `end`
    // so lines can be parsed in place.
    std::vector<char> buffer;
    std::size_t begin = 0;
    std::size_t end = 0;
    std::size_t scanned = 0; // bytes after `begin` already known to hold no newline
    bool eof = false;
    std::string pendingError; // thrown after the data before it has been returned
    std::uint64_t lineNumber = 0;
    std::string oversizePrefix;

    [[noreturn]] void fail(const std::string& what) const {
        throw InputError(path + ": " + what + " (after line " + std::to_string(lineNumber) + ")");
    }

    // Reads more bytes; false at the end of input.
    bool fill() {
        if (eof) return false;
        if (begin > 0 && begin == end) begin = end = 0;
        if (begin > 0 && buffer.size() - end < kChunk + simdjson::SIMDJSON_PADDING) {
            std::memmove(buffer.data(), buffer.data() + begin, end - begin);
            end -= begin;
            begin = 0;
        }
        if (buffer.size() < end + kChunk + simdjson::SIMDJSON_PADDING) buffer.resize(end + kChunk + simdjson::SIMDJSON_PADDING);
        const int n = gzread(file, buffer.data() + end, static_cast<unsigned>(kChunk));
        if (n < 0) {
            int code = 0;
            const char* message = gzerror(file, &code);
            pendingError = code == Z_ERRNO ? std::string("read error: ") + std::strerror(errno)
                                           : std::string("corrupt gzip data: ") + message;
            eof = true;
            return false;
        }
        if (n == 0) {
            int code = 0;
            const char* message = gzerror(file, &code);
            if (code == Z_BUF_ERROR)
                pendingError = std::string("truncated gzip stream: ") + message;
            else if (code != Z_OK && code != Z_STREAM_END)
                pendingError = std::string("corrupt gzip data: ") + message;
            eof = true;
            return false;
        }
        end += static_cast<std::size_t>(n);
        return true;
    }
};

LineReader::LineReader(const std::string& path, std::size_t maxLineBytes) : m_impl(std::make_unique<Impl>()) {
    m_impl->path = path;
    m_impl->maxLineBytes = maxLineBytes;
    if (path == "-") {
        const int fd = ::dup(STDIN_FILENO);
        m_impl->file = fd >= 0 ? gzdopen(fd, "rb") : nullptr;
        if (!m_impl->file) {
            if (fd >= 0) ::close(fd);
            throw InputError("stdin: cannot read: " + std::string(std::strerror(errno)));
        }
    } else {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
        m_impl->file = gzdopen(fd, "rb");
        if (!m_impl->file) {
            ::close(fd);
            throw InputError(path + ": cannot open");
        }
    }
    gzbuffer(m_impl->file, 256u << 10);
}

LineReader::~LineReader() {
    if (m_impl->file) gzclose(m_impl->file);
}

bool LineReader::compressed() const { return m_impl->file && !gzdirect(m_impl->file); }
const std::string& LineReader::path() const { return m_impl->path; }

std::optional<InputLine> LineReader::next() {
    Impl& d = *m_impl;
    std::uint64_t skipped = 0; // bytes of an oversize line already discarded
    for (;;) {
        const char* start = d.buffer.data() + d.begin;
        const std::size_t available = d.end - d.begin;
        const void* newline =
            available > d.scanned ? std::memchr(start + d.scanned, '\n', available - d.scanned) : nullptr;
        if (newline || (d.eof && available > 0) || (skipped > 0 && d.eof)) {
            std::size_t length = newline ? static_cast<const char*>(newline) - start : available;
            const std::size_t consumed = newline ? length + 1 : length;
            InputLine line;
            line.number = ++d.lineNumber;
            if (skipped == 0 && length > d.maxLineBytes) {
                d.oversizePrefix.assign(start, std::min(length, kOversizePrefix));
                line.oversize = true;
                line.fullLength = length;
                line.text = d.oversizePrefix;
            } else if (skipped > 0) {
                line.oversize = true;
                line.fullLength = skipped + length;
                line.text = d.oversizePrefix;
            } else {
                if (length > 0 && start[length - 1] == '\r') --length;
                line.text = std::string_view(start, length);
                line.fullLength = length;
            }
            d.begin += consumed;
            d.scanned = 0;
            return line;
        }
        if (d.eof) {
            if (!d.pendingError.empty()) {
                const std::string error = std::move(d.pendingError);
                d.pendingError.clear();
                d.fail(error);
            }
            return std::nullopt;
        }
        d.scanned = available;
        if (skipped == 0 && available > d.maxLineBytes) {
            // Keep the first bytes to report, then drop the rest of the line as it streams by.
            d.oversizePrefix.assign(start, std::min(available, kOversizePrefix));
            d.oversizePrefix.reserve(d.oversizePrefix.size() + simdjson::SIMDJSON_PADDING);
        }
        if (skipped > 0 || available > d.maxLineBytes) {
            skipped += available;
            d.begin = d.end = 0;
            d.scanned = 0;
        }
        d.fill();
    }
}

} // namespace pipescope
