#pragma once
// Identity stitching: which distinct ids belong to one person, by PostHog's merge rules
// ($identify + $anon_distinct_id, $create_alias, $merge_dangerously, illegal ids, no merge of an
// already identified person) and Segment's (identify with userId + anonymousId, alias with
// previousId), and the issues that show where client and server ids are not stitched.
//
// The graph takes plain facts (IdentityEvent), not simdjson views, so the pipeline and a replay
// of a stored capture feed it the same way. It keeps one interned copy of each id and no
// per-event data except link events and issue evidence.

#include "event/event.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <simdjson.h>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

// A property value shared by events that should belong to one person ($session_id, $device_id,
// order_id...).
struct Correlation {
    std::string_view key;
    std::string_view value;
};

// One person-property operation of an event. PostHog applies an event's $set_once first, then its
// $set, then its $unset (person-update.ts, computeEventPropertyUpdates); PersonPropertyExtractor
// gives them in that order.
enum class PropertyOp : std::uint8_t { SetOnce, Set, Unset };
std::string_view toString(PropertyOp op); // "$set_once", "$set", "$unset"

struct PersonPropertyUpdate {
    PropertyOp op = PropertyOp::Set;
    std::string_view key;
    std::string_view value; // minified JSON; empty for Unset
};

// What the graph needs of one valid, unique event. Views need to live only during observe().
// An absent id is a null view (data() == nullptr); an empty but present one is not.
struct IdentityEvent {
    std::int64_t seq = 0;
    std::string_view name;
    std::string_view distinctId;
    std::string_view anonymousId;
    std::string_view userId;
    std::string_view aliasId;
    Stream stream = Stream::Unknown;
    std::optional<std::int64_t> timeMillis;
    std::string_view origin; // "file.ndjson:12#3"
    std::span<const Correlation> correlations;
    // A $groupidentify's group (GroupExtractor): set when the event names one. Groups are not
    // persons: an event whose distinct id is the group's own ("$<type>_<key>", as posthog-node and
    // posthog-python send group updates) only updates the group; any other distinct id is a person
    // and becomes a member of the group (posthog-js group(), Segment group).
    std::string_view groupType;
    std::string_view groupKey;
    std::string_view groupProperties; // a JSON object: $group_set, or a Segment group's traits
    // The project (PostHog token / api_key, Segment write key): persons never span two projects.
    std::string_view project;
    // false when the event says $process_person_profile: false (only a boolean false counts,
    // person-utils.ts decideProcessPerson): no person is created or updated for it.
    bool processPerson = true;
    // $set_once, $set, $unset of the event, in that order (PersonPropertyExtractor).
    std::span<const PersonPropertyUpdate> personUpdates;
};

// Picks an event's person-property operations out of its properties the way PostHog's ingestion
// reads them: properties.$set_once, .$set (the decoder has folded a top-level $set / $set_once in),
// .$unset (an array of keys, or an object whose keys are unset), and the event properties PostHog
// lifts onto the person by itself (db/utils.ts personInitialAndUTMProperties: $browser, $os,
// $current_url, utm_source... into $set unless $set names them, and their $initial_ forms into
// $set_once unless null). Valid until the next extract() and while the document lives.
class PersonPropertyExtractor {
public:
    // A Segment identify's traits are the user's properties: each one is a $set (Segment's identify
    // spec; PostHog's Segment source sends them as $set).
    std::span<const PersonPropertyUpdate> extract(std::string_view eventName, simdjson::dom::element properties,
                                                  Format format = Format::Auto);
    // Of the last extract(): false when the properties say $process_person_profile: false.
    bool processPerson() const { return m_processPerson; }

private:
    bool m_processPerson = true;
    std::vector<PersonPropertyUpdate> m_updates;
    std::vector<std::unique_ptr<std::string>> m_text; // minified values and $initial_ keys
    std::size_t m_textUsed = 0;
    std::string_view keep(std::string text);
};

// PostHog's capture and ingestion rewrite an event's distinct id before any person sees it
// (rust/capture v0_request.rs extract_distinct_id, nodejs utils/event.ts sanitizeEvent): NUL
// becomes U+FFFD and anything past 200 code points is cut. Returns `id` itself when nothing
// changes, else a view into `scratch`.
std::string_view normalizeCapturedDistinctId(std::string_view id, std::string& scratch);

// Which project each event seq belongs to, kept as ranges (a capture has few projects and long
// runs of each): the pipeline writes it into the capture (state "identity_projects") so a replay
// puts every stored event back into its project.
class ProjectMap {
public:
    void note(std::int64_t seq, std::string_view project);
    std::string_view at(std::int64_t seq) const;
    bool empty() const { return m_ranges.empty(); }
    std::string toJson() const;
    // nullopt for text that is not a list of [seq, project] pairs.
    static std::optional<ProjectMap> fromJson(std::string_view text);

private:
    std::vector<std::pair<std::int64_t, std::string>> m_ranges; // first seq of a run, its project
};

// Picks the group out of a $groupidentify, as PostHog's ingestion reads it (process-event.ts,
// upsertGroup): properties.$group_type and .$group_key (a number is taken as its text), and
// .$group_set as the group's properties. A Segment group has no group type: it is "segment", its
// key the groupId (decoded into .$group_key), its traits the group's properties. Valid until the
// next extract().
class GroupExtractor {
public:
    // False when the event names no group (another event, or no type or key).
    bool extract(std::string_view name, Format format, simdjson::dom::element properties);
    std::string_view type() const { return m_type; }
    std::string_view key() const { return m_key; }
    std::string_view properties() const { return m_properties; }

private:
    std::string_view m_type;
    std::string m_key;
    std::string m_properties;
};

struct IdentityOptions {
    // Property keys whose values tie events to one person; callers append their own (order_id).
    std::vector<std::string> correlationKeys{"$session_id", "$device_id"};
    // The correlation key that names a device. posthog-js keeps $device_id across reset() (and
    // starts a new anonymous id and session), so persons that use one device one after another
    // are a shared device (logout, another login), not a split identity.
    std::string deviceKey = "$device_id";
    // Evidence listed per issue (event seqs, ids) and issues listed per kind in an explanation;
    // anything beyond is counted, not listed.
    std::size_t evidenceLimit = 20;
};

// Picks the correlation keys out of an event's properties (top-level members only). Strings view
// into the properties' document; numbers are written as their shortest text into this
// extractor. The result is valid until the next extract() and while the document lives.
class CorrelationExtractor {
public:
    explicit CorrelationExtractor(std::vector<std::string> keys);
    std::span<const Correlation> extract(simdjson::dom::element properties);
    const std::vector<std::string>& keys() const { return m_keys; }

private:
    std::vector<std::string> m_keys;
    std::vector<std::array<char, 32>> m_numberText; // one slot per key
    std::vector<Correlation> m_found;
};

enum class LinkKind : std::uint8_t { Identify, Alias, MergeDangerously };
enum class LinkOutcome : std::uint8_t { Merged, Joined, AlreadySame, Refused, SkippedIllegal };
enum class IdentityIssueKind : std::uint8_t {
    IllegalDistinctId,
    MergeRefused,
    SplitIdentity,
    OrphanServerId,
    PostIdentifyAnonymous,
    ProbableSameUser, // a heuristic: listed, never counted in the totals
    SharedDevice,     // a note: persons that used one device one after another; never counted
    // $identify / $create_alias / $merge_dangerously / $groupidentify sent with
    // $process_person_profile: false: PostHog drops the event (invalid_event_when_process_person_profile_is_false)
    DroppedPersonless,
};
inline constexpr std::size_t kIdentityIssueKindCount = 8;
// Kinds that are listed but are not findings (not in countedIssues(), not in "issues").
bool isInformational(IdentityIssueKind kind);

std::string_view toString(LinkKind kind);
std::string_view toString(LinkOutcome outcome);
std::string_view toString(IdentityIssueKind kind);
std::optional<IdentityIssueKind> parseIdentityIssueKind(std::string_view text);

// PostHog's illegal distinct ids (person-utils.ts isDistinctIdIllegal): blank after JavaScript's
// trim(), one of the case-insensitive words (anonymous, guest, distinctid, distinct_id, id,
// not_authenticated, email, undefined, true, false) or case-sensitive ones ([object Object], NaN,
// None, none, null, 0, undefined), bare or in single or double quotes. Such an id still gets a
// person of its own; no merge involves it.
bool isIllegalDistinctId(std::string_view id);
// Ids no merge can involve (isDistinctIdUnmergeable): the illegal ones, any with a NUL, and any
// over 400 code points (a $anon_distinct_id or alias is not normalised the way a distinct id is).
bool isUnmergeableDistinctId(std::string_view id);
// The value ids are compared by for probable_same_user ("user_123", "usr-123", "123" -> "123");
// empty when too short to mean anything.
std::string sameUserKey(std::string_view id);

struct IdentityEventRef {
    std::int64_t seq = 0;
    std::string name;
    std::optional<std::int64_t> timeMillis;
    Stream stream = Stream::Unknown;
    std::string origin;
};

struct IdentityLink {
    IdentityEventRef event;
    LinkKind kind = LinkKind::Identify;
    LinkOutcome outcome = LinkOutcome::Merged;
    std::string sourceId; // the id added: anonymous id, alias, previousId
    std::string targetId; // the event's distinct id
    // The persons' state when the link was decided (false for an id that was new).
    bool sourceIdentified = false;
    bool targetIdentified = false;
    bool targetIllegal = false; // skipped_illegal: the event's own distinct id is the unmergeable one
};

struct IdentityIssue {
    IdentityIssueKind kind = IdentityIssueKind::IllegalDistinctId;
    std::string message;
    std::vector<std::string> ids;        // at most evidenceLimit
    std::size_t idCount = 0;             // all ids involved
    std::vector<std::int64_t> eventSeqs; // the proving events, at most evidenceLimit
    std::uint64_t eventCount = 0;        // all events behind the issue
    std::size_t personCount = 0;         // split_identity, shared_device, probable_same_user
    std::string correlationKey;          // split_identity, shared_device
    std::string correlationValue;
    std::optional<IdentityLink> link; // merge_refused; illegal_distinct_id of a link source
    std::string project;              // the project of the ids involved ("" when none was named)
};

struct IdentityMember {
    std::string id;
    IdentityEventRef firstSeen;           // the first event that used it (distinct id or link source)
    std::optional<IdentityLink> joinedBy; // the link that brought it in: merged source, or new to a link
    bool usedByClient = false;
    bool usedByServer = false;
    bool illegal = false;  // an illegal distinct id: a person of its own, never merged
    bool personless = false; // seen only in $process_person_profile: false events: no person (yet)
    std::string original;  // the id as sent, when capture normalisation changed it (NUL, length)

    const IdentityEventRef& introducedBy() const { return joinedBy ? joinedBy->event : firstSeen; }
};

// A group ($groupidentify): kept apart from persons, never in a person issue.
struct IdentityGroup {
    std::string type;
    std::string key;
    std::string properties;         // a JSON object: every $group_set merged, the later value winning
    std::vector<std::string> members; // distinct ids named as members, at most evidenceLimit
    std::size_t memberCount = 0;
    std::uint64_t eventCount = 0;
    std::int64_t firstSeq = 0;
};

// One change of a person property: the event that made it.
struct PropertyChange {
    std::int64_t seq = 0;
    std::string eventName;
    std::string distinctId; // the event's distinct id (PostHog orders events per token:distinct_id)
    std::string op;         // "$set", "$set_once", "$unset", or "merge" (the value a merge dropped)
    std::string value;      // JSON; empty for $unset
};

// A person property and its blame: the change that gave it its value and the ones it replaced.
struct PersonProperty {
    std::string key;
    std::string value; // JSON; empty when removed
    bool removed = false;
    PropertyChange setBy;
    std::vector<PropertyChange> overridden; // oldest first, at most evidenceLimit
    std::size_t overriddenCount = 0;
    // A replaced change came from another distinct id: PostHog processes each token:distinct_id
    // partition in order but not two partitions against each other, so the winner depends on
    // arrival order there.
    bool orderDependent = false;
};

struct IdentityExplanation {
    std::string id; // the id asked about
    std::string project;
    bool identified = false;
    std::optional<IdentityEventRef> identifiedBy; // the event that first marked the person identified
    std::vector<PersonProperty> properties;       // by key
    // Where PostHog's outcome depends on the arrival order of different distinct ids' events.
    std::vector<std::string> orderNotes;
    std::vector<std::pair<std::string, std::string>> groups; // (type, key) the person is a member of
    std::vector<IdentityMember> members;     // every id of the person, by first use
    std::vector<IdentityLink> links;         // every link touching a member, in event order
    std::vector<IdentityLink> refusedMerges; // the refused ones among them
    std::vector<IdentityIssue> issues;       // at most evidenceLimit per kind
    std::array<std::size_t, kIdentityIssueKindCount> issueCounts{};
};

struct IdentitySummary {
    std::uint64_t events = 0; // observed, including those with an illegal distinct id
    std::uint64_t ids = 0;
    std::uint64_t persons = 0;
    std::uint64_t identifiedPersons = 0;
    std::uint64_t links = 0;             // link events, whatever their outcome
    std::uint64_t merges = 0;            // links that joined ids not already in one person
    std::uint64_t correlationValues = 0; // distinct (key, value) pairs tracked
    std::array<std::uint64_t, kIdentityIssueKindCount> issues{};
    std::uint64_t groups = 0; // $groupidentify groups, never persons
    std::map<std::string, std::uint64_t> groupsByType;
    std::uint64_t personlessEvents = 0; // $process_person_profile: false, person events excluded
    std::uint64_t personlessIds = 0;    // ids seen only in personless events: no person
    std::uint64_t droppedEvents = 0;    // events PostHog drops (personless person events, empty ids)
    std::uint64_t normalizedIds = 0;    // distinct ids capture normalisation changed
    std::uint64_t personsWithProperties = 0;
    struct Project {
        std::uint64_t events = 0;
        std::uint64_t ids = 0;
        std::uint64_t persons = 0;
        std::uint64_t identifiedPersons = 0;
    };
    std::map<std::string, Project> projects; // by project ("" when events name none)
    // split_identity, shared_device, orphan_server_id, probable_same_user exist after finish()
    bool finished = false;

    std::uint64_t issueCount(IdentityIssueKind kind) const { return issues[static_cast<std::size_t>(kind)]; }
    std::uint64_t countedIssues() const; // all but the informational kinds
};

class IdentityGraph {
public:
    explicit IdentityGraph(IdentityOptions options = {});
    ~IdentityGraph();
    IdentityGraph(IdentityGraph&&) noexcept;
    IdentityGraph& operator=(IdentityGraph&&) noexcept;

    // Events in processing order (seq ascending); only valid, unique events.
    void observe(const IdentityEvent& event);
    // Computes the issues that need the whole graph. May be called again after more events.
    void finish();

    IdentitySummary summary() const;
    std::vector<IdentityIssue> issues(IdentityIssueKind kind,
                                      std::size_t limit = std::numeric_limits<std::size_t>::max()) const;
    // Every kind, grouped in enum order, each in processing order. Issues are stored compactly and
    // built (strings, messages) here, so pass a limit when only a sample is shown.
    std::vector<IdentityIssue>
    issues(std::size_t limitPerKind = std::numeric_limits<std::size_t>::max()) const;
    // nullopt when the id was never seen in that project (an empty id never is); see similarIds().
    // Without a project: the first project that has the id (projectsOf lists them all).
    std::optional<IdentityExplanation> explain(std::string_view id,
                                               std::optional<std::string_view> project = std::nullopt) const;
    std::vector<std::string> projectsOf(std::string_view id) const;
    std::vector<std::string> similarIds(std::string_view id, std::size_t limit = 5) const;
    // Every group, by type then key.
    std::vector<IdentityGroup> groups() const;
    bool samePerson(std::string_view a, std::string_view b, std::string_view project = {}) const;
    // Every person with properties: {"project", "ids" (the first few), "properties": {key: {value,
    // set_by, overridden...}}}: every person's properties and their blame.
    nlohmann::json personPropertiesJson() const;

    const IdentityOptions& options() const;

private:
    struct State;
    std::unique_ptr<State> m_state;
};

void to_json(nlohmann::json& json, const IdentitySummary& summary); // the report's "identity" section
void to_json(nlohmann::json& json, const IdentityEventRef& event);
void to_json(nlohmann::json& json, const IdentityLink& link);
void to_json(nlohmann::json& json, const IdentityIssue& issue);
void to_json(nlohmann::json& json, const IdentityExplanation& explanation);
void to_json(nlohmann::json& json, const IdentityGroup& group);
void to_json(nlohmann::json& json, const PropertyChange& change);
void to_json(nlohmann::json& json, const PersonProperty& property);
// {"illegal_distinct_id": [...], ...}: every kind present, in enum order.
nlohmann::json groupedIssuesJson(std::span<const IdentityIssue> issues);

// Human renderings for `pipescope-cli identity --explain ID` / `--issues`.
std::string toText(const IdentityExplanation& explanation);
std::string toText(const IdentitySummary& summary, std::span<const IdentityIssue> issues);

} // namespace pipescope
