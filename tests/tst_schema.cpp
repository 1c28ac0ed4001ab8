// The compiled JSON Schema validator (one table per keyword family, each row a schema, an
// instance and the failures expected as "pointer keyword") and the schema registry.

#include <QtTest>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "schema/schema.h"
#include "schema/uri.h"

using namespace pipescope;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// "pointer keyword" for each failure, sorted, so rows can list them in any order.
QStringList failureKeys(const std::vector<ValidationFailure>& failures) {
    QStringList keys;
    for (const auto& failure : failures)
        keys << QString::fromStdString(failure.pointer + " " + failure.keyword);
    keys.sort();
    return keys;
}

void writeFile(const fs::path& file, const std::string& content) {
    fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary);
    out << content;
}

} // namespace

class TestSchema : public QObject {
    Q_OBJECT

private slots:
    void types_data();
    void types() { check(); }
    void enumAndConst_data();
    void enumAndConst() { check(); }
    void numbers_data();
    void numbers() { check(); }
    void strings_data();
    void strings() { check(); }
    void arrays_data();
    void arrays() { check(); }
    void objects_data();
    void objects() { check(); }
    void combinators_data();
    void combinators() { check(); }
    void references_data();
    void references() { check(); }

    void messages();
    void remoteDocuments();
    void compileErrors_data();
    void compileErrors();
    void uriResolution_data();
    void uriResolution();
    void concurrentUse();
    void eventDirNames_data();
    void eventDirNames();

    void registryLatestVersionWins();
    void registryPercentEncodedNames();
    void registryCrossFileRef();
    void registryAddFindMove();
    void registryErrors_data();
    void registryErrors();
    void registryMissingDirectory();

private:
    static void addColumns();
    static void row(const char* name, const char* schema, const char* instance, QStringList failures = {});
    void check();

    simdjson::dom::parser m_parser;
};

void TestSchema::addColumns() {
    QTest::addColumn<QString>("schema");
    QTest::addColumn<QString>("instance");
    QTest::addColumn<QStringList>("failures");
}

void TestSchema::row(const char* name, const char* schema, const char* instance, QStringList failures) {
    failures.sort();
    QTest::newRow(name) << QString(schema) << QString(instance) << failures;
}

void TestSchema::check() {
    QFETCH(QString, schema);
    QFETCH(QString, instance);
    QFETCH(QStringList, failures);
    auto compiled = CompiledSchema::compile(json::parse(schema.toStdString()));
    simdjson::padded_string text(instance.toStdString());
    simdjson::dom::element element;
    QVERIFY(!m_parser.parse(text).get(element));
    QCOMPARE(compiled->isValid(element), failures.isEmpty());
    std::vector<ValidationFailure> found;
    QCOMPARE(compiled->validate(element, found), failures.isEmpty());
    QCOMPARE(failureKeys(found), failures);
    for (const auto& failure : found)
        QVERIFY2(!failure.message.empty(), failure.keyword.c_str());
}

void TestSchema::types_data() {
    addColumns();
    row("string ok", R"({"type": "string"})", R"("x")");
    row("string vs number", R"({"type": "string"})", "1", {" type"});
    row("integer ok", R"({"type": "integer"})", "-3");
    row("integer 1.0 counts", R"({"type": "integer"})", "1.0");
    row("integer 1e2 counts", R"({"type": "integer"})", "1e2");
    row("integer vs 1.5", R"({"type": "integer"})", "1.5", {" type"});
    row("integer uint64 max", R"({"type": "integer"})", "18446744073709551615");
    row("number accepts integer", R"({"type": "number"})", "7");
    row("null", R"({"type": "null"})", "null");
    row("null vs false", R"({"type": "null"})", "false", {" type"});
    row("boolean vs 0", R"({"type": "boolean"})", "0", {" type"});
    row("array vs object", R"({"type": "array"})", "{}", {" type"});
    row("object vs array", R"({"type": "object"})", "[]", {" type"});
    row("union ok", R"({"type": ["string", "null"]})", "null");
    row("union fails", R"({"type": ["string", "null"]})", "2", {" type"});
    row("true schema", "true", R"({"a": 1})");
    row("false schema", "false", "1", {" false"});
    row("empty schema", "{}", "[1, {}]");
    row("nested type", R"({"properties": {"amount": {"type": "number"}}})", R"({"amount": "12"})", {"/amount type"});
}

void TestSchema::enumAndConst_data() {
    addColumns();
    row("enum ok", R"({"enum": ["card", "paypal"]})", R"("card")");
    row("enum miss", R"({"enum": ["card", "paypal"]})", R"("cash")", {" enum"});
    row("enum 1 matches 1.0", R"({"enum": [1, "a"]})", "1.0");
    row("enum deep object", R"({"enum": [{"a": [1, 2]}]})", R"({"a": [1, 2.0]})");
    row("enum object extra key", R"({"enum": [{"a": 1}]})", R"({"a": 1, "b": 2})", {" enum"});
    row("enum array order", R"({"enum": [[1, 2]]})", "[2, 1]", {" enum"});
    row("enum null", R"({"enum": [null]})", "null");
    row("enum false is not 0", R"({"enum": [false]})", "0", {" enum"});
    row("const ok", R"({"const": {"k": [true, null]}})", R"({"k": [true, null]})");
    row("const miss", R"({"const": "EUR"})", R"("USD")", {" const"});
    row("const big uint64", R"({"const": 18446744073709551615})", "18446744073709551615");
    row("const int vs double", R"({"const": 9007199254740993})", "9007199254740992.0", {" const"});
    row("const negative", R"({"const": -5})", "-5.0");
}

void TestSchema::numbers_data() {
    addColumns();
    row("minimum ok", R"({"minimum": 1})", "1");
    row("minimum fails", R"({"minimum": 1})", "0.99", {" minimum"});
    row("maximum fails", R"({"maximum": 4})", "5", {" maximum"});
    row("exclusiveMinimum edge", R"({"exclusiveMinimum": 0})", "0", {" exclusiveMinimum"});
    row("exclusiveMinimum ok", R"({"exclusiveMinimum": 0})", "0.0001");
    row("exclusiveMaximum edge", R"({"exclusiveMaximum": 2.5})", "2.5", {" exclusiveMaximum"});
    row("int64 vs double limit", R"({"maximum": 9007199254740992.0})", "9007199254740993", {" maximum"});
    row("uint64 vs int limit", R"({"minimum": -1})", "18446744073709551615");
    row("uint64 over int64 max", R"({"maximum": 9223372036854775807})", "9223372036854775808", {" maximum"});
    row("negative vs uint64 limit", R"({"maximum": 18446744073709551615})", "-1");
    row("multipleOf int ok", R"({"multipleOf": 3})", "-9");
    row("multipleOf int fails", R"({"multipleOf": 3})", "10", {" multipleOf"});
    row("multipleOf decimal ok", R"({"multipleOf": 0.01})", "19.99");
    row("multipleOf decimal ok 2", R"({"multipleOf": 0.0001})", "0.0075");
    row("multipleOf decimal fails", R"({"multipleOf": 0.01})", "19.991", {" multipleOf"});
    row("multipleOf huge quotient", R"({"multipleOf": 0.123456789})", "1e308", {" multipleOf"});
    row("multipleOf large uint64", R"({"multipleOf": 5})", "18446744073709551615");
    row("limits ignore strings", R"({"minimum": 5})", R"("1")");
    row("several at once", R"({"minimum": 5, "multipleOf": 2})", "3", {" minimum", " multipleOf"});
}

void TestSchema::strings_data() {
    addColumns();
    row("maxLength ok", R"({"maxLength": 3})", R"("abc")");
    row("maxLength fails", R"({"maxLength": 3})", R"("abcd")", {" maxLength"});
    row("maxLength counts code points", R"({"maxLength": 2})", R"("été")", {" maxLength"});
    row("maxLength emoji is one", R"({"maxLength": 1})", "\"\xF0\x9F\x92\xA9\"");
    row("minLength code points", R"({"minLength": 3})", R"("été")");
    row("minLength fails", R"({"minLength": 2})", R"("é")", {" minLength"});
    row("pattern unanchored", R"({"pattern": "b+"})", R"("abbbc")");
    row("pattern anchored fails", R"({"pattern": "^ord_[0-9a-f]{12}$"})", R"("ord_123")", {" pattern"});
    row("pattern anchored ok", R"({"pattern": "^ord_[0-9a-f]{12}$"})", R"("ord_0123456789ab")");
    row("pattern dollar is end only", R"({"pattern": "^a$"})", R"("a\n")", {" pattern"});
    row("pattern utf8 dot", R"({"pattern": "^.$"})", R"("é")");
    row("pattern ignores numbers", R"({"pattern": "^a$"})", "12");
    row("format date-time ok", R"({"format": "date-time"})", R"("2024-02-29T10:00:00.5Z")");
    row("format date-time bad day", R"({"format": "date-time"})", R"("2023-02-29T10:00:00Z")", {" format"});
    row("format date", R"({"format": "date"})", R"("2024-13-01")", {" format"});
    row("format time", R"({"format": "time"})", R"("23:59:60+01:00")");
    row("format email", R"({"format": "email"})", R"("joe@example.com")");
    row("format email bad", R"({"format": "email"})", R"("joe.example.com")", {" format"});
    row("format hostname", R"({"format": "hostname"})", R"("-bad.example")", {" format"});
    row("format ipv4", R"({"format": "ipv4"})", R"("256.1.1.1")", {" format"});
    row("format ipv6", R"({"format": "ipv6"})", R"("::ffff:192.168.0.1")");
    row("format ipv6 bad", R"({"format": "ipv6"})", R"("1:::2")", {" format"});
    row("format uri", R"({"format": "uri"})", R"("https://example.com/a?b#c")");
    row("format uri relative", R"({"format": "uri"})", R"("/a/b")", {" format"});
    row("format uri-reference", R"({"format": "uri-reference"})", R"("../a#b")");
    row("format json-pointer", R"({"format": "json-pointer"})", R"("/a~2")", {" format"});
    row("format relative-json-pointer", R"({"format": "relative-json-pointer"})", R"("1/a")");
    row("format regex", R"({"format": "regex"})", R"("([a-z")", {" format"});
    row("format unknown ignored", R"({"format": "color"})", R"("whatever")");
}

void TestSchema::arrays_data() {
    addColumns();
    row("items ok", R"({"items": {"type": "integer"}})", "[1, 2]");
    row("items fails with index", R"({"items": {"type": "integer"}})", R"([1, "x", 3, null])",
        {"/1 type", "/3 type"});
    row("tuple", R"({"items": [{"type": "string"}, {"type": "number"}]})", R"(["a", "b"])", {"/1 type"});
    row("tuple shorter ok", R"({"items": [{"type": "string"}, {"type": "number"}]})", R"(["a"])");
    row("additionalItems false", R"({"items": [{}], "additionalItems": false})", "[1, 2]", {"/1 additionalItems"});
    row("additionalItems schema", R"({"items": [{}], "additionalItems": {"type": "string"}})", R"([1, "a", 2])",
        {"/2 type"});
    row("additionalItems ignored without tuple", R"({"items": {}, "additionalItems": false})", "[1, 2]");
    row("minItems", R"({"minItems": 2})", "[1]", {" minItems"});
    row("maxItems", R"({"maxItems": 1})", "[1, 2]", {" maxItems"});
    row("uniqueItems ok", R"({"uniqueItems": true})", R"([1, "1", [1], {"a": 1}])");
    row("uniqueItems 1 and 1.0", R"({"uniqueItems": true})", "[1, 1.0]", {" uniqueItems"});
    row("uniqueItems objects any order", R"({"uniqueItems": true})", R"([{"a": 1, "b": 2}, {"b": 2, "a": 1}])",
        {" uniqueItems"});
    row("contains ok", R"({"contains": {"const": 3}})", "[1, 3]");
    row("contains fails", R"({"contains": {"const": 3}})", "[1, 2]", {" contains"});
    row("contains empty", R"({"contains": {}})", "[]", {" contains"});
}

void TestSchema::objects_data() {
    addColumns();
    const char* payment = R"({"type": "object", "required": ["amount", "currency"],
        "properties": {"amount": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}}})";
    row("required ok", payment, R"({"amount": 1, "currency": "EUR"})");
    row("required missing", payment, R"({"amount": 1})", {" required"});
    row("required both missing", payment, "{}", {" required", " required"});
    row("required and property", payment, R"({"amount": "1"})", {" required", "/amount type"});
    row("required not for arrays", payment, "[]", {" type"});
    row("pointer escaping", R"({"properties": {"a/b~c": {"type": "string"}}})", R"({"a/b~c": 1})",
        {"/a~1b~0c type"});
    row("nested pointer", R"({"properties": {"a": {"properties": {"b": {"items": {"type": "string"}}}}}})",
        R"({"a": {"b": ["x", 1]}})", {"/a/b/1 type"});
    row("additionalProperties false", R"({"properties": {"a": {}}, "additionalProperties": false})",
        R"({"a": 1, "b": 2, "c": 3})", {"/b additionalProperties", "/c additionalProperties"});
    row("additionalProperties schema", R"({"properties": {"a": {}}, "additionalProperties": {"type": "string"}})",
        R"({"a": 1, "b": 2})", {"/b type"});
    row("patternProperties", R"({"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": false})",
        R"({"x_a": 1, "x_b": "s", "y": 1})", {"/x_b type", "/y additionalProperties"});
    row("property and pattern both apply",
        R"({"properties": {"x_a": {"minimum": 0}}, "patternProperties": {"^x_": {"maximum": 5}}})", R"({"x_a": 9})",
        {"/x_a maximum"});
    row("minProperties", R"({"minProperties": 1})", "{}", {" minProperties"});
    row("maxProperties", R"({"maxProperties": 1})", R"({"a": 1, "b": 2})", {" maxProperties"});
    row("dependencies array", R"({"dependencies": {"card": ["billing"]}})", R"({"card": 1})", {" dependencies"});
    row("dependencies array ok", R"({"dependencies": {"card": ["billing"]}})", R"({"billing": 1})");
    row("dependencies schema", R"({"dependencies": {"card": {"required": ["cvc"]}}})", R"({"card": 1})",
        {" required"});
    row("propertyNames", R"({"propertyNames": {"pattern": "^[a-z_]+$", "maxLength": 5}})", R"({"ok": 1, "Bad": 2})",
        {" propertyNames"});
    row("propertyNames false", R"({"propertyNames": false})", "{}");
    row("many properties (more than 64 slots)",
        R"({"required": ["p0","p1","p2","p3","p4","p5","p6","p7","p8","p9","q0","q1","q2","q3","q4","q5","q6","q7",
            "q8","q9","r0","r1","r2","r3","r4","r5","r6","r7","r8","r9","s0","s1","s2","s3","s4","s5","s6","s7","s8",
            "s9","t0","t1","t2","t3","t4","t5","t6","t7","t8","t9","u0","u1","u2","u3","u4","u5","u6","u7","u8","u9",
            "v0","v1","v2","v3","v4","v5","v6","v7","v8","v9"]})",
        R"({"p0":0,"p1":0,"p2":0,"p3":0,"p4":0,"p5":0,"p6":0,"p7":0,"p8":0,"p9":0,"q0":0,"q1":0,"q2":0,"q3":0,
            "q4":0,"q5":0,"q6":0,"q7":0,"q8":0,"q9":0,"r0":0,"r1":0,"r2":0,"r3":0,"r4":0,"r5":0,"r6":0,"r7":0,"r8":0,
            "r9":0,"s0":0,"s1":0,"s2":0,"s3":0,"s4":0,"s5":0,"s6":0,"s7":0,"s8":0,"s9":0,"t0":0,"t1":0,"t2":0,"t3":0,
            "t4":0,"t5":0,"t6":0,"t7":0,"t8":0,"t9":0,"u0":0,"u1":0,"u2":0,"u3":0,"u4":0,"u5":0,"u6":0,"u7":0,"u8":0,
            "u9":0,"v0":0,"v1":0,"v2":0,"v3":0,"v4":0,"v5":0,"v6":0,"v7":0,"v8":0})",
        {" required"});
}

void TestSchema::combinators_data() {
    addColumns();
    row("allOf reports inner failures", R"({"allOf": [{"minimum": 2}, {"multipleOf": 2}]})", "1",
        {" minimum", " multipleOf"});
    row("anyOf ok", R"({"anyOf": [{"type": "string"}, {"type": "integer"}]})", "3");
    row("anyOf one failure", R"({"anyOf": [{"type": "string"}, {"minimum": 5}]})", "3", {" anyOf"});
    row("anyOf at nested location", R"({"properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}})",
        R"({"a": 1})", {"/a anyOf"});
    row("oneOf ok", R"({"oneOf": [{"type": "string"}, {"type": "integer"}]})", "3");
    row("oneOf none", R"({"oneOf": [{"type": "string"}, {"type": "boolean"}]})", "3", {" oneOf"});
    row("oneOf both", R"({"oneOf": [{"type": "number"}, {"type": "integer"}]})", "3", {" oneOf"});
    row("not", R"({"not": {"type": "string"}})", R"("s")", {" not"});
    row("not ok", R"({"not": {"type": "string"}})", "1");
    row("if then", R"({"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["last4"]},
        "else": {"required": ["iban"]}})",
        R"({"kind": "card"})", {" required"});
    row("if else", R"({"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["last4"]},
        "else": {"required": ["iban"]}})",
        R"({"kind": "sepa", "iban": "DE00"})");
    row("then without if ignored", R"({"then": false})", "1");
}

void TestSchema::references_data() {
    addColumns();
    row("definitions", R"({"definitions": {"c": {"enum": ["EUR"]}}, "properties": {"c": {"$ref": "#/definitions/c"}}})",
        R"({"c": "USD"})", {"/c enum"});
    row("recursive tree", R"({"properties": {"children": {"items": {"$ref": "#"}}, "v": {"type": "integer"}}})",
        R"({"v": 1, "children": [{"v": 2, "children": [{"v": "x"}]}]})", {"/children/0/children/0/v type"});
    row("escaped pointer", R"({"definitions": {"a/b": {"type": "string"}, "c~d": {"type": "integer"},
        "e%f": {"type": "null"}}, "items": [{"$ref": "#/definitions/a~1b"}, {"$ref": "#/definitions/c~0d"},
        {"$ref": "#/definitions/e%25f"}]})",
        R"(["x", 1, 2])", {"/2 type"});
    row("location-independent id", R"({"definitions": {"m": {"$id": "#money", "type": "number"}},
        "properties": {"amount": {"$ref": "#money"}}})",
        R"({"amount": "1"})", {"/amount type"});
    row("siblings of $ref ignored", R"({"definitions": {"a": {"type": "array"}},
        "properties": {"x": {"$ref": "#/definitions/a", "maxItems": 1}}})",
        R"({"x": [1, 2, 3]})");
    row("urn base and relative id", R"({"$id": "urn:example:root", "definitions": {"n": {"$id": "urn:example:n",
        "type": "string"}}, "properties": {"n": {"$ref": "urn:example:n"}}})",
        R"({"n": 1})", {"/n type"});
    row("ref into non-keyword location", R"({"x-defs": {"pos": {"minimum": 0}}, "items": {"$ref": "#/x-defs/pos"}})",
        "[1, -1]", {"/1 minimum"});
    row("mutual recursion", R"({"definitions": {"a": {"properties": {"b": {"$ref": "#/definitions/b"}}},
        "b": {"properties": {"a": {"$ref": "#/definitions/a"}}, "required": ["z"]}}, "$ref": "#/definitions/a"})",
        R"({"b": {"a": {"b": {"z": 1}}}})", {"/b required"});
    row("$ref to draft 7 meta-schema", R"({"$ref": "http://json-schema.org/draft-07/schema#"})",
        R"({"type": "strin"})", {"/type anyOf"});
}

void TestSchema::messages() {
    auto schema = CompiledSchema::compile(json::parse(R"({"type": "object", "required": ["amount", "currency"],
        "properties": {"amount": {"type": "number"}, "order_id": {"pattern": "^ord_"}}})"));
    simdjson::padded_string text(std::string(R"({"amount": "12", "order_id": "x"})"));
    simdjson::dom::element element;
    QVERIFY(!m_parser.parse(text).get(element));
    std::vector<ValidationFailure> failures;
    QVERIFY(!schema->validate(element, failures));
    QCOMPARE(failures.size(), std::size_t(3));
    auto find = [&](const std::string& keyword) {
        for (const auto& f : failures)
            if (f.keyword == keyword) return f;
        return ValidationFailure{};
    };
    QCOMPARE(find("required").pointer, std::string());
    QCOMPARE(find("required").message, std::string(R"(missing required property "currency")"));
    QCOMPARE(find("type").pointer, std::string("/amount"));
    QCOMPARE(find("type").message, std::string("expected number, got string"));
    QCOMPARE(find("pattern").pointer, std::string("/order_id"));
    QVERIFY(find("pattern").message.find("^ord_") != std::string::npos);
}

void TestSchema::remoteDocuments() {
    std::vector<std::string> requested;
    SchemaCompileOptions options;
    options.baseUri = "https://schemas.example.com/events/payment.json";
    options.loadDocument = [&](const std::string& uri) -> std::optional<json> {
        requested.push_back(uri);
        if (uri == "https://schemas.example.com/common/money.json")
            return json::parse(R"({"definitions": {"currency": {"enum": ["EUR", "USD"]},
                "amount": {"$ref": "#/definitions/positive"}, "positive": {"exclusiveMinimum": 0}}})");
        return std::nullopt;
    };
    auto schema = CompiledSchema::compile(json::parse(R"({"properties": {
        "currency": {"$ref": "../common/money.json#/definitions/currency"},
        "amount": {"$ref": "../common/money.json#/definitions/amount"}}})"),
                                          options);
    // One load for two references to the same document.
    QCOMPARE(requested, std::vector<std::string>{"https://schemas.example.com/common/money.json"});
    simdjson::padded_string text(std::string(R"({"currency": "GBP", "amount": 0})"));
    simdjson::dom::element element;
    QVERIFY(!m_parser.parse(text).get(element));
    std::vector<ValidationFailure> failures;
    QVERIFY(!schema->validate(element, failures));
    QCOMPARE(failureKeys(failures), (QStringList{"/amount exclusiveMinimum", "/currency enum"}));
}

void TestSchema::compileErrors_data() {
    QTest::addColumn<QString>("schema");
    QTest::addColumn<QStringList>("mentions");
    QTest::newRow("bad regex") << R"({"properties": {"id": {"pattern": "^(ord_"}}})"
                               << QStringList{"/properties/id/pattern", "^(ord_", "missing closing parenthesis",
                                              "offset 6"};
    QTest::newRow("bad patternProperties regex")
        << R"({"patternProperties": {"[a-": {}}})" << QStringList{"/patternProperties/[a-", "offset"};
    QTest::newRow("unresolvable pointer") << R"({"items": {"$ref": "#/definitions/missing"}})"
                                          << QStringList{"/items/$ref", "#/definitions/missing", "does not exist"};
    QTest::newRow("unknown remote") << R"({"$ref": "other.json"})" << QStringList{"other.json", "unresolvable"};
    QTest::newRow("unknown anchor") << R"({"$ref": "#nope"})" << QStringList{"#nope"};
    QTest::newRow("circular ref") << R"({"definitions": {"a": {"$ref": "#/definitions/b"},
        "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"})"
                                  << QStringList{"circular"};
    QTest::newRow("unknown type") << R"({"properties": {"a": {"type": "strin"}}})"
                                  << QStringList{"/properties/a/type", "strin"};
    QTest::newRow("negative minLength") << R"({"minLength": -1})" << QStringList{"/minLength", "non-negative"};
    QTest::newRow("multipleOf zero") << R"({"multipleOf": 0})" << QStringList{"/multipleOf"};
    QTest::newRow("schema not an object") << R"({"properties": {"a": 3}})" << QStringList{"/properties/a"};
    QTest::newRow("required not strings") << R"({"required": [1]})" << QStringList{"/required/0"};
}

void TestSchema::compileErrors() {
    QFETCH(QString, schema);
    QFETCH(QStringList, mentions);
    try {
        CompiledSchema::compile(json::parse(schema.toStdString()));
        QFAIL("compiled without an error");
    } catch (const SchemaError& e) {
        for (const auto& mention : mentions)
            QVERIFY2(QString(e.what()).contains(mention), qPrintable(QString(e.what()) + " lacks " + mention));
    }
}

void TestSchema::uriResolution_data() {
    QTest::addColumn<QString>("base");
    QTest::addColumn<QString>("reference");
    QTest::addColumn<QString>("expected");
    // RFC 3986 section 5.4.
    const QString base = "http://a/b/c/d;p?q";
    const std::pair<const char*, const char*> examples[] = {
        {"g", "http://a/b/c/g"},       {"./g", "http://a/b/c/g"},       {"g/", "http://a/b/c/g/"},
        {"/g", "http://a/g"},          {"//g", "http://g"},             {"?y", "http://a/b/c/d;p?y"},
        {"g?y", "http://a/b/c/g?y"},   {"#s", "http://a/b/c/d;p?q#s"},  {"g#s", "http://a/b/c/g#s"},
        {"", "http://a/b/c/d;p?q"},    {".", "http://a/b/c/"},          {"..", "http://a/b/"},
        {"../g", "http://a/b/g"},      {"../..", "http://a/"},          {"../../../g", "http://a/g"},
        {"/./g", "http://a/g"},        {"g.", "http://a/b/c/g."},       {"./../g", "http://a/b/g"},
        {"g/../h", "http://a/b/c/h"},  {"g;x=1/../y", "http://a/b/c/y"}, {"g:h", "g:h"},
    };
    for (const auto& [reference, expected] : examples)
        QTest::newRow(reference) << base << QString(reference) << QString(expected);
    QTest::newRow("urn fragment") << "urn:example:a" << "#foo" << "urn:example:a#foo";
    QTest::newRow("file relative") << "file:///s/payment/2.json" << "../common.json#/x"
                                   << "file:///s/common.json#/x";
    QTest::newRow("empty base") << "" << "#/definitions/a" << "#/definitions/a";
}

void TestSchema::uriResolution() {
    QFETCH(QString, base);
    QFETCH(QString, reference);
    QFETCH(QString, expected);
    QCOMPARE(QString::fromStdString(schema_detail::resolveUri(base.toStdString(), reference.toStdString())), expected);
}

void TestSchema::concurrentUse() {
    // Patterns keep per-thread match data: two threads on one schema must not interfere.
    auto schema = CompiledSchema::compile(json::parse(R"({"properties": {"id": {"pattern": "^ord_[0-9a-f]{12}$"},
        "name": {"pattern": "^[A-Z][a-z]+$"}}, "required": ["id"]})"));
    auto run = [&](const std::string& document, bool expected, int& mismatches) {
        simdjson::dom::parser parser;
        simdjson::padded_string text(document);
        simdjson::dom::element element = parser.parse(text).value();
        for (int i = 0; i < 20000; ++i)
            if (schema->isValid(element) != expected) ++mismatches;
    };
    int mismatchesA = 0, mismatchesB = 0;
    std::thread a(run, R"({"id": "ord_0123456789ab", "name": "Ada"})", true, std::ref(mismatchesA));
    std::thread b(run, R"({"id": "ord_0123456789ab", "name": "ada"})", false, std::ref(mismatchesB));
    a.join();
    b.join();
    QCOMPARE(mismatchesA, 0);
    QCOMPARE(mismatchesB, 0);
}

void TestSchema::eventDirNames_data() {
    QTest::addColumn<QString>("event");
    QTest::addColumn<QString>("dir");
    QTest::newRow("slash") << "checkout/started" << "checkout%2Fstarted";
    QTest::newRow("percent") << "100% done" << "100%25 done";
    QTest::newRow("dollar kept") << "$pageview" << "$pageview";
    QTest::newRow("space kept") << "Order Completed" << "Order Completed";
    QTest::newRow("leading dot") << ".hidden" << "%2Ehidden";
    QTest::newRow("utf8 kept") << "caf\u00e9" << "caf\u00e9";
}

void TestSchema::eventDirNames() {
    QFETCH(QString, event);
    QFETCH(QString, dir);
    QCOMPARE(QString::fromStdString(encodeEventDirName(event.toStdString())), dir);
    QCOMPARE(QString::fromStdString(decodeEventDirName(dir.toStdString())), event);
}

void TestSchema::registryLatestVersionWins() {
    QTemporaryDir temp;
    QVERIFY(temp.isValid());
    const fs::path dir = temp.path().toStdString();
    writeFile(dir / "payment_completed" / "1.json", R"({"required": ["amount"]})");
    writeFile(dir / "payment_completed" / "2.json", R"({"required": ["amount", "currency"]})");
    writeFile(dir / "payment_completed" / "10.json", R"({"required": ["amount", "currency", "order_id"]})");
    writeFile(dir / "payment_completed" / "README.md", "not a schema");
    writeFile(dir / "payment_completed" / ".3.json", "{broken");
    writeFile(dir / ".git" / "1.json", "{broken");
    writeFile(dir / "signup" / "1.json", "true");
    auto registry = SchemaRegistry::loadDirectory(dir);
    QCOMPARE(registry.size(), std::size_t(2));
    const auto* entry = registry.find("payment_completed");
    QVERIFY(entry);
    QCOMPARE(entry->version, 10); // numeric, not lexical, order
    QCOMPARE(entry->file, dir / "payment_completed" / "10.json");
    simdjson::padded_string text(std::string(R"({"amount": 1, "currency": "EUR"})"));
    simdjson::dom::element element;
    QVERIFY(!m_parser.parse(text).get(element));
    std::vector<ValidationFailure> failures;
    QVERIFY(!entry->schema->validate(element, failures));
    QCOMPARE(failures.size(), std::size_t(1));
    QCOMPARE(failures[0].message, std::string(R"(missing required property "order_id")"));
    QVERIFY(!registry.find("unknown"));
    auto entries = registry.entries();
    QCOMPARE(entries.size(), std::size_t(2));
    QCOMPARE(entries[0]->eventName, std::string("payment_completed"));
    QCOMPARE(entries[1]->eventName, std::string("signup"));
}

void TestSchema::registryPercentEncodedNames() {
    QTemporaryDir temp;
    const fs::path dir = temp.path().toStdString();
    writeFile(dir / "checkout%2Fstep_viewed" / "1.json", R"({"required": ["step"]})");
    writeFile(dir / "Order Completed" / "1.json", "{}");
    writeFile(dir / "$pageview" / "1.json", "{}");
    auto registry = SchemaRegistry::loadDirectory(dir);
    QVERIFY(registry.find("checkout/step_viewed"));
    QVERIFY(!registry.find("checkout%2Fstep_viewed"));
    QVERIFY(registry.find("Order Completed"));
    QVERIFY(registry.find("$pageview"));
}

void TestSchema::registryCrossFileRef() {
    QTemporaryDir temp;
    const fs::path dir = temp.path().toStdString();
    // Shared definitions live next to the event folders (files there are not events); a folder
    // name with '%' checks that file paths survive the trip through file:// URIs.
    writeFile(dir / "common.json", R"({"definitions": {"currency": {"enum": ["EUR", "USD"]}}})");
    writeFile(dir / "a%2Fb" / "defs.d" / "x.json", "{}");
    writeFile(dir / "a%2Fb" / "1.json", R"({"properties": {"currency": {"$ref": "../common.json#/definitions/currency"},
        "local": {"$ref": "local.json"}}})");
    writeFile(dir / "a%2Fb" / "local.notjson", "");
    writeFile(dir / "local.json", "{}");
    writeFile(dir / "a%2Fb" / "2.json", R"({"properties": {"currency": {"$ref": "../common.json#/definitions/currency"}}})");
    auto registry = SchemaRegistry::loadDirectory(dir);
    const auto* entry = registry.find("a/b");
    QVERIFY(entry);
    QCOMPARE(entry->version, 2);
    simdjson::padded_string text(std::string(R"({"currency": "GBP"})"));
    simdjson::dom::element element;
    QVERIFY(!m_parser.parse(text).get(element));
    std::vector<ValidationFailure> failures;
    QVERIFY(!entry->schema->validate(element, failures));
    QCOMPARE(failureKeys(failures), QStringList{"/currency enum"});
}

void TestSchema::registryAddFindMove() {
    SchemaRegistry registry;
    registry.add("a", 1, CompiledSchema::compile(json(true)));
    registry.add("a", 2, CompiledSchema::compile(json(false)));
    QCOMPARE(registry.size(), std::size_t(1));
    QCOMPARE(registry.find(std::string_view("a"))->version, 2);
    SchemaRegistry moved(std::move(registry));
    QCOMPARE(moved.size(), std::size_t(1));
    QCOMPARE(registry.size(), std::size_t(0)); // moved-from stays usable
    SchemaRegistry assigned;
    assigned = std::move(moved);
    QVERIFY(assigned.find("a"));
    QVERIFY(!moved.find("a"));
}

void TestSchema::registryErrors_data() {
    QTest::addColumn<QString>("file");    // relative to the temp dir
    QTest::addColumn<QString>("content"); // "<dangling>" makes it a broken symlink
    QTest::addColumn<QStringList>("mentions");
    QTest::newRow("syntax error line and column")
        << "payment/1.json" << "{\n  \"type\": \"object\",\n  \"required\": [\"a\",]\n}"
        << QStringList{"payment/1.json: line 3, column 20:", "JSON syntax error"};
    QTest::newRow("syntax error first line") << "payment/1.json" << "{\"a\" 1}" << QStringList{"payment/1.json: line 1, column 6:"};
    QTest::newRow("truncated") << "payment/2.json" << "{\"a\": [1,\n2" << QStringList{"payment/2.json: line 2, column 2:"};
    QTest::newRow("non-integer version") << "payment/draft.json" << "{}"
                                         << QStringList{"payment/draft.json", "positive integer", "\"1.json\""};
    QTest::newRow("zero version") << "payment/0.json" << "{}" << QStringList{"payment/0.json", "positive integer"};
    QTest::newRow("invalid schema") << "payment/1.json" << R"({"properties": {"id": {"pattern": "("}}})"
                                    << QStringList{"payment/1.json", "invalid schema", "/properties/id/pattern"};
    QTest::newRow("unresolvable ref") << "payment/1.json" << R"({"$ref": "missing.json"})"
                                      << QStringList{"payment/1.json", "missing.json"};
    QTest::newRow("unreadable") << "payment/1.json" << "<dangling>" << QStringList{"payment/1.json", "cannot read"};
}

void TestSchema::registryErrors() {
    QFETCH(QString, file);
    QFETCH(QString, content);
    QFETCH(QStringList, mentions);
    QTemporaryDir temp;
    const fs::path dir = temp.path().toStdString();
    const fs::path path = dir / file.toStdString();
    if (content == "<dangling>") {
        fs::create_directories(path.parent_path());
        fs::create_symlink(dir / "nowhere.json", path);
    } else {
        writeFile(path, content.toStdString());
    }
    try {
        SchemaRegistry::loadDirectory(dir);
        QFAIL("loaded without an error");
    } catch (const SchemaError& e) {
        for (const auto& mention : mentions)
            QVERIFY2(QString(e.what()).contains(mention), qPrintable(QString(e.what()) + " lacks " + mention));
    }
}

void TestSchema::registryMissingDirectory() {
    QTemporaryDir temp;
    const fs::path missing = fs::path(temp.path().toStdString()) / "no-such-schemas";
    try {
        SchemaRegistry::loadDirectory(missing);
        QFAIL("loaded a missing directory");
    } catch (const SchemaError& e) {
        QVERIFY2(std::string(e.what()).find(missing.string()) != std::string::npos, e.what());
    }
}

QTEST_APPLESS_MAIN(TestSchema)
#include "tst_schema.moc"
