// The filter language's lexer, parser and type checker, and its canonical printer. One pass of
// recursive descent over the text, building the typed tree of filter_ast.h; every error names
// the bytes it is about.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>

#include "dedup/dedup_window.h"
#include "event/event.h"
#include "filter/filter_ast.h"

namespace pipescope {

using namespace filter_detail;

namespace {

// Parentheses and `!` nest at most this deep, so a hostile filter cannot exhaust the stack.
constexpr int kMaxDepth = 256;

struct FieldInfo {
    FieldId id;
    std::string_view name;
    StaticType type;
    bool events;       // a field of events
    bool deadLetters;  // a field of dead letters
    std::vector<std::string_view> values;  // enumerated values, empty when free text
    std::string_view description;
};

const std::vector<FieldInfo>& fieldTable() {
    static const std::vector<FieldInfo> table = {
        {FieldId::Event, "event", StaticType::String, true, true, {}, "the event's name ($pageview, payment_completed)"},
        {FieldId::DistinctId, "distinct_id", StaticType::String, true, true, {}, "the distinct id"},
        {FieldId::Stream, "stream", StaticType::String, true, false, {"client", "server", "unknown"},
         "which side sent it"},
        {FieldId::Verdict, "verdict", StaticType::String, true, false, {"valid", "invalid", "unplanned", "duplicate"},
         "what the pipeline decided"},
        {FieldId::Origin, "origin", StaticType::String, true, true, {}, "where it entered: a file, http:/batch/, ..."},
        {FieldId::Time, "time", StaticType::Time, true, true, {},
         "the event's timestamp, else when it was received (dead letters: when dead-lettered)"},
        {FieldId::Received, "received", StaticType::Time, true, true, {}, "when it was received"},
        {FieldId::Id, "id", StaticType::String, true, false, {}, "the event id (PostHog uuid, Segment messageId)"},
        {FieldId::Seq, "seq", StaticType::Number, true, true, {}, "its sequence number in the capture"},
        {FieldId::Format, "format", StaticType::String, true, false, {"posthog", "segment", "canonical"},
         "the source format"},
        {FieldId::AnonymousId, "anonymous_id", StaticType::String, true, false, {}, "the anonymous id"},
        {FieldId::UserId, "user_id", StaticType::String, true, false, {}, "the user id"},
        {FieldId::Ingest, "ingest", StaticType::Number, true, true, {}, "the collector request it came in (run)"},
        {FieldId::Reason, "reason", StaticType::String, false, true,
         {"unparseable", "rejected", "schema_violation", "unplanned"}, "why it was dead-lettered"},
        {FieldId::Detail, "detail", StaticType::String, false, true, {}, "the dead letter's detail (JSON text)"},
    };
    return table;
}

const FieldInfo* findField(std::string_view name) {
    for (const auto& f : fieldTable())
        if (f.name == name) return &f;
    return nullptr;
}

const FieldInfo& infoOf(FieldId id) { return fieldTable()[static_cast<std::size_t>(id)]; }

bool fieldOf(const FieldInfo& f, FilterTarget target) {
    return target == FilterTarget::Events ? f.events : f.deadLetters;
}

const std::vector<std::string_view>& keywordList() {
    static const std::vector<std::string_view> words = {"and", "or", "not", "in", "exists", "contains",
                                                         "true", "false", "null"};
    return words;
}

bool isKeyword(std::string_view word) {
    const auto& words = keywordList();
    return std::find(words.begin(), words.end(), word) != words.end();
}

std::size_t editDistance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The closest candidate within a third of the word's length (at least 1, at most 3 edits).
std::optional<std::string_view> closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    const std::size_t limit = std::clamp<std::size_t>(word.size() / 3, 1, 3);
    std::optional<std::string_view> best;
    std::size_t bestDistance = limit + 1;
    for (const auto candidate : candidates) {
        const std::size_t d = editDistance(word, candidate);
        if (d < bestDistance) best = candidate, bestDistance = d;
    }
    return best;
}

std::string joinAlternatives(const std::vector<std::string_view>& values) {
    std::string out;
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i) out += i + 1 == values.size() ? " or " : ", ";
        out += values[i];
    }
    return out;
}

bool isIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isIdentChar(char c) { return isIdentStart(c) || isDigit(c); }
// A key after `properties.`: also digits first and dashes (utm-source, 2fa_enabled).
bool isKeyChar(char c) { return isIdentChar(c) || c == '-'; }

enum class Tok : std::uint8_t {
    End, Ident, String, Number, Duration, Time, LParen, RParen, LBrace, RBrace, LBracket, RBracket, Comma, Dot,
    Eq, Ne, Lt, Le, Gt, Ge, Match, NotMatch, Not, AndAnd, OrOr
};

struct Token {
    Tok kind = Tok::End;
    std::size_t pos = 0;
    std::size_t len = 0;
    std::string text;                 // Ident: the word; String: the unescaped bytes
    std::vector<std::uint32_t> map;   // String: source offset of each unescaped byte, and of the end
    bool isInt = false;
    std::int64_t integer = 0;
    double real = 0;
    std::int64_t millis = 0;          // Duration: the span; Time: the instant
};

struct ParseFailure {
    FilterError error;
};

[[noreturn]] void fail(std::size_t pos, std::size_t len, std::string message) {
    throw ParseFailure{FilterError{pos, len, std::move(message)}};
}

void appendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

class Lexer {
public:
    explicit Lexer(std::string_view text) : m_text(text) {}

    std::size_t size() const { return m_text.size(); }
    std::string_view text() const { return m_text; }

    Token next() {
        skipSpace();
        Token t;
        t.pos = m_pos;
        if (m_pos >= m_text.size()) return t;
        const char c = m_text[m_pos];
        auto op = [&](Tok kind, std::size_t len) {
            t.kind = kind;
            t.len = len;
            m_pos += len;
            return t;
        };
        const char n = m_pos + 1 < m_text.size() ? m_text[m_pos + 1] : '\0';
        switch (c) {
        case '(': return op(Tok::LParen, 1);
        case ')': return op(Tok::RParen, 1);
        case '{': return op(Tok::LBrace, 1);
        case '}': return op(Tok::RBrace, 1);
        case '[': return op(Tok::LBracket, 1);
        case ']': return op(Tok::RBracket, 1);
        case ',': return op(Tok::Comma, 1);
        case '.': return op(Tok::Dot, 1);
        case '~': return op(Tok::Match, 1);
        case '=':
            if (n == '=') return op(Tok::Eq, 2);
            fail(m_pos, 1, "\"=\" is not an operator: write == to compare");
        case '!':
            if (n == '=') return op(Tok::Ne, 2);
            if (n == '~') return op(Tok::NotMatch, 2);
            return op(Tok::Not, 1);
        case '<': return n == '=' ? op(Tok::Le, 2) : op(Tok::Lt, 1);
        case '>': return n == '=' ? op(Tok::Ge, 2) : op(Tok::Gt, 1);
        case '&':
            if (n == '&') return op(Tok::AndAnd, 2);
            fail(m_pos, 1, "\"&\" is not an operator: write && (or and)");
        case '|':
            if (n == '|') return op(Tok::OrOr, 2);
            fail(m_pos, 1, "\"|\" is not an operator: write || (or or)");
        case '"':
        case '\'':
            return lexString(false);
        default:
            break;
        }
        if ((c == 'r' || c == 'R') && (n == '"' || n == '\'')) return lexString(true);
        if (isIdentStart(c)) {
            std::size_t end = m_pos;
            while (end < m_text.size() && isIdentChar(m_text[end])) ++end;
            t.kind = Tok::Ident;
            t.text = std::string(m_text.substr(m_pos, end - m_pos));
            t.len = end - m_pos;
            m_pos = end;
            return t;
        }
        if (isDigit(c) || (c == '-' && isDigit(n))) return lexNumber();
        if (c == '-') fail(m_pos, 1, "\"-\" must start a number or a relative time such as -5m");
        // One whole UTF-8 character, so the caret covers it.
        std::size_t len = 1;
        while (m_pos + len < m_text.size() && (static_cast<unsigned char>(m_text[m_pos + len]) & 0xC0) == 0x80) ++len;
        fail(m_pos, len, "unexpected character \"" + std::string(m_text.substr(m_pos, len)) + "\"");
    }

    // A key right after `properties.` (no space allowed between).
    Token key() {
        Token t;
        t.pos = m_pos;
        std::size_t end = m_pos;
        while (end < m_text.size() && isKeyChar(m_text[end])) ++end;
        if (end == m_pos) {
            if (m_pos < m_text.size() && (m_text[m_pos] == '"' || m_text[m_pos] == '\''))
                fail(m_pos, 1, "a quoted key goes in brackets: properties[\"key with space\"]");
            fail(m_pos, m_pos < m_text.size() ? 1 : 0, "expected a property name after \".\"");
        }
        t.kind = Tok::Ident;
        t.text = std::string(m_text.substr(m_pos, end - m_pos));
        t.len = end - m_pos;
        m_pos = end;
        return t;
    }

private:
    void skipSpace() {
        while (m_pos < m_text.size() &&
               (m_text[m_pos] == ' ' || m_text[m_pos] == '\t' || m_text[m_pos] == '\n' || m_text[m_pos] == '\r'))
            ++m_pos;
    }

    static int hexValue(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // Four hex digits at `at`, or -1.
    long hex4(std::size_t at) const {
        if (at + 4 > m_text.size()) return -1;
        long value = 0;
        for (std::size_t i = 0; i < 4; ++i) {
            const int h = hexValue(m_text[at + i]);
            if (h < 0) return -1;
            value = value * 16 + h;
        }
        return value;
    }

    Token lexString(bool raw) {
        Token t;
        t.kind = Tok::String;
        t.pos = m_pos;
        const std::size_t start = m_pos;
        if (raw) ++m_pos;
        const char quote = m_text[m_pos++];
        for (;;) {
            if (m_pos >= m_text.size())
                fail(start, m_text.size() - start, "unterminated string: missing the closing " + std::string(1, quote));
            const char c = m_text[m_pos];
            if (c == quote) {
                t.map.push_back(static_cast<std::uint32_t>(m_pos));
                ++m_pos;
                break;
            }
            if (c != '\\' || raw) {
                t.map.push_back(static_cast<std::uint32_t>(m_pos));
                t.text += c;
                ++m_pos;
                continue;
            }
            const std::size_t escape = m_pos;
            if (m_pos + 1 >= m_text.size())
                fail(start, m_text.size() - start, "unterminated string: missing the closing " + std::string(1, quote));
            const char e = m_text[m_pos + 1];
            char plain = 0;
            switch (e) {
            case '"': plain = '"'; break;
            case '\'': plain = '\''; break;
            case '\\': plain = '\\'; break;
            case '/': plain = '/'; break;
            case 'b': plain = '\b'; break;
            case 'f': plain = '\f'; break;
            case 'n': plain = '\n'; break;
            case 'r': plain = '\r'; break;
            case 't': plain = '\t'; break;
            case 'u': {
                long cp = hex4(m_pos + 2);
                if (cp < 0) fail(escape, std::min<std::size_t>(6, m_text.size() - escape), "invalid \\u escape: expected four hex digits");
                std::size_t used = 6;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    const long low = m_pos + 7 < m_text.size() && m_text[m_pos + 6] == '\\' && m_text[m_pos + 7] == 'u'
                                         ? hex4(m_pos + 8)
                                         : -1;
                    if (low < 0xDC00 || low > 0xDFFF)
                        fail(escape, 6, "a \\u escape of a high surrogate must be followed by a low surrogate (\\uDC00-\\uDFFF)");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    used = 12;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail(escape, 6, "a lone low surrogate \\u escape");
                }
                const std::size_t before = t.text.size();
                appendUtf8(t.text, static_cast<std::uint32_t>(cp));
                for (std::size_t i = before; i < t.text.size(); ++i) t.map.push_back(static_cast<std::uint32_t>(escape));
                m_pos += used;
                continue;
            }
            default: {
                std::size_t len = 2;
                while (m_pos + len < m_text.size() && (static_cast<unsigned char>(m_text[m_pos + len]) & 0xC0) == 0x80) ++len;
                fail(escape, len,
                     "invalid escape \"" + std::string(m_text.substr(escape, len)) +
                         "\" (escapes: \\\" \\' \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX; for a regex write \\\\" +
                         std::string(m_text.substr(escape + 1, len - 1)) + " or a raw string r\"...\")");
            }
            }
            t.map.push_back(static_cast<std::uint32_t>(escape));
            t.text += plain;
            m_pos += 2;
        }
        t.len = m_pos - start;
        return t;
    }

    Token lexNumber() {
        Token t;
        t.pos = m_pos;
        const std::size_t start = m_pos;
        const bool negative = m_text[m_pos] == '-';
        std::size_t p = m_pos + (negative ? 1 : 0);
        std::size_t digitsEnd = p;
        while (digitsEnd < m_text.size() && isDigit(m_text[digitsEnd])) ++digitsEnd;
        // An absolute time: 2025-11-20, 2025-11-20T10:00:00Z, 2025-11-20T10:00:00.5+02:00.
        if (!negative && digitsEnd - p == 4 && digitsEnd < m_text.size() && m_text[digitsEnd] == '-') {
            std::size_t end = digitsEnd;
            while (end < m_text.size() &&
                   (isIdentChar(m_text[end]) || m_text[end] == ':' || m_text[end] == '.' || m_text[end] == '+' ||
                    m_text[end] == '-'))
                ++end;
            const std::string_view word = m_text.substr(start, end - start);
            const auto millis = parseTimestamp(word);
            if (!millis)
                fail(start, end - start,
                     "invalid time \"" + std::string(word) + "\" (write 2025-11-20, 2025-11-20T10:00:00Z or "
                     "2025-11-20T10:00:00.250+02:00)");
            t.kind = Tok::Time;
            t.millis = *millis;
            t.len = end - start;
            m_pos = end;
            return t;
        }
        std::size_t end = digitsEnd;
        bool fractional = false;
        if (end < m_text.size() && m_text[end] == '.' && end + 1 < m_text.size() && isDigit(m_text[end + 1])) {
            fractional = true;
            ++end;
            while (end < m_text.size() && isDigit(m_text[end])) ++end;
        }
        if (end < m_text.size() && (m_text[end] == 'e' || m_text[end] == 'E')) {
            std::size_t q = end + 1;
            if (q < m_text.size() && (m_text[q] == '+' || m_text[q] == '-')) ++q;
            if (q < m_text.size() && isDigit(m_text[q])) {
                fractional = true;
                end = q;
                while (end < m_text.size() && isDigit(m_text[end])) ++end;
            }
        }
        // Letters right after the digits: a relative time (-5m, -1h30m) or a typo.
        if (end < m_text.size() && isIdentChar(m_text[end])) {
            std::size_t wordEnd = end;
            while (wordEnd < m_text.size() && isIdentChar(m_text[wordEnd])) ++wordEnd;
            const std::string_view word = m_text.substr(start, wordEnd - start);
            const std::string_view span = word.substr(negative ? 1 : 0);
            std::string error;
            const auto millis = fractional ? std::nullopt : parseDurationMillis(span, &error);
            if (millis && negative) {
                t.kind = Tok::Duration;
                t.millis = *millis;
                t.len = word.size();
                m_pos = wordEnd;
                return t;
            }
            if (millis)
                fail(start, word.size(),
                     "a relative time counts back from now: write -" + std::string(word) + " (\"time > -" +
                         std::string(word) + "\": in the last " + std::string(word) + ")");
            const bool looksLikeSpan = !fractional && std::all_of(span.begin(), span.end(), [](char ch) {
                return isDigit(ch) || ch == 's' || ch == 'm' || ch == 'h' || ch == 'd';
            });
            if (looksLikeSpan)
                fail(start, word.size(), "invalid relative time \"" + std::string(word) + "\": " + error);
            fail(start, word.size(),
                 "invalid number \"" + std::string(word) + "\" (relative times: -30s, -5m, -2h, -7d, -1h30m)");
        }
        const std::string_view number = m_text.substr(start, end - start);
        t.kind = Tok::Number;
        t.len = number.size();
        if (!fractional) {
            std::int64_t value = 0;
            const auto r = std::from_chars(number.data(), number.data() + number.size(), value);
            if (r.ec == std::errc() && r.ptr == number.data() + number.size()) {
                t.isInt = true;
                t.integer = value;
                t.real = double(value);
                m_pos = end;
                return t;
            }
        }
        double value = 0;
        const auto r = std::from_chars(number.data(), number.data() + number.size(), value);
        if (r.ec != std::errc() || r.ptr != number.data() + number.size())
            fail(start, number.size(), "number out of range: " + std::string(number));
        t.real = value;
        m_pos = end;
        return t;
    }

    std::string_view m_text;
    std::size_t m_pos = 0;
};

std::string tokenDescription(const Token& t, std::string_view text) {
    if (t.kind == Tok::End) return "the end";
    return "\"" + std::string(text.substr(t.pos, t.len)) + "\"";
}

// An operand as parsed, before its type is checked against the other side.
struct ParsedOperand {
    Operand operand;
    std::size_t pos = 0;
    std::size_t len = 0;
    bool bare = false;       // an unquoted word that is no field: an enumerated value, or an error
    std::string word;        // the bare word
};

class Parser {
public:
    Parser(std::string_view text, const FilterOptions& options, FilterExpression::Impl& impl)
        : m_lexer(text), m_text(text), m_options(options), m_impl(impl) {}

    Node parseAll() {
        advance();
        if (m_tok.kind == Tok::End) return Node{};
        Node root = parseOr(0);
        if (m_tok.kind == Tok::RParen) fail(m_tok.pos, 1, "unexpected \")\" without a matching \"(\"");
        if (m_tok.kind != Tok::End)
            fail(m_tok.pos, m_tok.len,
                 "expected && or || before " + tokenDescription(m_tok, m_text) + " (or the end of the filter)");
        return root;
    }

private:
    void advance() { m_tok = m_lexer.next(); }
    bool isWord(std::string_view word) const { return m_tok.kind == Tok::Ident && m_tok.text == word; }

    [[noreturn]] void expected(const std::string& what) {
        if (m_tok.kind == Tok::End) fail(m_text.size(), 0, "expected " + what + " at the end of the filter");
        fail(m_tok.pos, m_tok.len, "expected " + what + ", got " + tokenDescription(m_tok, m_text));
    }

    static void append(Node& parent, Node child) {
        if (child.kind == parent.kind) {
            for (auto& grandchild : child.children) parent.children.push_back(std::move(grandchild));
        } else {
            parent.children.push_back(std::move(child));
        }
    }

    Node parseOr(int depth) {
        Node left = parseAnd(depth);
        if (!(m_tok.kind == Tok::OrOr || isWord("or"))) return left;
        Node node;
        node.kind = Node::Kind::Or;
        append(node, std::move(left));
        while (m_tok.kind == Tok::OrOr || isWord("or")) {
            advance();
            append(node, parseAnd(depth));
        }
        return node;
    }

    Node parseAnd(int depth) {
        Node left = parseUnary(depth);
        if (!(m_tok.kind == Tok::AndAnd || isWord("and"))) return left;
        Node node;
        node.kind = Node::Kind::And;
        append(node, std::move(left));
        while (m_tok.kind == Tok::AndAnd || isWord("and")) {
            advance();
            append(node, parseUnary(depth));
        }
        return node;
    }

    Node parseUnary(int depth) {
        if (depth >= kMaxDepth)
            fail(m_tok.pos, m_tok.len, "the filter nests deeper than " + std::to_string(kMaxDepth) + " levels");
        if (m_tok.kind == Tok::Not || isWord("not")) {
            advance();
            Node node;
            node.kind = Node::Kind::Not;
            node.children.push_back(parseUnary(depth + 1));
            return node;
        }
        if (m_tok.kind == Tok::LParen) {
            const std::size_t open = m_tok.pos;
            advance();
            if (m_tok.kind == Tok::RParen) fail(open, m_tok.pos + 1 - open, "empty parentheses: expected a test inside");
            Node inner = parseOr(depth + 1);
            if (m_tok.kind != Tok::RParen) {
                const std::string closing = "\")\" to close the \"(\" at column " + std::to_string(open + 1);
                if (m_tok.kind == Tok::End) fail(m_text.size(), 0, "missing " + closing);
                fail(m_tok.pos, m_tok.len, "expected && or || or " + closing + ", got " + tokenDescription(m_tok, m_text));
            }
            advance();
            return inner;
        }
        if (isWord("exists")) {
            advance();
            ParsedOperand target = parseOperand("a field or a property after exists");
            if (target.bare) unknownField(target);
            if (target.operand.kind == Operand::Kind::Literal)
                fail(target.pos, target.len, "exists takes a field or a property (exists properties.plan)");
            Node node;
            node.kind = Node::Kind::Exists;
            node.lhs = std::move(target.operand);
            return node;
        }
        return parseRelation();
    }

    [[noreturn]] void unknownField(const ParsedOperand& operand) {
        std::vector<std::string_view> names;
        for (const auto& f : fieldTable())
            if (fieldOf(f, m_options.target)) names.push_back(f.name);
        names.push_back("properties");
        std::string message = "unknown field \"" + operand.word + "\"";
        if (const auto suggestion = closest(operand.word, names))
            message += " (did you mean \"" + std::string(*suggestion) + "\"?)";
        else
            message += " (fields: " + joinAlternatives(names) + ")";
        fail(operand.pos, operand.len, message);
    }

    ParsedOperand parseOperand(const std::string& what) {
        ParsedOperand out;
        out.pos = m_tok.pos;
        out.len = m_tok.len;
        Operand& op = out.operand;
        switch (m_tok.kind) {
        case Tok::String:
            op.literal.type = ValueType::String;
            op.literal.text = m_tok.text;
            op.type = StaticType::String;
            advance();
            return out;
        case Tok::Number:
            op.literal.type = ValueType::Number;
            op.literal.isInt = m_tok.isInt;
            op.literal.integer = m_tok.integer;
            op.literal.real = m_tok.real;
            op.type = StaticType::Number;
            advance();
            return out;
        case Tok::Duration:
            op.literal.type = ValueType::Number;
            op.literal.isInt = true;
            op.literal.integer = m_impl.now - m_tok.millis;
            op.literal.real = double(op.literal.integer);
            op.literal.form = LiteralForm::RelativeTime;
            op.literal.relativeMillis = m_tok.millis;
            op.type = StaticType::Time;
            advance();
            return out;
        case Tok::Time:
            op.literal.type = ValueType::Number;
            op.literal.isInt = true;
            op.literal.integer = m_tok.millis;
            op.literal.real = double(m_tok.millis);
            op.literal.form = LiteralForm::AbsoluteTime;
            op.type = StaticType::Time;
            advance();
            return out;
        case Tok::Ident:
            break;
        default:
            expected(what);
        }
        const std::string word = m_tok.text;
        if (word == "true" || word == "false") {
            op.literal.type = ValueType::Bool;
            op.literal.boolean = word == "true";
            op.type = StaticType::Bool;
            advance();
            return out;
        }
        if (word == "null") {
            op.literal.type = ValueType::Null;
            op.type = StaticType::Null;
            advance();
            return out;
        }
        if (isKeyword(word)) expected(what);
        if (word == "properties") {
            advance();
            parsePath(out);
            return out;
        }
        if (const FieldInfo* field = findField(word)) {
            if (!fieldOf(*field, m_options.target))
                fail(m_tok.pos, m_tok.len,
                     "\"" + word + "\" is a field of " +
                         std::string(m_options.target == FilterTarget::Events ? "dead letters" : "events") +
                         "; this filter runs over " +
                         (m_options.target == FilterTarget::Events ? "events" : "dead letters"));
            op.kind = Operand::Kind::Field;
            op.field = field->id;
            op.type = field->type;
            reference(std::string(field->name));
            advance();
            if (m_tok.kind == Tok::Dot || m_tok.kind == Tok::LBracket)
                fail(m_tok.pos, m_tok.len,
                     "\"" + word + "\" has no members; properties are written properties." +
                         (m_tok.kind == Tok::Dot ? "name" : "name[0]"));
            return out;
        }
        out.bare = true;
        out.word = word;
        advance();
        return out;
    }

    void parsePath(ParsedOperand& out) {
        std::vector<PathSegment> path;
        for (;;) {
            if (m_tok.kind == Tok::Dot) {
                const Token key = m_lexer.key();
                path.push_back(PathSegment{false, key.text, 0});
                out.len = key.pos + key.len - out.pos;
                advance();
            } else if (m_tok.kind == Tok::LBracket) {
                const std::size_t open = m_tok.pos;
                advance();
                if (m_tok.kind == Tok::String) {
                    path.push_back(PathSegment{false, m_tok.text, 0});
                } else if (m_tok.kind == Tok::Number && m_tok.isInt) {
                    path.push_back(PathSegment{true, {}, m_tok.integer});
                } else if (m_tok.kind == Tok::Number) {
                    fail(m_tok.pos, m_tok.len, "an array index is a whole number: [0], [1], [-1] for the last");
                } else {
                    expected("an index ([0], [-1]) or a quoted key ([\"key with space\"]) after \"[\"");
                }
                advance();
                if (m_tok.kind != Tok::RBracket) {
                    if (m_tok.kind == Tok::End)
                        fail(m_text.size(), 0, "missing \"]\" to close the \"[\" at column " + std::to_string(open + 1));
                    fail(m_tok.pos, m_tok.len,
                         "expected \"]\" to close the \"[\" at column " + std::to_string(open + 1) + ", got " +
                             tokenDescription(m_tok, m_text));
                }
                out.len = m_tok.pos + 1 - out.pos;
                advance();
            } else {
                break;
            }
        }
        if (path.empty())
            fail(out.pos, out.len, "\"properties\" needs a path: properties.amount, properties.items[0].sku, "
                                   "properties[\"key with space\"]");
        Operand& op = out.operand;
        op.kind = Operand::Kind::Property;
        op.type = StaticType::Dynamic;
        const auto it = std::find_if(m_impl.paths.begin(), m_impl.paths.end(), [&](const auto& p) {
            return p.size() == path.size() && std::equal(p.begin(), p.end(), path.begin(), [](const auto& a, const auto& b) {
                       return a.isIndex == b.isIndex && a.key == b.key && a.index == b.index;
                   });
        });
        if (it == m_impl.paths.end()) {
            op.slot = static_cast<int>(m_impl.paths.size());
            m_impl.paths.push_back(path);
        } else {
            op.slot = static_cast<int>(it - m_impl.paths.begin());
        }
        reference(pathToString(path));
    }

    void reference(std::string name) {
        if (std::find(m_impl.referenced.begin(), m_impl.referenced.end(), name) == m_impl.referenced.end())
            m_impl.referenced.push_back(std::move(name));
    }

    std::string describe(const ParsedOperand& p) const {
        return std::string(m_text.substr(p.pos, p.len));
    }

    static std::string_view typeName(StaticType type) {
        switch (type) {
        case StaticType::String: return "text";
        case StaticType::Number: return "a number";
        case StaticType::Time: return "a time";
        case StaticType::Bool: return "a boolean";
        case StaticType::Null: return "null";
        case StaticType::Dynamic: return "a property";
        }
        return "?";
    }

    // Checks `value` (a literal or a bare word) against `other`, the field or property it is
    // compared with, and makes it what the comparison needs (an enumerated value, a time).
    void checkValue(const ParsedOperand& other, ParsedOperand& value, bool ordering) {
        const Operand& field = other.operand;
        const FieldInfo* info = field.kind == Operand::Kind::Field ? &infoOf(field.field) : nullptr;
        if (value.bare) {
            if (info && !info->values.empty()) {
                value.operand.literal.type = ValueType::String;
                value.operand.literal.text = value.word;
                value.operand.type = StaticType::String;
                value.bare = false;
            } else {
                std::vector<std::string_view> names;
                for (const auto& f : fieldTable())
                    if (fieldOf(f, m_options.target)) names.push_back(f.name);
                if (const auto suggestion = closest(value.word, names))
                    fail(value.pos, value.len,
                         "unknown field \"" + value.word + "\" (did you mean \"" + std::string(*suggestion) + "\"?)");
                fail(value.pos, value.len,
                     "unquoted text \"" + value.word + "\": write \"" + value.word + "\" (only enumerated values such "
                     "as verdict == invalid go without quotes)");
            }
        }
        Operand& v = value.operand;
        if (field.kind == Operand::Kind::Property) {
            if (ordering && (v.type == StaticType::Bool || v.type == StaticType::Null))
                fail(value.pos, value.len, "< <= > >= compare numbers, times and text, not " + describe(value));
            return;
        }
        if (field.kind != Operand::Kind::Field) return;
        const std::string name(info->name);
        switch (info->type) {
        case StaticType::String:
            if (v.type == StaticType::String) {
                if (!info->values.empty() && !ordering &&
                    std::find(info->values.begin(), info->values.end(), v.literal.text) == info->values.end()) {
                    std::string message = "unknown " + name + " \"" + v.literal.text + "\"";
                    if (const auto suggestion = closest(v.literal.text, info->values))
                        message += " (did you mean \"" + std::string(*suggestion) + "\"?)";
                    else
                        message += ": " + name + " is " + joinAlternatives(info->values);
                    fail(value.pos, value.len, message);
                }
                return;
            }
            if (v.type == StaticType::Null)
                fail(value.pos, value.len,
                     name + " is text, never null; to find records without one write !exists " + name);
            fail(value.pos, value.len,
                 name + " is text, " + describe(value) + " is " + std::string(typeName(v.type)) +
                     (v.type == StaticType::Number ? " (quote it to compare as text: \"" + describe(value) + "\")" : ""));
        case StaticType::Number:
            if (v.type == StaticType::Number) return;
            if (v.type == StaticType::Null)
                fail(value.pos, value.len, name + " is a number, never null; to find records without one write !exists " + name);
            fail(value.pos, value.len, name + " is a number, " + describe(value) + " is " + std::string(typeName(v.type)));
        case StaticType::Time:
            if (v.type == StaticType::Time || v.type == StaticType::Number) return;  // numbers: epoch ms
            if (v.type == StaticType::String) {
                if (const auto millis = parseTimestamp(v.literal.text)) {
                    Literal& l = v.literal;
                    l.type = ValueType::Number;
                    l.isInt = true;
                    l.integer = *millis;
                    l.real = double(*millis);
                    l.form = LiteralForm::AbsoluteTime;
                    l.text.clear();
                    v.type = StaticType::Time;
                    return;
                }
            }
            if (v.type == StaticType::Null)
                fail(value.pos, value.len, name + " is a time, never null; to find records without one write !exists " + name);
            fail(value.pos, value.len,
                 name + " is a time, " + describe(value) + " is not one (write 2025-11-20T10:00:00Z, -5m, or epoch "
                 "milliseconds)");
        default:
            return;
        }
    }

    Node parseRelation() {
        ParsedOperand lhs = parseOperand("a test (a field, a property, exists, ! or \"(\")");
        if (lhs.bare) unknownField(lhs);
        Node node;
        const Tok op = m_tok.kind;
        const std::size_t opPos = m_tok.pos, opLen = m_tok.len;
        if (op == Tok::Eq || op == Tok::Ne || op == Tok::Lt || op == Tok::Le || op == Tok::Gt || op == Tok::Ge) {
            advance();
            ParsedOperand rhs = parseOperand("a value after " + std::string(m_text.substr(opPos, opLen)));
            const bool ordering = op != Tok::Eq && op != Tok::Ne;
            if (lhs.operand.kind == Operand::Kind::Literal && rhs.operand.kind == Operand::Kind::Literal && !rhs.bare)
                fail(lhs.pos, rhs.pos + rhs.len - lhs.pos,
                     "compares two values: one side must be a field or a property");
            if (lhs.operand.kind == Operand::Kind::Literal) {
                if (rhs.bare) unknownField(rhs);
                checkValue(rhs, lhs, ordering);
            } else if (rhs.operand.kind == Operand::Kind::Literal || rhs.bare) {
                checkValue(lhs, rhs, ordering);
            } else {
                checkOperands(lhs, rhs, ordering);
            }
            if (ordering) {
                for (const ParsedOperand* side : {&lhs, &rhs})
                    if (side->operand.type == StaticType::Bool || side->operand.type == StaticType::Null)
                        fail(side->pos, side->len, "< <= > >= compare numbers, times and text, not " + describe(*side));
            }
            node.kind = Node::Kind::Compare;
            node.op = op == Tok::Eq   ? CompareOp::Eq
                      : op == Tok::Ne ? CompareOp::Ne
                      : op == Tok::Lt ? CompareOp::Lt
                      : op == Tok::Le ? CompareOp::Le
                      : op == Tok::Gt ? CompareOp::Gt
                                      : CompareOp::Ge;
            node.lhs = std::move(lhs.operand);
            node.rhs = std::move(rhs.operand);
            return node;
        }
        if (lhs.operand.kind == Operand::Kind::Literal)
            fail(lhs.pos, lhs.len, "expected a field or a property, got the value " + describe(lhs));
        if (op == Tok::Match || op == Tok::NotMatch || isWord("contains")) {
            const bool contains = op != Tok::Match && op != Tok::NotMatch;
            const std::string opText(m_text.substr(opPos, opLen));
            requireText(lhs, opText);
            advance();
            if (m_tok.kind != Tok::String)
                expected(std::string(contains ? "the text to look for" : "a pattern") + " in quotes after " + opText +
                         (contains ? " (contains \"text\")" : " (~ \"^pay\")"));
            const Token pattern = m_tok;
            advance();
            node.lhs = std::move(lhs.operand);
            node.rhs.literal.type = ValueType::String;
            node.rhs.literal.text = pattern.text;
            node.rhs.type = StaticType::String;
            if (contains) {
                node.kind = Node::Kind::Contains;
                return node;
            }
            node.kind = Node::Kind::Match;
            node.negated = op == Tok::NotMatch;
            std::string message;
            std::size_t offset = 0;
            auto regex = FilterRegex::compile(pattern.text, &message, &offset);
            if (!regex) {
                const std::size_t at = std::min<std::size_t>(offset, pattern.map.size() - 1);
                fail(pattern.map[at], 1, "invalid regex at " + std::to_string(offset) + ": " + message);
            }
            node.regex = std::move(regex);
            return node;
        }
        const bool notIn = isWord("not");
        if (notIn) {
            advance();
            if (!isWord("in")) expected("in after not (x not in {...})");
        }
        if (isWord("in")) {
            advance();
            if (m_tok.kind != Tok::LBrace) expected("\"{\" to start a set: in {\"a\", \"b\", 3}");
            const std::size_t open = m_tok.pos;
            advance();
            node.kind = Node::Kind::In;
            node.negated = notIn;
            while (m_tok.kind != Tok::RBrace) {
                if (m_tok.kind == Tok::End)
                    fail(m_text.size(), 0, "missing \"}\" to close the set at column " + std::to_string(open + 1));
                ParsedOperand element = parseOperand("a value in the set, or \"}\"");
                if (element.operand.kind != Operand::Kind::Literal && !element.bare)
                    fail(element.pos, element.len, "a set holds values, not fields or properties");
                checkValue(lhs, element, false);
                node.set.push_back(std::move(element.operand.literal));
                if (m_tok.kind == Tok::Comma) {
                    advance();
                    if (m_tok.kind == Tok::RBrace) fail(m_tok.pos, 1, "expected a value after \",\"");
                }
            }
            if (node.set.empty()) fail(open, m_tok.pos + 1 - open, "an empty set matches nothing: give at least one value");
            advance();
            node.lhs = std::move(lhs.operand);
            return node;
        }
        if (isWord("exists"))
            fail(m_tok.pos, m_tok.len, "exists comes first: write exists " + describe(lhs));
        const std::string subject = describe(lhs);
        const std::string operators = "==, !=, <, <=, >, >=, ~, !~, contains or in";
        if (m_tok.kind == Tok::End || m_tok.kind == Tok::AndAnd || m_tok.kind == Tok::OrOr || m_tok.kind == Tok::RParen ||
            isWord("and") || isWord("or"))
            fail(m_tok.kind == Tok::End ? m_text.size() : m_tok.pos, m_tok.kind == Tok::End ? 0 : m_tok.len,
                 "expected a comparison after " + subject + " (" + operators + "), or exists " + subject +
                     " to test that it is there");
        fail(m_tok.pos, m_tok.len,
             "expected an operator after " + subject + " (" + operators + "), got " + tokenDescription(m_tok, m_text));
    }

    void requireText(const ParsedOperand& lhs, const std::string& op) {
        const Operand& o = lhs.operand;
        if (o.kind == Operand::Kind::Field && o.type != StaticType::String)
            fail(lhs.pos, lhs.len,
                 op + " works on text; " + describe(lhs) + " is " + std::string(typeName(o.type)));
    }

    void checkOperands(const ParsedOperand& lhs, const ParsedOperand& rhs, bool ordering) {
        (void)ordering;
        const StaticType a = lhs.operand.type, b = rhs.operand.type;
        if (a == StaticType::Dynamic || b == StaticType::Dynamic) return;
        const auto numeric = [](StaticType t) { return t == StaticType::Number || t == StaticType::Time; };
        if (a == b || (numeric(a) && numeric(b))) return;
        fail(lhs.pos, rhs.pos + rhs.len - lhs.pos,
             describe(lhs) + " is " + std::string(typeName(a)) + ", " + describe(rhs) + " is " +
                 std::string(typeName(b)) + ": they never compare");
    }

    Lexer m_lexer;
    std::string_view m_text;
    const FilterOptions& m_options;
    FilterExpression::Impl& m_impl;
    Token m_tok;
};

// ---- canonical form ----

void printLiteral(std::string& out, const Literal& l) {
    switch (l.form) {
    case LiteralForm::RelativeTime:
        out += "-" + formatDurationMillis(l.relativeMillis);
        return;
    case LiteralForm::AbsoluteTime:
        out += formatTimestamp(l.integer);
        return;
    case LiteralForm::Plain:
        break;
    }
    switch (l.type) {
    case ValueType::Null: out += "null"; return;
    case ValueType::Bool: out += l.boolean ? "true" : "false"; return;
    case ValueType::String: out += filter_detail::quoted(l.text); return;
    case ValueType::Number: {
        if (l.isInt) {
            out += std::to_string(l.integer);
            return;
        }
        char buffer[64];
        const auto r = std::to_chars(buffer, buffer + sizeof buffer, l.real);
        std::string text(buffer, r.ptr);
        // Keep it a number the lexer reads back the same way ("1e+20" and "0.5" do; "inf" cannot occur).
        out += text;
        return;
    }
    default:
        out += "null";
        return;
    }
}

void printOperand(std::string& out, const Operand& o, const FilterExpression::Impl& impl) {
    switch (o.kind) {
    case Operand::Kind::Field: out += fieldName(o.field); return;
    case Operand::Kind::Property: out += pathToString(impl.paths[static_cast<std::size_t>(o.slot)]); return;
    case Operand::Kind::Literal: printLiteral(out, o.literal); return;
    }
}

// Precedence: 1 `||`, 2 `&&`, 3 `!` and tests.
void printNode(std::string& out, const Node& node, int context, const FilterExpression::Impl& impl) {
    switch (node.kind) {
    case Node::Kind::All: return;
    case Node::Kind::Or:
    case Node::Kind::And: {
        const int precedence = node.kind == Node::Kind::Or ? 1 : 2;
        if (context > precedence) out += '(';
        for (std::size_t i = 0; i < node.children.size(); ++i) {
            if (i) out += precedence == 1 ? " || " : " && ";
            printNode(out, node.children[i], precedence + 1, impl);
        }
        if (context > precedence) out += ')';
        return;
    }
    case Node::Kind::Not: {
        out += '!';
        const Node& child = node.children.front();
        const bool simple = child.kind == Node::Kind::Exists || child.kind == Node::Kind::Not;
        if (simple) {
            printNode(out, child, 3, impl);
        } else {
            out += '(';
            printNode(out, child, 0, impl);
            out += ')';
        }
        return;
    }
    case Node::Kind::Exists:
        out += "exists ";
        printOperand(out, node.lhs, impl);
        return;
    case Node::Kind::Compare: {
        static constexpr std::string_view ops[] = {" == ", " != ", " < ", " <= ", " > ", " >= "};
        printOperand(out, node.lhs, impl);
        out += ops[static_cast<std::size_t>(node.op)];
        printOperand(out, node.rhs, impl);
        return;
    }
    case Node::Kind::In:
        printOperand(out, node.lhs, impl);
        out += node.negated ? " not in {" : " in {";
        for (std::size_t i = 0; i < node.set.size(); ++i) {
            if (i) out += ", ";
            printLiteral(out, node.set[i]);
        }
        out += '}';
        return;
    case Node::Kind::Match:
    case Node::Kind::Contains:
        printOperand(out, node.lhs, impl);
        out += node.kind == Node::Kind::Contains ? " contains " : node.negated ? " !~ " : " ~ ";
        out += filter_detail::quoted(node.rhs.literal.text);
        return;
    }
}

std::size_t utf8Columns(std::string_view text) {
    std::size_t columns = 0;
    for (const char c : text)
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++columns;
    return columns;
}

} // namespace

namespace filter_detail {

std::string_view fieldName(FieldId field) { return infoOf(field).name; }

std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buffer[8];
                std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                out += buffer;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

std::string pathToString(const std::vector<PathSegment>& path) {
    std::string out = "properties";
    for (const auto& segment : path) {
        if (segment.isIndex) {
            out += "[" + std::to_string(segment.index) + "]";
        } else if (!segment.key.empty() && std::all_of(segment.key.begin(), segment.key.end(), isKeyChar)) {
            out += "." + segment.key;
        } else {
            out += "[" + filter_detail::quoted(segment.key) + "]";
        }
    }
    return out;
}

} // namespace filter_detail

std::string FilterError::describe() const {
    return "error at column " + std::to_string(column()) + ": " + message;
}

std::string FilterError::caret(std::string_view text) const {
    std::string line(text);
    for (char& c : line)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    const std::size_t start = std::min(position, text.size());
    const std::size_t end = std::min(position + length, text.size());
    const std::size_t before = utf8Columns(text.substr(0, start));
    const std::size_t width = utf8Columns(text.substr(start, end - start));
    std::string marks(before, ' ');
    marks += '^';
    if (width > 1) marks += std::string(width - 1, '~');
    return line + "\n" + marks;
}

FilterExpression::FilterExpression(std::shared_ptr<const Impl> impl) : m_impl(std::move(impl)) {}

FilterExpression::Result FilterExpression::parse(std::string_view text, const FilterOptions& options) {
    auto impl = std::make_shared<Impl>();
    impl->target = options.target;
    impl->now = options.nowMillis.value_or(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count());
    Result result;
    try {
        Parser parser(text, options, *impl);
        impl->root = parser.parseAll();
    } catch (const ParseFailure& failure) {
        result.m_error = failure.error;
        return result;
    }
    result.m_expression = FilterExpression(std::move(impl));
    return result;
}

bool FilterExpression::matchesAll() const { return m_impl->root.kind == filter_detail::Node::Kind::All; }

std::string FilterExpression::toString() const {
    std::string out;
    printNode(out, m_impl->root, 0, *m_impl);
    return out;
}

std::vector<std::string> FilterExpression::referencedFields() const { return m_impl->referenced; }
bool FilterExpression::readsProperties() const { return !m_impl->paths.empty(); }
FilterTarget FilterExpression::target() const { return m_impl->target; }
std::int64_t FilterExpression::nowMillis() const { return m_impl->now; }

const std::vector<FilterField>& filterFields(FilterTarget target) {
    static const auto build = [](FilterTarget t) {
        std::vector<FilterField> fields;
        for (const auto& f : fieldTable()) {
            if (!fieldOf(f, t)) continue;
            const std::string_view type = f.type == StaticType::Number ? "number" : f.type == StaticType::Time ? "time" : "string";
            fields.push_back(FilterField{f.name, type, f.description, f.values});
        }
        fields.push_back(FilterField{"properties", "json",
                                     t == FilterTarget::Events ? "the event's properties by path: properties.amount, "
                                                                 "properties.items[0].sku, properties[\"key\"]"
                                                               : "the dead-lettered event's properties by path",
                                     {}});
        return fields;
    };
    static const std::vector<FilterField> events = build(FilterTarget::Events);
    static const std::vector<FilterField> deadLetters = build(FilterTarget::DeadLetters);
    return target == FilterTarget::Events ? events : deadLetters;
}

const std::vector<std::string_view>& filterKeywords() {
    static const std::vector<std::string_view> words = {"&&", "||", "!", "and", "or", "not", "in", "exists",
                                                        "contains", "true", "false", "null", "==", "!=", "<",
                                                        "<=", ">", ">=", "~", "!~"};
    return words;
}

} // namespace pipescope
