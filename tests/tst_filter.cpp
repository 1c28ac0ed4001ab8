// The filter language (core/filter): canonical forms of valid expressions, exact error positions
// and messages of invalid ones, evaluation of every field and operator, property paths, regexes
// and time literals, and — on a generated capture written by the real store — the same counts as
// independent SQL queries (plain columns, json_extract over dead letters' raw bytes) and an
// independent nlohmann_json pass over the generated properties.
#include <QTemporaryDir>
#include <QtTest>

#include <sqlite3.h>

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "event/event.h"
#include "filter/filter.h"
#include "filter/filter_sql.h"
#include "store/capture_store.h"

using namespace pipescope;

// Declared before the helpers: moc stops understanding the file at their raw strings.
class TestFilter : public QObject {
    Q_OBJECT

private slots:
    void canonical_data();
    void canonical();
    void errors_data();
    void errors();
    void caretLine();
    void evaluate_data();
    void evaluate();
    void timeFallsBackToReceived();
    void relativeTimeUsesNow();
    void deadLetters();
    void fieldOnlyFiltersNeverParseProperties();
    void malformedPropertiesAreMissing();
    void referencedFieldsAndCompletion();
    void threads();
    void sameCountsAsIndependentQueries();
};

namespace {

constexpr std::int64_t kNow = 1764000000000;  // 2025-11-24T16:00:00Z
constexpr std::int64_t kMinute = 60'000;

FilterOptions at(FilterTarget target = FilterTarget::Events) {
    FilterOptions options;
    options.target = target;
    options.nowMillis = kNow;
    return options;
}

StoredEvent sampleEvent() {
    StoredEvent e;
    e.seq = 42;
    e.eventId = "0190-abc";
    e.idSource = "posthog_uuid";
    e.name = "payment_completed";
    e.distinctId = "user-42";
    e.anonymousId = "anon-1";
    e.stream = "server";
    e.format = "posthog";
    e.timestamp = kNow - 3 * kMinute;
    e.receivedAt = kNow - 1 * kMinute;
    e.originSource = "server.ndjson";
    e.verdict = Verdict::Invalid;
    e.properties = R"({"amount":150,"price":19.99,"currency":"EUR","plan":null,"is_test":false,)"
                   R"("items":[{"sku":"SKU-1","qty":2},{"sku":"SKU-2","qty":1}],"key with space":"yes",)"
                   R"("$current_url":"https://shop.example/checkout","nested":{"deep":{"value":"x"}},)"
                   R"("amount_text":"100","big":12345678901234567890123,"quote\"key":1,"caf\u00e9":"latte",)"
                   R"("tags":["a","b"],"empty":"","utm-source":"news","2fa":true,"neg":-7})";
    return e;
}

std::int64_t sqlCount(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return -1;
    sqlite3_stmt* statement = nullptr;
    std::int64_t count = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK && sqlite3_step(statement) == SQLITE_ROW)
        count = sqlite3_column_int64(statement, 0);
    else
        qWarning("sql failed: %s: %s", sql.c_str(), sqlite3_errmsg(db));
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return count;
}

// The count of a translated filter, on a connection of its own.
std::int64_t sqlCount(const std::string& path, const std::string& table, const FilterSql& sql) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return -1;
    registerFilterSqlFunctions(db);
    sqlite3_stmt* statement = nullptr;
    std::int64_t count = -1;
    const std::string text = "SELECT count(*) FROM " + table + " WHERE " + sql.where;
    if (sqlite3_prepare_v2(db, text.c_str(), -1, &statement, nullptr) == SQLITE_OK) {
        for (std::size_t i = 0; i < sql.params.size(); ++i) {
            const int at = int(i + 1);
            if (const auto* n = std::get_if<std::int64_t>(&sql.params[i])) sqlite3_bind_int64(statement, at, *n);
            else if (const auto* d = std::get_if<double>(&sql.params[i])) sqlite3_bind_double(statement, at, *d);
            else sqlite3_bind_text(statement, at, std::get<std::string>(sql.params[i]).c_str(), -1, SQLITE_TRANSIENT);
        }
        if (sqlite3_step(statement) == SQLITE_ROW) count = sqlite3_column_int64(statement, 0);
    }
    if (count < 0) qWarning("sql failed: %s: %s", text.c_str(), sqlite3_errmsg(db));
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return count;
}

} // namespace


// ---- valid expressions and their canonical form ----

void TestFilter::canonical_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* name, const char* text, const char* expected) {
        QTest::newRow(name) << QString::fromUtf8(text) << QString::fromUtf8(expected);
    };
    row("empty", "", "");
    row("blank", "   \t ", "");
    row("simple", R"(event == "x")", R"(event == "x")");
    row("no spaces", R"(event=="x"&&verdict==invalid)", R"(event == "x" && verdict == "invalid")");
    row("words", R"(event == "a" and seq > 1 or not exists id)", R"(event == "a" && seq > 1 || !exists id)");
    row("needed parens kept", R"((event == "a" || seq > 1) && stream == client)",
        R"((event == "a" || seq > 1) && stream == "client")");
    row("needless parens dropped", R"(event == "a" || (seq > 1 && stream == client))",
        R"(event == "a" || seq > 1 && stream == "client")");
    row("flattened", R"(seq == 1 || (seq == 2 || seq == 3))", R"(seq == 1 || seq == 2 || seq == 3)");
    row("not of a test", R"(!event == "x")", R"(!(event == "x"))");
    row("not of a group", R"(not (seq == 1 || seq == 2))", R"(!(seq == 1 || seq == 2))");
    row("double not", R"(!!exists properties.a)", R"(!!exists properties.a)");
    row("bracket key", R"(properties["key with space"] == "yes")", R"(properties["key with space"] == "yes")");
    row("bracket simple key", R"(properties["plan"] == "pro")", R"(properties.plan == "pro")");
    row("array path", R"(properties.items[0].sku == "A")", R"(properties.items[0].sku == "A")");
    row("negative index", R"(properties.items[-1].sku=="A")", R"(properties.items[-1].sku == "A")");
    row("dollar key", R"(properties.$current_url ~ "x")", R"(properties.$current_url ~ "x")");
    row("dash and digit keys", R"(properties.utm-source == "a" && properties.2fa == true)",
        R"(properties.utm-source == "a" && properties.2fa == true)");
    row("relative time", "time > -5m", "time > -5m");
    row("compound relative time", "time > -1h30m", "time > -90m");
    row("absolute time", "time >= 2025-11-20T10:00:00Z", "time >= 2025-11-20T10:00:00.000Z");
    row("time with offset", "time < 2025-11-20T12:00:00+02:00", "time < 2025-11-20T10:00:00.000Z");
    row("quoted time", R"(received >= "2025-11-20")", "received >= 2025-11-20T00:00:00.000Z");
    row("epoch ms", "time > 1764000000000", "time > 1764000000000");
    row("set", R"(distinct_id in {"a", "b"})", R"(distinct_id in {"a", "b"})");
    row("set with spaces", "seq in {1 2 3}", "seq in {1, 2, 3}");
    row("mixed set", R"(properties.x not in {1, "a", true, null})", R"(properties.x not in {1, "a", true, null})");
    row("enum set", "verdict in {invalid, duplicate}", R"(verdict in {"invalid", "duplicate"})");
    row("raw regex", R"(event ~ r"^\$page")", R"(event ~ "^\\$page")");
    row("not match", R"(event !~ "^\\$")", R"(event !~ "^\\$")");
    row("single quotes", R"(event == 'it\'s')", R"(event == "it's")");
    row("escapes", R"(event == "a\"b\\c\n\u00e9\ud83d\ude00")", "event == \"a\\\"b\\\\c\\n\xC3\xA9\xF0\x9F\x98\x80\"");
    row("number forms", "properties.a >= 1.5e2 && properties.b == -0.25 && seq == -3",
        "properties.a >= 150 && properties.b == -0.25 && seq == -3");
    row("contains", R"(origin contains "batch")", R"(origin contains "batch")");
    row("value first", "5 < seq", "5 < seq");
    row("field to field", "time < received && distinct_id != user_id", "time < received && distinct_id != user_id");
    row("newlines", "event == \"a\"\n  && seq > 1", R"(event == "a" && seq > 1)");
}

void TestFilter::canonical() {
    QFETCH(QString, text);
    QFETCH(QString, expected);
    const std::string source = text.toStdString();
    const auto parsed = FilterExpression::parse(source, at());
    QVERIFY2(parsed.ok(), (parsed.error().describe() + "\n" + parsed.error().caret(source)).c_str());
    const std::string canonical = parsed.expression().toString();
    QCOMPARE(QString::fromStdString(canonical), expected);
    QCOMPARE(parsed.expression().matchesAll(), canonical.empty());
    // The canonical form parses back to itself.
    const auto again = FilterExpression::parse(canonical, at());
    QVERIFY2(again.ok(), again.error().describe().c_str());
    QCOMPARE(QString::fromStdString(again.expression().toString()), expected);
}

// ---- invalid expressions: exact position, length and message ----

void TestFilter::errors_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<int>("target");
    QTest::addColumn<int>("position");
    QTest::addColumn<int>("length");
    QTest::addColumn<QString>("message");
    const int ev = int(FilterTarget::Events), dl = int(FilterTarget::DeadLetters);
    auto row = [](const char* name, const char* text, int target, int position, int length, const char* message) {
        QTest::newRow(name) << QString::fromUtf8(text) << target << position << length << QString::fromUtf8(message);
    };
    row("unknown field", R"(evnt == "x")", ev, 0, 4, R"(unknown field "evnt" (did you mean "event"?))");
    row("unknown field later", R"(event == "x" && distnct_id == "a")", ev, 16, 10,
        R"(unknown field "distnct_id" (did you mean "distinct_id"?))");
    row("unknown field far", R"(colour == "x")", ev, 0, 6,
        "unknown field \"colour\" (fields: event, distinct_id, stream, verdict, origin, time, received, id, seq, "
        "format, anonymous_id, user_id, ingest or properties)");
    row("unterminated string", R"(event == "abc)", ev, 9, 4, R"(unterminated string: missing the closing ")");
    row("unterminated after escape", R"(event == "abc\)", ev, 9, 5, R"(unterminated string: missing the closing ")");
    row("invalid regex", R"(event ~ "(ab")", ev, 12, 1, "invalid regex at 3: missing closing parenthesis");
    row("invalid regex inside", R"(event ~ "a[b")", ev, 12, 1, "invalid regex at 3: missing terminating ] for character class");
    row("invalid regex quantifier", R"(event ~ "*a")", ev, 9, 1, "invalid regex at 0: quantifier does not follow a repeatable item");
    row("single equals", R"(event = "x")", ev, 6, 1, R"("=" is not an operator: write == to compare)");
    row("single ampersand", R"(seq == 1 & seq == 2)", ev, 9, 1, R"("&" is not an operator: write && (or and))");
    row("single bar", R"(seq == 1 | seq == 2)", ev, 9, 1, R"("|" is not an operator: write || (or or))");
    row("unknown verdict", "verdict == invlid", ev, 11, 6, R"(unknown verdict "invlid" (did you mean "invalid"?))");
    row("unknown quoted verdict", R"(verdict == "bad")", ev, 11, 5,
        R"(unknown verdict "bad": verdict is valid, invalid, unplanned or duplicate)");
    row("unknown stream in set", "stream in {client, sever}", ev, 19, 5, R"(unknown stream "sever" (did you mean "server"?))");
    row("number field, text value", R"(seq > "abc")", ev, 6, 5, R"(seq is a number, "abc" is text)");
    row("text field, number value", "event == 5", ev, 9, 1,
        R"(event is text, 5 is a number (quote it to compare as text: "5"))");
    row("text field, null", "id == null", ev, 6, 4, "id is text, never null; to find records without one write !exists id");
    row("time field, bad text", R"(time > "yesterday")", ev, 7, 11,
        R"(time is a time, "yesterday" is not one (write 2025-11-20T10:00:00Z, -5m, or epoch milliseconds))");
    row("fields of two types", "seq == event", ev, 0, 12, "seq is a number, event is text: they never compare");
    row("missing close paren", R"((event == "x")", ev, 13, 0, R"x(missing ")" to close the "(" at column 1)x");
    row("missing close paren mid", R"((event == "x" seq == 1)", ev, 14, 3,
        R"x(expected && or || or ")" to close the "(" at column 1, got "seq")x");
    row("stray close paren", R"(event == "x"))", ev, 12, 1, R"x(unexpected ")" without a matching "(")x");
    row("empty parens", "()", ev, 0, 2, "empty parentheses: expected a test inside");
    row("exists after", "properties.x exists", ev, 13, 6, "exists comes first: write exists properties.x");
    row("bare property", "properties.x", ev, 12, 0,
        "expected a comparison after properties.x (==, !=, <, <=, >, >=, ~, !~, contains or in), or exists "
        "properties.x to test that it is there");
    row("bare property before and", "properties.x && seq == 1", ev, 13, 2,
        "expected a comparison after properties.x (==, !=, <, <=, >, >=, ~, !~, contains or in), or exists "
        "properties.x to test that it is there");
    row("relative time without sign", "time > 5m", ev, 7, 2,
        R"(a relative time counts back from now: write -5m ("time > -5m": in the last 5m))");
    row("bad relative unit", "time > -5y", ev, 7, 3, R"(invalid number "-5y" (relative times: -30s, -5m, -2h, -7d, -1h30m))");
    row("bad date", "time > 2025-13-01", ev, 7, 10,
        R"(invalid time "2025-13-01" (write 2025-11-20, 2025-11-20T10:00:00Z or 2025-11-20T10:00:00.250+02:00))");
    row("bad escape", R"(event == "a\qb")", ev, 11, 2,
        R"(invalid escape "\q" (escapes: \" \' \\ \/ \b \f \n \r \t \uXXXX; for a regex write \\q or a raw string r"..."))");
    row("bad unicode escape", R"(event == "\u12x4")", ev, 10, 6, R"(invalid \u escape: expected four hex digits)");
    row("lone surrogate", R"(event == "\udc00")", ev, 10, 6, R"(a lone low surrogate \u escape)");
    row("dead-letter field on events", R"(reason == "rejected")", ev, 0, 6,
        R"("reason" is a field of dead letters; this filter runs over events)");
    row("event field on dead letters", "verdict == valid", dl, 0, 7,
        R"("verdict" is a field of events; this filter runs over dead letters)");
    row("unknown reason", "reason == schema_violaton", dl, 10, 15,
        R"(unknown reason "schema_violaton" (did you mean "schema_violation"?))");
    row("empty set", "seq in {}", ev, 7, 2, "an empty set matches nothing: give at least one value");
    row("unclosed set", "seq in {1, 2", ev, 12, 0, R"(missing "}" to close the set at column 8)");
    row("trailing comma", "seq in {1, }", ev, 11, 1, R"(expected a value after ",")");
    row("field in set", "seq in {1, ingest}", ev, 11, 6, "a set holds values, not fields or properties");
    row("in without braces", "seq in 1", ev, 7, 1, R"(expected "{" to start a set: in {"a", "b", 3}, got "1")");
    row("dot then nothing", "properties. == 1", ev, 11, 1, R"(expected a property name after ".")");
    row("dot at end", "properties.", ev, 11, 0, R"(expected a property name after ".")");
    row("quoted key after dot", R"(properties."a b" == 1)", ev, 11, 1, R"(a quoted key goes in brackets: properties["key with space"])");
    row("fractional index", "properties.a[1.5] == 1", ev, 13, 3, "an array index is a whole number: [0], [1], [-1] for the last");
    row("unclosed bracket", "properties.a[1 == 1", ev, 15, 2, R"(expected "]" to close the "[" at column 13, got "==")");
    row("properties alone", "properties == 1", ev, 0, 10,
        R"("properties" needs a path: properties.amount, properties.items[0].sku, properties["key with space"])");
    row("field with member", "event.name == 1", ev, 5, 1, R"("event" has no members; properties are written properties.name)");
    row("dangling and", R"(event == "x" &&)", ev, 15, 0,
        R"(expected a test (a field, a property, exists, ! or "(") at the end of the filter)");
    row("missing value", "seq ==", ev, 6, 0, "expected a value after == at the end of the filter");
    row("two values", "1 == 1", ev, 0, 6, "compares two values: one side must be a field or a property");
    row("unquoted text", "event == pageview", ev, 9, 8,
        R"(unquoted text "pageview": write "pageview" (only enumerated values such as verdict == invalid go without quotes))");
    row("unquoted field-like text", "event == evnt", ev, 9, 4, R"(unknown field "evnt" (did you mean "event"?))");
    row("ordering a boolean", "properties.a > true", ev, 15, 4, "< <= > >= compare numbers, times and text, not true");
    row("regex on a number", R"(seq ~ "1")", ev, 0, 3, "~ works on text; seq is a number");
    row("regex without quotes", "event ~ pay", ev, 8, 3, R"(expected a pattern in quotes after ~ (~ "^pay"), got "pay")");
    row("missing operator", R"(event == "x" verdict == valid)", ev, 13, 7,
        R"(expected && or || before "verdict" (or the end of the filter))");
    row("unexpected character", "event # 1", ev, 6, 1, R"(unexpected character "#")");
    row("unexpected word", "event is 1", ev, 6, 2,
        R"(expected an operator after event (==, !=, <, <=, >, >=, ~, !~, contains or in), got "is")");
    row("unexpected utf-8", "seq == 1 \xC3\xA9", ev, 9, 2, "unexpected character \"\xC3\xA9\"");
    row("lone minus", "seq == - 1", ev, 7, 1, R"("-" must start a number or a relative time such as -5m)");
    row("keyword as value", "seq == and", ev, 7, 3, R"(expected a value after ==, got "and")");
    row("exists of a value", "exists 5", ev, 7, 1, "exists takes a field or a property (exists properties.plan)");
    row("not without in", "seq not 5", ev, 8, 1, R"(expected in after not (x not in {...}), got "5")");
}

void TestFilter::errors() {
    QFETCH(QString, text);
    QFETCH(int, target);
    QFETCH(int, position);
    QFETCH(int, length);
    QFETCH(QString, message);
    const std::string source = text.toStdString();
    const auto parsed = FilterExpression::parse(source, at(FilterTarget(target)));
    QVERIFY2(!parsed.ok(), parsed.ok() ? parsed.expression().toString().c_str() : "");
    const FilterError& error = parsed.error();
    QCOMPARE(QString::fromStdString(error.message), message);
    QCOMPARE(int(error.position), position);
    QCOMPARE(int(error.length), length);
    QCOMPARE(error.column(), std::size_t(position) + 1);
}

void TestFilter::caretLine() {
    const std::string text = R"(event == "x" && evnt == "y")";
    const auto parsed = FilterExpression::parse(text, at());
    QVERIFY(!parsed.ok());
    QCOMPARE(QString::fromStdString(parsed.error().describe()),
             QString(R"(error at column 17: unknown field "evnt" (did you mean "event"?))"));
    QCOMPARE(QString::fromStdString(parsed.error().caret(text)),
             QString::fromStdString(text + "\n                ^~~~"));
    // A multi-byte character before the error counts as one column; the end of the text as a caret.
    const std::string accented = "event == \"\xC3\xA9t\xC3\xA9\" &&";
    const auto atEnd = FilterExpression::parse(accented, at());
    QVERIFY(!atEnd.ok());
    QCOMPARE(atEnd.error().position, accented.size());
    QCOMPARE(QString::fromStdString(atEnd.error().caret(accented)),
             QString::fromStdString(accented + "\n" + std::string(17, ' ') + "^"));
    // Nesting is bounded, so a hostile filter cannot exhaust the stack.
    const std::string deep = std::string(300, '(') + "seq == 1" + std::string(300, ')');
    const auto tooDeep = FilterExpression::parse(deep, at());
    QVERIFY(!tooDeep.ok());
    QCOMPARE(QString::fromStdString(tooDeep.error().message), QString("the filter nests deeper than 256 levels"));
    QCOMPARE(tooDeep.error().position, std::size_t(256));
    const std::string nots(100000, '!');
    QVERIFY(!FilterExpression::parse(nots + "exists id", at()).ok());
    const std::string fine = std::string(200, '(') + "seq == 1" + std::string(200, ')');
    QVERIFY(FilterExpression::parse(fine, at()).ok());
}

// ---- evaluation ----

void TestFilter::evaluate_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<bool>("expected");
    auto row = [](const char* text, bool expected) { QTest::newRow(text) << QString::fromUtf8(text) << expected; };
    // text fields and every operator on them
    row(R"(event == "payment_completed")", true);
    row(R"(event != "payment_completed")", false);
    row(R"(event == "Payment_completed")", false);
    row(R"(event ~ "^pay")", true);
    row(R"(event ~ "(?i)^PAY")", true);
    row(R"(event ~ "^PAY")", false);
    row(R"(event !~ "^pay")", false);
    row(R"(event !~ "^\\$")", true);
    row(R"(event contains "ment_c")", true);
    row(R"(event contains "MENT")", false);
    row(R"(event in {"a", "payment_completed"})", true);
    row(R"(event not in {"a", "b"})", true);
    row(R"(event not in {"payment_completed"})", false);
    row(R"(event < "q" && event > "pay")", true);
    row(R"(event >= "payment_completed" && event <= "payment_completed")", true);
    row(R"(distinct_id == "user-42")", true);
    row("stream == server", true);
    row("stream != client", true);
    row("verdict == invalid", true);
    row("verdict in {valid, duplicate}", false);
    row(R"(origin == "server.ndjson")", true);
    row(R"(origin ~ "\\.ndjson$")", true);
    row(R"(id == "0190-abc")", true);
    row("exists id", true);
    row("format == posthog", true);
    row(R"(anonymous_id == "anon-1")", true);
    // a missing field: every comparison is false, != too; its negation is true
    row("exists user_id", false);
    row(R"(user_id == "x")", false);
    row(R"(user_id != "x")", false);
    row(R"(!(user_id == "x"))", true);
    row(R"(user_id ~ ".*")", false);
    row(R"(user_id !~ "x")", false);
    row(R"(user_id in {"x"})", false);
    row(R"(user_id not in {"x"})", false);
    row("exists ingest", false);
    row("ingest > 0", false);
    row("distinct_id != user_id", false);
    // numbers
    row("seq == 42", true);
    row("seq > 41", true);
    row("seq >= 42", true);
    row("seq < 42", false);
    row("seq <= 42", true);
    row("seq != 42", false);
    row("seq in {1, 42}", true);
    row("seq == 42.0", true);
    row("seq < 42.5", true);
    row("5 < seq", true);
    // times
    row("time > -5m", true);
    row("time > -2m", false);
    row("time < -2m", true);
    row("time > -1h && time < -170s", true);
    row("time >= 1763999820000", true);
    row("time == 2025-11-24T15:57:00Z", true);
    row("time == 2025-11-24T17:57:00+02:00", true);
    row(R"(time == "2025-11-24T15:57:00.000Z")", true);
    row("time < 2025-11-24", false);
    row("received > -2m", true);
    row("received == time", false);
    row("time < received", true);
    // properties: numbers, strings, null, booleans
    row("properties.amount > 100", true);
    row("properties.amount == 150", true);
    row("properties.amount == 150.0", true);
    row("properties.amount != 150", false);
    row("properties.amount < 100", false);
    row("properties.amount in {100, 150}", true);
    row("properties.price > 19.98 && properties.price < 20", true);
    row("properties.neg < -6 && properties.neg == -7", true);
    row(R"(properties.currency == "EUR")", true);
    row(R"(properties.currency < "F")", true);
    row("properties.currency > 5", false);
    row("properties.currency != 5", true);
    row("properties.amount_text == 100", false);
    row(R"(properties.amount_text == "100")", true);
    row("properties.amount_text > 50", false);
    row("properties.plan == null", true);
    row("exists properties.plan", true);
    row("properties.plan != null", false);
    row(R"(properties.plan == "pro")", false);
    row(R"(properties.plan != "pro")", true);
    row("properties.is_test == false", true);
    row("properties.is_test != true", true);
    row("properties.2fa == true", true);
    row(R"(properties.utm-source == "news")", true);
    row(R"(properties.empty == "")", true);
    row("exists properties.empty", true);
    // paths: arrays, nesting, keys that need brackets or are escaped in the JSON
    row(R"(properties.items[0].sku == "SKU-1")", true);
    row("properties.items[1].qty == 1", true);
    row(R"(properties.items[-1].sku == "SKU-2")", true);
    row(R"(properties.items[-2].sku == "SKU-1")", true);
    row("exists properties.items[-3]", false);
    row("exists properties.items[2]", false);
    row("exists properties.items[1]", true);
    row(R"(properties.items.sku == "SKU-1")", false);
    row(R"(properties.tags[1] == "b")", true);
    row(R"(properties["key with space"] == "yes")", true);
    row(R"(properties.$current_url ~ "checkout$")", true);
    row(R"(properties["$current_url"] contains "shop.example")", true);
    row(R"(properties.nested.deep.value == "x")", true);
    row("exists properties.nested.deep", true);
    row(R"(properties.nested == "x")", false);
    row(R"(properties.nested != "x")", true);
    row("exists properties.nested.deep.value.more", false);
    row(R"(properties["quote\"key"] == 1)", true);
    row("properties[\"caf\xC3\xA9\"] == \"latte\"", true);
    row(R"(properties["caf\u00e9"] == "latte")", true);
    row(R"(properties.cafe == "latte")", false);
    row("properties.big > 1e22", true);
    row("properties.big > 1e23", false);
    row(R"(properties.amount ~ "1")", false);
    row(R"(properties.amount !~ "1")", false);
    // a missing property: like a missing field
    row("properties.missing == 1", false);
    row("properties.missing != 1", false);
    row("properties.missing < 1", false);
    row("!exists properties.missing", true);
    row("!(properties.missing == 1)", true);
    row("properties.missing not in {1}", false);
    // property against field, and against another property
    row("properties.amount > seq", true);
    row("properties.items[0].qty > properties.items[1].qty", true);
    row(R"(properties.nested.deep.value == properties.nested.deep.value)", true);
    // logic
    row(R"(event == "x" || seq == 42)", true);
    row(R"(event == "x" && seq == 42)", false);
    row(R"(!(event == "x"))", true);
    row("not (seq == 42)", false);
    row(R"((event == "x" or seq == 42) and stream == server)", true);
    row(R"(event == "x" or seq == 42 and stream == client)", false);
    row("", true);
}

void TestFilter::evaluate() {
    QFETCH(QString, text);
    QFETCH(bool, expected);
    const std::string source = text.toStdString();
    const auto parsed = FilterExpression::parse(source, at());
    QVERIFY2(parsed.ok(), (parsed.error().describe() + "\n" + parsed.error().caret(source)).c_str());
    const StoredEvent event = sampleEvent();
    QCOMPARE(parsed.expression().matches(event), expected);
    // The canonical form means the same.
    const auto canonical = FilterExpression::parse(parsed.expression().toString(), at());
    QVERIFY(canonical.ok());
    QCOMPARE(canonical.expression().matches(event), expected);
}

void TestFilter::timeFallsBackToReceived() {
    StoredEvent event = sampleEvent();
    event.timestamp.reset();
    event.receivedAt = kNow - 10 * kMinute;
    const auto recent = FilterExpression::parse("time > -5m", at());
    const auto older = FilterExpression::parse("time > -15m && time == received", at());
    QVERIFY(recent.ok() && older.ok());
    QVERIFY(!recent.expression().matches(event));
    QVERIFY(older.expression().matches(event));
    event.receivedAt.reset();
    const auto exists = FilterExpression::parse("exists time", at());
    QVERIFY(!exists.expression().matches(event));
    QVERIFY(!older.expression().matches(event));
}

void TestFilter::relativeTimeUsesNow() {
    StoredEvent event = sampleEvent();
    const auto early = FilterExpression::parse("time > -5m", at());
    FilterOptions later = at();
    later.nowMillis = kNow + 10 * kMinute;
    const auto late = FilterExpression::parse("time > -5m", later);
    QVERIFY(early.expression().matches(event));
    QVERIFY(!late.expression().matches(event));
    QCOMPARE(late.expression().nowMillis(), kNow + 10 * kMinute);
    // Without a fixed now, the clock at parse time.
    const auto clock = FilterExpression::parse("time > -5m");
    QVERIFY(clock.ok());
    const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    QVERIFY(std::abs(clock.expression().nowMillis() - wall) < 60'000);
}

void TestFilter::deadLetters() {
    DlqEntry entry;
    entry.seq = 7;
    entry.reason = "schema_violation";
    entry.detail = R"({"failures":[{"pointer":"/amount","keyword":"type","message":"expected number, got string"}]})";
    entry.originSource = "web.ndjson";
    entry.eventName = "payment_completed";
    entry.distinctId = "user-9";
    entry.raw = R"({"event":"payment_completed","distinct_id":"user-9","properties":{"amount":"12.50","items":[{"sku":"A"}]}})";
    entry.createdAt = kNow - kMinute;
    const auto options = at(FilterTarget::DeadLetters);
    const std::vector<std::pair<const char*, bool>> cases = {
        {"reason == schema_violation", true},
        {"reason in {rejected, unparseable}", false},
        {R"(detail ~ "\"pointer\":\"/amount\"")", true},
        {R"(event == "payment_completed" && distinct_id == "user-9")", true},
        {R"(properties.amount == "12.50")", true},
        {"properties.amount > 10", false},
        {R"(properties.items[0].sku == "A")", true},
        {"seq == 7", true},
        {"time > -5m && received == time", true},
        {R"(origin == "web.ndjson")", true},
        {"exists ingest", false},
    };
    for (const auto& [text, expected] : cases) {
        const auto parsed = FilterExpression::parse(text, options);
        QVERIFY2(parsed.ok(), (std::string(text) + ": " + parsed.error().describe()).c_str());
        QVERIFY2(parsed.expression().matches(entry) == expected, text);
    }
    // Segment identify keeps its properties in traits.
    entry.raw = R"({"type":"identify","userId":"u","traits":{"plan":"pro"}})";
    QVERIFY(FilterExpression::parse(R"(properties.plan == "pro")", options).expression().matches(entry));
    // A line that is not JSON has no properties.
    entry.raw = "{not json";
    QVERIFY(!FilterExpression::parse("exists properties.amount", options).expression().matches(entry));
    QVERIFY(FilterExpression::parse("!exists properties.amount", options).expression().matches(entry));
    // The stored event's properties, for schema violations.
    FilterRecord record = FilterRecord::of(entry);
    record.properties = R"({"amount":3})";
    record.propertiesInEvent = false;
    QVERIFY(FilterExpression::parse("properties.amount == 3", options).expression().matches(record));
    // An empty name is no name.
    entry.eventName.clear();
    QVERIFY(FilterExpression::parse("!exists event", options).expression().matches(entry));
}

void TestFilter::fieldOnlyFiltersNeverParseProperties() {
    // Properties that are not JSON at all: a field-only filter never looks at them.
    StoredEvent event = sampleEvent();
    event.properties = "\x01 not json at all";
    const auto fields = FilterExpression::parse(R"(event == "payment_completed" && seq == 42)", at());
    QVERIFY(!fields.expression().readsProperties());
    QVERIFY(fields.expression().matches(event));
    const auto props = FilterExpression::parse(R"(event == "payment_completed" && exists properties.amount)", at());
    QVERIFY(props.expression().readsProperties());
    QVERIFY(!props.expression().matches(event));
}

void TestFilter::malformedPropertiesAreMissing() {
    StoredEvent event = sampleEvent();
    const auto amount = FilterExpression::parse("properties.amount == 1", at());
    const auto absent = FilterExpression::parse("!exists properties.amount", at());
    for (const char* bad : {"", "[]", "[1,2]", "\"text\"", "{\"amount\":", "{\"amount\" 1}", "null", "{\"amount\":[1"}) {
        event.properties = bad;
        QVERIFY2(!amount.expression().matches(event), bad);
        QVERIFY2(absent.expression().matches(event), bad);
    }
    // Large and deep documents are fine.
    std::string big = "{";
    for (int i = 0; i < 5000; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    big += "\"amount\":1}";
    event.properties = big;
    QVERIFY(amount.expression().matches(event));
    QVERIFY(FilterExpression::parse("properties.k4999 == 4999", at()).expression().matches(event));
}

void TestFilter::referencedFieldsAndCompletion() {
    const auto parsed = FilterExpression::parse(
        R"(event == "a" && (properties.amount > 1 || properties["a b"] == 2) && properties.amount < 9 && seq > 0 && event != "b")",
        at());
    QVERIFY(parsed.ok());
    const std::vector<std::string> expected = {"event", "properties.amount", "properties[\"a b\"]", "seq"};
    QCOMPARE(parsed.expression().referencedFields(), expected);
    QVERIFY(parsed.expression().readsProperties());
    QCOMPARE(parsed.expression().target(), FilterTarget::Events);

    std::vector<std::string_view> names;
    for (const auto& field : filterFields(FilterTarget::Events)) names.push_back(field.name);
    const std::vector<std::string_view> eventFields = {"event", "distinct_id", "stream", "verdict", "origin",
                                                       "time", "received", "id", "seq", "format",
                                                       "anonymous_id", "user_id", "ingest", "properties"};
    QCOMPARE(names, eventFields);
    names.clear();
    for (const auto& field : filterFields(FilterTarget::DeadLetters)) names.push_back(field.name);
    const std::vector<std::string_view> dlqFields = {"event", "distinct_id", "origin", "time", "received",
                                                     "seq", "ingest", "reason", "detail", "properties"};
    QCOMPARE(names, dlqFields);
    for (const auto& field : filterFields(FilterTarget::Events)) {
        QVERIFY(!field.description.empty());
        // Every field parses in a comparison with a value of its type, and every listed value of an
        // enumerated field is accepted unquoted.
        if (field.name == "properties") continue;
        const std::string value = field.type == "string" ? "\"x\"" : "1";
        if (field.values.empty())
            QVERIFY2(FilterExpression::parse(std::string(field.name) + " == " + value, at()).ok(), field.name.data());
        for (const auto v : field.values)
            QVERIFY(FilterExpression::parse(std::string(field.name) + " == " + std::string(v), at()).ok());
    }
    QVERIFY(std::find(filterKeywords().begin(), filterKeywords().end(), "exists") != filterKeywords().end());
}

void TestFilter::threads() {
    std::vector<StoredEvent> events;
    for (int i = 0; i < 20000; ++i) {
        StoredEvent e = sampleEvent();
        e.seq = i;
        e.properties = "{\"amount\":" + std::to_string(i % 500) + ",\"name\":\"n" + std::to_string(i % 7) + "\"}";
        events.push_back(std::move(e));
    }
    const auto parsed = FilterExpression::parse(R"(properties.amount >= 250 && properties.name ~ "^n[0-3]$")", at());
    QVERIFY(parsed.ok());
    const FilterExpression filter = parsed.expression();  // a copy shares the compiled tree
    std::int64_t expected = 0;
    for (int i = 0; i < 20000; ++i) expected += (i % 500 >= 250 && i % 7 <= 3);
    std::atomic<int> wrong{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < 4; ++t)
        workers.emplace_back([&] {
            std::int64_t count = 0;
            for (const auto& e : events) count += filter.matches(e);
            if (count != expected) ++wrong;
        });
    for (auto& w : workers) w.join();
    QCOMPARE(wrong.load(), 0);
}

// ---- a generated capture: the filter against independent counts ----

void TestFilter::sameCountsAsIndependentQueries() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.filePath("generated.pipescope").toStdString();

    std::mt19937 rng(20251124);
    auto pick = [&](int n) { return int(rng() % unsigned(n)); };
    const std::vector<std::string> names = {"$pageview", "payment_completed", "checkout_started", "$identify",
                                            "signup", "item viewed"};
    const std::vector<Verdict> verdicts = {Verdict::Valid, Verdict::Invalid, Verdict::Unplanned, Verdict::Duplicate};
    const std::vector<std::string> streams = {"client", "server", "unknown"};
    const std::vector<std::string> plans = {"free", "pro", "team"};
    std::vector<StoredEvent> generated;
    std::vector<nlohmann::json> properties;
    constexpr int kEvents = 4000;
    constexpr std::int64_t kBase = kNow - 2 * 86'400'000;
    {
        CaptureWriter writer(path);
        for (int i = 0; i < kEvents; ++i) {
            StoredEvent e;
            e.eventId = pick(10) ? "id-" + std::to_string(i) : "";
            e.idSource = e.eventId.empty() ? "none" : "posthog_uuid";
            e.name = names[pick(int(names.size()))];
            e.distinctId = "user-" + std::to_string(pick(200));
            e.anonymousId = pick(2) ? "anon-" + std::to_string(pick(50)) : "";
            e.userId = pick(3) == 0 ? e.distinctId : "";
            e.stream = streams[pick(3)];
            e.format = pick(2) ? "posthog" : "segment";
            e.receivedAt = kBase + std::int64_t(i) * 40'000;
            if (pick(10)) e.timestamp = *e.receivedAt - pick(600'000);
            e.originSource = pick(2) ? "client.ndjson" : "http:/batch/";
            e.originLine = std::uint64_t(i + 1);
            e.verdict = verdicts[pick(4)];
            e.failures = "[]";
            if (pick(5)) e.ingestId = 1 + i / 10;
            nlohmann::json p = nlohmann::json::object();
            switch (pick(10)) {
            case 0: break;  // no amount
            case 1: p["amount"] = std::to_string(pick(500)); break;  // the string-amount bug
            case 2: p["amount"] = pick(50000) / 100.0; break;
            default: p["amount"] = pick(500);
            }
            const int plan = pick(5);
            if (plan < 3) p["plan"] = plans[std::size_t(plan)];
            else if (plan == 3) p["plan"] = nullptr;
            nlohmann::json items = nlohmann::json::array();
            for (int k = pick(4); k > 0; --k) items.push_back({{"sku", "SKU-" + std::to_string(pick(20))}, {"qty", 1 + pick(5)}});
            if (pick(4)) p["items"] = items;
            p["$current_url"] = "https://shop.example/" + std::string(pick(2) ? "checkout" : "home") + "?q=" + std::to_string(i);
            if (pick(3) == 0) p["key with space"] = pick(2) == 0;
            p["nested"] = {{"level", pick(3)}, {"tags", {"t" + std::to_string(pick(3))}}};
            e.properties = p.dump();
            e.raw = nlohmann::json{{"event", e.name}, {"distinct_id", e.distinctId}, {"properties", p}}.dump();
            properties.push_back(p);
            generated.push_back(e);
            writer.append(std::move(e));
        }
        // Dead letters, with their raw bytes (kept uncompressed: SQL can read them).
        for (int i = 0; i < 500; ++i) {
            DlqEntry d;
            d.reason = i % 4 == 0 ? "unparseable" : i % 4 == 1 ? "rejected" : "schema_violation";
            d.detail = R"({"message":"m)" + std::to_string(i % 9) + R"("})";
            d.originSource = "web.ndjson";
            d.originLine = std::uint64_t(i + 1);
            d.eventName = i % 4 == 0 ? "" : names[std::size_t(i) % names.size()];
            d.distinctId = "user-" + std::to_string(i % 30);
            d.raw = i % 4 == 0 ? "{broken " + std::to_string(i)
                               : nlohmann::json{{"event", d.eventName},
                                                {"properties", {{"amount", i % 7 == 0 ? nlohmann::json(std::to_string(i))
                                                                                       : nlohmann::json(i)}}}}
                                     .dump();
            d.createdAt = kBase + i * 1000;
            writer.append(std::move(d));
        }
        writer.close();
    }
    const CaptureReader reader(path);
    QCOMPARE(reader.eventCount(), std::int64_t(kEvents));

    // Field filters: the same count as SQL over the capture's plain columns.
    struct SqlCase {
        std::string filter;
        std::string where;
    };
    const std::string t = "coalesce(timestamp, received_at)";
    const std::vector<SqlCase> sqlCases = {
        {R"(event == "payment_completed")", "name = 'payment_completed'"},
        {R"(event == "payment_completed" && verdict == invalid)", "name = 'payment_completed' AND verdict = 'invalid'"},
        {R"(event ~ "^\\$" || stream == server)", "(name LIKE '$%' OR stream = 'server')"},
        {R"(event in {"signup", "item viewed"} && !(verdict == duplicate))",
         "name IN ('signup', 'item viewed') AND verdict != 'duplicate'"},
        {R"(distinct_id ~ "^user-1[0-9]$")", "distinct_id GLOB 'user-1[0-9]'"},
        {R"(distinct_id >= "user-150")", "distinct_id >= 'user-150'"},
        {"seq > 1000 && seq <= 2500", "seq > 1000 AND seq <= 2500"},
        {"time > -1d", t + " > " + std::to_string(kNow - 86'400'000)},
        {"time >= 2025-11-23T00:00:00Z && time < 2025-11-23T12:00:00Z",
         t + " >= 1763856000000 AND " + t + " < 1763899200000"},
        {"received > -1d && !exists time", "0"},
        {"exists id", "event_id IS NOT NULL AND event_id != ''"},
        {"!exists id", "event_id IS NULL OR event_id = ''"},
        {R"(user_id != "user-5")", "user_id IS NOT NULL AND user_id != '' AND user_id != 'user-5'"},
        {"exists anonymous_id && format == segment", "anonymous_id != '' AND format = 'segment'"},
        {R"(origin contains "batch")", "origin_source LIKE '%batch%'"},
        {"ingest in {5, 6, 7}", "ingest_id IN (5, 6, 7)"},
        {"distinct_id == user_id", "distinct_id = user_id"},
        {"time < received", t + " < received_at"},
        {"verdict == valid || verdict == unplanned", "verdict IN ('valid', 'unplanned')"},
    };
    for (const auto& c : sqlCases) {
        const auto parsed = FilterExpression::parse(c.filter, at());
        QVERIFY2(parsed.ok(), (c.filter + ": " + parsed.error().describe()).c_str());
        QVERIFY2(!parsed.expression().readsProperties(), c.filter.c_str());
        std::int64_t count = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            count += parsed.expression().matches(e);
            return true;
        });
        const std::int64_t expected = sqlCount(path, "SELECT count(*) FROM events WHERE " + c.where);
        QVERIFY2(count == expected,
                 (c.filter + ": filter " + std::to_string(count) + ", sql " + std::to_string(expected)).c_str());
        QVERIFY2(expected > 0 || c.filter.find("!exists time") != std::string::npos, c.filter.c_str());
        // Translated to SQL: exact, and the same count; CaptureFilter decides it there.
        const FilterSql sql = toSql(parsed.expression());
        QVERIFY2(sql.exact, (c.filter + " -> " + sql.where).c_str());
        QVERIFY2(sqlCount(path, "events", sql) == expected, (c.filter + " -> " + sql.where).c_str());
        const CaptureFilter onCapture(path, parsed.expression());
        QCOMPARE(onCapture.count(), std::optional<std::int64_t>(expected));
        const auto seqs = onCapture.seqs();
        QVERIFY(seqs);
        std::vector<std::int64_t> scanned;
        reader.forEachEvent([&](const StoredEvent& e) {
            if (parsed.expression().matches(e)) scanned.push_back(e.seq);
            return true;
        });
        QVERIFY2(*seqs == scanned, c.filter.c_str());
    }

    // Property filters: the same count as a pass with nlohmann_json over the generated events.
    using Check = std::function<bool(const StoredEvent&, const nlohmann::json&)>;
    auto number = [](const nlohmann::json& p, const char* key) -> std::optional<double> {
        const auto it = p.find(key);
        if (it == p.end() || !it->is_number()) return std::nullopt;
        return it->get<double>();
    };
    const std::vector<std::pair<const char*, Check>> propertyCases = {
        {"properties.amount > 100", [&](const StoredEvent&, const nlohmann::json& p) { return number(p, "amount") > 100.0; }},
        {R"(event == "payment_completed" && properties.amount <= 250.5)",
         [&](const StoredEvent& e, const nlohmann::json& p) {
             const auto a = number(p, "amount");
             return e.name == "payment_completed" && a && *a <= 250.5;
         }},
        {"exists properties.amount && !(properties.amount > -1)",  // the string amounts
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("amount") && p["amount"].is_string(); }},
        {R"(properties.amount ~ "^4")",
         [&](const StoredEvent&, const nlohmann::json& p) {
             return p.contains("amount") && p["amount"].is_string() && p["amount"].get<std::string>().rfind('4', 0) == 0;
         }},
        {R"(properties.plan == "pro")",
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("plan") && p["plan"] == "pro"; }},
        {R"(properties.plan != "pro")",
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("plan") && p["plan"] != "pro"; }},
        {"properties.plan == null",
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("plan") && p["plan"].is_null(); }},
        {"!exists properties.plan", [&](const StoredEvent&, const nlohmann::json& p) { return !p.contains("plan"); }},
        {R"(properties.plan in {"free", "team"} && stream == client)",
         [&](const StoredEvent& e, const nlohmann::json& p) {
             return e.stream == "client" && p.contains("plan") && (p["plan"] == "free" || p["plan"] == "team");
         }},
        {R"(properties.items[0].sku == "SKU-3")",
         [&](const StoredEvent&, const nlohmann::json& p) {
             return p.contains("items") && !p["items"].empty() && p["items"][0]["sku"] == "SKU-3";
         }},
        {"properties.items[-1].qty >= 4",
         [&](const StoredEvent&, const nlohmann::json& p) {
             return p.contains("items") && !p["items"].empty() && p["items"].back()["qty"].get<int>() >= 4;
         }},
        {"exists properties.items[2]",
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("items") && p["items"].size() > 2; }},
        {R"(properties["key with space"] == true)",
         [&](const StoredEvent&, const nlohmann::json& p) { return p.contains("key with space") && p["key with space"] == true; }},
        {R"(properties.$current_url ~ "/checkout\\?q=1\\d*$" && verdict != valid)",
         [&](const StoredEvent& e, const nlohmann::json& p) {
             const std::string url = p["$current_url"];
             const std::string prefix = "https://shop.example/checkout?q=1";
             return e.verdict != Verdict::Valid && url.rfind(prefix, 0) == 0;
         }},
        {R"(properties.nested.level == 2 || properties.nested.tags[0] == "t1")",
         [&](const StoredEvent&, const nlohmann::json& p) {
             return p["nested"]["level"] == 2 || p["nested"]["tags"][0] == "t1";
         }},
        {"time > -12h && properties.amount < 10",
         [&](const StoredEvent& e, const nlohmann::json& p) {
             const std::int64_t time = e.timestamp ? *e.timestamp : *e.receivedAt;
             return time > kNow - 12 * 3'600'000 && number(p, "amount") < 10.0 && number(p, "amount").has_value();
         }},
    };
    for (const auto& [filter, check] : propertyCases) {
        const auto parsed = FilterExpression::parse(filter, at());
        QVERIFY2(parsed.ok(), (std::string(filter) + ": " + parsed.error().describe()).c_str());
        std::int64_t count = 0;
        reader.forEachEvent([&](const StoredEvent& e) {
            count += parsed.expression().matches(e);
            return true;
        });
        std::int64_t expected = 0;
        for (std::size_t i = 0; i < generated.size(); ++i) expected += check(generated[i], properties[i]);
        QVERIFY2(count == expected,
                 (std::string(filter) + ": filter " + std::to_string(count) + ", independent " + std::to_string(expected)).c_str());
        QVERIFY2(expected > 0, filter);
        // SQL decides only the field part: a superset, and CaptureFilter finishes on the events.
        const FilterSql sql = toSql(parsed.expression());
        QVERIFY2(!sql.exact, filter);
        QVERIFY2(sqlCount(path, "events", sql) >= expected, (std::string(filter) + " -> " + sql.where).c_str());
        QCOMPARE(CaptureFilter(path, parsed.expression()).count(), std::optional<std::int64_t>(expected));
    }

    // Dead letters: their raw bytes are plain in the capture, so SQLite's json_extract is the
    // independent count for properties too.
    const std::vector<SqlCase> dlqCases = {
        {"reason == schema_violation", "reason = 'schema_violation'"},
        {"!exists event", "event_name IS NULL OR event_name = ''"},
        {"properties.amount > 100", "json_valid(CAST(raw AS TEXT)) AND json_type(CAST(raw AS TEXT), '$.properties.amount') IN ('integer', 'real') "
                                    "AND json_extract(CAST(raw AS TEXT), '$.properties.amount') > 100"},
        {R"(reason == rejected && properties.amount ~ "^[0-9]+$")",
         "reason = 'rejected' AND json_valid(CAST(raw AS TEXT)) AND json_type(CAST(raw AS TEXT), '$.properties.amount') = 'text'"},
        {R"(detail contains "m3" && distinct_id in {"user-3", "user-13"})",
         "detail LIKE '%m3%' AND distinct_id IN ('user-3', 'user-13')"},
        {"time >= " + std::string("2025-11-22T16:01:00Z"), "created_at >= 1763827260000"},
    };
    for (const auto& c : dlqCases) {
        const auto parsed = FilterExpression::parse(c.filter, at(FilterTarget::DeadLetters));
        QVERIFY2(parsed.ok(), (c.filter + ": " + parsed.error().describe()).c_str());
        std::int64_t count = 0;
        reader.forEachDlq([&](const DlqEntry& d) {
            count += parsed.expression().matches(d);
            return true;
        });
        const std::int64_t expected = sqlCount(path, "SELECT count(*) FROM dlq WHERE " + c.where);
        QVERIFY2(count == expected,
                 (c.filter + ": filter " + std::to_string(count) + ", sql " + std::to_string(expected)).c_str());
        QVERIFY2(expected > 0, c.filter.c_str());
        QCOMPARE(CaptureFilter(path, parsed.expression()).count(), std::optional<std::int64_t>(expected));
    }

    // Translations where SQL's NULLs and the filter's missing values part ways unless handled,
    // and mixes of fields and properties, against the evaluator over every event.
    const std::vector<std::pair<std::string, int>> translations = {
        // (filter, 1 exact / 0 a superset / -1 nothing translates)
        {R"(!(user_id == "user-5"))", 1},
        {R"(!(anonymous_id != "anon-3"))", 1},
        {"!exists id && !(ingest > 100)", 1},
        {R"(!(event ~ "^\\$") && !(origin contains "batch"))", 1},
        {R"(event !~ "e" || user_id ~ "^user-1")", 1},
        {R"(!(distinct_id == user_id))", 1},
        {R"(event not in {"signup", "$identify"} && ingest not in {3, 4})", 1},
        {"!(time < received)", 1},
        {R"(event == "" || distinct_id != "")", 1},
        {R"(event == "signup" && properties.amount > 100)", 0},
        {R"(distinct_id in {"user-7", "user-8"} && properties.amount > 100)", 0},  // few: read by seq
        {R"(distinct_id == "user-9" && seq > 10)", 1},
        {R"(stream == server && !(properties.amount > 1) && seq < 900)", 0},
        {R"(!(event == "signup" && properties.amount > 100))", -1},
        {R"(event == "signup" || properties.amount > 1)", -1},
        {R"(properties.plan == "pro")", -1},
    };
    for (const auto& [text, kind] : translations) {
        const auto parsed = FilterExpression::parse(text, at());
        QVERIFY2(parsed.ok(), (text + ": " + parsed.error().describe()).c_str());
        const FilterSql sql = toSql(parsed.expression());
        // The evaluator over the reader's events (checked against independent counts above).
        std::int64_t expected = 0;
        std::vector<std::int64_t> expectedSeqs;
        reader.forEachEvent([&](const StoredEvent& e) {
            if (parsed.expression().matches(e)) expectedSeqs.push_back(e.seq);
            return true;
        });
        expected = std::int64_t(expectedSeqs.size());
        std::vector<std::int64_t> visited;
        QVERIFY(CaptureFilter(path, parsed.expression()).forEachEvent([&](const StoredEvent& e) {
            visited.push_back(e.seq);
            return true;
        }));
        QVERIFY2(visited == expectedSeqs, text.c_str());
        QVERIFY2(sql.exact == (kind == 1), (text + " -> " + sql.where).c_str());
        QVERIFY2((sql.where == "1") == (kind == -1), (text + " -> " + sql.where).c_str());
        const std::int64_t inSql = sqlCount(path, "events", sql);
        if (kind == 1) QVERIFY2(inSql == expected, (text + " -> " + sql.where + ": " + std::to_string(inSql) + " vs " + std::to_string(expected)).c_str());
        else QVERIFY2(inSql >= expected, (text + " -> " + sql.where).c_str());
        QVERIFY2(CaptureFilter(path, parsed.expression()).count() == std::optional<std::int64_t>(expected), text.c_str());
        QVERIFY2(expected > 0, text.c_str());
    }

    // Stopping early, and dead letters decoded.
    std::int64_t firstTwo = 0;
    QVERIFY(CaptureFilter(path, FilterExpression::parse("seq > 0", at()).expression()).forEachEvent([&](const StoredEvent&) {
        return ++firstTwo < 2;
    }));
    QCOMPARE(firstTwo, std::int64_t(2));
    const auto rejected = FilterExpression::parse("reason == rejected && properties.amount > 100", at(FilterTarget::DeadLetters));
    std::int64_t dlqVisited = 0;
    QVERIFY(CaptureFilter(path, rejected.expression()).forEachDlq([&](const DlqEntry& d) {
        dlqVisited += d.reason == "rejected";
        return true;
    }));
    QCOMPARE(std::optional<std::int64_t>(dlqVisited), CaptureFilter(path, rejected.expression()).count());
    QVERIFY(dlqVisited > 0);

    // Progress, and cancelling.
    const auto slow = FilterExpression::parse("properties.amount > 100", at());
    const CaptureFilter scan(path, slow.expression());
    std::int64_t lastDone = -1, total = 0;
    QVERIFY(scan.count([&](std::int64_t done, std::int64_t all) {
        lastDone = done;
        total = all;
        return true;
    }));
    QCOMPARE(total, std::int64_t(kEvents));
    QCOMPARE(lastDone, std::int64_t(kEvents));
    int calls = 0;
    QVERIFY(!scan.seqs([&](std::int64_t done, std::int64_t) { return ++calls < 2 || done == 0; }).has_value());
    QVERIFY(!CaptureFilter(path, FilterExpression::parse("seq > 5", at()).expression()).count([](auto, auto) { return false; }));
}

QTEST_GUILESS_MAIN(TestFilter)
#include "tst_filter.moc"
