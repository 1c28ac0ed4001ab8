#pragma once
// The compiled form of a schema: one Node per (sub)schema, linked by raw pointers into storage
// owned by CompiledSchema::Impl, so that "$ref" cycles are plain pointer cycles.

#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats.h"
#include "regex.h"
#include "schema.h"

namespace pipescope::schema_detail {

enum TypeBit : std::uint8_t {
    kNull = 1,
    kBoolean = 2,
    kObject = 4,
    kArray = 8,
    kNumber = 16,
    kInteger = 32,
    kString = 64,
};

// A JSON number as it was written: comparisons between the kinds are exact (no rounding of
// large integers through double).
struct Number {
    enum class Kind : std::uint8_t { Int, UInt, Double };
    Kind kind = Kind::Int;
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double d = 0;
};

inline constexpr std::uint64_t kNoLimit = std::numeric_limits<std::uint64_t>::max();

struct Node;

// Property names are short: the first and last 8 bytes (zero-padded) and the length identify
// any name up to 16 bytes exactly, so lookups hash and compare those words instead of calling
// std::hash and memcmp.
struct PropertyKey {
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    std::size_t size = 0;

    explicit PropertyKey(std::string_view key) : size(key.size()) {
        if (size >= 8) {
            std::memcpy(&head, key.data(), 8);
            std::memcpy(&tail, key.data() + size - 8, 8);
        } else {
            for (std::size_t i = 0; i < size; ++i)
                head |= std::uint64_t(static_cast<unsigned char>(key[i])) << (8 * i);
        }
    }

    std::size_t hash() const {
        std::uint64_t h = head ^ ((tail << 29) | (tail >> 35)) ^ (size * 0x9E3779B97F4A7C15ull);
        h ^= h >> 33;
        h *= 0xFF51AFD7ED558CCDull;
        h ^= h >> 33;
        return static_cast<std::size_t>(h);
    }

    bool sameWords(const PropertyKey& other) const {
        return head == other.head && tail == other.tail && size == other.size;
    }
};

struct ArrayRules {
    const Node* items = nullptr; // "items" as one schema for every item
    std::vector<const Node*> tuple;
    bool isTuple = false;
    const Node* additionalItems = nullptr;
    std::uint64_t minItems = 0;
    std::uint64_t maxItems = kNoLimit;
    bool uniqueItems = false;
    const Node* contains = nullptr;
};

// Every property name the object keywords mention gets a slot; an instance's keys are looked up
// once each in an open-addressing table, and presence is tracked in a bitset over slots.
struct PropertySlot {
    std::string name;
    PropertyKey key{std::string_view()};
    std::size_t hash = 0;
    const Node* property = nullptr;
    bool hasDependency = false;
    const Node* dependencySchema = nullptr;
    std::vector<std::uint32_t> dependencyRequired;
};

struct PatternProperty {
    const Regex* regex = nullptr;
    const Node* schema = nullptr;
};

struct ObjectRules {
    std::vector<PropertySlot> slots;
    std::vector<std::int32_t> buckets; // power-of-two size, -1 for empty
    std::vector<std::uint32_t> requiredSlots;
    std::vector<std::uint64_t> requiredMask;
    std::vector<std::uint32_t> dependencySlots;
    std::vector<PatternProperty> patterns;
    const Node* additional = nullptr;
    const Node* propertyNames = nullptr;
    std::uint64_t minProperties = 0;
    std::uint64_t maxProperties = kNoLimit;
    bool trackSeen = false;

    std::int32_t find(std::string_view name) const {
        if (buckets.empty()) return -1;
        const PropertyKey key(name);
        const std::size_t hash = key.hash();
        const std::size_t mask = buckets.size() - 1;
        for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
            std::int32_t slot = buckets[i];
            if (slot < 0) return -1;
            const PropertySlot& s = slots[static_cast<std::size_t>(slot)];
            if (s.hash == hash && s.key.sameWords(key) &&
                (key.size <= 16 || std::memcmp(s.name.data() + 8, name.data() + 8, key.size - 16) == 0))
                return slot;
        }
    }
};

struct Node {
    const Node* ref = nullptr; // draft 7: when "$ref" is present, nothing else applies
    bool isFalse = false;
    bool hasChecks = false; // false for `true` and for `{}`-like schemas

    std::uint8_t types = 0; // 0: no "type" keyword
    std::string typeText;   // "string or null", for messages

    const nlohmann::json* constValue = nullptr;
    const nlohmann::json* enumValues = nullptr;
    // The usual case, an "enum" of strings only: compared without going through nlohmann::json.
    bool enumAllStrings = false;
    std::vector<std::string_view> enumStrings;

    bool hasNumberRules = false;
    std::optional<Number> minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf;

    bool hasStringRules = false;
    std::uint64_t minLength = 0;
    std::uint64_t maxLength = kNoLimit;
    const Regex* pattern = nullptr;
    FormatCheck format = nullptr;
    std::string formatName;

    std::unique_ptr<ArrayRules> array;
    std::unique_ptr<ObjectRules> object;

    std::vector<const Node*> allOf, anyOf, oneOf;
    const Node* notSchema = nullptr;
    const Node* ifSchema = nullptr;
    const Node* thenSchema = nullptr;
    const Node* elseSchema = nullptr;
};

} // namespace pipescope::schema_detail

namespace pipescope {

struct CompiledSchema::Impl {
    // Documents the nodes point into (the schema itself and every loaded one); a deque so that
    // pointers stay valid as documents are added.
    std::deque<nlohmann::json> documents;
    std::vector<std::unique_ptr<schema_detail::Node>> nodes;
    std::vector<std::unique_ptr<schema_detail::Regex>> regexes;
    const schema_detail::Node* root = nullptr;
};

} // namespace pipescope
