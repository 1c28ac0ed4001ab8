#include "identity/identity_graph.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <xxhash.h>

namespace pipescope {

namespace {

constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
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

std::uint64_t hashText(std::string_view text) {
    return XXH3_64bits(text.data(), text.size());
}

std::string inQuotes(std::string_view text) {
    return nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------------
// Storage

// Bytes that live as long as the graph: ids, origins, names. Never moves what it handed out.
class TextArena {
public:
    const char* store(std::string_view first, std::string_view second = {}) {
        const std::size_t size = first.size() + second.size();
        if (size > m_left) {
            const std::size_t blockSize = std::max(size, kBlockSize);
            m_blocks.push_back(std::make_unique_for_overwrite<char[]>(blockSize));
            m_cursor = m_blocks.back().get();
            m_left = blockSize;
        }
        char* out = m_cursor;
        if (!first.empty()) std::memcpy(out, first.data(), first.size());
        if (!second.empty()) std::memcpy(out + first.size(), second.data(), second.size());
        m_cursor += size;
        m_left -= size;
        return out;
    }

private:
    static constexpr std::size_t kBlockSize = 64 * 1024;
    std::vector<std::unique_ptr<char[]>> m_blocks;
    char* m_cursor = nullptr;
    std::size_t m_left = 0;
};

// A vector that grows by fixed chunks: no doubling slack and no copy on growth.
template <class T> class ChunkedVector {
public:
    T& operator[](std::size_t i) { return m_chunks[i >> kChunkBits][i & kChunkMask]; }
    const T& operator[](std::size_t i) const { return m_chunks[i >> kChunkBits][i & kChunkMask]; }
    std::size_t size() const { return m_size; }
    T& push_back(const T& value) {
        if ((m_size & kChunkMask) == 0) m_chunks.push_back(std::make_unique<T[]>(kChunkMask + 1));
        T& slot = (*this)[m_size++];
        slot = value;
        return slot;
    }
    void clear() {
        m_chunks.clear();
        m_size = 0;
    }

private:
    static constexpr std::size_t kChunkBits = 12;
    static constexpr std::size_t kChunkMask = (std::size_t{1} << kChunkBits) - 1;
    std::vector<std::unique_ptr<T[]>> m_chunks;
    std::size_t m_size = 0;
};

// Open addressing (linear probing) over entries kept elsewhere, by index: a slot holds the high half
// of the hash as a tag and index + 1, so most mismatches are rejected without touching the entry.
class IndexTable {
public:
    IndexTable() : m_slots(1024, 0), m_mask(1023) {}

    template <class Matches> std::uint32_t find(std::uint64_t hash, Matches matches) const {
        const std::uint64_t tag = hash >> 32;
        for (std::size_t i = hash & m_mask;; i = (i + 1) & m_mask) {
            const std::uint64_t slot = m_slots[i];
            if (slot == 0) return kNone;
            const auto index = static_cast<std::uint32_t>(slot) - 1;
            if ((slot >> 32) == tag && matches(index)) return index;
        }
    }

    // Entries are 0..index-1 before this one; hashOf(i) re-hashes them when the table grows.
    template <class HashOf> void insert(std::uint64_t hash, std::uint32_t index, HashOf hashOf) {
        if ((std::size_t{index} + 1) * 4 > m_slots.size() * 3) {
            m_slots.assign(m_slots.size() * 2, 0);
            m_mask = m_slots.size() - 1;
            for (std::uint32_t i = 0; i < index; ++i)
                place(hashOf(i), i);
        }
        place(hash, index);
    }

private:
    void place(std::uint64_t hash, std::uint32_t index) {
        std::size_t i = hash & m_mask;
        while (m_slots[i] != 0)
            i = (i + 1) & m_mask;
        m_slots[i] = (hash >> 32 << 32) | (std::uint64_t{index} + 1);
    }

    std::vector<std::uint64_t> m_slots; // 0 = empty
    std::size_t m_mask;
};

enum NodeFlag : std::uint8_t {
    Identified = 1,          // on roots: the person is identified
    UsedByClient = 2,        // the id was the distinct id of a client-stream event
    UsedByServer = 4,        // ... of a server-stream event
    AnonymousOfIdentify = 8, // the id was the source of a successful identify link
    PersonHasClient = 16,    // on roots, during finish(): some id of the person is UsedByClient
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
    std::uint16_t firstOriginLength = 0;
    std::uint8_t firstStream = 0;
    std::uint8_t flags = 0;

    std::string_view id() const { return {text, textLength}; }
    std::string_view origin() const { return {text + textLength, firstOriginLength}; }
};
static_assert(sizeof(IdNode) == 48);

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
};

// One issue, compactly; turned into an IdentityIssue only when asked for. Fields by kind:
//   illegal_distinct_id      subject = illegal id, other = link (kNone: the distinct id), extra = name
//   merge_refused            other = link
//   split_identity           subject = correlation group, extra = persons
//   shared_device            subject = correlation group, extra = persons
//   orphan_server_id         subject = node
//   post_identify_anonymous  subject = node, extra = name
//   probable_same_user       subject = probable group, extra = persons
struct IssueEntry {
    std::int64_t seq = -1;
    std::uint32_t subject = kNone;
    std::uint32_t other = kNone;
    std::uint32_t extra = 0;
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

    std::uint64_t events = 0;
    std::uint64_t persons = 0;
    std::uint64_t identifiedPersons = 0;
    std::uint64_t merges = 0;
    bool finished = false;

    explicit State(IdentityOptions opts) : options(std::move(opts)) {}

    std::vector<IssueEntry>& issuesOf(IdentityIssueKind kind) {
        return issues[static_cast<std::size_t>(kind)];
    }

    // --- ids

    std::uint32_t findId(std::string_view id, std::uint64_t hash) const {
        return idIndex.find(hash, [&](std::uint32_t node) { return nodes[node].id() == id; });
    }
    std::uint32_t findId(std::string_view id) const { return findId(id, hashText(id)); }

    std::uint32_t addId(std::string_view id, std::uint64_t hash, const IdentityEvent& event) {
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
        node.parent = index;
        nodes.push_back(node);
        idIndex.insert(hash, index, [&](std::uint32_t n) { return hashText(nodes[n].id()); });
        ++persons;
        return index;
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

    void unite(std::uint32_t a, std::uint32_t b) {
        if (nodes[a].size < nodes[b].size) std::swap(a, b);
        IdNode& kept = nodes[a];
        IdNode& absorbed = nodes[b];
        absorbed.parent = a;
        kept.size += absorbed.size;
        if ((kept.flags & Identified) && (absorbed.flags & Identified)) --identifiedPersons;
        kept.flags |= absorbed.flags & Identified;
        --persons;
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
        GroupEntry* group = nullptr;
        if (!event.groupKey.empty()) {
            bool groupOwnId = false;
            group = noteGroup(event, groupOwnId);
            if (groupOwnId) return; // "$company_acme" is the group itself, not a person
        }
        if (isIllegalDistinctId(event.distinctId)) {
            issuesOf(IdentityIssueKind::IllegalDistinctId)
                .push_back({event.seq, internIllegal(event.distinctId), kNone, internName(event.name)});
            return;
        }

        std::string_view source;
        LinkKind kind = LinkKind::Identify;
        if (event.name == "$identify") {
            source = event.anonymousId;
        } else if (event.name == "$create_alias") {
            source = event.aliasId;
            kind = LinkKind::Alias;
        } else if (event.name == "$merge_dangerously") {
            source = event.aliasId;
            kind = LinkKind::MergeDangerously;
        }
        const bool isLink = !source.empty() && source != event.distinctId;

        const std::uint64_t hash = hashText(event.distinctId);
        std::uint32_t target = findId(event.distinctId, hash);
        const bool targetKnown = target != kNone;
        if (!targetKnown) {
            target = addId(event.distinctId, hash, event);
        } else if ((nodes[target].flags & AnonymousOfIdentify) && sentAfterIdentify(target, event)) {
            issuesOf(IdentityIssueKind::PostIdentifyAnonymous)
                .push_back({event.seq, target, kNone, internName(event.name)});
        }
        noteStream(target, event);
        if (group) {
            const auto at = std::lower_bound(group->members.begin(), group->members.end(), target);
            if (at == group->members.end() || *at != target) group->members.insert(at, target);
        }

        if (isLink) link(event, kind, source, target, targetKnown);

        // After the link decision: identifying first would refuse the very merge it asks for.
        if (event.name == "$identify" && !event.userId.empty()) {
            IdNode& person = nodes[root(target)];
            if (!(person.flags & Identified)) ++identifiedPersons;
            person.flags |= Identified;
        }

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

    void link(const IdentityEvent& event, LinkKind kind, std::string_view sourceId, std::uint32_t target,
              bool targetKnown) {
        const std::uint32_t targetRoot = root(target);
        const bool targetIdentified = nodes[targetRoot].flags & Identified;
        if (isIllegalDistinctId(sourceId)) {
            const std::uint32_t illegal = internIllegal(sourceId);
            const std::uint32_t linkIndex =
                addLink(event, kind, LinkOutcome::SkippedIllegal, illegal, target, false, targetIdentified);
            issuesOf(IdentityIssueKind::IllegalDistinctId)
                .push_back({event.seq, illegal, linkIndex, internName(event.name)});
            return;
        }
        const std::uint64_t hash = hashText(sourceId);
        std::uint32_t source = findId(sourceId, hash);
        const bool sourceKnown = source != kNone;
        if (!sourceKnown) source = addId(sourceId, hash, event);
        const std::uint32_t sourceRoot = root(source);
        const bool sourceIdentified = nodes[sourceRoot].flags & Identified;

        LinkOutcome outcome = LinkOutcome::Joined;
        if (sourceKnown && targetKnown) {
            if (sourceRoot == targetRoot)
                outcome = LinkOutcome::AlreadySame;
            else if (sourceIdentified && kind != LinkKind::MergeDangerously)
                outcome = LinkOutcome::Refused; // PostHog's cannot_merge_already_identified
            else
                outcome = LinkOutcome::Merged;
        }
        const std::uint32_t linkIndex =
            addLink(event, kind, outcome, source, target, sourceIdentified, targetIdentified);
        if (outcome == LinkOutcome::Refused) {
            issuesOf(IdentityIssueKind::MergeRefused).push_back({event.seq, kNone, linkIndex, 0});
            return;
        }
        if (outcome != LinkOutcome::AlreadySame) {
            unite(sourceRoot, targetRoot);
            ++merges;
            // What the link brought in: the source's person when two persons merge, else the new ids.
            if (outcome == LinkOutcome::Merged || !sourceKnown) noteJoin(source, linkIndex);
            if (!targetKnown) noteJoin(target, linkIndex);
        }
        if (kind == LinkKind::Identify) noteIdentified(source, event);
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
            if (!(nodes[n].flags & UsedByServer) || (nodes[root(n)].flags & PersonHasClient)) continue;
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
            sameUserKeyInto(nodes[n].id(), key);
            if (!key.empty()) keyed.emplace_back(hashText(key), n);
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
                    run.emplace_back(key, keyed[i].second);
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
            if (entry.other == kNone) {
                issue.ids = {illegal};
                issue.idCount = 1;
                issue.message = event + " (" + std::string(names[entry.extra]) +
                                ") has the illegal distinct id " + inQuotes(illegal) +
                                ": it is left out of the identity graph";
            } else {
                issue.link = toLink(entry.other);
                issue.ids = {illegal, issue.link->targetId};
                issue.idCount = 2;
                issue.message = event + " (" + issue.link->event.name + ") links the illegal id " +
                                inQuotes(illegal) + " to " + inQuotes(issue.link->targetId) +
                                ": the link is skipped, the event still counts for " +
                                inQuotes(issue.link->targetId);
            }
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
                            "): refused, as PostHog does (cannot_merge_already_identified)";
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
        return issue;
    }

    // Whether an issue names an id of the person whose root is `person`.
    bool involves(IdentityIssueKind kind, const IssueEntry& entry, std::uint32_t person) const {
        const auto in = [&](std::uint32_t node) { return node != kNone && rootOf(node) == person; };
        switch (kind) {
        case IdentityIssueKind::IllegalDistinctId:
            return entry.other != kNone && in(links[entry.other].target);
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
    if (id.empty() || isBlank(id)) return true;
    if (isListedIllegal(id)) return true;
    // A stringified string: '"null"', "'undefined'", '""'.
    if (id.size() >= 2 && (id.front() == '"' || id.front() == '\'') && id.back() == id.front()) {
        const std::string_view inner = id.substr(1, id.size() - 2);
        return isBlank(inner) || isListedIllegal(inner);
    }
    return false;
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

std::optional<IdentityExplanation> IdentityGraph::explain(std::string_view id) const {
    const State& s = *m_state;
    const std::uint32_t node = s.findId(id);
    if (node == kNone) return std::nullopt;
    const std::uint32_t person = s.rootOf(node);

    IdentityExplanation explanation;
    explanation.id = std::string(id);
    explanation.identified = s.nodes[person].flags & Identified;
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
        if (entry.outcome == LinkOutcome::Refused)
            explanation.refusedMerges.push_back(explanation.links.back());
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

bool IdentityGraph::samePerson(std::string_view a, std::string_view b) const {
    const std::uint32_t first = m_state->findId(a);
    const std::uint32_t second = m_state->findId(b);
    return first != kNone && second != kNone && m_state->rootOf(first) == m_state->rootOf(second);
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
            {"groups_by_type", summary.groupsByType}};
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
}

void to_json(nlohmann::json& json, const IdentityExplanation& explanation) {
    nlohmann::json members = nlohmann::json::array();
    for (const auto& member : explanation.members)
        members.push_back(
            {{"id", member.id},
             {"first_seen", member.firstSeen},
             {"joined_by", member.joinedBy ? nlohmann::json(*member.joinedBy) : nlohmann::json()},
             {"client", member.usedByClient},
             {"server", member.usedByServer}});
    nlohmann::json counts = nlohmann::json::object();
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        counts[std::string(toString(static_cast<IdentityIssueKind>(k)))] = explanation.issueCounts[k];
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& [type, key] : explanation.groups)
        groups.push_back({{"type", type}, {"key", key}});
    json = {{"id", explanation.id},
            {"identified", explanation.identified},
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
    std::string text = "Person of " + inQuotes(explanation.id) + ": " +
                       std::to_string(explanation.members.size()) +
                       (explanation.members.size() == 1 ? " id, " : " ids, ") +
                       (explanation.identified ? "identified" : "not identified") + "\n";
    text += "  ids:\n";
    for (const auto& member : explanation.members) {
        text += "    " + inQuotes(member.id);
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
    return text;
}

std::string toText(const IdentitySummary& summary, std::span<const IdentityIssue> issues) {
    std::string text = std::to_string(summary.ids) + " ids in " + std::to_string(summary.persons) +
                       " persons (" + std::to_string(summary.identifiedPersons) + " identified), " +
                       counted(summary.links, "link", "links") + ", " +
                       counted(summary.merges, "merge", "merges") + ", " +
                       counted(summary.groups, "group", "groups") + "; " +
                       counted(summary.countedIssues(), "issue", "issues") + "\n";
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
            text += "  " + issue.message + "\n    events:";
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
