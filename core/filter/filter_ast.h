#pragma once
// Private to core/filter: the typed expression tree the parser builds and the evaluator walks.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filter/filter.h"

struct pcre2_real_code_8;

namespace pipescope::filter_detail {

enum class FieldId : std::uint8_t {
    Event, DistinctId, Stream, Verdict, Origin, Time, Received, Id, Seq, Format, AnonymousId, UserId, Ingest,
    Reason, Detail
};

// What an operand is known to be before any record is seen. Properties are Dynamic: their type
// is whatever the JSON holds.
enum class StaticType : std::uint8_t { String, Number, Time, Bool, Null, Dynamic };

enum class ValueType : std::uint8_t { Missing, Null, Bool, Number, String, Object, Array };

// A value during evaluation: a view, valid while the record (or the literal) is.
struct Value {
    ValueType type = ValueType::Missing;
    bool boolean = false;
    bool isInt = false;
    std::int64_t integer = 0;
    double real = 0;
    std::string_view text;
};

struct PathSegment {
    bool isIndex = false;
    std::string key;
    std::int64_t index = 0;  // negative: from the end
};

// How a literal was written, for the canonical form.
enum class LiteralForm : std::uint8_t { Plain, RelativeTime, AbsoluteTime };

struct Literal {
    ValueType type = ValueType::Null;
    bool boolean = false;
    bool isInt = false;
    std::int64_t integer = 0;
    double real = 0;
    std::string text;
    LiteralForm form = LiteralForm::Plain;
    std::int64_t relativeMillis = 0;  // RelativeTime: how far back from now

    Value view() const {
        Value v;
        v.type = type;
        v.boolean = boolean;
        v.isInt = isInt;
        v.integer = integer;
        v.real = real;
        v.text = text;
        return v;
    }
};

struct Operand {
    enum class Kind : std::uint8_t { Field, Property, Literal } kind = Kind::Literal;
    FieldId field = FieldId::Event;
    int slot = -1;  // Property: index into Impl::paths
    Literal literal;
    StaticType type = StaticType::Null;
};

// A compiled PCRE2 pattern (UTF, invalid UTF-8 in subjects tolerated, JIT when available).
class FilterRegex {
public:
    // nullptr with *message and *offset (a byte offset into the pattern) on a bad pattern.
    static std::unique_ptr<FilterRegex> compile(std::string_view pattern, std::string* message, std::size_t* offset);
    ~FilterRegex();
    FilterRegex(const FilterRegex&) = delete;
    FilterRegex& operator=(const FilterRegex&) = delete;
    // Unanchored search, as Wireshark's `matches`.
    bool search(std::string_view subject) const;

private:
    FilterRegex() = default;
    pcre2_real_code_8* m_code = nullptr;
};

enum class CompareOp : std::uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

struct Node {
    enum class Kind : std::uint8_t { All, And, Or, Not, Exists, Compare, In, Match, Contains } kind = Kind::All;
    CompareOp op = CompareOp::Eq;
    bool negated = false;          // In: `not in`; Match: `!~`
    std::vector<Node> children;    // And, Or (two or more), Not (one)
    Operand lhs, rhs;              // Exists: lhs; Compare: both; In, Match, Contains: lhs (+ rhs literal)
    std::vector<Literal> set;      // In
    std::shared_ptr<const FilterRegex> regex;  // Match
};

} // namespace pipescope::filter_detail

namespace pipescope {

struct FilterExpression::Impl {
    filter_detail::Node root;
    std::vector<std::vector<filter_detail::PathSegment>> paths;  // each distinct property path once
    std::vector<std::string> referenced;
    FilterTarget target = FilterTarget::Events;
    std::int64_t now = 0;
};

namespace filter_detail {
bool evaluate(const FilterExpression::Impl& impl, const FilterRecord& record);
std::string_view fieldName(FieldId field);
std::string pathToString(const std::vector<PathSegment>& path);
std::string quoted(std::string_view text);
} // namespace filter_detail

} // namespace pipescope
