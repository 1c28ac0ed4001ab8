// Evaluating a parsed filter over one record. Fields are read straight from the record's views;
// properties are looked up with simdjson on-demand in the record's JSON text, which is indexed
// only when the filter first asks for a property of that record, and each distinct path is
// looked up once per record.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <simdjson.h>

#include "filter/filter_ast.h"
#include "store/capture_store.h"

namespace pipescope {

using namespace filter_detail;

namespace filter_detail {

std::unique_ptr<FilterRegex> FilterRegex::compile(std::string_view pattern, std::string* message, std::size_t* offset) {
    int errorCode = 0;
    PCRE2_SIZE errorOffset = 0;
    // UTF mode, but a subject with invalid UTF-8 (a property's bytes are not ours to trust)
    // is matched rather than refused.
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &errorCode, &errorOffset, nullptr);
    if (!code) {
        PCRE2_UCHAR buffer[256];
        pcre2_get_error_message(errorCode, buffer, sizeof buffer);
        if (message) *message = reinterpret_cast<const char*>(buffer);
        if (offset) *offset = errorOffset;
        return nullptr;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // when JIT is unavailable, matching interprets
    std::unique_ptr<FilterRegex> regex(new FilterRegex);
    regex->m_code = code;
    return regex;
}

FilterRegex::~FilterRegex() { pcre2_code_free(m_code); }

namespace {
// One match-data block per thread: a filter may run on many threads at once.
struct MatchData {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~MatchData() { pcre2_match_data_free(data); }
};
} // namespace

bool FilterRegex::search(std::string_view subject) const {
    thread_local MatchData match;
    const int rc = pcre2_match(m_code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, match.data,
                               nullptr);
    return rc >= 0;  // no match, and match errors (limits), are no match
}

} // namespace filter_detail

namespace {

// Compares a raw JSON key (the bytes after its opening quote) with an unescaped key.
bool rawKeyEquals(const char* raw, std::string_view target) {
    std::size_t i = 0;
    for (;; ++i) {
        const char c = raw[i];
        if (c == '"') return i == target.size();
        if (c == '\\') break;
        if (i >= target.size() || c != target[i]) return false;
    }
    // Escapes from here on: decode as we compare.
    std::size_t j = i;
    char utf8[4];
    auto hex4 = [&](std::size_t at, std::uint32_t& out) {
        out = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const char h = raw[at + k];
            out <<= 4;
            if (h >= '0' && h <= '9') out |= std::uint32_t(h - '0');
            else if (h >= 'a' && h <= 'f') out |= std::uint32_t(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') out |= std::uint32_t(h - 'A' + 10);
            else return false;
        }
        return true;
    };
    for (;;) {
        const char c = raw[i];
        if (c == '"') return j == target.size();
        if (c != '\\') {
            if (j >= target.size() || c != target[j]) return false;
            ++i, ++j;
            continue;
        }
        const char e = raw[i + 1];
        std::size_t n = 1;
        switch (e) {
        case '"': utf8[0] = '"'; break;
        case '\\': utf8[0] = '\\'; break;
        case '/': utf8[0] = '/'; break;
        case 'b': utf8[0] = '\b'; break;
        case 'f': utf8[0] = '\f'; break;
        case 'n': utf8[0] = '\n'; break;
        case 'r': utf8[0] = '\r'; break;
        case 't': utf8[0] = '\t'; break;
        case 'u': {
            std::uint32_t cp = 0;
            if (!hex4(i + 2, cp)) return false;
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && raw[i + 2] == '\\' && raw[i + 3] == 'u') {
                std::uint32_t low = 0;
                if (hex4(i + 4, low) && low >= 0xDC00 && low <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
            }
            if (cp < 0x80) {
                utf8[0] = char(cp);
            } else if (cp < 0x800) {
                utf8[0] = char(0xC0 | (cp >> 6)), utf8[1] = char(0x80 | (cp & 0x3F)), n = 2;
            } else if (cp < 0x10000) {
                utf8[0] = char(0xE0 | (cp >> 12)), utf8[1] = char(0x80 | ((cp >> 6) & 0x3F));
                utf8[2] = char(0x80 | (cp & 0x3F)), n = 3;
            } else {
                utf8[0] = char(0xF0 | (cp >> 18)), utf8[1] = char(0x80 | ((cp >> 12) & 0x3F));
                utf8[2] = char(0x80 | ((cp >> 6) & 0x3F)), utf8[3] = char(0x80 | (cp & 0x3F)), n = 4;
            }
            break;
        }
        default: return false;
        }
        i += 2;
        if (j + n > target.size() || std::memcmp(target.data() + j, utf8, n) != 0) return false;
        j += n;
    }
}

struct Slot {
    bool fetched = false;
    Value value;
    std::string storage;  // a string value's bytes (simdjson's buffer is reused by the next lookup)
};

// Per-thread scratch: the parser, a padded copy of the properties, the looked-up paths.
struct Scratch {
    simdjson::ondemand::parser parser;
    std::string padded;
    simdjson::ondemand::document document;
    bool indexed = false;
    bool unusable = false;
    bool escapes = false;  // the JSON text holds a backslash somewhere
    std::vector<Slot> slots;
};

class Evaluation {
public:
    Evaluation(const FilterExpression::Impl& impl, const FilterRecord& record, Scratch& scratch)
        : m_impl(impl), m_record(record), m_scratch(scratch) {
        m_scratch.indexed = false;
        m_scratch.unusable = false;
        m_scratch.slots.resize(impl.paths.size());
        for (auto& slot : m_scratch.slots) slot.fetched = false;
    }

    bool run(const Node& node) {
        switch (node.kind) {
        case Node::Kind::All: return true;
        case Node::Kind::And:
            for (const auto& child : node.children)
                if (!run(child)) return false;
            return true;
        case Node::Kind::Or:
            for (const auto& child : node.children)
                if (run(child)) return true;
            return false;
        case Node::Kind::Not: return !run(node.children.front());
        case Node::Kind::Exists: return fetch(node.lhs).type != ValueType::Missing;
        case Node::Kind::Compare: {
            const Value a = fetch(node.lhs);
            if (a.type == ValueType::Missing) return false;
            const Value b = fetch(node.rhs);
            if (b.type == ValueType::Missing) return false;
            switch (node.op) {
            case CompareOp::Eq: return equal(a, b);
            case CompareOp::Ne: return !equal(a, b);
            default: break;
            }
            int order = 0;
            if (!compare(a, b, order)) return false;
            switch (node.op) {
            case CompareOp::Lt: return order < 0;
            case CompareOp::Le: return order <= 0;
            case CompareOp::Gt: return order > 0;
            case CompareOp::Ge: return order >= 0;
            default: return false;
            }
        }
        case Node::Kind::In: {
            const Value a = fetch(node.lhs);
            if (a.type == ValueType::Missing) return false;
            bool found = false;
            for (const auto& element : node.set)
                if (equal(a, element.view())) {
                    found = true;
                    break;
                }
            return found != node.negated;
        }
        case Node::Kind::Match: {
            const Value a = fetch(node.lhs);
            if (a.type != ValueType::String) return false;
            return node.regex->search(a.text) != node.negated;
        }
        case Node::Kind::Contains: {
            const Value a = fetch(node.lhs);
            return a.type == ValueType::String && a.text.find(node.rhs.literal.text) != std::string_view::npos;
        }
        }
        return false;
    }

private:
    static Value text(std::string_view s) {
        Value v;
        if (s.empty()) return v;  // an empty text field does not exist
        v.type = ValueType::String;
        v.text = s;
        return v;
    }
    static Value number(const std::optional<std::int64_t>& n) {
        Value v;
        if (!n) return v;
        v.type = ValueType::Number;
        v.isInt = true;
        v.integer = *n;
        v.real = double(*n);
        return v;
    }

    Value fetch(const Operand& operand) {
        switch (operand.kind) {
        case Operand::Kind::Literal: return operand.literal.view();
        case Operand::Kind::Property: return property(static_cast<std::size_t>(operand.slot));
        case Operand::Kind::Field: break;
        }
        const FilterRecord& r = m_record;
        switch (operand.field) {
        case FieldId::Event: return text(r.event);
        case FieldId::DistinctId: return text(r.distinctId);
        case FieldId::Stream: return text(r.stream);
        case FieldId::Verdict: return text(r.verdict);
        case FieldId::Origin: return text(r.origin);
        case FieldId::Time: return number(r.time);
        case FieldId::Received: return number(r.received);
        case FieldId::Id: return text(r.id);
        case FieldId::Seq: return number(r.seq);
        case FieldId::Format: return text(r.format);
        case FieldId::AnonymousId: return text(r.anonymousId);
        case FieldId::UserId: return text(r.userId);
        case FieldId::Ingest: return number(r.ingest);
        case FieldId::Reason: return text(r.reason);
        case FieldId::Detail: return text(r.detail);
        }
        return Value{};
    }

    static bool equal(const Value& a, const Value& b) {
        if (a.type != b.type) return false;
        switch (a.type) {
        case ValueType::Null: return true;
        case ValueType::Bool: return a.boolean == b.boolean;
        case ValueType::String: return a.text == b.text;
        case ValueType::Number:
            if (a.isInt && b.isInt) return a.integer == b.integer;
            return a.real == b.real;
        default: return false;  // objects and arrays are not compared
        }
    }

    static bool compare(const Value& a, const Value& b, int& order) {
        if (a.type != b.type) return false;
        if (a.type == ValueType::String) {
            const int c = a.text.compare(b.text);
            order = c < 0 ? -1 : c > 0 ? 1 : 0;
            return true;
        }
        if (a.type != ValueType::Number) return false;
        if (a.isInt && b.isInt) {
            order = a.integer < b.integer ? -1 : a.integer > b.integer ? 1 : 0;
            return true;
        }
        if (a.real != a.real || b.real != b.real) return false;
        order = a.real < b.real ? -1 : a.real > b.real ? 1 : 0;
        return true;
    }

    bool index() {
        if (m_scratch.indexed) return !m_scratch.unusable;
        m_scratch.indexed = true;
        const std::string_view json = m_record.properties;
        if (json.empty()) {
            m_scratch.unusable = true;
            return false;
        }
        // A copy with zeroed padding: simdjson reads past the end of keys and values into it.
        std::string& buffer = m_scratch.padded;
        buffer.assign(json.data(), json.size());
        buffer.append(simdjson::SIMDJSON_PADDING, '\0');
        m_scratch.escapes = std::memchr(json.data(), '\\', json.size()) != nullptr;
        const simdjson::padded_string_view view(buffer.data(), json.size(), buffer.size());
        m_scratch.unusable = m_scratch.parser.iterate(view).get(m_scratch.document) != simdjson::SUCCESS;
        return !m_scratch.unusable;
    }

    // The member `key` of an object value. simdjson's own lookup compares raw keys; it is exact
    // when the document holds no escape at all (the common case, checked once per record).
    bool member(simdjson::ondemand::object object, std::string_view key, simdjson::ondemand::value& out) {
        const bool plainKey = std::none_of(key.begin(), key.end(), [](char c) {
            return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20;
        });
        if (!m_scratch.escapes && plainKey) return object.find_field_unordered(key).get(out) == simdjson::SUCCESS;
        for (auto item : object) {
            simdjson::ondemand::field field;
            if (std::move(item).get(field) != simdjson::SUCCESS) return false;
            if (rawKeyEquals(field.key().raw(), key)) {
                out = field.value();
                return true;
            }
        }
        return false;
    }

    Value property(std::size_t slotIndex) {
        Slot& slot = m_scratch.slots[slotIndex];
        if (slot.fetched) return slot.value;
        slot.fetched = true;
        slot.value = Value{};
        if (!index()) return slot.value;
        m_scratch.document.rewind();
        lookup(m_impl.paths[slotIndex], slot);
        return slot.value;
    }

    void lookup(const std::vector<PathSegment>& path, Slot& slot) {
        using namespace simdjson;
        ondemand::document& doc = m_scratch.document;
        ondemand::object root;
        if (doc.get_object().get(root) != SUCCESS) return;
        ondemand::value current;
        std::size_t first = 0;
        if (m_record.propertiesInEvent) {
            // A whole event: PostHog and Segment keep properties in "properties" (Segment's
            // identify keeps them in "traits").
            if (!member(root, "properties", current)) {
                doc.rewind();
                if (doc.get_object().get(root) != SUCCESS || !member(root, "traits", current)) return;
            }
        } else {
            if (path.front().isIndex) return;
            if (!member(root, path.front().key, current)) return;
            first = 1;
        }
        for (std::size_t i = first; i < path.size(); ++i) {
            const PathSegment& segment = path[i];
            if (segment.isIndex) {
                ondemand::array array;
                if (current.get_array().get(array) != SUCCESS) return;
                std::int64_t at = segment.index;
                if (at < 0) {
                    std::size_t count = 0;
                    if (array.count_elements().get(count) != SUCCESS) return;
                    at += std::int64_t(count);
                    if (at < 0) return;
                }
                if (array.at(std::size_t(at)).get(current) != SUCCESS) return;
            } else {
                ondemand::object object;
                if (current.get_object().get(object) != SUCCESS) return;
                if (!member(object, segment.key, current)) return;
            }
        }
        ondemand::json_type type;
        if (current.type().get(type) != SUCCESS) return;
        Value& v = slot.value;
        switch (type) {
        case ondemand::json_type::null:
            { bool isNull = false; if (current.is_null().get(isNull) == SUCCESS && isNull) v.type = ValueType::Null; }
            return;
        case ondemand::json_type::boolean: {
            bool b = false;
            if (current.get_bool().get(b) != SUCCESS) return;
            v.type = ValueType::Bool;
            v.boolean = b;
            return;
        }
        case ondemand::json_type::string: {
            std::string_view s;
            if (current.get_string().get(s) != SUCCESS) return;
            slot.storage.assign(s.data(), s.size());
            v.type = ValueType::String;
            v.text = slot.storage;
            return;
        }
        case ondemand::json_type::number: {
            ondemand::number parsed;
            if (current.get_number().get(parsed) == SUCCESS) {
                v.type = ValueType::Number;
                if (parsed.is_int64()) {
                    v.isInt = true;
                    v.integer = parsed.get_int64();
                    v.real = double(v.integer);
                } else {
                    v.real = parsed.as_double();
                }
                return;
            }
            const std::string_view token = current.raw_json_token();
            // Beyond 64 bits (simdjson 3.0.1 refuses them): read as the nearest double, as
            // JSON.parse does.
            double d = 0;
            std::size_t end = 0;
            while (end < token.size() && token[end] != ' ' && token[end] != ',' && token[end] != '}' &&
                   token[end] != ']' && token[end] != '\n' && token[end] != '\r' && token[end] != '\t')
                ++end;
            const auto r = std::from_chars(token.data(), token.data() + end, d);
            if (r.ec == std::errc() && r.ptr == token.data() + end) {
                v.type = ValueType::Number;
                v.real = d;
            }
            return;
        }
        case ondemand::json_type::object: v.type = ValueType::Object; return;
        case ondemand::json_type::array: v.type = ValueType::Array; return;
        }
    }

    const FilterExpression::Impl& m_impl;
    const FilterRecord& m_record;
    Scratch& m_scratch;
};

} // namespace

namespace filter_detail {
bool evaluate(const FilterExpression::Impl& impl, const FilterRecord& record) {
    thread_local Scratch scratch;
    return Evaluation(impl, record, scratch).run(impl.root);
}
} // namespace filter_detail

namespace {
// The fields an event and its table row share.
template <typename Event>
FilterRecord eventRecord(const Event& e, std::string_view properties) {
    FilterRecord r;
    r.event = e.name;
    r.distinctId = e.distinctId;
    r.stream = e.stream;
    r.verdict = toString(e.verdict);
    r.origin = e.originSource;
    r.id = e.eventId;
    r.format = e.format;
    r.anonymousId = e.anonymousId;
    r.userId = e.userId;
    r.seq = e.seq;
    r.time = e.timestamp ? e.timestamp : e.receivedAt;
    r.received = e.receivedAt;
    r.ingest = e.ingestId;
    r.properties = properties;
    return r;
}
} // namespace

FilterRecord FilterRecord::of(const StoredEvent& e) { return eventRecord(e, e.properties); }
FilterRecord FilterRecord::of(const EventRow& row, std::string_view properties) { return eventRecord(row, properties); }

FilterRecord FilterRecord::of(const DlqEntry& d) {
    FilterRecord r;
    r.event = d.eventName;
    r.distinctId = d.distinctId;
    r.origin = d.originSource;
    r.reason = d.reason;
    r.detail = d.detail;
    r.seq = d.seq;
    r.time = d.createdAt;
    r.received = d.createdAt;
    r.ingest = d.ingestId;
    r.properties = d.raw;
    r.propertiesInEvent = true;
    return r;
}

bool FilterExpression::matches(const FilterRecord& record) const { return filter_detail::evaluate(*m_impl, record); }
bool FilterExpression::matches(const StoredEvent& event) const { return matches(FilterRecord::of(event)); }
bool FilterExpression::matches(const DlqEntry& entry) const { return matches(FilterRecord::of(entry)); }

} // namespace pipescope
