#pragma once
// The compiled form of a schema: one Node per (sub)schema, linked by raw pointers into storage
// owned by CompiledSchema::Impl, so that "$ref" cycles are plain pointer cycles.

#include <algorithm>
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

// Property names are short: two words read from the name and its length identify any name up to
// 16 bytes exactly, so lookups hash and compare those words instead of calling std::hash and
// memcmp. The words are read with overlapping loads (never past the end of the name), not byte by
// byte: a schema lookup is made for every key of every instance object.
struct PropertyKey {
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    std::size_t size = 0;

    explicit PropertyKey(std::string_view key)
        : head(headOf(key.data(), key.size())), tail(tailOf(key.data(), key.size())), size(key.size()) {}

    // Computed into values rather than stored through memcpy into the members, which made the
    // compiler build the key on the stack and read it back.
    static std::uint64_t headOf(const char* bytes, std::size_t size) {
        if (size >= 8) return load<std::uint64_t>(bytes);
        if (size >= 4)
            return load<std::uint32_t>(bytes) | std::uint64_t{load<std::uint32_t>(bytes + size - 4)} << 32;
        if (size == 0) return 0;
        // Bytes 0, size / 2 and size - 1 cover every byte of a 1-3 byte name.
        return std::uint64_t{static_cast<unsigned char>(bytes[0])} |
               std::uint64_t{static_cast<unsigned char>(bytes[size / 2])} << 8 |
               std::uint64_t{static_cast<unsigned char>(bytes[size - 1])} << 16;
    }
    static std::uint64_t tailOf(const char* bytes, std::size_t size) {
        return size >= 8 ? load<std::uint64_t>(bytes + size - 8) : 0;
    }
    template <class T> static T load(const char* bytes) {
        T value;
        std::memcpy(&value, bytes, sizeof value);
        return value;
    }

    // Multiplicative hashing: the table index is taken from the high bits of the product.
    std::uint64_t hash() const {
        return (head ^ ((tail << 29) | (tail >> 35)) ^ (size * 0x9E3779B97F4A7C15ull)) *
               0xFF51AFD7ED558CCDull;
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
    const Node* property = nullptr;
    bool hasDependency = false;
    const Node* dependencySchema = nullptr;
    std::vector<std::uint32_t> dependencyRequired;
};

struct PatternProperty {
    const Regex* regex = nullptr;
    const Node* schema = nullptr;
};

// One entry of the lookup table: the key words and what a hit needs are copied in, so that a
// lookup touches one 32-byte entry and not the slot (which holds the name only for names longer
// than 16 bytes).
struct PropertyBucket {
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    std::uint32_t size = 0;
    std::int32_t slot = -1; // -1: empty
    const Node* property = nullptr;
};

struct ObjectRules {
    std::vector<PropertySlot> slots;
    std::vector<PropertyBucket> buckets; // power-of-two size
    unsigned bucketShift = 64;           // 64 - log2(buckets.size())
    // Bit min(length, 63) is set for the length of every slot's name. Most keys of an SDK event are
    // not in the schema, and two thirds of those have a length no name has: they are rejected
    // here without hashing.
    std::uint64_t nameLengths = 0;
    std::vector<std::uint32_t> requiredSlots;
    std::vector<std::uint64_t> requiredMask;
    std::vector<std::uint32_t> dependencySlots;
    std::vector<PatternProperty> patterns;
    const Node* additional = nullptr;
    const Node* propertyNames = nullptr;
    std::uint64_t minProperties = 0;
    std::uint64_t maxProperties = kNoLimit;
    bool trackSeen = false;

    // Only for a non-empty table, which has at least two buckets (so the shift is below 64).
    std::size_t bucketOf(const PropertyKey& key) const {
        return static_cast<std::size_t>(key.hash() >> bucketShift);
    }

    // The bucket holding `name`, or nullptr when no keyword mentions it. Inlined: it runs for
    // every key of every instance object, and as a call its key words went through the stack.
    [[gnu::always_inline]] const PropertyBucket* findBucket(std::string_view name) const {
        if (!((nameLengths >> std::min<std::size_t>(name.size(), 63)) & 1)) return nullptr;
        const PropertyKey key(name);
        const std::size_t mask = buckets.size() - 1;
        for (std::size_t i = bucketOf(key);; i = (i + 1) & mask) {
            const PropertyBucket& bucket = buckets[i];
            if (bucket.slot < 0) return nullptr;
            if (bucket.head == key.head && bucket.tail == key.tail && bucket.size == key.size &&
                (key.size <= 16 || std::memcmp(slots[static_cast<std::size_t>(bucket.slot)].name.data() + 8,
                                               name.data() + 8, key.size - 16) == 0))
                return &bucket;
        }
    }

    std::int32_t find(std::string_view name) const {
        const PropertyBucket* bucket = findBucket(name);
        return bucket ? bucket->slot : -1;
    }
};

// What isValid() reads on every value comes first and fills the first cache line (the node is
// aligned to one), so that a typical check touches one or two lines of the ~500-byte node.
struct alignas(64) Node {
    const Node* ref = nullptr; // draft 7: when "$ref" is present, nothing else applies
    bool isFalse = false;
    bool hasChecks = false; // false for `true` and for `{}`-like schemas

    std::uint8_t types = 0; // 0: no "type" keyword
    // The usual case, an "enum" of strings only: compared without going through nlohmann::json.
    bool enumAllStrings = false;
    bool hasNumberRules = false;
    bool hasStringRules = false;
    bool hasApplicators = false; // allOf, anyOf, oneOf, not or if

    const nlohmann::json* constValue = nullptr;
    const nlohmann::json* enumValues = nullptr;

    std::uint64_t minLength = 0;
    std::uint64_t maxLength = kNoLimit;
    const Regex* pattern = nullptr;
    FormatCheck format = nullptr;

    std::unique_ptr<ArrayRules> array;
    std::unique_ptr<ObjectRules> object;
    std::vector<std::string_view> enumStrings;

    std::optional<Number> minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf;

    std::string typeText; // "string or null", for messages
    std::string formatName;

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
