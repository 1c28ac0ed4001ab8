#include "identity/identity_graph.h"

#include "identity/compact_containers.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <xxhash.h>

namespace pipescope {

namespace {

using compact::ChunkedVector;
using compact::IndexTable;
using compact::TextArena;
constexpr std::uint32_t kNone = compact::kNoIndex;
constexpr std::int64_t kNoTime = std::numeric_limits<std::int64_t>::min();

// ---------------------------------------------------------------------------------------------
// Illegal ids and the probable-same-user key

// Bytes of the whitespace character at `i` (what JavaScript's trim() removes, as PostHog checks
// ids with it), or 0.
std::size_t whitespaceLength(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) {
        return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u;
    };
    const unsigned c = byte(0);
    if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
    if (c == 0xC2 && byte(1) == 0xA0) return 2;                    // U+00A0
    if (c == 0xE1 && byte(1) == 0x9A && byte(2) == 0x80) return 3; // U+1680
    if (c == 0xE2 && byte(1) == 0x80) {
        const unsigned d = byte(2);
        if ((d >= 0x80 && d <= 0x8A) || d == 0xA8 || d == 0xA9 || d == 0xAF)
            return 3; // U+2000-200A, 2028, 2029, 202F
    }
    if (c == 0xE2 && byte(1) == 0x81 && byte(2) == 0x9F) return 3; // U+205F
    if (c == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80) return 3; // U+3000
    if (c == 0xEF && byte(1) == 0xBB && byte(2) == 0xBF) return 3; // U+FEFF
    return 0;
}

bool isBlank(std::string_view text) {
    if (!text.empty() && static_cast<unsigned char>(text[0]) > ' ' &&
        static_cast<unsigned char>(text[0]) < 0x80)
        return false; // the usual id: a printable ASCII first character
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t length = whitespaceLength(text, i);
        if (length == 0) return false;
        i += length;
    }
    return true;
}

constexpr std::array<std::string_view, 10> kIllegalAnyCase{
    "anonymous",         "guest", "distinctid", "distinct_id", "id",
    "not_authenticated", "email", "undefined",  "true",        "false"};
constexpr std::array<std::string_view, 7> kIllegalExact{"[object Object]", "NaN", "None", "none", "null", "0",
                                                        "undefined"};
constexpr std::size_t kLongestIllegal = 17; // "not_authenticated"

bool equalsIgnoringCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != b[i]) return false;
    }
    return true;
}

bool isListedIllegal(std::string_view id) {
    if (id.size() > kLongestIllegal) return false;
    for (auto exact : kIllegalExact)
        if (id == exact) return true;
    for (auto word : kIllegalAnyCase)
        if (equalsIgnoringCase(id, word)) return true;
    return false;
}

bool isAlphanumeric(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

// Longest first, so "user_1" strips "user", not "u".
constexpr std::array<std::string_view, 10> kUserPrefixes{"customer", "account", "member", "cust", "acct",
                                                         "user",     "uid",     "usr",    "id",   "u"};

void sameUserKeyInto(std::string_view id, std::string& key) {
    key.clear();
    // A prefix counts only when it stands apart: followed by a separator or a digit ("user_bob",
    // "u123"), so "uber" or "identity" keep their first letters.
    std::size_t skip = 0;
    for (auto prefix : kUserPrefixes) {
        if (id.size() <= prefix.size() || !equalsIgnoringCase(id.substr(0, prefix.size()), prefix)) continue;
        const auto next = static_cast<unsigned char>(id[prefix.size()]);
        if (!isAlphanumeric(next) || (next >= '0' && next <= '9')) {
            skip = prefix.size();
            break;
        }
    }
    for (std::size_t i = skip; i < id.size(); ++i) {
        auto c = static_cast<unsigned char>(id[i]);
        if (!isAlphanumeric(c)) continue;
        if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
        key.push_back(static_cast<char>(c));
    }
    if (key.size() < 3) key.clear();
}

std::string inQuotes(std::string_view text) {
    return nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

enum NodeFlag : std::uint8_t {
    Identified = 1,          // on roots: the person is identified
    UsedByClient = 2,        // the id was the distinct id of a client-stream event
    UsedByServer = 4,        // ... of a server-stream event
    AnonymousOfIdentify = 8, // the id was the source of a successful identify link
    PersonHasClient = 16,    // on roots, during finish(): some id of the person is UsedByClient
    HasPerson = 32,          // on roots: a person exists (not only personless events)
    Normalized = 64,         // capture normalisation changed the id (its original is kept aside)
    IllegalId = 128,         // an illegal distinct id: a person of its own, left out of correlations
};

// One distinct id: union-find entry plus the first event that used it.
struct IdNode {
    const char* text = nullptr; // the id, directly followed by the first event's origin
    std::int64_t firstSeq = 0;
    std::int64_t firstTime = kNoTime;
    std::uint32_t textLength = 0;
    std::uint32_t parent = 0;
    std::uint32_t size = 1;         // ids in the person, on roots
    std::uint32_t joinLink = kNone; // the first link that brought the id into a person
    std::uint32_t firstName = 0;
    std::uint32_t project = 0;
    std::uint32_t properties = kNone; // on roots: the person's properties (index into propLists)
    std::uint32_t reserved = 0;
    std::uint16_t firstOriginLength = 0;
    std::uint8_t firstStream = 0;
    std::uint8_t flags = 0;

    std::string_view id() const { return {text, textLength}; }
    std::string_view origin() const { return {text + textLength, firstOriginLength}; }
};
static_assert(sizeof(IdNode) == 64);

struct LinkEntry {
    std::int64_t seq = 0;
    std::int64_t time = kNoTime;
    const char* origin = nullptr;
    std::uint32_t source = kNone; // a node, or an index into illegal ids when SkippedIllegal
    std::uint32_t target = kNone;
    std::uint32_t name = 0;
    std::uint16_t originLength = 0;
    LinkKind kind = LinkKind::Identify;
    LinkOutcome outcome = LinkOutcome::Merged;
    std::uint8_t stream = 0;
    bool sourceIdentified = false;
    bool targetIdentified = false;
    bool targetIllegal = false;
};

// One issue, compactly; turned into an IdentityIssue only when asked for. Fields by kind:
//   illegal_distinct_id      subject = illegal id, other = link (kNone: the distinct id), extra = name
//   merge_refused            other = link
//   split_identity           subject = correlation group, extra = persons
//   shared_device            subject = correlation group, extra = persons
//   orphan_server_id         subject = node
//   post_identify_anonymous  subject = node, extra = name
//   probable_same_user       subject = probable group, extra = persons
//   dropped_personless       subject = distinct id (in illegal ids), other = project, extra = name
// `node` is the event's distinct id when it has one (an illegal distinct id's own person).
struct IssueEntry {
    std::int64_t seq = -1;
    std::uint32_t subject = kNone;
    std::uint32_t other = kNone;
    std::uint32_t extra = 0;
    std::uint32_t node = kNone;
};

// A change of a person property, compactly: the event (seq, distinct id, name) and what it did.
// Keys and values are interned texts (a value id of kNone: removed).
struct PropChange {
    std::int64_t seq = 0;
    std::int64_t mergeSeq = 0; // merge: the event whose merge dropped the value
    std::uint32_t node = kNone;
    std::uint32_t name = 0;
    std::uint32_t value = kNone;
    std::uint32_t older = kNone; // the change before this one in the property's history
    PropertyOp op = PropertyOp::Set;
    bool merge = false; // the value a merge dropped: the target's won
};
static_assert(sizeof(PropChange) == 40);

// One property of a person: its value, the change that set it, and the history it replaced
// (newest first, at most evidenceLimit kept).
struct PropEntry {
    std::int64_t seq = 0;
    std::uint32_t key = 0;
    std::uint32_t value = kNone; // kNone: removed ($unset), kept for its blame
    std::uint32_t node = kNone;
    std::uint32_t name = 0;
    std::uint32_t history = kNone;
    std::uint32_t historyCount = 0; // all replaced changes, listed or not
    PropertyOp op = PropertyOp::Set;

    bool removed() const { return value == kNone; }
};
static_assert(sizeof(PropEntry) == 40);
using PropList = std::vector<PropEntry>; // by key id

// Interned texts: each distinct text stored once in the arena, found by hash.
class TextPool {
public:
    std::uint32_t find(std::string_view text) const {
        return m_index.find(XXH3_64bits(text.data(), text.size()), [&](std::uint32_t i) { return at(i) == text; });
    }
    std::uint32_t intern(std::string_view text) {
        const std::uint64_t hash = XXH3_64bits(text.data(), text.size());
        const std::uint32_t found = m_index.find(hash, [&](std::uint32_t i) { return at(i) == text; });
        if (found != kNone) return found;
        const auto index = static_cast<std::uint32_t>(m_texts.size());
        m_texts.push_back({m_arena.store(text), static_cast<std::uint32_t>(text.size())});
        m_index.insert(hash, index, [&](std::uint32_t i) { return XXH3_64bits(m_texts[i].data, m_texts[i].size); });
        return index;
    }
    std::string_view at(std::uint32_t index) const { return {m_texts[index].data, m_texts[index].size}; }

private:
    struct Text {
        const char* data;
        std::uint32_t size;
    };
    TextArena m_arena;
    ChunkedVector<Text> m_texts;
    IndexTable m_index;
};

struct CorrelationMember {
    std::uint32_t node = kNone;
    std::uint32_t span = kNone; // its UseSpan, on device groups only
    std::int64_t firstSeq = 0;
};

// When one id used one device value: the times of its first and last event on it. Kept only for
// the device key, whose values are few next to sessions.
struct UseSpan {
    std::int64_t first = std::numeric_limits<std::int64_t>::max(); // kNoTime: an event had no time
    std::int64_t last = std::numeric_limits<std::int64_t>::min();

    // An event without a time: the order of uses is unknown. kNoTime is the smallest: it sticks.
    bool untimed() const { return first == kNoTime; }
    void add(const std::optional<std::int64_t>& time) {
        first = std::min(first, time.value_or(kNoTime));
        if (time) last = std::max(last, *time);
    }
};
static_assert(sizeof(UseSpan) == 16);

// The events sharing one value of one correlation key. Nearly every group has one id, kept inline;
// further ids go to a member list allocated only then.
struct CorrelationGroup {
    const char* value = nullptr;
    std::int64_t firstSeq = 0;
    std::uint32_t valueLength = 0;
    std::uint32_t key = 0;
    std::uint32_t firstNode = kNone;
    std::uint32_t eventCount = 0; // saturates
    std::uint32_t more = kNone;   // index into the member lists, kNone while one id
    std::uint32_t span = kNone;   // the first id's UseSpan, on device groups only

    std::string_view valueText() const { return {value, valueLength}; }
};
static_assert(sizeof(CorrelationGroup) == 40);

std::uint16_t clampLength(std::size_t length) {
    return static_cast<std::uint16_t>(
        std::min<std::size_t>(length, std::numeric_limits<std::uint16_t>::max()));
}

// person-property-utils.ts FILTERED_PERSON_UPDATE_PROPERTIES: changes to these alone do not make
// PostHog write a person (they change on every page view).
bool isFilteredPersonProperty(std::string_view key) {
    static constexpr std::array<std::string_view, 31> kFiltered{
        "$current_url", "$pathname", "$referring_domain", "$referrer", "$screen_height", "$screen_width",
        "$viewport_height", "$viewport_width", "$browser", "$browser_version", "$device_type", "$raw_user_agent",
        "$os", "$os_name", "$os_version", "$geoip_postal_code", "$geoip_time_zone", "$geoip_latitude",
        "$geoip_longitude", "$geoip_accuracy_radius", "$geoip_subdivision_1_code", "$geoip_subdivision_1_name",
        "$geoip_subdivision_2_code", "$geoip_subdivision_2_name", "$geoip_subdivision_3_code",
        "$geoip_subdivision_3_name", "$geoip_city_confidence", "$geoip_country_confidence",
        "$geoip_postal_code_confidence", "$geoip_subdivision_1_confidence", "$geoip_subdivision_2_confidence"};
    if (key.empty() || key.front() != '$') return false;
    return std::find(kFiltered.begin(), kFiltered.end(), key) != kFiltered.end();
}

} // namespace

// ---------------------------------------------------------------------------------------------

struct IdentityGraph::State {
    IdentityOptions options;
    TextArena arena;
    ChunkedVector<IdNode> nodes;
    IndexTable idIndex;
    ChunkedVector<LinkEntry> links;
    std::array<std::vector<IssueEntry>, kIdentityIssueKindCount> issues;
    std::vector<std::string_view> names;
    std::unordered_map<std::string_view, std::uint32_t> nameIndex;
    std::vector<std::string> illegalIds;
    std::unordered_map<std::string, std::uint32_t> illegalIndex;
    std::vector<std::string_view> correlationKeys;
    std::vector<bool> deviceKeys; // per correlation key: it is options.deviceKey
    ChunkedVector<UseSpan> spans;
    ChunkedVector<CorrelationGroup> groups;
    IndexTable groupIndex;
    std::vector<std::vector<CorrelationMember>> groupMembers; // sorted by node, the first id excluded
    // The first server event of an id whose first event was not a server one (rare, so a map).
    std::unordered_map<std::uint32_t, std::int64_t> firstServerSeq;
    // The anonymous side of an identify -> the earliest time it was identified (kNoTime when an
    // identify without a time named it: then only processing order can tell what came after).
    // One per identified anonymous id, so an open-addressing table of 16-byte entries, not a map.
    struct IdentifiedAt {
        std::uint32_t node = kNone;
        std::int64_t time = kNoTime;
    };
    ChunkedVector<IdentifiedAt> identifiedAt;
    IndexTable identifiedIndex;
    static std::uint64_t nodeHash(std::uint32_t node) { return XXH3_64bits(&node, sizeof node); }
    std::uint32_t findIdentified(std::uint32_t node) const {
        return identifiedIndex.find(nodeHash(node), [&](std::uint32_t i) { return identifiedAt[i].node == node; });
    }
    std::vector<std::vector<std::uint32_t>> probableGroups;
    struct GroupEntry {
        nlohmann::json properties = nlohmann::json::object();
        std::vector<std::uint32_t> members; // nodes, sorted
        std::uint64_t events = 0;
        std::int64_t firstSeq = 0;
    };
    std::map<std::pair<std::string, std::string>, GroupEntry> personGroups; // (type, key) -> group

    // Person properties, per person (root) that has any. A merge combines two lists into one.
    std::vector<PropList> propLists;
    std::vector<std::uint32_t> freePropLists;
    std::vector<std::uint32_t> propertyOwners; // per propLists entry: its root (kNone: free)
    std::vector<bool> filteredKeys;            // per key id: FILTERED_PERSON_UPDATE_PROPERTIES
    TextPool propertyKeys;
    TextPool propertyValues;               // minified JSON
    ChunkedVector<PropChange> changes;     // every property's history, linked newest first
    std::vector<std::uint32_t> freeChanges; // history past evidenceLimit, for reuse
    // The event that first marked a person identified, per root.
    struct IdentifiedBy {
        std::int64_t seq = 0;
        std::uint32_t node = kNone; // the event's distinct id
        std::uint32_t name = 0;
    };
    std::unordered_map<std::uint32_t, IdentifiedBy> identifiedBy;
    std::unordered_map<std::uint32_t, std::string> originals; // normalised node -> id as first sent
    std::vector<std::string_view> projects{std::string_view()};
    std::unordered_map<std::string_view, std::uint32_t> projectIndex{{std::string_view(), 0}};
    std::vector<IdentitySummary::Project> projectCounts{IdentitySummary::Project{}};
    std::uint32_t lastProject = 0;
    std::string scratch;

    std::uint64_t events = 0;
    std::uint64_t persons = 0;
    std::uint64_t identifiedPersons = 0;
    std::uint64_t merges = 0;
    std::uint64_t personlessEvents = 0;
    std::uint64_t personlessIds = 0;
    std::uint64_t droppedEvents = 0;
    bool finished = false;

    explicit State(IdentityOptions opts) : options(std::move(opts)) {}

    // The event names PostHog's person processing treats apart, found once per event.
    enum class NameKind : std::uint8_t { Other, Identify, CreateAlias, MergeDangerously, GroupIdentify, Set, NoPersonUpdate };
    static NameKind kindOf(std::string_view name) {
        if (name.size() < 4 || name.front() != '$') return NameKind::Other;
        // The size and the second character tell the candidates apart before any comparison.
        const char second = name[1];
        switch (name.size()) {
        case 4: return name == "$set" ? NameKind::Set : NameKind::Other;
        case 9:
            if (second == 'i') return name == "$identify" ? NameKind::Identify : NameKind::Other;
            return second == '$' && name == "$$heatmap" ? NameKind::NoPersonUpdate : NameKind::Other;
        case 10: return second == 'e' && name == "$exception" ? NameKind::NoPersonUpdate : NameKind::Other;
        case 13: return second == 'c' && name == "$create_alias" ? NameKind::CreateAlias : NameKind::Other;
        case 14: return second == 'g' && name == "$groupidentify" ? NameKind::GroupIdentify : NameKind::Other;
        case 18: return second == 'm' && name == "$merge_dangerously" ? NameKind::MergeDangerously : NameKind::Other;
        default: return NameKind::Other;
        }
    }
    // PERSON_EVENTS of person-update.ts: their changes are always written.
    static bool isPersonUpdateEvent(NameKind kind) {
        return kind == NameKind::Identify || kind == NameKind::CreateAlias || kind == NameKind::MergeDangerously ||
               kind == NameKind::Set;
    }
    // Dropped when personless (normalize-process-person-flag-step.ts).
    static bool isPersonEvent(NameKind kind) {
        return kind == NameKind::Identify || kind == NameKind::CreateAlias || kind == NameKind::MergeDangerously ||
               kind == NameKind::GroupIdentify;
    }
    // Events whose person properties PostHog never applies: $exception and $$heatmap run in other
    // pipelines (person-update.ts NO_PERSON_UPDATE_EVENTS); a $groupidentify's $set is removed
    // (utils/event.ts normalizeProcessPerson).
    static bool updatesPerson(NameKind kind) {
        return kind != NameKind::NoPersonUpdate && kind != NameKind::GroupIdentify;
    }

    std::vector<IssueEntry>& issuesOf(IdentityIssueKind kind) {
        return issues[static_cast<std::size_t>(kind)];
    }

    // --- ids

    static std::uint64_t idHash(std::string_view id, std::uint32_t project) {
        return XXH3_64bits_withSeed(id.data(), id.size(), project);
    }
    std::uint32_t findId(std::string_view id, std::uint32_t project, std::uint64_t hash) const {
        return idIndex.find(hash, [&](std::uint32_t node) {
            return nodes[node].project == project && nodes[node].id() == id;
        });
    }
    std::uint32_t findId(std::string_view id, std::uint32_t project) const {
        return findId(id, project, idHash(id, project));
    }
    std::optional<std::uint32_t> findProject(std::string_view project) const {
        const auto found = projectIndex.find(project);
        if (found == projectIndex.end()) return std::nullopt;
        return found->second;
    }

    std::uint32_t internProject(std::string_view project) {
        // Events come in long runs of one project: the last one answers without a hash.
        const std::string_view last = projects[lastProject];
        if (project.size() == last.size() && (project.empty() || project == last)) return lastProject;
        const auto found = projectIndex.find(project);
        if (found != projectIndex.end()) return lastProject = found->second;
        const std::string_view stored(arena.store(project), project.size());
        projects.push_back(stored);
        projectCounts.emplace_back();
        return lastProject = projectIndex.emplace(stored, static_cast<std::uint32_t>(projects.size() - 1)).first->second;
    }

    // A new id; `withPerson` false for an id of a personless event (no person until a person
    // event or a merge names it).
    std::uint32_t addId(std::string_view id, std::uint32_t project, std::uint64_t hash, const IdentityEvent& event,
                        bool withPerson) {
        const auto index = static_cast<std::uint32_t>(nodes.size());
        IdNode node;
        const std::uint16_t originLength = clampLength(event.origin.size());
        node.text = arena.store(id, event.origin.substr(0, originLength));
        node.textLength = static_cast<std::uint32_t>(id.size());
        node.firstOriginLength = originLength;
        node.firstSeq = event.seq;
        node.firstTime = event.timeMillis.value_or(kNoTime);
        node.firstName = internName(event.name);
        node.firstStream = static_cast<std::uint8_t>(event.stream);
        node.project = project;
        node.parent = index;
        nodes.push_back(node);
        idIndex.insert(hash, index, [&](std::uint32_t n) { return idHash(nodes[n].id(), nodes[n].project); });
        ++projectCounts[project].ids;
        if (withPerson) {
            givePerson(index);
        } else {
            ++personlessIds;
        }
        return index;
    }

    void givePerson(std::uint32_t rootNode) {
        IdNode& node = nodes[rootNode];
        if (node.flags & HasPerson) return;
        node.flags |= HasPerson;
        ++persons;
        ++projectCounts[node.project].persons;
    }

    // Path halving: every other node on the way points to its grandparent.
    std::uint32_t root(std::uint32_t node) {
        while (nodes[node].parent != node) {
            nodes[node].parent = nodes[nodes[node].parent].parent;
            node = nodes[node].parent;
        }
        return node;
    }
    std::uint32_t rootOf(std::uint32_t node) const {
        while (nodes[node].parent != node)
            node = nodes[node].parent;
        return node;
    }

    // Joins two persons (roots) and returns the new root. Properties are combined with the
    // target's winning (person-merge-service.ts: {...otherPerson.properties, ...mergeInto.properties}).
    std::uint32_t unite(std::uint32_t sourceRoot, std::uint32_t targetRoot, std::int64_t seq) {
        std::uint32_t a = targetRoot, b = sourceRoot;
        if (nodes[a].size < nodes[b].size) std::swap(a, b);
        IdNode& kept = nodes[a];
        IdNode& absorbed = nodes[b];
        absorbed.parent = a;
        kept.size += absorbed.size;
        auto& counts = projectCounts[kept.project];
        if ((kept.flags & HasPerson) && (absorbed.flags & HasPerson)) {
            --persons;
            --counts.persons;
        } else if (!(kept.flags & HasPerson) && !(absorbed.flags & HasPerson)) {
            ++persons;
            ++counts.persons;
        }
        if ((kept.flags & Identified) && (absorbed.flags & Identified)) {
            --identifiedPersons;
            --counts.identifiedPersons;
        }
        kept.flags |= absorbed.flags & (Identified | HasPerson);
        kept.flags |= HasPerson;
        // The person first identified, of the two.
        const auto sourceBy = identifiedBy.find(b);
        if (sourceBy != identifiedBy.end()) {
            const auto keptBy = identifiedBy.find(a);
            if (keptBy == identifiedBy.end() || keptBy->second.seq > sourceBy->second.seq)
                identifiedBy[a] = sourceBy->second;
            identifiedBy.erase(b);
        }
        mergeProperties(sourceRoot, targetRoot, a, seq);
        return a;
    }

    void markIdentified(std::uint32_t rootNode, const IdentityEvent& event, std::uint32_t eventNode) {
        IdNode& person = nodes[rootNode];
        if (person.flags & Identified) return;
        person.flags |= Identified;
        ++identifiedPersons;
        ++projectCounts[person.project].identifiedPersons;
        identifiedBy[rootNode] = {event.seq, eventNode, internName(event.name)};
    }

    std::uint32_t internName(std::string_view name) {
        const auto found = nameIndex.find(name);
        if (found != nameIndex.end()) return found->second;
        const std::string_view stored(arena.store(name), name.size());
        names.push_back(stored);
        return nameIndex.emplace(stored, static_cast<std::uint32_t>(names.size() - 1)).first->second;
    }

    std::uint32_t internIllegal(std::string_view id) {
        const auto [it, added] =
            illegalIndex.try_emplace(std::string(id), static_cast<std::uint32_t>(illegalIds.size()));
        if (added) illegalIds.emplace_back(id);
        return it->second;
    }

    // --- person properties

    PropList* propertiesOf(std::uint32_t rootNode) {
        const std::uint32_t index = nodes[rootNode].properties;
        return index == kNone ? nullptr : &propLists[index];
    }
    const PropList* propertiesOf(std::uint32_t rootNode) const {
        const std::uint32_t index = nodes[rootNode].properties;
        return index == kNone ? nullptr : &propLists[index];
    }
    PropList& ensureProperties(std::uint32_t rootNode) {
        if (PropList* list = propertiesOf(rootNode)) return *list;
        std::uint32_t index;
        if (!freePropLists.empty()) {
            index = freePropLists.back();
            freePropLists.pop_back();
        } else {
            index = static_cast<std::uint32_t>(propLists.size());
            propLists.emplace_back();
        }
        nodes[rootNode].properties = index;
        propertyOwners.resize(std::max<std::size_t>(propertyOwners.size(), index + 1), kNone);
        propertyOwners[index] = rootNode;
        return propLists[index];
    }
    PropList takeProperties(std::uint32_t rootNode) {
        const std::uint32_t index = nodes[rootNode].properties;
        if (index == kNone) return {};
        PropList list = std::move(propLists[index]);
        propLists[index] = PropList();
        freePropLists.push_back(index);
        propertyOwners[index] = kNone;
        nodes[rootNode].properties = kNone;
        return list;
    }
    // The last key ids looked up, by the text's address: the extractor hands out the same
    // addresses for the keys PostHog lifts, and a hit still compares the text (an address can be
    // reused for another key), so it only saves the hash.
    struct KeySlot {
        const char* data = nullptr;
        std::uint32_t size = 0;
        std::uint32_t key = kNone;
    };
    std::array<KeySlot, 256> keyCache{};
    static std::size_t keySlot(std::string_view text) {
        return ((reinterpret_cast<std::uintptr_t>(text.data()) >> 3) ^ text.size()) & 255;
    }
    std::uint32_t findKey(std::string_view text) {
        KeySlot& slot = keyCache[keySlot(text)];
        if (slot.data == text.data() && slot.size == text.size() && propertyKeys.at(slot.key) == text) return slot.key;
        const std::uint32_t key = propertyKeys.find(text);
        if (key != kNone) slot = {text.data(), static_cast<std::uint32_t>(text.size()), key};
        return key;
    }

    // Whether a property key is one PostHog filters, by interned key (kNone: an unknown key).
    bool filteredKey(std::uint32_t key, std::string_view text) const {
        if (key == kNone || key >= filteredKeys.size()) return isFilteredPersonProperty(text);
        return filteredKeys[key];
    }
    std::uint32_t internKey(std::string_view text) {
        const std::uint32_t cached = findKey(text);
        if (cached != kNone) return cached;
        const std::uint32_t key = propertyKeys.intern(text);
        keyCache[keySlot(text)] = {text.data(), static_cast<std::uint32_t>(text.size()), key};
        if (key >= filteredKeys.size()) filteredKeys.resize(key + 1, false);
        filteredKeys[key] = isFilteredPersonProperty(text);
        return key;
    }

    std::uint32_t newChange(const PropChange& change) {
        if (!freeChanges.empty()) {
            const std::uint32_t index = freeChanges.back();
            freeChanges.pop_back();
            changes[index] = change;
            return index;
        }
        changes.push_back(change);
        return static_cast<std::uint32_t>(changes.size() - 1);
    }
    void freeHistory(std::uint32_t index) {
        while (index != kNone) {
            const std::uint32_t older = changes[index].older;
            freeChanges.push_back(index);
            index = older;
        }
    }
    // The entry's current state, as a change for its history.
    static PropChange asChange(const PropEntry& entry) {
        PropChange change;
        change.seq = entry.seq;
        change.node = entry.node;
        change.name = entry.name;
        change.value = entry.value;
        change.op = entry.op;
        return change;
    }
    // Puts `change` at the head of the entry's history; the history keeps evidenceLimit changes.
    void pushHistory(PropEntry& entry, PropChange change) {
        change.older = entry.history;
        entry.history = newChange(change);
        ++entry.historyCount;
        std::uint32_t at = entry.history;
        for (std::size_t kept = 1; at != kNone && kept < options.evidenceLimit; ++kept)
            at = changes[at].older;
        if (at != kNone) {
            freeHistory(changes[at].older);
            changes[at].older = kNone;
        }
    }

    void mergeProperties(std::uint32_t sourceRoot, std::uint32_t targetRoot, std::uint32_t newRoot, std::int64_t seq) {
        PropList source = takeProperties(sourceRoot);
        PropList target = takeProperties(targetRoot);
        if (source.empty() && target.empty()) return;
        const std::size_t targetSize = target.size();
        for (PropEntry& from : source) {
            const auto end = target.begin() + static_cast<std::ptrdiff_t>(targetSize);
            auto into = std::find_if(target.begin(), end, [&](const PropEntry& e) { return e.key == from.key; });
            if (into == end) {
                target.push_back(from);
                continue;
            }
            if (from.removed()) { // nothing of the source's survives or is lost
                freeHistory(from.history);
                continue;
            }
            if (into->removed()) {
                // The key is absent on the target: the source's value comes through the merge.
                const PropChange removal = asChange(*into);
                freeHistory(into->history);
                *into = from;
                pushHistory(*into, removal);
                continue;
            }
            PropChange lost = asChange(from);
            lost.merge = true;
            lost.mergeSeq = seq;
            freeHistory(from.history);
            pushHistory(*into, lost);
        }
        if (!target.empty()) {
            std::sort(target.begin(), target.end(), [](const PropEntry& a, const PropEntry& b) { return a.key < b.key; });
            ensureProperties(newRoot) = std::move(target);
        }
    }

    static bool isNullJson(std::string_view value) { return value == "null"; }
    static bool isCompound(std::string_view value) {
        return !value.empty() && (value.front() == '{' || value.front() == '[');
    }

    // PostHog's computeEventPropertyUpdates + applyEventPropertyUpdates (person-update.ts).
    void applyUpdates(std::uint32_t rootNode, std::uint32_t eventNode, const IdentityEvent& event, NameKind nameKind) {
        if (event.personUpdates.empty()) return;
        PropList* existing = propertiesOf(rootNode);
        const auto find = [&](PropList* list, std::uint32_t key) -> PropEntry* {
            if (!list || key == kNone) return nullptr;
            for (PropEntry& entry : *list)
                if (entry.key == key) return &entry;
            return nullptr;
        };
        const auto valueOf = [&](const PropEntry* entry) { return propertyValues.at(entry->value); };
        // An event that is not a person event and changes only properties PostHog filters
        // ($current_url, $browser, geoip...; FILTERED_PERSON_UPDATE_PROPERTIES) is an "ignored"
        // update: the person is not written for it.
        if (!isPersonUpdateEvent(nameKind)) {
            bool triggers = false;
            for (const auto& update : event.personUpdates) {
                const std::uint32_t key = findKey(update.key);
                const PropEntry* at = find(existing, key);
                const bool absent = !at || at->removed();
                if (update.op == PropertyOp::Unset) {
                    triggers = !absent;
                } else if (update.op == PropertyOp::SetOnce) {
                    triggers = (absent || (isNullJson(valueOf(at)) && !isNullJson(update.value))) &&
                               !filteredKey(key, update.key);
                } else {
                    // A new key always triggers; a filtered one never does otherwise.
                    triggers = absent || (!filteredKey(key, update.key) &&
                                          (valueOf(at) != update.value || isCompound(update.value)));
                }
                if (triggers) break;
            }
            if (!triggers) return;
        }
        PropList& list = existing ? *existing : ensureProperties(rootNode);
        const std::uint32_t name = internName(event.name);
        // $unset acts on what the person had before the event: `propertyKey in personProperties`.
        std::uint32_t unsets[8];
        std::size_t unsetCount = 0;
        std::vector<std::uint32_t> moreUnsets;
        for (const auto& update : event.personUpdates) {
            if (update.op != PropertyOp::Unset) continue;
            const std::uint32_t key = findKey(update.key);
            const PropEntry* at = find(&list, key);
            if (!at || at->removed()) continue;
            if (unsetCount < 8)
                unsets[unsetCount++] = key;
            else
                moreUnsets.push_back(key);
        }
        for (const auto& update : event.personUpdates) {
            if (update.op == PropertyOp::Unset) continue;
            const std::uint32_t key = internKey(update.key);
            PropEntry* at = find(&list, key);
            const bool absent = !at || at->removed();
            if (update.op == PropertyOp::SetOnce) {
                // A null already on the person counts as absent, unless the new value is null too.
                if (!absent && !(isNullJson(valueOf(at)) && !isNullJson(update.value))) continue;
            } else if (!absent && valueOf(at) == update.value && !isCompound(update.value)) {
                continue; // `personProperties[key] !== value`: the same primitive changes nothing
            }
            if (!at) {
                PropEntry entry;
                entry.key = key;
                list.push_back(entry);
                at = &list.back();
            } else {
                pushHistory(*at, asChange(*at));
            }
            at->value = propertyValues.intern(update.value);
            at->seq = event.seq;
            at->node = eventNode;
            at->name = name;
            at->op = update.op;
        }
        const auto unset = [&](std::uint32_t key) {
            PropEntry* at = find(&list, key);
            if (!at || at->removed()) return;
            pushHistory(*at, asChange(*at));
            at->value = kNone;
            at->seq = event.seq;
            at->node = eventNode;
            at->name = name;
            at->op = PropertyOp::Unset;
        };
        for (std::size_t i = 0; i < unsetCount; ++i) unset(unsets[i]);
        for (const std::uint32_t key : moreUnsets) unset(key);
        if (list.empty()) takeProperties(rootNode);
    }

    // --- events

    // The group a $groupidentify names; true when its distinct id is the group's own (no person).
    GroupEntry* noteGroup(const IdentityEvent& event, bool& groupOwnId) {
        auto [it, added] = personGroups.try_emplace({std::string(event.groupType), std::string(event.groupKey)});
        GroupEntry& group = it->second;
        if (added) group.firstSeq = event.seq;
        ++group.events;
        // PostHog's upsertGroup merges $group_set into what the group has.
        const auto properties = nlohmann::json::parse(event.groupProperties, nullptr, false);
        if (properties.is_object()) group.properties.update(properties);
        const std::string_view id = event.distinctId;
        groupOwnId = id.size() == event.groupType.size() + event.groupKey.size() + 2 && id.front() == '$' &&
                     id.substr(1, event.groupType.size()) == event.groupType &&
                     id[event.groupType.size() + 1] == '_' && id.substr(event.groupType.size() + 2) == event.groupKey;
        return &group;
    }


    void observe(const IdentityEvent& event) {
        ++events;
        const std::uint32_t project = internProject(event.project);
        ++projectCounts[project].events;
        const NameKind nameKind = kindOf(event.name);
        if (!event.processPerson && isPersonEvent(nameKind)) {
            // normalize-process-person-flag-step.ts: dropped, invalid_event_when_process_person_profile_is_false.
            ++droppedEvents;
            issuesOf(IdentityIssueKind::DroppedPersonless)
                .push_back({event.seq, internIllegal(event.distinctId), project, internName(event.name)});
            return;
        }
        GroupEntry* group = nullptr;
        if (!event.groupKey.empty()) {
            bool groupOwnId = false;
            group = noteGroup(event, groupOwnId);
            if (groupOwnId) return; // "$company_acme" is the group itself, not a person
        }
        // Most events reuse a known id: an id found as sent is one normalisation leaves alone (no
        // NUL; at most 200 bytes, so at most 200 code points; a longer stored id is a link source,
        // never cut), and its node knows whether it is illegal.
        std::string_view distinctId = event.distinctId;
        std::uint64_t hash = idHash(distinctId, project);
        std::uint32_t target = findId(distinctId, project, hash);
        if (target != kNone && nodes[target].textLength > 200) target = kNone;
        bool illegal = false;
        if (target != kNone) {
            illegal = nodes[target].flags & IllegalId;
        } else {
            distinctId = normalizeCapturedDistinctId(event.distinctId, scratch);
            if (distinctId.empty()) {
                // PostHog's capture answers EmptyDistinctId: the event never reaches a person.
                ++droppedEvents;
                issuesOf(IdentityIssueKind::IllegalDistinctId)
                    .push_back({event.seq, internIllegal(distinctId), kNone, internName(event.name)});
                return;
            }
            illegal = isIllegalDistinctId(distinctId);
            hash = idHash(distinctId, project);
            target = findId(distinctId, project, hash);
        }
        const bool personless = !event.processPerson;

        std::string_view source;
        LinkKind kind = LinkKind::Identify;
        if (nameKind == NameKind::Identify) {
            source = event.anonymousId;
        } else if (nameKind == NameKind::CreateAlias) {
            source = event.aliasId;
            kind = LinkKind::Alias;
        } else if (nameKind == NameKind::MergeDangerously) {
            source = event.aliasId;
            kind = LinkKind::MergeDangerously;
        }
        // handleIdentifyOrAlias: `'$anon_distinct_id' in properties` (present, even empty: an empty
        // one is unmergeable), a truthy alias (the decoder keeps no falsy one). merge(): an id
        // merged with itself does nothing and marks nothing identified.
        const bool isLink = !personless && source.data() != nullptr && source != distinctId;

        const bool targetSeen = target != kNone;
        if (!targetSeen) {
            target = addId(distinctId, project, hash, event, !personless);
            if (distinctId.data() != event.distinctId.data()) {
                nodes[target].flags |= Normalized;
                originals.emplace(target, std::string(event.distinctId));
            }
            if (illegal) nodes[target].flags |= IllegalId;
        } else if ((nodes[target].flags & AnonymousOfIdentify) && sentAfterIdentify(target, event)) {
            issuesOf(IdentityIssueKind::PostIdentifyAnonymous)
                .push_back({event.seq, target, kNone, internName(event.name)});
        }
        if (illegal)
            issuesOf(IdentityIssueKind::IllegalDistinctId)
                .push_back({event.seq, internIllegal(distinctId), kNone, internName(event.name), target});
        const std::uint32_t targetRoot = root(target);
        const bool targetHadPerson = targetSeen && (nodes[targetRoot].flags & HasPerson);
        if (personless) {
            ++personlessEvents;
        } else if (!(nodes[targetRoot].flags & HasPerson)) {
            givePerson(targetRoot);
            --personlessIds;
        }
        noteStream(target, event);
        if (group) {
            const auto at = std::lower_bound(group->members.begin(), group->members.end(), target);
            if (at == group->members.end() || *at != target) group->members.insert(at, target);
        }

        if (isLink) link(event, kind, source, target, targetHadPerson, illegal, project);
        if (!personless && !event.personUpdates.empty() && updatesPerson(nameKind))
            applyUpdates(root(target), target, event, nameKind);

        if (!illegal)
            for (const Correlation& correlation : event.correlations)
                if (!correlation.value.empty()) correlate(correlation, target, event);
    }

    // Whether an event with the anonymous id `node` was sent after the id was identified. Judged by
    // the events' own times: SDKs batch and retry, so an event captured just before the identify
    // may arrive after it. Without a time on either side, processing order decides.
    bool sentAfterIdentify(std::uint32_t node, const IdentityEvent& event) const {
        const std::uint32_t identified = findIdentified(node);
        if (identified == kNone || identifiedAt[identified].time == kNoTime || !event.timeMillis) return true;
        return *event.timeMillis > identifiedAt[identified].time;
    }

    void noteIdentified(std::uint32_t node, const IdentityEvent& event) {
        nodes[node].flags |= AnonymousOfIdentify;
        const std::int64_t time = event.timeMillis.value_or(kNoTime);
        const std::uint32_t found = findIdentified(node);
        if (found != kNone) {
            identifiedAt[found].time = std::min(identifiedAt[found].time, time); // kNoTime is the smallest: it sticks
            return;
        }
        const auto index = static_cast<std::uint32_t>(identifiedAt.size());
        identifiedAt.push_back({node, time});
        identifiedIndex.insert(nodeHash(node), index, [&](std::uint32_t i) { return nodeHash(identifiedAt[i].node); });
    }

    void noteStream(std::uint32_t node, const IdentityEvent& event) {
        IdNode& entry = nodes[node];
        if (event.stream == Stream::Client) {
            entry.flags |= UsedByClient;
        } else if (event.stream == Stream::Server) {
            if (!(entry.flags & UsedByServer) && entry.firstSeq != event.seq)
                firstServerSeq.emplace(node, event.seq);
            entry.flags |= UsedByServer;
        }
    }

    std::uint32_t addLink(const IdentityEvent& event, LinkKind kind, LinkOutcome outcome,
                          std::uint32_t source, std::uint32_t target, bool sourceIdentified,
                          bool targetIdentified) {
        LinkEntry entry;
        entry.seq = event.seq;
        entry.time = event.timeMillis.value_or(kNoTime);
        entry.originLength = clampLength(event.origin.size());
        entry.origin = arena.store(event.origin.substr(0, entry.originLength));
        entry.source = source;
        entry.target = target;
        entry.name = internName(event.name);
        entry.kind = kind;
        entry.outcome = outcome;
        entry.stream = static_cast<std::uint8_t>(event.stream);
        entry.sourceIdentified = sourceIdentified;
        entry.targetIdentified = targetIdentified;
        links.push_back(entry);
        return static_cast<std::uint32_t>(links.size() - 1);
    }

    // PostHog's merge(otherPersonDistinctId = source, mergeIntoDistinctId = the event's distinct id).
    void link(const IdentityEvent& event, LinkKind kind, std::string_view sourceId, std::uint32_t target,
              bool targetHadPerson, bool targetIllegal, std::uint32_t project) {
        const std::uint32_t targetRoot = root(target);
        const bool targetIdentified = nodes[targetRoot].flags & Identified;
        const bool targetUnmergeable = targetIllegal || isUnmergeableDistinctId(nodes[target].id());
        if (targetUnmergeable || isUnmergeableDistinctId(sourceId)) {
            // cannot_merge_with_illegal_distinct_id: nothing merges, nothing is marked identified.
            const std::uint32_t illegal = internIllegal(targetUnmergeable ? nodes[target].id() : sourceId);
            const std::uint32_t linkIndex =
                addLink(event, kind, LinkOutcome::SkippedIllegal, internIllegal(sourceId), target, false,
                        targetIdentified);
            links[linkIndex].targetIllegal = targetUnmergeable;
            if (!targetIllegal) // an illegal distinct id has its issue already
                issuesOf(IdentityIssueKind::IllegalDistinctId)
                    .push_back({event.seq, illegal, linkIndex, internName(event.name)});
            else
                issuesOf(IdentityIssueKind::IllegalDistinctId).back().other = linkIndex;
            return;
        }
        const std::uint64_t hash = idHash(sourceId, project);
        std::uint32_t source = findId(sourceId, project, hash);
        const bool sourceSeen = source != kNone;
        if (!sourceSeen) source = addId(sourceId, project, hash, event, false);
        const std::uint32_t sourceRoot = root(source);
        const bool sourceHadPerson = nodes[sourceRoot].flags & HasPerson;
        const bool sourceIdentified = nodes[sourceRoot].flags & Identified;

        // mergeDistinctIds: one person exists -> the other id joins it; both -> mergePeople.
        LinkOutcome outcome = LinkOutcome::Joined;
        if (sourceRoot == targetRoot)
            outcome = LinkOutcome::AlreadySame;
        else if (sourceHadPerson && targetHadPerson)
            outcome = sourceIdentified && kind != LinkKind::MergeDangerously ? LinkOutcome::Refused // cannot_merge_already_identified
                                                                             : LinkOutcome::Merged;
        const std::uint32_t linkIndex =
            addLink(event, kind, outcome, source, target, sourceIdentified, targetIdentified);
        std::uint32_t personRoot = targetRoot;
        if (outcome == LinkOutcome::Refused) {
            issuesOf(IdentityIssueKind::MergeRefused).push_back({event.seq, kNone, linkIndex, 0});
        } else if (outcome != LinkOutcome::AlreadySame) {
            personRoot = unite(sourceRoot, targetRoot, event.seq);
            ++merges;
            // What the link brought in: the source's person when two persons merge, else the new ids.
            if (outcome == LinkOutcome::Merged || !sourceHadPerson) noteJoin(source, linkIndex);
            if (!targetHadPerson) noteJoin(target, linkIndex);
        }
        if (!sourceHadPerson) --personlessIds; // the link gave the id a person (addId counted it personless)
        // updateIsIdentified is set before the merge is tried: a refused merge still marks the
        // distinct id's person identified (person-property-service.ts updatePersonProperties).
        markIdentified(personRoot, event, target);
        if (kind == LinkKind::Identify && outcome != LinkOutcome::Refused) noteIdentified(source, event);
    }

    void noteJoin(std::uint32_t node, std::uint32_t linkIndex) {
        if (nodes[node].joinLink == kNone) nodes[node].joinLink = linkIndex;
    }

    std::uint32_t newSpan() {
        spans.push_back(UseSpan{});
        return static_cast<std::uint32_t>(spans.size() - 1);
    }

    void correlate(const Correlation& correlation, std::uint32_t node, const IdentityEvent& event) {
        const std::int64_t seq = event.seq;
        std::uint32_t keyIndex = 0;
        while (keyIndex < correlationKeys.size() && correlationKeys[keyIndex] != correlation.key)
            ++keyIndex;
        if (keyIndex == correlationKeys.size()) {
            correlationKeys.emplace_back(arena.store(correlation.key), correlation.key.size());
            deviceKeys.push_back(correlation.key == options.deviceKey);
        }
        const bool isDevice = deviceKeys[keyIndex];

        const std::uint64_t hash =
            XXH3_64bits_withSeed(correlation.value.data(), correlation.value.size(), keyIndex);
        const auto matches = [&](std::uint32_t g) {
            return groups[g].key == keyIndex && groups[g].valueText() == correlation.value;
        };
        std::uint32_t index = groupIndex.find(hash, matches);
        if (index == kNone) {
            index = static_cast<std::uint32_t>(groups.size());
            CorrelationGroup group;
            group.value = arena.store(correlation.value);
            group.valueLength = static_cast<std::uint32_t>(correlation.value.size());
            group.key = keyIndex;
            group.firstNode = node;
            group.firstSeq = seq;
            if (isDevice) group.span = newSpan();
            groups.push_back(group);
            groupIndex.insert(hash, index, [&](std::uint32_t g) {
                return XXH3_64bits_withSeed(groups[g].value, groups[g].valueLength, groups[g].key);
            });
        }
        CorrelationGroup& group = groups[index];
        if (group.eventCount != std::numeric_limits<std::uint32_t>::max()) ++group.eventCount;
        if (group.firstNode == node) {
            if (group.span != kNone) spans[group.span].add(event.timeMillis);
            return;
        }
        if (group.more == kNone) {
            group.more = static_cast<std::uint32_t>(groupMembers.size());
            groupMembers.emplace_back();
        }
        auto& more = groupMembers[group.more];
        auto at = std::lower_bound(more.begin(), more.end(), node,
                                   [](const CorrelationMember& m, std::uint32_t n) { return m.node < n; });
        if (at == more.end() || at->node != node)
            at = more.insert(at, {node, isDevice ? newSpan() : kNone, seq});
        if (at->span != kNone) spans[at->span].add(event.timeMillis);
    }

    // Whether the persons of a device group used it one after another: each person's first event
    // on it after the previous person's last, and each but the last identified (the pattern of a
    // login, reset() on logout, another login). Any use without a time, two persons using it in the
    // same period, or an anonymous person before another, is not.
    bool usedOneAfterAnother(const CorrelationGroup& group) {
        if (group.span == kNone || group.more == kNone) return false;
        std::vector<std::pair<std::uint32_t, UseSpan>> byPerson; // (root, span), merged per root
        const auto add = [&](std::uint32_t node, std::uint32_t spanIndex) {
            const UseSpan& span = spans[spanIndex];
            if (span.untimed()) return false;
            const std::uint32_t person = root(node);
            auto found = std::find_if(byPerson.begin(), byPerson.end(),
                                      [&](const auto& entry) { return entry.first == person; });
            if (found == byPerson.end()) {
                byPerson.emplace_back(person, span);
            } else {
                found->second.first = std::min(found->second.first, span.first);
                found->second.last = std::max(found->second.last, span.last);
            }
            return true;
        };
        if (!add(group.firstNode, group.span)) return false;
        for (const auto& member : groupMembers[group.more])
            if (member.span == kNone || !add(member.node, member.span)) return false;
        std::sort(byPerson.begin(), byPerson.end(),
                  [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
        for (std::size_t i = 1; i < byPerson.size(); ++i) {
            if (byPerson[i].second.first <= byPerson[i - 1].second.last) return false;
            // reset() is a logout: the person before it had logged in. An anonymous person followed
            // by an identified one, unlinked, is the classic lost identify: a split.
            if (!(nodes[byPerson[i - 1].first].flags & Identified)) return false;
        }
        return true;
    }

    // --- finish

    void finish() {
        for (auto kind : {IdentityIssueKind::SplitIdentity, IdentityIssueKind::SharedDevice,
                          IdentityIssueKind::OrphanServerId, IdentityIssueKind::ProbableSameUser})
            issues[static_cast<std::size_t>(kind)].clear();
        probableGroups.clear();

        std::vector<std::uint32_t> roots;
        for (std::uint32_t g = 0; g < groups.size(); ++g) {
            const CorrelationGroup& group = groups[g];
            if (group.more == kNone) continue;
            roots.assign(1, root(group.firstNode));
            for (const auto& member : groupMembers[group.more])
                roots.push_back(root(member.node));
            const std::size_t personCount = distinctCount(roots);
            if (personCount >= 2)
                issuesOf(usedOneAfterAnother(group) ? IdentityIssueKind::SharedDevice
                                                    : IdentityIssueKind::SplitIdentity)
                    .push_back({group.firstSeq, g, kNone, static_cast<std::uint32_t>(personCount)});
        }

        for (std::uint32_t n = 0; n < nodes.size(); ++n)
            nodes[n].flags &= static_cast<std::uint8_t>(~PersonHasClient);
        for (std::uint32_t n = 0; n < nodes.size(); ++n)
            if (nodes[n].flags & UsedByClient) nodes[root(n)].flags |= PersonHasClient;
        for (std::uint32_t n = 0; n < nodes.size(); ++n) {
            if (!(nodes[n].flags & UsedByServer) || (nodes[n].flags & IllegalId) ||
                (nodes[root(n)].flags & PersonHasClient))
                continue;
            const auto later = firstServerSeq.find(n);
            issuesOf(IdentityIssueKind::OrphanServerId)
                .push_back({later == firstServerSeq.end() ? nodes[n].firstSeq : later->second, n, kNone, 0});
        }

        findProbableSameUsers();
        finished = true;
    }

    static std::size_t distinctCount(std::vector<std::uint32_t>& values) {
        std::sort(values.begin(), values.end());
        return static_cast<std::size_t>(std::unique(values.begin(), values.end()) - values.begin());
    }

    // Groups ids by the hash of their key (16 bytes per id, only while this runs), then checks the
    // keys themselves inside each group of equal hashes.
    void findProbableSameUsers() {
        std::vector<std::pair<std::uint64_t, std::uint32_t>> keyed;
        keyed.reserve(nodes.size());
        std::string key;
        for (std::uint32_t n = 0; n < nodes.size(); ++n) {
            if (nodes[n].flags & IllegalId) continue;
            sameUserKeyInto(nodes[n].id(), key);
            if (!key.empty()) keyed.emplace_back(XXH3_64bits_withSeed(key.data(), key.size(), nodes[n].project), n);
        }
        std::sort(keyed.begin(), keyed.end());
        std::vector<std::pair<std::string, std::uint32_t>> run;
        std::vector<std::uint32_t> roots;
        for (std::size_t begin = 0; begin < keyed.size();) {
            std::size_t end = begin + 1;
            while (end < keyed.size() && keyed[end].first == keyed[begin].first)
                ++end;
            if (end - begin >= 2) {
                run.clear();
                for (std::size_t i = begin; i < end; ++i) {
                    sameUserKeyInto(nodes[keyed[i].second].id(), key);
                    // Persons of two projects are never one user: the project is part of the key.
                    run.emplace_back(std::to_string(nodes[keyed[i].second].project) + '\x1f' + key, keyed[i].second);
                }
                std::sort(run.begin(), run.end());
                for (std::size_t a = 0; a < run.size();) {
                    std::size_t b = a + 1;
                    while (b < run.size() && run[b].first == run[a].first)
                        ++b;
                    roots.clear();
                    for (std::size_t i = a; i < b; ++i)
                        roots.push_back(root(run[i].second));
                    const std::size_t personCount = distinctCount(roots);
                    if (personCount >= 2) {
                        std::vector<std::uint32_t> members;
                        std::int64_t firstSeq = std::numeric_limits<std::int64_t>::max();
                        for (std::size_t i = a; i < b; ++i) {
                            members.push_back(run[i].second);
                            firstSeq = std::min(firstSeq, nodes[run[i].second].firstSeq);
                        }
                        probableGroups.push_back(std::move(members));
                        issuesOf(IdentityIssueKind::ProbableSameUser)
                            .push_back({firstSeq, static_cast<std::uint32_t>(probableGroups.size() - 1),
                                        kNone, static_cast<std::uint32_t>(personCount)});
                    }
                    a = b;
                }
            }
            begin = end;
        }
        auto& probable = issues[static_cast<std::size_t>(IdentityIssueKind::ProbableSameUser)];
        std::stable_sort(probable.begin(), probable.end(),
                         [](const IssueEntry& a, const IssueEntry& b) { return a.seq < b.seq; });
    }

    // --- materialising

    IdentityEventRef firstSeen(std::uint32_t node) const {
        const IdNode& entry = nodes[node];
        IdentityEventRef ref;
        ref.seq = entry.firstSeq;
        ref.name = std::string(names[entry.firstName]);
        if (entry.firstTime != kNoTime) ref.timeMillis = entry.firstTime;
        ref.stream = static_cast<Stream>(entry.firstStream);
        ref.origin = std::string(entry.origin());
        return ref;
    }

    PropertyChange toChange(const PropChange& change) const {
        PropertyChange out;
        out.seq = change.merge ? change.mergeSeq : change.seq;
        out.eventName = std::string(names[change.name]);
        out.distinctId = change.node == kNone ? std::string() : std::string(nodes[change.node].id());
        out.op = change.merge ? "merge" : std::string(toString(change.op));
        if (change.value != kNone) out.value = std::string(propertyValues.at(change.value));
        if (change.merge) // the dropped value was set by another event; say which
            out.eventName = "merge (value set by #" + std::to_string(change.seq) + " " +
                            std::string(names[change.name]) + ")";
        return out;
    }

    PersonProperty toProperty(const PropEntry& entry) const {
        PersonProperty property;
        property.key = std::string(propertyKeys.at(entry.key));
        property.removed = entry.removed();
        if (!property.removed) property.value = std::string(propertyValues.at(entry.value));
        property.setBy = toChange(State::asChange(entry));
        for (std::uint32_t at = entry.history; at != kNone; at = changes[at].older) {
            property.overridden.push_back(toChange(changes[at]));
            if (changes[at].node != entry.node) property.orderDependent = true;
        }
        std::reverse(property.overridden.begin(), property.overridden.end()); // oldest first
        property.overriddenCount = entry.historyCount;
        return property;
    }

    std::string_view linkSourceId(const LinkEntry& entry) const {
        return entry.outcome == LinkOutcome::SkippedIllegal ? std::string_view(illegalIds[entry.source])
                                                            : nodes[entry.source].id();
    }

    IdentityLink toLink(std::uint32_t index) const {
        const LinkEntry& entry = links[index];
        IdentityLink link;
        link.event.seq = entry.seq;
        link.event.name = std::string(names[entry.name]);
        if (entry.time != kNoTime) link.event.timeMillis = entry.time;
        link.event.stream = static_cast<Stream>(entry.stream);
        link.event.origin = std::string(entry.origin, entry.originLength);
        link.kind = entry.kind;
        link.outcome = entry.outcome;
        link.sourceId = std::string(linkSourceId(entry));
        link.targetId = std::string(nodes[entry.target].id());
        link.sourceIdentified = entry.sourceIdentified;
        link.targetIdentified = entry.targetIdentified;
        return link;
    }

    // The identify link that made `node` an anonymous id of a person, for the message.
    std::optional<std::uint32_t> identifyOf(std::uint32_t node) const {
        const std::uint32_t joined = nodes[node].joinLink;
        if (joined != kNone && links[joined].kind == LinkKind::Identify && links[joined].source == node)
            return joined;
        for (std::size_t i = 0; i < links.size(); ++i) {
            const LinkEntry& entry = links[i];
            if (entry.kind == LinkKind::Identify && entry.source == node &&
                entry.outcome != LinkOutcome::Refused && entry.outcome != LinkOutcome::SkippedIllegal)
                return static_cast<std::uint32_t>(i);
        }
        return std::nullopt;
    }

    template <class Range, class IdOf>
    void listIds(IdentityIssue& issue, const Range& range, IdOf idOf) const {
        issue.idCount = 0;
        for (const auto& item : range) {
            if (issue.ids.size() < options.evidenceLimit) issue.ids.emplace_back(idOf(item));
            ++issue.idCount;
        }
    }

    IdentityIssue materialise(IdentityIssueKind kind, const IssueEntry& entry) const {
        IdentityIssue issue;
        issue.kind = kind;
        const std::string event = "event #" + std::to_string(entry.seq);
        switch (kind) {
        case IdentityIssueKind::IllegalDistinctId: {
            const std::string& illegal = illegalIds[entry.subject];
            issue.eventSeqs = {entry.seq};
            issue.eventCount = 1;
            if (illegal.empty()) {
                issue.ids = {illegal};
                issue.idCount = 1;
                issue.message = event + " (" + std::string(names[entry.extra]) +
                                ") has an empty distinct id: PostHog's capture rejects it (EmptyDistinctId), "
                                "no person sees it";
            } else if (entry.other == kNone) {
                issue.ids = {illegal};
                issue.idCount = 1;
                issue.message = event + " (" + std::string(names[entry.extra]) +
                                ") has the illegal distinct id " + inQuotes(illegal) +
                                ": PostHog gives it a person of its own, shared by every event sent with it, "
                                "and merges nothing into it";
            } else {
                issue.link = toLink(entry.other);
                issue.ids = {illegal, issue.link->targetId};
                if (issue.link->targetIllegal) issue.ids = {issue.link->targetId, issue.link->sourceId};
                issue.idCount = 2;
                if (issue.link->targetIllegal)
                    issue.message = event + " (" + issue.link->event.name + ") has the illegal distinct id " +
                                    inQuotes(issue.link->targetId) + " and would link " +
                                    inQuotes(issue.link->sourceId) +
                                    " to it: no merge (cannot_merge_with_illegal_distinct_id), the person is "
                                    "not marked identified";
                else
                    issue.message = event + " (" + issue.link->event.name + ") links the unmergeable id " +
                                    inQuotes(illegal) + " to " + inQuotes(issue.link->targetId) +
                                    ": no merge (cannot_merge_with_illegal_distinct_id), the person of " +
                                    inQuotes(issue.link->targetId) + " is not marked identified";
            }
            break;
        }
        case IdentityIssueKind::DroppedPersonless: {
            const std::string& id = illegalIds[entry.subject];
            issue.ids = {id};
            issue.idCount = 1;
            issue.eventSeqs = {entry.seq};
            issue.eventCount = 1;
            issue.message = event + " (" + std::string(names[entry.extra]) + ", distinct id " + inQuotes(id) +
                            ") is sent with $process_person_profile: false: PostHog drops it "
                            "(invalid_event_when_process_person_profile_is_false), nothing is merged or set";
            break;
        }
        case IdentityIssueKind::MergeRefused: {
            issue.link = toLink(entry.other);
            const IdentityLink& link = *issue.link;
            issue.ids = {link.sourceId, link.targetId};
            issue.idCount = 2;
            issue.eventSeqs = {entry.seq};
            issue.eventCount = 1;
            issue.message = event + " (" + link.event.name + ") would merge the person of " +
                            inQuotes(link.sourceId) + " (already identified) into the person of " +
                            inQuotes(link.targetId) + " (" +
                            (link.targetIdentified ? "identified" : "not identified") +
                            "): refused, as PostHog does (cannot_merge_already_identified); the person of " +
                            inQuotes(link.targetId) + " is marked identified all the same";
            break;
        }
        case IdentityIssueKind::SplitIdentity:
        case IdentityIssueKind::SharedDevice: {
            const CorrelationGroup& group = groups[entry.subject];
            std::vector<CorrelationMember> members{{group.firstNode, kNone, group.firstSeq}};
            if (group.more != kNone)
                members.insert(members.end(), groupMembers[group.more].begin(),
                               groupMembers[group.more].end());
            std::sort(members.begin(), members.end(),
                      [](const CorrelationMember& a, const CorrelationMember& b) {
                          return a.firstSeq < b.firstSeq;
                      });
            listIds(issue, members,
                    [&](const CorrelationMember& m) { return std::string(nodes[m.node].id()); });
            for (const auto& member : members)
                if (issue.eventSeqs.size() < options.evidenceLimit)
                    issue.eventSeqs.push_back(member.firstSeq);
            issue.eventCount = group.eventCount;
            issue.personCount = entry.extra;
            issue.correlationKey = std::string(correlationKeys[group.key]);
            issue.correlationValue = std::string(group.valueText());
            if (kind == IdentityIssueKind::SplitIdentity)
                issue.message = issue.correlationKey + " " + inQuotes(issue.correlationValue) +
                                " is shared by " + std::to_string(issue.idCount) + " ids that end in " +
                                std::to_string(issue.personCount) + " persons (" +
                                std::to_string(group.eventCount) + " events)";
            else
                issue.message = issue.correlationKey + " " + inQuotes(issue.correlationValue) + " was used by " +
                                std::to_string(issue.personCount) + " persons one after another (" +
                                std::to_string(issue.idCount) + " ids, " + std::to_string(group.eventCount) +
                                " events): a shared device (logout with reset(), then another login), not a "
                                "split identity";
            break;
        }
        case IdentityIssueKind::OrphanServerId: {
            const std::string id(nodes[entry.subject].id());
            issue.ids = {id};
            issue.idCount = 1;
            issue.eventSeqs = {entry.seq};
            issue.eventCount = 1;
            issue.message =
                "server id " + inQuotes(id) + " (first server event #" + std::to_string(entry.seq) +
                ") is in a person with no id ever used by a client event: its server events are not "
                "stitched to any client activity";
            break;
        }
        case IdentityIssueKind::PostIdentifyAnonymous: {
            const std::string id(nodes[entry.subject].id());
            issue.ids = {id};
            issue.eventSeqs = {entry.seq};
            issue.eventCount = 1;
            std::string identifiedBy = "an earlier identify";
            if (const auto identify = identifyOf(entry.subject)) {
                const LinkEntry& link = links[*identify];
                const std::string target(nodes[link.target].id());
                issue.ids.push_back(target);
                identifiedBy = inQuotes(target) + " by event #" + std::to_string(link.seq) + " (" +
                               std::string(names[link.name]) + ")";
                if (issue.eventSeqs.size() < options.evidenceLimit) issue.eventSeqs.push_back(link.seq);
            }
            issue.idCount = issue.ids.size();
            issue.eventCount = issue.eventSeqs.size();
            issue.message = event + " (" + std::string(names[entry.extra]) + ") is sent with " +
                            inQuotes(id) + ", the anonymous id identified as " + identifiedBy +
                            ": the SDK kept sending the anonymous id after identify";
            break;
        }
        case IdentityIssueKind::ProbableSameUser: {
            const auto& members = probableGroups[entry.subject];
            listIds(issue, members, [&](std::uint32_t n) { return std::string(nodes[n].id()); });
            for (auto n : members)
                if (issue.eventSeqs.size() < options.evidenceLimit)
                    issue.eventSeqs.push_back(nodes[n].firstSeq);
            issue.eventCount = members.size();
            issue.personCount = entry.extra;
            std::string list;
            for (const auto& id : issue.ids)
                list += (list.empty() ? "" : ", ") + inQuotes(id);
            if (issue.idCount > issue.ids.size()) list += ", ...";
            issue.message = "ids " + list + " look like one user (" +
                            inQuotes(sameUserKey(issue.ids.front())) + ") but are in " +
                            std::to_string(issue.personCount) + " persons";
            break;
        }
        }
        if (kind == IdentityIssueKind::DroppedPersonless) {
            issue.project = std::string(projects[entry.other]);
        } else if (const std::uint32_t node = nodeOf(kind, entry); node != kNone) {
            issue.project = std::string(projects[nodes[node].project]);
        }
        return issue;
    }

    // An id the issue is about, for its project (kNone for an empty distinct id).
    std::uint32_t nodeOf(IdentityIssueKind kind, const IssueEntry& entry) const {
        switch (kind) {
        case IdentityIssueKind::IllegalDistinctId:
            return entry.node != kNone ? entry.node : entry.other != kNone ? links[entry.other].target : kNone;
        case IdentityIssueKind::MergeRefused:
            return links[entry.other].target;
        case IdentityIssueKind::SplitIdentity:
        case IdentityIssueKind::SharedDevice:
            return groups[entry.subject].firstNode;
        case IdentityIssueKind::OrphanServerId:
        case IdentityIssueKind::PostIdentifyAnonymous:
            return entry.subject;
        case IdentityIssueKind::ProbableSameUser:
            return probableGroups[entry.subject].front();
        case IdentityIssueKind::DroppedPersonless:
            return kNone;
        }
        return kNone;
    }

    // Whether an issue names an id of the person whose root is `person`.
    bool involves(IdentityIssueKind kind, const IssueEntry& entry, std::uint32_t person) const {
        const auto in = [&](std::uint32_t node) { return node != kNone && rootOf(node) == person; };
        switch (kind) {
        case IdentityIssueKind::IllegalDistinctId:
            return in(entry.node) || (entry.other != kNone && in(links[entry.other].target));
        case IdentityIssueKind::DroppedPersonless:
            return false;
        case IdentityIssueKind::MergeRefused:
            return in(links[entry.other].source) || in(links[entry.other].target);
        case IdentityIssueKind::SplitIdentity:
        case IdentityIssueKind::SharedDevice: {
            const CorrelationGroup& group = groups[entry.subject];
            if (in(group.firstNode)) return true;
            return group.more != kNone &&
                   std::any_of(groupMembers[group.more].begin(), groupMembers[group.more].end(),
                               [&](const CorrelationMember& m) { return in(m.node); });
        }
        case IdentityIssueKind::OrphanServerId:
        case IdentityIssueKind::PostIdentifyAnonymous:
            return in(entry.subject);
        case IdentityIssueKind::ProbableSameUser: {
            const auto& members = probableGroups[entry.subject];
            return std::any_of(members.begin(), members.end(), in);
        }
        }
        return false;
    }
};

// ---------------------------------------------------------------------------------------------

CorrelationExtractor::CorrelationExtractor(std::vector<std::string> keys)
    : m_keys(std::move(keys)), m_numberText(m_keys.size()) {
    m_found.reserve(m_keys.size());
}

std::span<const Correlation> CorrelationExtractor::extract(simdjson::dom::element properties) {
    m_found.clear();
    simdjson::dom::object object;
    if (properties.get_object().get(object) != simdjson::SUCCESS) return {};
    for (std::size_t i = 0; i < m_keys.size(); ++i) {
        simdjson::dom::element value;
        if (object.at_key(m_keys[i]).get(value) != simdjson::SUCCESS) continue;
        auto& buffer = m_numberText[i];
        std::to_chars_result written{buffer.data(), std::errc()};
        std::string_view text;
        switch (value.type()) {
        case simdjson::dom::element_type::STRING:
            text = value.get_string().value_unsafe();
            break;
        case simdjson::dom::element_type::INT64:
            written =
                std::to_chars(buffer.data(), buffer.data() + buffer.size(), value.get_int64().value_unsafe());
            break;
        case simdjson::dom::element_type::UINT64:
            written = std::to_chars(buffer.data(), buffer.data() + buffer.size(),
                                    value.get_uint64().value_unsafe());
            break;
        case simdjson::dom::element_type::DOUBLE:
            written = std::to_chars(buffer.data(), buffer.data() + buffer.size(),
                                    value.get_double().value_unsafe());
            break;
        default:
            continue;
        }
        if (value.type() != simdjson::dom::element_type::STRING) {
            if (written.ec != std::errc()) continue;
            text = std::string_view(buffer.data(), static_cast<std::size_t>(written.ptr - buffer.data()));
        }
        if (!text.empty()) m_found.push_back({m_keys[i], text});
    }
    return m_found;
}

namespace {

// The event properties PostHog lifts onto the person (person-property-utils.ts:
// EVENT_TO_PERSON_PROPERTIES and CAMPAIGN_PROPERTIES, together eventToPersonProperties).
constexpr std::array<std::string_view, 44> kLiftedProperties{
    "$app_build", "$app_name", "$app_namespace", "$app_version", "$browser", "$browser_version",
    "$device_type", "$current_url", "$pathname", "$os", "$os_name", "$os_version", "$referring_domain",
    "$referrer", "$screen_height", "$screen_width", "$viewport_height", "$viewport_width",
    "$raw_user_agent", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_name", "utm_term",
    "gclid", "gad_source", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "twclid",
    "li_fat_id", "mc_cid", "igshid", "ttclid", "rdt_cid", "irclid", "_kx", "epik", "qclid", "sccid"};

// The static copy of a lifted key (its address is stable across events), or an empty view.
std::string_view liftedKey(std::string_view key) {
    for (const std::string_view& lifted : kLiftedProperties)
        if (lifted == key) return lifted;
    return {};
}

// `$initial_<key>` ("$initial_" + the key without its first "$"), from a table that lives as long
// as the program.
std::string_view initialKeyOf(std::string_view key) {
    static const auto kInitial = [] {
        std::array<std::string, kLiftedProperties.size()> keys;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            const std::string_view lifted = kLiftedProperties[i];
            keys[i] = "$initial_" + std::string(lifted.front() == '$' ? lifted.substr(1) : lifted);
        }
        return keys;
    }();
    for (std::size_t i = 0; i < kLiftedProperties.size(); ++i)
        if (kLiftedProperties[i] == key) return kInitial[i];
    return {};
}

bool isLiftedProperty(std::string_view key) {
    if (key.size() < 3 || key.size() > 17) return false;
    const char first = key.front();
    if (first != '$' && first != 'u' && first != 'g' && first != 'd' && first != 'w' && first != 'f' &&
        first != 'm' && first != 't' && first != 'l' && first != 'i' && first != 'r' && first != '_' &&
        first != 'e' && first != 'q' && first != 's')
        return false;
    return std::find(kLiftedProperties.begin(), kLiftedProperties.end(), key) != kLiftedProperties.end();
}

} // namespace

std::string_view PersonPropertyExtractor::keep(std::string text) {
    if (m_textUsed == m_text.size()) m_text.push_back(std::make_unique<std::string>());
    std::string& slot = *m_text[m_textUsed++];
    slot = std::move(text);
    return slot;
}

std::span<const PersonPropertyUpdate> PersonPropertyExtractor::extract(std::string_view eventName,
                                                                       simdjson::dom::element properties,
                                                                       Format format) {
    m_updates.clear();
    m_textUsed = 0;
    m_processPerson = true;
    simdjson::dom::object object;
    if (properties.get_object().get(object) != simdjson::SUCCESS) return {};
    if (format == Format::Segment) {
        if (eventName == "$identify")
            for (const auto field : object)
                m_updates.push_back({PropertyOp::Set, field.key, keep(simdjson::minify(field.value))});
        return m_updates;
    }
    simdjson::dom::object set, setOnce;
    simdjson::dom::element unset, isServer, osName;
    bool haveSet = false, haveSetOnce = false, haveUnset = false, serverHost = false, haveOsName = false;
    bool anyLifted = false;
    // One pass over the properties: at_key is a linear scan, and events carry dozens of them.
    for (const auto field : object) {
        const std::string_view key = field.key;
        if (key == "$set") {
            if (!haveSet) haveSet = field.value.get_object().get(set) == simdjson::SUCCESS;
        } else if (key == "$set_once") {
            if (!haveSetOnce) haveSetOnce = field.value.get_object().get(setOnce) == simdjson::SUCCESS;
        } else if (key == "$unset") {
            if (!haveUnset) haveUnset = true, unset = field.value;
        } else if (key == "$is_server") {
            serverHost = field.value.is_bool() && field.value.get_bool().value_unsafe();
        } else if (key == "$process_person_profile") {
            // Only a boolean false turns person processing off (decideProcessPerson).
            m_processPerson = !(field.value.is_bool() && !field.value.get_bool().value_unsafe());
        } else if (key == "$os_name") {
            haveOsName = true, osName = field.value, anyLifted = true;
        } else if (!anyLifted && isLiftedProperty(key)) {
            anyLifted = true;
        }
    }
    const auto inObject = [](const simdjson::dom::object& o, bool have, std::string_view key) {
        simdjson::dom::element ignored;
        return have && o.at_key(key).get(ignored) == simdjson::SUCCESS;
    };
    // personInitialAndUTMProperties runs for every event but $snapshot and $performance_event.
    const bool lift = anyLifted && eventName != "$snapshot" && eventName != "$performance_event";

    if (haveSetOnce)
        for (const auto field : setOnce)
            m_updates.push_back({PropertyOp::SetOnce, field.key, keep(simdjson::minify(field.value))});
    if (lift) {
        // $initial_<key>, unless $set_once names it or the value is null (a null would block the
        // first-touch value for good); $os and $os_version of a server host are not lifted.
        bool initialOs = inObject(setOnce, haveSetOnce, "$initial_os");
        for (const auto field : object) {
            const std::string_view key = field.key;
            if (key == "$os_name" || !isLiftedProperty(key)) continue;
            if (serverHost && (key == "$os" || key == "$os_version")) continue;
            if (field.value.is_null()) continue;
            const std::string_view initial = initialKeyOf(key);
            if (inObject(setOnce, haveSetOnce, initial)) continue;
            if (initial == "$initial_os") initialOs = true;
            m_updates.push_back({PropertyOp::SetOnce, initial, keep(simdjson::minify(field.value))});
        }
        // $os_name stands in for $os as the first-touch OS, and is never a person property itself.
        if (haveOsName && !serverHost && !osName.is_null() && !initialOs)
            m_updates.push_back({PropertyOp::SetOnce, "$initial_os", keep(simdjson::minify(osName))});
    }
    if (haveSet)
        for (const auto field : set)
            if (!(lift && field.key == "$os_name"))
                m_updates.push_back({PropertyOp::Set, field.key, keep(simdjson::minify(field.value))});
    if (lift) {
        for (const auto field : object) {
            const std::string_view key = field.key;
            if (key == "$os_name" || !isLiftedProperty(key)) continue;
            if (serverHost && (key == "$os" || key == "$os_version")) continue;
            if (inObject(set, haveSet, key)) continue; // the event's own $set wins
            m_updates.push_back({PropertyOp::Set, liftedKey(key), keep(simdjson::minify(field.value))});
        }
    }
    if (haveUnset) {
        // Array.isArray(unset) ? unset : Object.keys(unset || {}); only string keys are unset.
        simdjson::dom::array keys;
        simdjson::dom::object fields;
        if (unset.get_array().get(keys) == simdjson::SUCCESS) {
            for (const auto key : keys) {
                std::string_view text;
                if (key.get_string().get(text) == simdjson::SUCCESS) m_updates.push_back({PropertyOp::Unset, text, {}});
            }
        } else if (unset.get_object().get(fields) == simdjson::SUCCESS) {
            for (const auto field : fields)
                m_updates.push_back({PropertyOp::Unset, field.key, {}});
        }
    }
    return m_updates;
}

void ProjectMap::note(std::int64_t seq, std::string_view project) {
    if (!m_ranges.empty() && m_ranges.back().second == project) return;
    if (m_ranges.empty() && project.empty()) return; // no project so far: the default
    m_ranges.emplace_back(seq, std::string(project));
}

std::string_view ProjectMap::at(std::int64_t seq) const {
    const auto after = std::upper_bound(m_ranges.begin(), m_ranges.end(), seq,
                                        [](std::int64_t s, const auto& range) { return s < range.first; });
    return after == m_ranges.begin() ? std::string_view() : std::string_view(std::prev(after)->second);
}

std::string ProjectMap::toJson() const {
    nlohmann::json ranges = nlohmann::json::array();
    for (const auto& [seq, project] : m_ranges)
        ranges.push_back({seq, project});
    return ranges.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<ProjectMap> ProjectMap::fromJson(std::string_view text) {
    const auto parsed = nlohmann::json::parse(text, nullptr, false);
    if (!parsed.is_array()) return std::nullopt;
    ProjectMap map;
    for (const auto& range : parsed) {
        if (!range.is_array() || range.size() != 2 || !range[0].is_number_integer() || !range[1].is_string())
            return std::nullopt;
        const auto seq = range[0].get<std::int64_t>();
        if (!map.m_ranges.empty() && seq <= map.m_ranges.back().first) return std::nullopt;
        map.m_ranges.emplace_back(seq, range[1].get<std::string>());
    }
    return map;
}

bool GroupExtractor::extract(std::string_view name, Format format, simdjson::dom::element properties) {
    m_type = {};
    m_key.clear();
    m_properties.clear();
    simdjson::dom::object object;
    if (name != "$groupidentify" || properties.get_object().get(object) != simdjson::SUCCESS) return false;
    simdjson::dom::element type, key, set;
    if (object.at_key("$group_type").get(type) == simdjson::SUCCESS && type.is_string())
        m_type = type.get_string().value_unsafe();
    else if (format == Format::Segment)
        m_type = "segment";
    if (m_type.empty() || object.at_key("$group_key").get(key) != simdjson::SUCCESS) return false;
    if (key.is_string()) {
        m_key = std::string(key.get_string().value_unsafe());
    } else if (key.is_int64() || key.is_uint64() || key.is_double()) {
        m_key = simdjson::minify(key); // a JavaScript toString() of an integer; doubles as JSON
    }
    if (m_key.empty()) return false;
    if (object.at_key("$group_set").get(set) == simdjson::SUCCESS && set.is_object()) {
        m_properties = simdjson::minify(set);
    } else if (format == Format::Segment) {
        m_properties = "{";
        for (const auto field : object) {
            if (field.key == "$group_key" || field.key == "$group_type") continue;
            if (m_properties.size() > 1) m_properties += ',';
            m_properties += nlohmann::json(std::string(field.key)).dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace);
            m_properties += ':';
            m_properties += simdjson::minify(field.value);
        }
        m_properties += '}';
    } else {
        m_properties = "{}";
    }
    return true;
}

std::string_view toString(LinkKind kind) {
    switch (kind) {
    case LinkKind::Identify:
        return "identify";
    case LinkKind::Alias:
        return "alias";
    case LinkKind::MergeDangerously:
        return "merge_dangerously";
    }
    return "?";
}

std::string_view toString(LinkOutcome outcome) {
    switch (outcome) {
    case LinkOutcome::Merged:
        return "merged";
    case LinkOutcome::Joined:
        return "joined";
    case LinkOutcome::AlreadySame:
        return "already_same";
    case LinkOutcome::Refused:
        return "refused";
    case LinkOutcome::SkippedIllegal:
        return "skipped_illegal";
    }
    return "?";
}

std::string_view toString(IdentityIssueKind kind) {
    switch (kind) {
    case IdentityIssueKind::IllegalDistinctId:
        return "illegal_distinct_id";
    case IdentityIssueKind::MergeRefused:
        return "merge_refused";
    case IdentityIssueKind::SplitIdentity:
        return "split_identity";
    case IdentityIssueKind::OrphanServerId:
        return "orphan_server_id";
    case IdentityIssueKind::PostIdentifyAnonymous:
        return "post_identify_anonymous";
    case IdentityIssueKind::ProbableSameUser:
        return "probable_same_user";
    case IdentityIssueKind::SharedDevice:
        return "shared_device";
    case IdentityIssueKind::DroppedPersonless:
        return "dropped_personless";
    }
    return "?";
}

std::string_view toString(PropertyOp op) {
    switch (op) {
    case PropertyOp::SetOnce:
        return "$set_once";
    case PropertyOp::Set:
        return "$set";
    case PropertyOp::Unset:
        return "$unset";
    }
    return "?";
}

bool isInformational(IdentityIssueKind kind) {
    return kind == IdentityIssueKind::ProbableSameUser || kind == IdentityIssueKind::SharedDevice;
}

std::optional<IdentityIssueKind> parseIdentityIssueKind(std::string_view text) {
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        if (toString(static_cast<IdentityIssueKind>(k)) == text) return static_cast<IdentityIssueKind>(k);
    return std::nullopt;
}

bool isIllegalDistinctId(std::string_view id) {
    // trim() === '' || CASE_INSENSITIVE.has(id.toLowerCase()) || CASE_SENSITIVE.has(id): the
    // lists hold each word bare and in single and double quotes; nothing else is unquoted or trimmed.
    if (isBlank(id)) return true;
    if (isListedIllegal(id)) return true;
    if (id.size() >= 3 && (id.front() == '"' || id.front() == '\'') && id.back() == id.front())
        return isListedIllegal(id.substr(1, id.size() - 2));
    return false;
}

bool isUnmergeableDistinctId(std::string_view id) {
    if (isIllegalDistinctId(id)) return true;
    if (id.find('\0') != std::string_view::npos) return true;
    if (id.size() <= 400) return false;
    // [...id].length: code points (a byte that is not a UTF-8 continuation byte starts one).
    std::size_t codePoints = 0;
    for (const char c : id)
        codePoints += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return codePoints > 400;
}

std::string_view normalizeCapturedDistinctId(std::string_view id, std::string& scratch) {
    constexpr std::size_t kMaxCodePoints = 200; // v0_request.rs: chars().take(200)
    const bool hasNul = !id.empty() && std::memchr(id.data(), 0, id.size()) != nullptr;
    std::size_t cut = id.size();
    if (id.size() > kMaxCodePoints) {
        std::size_t codePoints = 0;
        for (std::size_t i = 0; i < id.size(); ++i) {
            if ((static_cast<unsigned char>(id[i]) & 0xC0) == 0x80) continue;
            if (codePoints++ == kMaxCodePoints) {
                cut = i;
                break;
            }
        }
    }
    if (!hasNul && cut == id.size()) return id;
    scratch.clear();
    for (std::size_t i = 0; i < cut; ++i) {
        if (id[i] == '\0')
            scratch += "\xEF\xBF\xBD"; // U+FFFD
        else
            scratch += id[i];
    }
    return scratch;
}

std::string sameUserKey(std::string_view id) {
    std::string key;
    sameUserKeyInto(id, key);
    return key;
}

std::uint64_t IdentitySummary::countedIssues() const {
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        if (!isInformational(static_cast<IdentityIssueKind>(k))) total += issues[k];
    return total;
}

IdentityGraph::IdentityGraph(IdentityOptions options)
    : m_state(std::make_unique<State>(std::move(options))) {}
IdentityGraph::~IdentityGraph() = default;
IdentityGraph::IdentityGraph(IdentityGraph&&) noexcept = default;
IdentityGraph& IdentityGraph::operator=(IdentityGraph&&) noexcept = default;

void IdentityGraph::observe(const IdentityEvent& event) {
    m_state->observe(event);
}
void IdentityGraph::finish() {
    m_state->finish();
}
const IdentityOptions& IdentityGraph::options() const {
    return m_state->options;
}

IdentitySummary IdentityGraph::summary() const {
    const State& s = *m_state;
    IdentitySummary summary;
    summary.events = s.events;
    summary.ids = s.nodes.size();
    summary.persons = s.persons;
    summary.identifiedPersons = s.identifiedPersons;
    summary.links = s.links.size();
    summary.merges = s.merges;
    summary.correlationValues = s.groups.size();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        summary.issues[k] = s.issues[k].size();
    summary.groups = s.personGroups.size();
    for (const auto& [typeAndKey, group] : s.personGroups)
        ++summary.groupsByType[typeAndKey.first];
    summary.personlessEvents = s.personlessEvents;
    summary.personlessIds = s.personlessIds;
    summary.droppedEvents = s.droppedEvents;
    summary.normalizedIds = s.originals.size();
    for (std::size_t list = 0; list < s.propLists.size(); ++list)
        summary.personsWithProperties += s.propertyOwners[list] != kNone && !s.propLists[list].empty();
    for (std::uint32_t p = 0; p < s.projects.size(); ++p) {
        const auto& counts = s.projectCounts[p];
        if (p == 0 && counts.events == 0 && s.projects.size() > 1) continue;
        summary.projects[std::string(s.projects[p])] = counts;
    }
    summary.finished = s.finished;
    return summary;
}

std::vector<IdentityIssue> IdentityGraph::issues(IdentityIssueKind kind, std::size_t limit) const {
    const auto& entries = m_state->issues[static_cast<std::size_t>(kind)];
    std::vector<IdentityIssue> result;
    result.reserve(std::min(limit, entries.size()));
    for (std::size_t i = 0; i < entries.size() && i < limit; ++i)
        result.push_back(m_state->materialise(kind, entries[i]));
    return result;
}

std::vector<IdentityIssue> IdentityGraph::issues(std::size_t limitPerKind) const {
    std::vector<IdentityIssue> result;
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
        auto ofKind = issues(static_cast<IdentityIssueKind>(k), limitPerKind);
        std::move(ofKind.begin(), ofKind.end(), std::back_inserter(result));
    }
    return result;
}

std::vector<std::string> IdentityGraph::projectsOf(std::string_view id) const {
    const State& s = *m_state;
    std::vector<std::string> found;
    for (std::uint32_t p = 0; p < s.projects.size(); ++p)
        if (s.findId(id, p) != kNone) found.emplace_back(s.projects[p]);
    return found;
}

std::optional<IdentityExplanation> IdentityGraph::explain(std::string_view id,
                                                          std::optional<std::string_view> project) const {
    const State& s = *m_state;
    std::uint32_t node = kNone;
    if (project) {
        if (const auto index = s.findProject(*project)) node = s.findId(id, *index);
    } else {
        for (std::uint32_t p = 0; p < s.projects.size() && node == kNone; ++p)
            node = s.findId(id, p);
    }
    if (node == kNone) return std::nullopt;
    const std::uint32_t person = s.rootOf(node);

    IdentityExplanation explanation;
    explanation.id = std::string(id);
    explanation.project = std::string(s.projects[s.nodes[node].project]);
    explanation.identified = s.nodes[person].flags & Identified;
    if (const auto by = s.identifiedBy.find(person); by != s.identifiedBy.end()) {
        IdentityEventRef ref;
        ref.seq = by->second.seq;
        ref.name = std::string(s.names[by->second.name]);
        ref.origin = "distinct id " + inQuotes(s.nodes[by->second.node].id());
        explanation.identifiedBy = std::move(ref);
    }
    if (const PropList* properties = s.propertiesOf(person)) {
        for (const PropEntry& entry : *properties) {
            explanation.properties.push_back(s.toProperty(entry));
            const PersonProperty& property = explanation.properties.back();
            if (property.orderDependent)
                explanation.orderNotes.push_back(
                    "property " + inQuotes(property.key) + ": set by #" + std::to_string(property.setBy.seq) +
                    " (distinct id " + inQuotes(property.setBy.distinctId) +
                    ") over a change sent with another distinct id; PostHog orders events only within one "
                    "token:distinct_id partition, so which value wins there depends on arrival order");
        }
    }
    std::sort(explanation.properties.begin(), explanation.properties.end(),
              [](const PersonProperty& a, const PersonProperty& b) { return a.key < b.key; });
    // A scan over all ids and links: explain is a one-off question, not worth an index per id.
    for (std::uint32_t n = 0; n < s.nodes.size(); ++n) {
        if (s.rootOf(n) != person) continue;
        const IdNode& entry = s.nodes[n];
        IdentityMember member;
        member.id = std::string(entry.id());
        member.firstSeen = s.firstSeen(n);
        if (entry.joinLink != kNone) member.joinedBy = s.toLink(entry.joinLink);
        member.usedByClient = entry.flags & UsedByClient;
        member.usedByServer = entry.flags & UsedByServer;
        member.illegal = entry.flags & IllegalId;
        member.personless = !(s.nodes[person].flags & HasPerson);
        if (entry.flags & Normalized) {
            const auto original = s.originals.find(n);
            if (original != s.originals.end()) member.original = original->second;
        }
        explanation.members.push_back(std::move(member));
    }
    std::stable_sort(
        explanation.members.begin(), explanation.members.end(),
        [](const IdentityMember& a, const IdentityMember& b) { return a.firstSeen.seq < b.firstSeen.seq; });
    for (const auto& [typeAndKey, group] : s.personGroups)
        if (std::any_of(group.members.begin(), group.members.end(),
                        [&](std::uint32_t member) { return s.rootOf(member) == person; }))
            explanation.groups.push_back(typeAndKey);
    for (std::uint32_t l = 0; l < s.links.size(); ++l) {
        const LinkEntry& entry = s.links[l];
        const bool touches =
            s.rootOf(entry.target) == person ||
            (entry.outcome != LinkOutcome::SkippedIllegal && s.rootOf(entry.source) == person);
        if (!touches) continue;
        explanation.links.push_back(s.toLink(l));
        if (entry.outcome == LinkOutcome::Refused) {
            explanation.refusedMerges.push_back(explanation.links.back());
            // The source was identified before this event was processed; if another distinct id's
            // event did that, PostHog's partitions could have run them the other way round.
            const std::uint32_t sourcePerson = s.rootOf(entry.source);
            const auto by = s.identifiedBy.find(sourcePerson);
            if (by != s.identifiedBy.end() && by->second.node != entry.target)
                explanation.orderNotes.push_back(
                    "merge #" + std::to_string(entry.seq) + " was refused because " +
                    inQuotes(s.nodes[entry.source].id()) + "'s person was already identified (by #" +
                    std::to_string(by->second.seq) + ", distinct id " + inQuotes(s.nodes[by->second.node].id()) +
                    "); that event is in another token:distinct_id partition, and had PostHog processed #" +
                    std::to_string(entry.seq) + " first the merge would have gone through");
        }
    }
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
        const auto kind = static_cast<IdentityIssueKind>(k);
        for (const IssueEntry& entry : s.issues[k]) {
            if (!s.involves(kind, entry, person)) continue;
            if (explanation.issueCounts[k]++ < s.options.evidenceLimit)
                explanation.issues.push_back(s.materialise(kind, entry));
        }
    }
    return explanation;
}

std::vector<std::string> IdentityGraph::similarIds(std::string_view id, std::size_t limit) const {
    const State& s = *m_state;
    std::vector<std::string> similar;
    const std::string wanted = sameUserKey(id);
    if (wanted.empty()) return similar;
    std::string key;
    for (std::uint32_t n = 0; n < s.nodes.size() && similar.size() < limit; ++n) {
        sameUserKeyInto(s.nodes[n].id(), key);
        if (key == wanted && s.nodes[n].id() != id) similar.emplace_back(s.nodes[n].id());
    }
    return similar;
}

std::vector<IdentityGroup> IdentityGraph::groups() const {
    const State& s = *m_state;
    std::vector<IdentityGroup> result;
    result.reserve(s.personGroups.size());
    for (const auto& [typeAndKey, entry] : s.personGroups) {
        IdentityGroup& group = result.emplace_back();
        group.type = typeAndKey.first;
        group.key = typeAndKey.second;
        group.properties = entry.properties.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        group.memberCount = entry.members.size();
        for (std::size_t i = 0; i < entry.members.size() && i < s.options.evidenceLimit; ++i)
            group.members.emplace_back(s.nodes[entry.members[i]].id());
        group.eventCount = entry.events;
        group.firstSeq = entry.firstSeq;
    }
    return result;
}

bool IdentityGraph::samePerson(std::string_view a, std::string_view b, std::string_view project) const {
    const auto index = m_state->findProject(project);
    if (!index) return false;
    const std::uint32_t first = m_state->findId(a, *index);
    const std::uint32_t second = m_state->findId(b, *index);
    return first != kNone && second != kNone && m_state->rootOf(first) == m_state->rootOf(second);
}

nlohmann::json IdentityGraph::personPropertiesJson() const {
    const State& s = *m_state;
    nlohmann::json persons = nlohmann::json::array();
    std::vector<std::pair<std::uint32_t, std::uint32_t>> roots; // (root, list), by root
    for (std::uint32_t list = 0; list < s.propLists.size(); ++list)
        if (s.propertyOwners[list] != kNone) roots.emplace_back(s.propertyOwners[list], list);
    std::sort(roots.begin(), roots.end());
    for (const auto& [rootNode, list] : roots) {
        if (s.propLists[list].empty()) continue;
        nlohmann::json properties = nlohmann::json::object();
        for (const PropEntry& entry : s.propLists[list])
            properties[std::string(s.propertyKeys.at(entry.key))] = s.toProperty(entry);
        // The person's ids in first-use order would need a scan per person; its root id names it.
        persons.push_back({{"project", s.projects[s.nodes[rootNode].project]},
                           {"id", s.nodes[rootNode].id()},
                           {"identified", static_cast<bool>(s.nodes[rootNode].flags & Identified)},
                           {"properties", std::move(properties)}});
    }
    return persons;
}

// ---------------------------------------------------------------------------------------------
// JSON and text

void to_json(nlohmann::json& json, const IdentitySummary& summary) {
    nlohmann::json counted = nlohmann::json::object();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
        const auto kind = static_cast<IdentityIssueKind>(k);
        if (!isInformational(kind)) counted[std::string(toString(kind))] = summary.issues[k];
    }
    json = {{"persons", summary.persons},
            {"merges", summary.merges},
            {"issues", std::move(counted)},
            {"probable_same_user", summary.issueCount(IdentityIssueKind::ProbableSameUser)},
            {"shared_device", summary.issueCount(IdentityIssueKind::SharedDevice)},
            {"groups", summary.groups},
            {"groups_by_type", summary.groupsByType},
            {"identified_persons", summary.identifiedPersons},
            {"personless_events", summary.personlessEvents},
            {"personless_ids", summary.personlessIds},
            {"dropped_events", summary.droppedEvents},
            {"normalized_ids", summary.normalizedIds},
            {"persons_with_properties", summary.personsWithProperties}};
    nlohmann::json projects = nlohmann::json::object();
    for (const auto& [name, project] : summary.projects)
        projects[name] = {{"events", project.events},
                          {"ids", project.ids},
                          {"persons", project.persons},
                          {"identified_persons", project.identifiedPersons}};
    json["projects"] = std::move(projects);
}

void to_json(nlohmann::json& json, const PropertyChange& change) {
    json = {{"seq", change.seq}, {"event", change.eventName}, {"distinct_id", change.distinctId}, {"op", change.op}};
    if (!change.value.empty()) json["value"] = nlohmann::json::parse(change.value, nullptr, false);
}

void to_json(nlohmann::json& json, const PersonProperty& property) {
    json = {{"key", property.key},
            {"value", property.removed ? nlohmann::json() : nlohmann::json::parse(property.value, nullptr, false)},
            {"removed", property.removed},
            {"set_by", property.setBy},
            {"overridden", property.overridden},
            {"overridden_count", property.overriddenCount},
            {"order_dependent", property.orderDependent}};
}

void to_json(nlohmann::json& json, const IdentityGroup& group) {
    json = {{"type", group.type},
            {"key", group.key},
            {"properties", nlohmann::json::parse(group.properties, nullptr, false)},
            {"members", group.members},
            {"member_count", group.memberCount},
            {"event_count", group.eventCount},
            {"first_seq", group.firstSeq}};
}

void to_json(nlohmann::json& json, const IdentityEventRef& event) {
    json = {{"seq", event.seq},
            {"name", event.name},
            {"time", event.timeMillis ? nlohmann::json(*event.timeMillis) : nlohmann::json()},
            {"stream", toString(event.stream)},
            {"origin", event.origin}};
}

void to_json(nlohmann::json& json, const IdentityLink& link) {
    json = {{"event", link.event},
            {"kind", toString(link.kind)},
            {"outcome", toString(link.outcome)},
            {"source", link.sourceId},
            {"target", link.targetId},
            {"source_identified", link.sourceIdentified},
            {"target_identified", link.targetIdentified}};
    if (link.outcome == LinkOutcome::SkippedIllegal) json["unmergeable"] = link.targetIllegal ? "target" : "source";
}

void to_json(nlohmann::json& json, const IdentityIssue& issue) {
    json = {{"kind", toString(issue.kind)}, {"message", issue.message},  {"ids", issue.ids},
            {"id_count", issue.idCount},    {"events", issue.eventSeqs}, {"event_count", issue.eventCount}};
    const bool correlated =
        issue.kind == IdentityIssueKind::SplitIdentity || issue.kind == IdentityIssueKind::SharedDevice;
    if (correlated || issue.kind == IdentityIssueKind::ProbableSameUser) json["persons"] = issue.personCount;
    if (correlated) {
        json["key"] = issue.correlationKey;
        json["value"] = issue.correlationValue;
    }
    if (issue.link) json["link"] = *issue.link;
    if (!issue.project.empty()) json["project"] = issue.project;
}

void to_json(nlohmann::json& json, const IdentityExplanation& explanation) {
    nlohmann::json members = nlohmann::json::array();
    for (const auto& member : explanation.members)
        members.push_back(
            {{"id", member.id},
             {"first_seen", member.firstSeen},
             {"joined_by", member.joinedBy ? nlohmann::json(*member.joinedBy) : nlohmann::json()},
             {"client", member.usedByClient},
             {"server", member.usedByServer},
             {"illegal", member.illegal},
             {"personless", member.personless},
             {"original", member.original.empty() ? nlohmann::json() : nlohmann::json(member.original)}});
    nlohmann::json counts = nlohmann::json::object();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        counts[std::string(toString(static_cast<IdentityIssueKind>(k)))] = explanation.issueCounts[k];
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& [type, key] : explanation.groups)
        groups.push_back({{"type", type}, {"key", key}});
    json = {{"id", explanation.id},
            {"project", explanation.project},
            {"identified", explanation.identified},
            {"identified_by", explanation.identifiedBy ? nlohmann::json{{"seq", explanation.identifiedBy->seq},
                                                                        {"name", explanation.identifiedBy->name},
                                                                        {"by", explanation.identifiedBy->origin}}
                                                       : nlohmann::json()},
            {"properties", explanation.properties},
            {"order_notes", explanation.orderNotes},
            {"ids", std::move(members)},
            {"groups", std::move(groups)},
            {"links", explanation.links},
            {"refused_merges", explanation.refusedMerges},
            {"issues", explanation.issues},
            {"issue_counts", std::move(counts)}};
}

nlohmann::json groupedIssuesJson(std::span<const IdentityIssue> issues) {
    nlohmann::json grouped = nlohmann::json::object();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        grouped[std::string(toString(static_cast<IdentityIssueKind>(k)))] = nlohmann::json::array();
    for (const auto& issue : issues)
        grouped[std::string(toString(issue.kind))].push_back(issue);
    return grouped;
}

namespace {

std::string counted(std::uint64_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string describe(const IdentityEventRef& event) {
    std::string text = "#" + std::to_string(event.seq) + " " + event.name;
    if (event.timeMillis) text += " at " + formatTimestamp(*event.timeMillis);
    text += ", " + std::string(toString(event.stream));
    if (!event.origin.empty()) text += ", " + event.origin;
    return text;
}

std::string describe(const IdentityLink& link) {
    return describe(link.event) + ": " + inQuotes(link.sourceId) + " -> " + inQuotes(link.targetId) + " " +
           std::string(toString(link.outcome));
}

} // namespace

std::string toText(const IdentityExplanation& explanation) {
    const bool personless = !explanation.members.empty() && explanation.members.front().personless;
    std::string text = "Person of " + inQuotes(explanation.id) +
                       (explanation.project.empty() ? std::string() : " in project " + inQuotes(explanation.project)) +
                       ": " + std::to_string(explanation.members.size()) +
                       (explanation.members.size() == 1 ? " id, " : " ids, ") +
                       (personless ? "no person (only $process_person_profile: false events)"
                        : explanation.identified ? "identified" : "not identified");
    if (explanation.identifiedBy)
        text += " (by #" + std::to_string(explanation.identifiedBy->seq) + " " + explanation.identifiedBy->name + ", " +
                explanation.identifiedBy->origin + ")";
    text += "\n  ids:\n";
    for (const auto& member : explanation.members) {
        text += "    " + inQuotes(member.id);
        if (member.illegal) text += " (illegal: never merged)";
        if (!member.original.empty()) text += " (sent as " + inQuotes(member.original) + ", normalised by capture)";
        if (member.usedByClient || member.usedByServer)
            text += std::string(" [") + (member.usedByClient ? "client" : "") +
                    (member.usedByClient && member.usedByServer ? "+" : "") +
                    (member.usedByServer ? "server" : "") + "]";
        text += "\n      first seen " + describe(member.firstSeen) + "\n";
        if (member.joinedBy) text += "      joined by " + describe(*member.joinedBy) + "\n";
    }
    if (!explanation.groups.empty()) {
        text += "  groups:";
        for (const auto& [type, key] : explanation.groups)
            text += " " + type + " " + inQuotes(key);
        text += "\n";
    }
    if (!explanation.properties.empty()) {
        text += "  properties (" + std::to_string(explanation.properties.size()) + "):\n";
        for (const auto& property : explanation.properties) {
            const PropertyChange& by = property.setBy;
            text += "    " + property.key + (property.removed ? " (removed)" : " = " + property.value) + "\n      " +
                    (property.removed ? "unset" : "set") + " by #" + std::to_string(by.seq) + " " + by.eventName +
                    " (" + by.op + ", distinct id " + inQuotes(by.distinctId) + ")" +
                    (property.orderDependent ? " [order-dependent]" : "") + "\n";
            for (const auto& change : property.overridden)
                text += "      over #" + std::to_string(change.seq) + " " + change.eventName + " (" + change.op +
                        ", distinct id " + inQuotes(change.distinctId) + ")" +
                        (change.value.empty() ? std::string(" removed") : " = " + change.value) + "\n";
            if (property.overriddenCount > property.overridden.size())
                text += "      ... " + std::to_string(property.overriddenCount - property.overridden.size()) +
                        " earlier changes\n";
        }
    }
    text += "  links (" + std::to_string(explanation.links.size()) + "):\n";
    for (const auto& link : explanation.links)
        text += "    " + describe(link) + "\n";
    if (!explanation.refusedMerges.empty()) {
        text += "  refused merges (" + std::to_string(explanation.refusedMerges.size()) + "):\n";
        for (const auto& link : explanation.refusedMerges)
            text += "    " + describe(link) + " (source " +
                    (link.sourceIdentified ? "identified" : "not identified") + ", target " +
                    (link.targetIdentified ? "identified" : "not identified") + ")\n";
    }
    std::size_t issueTotal = 0;
    for (auto count : explanation.issueCounts)
        issueTotal += count;
    text += "  issues (" + std::to_string(issueTotal) + "):\n";
    for (const auto& issue : explanation.issues)
        text += "    [" + std::string(toString(issue.kind)) + "] " + issue.message + "\n";
    if (issueTotal > explanation.issues.size())
        text += "    ... " + std::to_string(issueTotal - explanation.issues.size()) + " more\n";
    if (!explanation.orderNotes.empty()) {
        text += "  arrival order (" + std::to_string(explanation.orderNotes.size()) + "):\n";
        for (const auto& note : explanation.orderNotes)
            text += "    " + note + "\n";
    }
    return text;
}

std::string toText(const IdentitySummary& summary, std::span<const IdentityIssue> issues) {
    std::string text = std::to_string(summary.ids) + " ids in " + std::to_string(summary.persons) +
                       " persons (" + std::to_string(summary.identifiedPersons) + " identified), " +
                       counted(summary.links, "link", "links") + ", " +
                       counted(summary.merges, "merge", "merges") + ", " +
                       counted(summary.groups, "group", "groups") + "; " +
                       counted(summary.countedIssues(), "issue", "issues") + "\n";
    if (summary.personlessEvents || summary.droppedEvents || summary.normalizedIds)
        text += counted(summary.personlessEvents, "personless event", "personless events") + " (" +
                counted(summary.personlessIds, "id", "ids") + " without a person), " +
                counted(summary.droppedEvents, "event", "events") + " PostHog drops, " +
                counted(summary.normalizedIds, "id", "ids") + " normalised by capture\n";
    if (summary.projects.size() > 1 || (summary.projects.size() == 1 && !summary.projects.begin()->first.empty()))
        for (const auto& [name, project] : summary.projects)
            text += "project " + (name.empty() ? std::string("(none)") : inQuotes(name)) + ": " +
                    counted(project.events, "event", "events") + ", " + counted(project.ids, "id", "ids") + " in " +
                    counted(project.persons, "person", "persons") + " (" +
                    std::to_string(project.identifiedPersons) + " identified)\n";
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k) {
        const auto kind = static_cast<IdentityIssueKind>(k);
        std::size_t listed = 0;
        for (const auto& issue : issues)
            listed += issue.kind == kind;
        text += std::string(toString(kind)) + ": " + std::to_string(summary.issues[k]) +
                (kind == IdentityIssueKind::ProbableSameUser ? " (heuristic, not counted)"
                 : kind == IdentityIssueKind::SharedDevice   ? " (note, not counted)"
                                                             : "") +
                "\n";
        for (const auto& issue : issues) {
            if (issue.kind != kind) continue;
            text += "  " + (issue.project.empty() ? std::string() : "[" + issue.project + "] ") + issue.message +
                    "\n    events:";
            for (auto seq : issue.eventSeqs)
                text += " #" + std::to_string(seq);
            if (issue.eventCount > issue.eventSeqs.size())
                text += " (of " + std::to_string(issue.eventCount) + ")";
            text += "\n";
        }
        if (summary.issues[k] > listed)
            text += "  ... " + std::to_string(summary.issues[k] - listed) + " more\n";
    }
    return text;
}

} // namespace pipescope
