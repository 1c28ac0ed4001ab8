// Identity to the letter of PostHog's person rules: one row per PostHog test scenario reproduced,
// each naming the PostHog test (file and test name) it mirrors. Every row runs PostHog-shaped
// events through the real pipeline (decoder, person-property extraction, identity graph) and checks
// persons, is_identified, merges, person properties with their blame, and issues.
//
// PostHog's tests start from persons made with createPerson(properties, is_identified); here such
// a person is made by events: a `$set` event for properties (a person event: always written) and
// an `$identify` with a `$anon_distinct_id` for an identified one.

#include "identity/identity_graph.h"
#include "pipeline/check.h"
#include "store/capture_store.h"

#include <QTemporaryDir>
#include <QtTest>
#include <nlohmann/json.hpp>

using namespace pipescope;
using json = nlohmann::json;

namespace {

// PostHog test files the rows mirror.
const QString kPersonState = "plugin-server/tests/worker/ingestion/person-state.test.ts";
const QString kPersonStateBatch = "plugin-server/tests/worker/ingestion/person-state-batch.test.ts";
const QString kNormalizeFlag = "nodejs/src/ingestion/event-processing/normalize-process-person-flag-step.test.ts";
const QString kCapture = "rust/capture/src/v0_request.rs";
const QString kMergeService = "nodejs/src/ingestion/common/persons/person-merge-service.test.ts";

QString setEvent(const QString& id, const QString& set) {
    return QString(R"({"event":"$set","distinct_id":"%1","properties":{"$set":%2}})").arg(id, set);
}
QString identifiedPerson(const QString& id, const QString& set = "{}") {
    return QString(R"({"event":"$identify","distinct_id":"%1","properties":{"$anon_distinct_id":"%1-anon","$set":%2}})")
        .arg(id, set);
}
QString identify(const QString& id, const QString& anon, const QString& extra = {}) {
    return QString(R"({"event":"$identify","distinct_id":"%1","properties":{"$anon_distinct_id":%2%3}})")
        .arg(id, anon, extra.isEmpty() ? QString() : "," + extra);
}
QString phEvent(const QString& name, const QString& id, const QString& properties = "{}") {
    return QString(R"({"event":"%1","distinct_id":"%2","properties":%3})").arg(name, id, properties);
}

struct Run {
    std::unique_ptr<Pipeline> pipeline;
    const IdentityGraph& graph() const { return pipeline->identityGraph(); }
};

Run run(const QStringList& lines) {
    Run result{std::make_unique<Pipeline>(nullptr, nullptr, PipelineOptions{})};
    std::uint64_t number = 0;
    for (const QString& line : lines)
        result.pipeline->processLine(line.toStdString(), Origin{"posthog.ndjson", ++number, -1}, false);
    result.pipeline->finish();
    return result;
}

json propertiesOf(const IdentityExplanation& explanation) {
    json properties = json::object();
    for (const auto& property : explanation.properties)
        if (!property.removed) properties[property.key] = json::parse(property.value);
    return properties;
}

QString show(const json& value) {
    return QString::fromStdString(value.dump());
}

// Checks a run against the row's expectations (see the column comments in posthog_data()).
void check(const Run& result, const json& expect) {
    static const json kEmpty = json::object();
    const IdentityGraph& graph = result.graph();
    const IdentitySummary summary = graph.summary();
    if (expect.contains("persons")) QCOMPARE(summary.persons, expect["persons"].get<std::uint64_t>());
    if (expect.contains("identified")) QCOMPARE(summary.identifiedPersons, expect["identified"].get<std::uint64_t>());
    if (expect.contains("personless_events"))
        QCOMPARE(summary.personlessEvents, expect["personless_events"].get<std::uint64_t>());
    if (expect.contains("dropped")) QCOMPARE(summary.droppedEvents, expect["dropped"].get<std::uint64_t>());
    for (const auto& pair : expect.value("together", json::array()))
        QVERIFY2(graph.samePerson(pair[0].get<std::string>(), pair[1].get<std::string>(), pair.size() > 2 ? pair[2].get<std::string>() : std::string()),
                 qPrintable(show(pair)));
    for (const auto& pair : expect.value("apart", json::array()))
        QVERIFY2(!graph.samePerson(pair[0].get<std::string>(), pair[1].get<std::string>()), qPrintable(show(pair)));
    for (const auto& [id, identified] : expect.contains("is_identified") ? expect["is_identified"].items() : kEmpty.items()) {
        const auto explanation = graph.explain(id);
        QVERIFY2(explanation, id.c_str());
        QCOMPARE(explanation->identified, identified.get<bool>());
    }
    for (const auto& [id, properties] : expect.contains("props") ? expect["props"].items() : kEmpty.items()) {
        const auto explanation = graph.explain(id);
        QVERIFY2(explanation, id.c_str());
        QCOMPARE(show(propertiesOf(*explanation)), show(properties));
    }
    for (const auto& [id, keys] : expect.contains("set_by") ? expect["set_by"].items() : kEmpty.items()) {
        const auto explanation = graph.explain(id);
        QVERIFY2(explanation, id.c_str());
        for (const auto& [key, seq] : keys.items()) {
            const auto found = std::find_if(explanation->properties.begin(), explanation->properties.end(),
                                            [&](const PersonProperty& p) { return p.key == key; });
            QVERIFY2(found != explanation->properties.end(), key.c_str());
            QCOMPARE(found->setBy.seq, seq.get<std::int64_t>());
        }
    }
    for (const auto& id : expect.contains("no_person") ? expect["no_person"] : kEmpty) {
        const auto explanation = graph.explain(id.get<std::string>());
        QVERIFY2(!explanation || explanation->members.front().personless, qPrintable(show(id)));
    }
    for (const auto& [kind, count] : expect.contains("issues") ? expect["issues"].items() : kEmpty.items()) {
        const auto parsed = parseIdentityIssueKind(kind);
        QVERIFY2(parsed, kind.c_str());
        QCOMPARE(summary.issueCount(*parsed), count.get<std::uint64_t>());
    }
    for (const auto& [name, persons] : expect.contains("project_persons") ? expect["project_persons"].items() : kEmpty.items()) {
        QVERIFY2(summary.projects.count(name), name.c_str());
        QCOMPARE(summary.projects.at(name).persons, persons.get<std::uint64_t>());
    }
    for (const auto& [id, original] : expect.contains("original") ? expect["original"].items() : kEmpty.items()) {
        const auto explanation = graph.explain(id);
        QVERIFY2(explanation, id.c_str());
        QCOMPARE(QString::fromStdString(explanation->members.front().original),
                 QString::fromStdString(original.get<std::string>()));
    }
    if (expect.contains("order_notes")) {
        const auto explanation = graph.explain(expect["order_notes"][0].get<std::string>());
        QVERIFY(explanation);
        QCOMPARE(explanation->orderNotes.size(), expect["order_notes"][1].get<std::size_t>());
    }
}

} // namespace

class TestIdentityPostHog : public QObject {
    Q_OBJECT

private slots:
    void posthog_data();
    void posthog();
    void blameOfAProperty();
    void propertiesKeptInTheCapture();
    void illegalAndUnmergeableIds_data();
    void illegalAndUnmergeableIds();
};

void TestIdentityPostHog::posthog_data() {
    QTest::addColumn<QString>("mirrors"); // the PostHog test file :: test name
    QTest::addColumn<QStringList>("lines");
    // {"persons", "identified", "together": [[a, b]], "apart": [[a, b]], "is_identified": {id: bool},
    //  "props": {id: {...}} (exact), "set_by": {id: {key: seq}}, "no_person": [id], "issues": {kind: n},
    //  "personless_events", "dropped", "project_persons": {project: n}, "original": {id: as sent}}
    QTest::addColumn<QString>("expect");

    const auto row = [](const QString& file, const QString& test, const QStringList& lines, const char* expect) {
        QTest::addRow("%s", qPrintable(file.section('/', -1) + " :: " + test)) << file + " :: " + test << lines
                                                                             << QString(expect);
    };

    // --- person-state.test.ts (plugin-server)
    row(kPersonState, "creates person if theyre new", {phEvent("$pageview", "new-user")},
        R"({"persons": 1, "identified": 0, "props": {"new-user": {}}})");
    row(kPersonState, "creates person with properties",
        {phEvent("$pageview", "new-user", R"({"$set_once":{"a":1,"b":2},"$set":{"b":3,"c":4}})")},
        R"({"persons": 1, "props": {"new-user": {"a": 1, "b": 3, "c": 4}}})");
    row(kPersonState, "creates person on $identify event",
        {identify("new-user", "\"old-user\"", R"("$set":{"foo":"bar"})")},
        R"({"persons": 1, "identified": 1, "together": [["new-user", "old-user"]], "props": {"new-user": {"foo": "bar"}}})");
    row(kPersonState, "merges people on $identify event",
        {setEvent("old-user", R"({"a":1,"b":2})"), setEvent("new-user", R"({"b":3,"c":4})"),
         identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "together": [["new-user", "old-user"]],
            "props": {"new-user": {"a": 1, "b": 3, "c": 4}}})");
    row(kPersonState, "adds adds new distinct_id and updates is_identified on $identify event",
        {phEvent("$pageview", "new-user"), identify("new-user", "\"old-user\"", R"("$set":{"foo":"bar"})")},
        R"({"persons": 1, "is_identified": {"new-user": true}, "together": [["new-user", "old-user"]],
            "props": {"old-user": {"foo": "bar"}}})");
    row(kPersonState, "does not update person if user already identified and no properties change on $identify event",
        {identify("new-user", "\"old-user\""), identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "props": {"new-user": {}}})");
    row(kPersonState, "does not merge already identified users",
        {identifiedPerson("old-user", R"({"a":1,"b":2})"), setEvent("new-user", R"({"b":3,"c":4,"d":5})"),
         identify("new-user", "\"old-user\"")},
        R"({"persons": 2, "apart": [["new-user", "old-user"]], "issues": {"merge_refused": 1},
            "props": {"old-user": {"a": 1, "b": 2}, "new-user": {"b": 3, "c": 4, "d": 5}}})");
    row(kPersonState, "merges people on $identify event and updates properties with $set/$set_once",
        {setEvent("old-user", R"({"a":1,"b":2})"), setEvent("new-user", R"({"b":3,"c":4,"d":5})"),
         identify("new-user", "\"old-user\"", R"("$set":{"d":6,"e":7},"$set_once":{"a":8,"f":9})")},
        R"({"persons": 1, "identified": 1, "props": {"new-user": {"a": 1, "b": 3, "c": 4, "d": 6, "e": 7, "f": 9}}})");

    // --- person-state-batch.test.ts (plugin-server)
    row(kPersonStateBatch, "does not attach existing person properties to $process_person_profile=false events",
        {phEvent("$pageview", "new-user", R"({"$set":{"c":420}})"),
         phEvent("$pageview", "new-user", R"({"$process_person_profile":false,"$set":{"c":1}})")},
        R"({"persons": 1, "personless_events": 1, "props": {"new-user": {"c": 420}}, "set_by": {"new-user": {"c": 1}}})");
    row(kPersonStateBatch, "updates person properties",
        {setEvent("new-user", R"({"b":3,"c":4,"toString":{}})"),
         phEvent("$pageview", "new-user", R"({"$set_once":{"c":3,"e":4},"$set":{"b":4,"toString":1}})")},
        R"({"props": {"new-user": {"b": 4, "c": 4, "e": 4, "toString": 1}}})");
    row(kPersonStateBatch, "does not update person properties for $$heatmap",
        {setEvent("new-user", R"({"b":3,"c":4})"),
         phEvent("$$heatmap", "new-user", R"({"$set_once":{"c":3,"e":4},"$set":{"b":4}})")},
        R"({"props": {"new-user": {"b": 3, "c": 4}}})");
    row(kPersonStateBatch, "does not update person properties for $exception",
        {setEvent("new-user", R"({"b":3,"c":4})"),
         phEvent("$exception", "new-user", R"({"$set_once":{"c":3,"e":4},"$set":{"b":4}})")},
        R"({"props": {"new-user": {"b": 3, "c": 4}}})");
    row(kPersonStateBatch, "updates person properties - no update if not needed",
        {setEvent("new-user", R"({"$current_url":123})"),
         phEvent("$pageview", "new-user", R"({"$set":{"$current_url":4}})")},
        R"({"props": {"new-user": {"$current_url": 123}}, "set_by": {"new-user": {"$current_url": 1}}})");
    row(kPersonStateBatch, "updates person properties - always update for person events",
        {setEvent("new-user", R"({"$current_url":123})"), setEvent("new-user", R"({"$current_url":4})")},
        R"({"props": {"new-user": {"$current_url": 4}}, "set_by": {"new-user": {"$current_url": 2}}})");
    row(kPersonStateBatch, "updates person properties - always update if undefined before",
        {phEvent("$pageview", "new-user"), phEvent("$pageview", "new-user", R"({"$set":{"$initial_current_url":4}})")},
        R"({"props": {"new-user": {"$initial_current_url": 4}}})");
    row(kPersonStateBatch, "updates person properties - always update for initial properties",
        {setEvent("new-user", R"({"$initial_current_url":123})"),
         phEvent("$pageview", "new-user", R"({"$set":{"$initial_current_url":4}})")},
        R"({"props": {"new-user": {"$initial_current_url": 4}}})");
    row(kPersonStateBatch, "does not update person if not needed",
        {setEvent("new-user", R"({"b":3,"c":4})"),
         phEvent("$pageview", "new-user", R"({"$set_once":{"c":3},"$set":{"b":3}})")},
        R"({"props": {"new-user": {"b": 3, "c": 4}}, "set_by": {"new-user": {"b": 1, "c": 1}}})");
    row(kPersonStateBatch, "no-op when $anon_distinct_id not passed",
        {phEvent("$identify", "new-user", R"({"$set":{"foo":"bar"}})")},
        R"({"persons": 1, "identified": 0, "props": {"new-user": {"foo": "bar"}}})");
    row(kPersonStateBatch,
        "creates person with both distinct_ids and marks user as is_identified when $anon_distinct_id passed",
        {identify("new-user", "\"old-user\"", R"("$set":{"foo":"bar"})")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]], "props": {"new-user": {"foo": "bar"}}})");
    row(kPersonStateBatch,
        "add distinct id and marks user is_identified when passed $anon_distinct_id person does not exists and distinct_id does",
        {phEvent("$pageview", "new-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]]})");
    row(kPersonStateBatch,
        "add distinct id and marks user as is_identified when passed $anon_distinct_id person exists and distinct_id does not",
        {phEvent("$pageview", "old-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]]})");
    row(kPersonStateBatch,
        "merge into distinct_id person and marks user as is_identified when both persons have is_identified false",
        {phEvent("$pageview", "old-user"), phEvent("$pageview", "new-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]], "issues": {"merge_refused": 0}})");
    row(kPersonStateBatch,
        "merge into distinct_id person and marks user as is_identified when distinct_id user is identified and "
        "$anon_distinct_id user is not",
        {phEvent("$pageview", "old-user"), identifiedPerson("new-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]]})");
    row(kPersonStateBatch,
        "does not merge people when distinct_id user is not identified and $anon_distinct_id user is",
        {identifiedPerson("old-user"), phEvent("$pageview", "new-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 2, "apart": [["old-user", "new-user"]], "issues": {"merge_refused": 1},
            "is_identified": {"old-user": true, "new-user": true}})");
    row(kPersonStateBatch, "does not merge people when both users are identified",
        {identifiedPerson("old-user"), identifiedPerson("new-user"), identify("new-user", "\"old-user\"")},
        R"({"persons": 2, "identified": 2, "apart": [["old-user", "new-user"]], "issues": {"merge_refused": 1}})");
    row(kPersonStateBatch, "merge into distinct_id person and updates properties with $set/$set_once",
        {setEvent("old-user", R"({"a":1,"b":2})"), setEvent("new-user", R"({"b":3,"c":4,"d":5})"),
         identify("new-user", "\"old-user\"", R"("$set":{"d":6,"e":7},"$set_once":{"a":8,"f":9})")},
        R"({"persons": 1, "props": {"old-user": {"a": 1, "b": 3, "c": 4, "d": 6, "e": 7, "f": 9}},
            "set_by": {"new-user": {"a": 1, "b": 2, "d": 3, "f": 3}}})");
    row(kPersonStateBatch, "calls merge on $create_alias as expected",
        {phEvent("$pageview", "old-user"), phEvent("$pageview", "new-user"),
         phEvent("$create_alias", "new-user", R"({"alias":"old-user"})")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]]})");
    row(kPersonStateBatch, "calls merge on $merge_dangerously as expected",
        {phEvent("$pageview", "old-user"), phEvent("$pageview", "new-user"),
         phEvent("$merge_dangerously", "new-user", R"({"alias":"old-user"})")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]]})");
    row(kPersonStateBatch, "merge_dangerously can merge people when alias id user is identified",
        {identifiedPerson("old-user"), identifiedPerson("new-user"),
         phEvent("$merge_dangerously", "new-user", R"({"alias":"old-user"})")},
        R"({"persons": 1, "identified": 1, "together": [["old-user", "new-user"]], "issues": {"merge_refused": 0}})");
    // it.each(['', '   ', 'null', 'undefined', '"undefined"', '[object Object]', '"[object Object]"'])
    const QStringList illegal{"", "   ", "null", "undefined", "\\\"undefined\\\"", "[object Object]",
                              "\\\"[object Object]\\\""};
    for (const QString& id : illegal) {
        const QString shown = QString(id).replace("\\\"", "\"");
        row(kPersonStateBatch, "stops $identify if current distinct_id is illegal: `" + shown + "`",
            {identify(id, "\"anonymous_id\"")},
            id.isEmpty()
                // An empty id never reaches a person: PostHog's capture rejects it.
                ? R"({"persons": 0, "identified": 0, "no_person": ["anonymous_id"], "dropped": 1})"
                // The merge stops; the illegal id still gets a person of its own (createOrGetPerson).
                : R"({"persons": 1, "identified": 0, "no_person": ["anonymous_id"], "issues": {"illegal_distinct_id": 1}})");
        row(kPersonStateBatch, "stops $identify if $anon_distinct_id is illegal: `" + shown + "`",
            {identify("some_distinct_id", "\"" + id + "\"")},
            R"({"persons": 1, "identified": 0, "is_identified": {"some_distinct_id": false},
                "issues": {"illegal_distinct_id": 1}, "no_person": ["null", "undefined"]})");
    }
    row(kPersonStateBatch, "stops $create_alias if current distinct_id is illegal",
        {phEvent("$create_alias", "false", R"({"alias":"some_distinct_id"})")},
        R"({"persons": 1, "identified": 0, "no_person": ["some_distinct_id"], "issues": {"illegal_distinct_id": 1}})");
    row(kPersonStateBatch, "stops $create_alias if alias is illegal",
        {phEvent("$create_alias", "some_distinct_id", R"({"alias":"null"})")},
        R"({"persons": 1, "identified": 0, "issues": {"illegal_distinct_id": 1}})");

    // --- normalize-process-person-flag-step.test.ts
    for (const char* name : {"$identify", "$create_alias", "$merge_dangerously", "$groupidentify"})
        row(kNormalizeFlag, QString("drops event %1 when $process_person_profile=false").arg(name),
            {phEvent(name, "my_id",
                   R"({"$process_person_profile":false,"$anon_distinct_id":"anon","alias":"anon",)"
                   R"("$group_type":"company","$group_key":"acme"})")},
            R"({"persons": 0, "dropped": 1, "issues": {"dropped_personless": 1}, "no_person": ["my_id", "anon"]})");
    row(kNormalizeFlag, "allows regular events when $process_person_profile=false",
        {phEvent("$pageview", "my_id", R"({"$process_person_profile":false,"$set":{"a":1}})")},
        R"({"persons": 0, "personless_events": 1, "dropped": 0, "no_person": ["my_id"]})");

    // --- capture (rust/capture/src/v0_request.rs, test fn extract_distinct_id)
    row(kCapture, "extract_distinct_id: a number is stringified", {R"({"event":"e","distinct_id":42})"},
        R"({"persons": 1, "together": [["42", "42"]]})");
    row(kCapture, "extract_distinct_id: a non-string value is its JSON text",
        {R"({"event":"e","distinct_id":{"a":1}})", R"({"event":"e","distinct_id":true})"},
        R"({"persons": 2, "together": [["{\"a\":1}", "{\"a\":1}"]], "issues": {"illegal_distinct_id": 1}})");
    const QString longId = QString(250, 'x');
    row(kCapture, "extract_distinct_id: truncated to 200 characters", {phEvent("$pageview", longId)},
        qPrintable(QString(R"({"persons": 1, "original": {"%1": "%2"}})").arg(QString(200, 'x'), longId)));
    row(kCapture, "extract_distinct_id: a null distinct id falls back to properties.distinct_id",
        {R"({"event":"e","distinct_id":null,"properties":{"distinct_id":"u-1"}})"},
        R"({"persons": 1, "together": [["u-1", "u-1"]]})");

    // --- the sources themselves, where no PostHog test pins the case
    row("nodejs/src/ingestion/common/persons/person-merge-service.ts", "merge(): a refused merge still marks the target identified",
        {identifiedPerson("old-user"), phEvent("$pageview", "new-user"),
         phEvent("$create_alias", "new-user", R"({"alias":"old-user"})")},
        R"({"persons": 2, "identified": 2, "is_identified": {"new-user": true}})");
    row("nodejs/src/ingestion/common/persons/person-merge-service.ts",
        "handleIdentifyOrAlias: a falsy alias is no merge at all",
        {phEvent("$create_alias", "u-1", R"({"alias":0})"), phEvent("$create_alias", "u-2", R"({"alias":""})"),
         phEvent("$create_alias", "u-3", R"({"alias":false})")},
        R"({"persons": 3, "identified": 0, "issues": {"illegal_distinct_id": 0}})");
    row("nodejs/src/ingestion/common/persons/person-merge-service.ts",
        "handleIdentifyOrAlias: String($anon_distinct_id) of null and of an object are illegal",
        {identify("u-1", "null"), identify("u-2", R"({"k":1})")},
        R"({"persons": 2, "identified": 0, "issues": {"illegal_distinct_id": 2}})");
    row("nodejs/src/ingestion/common/persons/person-merge-service.ts",
        "handleIdentifyOrAlias: a numeric alias merges as its String()",
        {phEvent("$pageview", "1"), phEvent("$create_alias", "u-1", R"({"alias":1.0})")},
        R"({"persons": 1, "identified": 1, "together": [["1", "u-1"]]})");
    row("nodejs/src/common/persons/person-utils.ts", "isDistinctIdUnmergeable: a NUL in $anon_distinct_id",
        {identify("u-1", "\"anon\\u0000x\"")},
        R"({"persons": 1, "identified": 0, "issues": {"illegal_distinct_id": 1}})");
    row("nodejs/src/ingestion/common/persons/person-update.ts", "computeEventPropertyUpdates: $unset (array and object)",
        {setEvent("u-1", R"({"a":1,"b":2,"c":3})"), setEvent("u-1", "{}"),
         phEvent("$set", "u-1", R"({"$unset":["a",7]})"), phEvent("$set", "u-1", R"({"$unset":{"b":null}})")},
        R"({"props": {"u-1": {"c": 3}}})");
    row("nodejs/src/ingestion/common/persons/person-update.ts",
        "computeEventPropertyUpdates: $unset acts on what the person had before the event",
        {phEvent("$set", "u-1", R"({"$set":{"a":1},"$unset":["a"]})")}, R"({"props": {"u-1": {"a": 1}}})");
    row("nodejs/src/ingestion/common/persons/person-update.ts",
        "computeEventPropertyUpdates: a null on the person lets $set_once land",
        {setEvent("u-1", R"({"gclid":null})"), phEvent("$set", "u-1", R"({"$set_once":{"gclid":"abc"}})")},
        R"({"props": {"u-1": {"gclid": "abc"}}})");
    row("nodejs/src/utils/event.ts", "sanitizeEvent: a top-level $set wins over properties.$set",
        {R"({"event":"$set","distinct_id":"u-1","$set":{"plan":"pro"},"properties":{"$set":{"plan":"free","x":1}}})"},
        R"({"props": {"u-1": {"plan": "pro", "x": 1}}})");
    row("nodejs/src/common/utils/db/utils.ts", "personInitialAndUTMProperties: event properties lifted onto the person",
        {phEvent("$pageview", "u-1", R"({"$browser":"Firefox","utm_source":"news","gclid":null})")},
        R"({"props": {"u-1": {"$browser": "Firefox", "$initial_browser": "Firefox", "$initial_utm_source": "news",
                              "gclid": null, "utm_source": "news"}}})");
    row("nodejs/src/common/utils/db/utils.ts", "personInitialAndUTMProperties: a server host's $os is not lifted",
        {phEvent("$pageview", "u-1", R"({"$is_server":true,"$os":"Linux","$browser":"curl"})")},
        R"({"props": {"u-1": {"$browser": "curl", "$initial_browser": "curl"}}})");
    row("nodejs/src/utils/event.ts", "normalizeProcessPerson: a $groupidentify never sets person properties",
        {R"({"event":"$groupidentify","distinct_id":"u-1","properties":{"$group_type":"company","$group_key":"acme","$set":{"a":1}}})"},
        R"({"persons": 1, "props": {"u-1": {}}})");
    // An invalid (non-boolean) value is a warning and falls back to person processing.
    row(kNormalizeFlag, "adds warning for invalid $process_person_profile values",
        {phEvent("$pageview", "u-1", R"({"$process_person_profile":"false","$set":{"a":1}})")},
        R"({"persons": 1, "personless_events": 0, "props": {"u-1": {"a": 1}}})");
    row("nodejs/src/ingestion/common/persons/person-merge-service.ts",
        "a personless anonymous id joins the person that identifies it",
        {phEvent("$pageview", "anon-1", R"({"$process_person_profile":false})"), identify("user-1", "\"anon-1\"")},
        R"({"persons": 1, "identified": 1, "together": [["anon-1", "user-1"]]})");
    row("persons per team (uuidFromDistinctId(team_id, distinct_id))", "two projects never share a person",
        {R"({"event":"$pageview","distinct_id":"u-1","properties":{"token":"phc_a"}})",
         R"({"event":"$pageview","distinct_id":"u-1","properties":{"token":"phc_b"}})",
         R"({"api_key":"phc_a","batch":[{"event":"$identify","distinct_id":"u-1","properties":{"$anon_distinct_id":"anon"}}]})"},
        R"({"persons": 2, "project_persons": {"phc_a": 1, "phc_b": 1}, "together": [["u-1", "anon", "phc_a"]]})");
    row("Segment identify spec (traits)", "a Segment identify's traits are the user's person properties",
        {R"({"type":"identify","userId":"seg-1","anonymousId":"a-9","traits":{"plan":"pro","email":"s@x"},"messageId":"m1"})",
         R"({"type":"track","userId":"seg-1","event":"Paid","properties":{"plan":"ignored"},"messageId":"m2"})"},
        R"({"persons": 1, "identified": 1, "props": {"seg-1": {"email": "s@x", "plan": "pro"}}})");
    row("partition order (token:distinct_id)", "a refusal that depends on another distinct id's event is flagged",
        {identify("old-user", "\"a-1\""), phEvent("$pageview", "new-user"), identify("new-user", "\"old-user\"")},
        R"({"order_notes": ["new-user", 1]})");
}

void TestIdentityPostHog::posthog() {
    QFETCH(QString, mirrors);
    QFETCH(QStringList, lines);
    QFETCH(QString, expect);
    const json expected = json::parse(expect.toStdString(), nullptr, false);
    QVERIFY2(!expected.is_discarded(), qPrintable(expect));
    const Run result = run(lines);
    check(result, expected);
}

// The blame of one property: who set it, what it replaced, and what a merge dropped.
void TestIdentityPostHog::blameOfAProperty() {
    const Run result = run({setEvent("anon-1", R"({"plan":"free","email":"a@x"})"),
                            setEvent("user-1", R"({"plan":"pro"})"),
                            identify("user-1", "\"anon-1\""),
                            setEvent("user-1", R"({"plan":"team"})")});
    const auto explanation = result.graph().explain("anon-1");
    QVERIFY(explanation);
    const auto plan = std::find_if(explanation->properties.begin(), explanation->properties.end(),
                                   [](const PersonProperty& p) { return p.key == "plan"; });
    QVERIFY(plan != explanation->properties.end());
    QCOMPARE(plan->value, std::string("\"team\""));
    QCOMPARE(plan->setBy.seq, 4);
    QCOMPARE(plan->setBy.op, std::string("$set"));
    QCOMPARE(plan->setBy.distinctId, std::string("user-1"));
    // Replaced, oldest first: "free" lost in the merge of #3 (the distinct id's person wins), then
    // "pro" replaced by #4.
    QCOMPARE(plan->overridden.size(), 2u);
    QCOMPARE(plan->overridden[0].op, std::string("merge"));
    QCOMPARE(plan->overridden[0].seq, 3);
    QCOMPARE(plan->overridden[0].value, std::string("\"free\""));
    QCOMPARE(plan->overridden[1].seq, 2);
    QCOMPARE(plan->overridden[1].value, std::string("\"pro\""));
    // "free" came from another distinct id: which value wins depends on PostHog's partition order.
    QVERIFY(plan->orderDependent);
    QVERIFY(!explanation->orderNotes.empty());
    // email had no rival: it came through the merge from anon-1's person.
    const auto email = std::find_if(explanation->properties.begin(), explanation->properties.end(),
                                    [](const PersonProperty& p) { return p.key == "email"; });
    QVERIFY(email != explanation->properties.end());
    QCOMPARE(email->setBy.seq, 1);
    QVERIFY(email->overridden.empty());
    QVERIFY(!email->orderDependent);

    const std::string text = toText(*explanation);
    for (const char* expected : {"properties (2):", "plan = \"team\"", "set by #4 $set", "over #3 merge", "[order-dependent]",
                                 "arrival order"})
        QVERIFY2(text.find(expected) != std::string::npos, qPrintable(QString::fromStdString(text)));
}

// The capture keeps each event's project (identity_projects); a replay of its events rebuilds
// the same person properties and blame as the live pipeline computed.
void TestIdentityPostHog::propertiesKeptInTheCapture() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::filesystem::path path = dir.filePath("props.pipescope").toStdString();
    const QStringList lines{
        R"({"api_key":"phc_a","batch":[{"event":"$set","distinct_id":"u-1","properties":{"$set":{"plan":"pro"}}}]})",
        R"({"api_key":"phc_b","batch":[{"event":"$set","distinct_id":"u-1","properties":{"$set":{"plan":"free"}}}]})",
        R"({"api_key":"phc_a","batch":[{"event":"$identify","distinct_id":"u-1","properties":{"$anon_distinct_id":"a-1","$set":{"email":"u@x"}}}]})"};
    json live;
    {
        CaptureWriter capture(path, CaptureWriter::Options{.durability = Durability::Process});
        Pipeline pipeline(nullptr, &capture, PipelineOptions{});
        std::uint64_t number = 0;
        for (const QString& line : lines)
            pipeline.processLine(line.toStdString(), Origin{"sdk.ndjson", ++number, -1}, false);
        pipeline.finish();
        live = pipeline.identityGraph().personPropertiesJson();
        capture.close();
    }
    QCOMPARE(live.size(), 2u); // one person per project
    const CaptureReader reader(path);
    QVERIFY(!reader.state("identity_person_properties")); // derived, not stored

    IdentityGraph replayed;
    StoredIdentityReplay replay(replayed, UnplannedPolicy::Allow);
    const auto projects = ProjectMap::fromJson(reader.state("identity_projects").value_or(""));
    QVERIFY(projects);
    replay.setProjects(*projects);
    reader.forEachEvent([&](const StoredEvent& event) {
        replay.observe(event);
        return true;
    });
    replayed.finish();
    QCOMPARE(QString::fromStdString(replayed.personPropertiesJson().dump()), QString::fromStdString(live.dump()));
    const auto inA = replayed.explain("u-1", std::string_view("phc_a"));
    QVERIFY(inA);
    QCOMPARE(QString::fromStdString(propertiesOf(*inA).dump()), QString(R"({"email":"u@x","plan":"pro"})"));
    QVERIFY(replayed.samePerson("u-1", "a-1", "phc_a"));
    QVERIFY(!replayed.samePerson("u-1", "a-1", "phc_b"));
}

void TestIdentityPostHog::illegalAndUnmergeableIds_data() {
    QTest::addColumn<QString>("id");
    QTest::addColumn<bool>("illegal");
    QTest::addColumn<bool>("unmergeable");
    // person-utils.ts: the quoted forms are of the listed words; the case-insensitive list is
    // compared with id.toLowerCase(), the other as it is; blank is what trim() empties.
    QTest::newRow("'GUEST' quoted, any case") << "'GUEST'" << true << true;
    QTest::newRow("\"NaN\" quoted, exact case") << "\"NaN\"" << true << true;
    QTest::newRow("\"nan\" quoted, wrong case") << "\"nan\"" << false << false;
    QTest::newRow("quoted blank is ordinary") << "\" \"" << false << false;
    QTest::newRow("U+FEFF alone is blank") << "\xEF\xBB\xBF" << true << true;
    QTest::newRow("NUL: unmergeable, not illegal") << QString("a") + QChar(0) + "b" << false << true;
    QTest::newRow("400 code points is mergeable") << QString(400, QChar(0x00E9)) << false << false;
    QTest::newRow("401 code points is not") << QString(401, QChar(0x00E9)) << false << true;
}

void TestIdentityPostHog::illegalAndUnmergeableIds() {
    QFETCH(QString, id);
    QFETCH(bool, illegal);
    QFETCH(bool, unmergeable);
    const QByteArray bytes = id.toUtf8();
    const std::string_view text(bytes.constData(), std::size_t(bytes.size()));
    QCOMPARE(isIllegalDistinctId(text), illegal);
    QCOMPARE(isUnmergeableDistinctId(text), unmergeable);
}

QTEST_GUILESS_MAIN(TestIdentityPostHog)
#include "tst_identity_posthog.moc"
