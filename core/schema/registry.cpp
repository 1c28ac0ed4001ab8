// Loads `<dir>/<event name>/<version>.json`. Only the latest version of each event is read and
// compiled: older versions are history, and a broken old file should not stop validation.
// Regular files directly in `<dir>` are not events; they are the place for shared definitions
// that event schemas "$ref" ("../common.json#/definitions/currency").

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/json_file.h"
#include "schema.h"
#include "uri.h"

namespace pipescope {

namespace fs = std::filesystem;
using nlohmann::json;

struct SchemaRegistry::Impl {
    std::map<std::string, Entry, std::less<>> entries;
};

namespace {

bool isHidden(const fs::path& path) { return path.filename().string().starts_with('.'); }

// Schema files go through the one JSON file loader (file, line, column); its errors are schema
// errors here.
json readSchemaFile(const fs::path& file) {
    try {
        return parseJsonFile(file);
    } catch (const JsonFileError& e) {
        throw SchemaError(e.what());
    }
}

std::string fileUri(const fs::path& file) {
    return "file://" + schema_detail::percentEncodePath(fs::absolute(file).lexically_normal().generic_string());
}

// Reads "$ref"ed files once per loadDirectory, however many schemas refer to them.
class DocumentCache {
public:
    std::optional<json> load(const std::string& uri) {
        auto parts = schema_detail::parseUriReference(uri);
        if (!parts.hasScheme || parts.scheme != "file") return std::nullopt;
        fs::path file = schema_detail::percentDecode(parts.path);
        if (auto it = m_documents.find(file); it != m_documents.end()) return it->second;
        std::error_code error;
        if (!fs::is_regular_file(file, error)) return std::nullopt;
        json document = readSchemaFile(file);
        m_documents.emplace(file, document);
        return document;
    }

private:
    std::map<fs::path, json> m_documents;
};

std::optional<int> parseVersion(std::string_view stem) {
    if (stem.empty() || !std::all_of(stem.begin(), stem.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    int version = 0;
    auto [end, error] = std::from_chars(stem.data(), stem.data() + stem.size(), version);
    if (error != std::errc() || end != stem.data() + stem.size() || version <= 0) return std::nullopt;
    return version;
}

} // namespace

SchemaRegistry::SchemaRegistry() : m_impl(std::make_unique<Impl>()) {}
SchemaRegistry::~SchemaRegistry() = default;
SchemaRegistry::SchemaRegistry(SchemaRegistry&& other) noexcept : m_impl(std::make_unique<Impl>()) {
    std::swap(m_impl, other.m_impl);
}
SchemaRegistry& SchemaRegistry::operator=(SchemaRegistry&& other) noexcept {
    // `other` keeps a valid, empty registry (not our old schemas), so using it after the move is safe.
    std::swap(m_impl, other.m_impl);
    if (other.m_impl) other.m_impl->entries.clear();
    return *this;
}

SchemaRegistry SchemaRegistry::loadDirectory(const fs::path& dir) {
    std::error_code error;
    if (!fs::exists(dir, error)) throw SchemaError(dir.string() + ": schema directory does not exist");
    if (!fs::is_directory(dir, error)) throw SchemaError(dir.string() + ": not a directory");

    struct Latest {
        int version = 0;
        fs::path file;
    };
    std::map<std::string, Latest> latest;
    auto listDirectory = [](const fs::path& path) {
        std::error_code listError;
        fs::directory_iterator it(path, listError);
        if (listError) throw SchemaError(path.string() + ": cannot list the directory: " + listError.message());
        std::vector<fs::directory_entry> items(it, fs::directory_iterator());
        std::sort(items.begin(), items.end());
        return items;
    };

    for (const auto& eventDir : listDirectory(dir)) {
        if (isHidden(eventDir.path()) || !eventDir.is_directory()) continue;
        std::string eventName = decodeEventDirName(eventDir.path().filename().string());
        for (const auto& item : listDirectory(eventDir.path())) {
            const fs::path& file = item.path();
            if (isHidden(file) || file.extension() != ".json" || item.is_directory()) continue;
            auto version = parseVersion(file.stem().string());
            if (!version)
                throw SchemaError(file.string() + ": the file name must be a positive integer version such as " +
                                  "\"1.json\" (the latest version applies), not \"" + file.filename().string() +
                                  "\"");
            auto& current = latest[eventName];
            if (*version == current.version)
                throw SchemaError(file.string() + ": version " + std::to_string(*version) + " is also in " +
                                  current.file.string());
            if (*version > current.version) current = {*version, file};
        }
    }

    SchemaRegistry registry;
    DocumentCache cache;
    for (const auto& [eventName, found] : latest) {
        json document = readSchemaFile(found.file);
        SchemaCompileOptions options;
        options.baseUri = fileUri(found.file);
        options.loadDocument = [&cache](const std::string& uri) { return cache.load(uri); };
        std::shared_ptr<const CompiledSchema> compiled;
        try {
            compiled = CompiledSchema::compile(document, options);
        } catch (const SchemaError& e) {
            throw SchemaError(found.file.string() + ": invalid schema: " + e.what());
        }
        registry.add(eventName, found.version, std::move(compiled), found.file);
    }
    return registry;
}

void SchemaRegistry::add(std::string eventName, int version, std::shared_ptr<const CompiledSchema> schema,
                         fs::path file) {
    if (!m_impl) m_impl = std::make_unique<Impl>();
    Entry entry{eventName, version, std::move(file), std::move(schema)};
    m_impl->entries.insert_or_assign(std::move(eventName), std::move(entry));
}

const SchemaRegistry::Entry* SchemaRegistry::find(std::string_view eventName) const {
    if (!m_impl) return nullptr;
    auto it = m_impl->entries.find(eventName);
    return it == m_impl->entries.end() ? nullptr : &it->second;
}

std::size_t SchemaRegistry::size() const { return m_impl ? m_impl->entries.size() : 0; }

std::vector<const SchemaRegistry::Entry*> SchemaRegistry::entries() const {
    std::vector<const Entry*> out;
    if (!m_impl) return out;
    out.reserve(m_impl->entries.size());
    for (const auto& [name, entry] : m_impl->entries)
        out.push_back(&entry);
    return out;
}

std::string decodeEventDirName(std::string_view dirName) { return schema_detail::percentDecode(dirName); }

std::string encodeEventDirName(std::string_view eventName) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (std::size_t i = 0; i < eventName.size(); ++i) {
        auto c = static_cast<unsigned char>(eventName[i]);
        // Characters no file system takes (or Windows refuses), '%' itself, and a leading '.'
        // (hidden, and therefore skipped by loadDirectory).
        bool escape = c < 0x20 || c == 0x7F || std::string_view("/\\%:*?\"<>|").find(static_cast<char>(c)) !=
                                                     std::string_view::npos;
        if (c == '.' && i == 0) escape = true;
        if (escape) {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

} // namespace pipescope
