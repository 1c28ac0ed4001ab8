// Compiles a draft 7 schema document into Nodes. "$ref"s are collected while compiling and
// resolved afterwards, so that forward and recursive references (cycles) need no special case.

#include <cmath>
#include <unordered_map>

#include "metaschema_draft7.h"
#include "node.h"
#include "uri.h"

namespace pipescope {

using nlohmann::json;
using namespace schema_detail;

namespace {

std::string escapePointerToken(std::string_view token) {
    std::string out;
    for (char c : token) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

std::string unescapePointerToken(std::string_view token) {
    std::string out;
    for (std::size_t i = 0; i < token.size(); ++i) {
        if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
            out += token[i + 1] == '0' ? '~' : '/';
            ++i;
        } else {
            out += token[i];
        }
    }
    return out;
}

Number numberFromJson(const json& value) {
    Number n;
    if (value.is_number_unsigned()) {
        n.kind = Number::Kind::UInt;
        n.u = value.get<std::uint64_t>();
    } else if (value.is_number_integer()) {
        n.kind = Number::Kind::Int;
        n.i = value.get<std::int64_t>();
    } else {
        n.kind = Number::Kind::Double;
        n.d = value.get<double>();
    }
    return n;
}

class Compiler {
public:
    Compiler(CompiledSchema::Impl& impl, const SchemaCompileOptions& options) : m_impl(impl), m_options(options) {}

    void compileRoot(const json& schema) {
        m_impl.documents.push_back(schema);
        m_documentBases.push_back(std::string(uriWithoutFragment(m_options.baseUri)));
        m_resources.emplace(m_documentBases[0], Resource{0, ""});
        m_impl.root = compileAt(m_impl.documents[0], m_documentBases[0], 0, "");
        while (!m_pending.empty()) {
            PendingRef pending = std::move(m_pending.front());
            m_pending.pop_front();
            pending.node->ref = resolve(pending);
        }
        collapseRefChains();
    }

private:
    struct Resource {
        std::size_t document = 0;
        std::string pointer; // where the resource's root is inside the document
    };
    struct PendingRef {
        Node* node = nullptr;
        std::string reference; // as written
        std::string target;    // resolved against the base URI in scope
        std::string where;
    };

    std::string where(std::size_t document, const std::string& pointer) const {
        if (document == 0) return pointer;
        return m_documentBases[document] + "#" + pointer;
    }

    [[noreturn]] void fail(std::size_t document, const std::string& pointer, const std::string& problem) const {
        throw SchemaError("at \"" + where(document, pointer) + "\": " + problem);
    }

    static std::string locationKey(std::size_t document, const std::string& pointer) {
        return std::to_string(document) + "|" + pointer;
    }

    std::uint64_t nonNegativeInteger(const json& value, std::size_t document, const std::string& pointer) const {
        if (value.is_number_unsigned()) return value.get<std::uint64_t>();
        if (value.is_number_integer() && value.get<std::int64_t>() >= 0) return value.get<std::uint64_t>();
        if (value.is_number_float()) {
            double d = value.get<double>();
            if (d >= 0 && std::trunc(d) == d) return d >= 1.8e19 ? kNoLimit : static_cast<std::uint64_t>(d);
        }
        fail(document, pointer, "expected a non-negative integer, got " + value.dump());
    }

    const Regex* compileRegex(const std::string& pattern, std::size_t document, const std::string& pointer) {
        m_impl.regexes.push_back(std::make_unique<Regex>(pattern, where(document, pointer)));
        return m_impl.regexes.back().get();
    }

    Node* compileAt(const json& value, std::string base, std::size_t document, const std::string& pointer) {
        auto key = locationKey(document, pointer);
        if (auto it = m_byLocation.find(key); it != m_byLocation.end()) return it->second;
        m_impl.nodes.push_back(std::make_unique<Node>());
        Node* node = m_impl.nodes.back().get();
        m_byLocation.emplace(std::move(key), node);

        if (value.is_boolean()) {
            node->isFalse = !value.get<bool>();
            return node;
        }
        if (!value.is_object())
            fail(document, pointer, "a schema must be an object or a boolean, got " + value.dump());

        auto child = [&](const json& sub, const std::string& subPointer) -> const Node* {
            return compileAt(sub, base, document, subPointer);
        };
        auto at = [&](std::string_view keyword) { return pointer + "/" + escapePointerToken(keyword); };

        if (auto ref = value.find("$ref"); ref != value.end()) {
            if (!ref->is_string()) fail(document, at("$ref"), "\"$ref\" must be a string");
            const auto& text = ref->get_ref<const std::string&>();
            m_pending.push_back({node, text, resolveUri(base, text), where(document, at("$ref"))});
            // Draft 7 ignores everything next to "$ref"; definitions are still compiled so that
            // the "$id"s inside them are known.
            if (auto defs = value.find("definitions"); defs != value.end() && defs->is_object())
                for (const auto& [name, sub] : defs->items())
                    child(sub, at("definitions") + "/" + escapePointerToken(name));
            return node;
        }

        if (auto id = value.find("$id"); id != value.end() && id->is_string()) {
            std::string resolved = resolveUri(base, id->get_ref<const std::string&>());
            std::string resourceBase(uriWithoutFragment(resolved));
            std::string_view anchor = uriFragment(resolved);
            if (!anchor.empty()) m_anchors.emplace(resourceBase + "#" + percentDecode(anchor), node);
            if (resourceBase != base || pointer.empty()) {
                m_resources.emplace(resourceBase, Resource{document, pointer});
                base = resourceBase;
            }
        }

        for (const auto& [keyword, sub] : value.items()) {
            if (keyword == "type") {
                compileType(*node, sub, document, at("type"));
            } else if (keyword == "enum") {
                if (!sub.is_array()) fail(document, at("enum"), "\"enum\" must be an array");
                node->enumValues = &sub;
                node->enumAllStrings = !sub.empty() && std::all_of(sub.begin(), sub.end(), [](const json& v) {
                    return v.is_string();
                });
                if (node->enumAllStrings)
                    for (const auto& v : sub)
                        node->enumStrings.push_back(v.get_ref<const std::string&>());
            } else if (keyword == "const") {
                node->constValue = &sub;
            } else if (keyword == "multipleOf") {
                if (!sub.is_number() || !(sub.get<double>() > 0))
                    fail(document, at(keyword), "\"multipleOf\" must be a number greater than 0");
                node->multipleOf = numberFromJson(sub);
            } else if (keyword == "maximum" || keyword == "minimum" || keyword == "exclusiveMaximum" ||
                       keyword == "exclusiveMinimum") {
                if (!sub.is_number()) fail(document, at(keyword), "\"" + keyword + "\" must be a number");
                Number limit = numberFromJson(sub);
                if (keyword == "maximum") node->maximum = limit;
                if (keyword == "minimum") node->minimum = limit;
                if (keyword == "exclusiveMaximum") node->exclusiveMaximum = limit;
                if (keyword == "exclusiveMinimum") node->exclusiveMinimum = limit;
            } else if (keyword == "maxLength") {
                node->maxLength = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "minLength") {
                node->minLength = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "pattern") {
                if (!sub.is_string()) fail(document, at(keyword), "\"pattern\" must be a string");
                node->pattern = compileRegex(sub.get<std::string>(), document, at(keyword));
            } else if (keyword == "format") {
                if (!sub.is_string()) fail(document, at(keyword), "\"format\" must be a string");
                node->formatName = sub.get<std::string>();
                node->format = findFormatCheck(node->formatName);
            } else if (keyword == "items") {
                auto& rules = arrayRules(*node);
                if (sub.is_array()) {
                    rules.isTuple = true;
                    for (std::size_t i = 0; i < sub.size(); ++i)
                        rules.tuple.push_back(child(sub[i], at(keyword) + "/" + std::to_string(i)));
                } else {
                    rules.items = child(sub, at(keyword));
                }
            } else if (keyword == "additionalItems") {
                arrayRules(*node).additionalItems = child(sub, at(keyword));
            } else if (keyword == "maxItems") {
                arrayRules(*node).maxItems = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "minItems") {
                arrayRules(*node).minItems = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "uniqueItems") {
                if (!sub.is_boolean()) fail(document, at(keyword), "\"uniqueItems\" must be a boolean");
                if (sub.get<bool>()) arrayRules(*node).uniqueItems = true;
            } else if (keyword == "contains") {
                arrayRules(*node).contains = child(sub, at(keyword));
            } else if (keyword == "maxProperties") {
                objectRules(*node).maxProperties = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "minProperties") {
                objectRules(*node).minProperties = nonNegativeInteger(sub, document, at(keyword));
            } else if (keyword == "required") {
                if (!sub.is_array()) fail(document, at(keyword), "\"required\" must be an array of strings");
                auto& rules = objectRules(*node);
                for (std::size_t i = 0; i < sub.size(); ++i) {
                    if (!sub[i].is_string())
                        fail(document, at(keyword) + "/" + std::to_string(i), "expected a property name (string)");
                    std::uint32_t slot = slotFor(rules, sub[i].get<std::string>());
                    if (std::find(rules.requiredSlots.begin(), rules.requiredSlots.end(), slot) ==
                        rules.requiredSlots.end())
                        rules.requiredSlots.push_back(slot);
                }
            } else if (keyword == "properties") {
                if (!sub.is_object()) fail(document, at(keyword), "\"properties\" must be an object");
                auto& rules = objectRules(*node);
                for (const auto& [name, propertySchema] : sub.items()) {
                    const Node* compiled = child(propertySchema, at(keyword) + "/" + escapePointerToken(name));
                    rules.slots[slotFor(rules, name)].property = compiled;
                }
            } else if (keyword == "patternProperties") {
                if (!sub.is_object()) fail(document, at(keyword), "\"patternProperties\" must be an object");
                auto& rules = objectRules(*node);
                for (const auto& [pattern, propertySchema] : sub.items()) {
                    std::string subPointer = at(keyword) + "/" + escapePointerToken(pattern);
                    rules.patterns.push_back(
                        {compileRegex(pattern, document, subPointer), child(propertySchema, subPointer)});
                }
            } else if (keyword == "additionalProperties") {
                objectRules(*node).additional = child(sub, at(keyword));
            } else if (keyword == "dependencies") {
                if (!sub.is_object()) fail(document, at(keyword), "\"dependencies\" must be an object");
                auto& rules = objectRules(*node);
                for (const auto& [name, dependency] : sub.items()) {
                    std::string subPointer = at(keyword) + "/" + escapePointerToken(name);
                    std::uint32_t slot = slotFor(rules, name);
                    if (dependency.is_array()) {
                        std::vector<std::uint32_t> needed;
                        for (std::size_t i = 0; i < dependency.size(); ++i) {
                            if (!dependency[i].is_string())
                                fail(document, subPointer + "/" + std::to_string(i),
                                     "expected a property name (string)");
                            needed.push_back(slotFor(rules, dependency[i].get<std::string>()));
                        }
                        rules.slots[slot].dependencyRequired = std::move(needed);
                    } else {
                        rules.slots[slot].dependencySchema = child(dependency, subPointer);
                    }
                    if (!rules.slots[slot].hasDependency) rules.dependencySlots.push_back(slot);
                    rules.slots[slot].hasDependency = true;
                }
            } else if (keyword == "propertyNames") {
                objectRules(*node).propertyNames = child(sub, at(keyword));
            } else if (keyword == "if") {
                node->ifSchema = child(sub, at(keyword));
            } else if (keyword == "then") {
                node->thenSchema = child(sub, at(keyword));
            } else if (keyword == "else") {
                node->elseSchema = child(sub, at(keyword));
            } else if (keyword == "allOf" || keyword == "anyOf" || keyword == "oneOf") {
                if (!sub.is_array() || sub.empty())
                    fail(document, at(keyword), "\"" + keyword + "\" must be a non-empty array of schemas");
                auto& list = keyword == "allOf" ? node->allOf : keyword == "anyOf" ? node->anyOf : node->oneOf;
                for (std::size_t i = 0; i < sub.size(); ++i)
                    list.push_back(child(sub[i], at(keyword) + "/" + std::to_string(i)));
            } else if (keyword == "not") {
                node->notSchema = child(sub, at(keyword));
            } else if (keyword == "definitions") {
                if (!sub.is_object()) fail(document, at(keyword), "\"definitions\" must be an object");
                for (const auto& [name, definition] : sub.items())
                    child(definition, at(keyword) + "/" + escapePointerToken(name));
            }
            // Anything else ($schema, title, description, default, examples, unknown keywords)
            // is an annotation.
        }
        finish(*node);
        return node;
    }

    void compileType(Node& node, const json& value, std::size_t document, const std::string& pointer) {
        auto bitFor = [&](const json& name) -> std::uint8_t {
            static const std::pair<std::string_view, std::uint8_t> names[] = {
                {"null", kNull},       {"boolean", kBoolean}, {"object", kObject}, {"array", kArray},
                {"number", kNumber},   {"integer", kInteger}, {"string", kString},
            };
            if (name.is_string())
                for (const auto& [text, bit] : names)
                    if (text == name.get_ref<const std::string&>()) return bit;
            fail(document, pointer, "unknown type " + name.dump());
        };
        std::vector<std::string> names;
        if (value.is_array()) {
            for (const auto& name : value) {
                node.types |= bitFor(name);
                names.push_back(name.get<std::string>());
            }
        } else {
            node.types |= bitFor(value);
            names.push_back(value.get<std::string>());
        }
        if (node.types == 0) node.types = 0x80; // "type": [] allows nothing
        for (std::size_t i = 0; i < names.size(); ++i) {
            if (i > 0) node.typeText += i + 1 == names.size() ? " or " : ", ";
            node.typeText += names[i];
        }
    }

    static ArrayRules& arrayRules(Node& node) {
        if (!node.array) node.array = std::make_unique<ArrayRules>();
        return *node.array;
    }

    static ObjectRules& objectRules(Node& node) {
        if (!node.object) node.object = std::make_unique<ObjectRules>();
        return *node.object;
    }

    static std::uint32_t slotFor(ObjectRules& rules, const std::string& name) {
        for (std::size_t i = 0; i < rules.slots.size(); ++i)
            if (rules.slots[i].name == name) return static_cast<std::uint32_t>(i);
        PropertySlot slot;
        slot.name = name;
        slot.key = PropertyKey(slot.name);
        rules.slots.push_back(std::move(slot));
        return static_cast<std::uint32_t>(rules.slots.size() - 1);
    }

    static void finish(Node& node) {
        node.hasNumberRules = node.minimum || node.maximum || node.exclusiveMinimum || node.exclusiveMaximum ||
                              node.multipleOf;
        node.hasStringRules = node.minLength > 0 || node.maxLength != kNoLimit || node.pattern || node.format;
        if (node.array) {
            auto& rules = *node.array;
            // additionalItems only means something after a tuple "items".
            if (!rules.isTuple) rules.additionalItems = nullptr;
        }
        if (node.object) {
            auto& rules = *node.object;
            // At most half full, so that a key no keyword mentions (most keys of an SDK event)
            // usually stops at its first, empty, bucket.
            std::size_t size = 1;
            unsigned bits = 0;
            while (size < rules.slots.size() * 2) {
                size *= 2;
                ++bits;
            }
            rules.buckets.assign(rules.slots.empty() ? 0 : size, PropertyBucket{});
            rules.bucketShift = 64 - bits;
            for (std::size_t i = 0; i < rules.slots.size(); ++i) {
                const PropertySlot& slot = rules.slots[i];
                std::size_t mask = size - 1;
                std::size_t b = rules.bucketOf(slot.key);
                while (rules.buckets[b].slot >= 0)
                    b = (b + 1) & mask;
                rules.buckets[b] = {slot.key.head, slot.key.tail, static_cast<std::uint32_t>(slot.key.size),
                                    static_cast<std::int32_t>(i), slot.property};
                rules.nameLengths |= std::uint64_t{1} << std::min<std::size_t>(slot.key.size, 63);
            }
            rules.requiredMask.assign((rules.slots.size() + 63) / 64, 0);
            for (auto slot : rules.requiredSlots)
                rules.requiredMask[slot / 64] |= std::uint64_t{1} << (slot % 64);
            rules.trackSeen = !rules.requiredSlots.empty() || !rules.dependencySlots.empty();
        }
        node.hasApplicators = !node.allOf.empty() || !node.anyOf.empty() || !node.oneOf.empty() ||
                              node.notSchema || node.ifSchema;
        node.hasChecks = node.types || node.constValue || node.enumValues || node.hasNumberRules ||
                         node.hasStringRules || node.array || node.object || node.hasApplicators;
    }

    std::size_t loadDocument(const std::string& uri, const PendingRef& pending) {
        std::optional<json> loaded;
        if (m_options.loadDocument) loaded = m_options.loadDocument(uri);
        if (!loaded && uri == kDraft7MetaSchemaUri) loaded = json::parse(kDraft7MetaSchema);
        if (!loaded)
            throw SchemaError("at \"" + pending.where + "\": unresolvable $ref \"" + pending.reference +
                              "\": no document " + (uri.empty() ? std::string("(no base URI)") : "\"" + uri + "\""));
        m_impl.documents.push_back(std::move(*loaded));
        std::size_t document = m_impl.documents.size() - 1;
        m_documentBases.push_back(uri);
        m_resources.emplace(uri, Resource{document, ""});
        // Compiling the whole document registers its "$id"s and anchors.
        compileAt(m_impl.documents[document], uri, document, "");
        return document;
    }

    const Node* resolve(const PendingRef& pending) {
        std::string base(uriWithoutFragment(pending.target));
        std::string fragment = percentDecode(uriFragment(pending.target));
        auto unresolvable = [&](const std::string& why) -> SchemaError {
            return SchemaError("at \"" + pending.where + "\": unresolvable $ref \"" + pending.reference + "\": " + why);
        };

        if (!fragment.empty() && fragment[0] != '/') {
            // A location-independent identifier ("$id": "#foo").
            auto key = base + "#" + fragment;
            if (auto it = m_anchors.find(key); it != m_anchors.end()) return it->second;
            if (!m_resources.contains(base)) {
                loadDocument(base, pending);
                if (auto it = m_anchors.find(key); it != m_anchors.end()) return it->second;
            }
            throw unresolvable("no schema has \"$id\": \"#" + fragment + "\"");
        }

        auto resource = m_resources.find(base);
        if (resource == m_resources.end()) {
            loadDocument(base, pending);
            resource = m_resources.find(base);
        }
        const std::size_t document = resource->second.document;
        std::string pointer = resource->second.pointer + fragment;
        if (auto it = m_byLocation.find(locationKey(document, pointer)); it != m_byLocation.end())
            return it->second;

        // Not a schema compiled so far (e.g. under an unknown keyword): walk the pointer from the
        // document root, following "$id" changes of the base URI on the way.
        const json* current = &m_impl.documents[document];
        std::string currentBase = m_documentBases[document];
        std::size_t position = 1;
        while (position <= pointer.size() && !pointer.empty()) {
            auto next = pointer.find('/', position);
            if (next == std::string::npos) next = pointer.size();
            std::string token = unescapePointerToken(std::string_view(pointer).substr(position, next - position));
            position = next + 1;
            if (current->is_object()) {
                if (auto id = current->find("$id");
                    id != current->end() && id->is_string() && !current->contains("$ref"))
                    currentBase = std::string(uriWithoutFragment(resolveUri(currentBase, id->get<std::string>())));
                auto it = current->find(token);
                if (it == current->end()) throw unresolvable("\"" + pointer + "\" does not exist");
                current = &*it;
            } else if (current->is_array()) {
                char* end = nullptr;
                unsigned long index = std::strtoul(token.c_str(), &end, 10);
                if (token.empty() || *end != '\0' || index >= current->size())
                    throw unresolvable("\"" + pointer + "\" does not exist");
                current = &(*current)[index];
            } else {
                throw unresolvable("\"" + pointer + "\" does not exist");
            }
        }
        return compileAt(*current, currentBase, document, pointer);
    }

    void collapseRefChains() {
        for (auto& node : m_impl.nodes) {
            if (!node->ref) continue;
            const Node* target = node->ref;
            std::size_t steps = 0;
            while (target->ref) {
                target = target->ref;
                if (++steps > m_impl.nodes.size())
                    throw SchemaError("circular $ref: a chain of references never reaches a schema");
            }
            node->ref = target;
        }
        if (m_impl.root->ref) m_impl.root = m_impl.root->ref;
    }

    CompiledSchema::Impl& m_impl;
    const SchemaCompileOptions& m_options;
    std::vector<std::string> m_documentBases;
    std::unordered_map<std::string, Node*> m_byLocation;
    std::unordered_map<std::string, Node*> m_anchors;
    std::unordered_map<std::string, Resource> m_resources;
    std::deque<PendingRef> m_pending;
};

} // namespace

std::unique_ptr<CompiledSchema> CompiledSchema::compile(const nlohmann::json& schema,
                                                        const SchemaCompileOptions& options) {
    auto impl = std::make_unique<Impl>();
    Compiler(*impl, options).compileRoot(schema);
    return std::unique_ptr<CompiledSchema>(new CompiledSchema(std::move(impl)));
}

CompiledSchema::CompiledSchema(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

CompiledSchema::~CompiledSchema() = default;

} // namespace pipescope
