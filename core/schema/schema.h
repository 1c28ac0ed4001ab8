#pragma once
// JSON Schema (draft 7) validation for event properties, and the registry of schemas per event.
//
// Each schema is compiled once into a tree of checks that runs directly on simdjson's parsed
// document (no conversion of the instance). Patterns use PCRE2 with its JIT. The fast path
// (isValid) allocates nothing; failures are only collected for events that fail.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <simdjson.h>

namespace pipescope {

// One reason an instance fails its schema: where (a JSON Pointer into the validated value,
// "" for the value itself), which keyword, and a message a person can act on.
struct ValidationFailure {
    std::string pointer;
    std::string keyword;
    std::string message;
};

// A schema that cannot be read or compiled. `what()` names the file (when there is one), the
// line and column for JSON syntax errors, and the JSON Pointer of the offending keyword.
class SchemaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct SchemaCompileOptions {
    // Base URI of the document when it has no "$id" (e.g. "file:///path/to/schema.json").
    std::string baseUri;
    // Loads a referenced document that is not part of the schema being compiled, by absolute
    // URI without fragment. Returns nullopt when it is unknown (compiling then fails with a
    // SchemaError naming the reference).
    std::function<std::optional<nlohmann::json>(const std::string& uri)> loadDocument;
};

class CompiledSchema {
public:
    // Throws SchemaError.
    static std::unique_ptr<CompiledSchema> compile(const nlohmann::json& schema,
                                                   const SchemaCompileOptions& options = {});
    ~CompiledSchema();
    CompiledSchema(const CompiledSchema&) = delete;
    CompiledSchema& operator=(const CompiledSchema&) = delete;

    // Thread-safe; allocates nothing on the way to `true`.
    bool isValid(simdjson::dom::element instance) const;
    // Appends every failure (all of them, not only the first) and returns true when none.
    bool validate(simdjson::dom::element instance, std::vector<ValidationFailure>& failures) const;

    struct Impl;

private:
    explicit CompiledSchema(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

// Schemas per event name from a directory laid out as `<dir>/<event name>/<version>.json`,
// where the version is a positive integer and the latest applies. Event names containing
// characters that cannot stand in a file name are percent-encoded ("%2F" for "/").
// A schema may "$ref" other files by path relative to itself.
class SchemaRegistry {
public:
    struct Entry {
        std::string eventName;
        int version = 0;
        std::filesystem::path file;
        std::shared_ptr<const CompiledSchema> schema;
    };

    SchemaRegistry();
    ~SchemaRegistry();
    SchemaRegistry(SchemaRegistry&&) noexcept;
    SchemaRegistry& operator=(SchemaRegistry&&) noexcept;

    // Throws SchemaError naming the file and the problem (unreadable, JSON syntax error with
    // line and column, invalid schema, non-integer version file name).
    static SchemaRegistry loadDirectory(const std::filesystem::path& dir);

    // Adds (or replaces) a schema for one event name in memory.
    void add(std::string eventName, int version, std::shared_ptr<const CompiledSchema> schema,
             std::filesystem::path file = {});

    // The latest version for the event, or nullptr when the event is unplanned.
    const Entry* find(std::string_view eventName) const;
    std::size_t size() const;
    std::vector<const Entry*> entries() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Percent-decodes a directory name into an event name ("checkout%2Fstarted" -> "checkout/started").
std::string decodeEventDirName(std::string_view dirName);
std::string encodeEventDirName(std::string_view eventName);

} // namespace pipescope
