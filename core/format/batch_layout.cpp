#include "format/batch_layout.h"

#include <cstring>

namespace pipescope {

namespace {

constexpr std::size_t npos = std::string::npos;

inline bool isSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// What ends a scalar token (number, literal, or junk the parser will refuse).
inline bool isDelimiter(char c) {
    switch (c) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
    case ',':
    case ':':
    case '[':
    case ']':
    case '{':
    case '}':
    case '"':
        return true;
    default:
        return false;
    }
}

// The quote that closes the string opened at `open`, or npos. memchr skips the string's bytes
// (most of a JSON document) many at a time; a quote preceded by an odd run of backslashes is
// escaped. Each run is counted once, by the quote right after it, so this stays linear.
std::size_t closingQuote(std::string_view bytes, std::size_t open) {
    std::size_t from = open + 1;
    while (from < bytes.size()) {
        const void* hit = std::memchr(bytes.data() + from, '"', bytes.size() - from);
        if (!hit) return npos;
        const std::size_t quote = static_cast<std::size_t>(static_cast<const char*>(hit) - bytes.data());
        std::size_t backslashes = 0;
        while (quote - backslashes > open + 1 && bytes[quote - backslashes - 1] == '\\')
            ++backslashes;
        if (backslashes % 2 == 0) return quote;
        from = quote + 1;
    }
    return npos;
}

// Whether a key's bytes (between its quotes) spell "batch", escapes included: the parser compares
// unescaped keys, and `"bat\u0063h"` is the same member to it.
bool isBatchKey(std::string_view raw) {
    if (raw == "batch") return true;
    if (raw.size() > 30 || raw.find('\\') == npos) return false; // "batch" is at most 5 escapes of 6 bytes
    std::string text;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '\\') {
            text += raw[i];
            continue;
        }
        if (i + 1 >= raw.size()) return false;
        const char escape = raw[++i];
        if (escape != 'u') {
            text += escape; // \" \\ \/ and control escapes: none of them is a letter of "batch"
            continue;
        }
        if (i + 4 >= raw.size()) return false;
        unsigned code = 0;
        for (int k = 0; k < 4; ++k) {
            const char h = raw[++i];
            code <<= 4;
            if (h >= '0' && h <= '9')
                code |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f')
                code |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
                code |= static_cast<unsigned>(h - 'A' + 10);
            else
                return false;
        }
        if (code >= 0x80) return false;
        text += static_cast<char>(code);
    }
    return text == "batch";
}

std::size_t trimmedEnd(const char* p, std::size_t begin, std::size_t end) {
    while (end > begin && isSpace(p[end - 1]))
        --end;
    return end;
}

bool outOfRangeInteger(std::string_view token) {
    const bool negative = !token.empty() && token.front() == '-';
    const std::string_view digits = negative ? token.substr(1) : token;
    if (digits.empty()) return false;
    for (const char c : digits)
        if (c < '0' || c > '9') return false;
    // Compared as text: same length, so lexicographic order is numeric order.
    if (negative) return digits.size() > 19 || (digits.size() == 19 && digits > "9223372036854775808");
    return digits.size() > 20 || (digits.size() == 20 && digits > "18446744073709551615");
}

} // namespace

namespace {

// The tokens of a JSON text read byte by byte: each structural character, and the first byte of
// each string and scalar, whose bytes are skipped.
class ByteTokens {
public:
    explicit ByteTokens(std::string_view bytes) : m_bytes(bytes) {}

    // The next token's offset; false at the end, or on an unterminated string (then failed()).
    bool next(std::size_t& pos) {
        const char* p = m_bytes.data();
        const std::size_t n = m_bytes.size();
        std::size_t i = m_resume;
        while (i < n && isSpace(p[i]))
            ++i;
        if (i == n) return false;
        pos = i;
        const char c = p[i];
        if (c == '"') {
            const std::size_t close = closingQuote(m_bytes, i);
            if (close == npos) {
                m_failed = true;
                return false;
            }
            m_resume = close + 1;
        } else if (isDelimiter(c)) {
            m_resume = i + 1;
        } else {
            ++i;
            while (i < n && !isDelimiter(p[i]))
                ++i;
            m_resume = i;
        }
        return true;
    }
    bool failed() const { return m_failed; }

private:
    std::string_view m_bytes;
    std::size_t m_resume = 0;
    bool m_failed = false;
};

template <class Tokens>
bool splitBatch(std::string_view bytes, Tokens& tokens, std::string& nesting, BatchLayout& layout) {
    layout.envelope = layout.hasBatch = false;
    layout.batch = {};
    layout.elements.clear();
    layout.firstBatchKey = layout.duplicateBatchKey = npos;
    nesting.clear();

    const char* p = bytes.data();
    std::size_t i = 0;
    if (!tokens.next(i) || (p[i] != '[' && p[i] != '{')) return false;
    layout.envelope = p[i] == '{';
    nesting.push_back(p[i]);

    // The depth directly inside the array being split (the root array: 1; an envelope's batch: 2),
    // 0 while none is open.
    std::size_t splitDepth = layout.envelope ? 0 : 1;
    std::size_t elementBegin = npos;
    bool afterComma = false;
    // The root object's members are checked for shape (key, colon, value, comma): the scan must
    // not mistake a value for the "batch" key.
    enum class Expect { Key, Colon, Value, Comma } expect = Expect::Key;
    bool rootEmpty = true;
    bool valueIsBatch = false;

    while (tokens.next(i)) {
        const char c = p[i];
        const std::size_t depth = nesting.size();
        if (depth == 0) return false; // bytes after the root value
        const bool atSplit = depth == splitDepth;
        const bool atRootObject = depth == 1 && layout.envelope;

        if (c == ',') {
            if (atSplit) {
                if (elementBegin == npos) return false; // an empty slot
                layout.elements.push_back({elementBegin, trimmedEnd(p, elementBegin, i)});
                elementBegin = npos;
                afterComma = true;
            } else if (atRootObject) {
                if (expect != Expect::Comma) return false;
                expect = Expect::Key;
            }
            continue;
        }
        if (c == ']' || c == '}') {
            if (nesting.back() != (c == ']' ? '[' : '{')) return false;
            if (atSplit) {
                if (elementBegin != npos)
                    layout.elements.push_back({elementBegin, trimmedEnd(p, elementBegin, i)});
                else if (afterComma)
                    return false; // a trailing comma
                if (depth == 2) {
                    layout.hasBatch = true;
                    layout.batch.end = i + 1;
                }
                splitDepth = 0;
                elementBegin = npos;
            }
            if (atRootObject && expect != Expect::Comma && !(expect == Expect::Key && rootEmpty))
                return false;
            nesting.pop_back();
            if (layout.envelope && nesting.size() == 1) expect = Expect::Comma; // a member's value ended
            continue;
        }
        if (c == ':') {
            if (atRootObject) {
                if (expect != Expect::Colon) return false;
                expect = Expect::Value;
            } else if (atSplit && elementBegin == npos) {
                elementBegin = i; // junk that opens an element: the element's parse will say so
            }
            continue;
        }

        // A string, a container or a scalar.
        if (atSplit && elementBegin == npos) elementBegin = i;
        if (!atRootObject) {
            if (c == '[' || c == '{') nesting.push_back(c);
            continue;
        }
        if (expect == Expect::Key) {
            if (c != '"') return false;
            rootEmpty = false;
            valueIsBatch = false;
            const std::size_t close = closingQuote(bytes, i);
            if (close == npos) return false;
            if (isBatchKey(bytes.substr(i + 1, close - i - 1))) {
                if (layout.firstBatchKey == npos) {
                    layout.firstBatchKey = i;
                    valueIsBatch = true;
                } else if (layout.duplicateBatchKey == npos) {
                    layout.duplicateBatchKey = i;
                }
            }
            expect = Expect::Colon;
            continue;
        }
        if (expect != Expect::Value) return false;
        if (c == '[' || c == '{') {
            if (valueIsBatch && c == '[') {
                splitDepth = 2;
                layout.batch.begin = i;
                afterComma = false;
                elementBegin = npos;
            }
            nesting.push_back(c);
        } else {
            expect = Expect::Comma;
        }
        valueIsBatch = false;
    }
    return !tokens.failed() && nesting.empty();
}

} // namespace

bool BatchScanner::scan(std::string_view bytes, BatchLayout& layout) {
    ByteTokens tokens(bytes);
    return splitBatch(bytes, tokens, m_nesting, layout);
}

namespace {

// Walks a document simdjson parsed, through its stage-1 tokens. The document is valid JSON, so
// brackets match and only the depth needs counting.
class StructuralWalk {
public:
    StructuralWalk(std::string_view bytes, const std::uint32_t* indexes, std::size_t count)
        : m_bytes(bytes.data()), m_indexes(indexes), m_count(count) {}

    std::size_t count() const { return m_count; }
    std::size_t at(std::size_t k) const { return m_indexes[k]; }
    char token(std::size_t k) const { return m_bytes[m_indexes[k]]; }

    // The token after the value that starts at token k.
    std::size_t skipValue(std::size_t k) const {
        if (!opens(token(k))) return k + 1;
        int depth = 1;
        for (++k; depth > 0 && k < m_count; ++k) {
            const char c = token(k);
            depth += opens(c) - closes(c);
        }
        return k;
    }

private:
    static int opens(char c) { return c == '[' || c == '{'; }
    static int closes(char c) { return c == ']' || c == '}'; }

    const char* m_bytes;
    const std::uint32_t* m_indexes;
    std::size_t m_count;
};

// The elements of the array whose '[' is token k, into `elements`; returns the token after its ']'.
std::size_t splitArray(const StructuralWalk& walk, std::string_view bytes, std::size_t k,
                       std::vector<ByteRange>& elements) {
    ++k;
    if (k < walk.count() && walk.token(k) == ']') return k + 1;
    while (k < walk.count()) {
        const std::size_t begin = walk.at(k);
        k = walk.skipValue(k);
        if (k >= walk.count()) break;
        elements.push_back({begin, trimmedEnd(bytes.data(), begin, walk.at(k))});
        if (walk.token(k++) == ']') break; // else a ','
    }
    return k;
}

} // namespace

bool BatchScanner::scan(std::string_view bytes, const std::uint32_t* structurals, std::size_t count,
                        BatchLayout& layout) {
    layout.envelope = layout.hasBatch = false;
    layout.batch = {};
    layout.elements.clear();
    layout.firstBatchKey = layout.duplicateBatchKey = npos;
    const StructuralWalk walk(bytes, structurals, count);
    if (count == 0) return false;
    if (walk.token(0) == '[') {
        splitArray(walk, bytes, 0, layout.elements);
        return true;
    }
    if (walk.token(0) != '{') return false;
    layout.envelope = true;
    // Members: key, ':', value, then ',' or '}'.
    std::size_t k = 1;
    while (k + 2 < count && walk.token(k) == '"') {
        const std::size_t key = walk.at(k);
        const std::size_t keyEnd = trimmedEnd(bytes.data(), key, walk.at(k + 1)); // one past the quote
        const bool isBatch = isBatchKey(bytes.substr(key + 1, keyEnd - key - 2));
        k += 2;
        if (isBatch && layout.firstBatchKey != npos && layout.duplicateBatchKey == npos)
            layout.duplicateBatchKey = key;
        if (isBatch && layout.firstBatchKey == npos) {
            layout.firstBatchKey = key;
            if (walk.token(k) == '[') {
                const std::size_t close = splitArray(walk, bytes, k, layout.elements) - 1;
                layout.batch = {walk.at(k), walk.at(close) + 1};
                layout.hasBatch = true;
                k = close + 1;
            } else {
                k = walk.skipValue(k);
            }
        } else {
            k = walk.skipValue(k);
        }
        if (k >= count || walk.token(k) != ',') break;
        ++k;
    }
    return true;
}

bool widenOutOfRangeIntegers(std::string_view bytes, std::string& out) {
    bool widened = false;
    std::size_t copied = 0; // bytes before this offset are in `out`
    std::size_t i = 0;
    while (i < bytes.size()) {
        const char c = bytes[i];
        if (c == '"') {
            const std::size_t close = closingQuote(bytes, i);
            if (close == npos) break;
            i = close + 1;
            continue;
        }
        if (isDelimiter(c)) {
            ++i;
            continue;
        }
        const std::size_t begin = i;
        while (i < bytes.size() && !isDelimiter(bytes[i]))
            ++i;
        if (!outOfRangeInteger(bytes.substr(begin, i - begin))) continue;
        if (!widened) {
            out.clear();
            out.reserve(bytes.size() + 64);
            widened = true;
        }
        out.append(bytes, copied, i - copied);
        out += ".0";
        copied = i;
    }
    if (widened) out.append(bytes, copied);
    return widened;
}

} // namespace pipescope
