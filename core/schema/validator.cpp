// Runs compiled Nodes directly on simdjson's DOM. isValid() is the hot path: no allocation, one
// pass over each object's keys. validate() re-walks failing values only, to say where and why.

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <type_traits>

#include "node.h"

namespace pipescope {

using nlohmann::json;
using simdjson::dom::element;
using simdjson::dom::element_type;
using namespace schema_detail;

namespace {

// A property name validated against "propertyNames": a string that is not a DOM element.
struct KeyString {
    std::string_view value;
};

template <class V>
inline constexpr bool kIsElement = std::is_same_v<V, element>;

std::uint8_t typeBitsOf(element v) {
    switch (v.type()) {
    case element_type::ARRAY:
        return kArray;
    case element_type::OBJECT:
        return kObject;
    case element_type::INT64:
    case element_type::UINT64:
        return kNumber | kInteger;
    case element_type::DOUBLE: {
        double d = v.get_double().value_unsafe();
        return std::trunc(d) == d ? kNumber | kInteger : kNumber;
    }
    case element_type::STRING:
        return kString;
    case element_type::BOOL:
        return kBoolean;
    case element_type::NULL_VALUE:
        return kNull;
    }
    return 0;
}

std::uint8_t typeBitsOf(KeyString) { return kString; }

// Flattened so that simdjson's get_string is inlined here (and this into its callers): left to
// itself the compiler made it a call for every string value.
[[gnu::flatten]] std::string_view stringOf(element v) {
    return v.get_string().value_unsafe();
}
std::string_view stringOf(KeyString k) { return k.value; }

Number numberOf(element v) {
    Number n;
    switch (v.type()) {
    case element_type::INT64:
        n.kind = Number::Kind::Int;
        n.i = v.get_int64().value_unsafe();
        break;
    case element_type::UINT64:
        n.kind = Number::Kind::UInt;
        n.u = v.get_uint64().value_unsafe();
        break;
    default:
        n.kind = Number::Kind::Double;
        n.d = v.get_double().value_unsafe();
        break;
    }
    return n;
}

Number numberOf(const json& j) {
    Number n;
    if (j.is_number_unsigned()) {
        n.kind = Number::Kind::UInt;
        n.u = j.get<std::uint64_t>();
    } else if (j.is_number_integer()) {
        n.kind = Number::Kind::Int;
        n.i = j.get<std::int64_t>();
    } else {
        n.kind = Number::Kind::Double;
        n.d = j.get<double>();
    }
    return n;
}

template <class T>
int compareValues(T a, T b) {
    return a < b ? -1 : (a > b ? 1 : 0);
}

// Exact: compares the integer part first, then looks at the fraction.
int compareIntDouble(std::int64_t i, double d) {
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    double whole = std::trunc(d);
    auto w = static_cast<std::int64_t>(whole);
    if (i != w) return compareValues(i, w);
    double fraction = d - whole;
    return fraction > 0 ? -1 : (fraction < 0 ? 1 : 0);
}

int compareUIntDouble(std::uint64_t u, double d) {
    if (d < 0) return 1;
    if (d >= 18446744073709551616.0) return -1;
    double whole = std::trunc(d);
    auto w = static_cast<std::uint64_t>(whole);
    if (u != w) return compareValues(u, w);
    return d - whole > 0 ? -1 : 0;
}

int compareNumbers(const Number& a, const Number& b) {
    using K = Number::Kind;
    switch (a.kind) {
    case K::Int:
        if (b.kind == K::Int) return compareValues(a.i, b.i);
        if (b.kind == K::UInt) return a.i < 0 ? -1 : compareValues(static_cast<std::uint64_t>(a.i), b.u);
        return compareIntDouble(a.i, b.d);
    case K::UInt:
        if (b.kind == K::UInt) return compareValues(a.u, b.u);
        if (b.kind == K::Int) return b.i < 0 ? 1 : compareValues(a.u, static_cast<std::uint64_t>(b.i));
        return compareUIntDouble(a.u, b.d);
    case K::Double:
        if (b.kind == K::Double) return compareValues(a.d, b.d);
        return -compareNumbers(b, a);
    }
    return 0;
}

double toDouble(const Number& n) {
    switch (n.kind) {
    case Number::Kind::Int:
        return static_cast<double>(n.i);
    case Number::Kind::UInt:
        return static_cast<double>(n.u);
    case Number::Kind::Double:
        return n.d;
    }
    return 0;
}

// The magnitude of an integral number, when it has one that fits in 64 bits.
std::optional<std::uint64_t> integerMagnitude(const Number& n) {
    switch (n.kind) {
    case Number::Kind::Int:
        return n.i < 0 ? std::uint64_t(0) - static_cast<std::uint64_t>(n.i) : static_cast<std::uint64_t>(n.i);
    case Number::Kind::UInt:
        return n.u;
    case Number::Kind::Double:
        if (std::trunc(n.d) == n.d && std::fabs(n.d) < 18446744073709551616.0)
            return static_cast<std::uint64_t>(std::fabs(n.d));
        return std::nullopt;
    }
    return std::nullopt;
}

bool isMultipleOf(const Number& value, const Number& divisor) {
    auto a = integerMagnitude(value);
    auto b = integerMagnitude(divisor);
    if (a && b && *b != 0) return *a % *b == 0;
    // Decimal fractions have no exact binary form (0.0075 / 0.0001 = 75.00000000000001), so the
    // quotient only has to be within a few rounding errors of an integer.
    double quotient = toDouble(value) / toDouble(divisor);
    if (!std::isfinite(quotient)) return false;
    return std::fabs(quotient - std::round(quotient)) <= 8 * DBL_EPSILON * std::max(1.0, std::fabs(quotient));
}

bool equalToJson(element v, const json& j);

bool equalToJson(KeyString k, const json& j) {
    return j.is_string() && j.get_ref<const std::string&>() == k.value;
}

bool equalToJson(element v, const json& j) {
    switch (v.type()) {
    case element_type::ARRAY: {
        if (!j.is_array()) return false;
        std::size_t index = 0;
        simdjson::dom::array items = v.get_array().value_unsafe();
        for (element item : items) {
            if (index >= j.size() || !equalToJson(item, j[index])) return false;
            ++index;
        }
        return index == j.size();
    }
    case element_type::OBJECT: {
        if (!j.is_object()) return false;
        auto object = v.get_object().value_unsafe();
        std::size_t count = 0;
        for (auto field : object) {
            (void)field;
            ++count;
        }
        if (count != j.size()) return false;
        for (const auto& [key, value] : j.items()) {
            auto found = object.at_key(key);
            if (found.error() || !equalToJson(found.value_unsafe(), value)) return false;
        }
        return true;
    }
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
        return j.is_number() && compareNumbers(numberOf(v), numberOf(j)) == 0;
    case element_type::STRING:
        return j.is_string() && j.get_ref<const std::string&>() == stringOf(v);
    case element_type::BOOL:
        return j.is_boolean() && j.get<bool>() == v.get_bool().value_unsafe();
    case element_type::NULL_VALUE:
        return j.is_null();
    }
    return false;
}

bool isNumberType(element_type t) {
    return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

bool equalElements(element a, element b) {
    element_type ta = a.type();
    element_type tb = b.type();
    if (isNumberType(ta) && isNumberType(tb)) return compareNumbers(numberOf(a), numberOf(b)) == 0;
    if (ta != tb) return false;
    switch (ta) {
    case element_type::ARRAY: {
        auto x = a.get_array().value_unsafe();
        auto y = b.get_array().value_unsafe();
        auto i = x.begin();
        auto j = y.begin();
        for (; i != x.end() && j != y.end(); ++i, ++j)
            if (!equalElements(*i, *j)) return false;
        return !(i != x.end()) && !(j != y.end());
    }
    case element_type::OBJECT: {
        auto x = a.get_object().value_unsafe();
        auto y = b.get_object().value_unsafe();
        std::size_t countX = 0, countY = 0;
        for (auto field : x) {
            auto other = y.at_key(field.key);
            if (other.error() || !equalElements(field.value, other.value_unsafe())) return false;
            ++countX;
        }
        for (auto field : y) {
            (void)field;
            ++countY;
        }
        return countX == countY;
    }
    case element_type::STRING:
        return stringOf(a) == stringOf(b);
    case element_type::BOOL:
        return a.get_bool().value_unsafe() == b.get_bool().value_unsafe();
    case element_type::NULL_VALUE:
        return true;
    default:
        return false;
    }
}

std::uint64_t countCodePoints(std::string_view s) {
    std::uint64_t count = 0;
    for (char c : s)
        count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return count;
}

// Slots seen in one object; inline storage covers 256 property names, which is every schema we
// expect, so the hot path does not allocate.
class SeenSlots {
public:
    explicit SeenSlots(std::size_t slots) {
        std::size_t words = (slots + 63) / 64;
        if (words > std::size(m_inline)) {
            m_heap.assign(words, 0);
            m_words = m_heap.data();
        }
    }
    SeenSlots(const SeenSlots&) = delete;
    SeenSlots& operator=(const SeenSlots&) = delete;

    void set(std::uint32_t slot) { m_words[slot / 64] |= std::uint64_t{1} << (slot % 64); }
    bool test(std::uint32_t slot) const { return (m_words[slot / 64] >> (slot % 64)) & 1; }
    bool containsAll(const std::vector<std::uint64_t>& mask) const {
        for (std::size_t i = 0; i < mask.size(); ++i)
            if ((m_words[i] & mask[i]) != mask[i]) return false;
        return true;
    }

private:
    std::uint64_t m_inline[4] = {};
    std::vector<std::uint64_t> m_heap;
    std::uint64_t* m_words = m_inline;
};

// The same for objects whose keywords mention at most 64 names (nearly all): one word that stays in
// a register, with nothing to construct or destroy.
class SeenSlotsWord {
public:
    explicit SeenSlotsWord(std::size_t) {}
    void set(std::uint32_t slot) { m_word |= std::uint64_t{1} << slot; }
    bool test(std::uint32_t slot) const { return (m_word >> slot) & 1; }
    bool containsAll(const std::vector<std::uint64_t>& mask) const {
        return mask.empty() || (m_word & mask[0]) == mask[0];
    }

private:
    std::uint64_t m_word = 0;
};

bool stringValid(const Node& n, std::string_view s) {
    if (n.minLength > 0 || n.maxLength != kNoLimit) {
        // Code points never outnumber bytes, so short strings skip the count.
        if (s.size() < n.minLength) return false;
        if (n.minLength > 0 || s.size() > n.maxLength) {
            std::uint64_t length = countCodePoints(s);
            if (length < n.minLength || length > n.maxLength) return false;
        }
    }
    if (n.pattern && !n.pattern->search(s)) return false;
    if (n.format && !n.format(s)) return false;
    return true;
}

bool numberValid(const Node& n, const Number& x) {
    if (n.minimum && compareNumbers(x, *n.minimum) < 0) return false;
    if (n.maximum && compareNumbers(x, *n.maximum) > 0) return false;
    if (n.exclusiveMinimum && compareNumbers(x, *n.exclusiveMinimum) <= 0) return false;
    if (n.exclusiveMaximum && compareNumbers(x, *n.exclusiveMaximum) >= 0) return false;
    if (n.multipleOf && !isMultipleOf(x, *n.multipleOf)) return false;
    return true;
}

template <class V>
bool valid(const Node& node, V v);

[[gnu::noinline]] bool arrayValid(const ArrayRules& rules, simdjson::dom::array items) {
    std::uint64_t count = 0;
    for (element item : items) {
        if (rules.isTuple) {
            if (count < rules.tuple.size()) {
                if (!valid(*rules.tuple[count], item)) return false;
            } else if (rules.additionalItems && !valid(*rules.additionalItems, item)) {
                return false;
            }
        } else if (rules.items && !valid(*rules.items, item)) {
            return false;
        }
        ++count;
    }
    if (count < rules.minItems || count > rules.maxItems) return false;
    if (rules.contains) {
        bool found = false;
        for (element item : items) {
            if (valid(*rules.contains, item)) {
                found = true;
                break;
            }
        }
        if (!found) return false;
    }
    if (rules.uniqueItems) {
        for (auto i = items.begin(); i != items.end(); ++i) {
            auto j = i;
            for (++j; j != items.end(); ++j)
                if (equalElements(*i, *j)) return false;
        }
    }
    return true;
}

template <class Seen> bool objectValidWith(const ObjectRules& rules, element value) {
    auto object = value.get_object().value_unsafe();
    Seen seen(rules.slots.size());
    std::uint64_t count = 0;
    // Read once: the calls below could, as far as the compiler knows, change `rules`.
    const bool hasPatterns = !rules.patterns.empty();
    const Node* const additional = rules.additional;
    const Node* const propertyNames = rules.propertyNames;
    for (auto field : object) {
        ++count;
        bool matched = false;
        if (const PropertyBucket* bucket = rules.findBucket(field.key)) {
            seen.set(static_cast<std::uint32_t>(bucket->slot));
            if (const Node* property = bucket->property) {
                matched = true;
                if (!valid(*property, field.value)) return false;
            }
        }
        if (hasPatterns) {
            for (const auto& pattern : rules.patterns) {
                if (pattern.regex->search(field.key)) {
                    matched = true;
                    if (!valid(*pattern.schema, field.value)) return false;
                }
            }
        }
        if (!matched && additional && !valid(*additional, field.value)) return false;
        if (propertyNames && !valid(*propertyNames, KeyString{field.key})) return false;
    }
    if (count < rules.minProperties || count > rules.maxProperties) return false;
    if (rules.trackSeen) {
        if (!seen.containsAll(rules.requiredMask)) return false;
        for (auto slot : rules.dependencySlots) {
            if (!seen.test(slot)) continue;
            const PropertySlot& dependency = rules.slots[slot];
            for (auto needed : dependency.dependencyRequired)
                if (!seen.test(needed)) return false;
            if (dependency.dependencySchema && !valid(*dependency.dependencySchema, value))
                return false;
        }
    }
    return true;
}

// Kept out of valid(): inlined, its loop state made every valid() call, most of them on a
// string or a number, pay for a large stack frame.
[[gnu::noinline]] bool objectValid(const ObjectRules& rules, element value) {
    return rules.slots.size() <= 64 ? objectValidWith<SeenSlotsWord>(rules, value)
                                    : objectValidWith<SeenSlots>(rules, value);
}

template <class V> bool applicatorsValid(const Node& n, V v);

template <class V>
bool valid(const Node& start, V v) {
    const Node& n = start.ref ? *start.ref : start;
    if (!n.hasChecks) return !n.isFalse;
    std::uint8_t bits = typeBitsOf(v);
    if (n.types && !(n.types & bits)) return false;
    if (n.constValue && !equalToJson(v, *n.constValue)) return false;
    if (n.enumAllStrings) {
        if (!(bits & kString)) return false;
        std::string_view s = stringOf(v);
        if (std::find(n.enumStrings.begin(), n.enumStrings.end(), s) == n.enumStrings.end()) return false;
    } else if (n.enumValues) {
        bool any = false;
        for (const auto& candidate : *n.enumValues) {
            if (equalToJson(v, candidate)) {
                any = true;
                break;
            }
        }
        if (!any) return false;
    }
    if (bits & kString) {
        if (n.hasStringRules && !stringValid(n, stringOf(v))) return false;
    } else if constexpr (kIsElement<V>) {
        if (bits & kNumber) {
            if (n.hasNumberRules && !numberValid(n, numberOf(v))) return false;
        } else if (bits & kArray) {
            if (n.array && !arrayValid(*n.array, v.get_array().value_unsafe())) return false;
        } else if (bits & kObject) {
            if (n.object && !objectValid(*n.object, v)) return false;
        }
    }
    return !n.hasApplicators || applicatorsValid(n, v);
}

template <class V> bool applicatorsValid(const Node& n, V v) {
    for (const Node* sub : n.allOf)
        if (!valid(*sub, v)) return false;
    if (!n.anyOf.empty()) {
        bool any = false;
        for (const Node* sub : n.anyOf) {
            if (valid(*sub, v)) {
                any = true;
                break;
            }
        }
        if (!any) return false;
    }
    if (!n.oneOf.empty()) {
        int matches = 0;
        for (const Node* sub : n.oneOf)
            if (valid(*sub, v) && ++matches > 1) return false;
        if (matches != 1) return false;
    }
    if (n.notSchema && valid(*n.notSchema, v)) return false;
    if (n.ifSchema) {
        if (valid(*n.ifSchema, v)) {
            if (n.thenSchema && !valid(*n.thenSchema, v)) return false;
        } else if (n.elseSchema && !valid(*n.elseSchema, v)) {
            return false;
        }
    }
    return true;
}

// ---- failure collection: only runs for values that failed, so clarity over speed ----

std::string numberText(const Number& n) {
    switch (n.kind) {
    case Number::Kind::Int:
        return std::to_string(n.i);
    case Number::Kind::UInt:
        return std::to_string(n.u);
    case Number::Kind::Double:
        return json(n.d).dump();
    }
    return {};
}

std::string instanceTypeName(element v) {
    switch (v.type()) {
    case element_type::ARRAY:
        return "array";
    case element_type::OBJECT:
        return "object";
    case element_type::INT64:
    case element_type::UINT64:
        return "integer";
    case element_type::DOUBLE:
        return "number";
    case element_type::STRING:
        return "string";
    case element_type::BOOL:
        return "boolean";
    case element_type::NULL_VALUE:
        return "null";
    }
    return "value";
}

std::string shortDump(const json& value) {
    std::string text = value.dump();
    if (text.size() > 80) text = text.substr(0, 77) + "...";
    return text;
}

std::string quotedText(std::string_view text) { return json(std::string(text)).dump(); }

class FailureCollector {
public:
    explicit FailureCollector(std::vector<ValidationFailure>& out) : m_out(out) {}

    bool collect(const Node& start, element v) {
        const Node& n = start.ref ? *start.ref : start;
        if (valid(n, v)) return true;
        const std::size_t before = m_out.size();
        collectKeywords(n, v);
        // Every check above has a failure of its own; this only guards against a silent miss.
        if (m_out.size() == before) add("schema", "does not match the schema");
        return false;
    }

private:
    void add(std::string keyword, std::string message) {
        m_out.push_back({m_path, std::move(keyword), std::move(message)});
    }

    std::size_t push(std::string_view token) {
        std::size_t size = m_path.size();
        m_path += '/';
        for (char c : token) {
            if (c == '~')
                m_path += "~0";
            else if (c == '/')
                m_path += "~1";
            else
                m_path += c;
        }
        return size;
    }
    std::size_t push(std::uint64_t index) { return push(std::to_string(index)); }
    void pop(std::size_t size) { m_path.resize(size); }

    void collectKeywords(const Node& n, element v) {
        if (n.isFalse) {
            add("false", "no value is allowed here");
            return;
        }
        std::uint8_t bits = typeBitsOf(v);
        if (n.types && !(n.types & bits)) add("type", "expected " + n.typeText + ", got " + instanceTypeName(v));
        if (n.constValue && !equalToJson(v, *n.constValue)) add("const", "must be " + shortDump(*n.constValue));
        if (n.enumValues && std::none_of(n.enumValues->begin(), n.enumValues->end(),
                                         [&](const json& candidate) { return equalToJson(v, candidate); }))
            add("enum", "must be one of " + shortDump(*n.enumValues));
        if (bits & kString) {
            if (n.hasStringRules) collectString(n, stringOf(v));
        } else if (bits & kNumber) {
            if (n.hasNumberRules) collectNumber(n, numberOf(v));
        } else if (bits & kArray) {
            if (n.array) collectArray(*n.array, v.get_array().value_unsafe());
        } else if (bits & kObject) {
            if (n.object) collectObject(*n.object, v);
        }
        for (const Node* sub : n.allOf)
            collect(*sub, v);
        if (!n.anyOf.empty() && std::none_of(n.anyOf.begin(), n.anyOf.end(),
                                             [&](const Node* sub) { return valid(*sub, v); }))
            add("anyOf", "does not match any of the " + std::to_string(n.anyOf.size()) + " schemas in anyOf");
        if (!n.oneOf.empty()) {
            auto matches = std::count_if(n.oneOf.begin(), n.oneOf.end(), [&](const Node* sub) { return valid(*sub, v); });
            if (matches == 0)
                add("oneOf", "does not match any of the " + std::to_string(n.oneOf.size()) + " schemas in oneOf");
            else if (matches > 1)
                add("oneOf", "must match exactly one schema in oneOf, matches " + std::to_string(matches));
        }
        if (n.notSchema && valid(*n.notSchema, v)) add("not", "must not match the schema in \"not\"");
        if (n.ifSchema) {
            if (valid(*n.ifSchema, v)) {
                if (n.thenSchema) collect(*n.thenSchema, v);
            } else if (n.elseSchema) {
                collect(*n.elseSchema, v);
            }
        }
    }

    void collectString(const Node& n, std::string_view s) {
        std::uint64_t length = countCodePoints(s);
        if (length < n.minLength)
            add("minLength", "must be at least " + std::to_string(n.minLength) + " characters long, is " +
                                 std::to_string(length));
        if (length > n.maxLength)
            add("maxLength", "must be at most " + std::to_string(n.maxLength) + " characters long, is " +
                                 std::to_string(length));
        if (n.pattern && !n.pattern->search(s)) add("pattern", "does not match pattern " + quotedText(n.pattern->source()));
        if (n.format && !n.format(s)) add("format", "is not a valid " + n.formatName);
    }

    void collectNumber(const Node& n, const Number& x) {
        if (n.minimum && compareNumbers(x, *n.minimum) < 0)
            add("minimum", "must be >= " + numberText(*n.minimum) + ", is " + numberText(x));
        if (n.maximum && compareNumbers(x, *n.maximum) > 0)
            add("maximum", "must be <= " + numberText(*n.maximum) + ", is " + numberText(x));
        if (n.exclusiveMinimum && compareNumbers(x, *n.exclusiveMinimum) <= 0)
            add("exclusiveMinimum", "must be > " + numberText(*n.exclusiveMinimum) + ", is " + numberText(x));
        if (n.exclusiveMaximum && compareNumbers(x, *n.exclusiveMaximum) >= 0)
            add("exclusiveMaximum", "must be < " + numberText(*n.exclusiveMaximum) + ", is " + numberText(x));
        if (n.multipleOf && !isMultipleOf(x, *n.multipleOf))
            add("multipleOf", "must be a multiple of " + numberText(*n.multipleOf) + ", is " + numberText(x));
    }

    void collectArray(const ArrayRules& rules, simdjson::dom::array items) {
        std::uint64_t count = 0;
        for (element item : items) {
            const Node* schema = nullptr;
            if (!rules.isTuple)
                schema = rules.items;
            else if (count < rules.tuple.size())
                schema = rules.tuple[count];
            else
                schema = rules.additionalItems;
            if (schema) {
                auto saved = push(count);
                const Node& target = schema->ref ? *schema->ref : *schema;
                if (rules.isTuple && count >= rules.tuple.size() && target.isFalse)
                    add("additionalItems", "no items allowed after the first " + std::to_string(rules.tuple.size()));
                else
                    collect(*schema, item);
                pop(saved);
            }
            ++count;
        }
        if (count < rules.minItems)
            add("minItems", "must have at least " + std::to_string(rules.minItems) + " items, has " +
                                std::to_string(count));
        if (count > rules.maxItems)
            add("maxItems", "must have at most " + std::to_string(rules.maxItems) + " items, has " +
                                std::to_string(count));
        if (rules.contains &&
            std::none_of(items.begin(), items.end(), [&](element item) { return valid(*rules.contains, item); }))
            add("contains", "no item matches the schema in \"contains\"");
        if (rules.uniqueItems) {
            std::uint64_t i = 0;
            for (auto a = items.begin(); a != items.end(); ++a, ++i) {
                auto b = a;
                std::uint64_t j = i + 1;
                bool duplicate = false;
                for (++b; b != items.end() && !duplicate; ++b, ++j) {
                    if (equalElements(*a, *b)) {
                        add("uniqueItems",
                            "items " + std::to_string(i) + " and " + std::to_string(j) + " are equal");
                        duplicate = true;
                    }
                }
                if (duplicate) break;
            }
        }
    }

    void collectObject(const ObjectRules& rules, element value) {
        auto object = value.get_object().value_unsafe();
        SeenSlots seen(rules.slots.size());
        std::uint64_t count = 0;
        for (auto field : object) {
            ++count;
            bool matched = false;
            std::int32_t slot = rules.find(field.key);
            auto saved = push(field.key);
            if (slot >= 0) {
                seen.set(static_cast<std::uint32_t>(slot));
                if (const Node* property = rules.slots[static_cast<std::size_t>(slot)].property) {
                    matched = true;
                    collect(*property, field.value);
                }
            }
            for (const auto& pattern : rules.patterns) {
                if (pattern.regex->search(field.key)) {
                    matched = true;
                    collect(*pattern.schema, field.value);
                }
            }
            if (!matched && rules.additional) {
                const Node& additional = rules.additional->ref ? *rules.additional->ref : *rules.additional;
                if (additional.isFalse)
                    add("additionalProperties", "property " + quotedText(field.key) + " is not allowed");
                else
                    collect(additional, field.value);
            }
            pop(saved);
            if (rules.propertyNames && !valid(*rules.propertyNames, KeyString{field.key}))
                add("propertyNames", "property name " + quotedText(field.key) + " is not allowed by propertyNames");
        }
        if (count < rules.minProperties)
            add("minProperties", "must have at least " + std::to_string(rules.minProperties) +
                                     " properties, has " + std::to_string(count));
        if (count > rules.maxProperties)
            add("maxProperties", "must have at most " + std::to_string(rules.maxProperties) +
                                     " properties, has " + std::to_string(count));
        for (auto slot : rules.requiredSlots)
            if (!seen.test(slot)) add("required", "missing required property " + quotedText(rules.slots[slot].name));
        for (auto slot : rules.dependencySlots) {
            if (!seen.test(slot)) continue;
            const PropertySlot& dependency = rules.slots[slot];
            for (auto needed : dependency.dependencyRequired)
                if (!seen.test(needed))
                    add("dependencies", "property " + quotedText(dependency.name) + " requires property " +
                                            quotedText(rules.slots[needed].name));
            if (dependency.dependencySchema) collect(*dependency.dependencySchema, value);
        }
    }

    std::vector<ValidationFailure>& m_out;
    std::string m_path;
};

} // namespace

bool CompiledSchema::isValid(simdjson::dom::element instance) const { return valid(*m_impl->root, instance); }

bool CompiledSchema::validate(simdjson::dom::element instance, std::vector<ValidationFailure>& failures) const {
    if (valid(*m_impl->root, instance)) return true;
    FailureCollector(failures).collect(*m_impl->root, instance);
    return false;
}

} // namespace pipescope
