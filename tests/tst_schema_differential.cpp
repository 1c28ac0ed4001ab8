// Differential test: random schema/instance pairs checked by Pipescope's validator and by
// valijson (an independent draft 7 implementation, used only here, as an oracle). The verdicts
// must agree. The generator is seeded, so a disagreement reproduces.
//
// Left out of generation, because valijson is known to deviate from draft 7 there (not us):
//  - numbers with a zero fraction (1.0): valijson's strict typing does not count them as
//    "integer", and compares 1 and 1.0 as different in enum/const/uniqueItems. Generated
//    doubles therefore always have a .5 fraction.
//  - "format": valijson checks only a few formats, with its own rules.
//  - patterns beyond simple ones: valijson uses std::regex, whose ECMAScript dialect differs
//    from PCRE2 in corners (Unicode classes, lookbehind); the generated patterns are simple.
//  - $ref, dependencies, if/then/else, contains, propertyNames: covered by the conformance
//    suite; kept out so the random space stays small enough to hit edge cases often.

#include <QtTest>

#include <random>

#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "schema/schema.h"

using namespace pipescope;
using nlohmann::json;

namespace {

class Generator {
public:
    explicit Generator(std::uint32_t seed) : m_random(seed) {}

    json schema(int depth) {
        if (chance(8)) return json(chance(2));
        json s = json::object();
        int keywords = uniform(1, 3);
        for (int i = 0; i < keywords; ++i)
            addKeyword(s, depth);
        return s;
    }

    json instance(int depth) {
        switch (uniform(0, depth > 0 ? 7 : 5)) {
        case 0:
            return nullptr;
        case 1:
            return chance(2);
        case 2:
            return uniform(-6, 6);
        case 3:
            return uniform(-6, 5) + 0.5;
        case 4:
        case 5:
            return pick(kStrings);
        case 6: {
            json array = json::array();
            for (int i = uniform(0, 4); i > 0; --i)
                array.push_back(instance(depth - 1));
            return array;
        }
        default: {
            json object = json::object();
            for (const char* key : {"a", "b", "c", "d"})
                if (chance(2)) object[key] = instance(depth - 1);
            return object;
        }
        }
    }

private:
    static constexpr const char* kTypes[] = {"null", "boolean", "object", "array", "number", "integer", "string"};
    static constexpr const char* kStrings[] = {"", "a", "ab", "abc", "abcd", "A1", "b", "1", "\u00e9t\u00e9", "zz9"};
    static constexpr const char* kPatterns[] = {"^[a-z]+$", "^a", "b$", "[0-9]", "^$", "^[a-z]{2,3}$", "c|9"};

    int uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(m_random); }
    bool chance(int oneIn) { return uniform(1, oneIn) == 1; }
    template <class T, std::size_t N>
    T pick(const T (&items)[N]) {
        return items[static_cast<std::size_t>(uniform(0, N - 1))];
    }

    json number() { return chance(2) ? json(uniform(-5, 5)) : json(uniform(-5, 4) + 0.5); }

    json scalar() {
        switch (uniform(0, 4)) {
        case 0:
            return nullptr;
        case 1:
            return chance(2);
        case 2:
            return number();
        default:
            return pick(kStrings);
        }
    }

    void addKeyword(json& s, int depth) {
        const int choices = depth > 0 ? 16 : 11;
        switch (uniform(0, choices - 1)) {
        case 0:
            if (chance(3))
                s["type"] = {pick(kTypes), pick(kTypes)};
            else
                s["type"] = pick(kTypes);
            break;
        case 1: {
            json values = json::array();
            for (int i = uniform(1, 3); i > 0; --i)
                values.push_back(chance(4) ? instance(1) : scalar());
            s["enum"] = values;
            break;
        }
        case 2:
            s["const"] = chance(4) ? instance(1) : scalar();
            break;
        case 3:
            s[pick({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})] = number();
            break;
        case 4:
            s[chance(2) ? "minLength" : "maxLength"] = uniform(0, 4);
            break;
        case 5:
            s["pattern"] = pick(kPatterns);
            break;
        case 6:
            s[chance(2) ? "minItems" : "maxItems"] = uniform(0, 3);
            break;
        case 7:
            s[chance(2) ? "minProperties" : "maxProperties"] = uniform(0, 3);
            break;
        case 8: {
            json required = json::array();
            for (const char* key : {"a", "b", "c"})
                if (chance(2)) required.push_back(key);
            if (required.empty()) required.push_back("a");
            s["required"] = required;
            break;
        }
        case 9:
            s["uniqueItems"] = chance(2);
            break;
        case 10:
            s["additionalProperties"] = chance(2);
            break;
        case 11: {
            json properties = json::object();
            for (const char* key : {"a", "b", "c"})
                if (chance(2)) properties[key] = schema(depth - 1);
            s["properties"] = properties;
            break;
        }
        case 12:
            s["additionalProperties"] = schema(depth - 1);
            break;
        case 13:
            s["items"] = schema(depth - 1);
            break;
        case 14: {
            json list = json::array();
            for (int i = uniform(1, 3); i > 0; --i)
                list.push_back(schema(depth - 1));
            s[pick({"allOf", "anyOf", "oneOf"})] = list;
            break;
        }
        default:
            s["not"] = schema(depth - 1);
            break;
        }
    }

    template <std::size_t N>
    const char* pick(const char* const (&items)[N]) {
        return items[static_cast<std::size_t>(uniform(0, N - 1))];
    }
    const char* pick(std::initializer_list<const char*> items) {
        return items.begin()[uniform(0, static_cast<int>(items.size()) - 1)];
    }

    std::mt19937 m_random;
};

bool valijsonVerdict(const json& schemaJson, const json& instance) {
    valijson::Schema schema;
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    valijson::adapters::NlohmannJsonAdapter schemaAdapter(schemaJson);
    parser.populateSchema(schemaAdapter, schema);
    valijson::Validator validator;
    valijson::adapters::NlohmannJsonAdapter target(instance);
    return validator.validate(schema, target, nullptr);
}

} // namespace

class TestSchemaDifferential : public QObject {
    Q_OBJECT

private slots:
    void againstValijson_data();
    void againstValijson();
};

void TestSchemaDifferential::againstValijson_data() {
    QTest::addColumn<quint32>("seed");
    QTest::addColumn<int>("schemas");
    QTest::newRow("seed 20240607") << quint32(20240607) << 1500;
    QTest::newRow("seed 7") << quint32(7) << 1500;
}

void TestSchemaDifferential::againstValijson() {
    QFETCH(quint32, seed);
    QFETCH(int, schemas);
    // The oracle itself must be able to say no, or agreement would mean nothing.
    QVERIFY(!valijsonVerdict(json::parse(R"({"type": "string"})"), 1));
    QVERIFY(valijsonVerdict(json::parse(R"({"minLength": 2})"), "ab"));
    Generator generator(seed);
    simdjson::dom::parser parser;
    int compared = 0;
    int valid = 0;
    QStringList disagreements;
    for (int i = 0; i < schemas; ++i) {
        const json schemaJson = generator.schema(2);
        auto compiled = CompiledSchema::compile(schemaJson);
        for (int k = 0; k < 4; ++k) {
            const json instance = generator.instance(2);
            simdjson::padded_string text(instance.dump());
            simdjson::dom::element element;
            QVERIFY(!parser.parse(text).get(element));
            const bool ours = compiled->isValid(element);
            std::vector<ValidationFailure> failures;
            QCOMPARE(compiled->validate(element, failures), ours);
            QCOMPARE(failures.empty(), ours);
            const bool theirs = valijsonVerdict(schemaJson, instance);
            ++compared;
            valid += ours;
            if (ours != theirs && disagreements.size() < 10)
                disagreements << QString::fromStdString("schema " + schemaJson.dump() + " instance " +
                                                        instance.dump() + ": pipescope " +
                                                        (ours ? "valid" : "invalid") + ", valijson " +
                                                        (theirs ? "valid" : "invalid"));
        }
    }
    qInfo("compared %d schema/instance pairs with valijson (%d valid, %d invalid)", compared, valid,
          compared - valid);
    // A generator that only produced valid (or only invalid) pairs would compare nothing useful.
    QVERIFY(valid > compared / 10 && compared - valid > compared / 10);
    QVERIFY2(disagreements.isEmpty(), qPrintable("disagreements:\n  " + disagreements.join("\n  ")));
}

QTEST_APPLESS_MAIN(TestSchemaDifferential)
#include "tst_schema_differential.moc"
