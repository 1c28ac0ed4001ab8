// Source formats, the canonical event, timestamps and the line reader.
#include <QElapsedTimer>
#include <QTemporaryDir>
#include <QtTest>

#include <zlib.h>

#include "event/event.h"
#include "format/decoder.h"
#include "input/line_reader.h"

using namespace pipescope;

namespace {

QString qs(std::string_view s) { return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size())); }
QByteArray bytes(std::string_view s) { return QByteArray(s.data(), static_cast<qsizetype>(s.size())); }

// A line as LineReader hands it over: readable for SIMDJSON_PADDING bytes past its end, so the
// decoder parses it (and its elements) in place.
struct PaddedLine {
    explicit PaddedLine(const QByteArray& line) : text(line.constData(), static_cast<std::size_t>(line.size())) {
        text.reserve(text.size() + simdjson::SIMDJSON_PADDING);
    }
    std::string_view view() const { return text; }
    std::string text;
};

// Every element's raw bytes, decoded, rejected or unparseable, by index.
QMap<int, QByteArray> rawByIndex(const DecodedLine& decoded) {
    QMap<int, QByteArray> raw;
    for (const Event& event : decoded.events) raw[event.origin.index] = QByteArray::fromStdString(event.rawBytes());
    for (const RejectedEvent& rejected : decoded.rejected)
        raw[rejected.origin.index] = QByteArray::fromStdString(rejected.rawBytes());
    for (const UnparseableElement& element : decoded.unparseable) raw[element.origin.index] = bytes(element.raw);
    return raw;
}

void writeFile(const QString& path, const QByteArray& bytes) {
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    QCOMPARE(file.write(bytes), bytes.size());
}

void writeGzip(const QString& path, const QByteArray& bytes) {
    gzFile file = gzopen(path.toUtf8().constData(), "wb");
    QVERIFY(file != nullptr);
    QCOMPARE(gzwrite(file, bytes.constData(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    QCOMPARE(gzclose(file), Z_OK);
}

} // namespace

class TestFormat : public QObject {
    Q_OBJECT

private slots:
    void singleEvent_data();
    void singleEvent();
    void batches_data();
    void batches();
    void rejected_data();
    void rejected();
    void unparseable_data();
    void unparseable();
    void forcedFormat();
    void numericDistinctId();
    void rawBytes();
    void personPropertiesFolded_data();
    void personPropertiesFolded();
    void segmentFields_data();
    void segmentFields();
    void historicalMigration_data();
    void historicalMigration();
    void bigIntegers_data();
    void bigIntegers();
    void salvagedElements_data();
    void salvagedElements();
    void brokenStructure_data();
    void brokenStructure();
    void duplicateBatch_data();
    void duplicateBatch();
    void exactElementBytes_data();
    void exactElementBytes();
    void largeBatchSalvage();
    void streamOfLibrary_data();
    void streamOfLibrary();
    void timestamps_data();
    void timestamps();
    void lineReaderPlainAndGzip();
    void lineReaderOversize();
    void lineReaderTruncatedGzip();
    void lineReaderMissingFile();
};

void TestFormat::singleEvent_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QString>("format");
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("distinctId");
    QTest::addColumn<QString>("anonymousId");
    QTest::addColumn<QString>("userId");
    QTest::addColumn<QString>("id");
    QTest::addColumn<QString>("idSource");
    QTest::addColumn<QString>("stream");
    QTest::addColumn<QString>("firstPropertyKey");

    QTest::newRow("posthog-js (distinct_id in properties)")
        << QByteArray(R"({"event":"$pageview","uuid":"0190a1b2-0000-7000-8000-000000000001",)"
                      R"("properties":{"distinct_id":"anon-1","$lib":"web","$current_url":"https://x"},)"
                      R"("timestamp":"2024-05-01T12:00:00.000Z"})")
        << "posthog" << "$pageview" << "anon-1" << "" << "" << "0190a1b2-0000-7000-8000-000000000001"
        << "posthog_uuid" << "client" << "distinct_id";
    QTest::newRow("posthog-node (top-level distinct_id)")
        << QByteArray(R"({"event":"order_placed","distinct_id":"user-9","properties":{"$lib":"posthog-node","total":3}})")
        << "posthog" << "order_placed" << "user-9" << "" << "" << "" << "none" << "server" << "$lib";
    QTest::newRow("posthog $identify carries the anonymous id")
        << QByteArray(R"({"event":"$identify","distinct_id":"user-9","properties":{"$anon_distinct_id":"anon-1","$lib":"web"}})")
        << "posthog" << "$identify" << "user-9" << "anon-1" << "user-9" << "" << "none" << "client"
        << "$anon_distinct_id";
    QTest::newRow("posthog-node identify with its \"type\" field is still PostHog")
        << QByteArray(R"({"distinct_id":"user-9","event":"$identify","type":"identify","library":"posthog-node",)"
                      R"("properties":{"$set":{"plan":"pro"},"$lib":"posthog-node"}})")
        << "posthog" << "$identify" << "user-9" << "" << "user-9" << "" << "none" << "server" << "$set";
    QTest::newRow("posthog $is_server wins over $lib")
        << QByteArray(R"({"event":"e","distinct_id":"u","properties":{"$lib":"web","$is_server":true}})")
        << "posthog" << "e" << "u" << "" << "" << "" << "none" << "server" << "$lib";
    QTest::newRow("posthog without properties") << QByteArray(R"({"event":"e","distinct_id":"u"})") << "posthog"
                                                << "e" << "u" << "" << "" << "" << "none" << "unknown" << "";
    QTest::newRow("posthog empty distinct id is kept (identity flags it)")
        << QByteArray(R"({"event":"e","distinct_id":""})") << "posthog" << "e" << "" << "" << "" << ""
        << "none" << "unknown" << "";
    QTest::newRow("segment track from analytics-node")
        << QByteArray(R"({"type":"track","event":"Order Completed","userId":"u1","anonymousId":"a1",)"
                      R"("messageId":"m-1","properties":{"revenue":10},)"
                      R"("context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}}})")
        << "segment" << "Order Completed" << "u1" << "a1" << "u1" << "m-1" << "segment_message_id" << "server"
        << "revenue";
    QTest::newRow("segment page -> $pageview, anonymous only")
        << QByteArray(R"({"type":"page","anonymousId":"a1","properties":{"path":"/"},"context":{"library":{"name":"analytics.js"}}})")
        << "segment" << "$pageview" << "a1" << "a1" << "" << "" << "none" << "client" << "path";
    QTest::newRow("segment identify -> $identify, traits are the properties")
        << QByteArray(R"({"type":"identify","userId":"u1","anonymousId":"a1","traits":{"email":"x@y.z"}})")
        << "segment" << "$identify" << "u1" << "a1" << "u1" << "" << "none" << "unknown" << "email";
    QTest::newRow("segment alias -> $create_alias")
        << QByteArray(R"({"type":"alias","userId":"u2","previousId":"u1"})") << "segment" << "$create_alias" << "u2"
        << "" << "u2" << "" << "none" << "unknown" << "";
    QTest::newRow("segment screen") << QByteArray(R"({"type":"screen","userId":"u","name":"Home"})") << "segment"
                                    << "$screen" << "u" << "" << "u" << "" << "none" << "unknown" << "name";
    QTest::newRow("segment group") << QByteArray(R"({"type":"group","userId":"u","groupId":"g","traits":{"plan":"pro"}})")
                                   << "segment" << "$groupidentify" << "u" << "" << "u" << "" << "none" << "unknown"
                                   << "plan";
    QTest::newRow("canonical")
        << QByteArray(R"({"name":"signup","distinct_id":"u","id":"k-1","id_source":"idempotency_key","stream":"server","properties":{"plan":"pro"}})")
        << "canonical" << "signup" << "u" << "" << "" << "k-1" << "idempotency_key" << "server" << "plan";
}

void TestFormat::singleEvent() {
    QFETCH(QByteArray, line);
    QFETCH(QString, format);
    QFETCH(QString, name);
    QFETCH(QString, distinctId);
    QFETCH(QString, anonymousId);
    QFETCH(QString, userId);
    QFETCH(QString, id);
    QFETCH(QString, idSource);
    QFETCH(QString, stream);
    QFETCH(QString, firstPropertyKey);

    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"in.ndjson", 7, -1}, false);
    QVERIFY2(decoded.parsed, decoded.parseError.c_str());
    QCOMPARE(decoded.rejected.size(), std::size_t(0));
    QCOMPARE(decoded.events.size(), std::size_t(1));
    const Event& event = decoded.events.front();
    QCOMPARE(qs(toString(event.format)), format);
    QCOMPARE(qs(event.name), name);
    QCOMPARE(qs(event.distinctId), distinctId);
    QCOMPARE(qs(event.anonymousId), anonymousId);
    QCOMPARE(qs(event.userId), userId);
    QCOMPARE(qs(event.id), id);
    QCOMPARE(qs(toString(event.idSource)), idSource);
    QCOMPARE(qs(toString(event.stream)), stream);
    QCOMPARE(event.origin.line, std::uint64_t(7));
    QCOMPARE(event.origin.index, -1);
    QVERIFY(event.properties.is_object());
    QString firstKey;
    const simdjson::dom::object properties = event.properties.get_object().value_unsafe();
    for (auto field : properties) {
        firstKey = qs(field.key);
        break;
    }
    QCOMPARE(firstKey, firstPropertyKey);
    QCOMPARE(QByteArray::fromStdString(event.rawBytes()), line);
}

void TestFormat::batches_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QStringList>("names");
    QTest::addColumn<QList<int>>("indexes");
    QTest::addColumn<QList<int>>("rejectedIndexes");
    QTest::addColumn<qlonglong>("sentAt");

    QTest::newRow("posthog /batch envelope")
        << QByteArray(R"({"api_key":"phc_x","sent_at":"2024-05-01T12:00:01Z","batch":[)"
                      R"({"event":"a","distinct_id":"u","properties":{"$lib":"posthog-node"}},)"
                      R"({"event":"b","distinct_id":"u","properties":{}}]})")
        << QStringList{"a", "b"} << QList<int>{0, 1} << QList<int>{} << qlonglong(1714564801000);
    QTest::newRow("segment batch with a message without ids")
        << QByteArray(R"({"batch":[{"type":"track","event":"x","userId":"u"},{"type":"track","event":"y"},)"
                      R"({"type":"identify","anonymousId":"a"}],"sentAt":"2024-05-01T12:00:01.500Z"})")
        << QStringList{"x", "$identify"} << QList<int>{0, 2} << QList<int>{1} << qlonglong(1714564801500);
    QTest::newRow("bare array (posthog-js /e)")
        << QByteArray(R"([{"event":"a","properties":{"distinct_id":"u"}},42,{"event":"c","properties":{"distinct_id":"u"}}])")
        << QStringList{"a", "c"} << QList<int>{0, 2} << QList<int>{1} << qlonglong(-1);
    QTest::newRow("mixed formats inside one batch")
        << QByteArray(R"({"batch":[{"type":"page","anonymousId":"a"},{"event":"ph","distinct_id":"u"}]})")
        << QStringList{"$pageview", "ph"} << QList<int>{0, 1} << QList<int>{} << qlonglong(-1);
}

void TestFormat::batches() {
    QFETCH(QByteArray, line);
    QFETCH(QStringList, names);
    QFETCH(QList<int>, indexes);
    QFETCH(QList<int>, rejectedIndexes);
    QFETCH(qlonglong, sentAt);

    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"b", 3, -1}, false);
    QVERIFY(decoded.parsed);
    QCOMPARE(decoded.eventCount(), std::size_t(names.size() + rejectedIndexes.size()));
    QStringList gotNames;
    QList<int> gotIndexes;
    for (const Event& event : decoded.events) {
        gotNames << qs(event.name);
        gotIndexes << event.origin.index;
        QCOMPARE(event.origin.line, std::uint64_t(3));
        QVERIFY(event.rawLine.empty());
        if (sentAt >= 0) QCOMPARE(qlonglong(event.sentAt.value_or(-1)), sentAt);
    }
    QCOMPARE(gotNames, names);
    QCOMPARE(gotIndexes, indexes);
    QList<int> gotRejected;
    for (const RejectedEvent& rejected : decoded.rejected) gotRejected << rejected.origin.index;
    QCOMPARE(gotRejected, rejectedIndexes);
}

void TestFormat::rejected_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QString>("messagePart");
    QTest::newRow("posthog without distinct id")
        << QByteArray(R"({"event":"e","properties":{"$lib":"web"}})") << "no distinct id";
    // PostHog's capture stringifies any non-null distinct id (an object is '{"a":1}'); null is absent.
    QTest::newRow("posthog distinct id is null")
        << QByteArray(R"({"event":"e","distinct_id":null})") << "no distinct id";
    QTest::newRow("posthog empty event name") << QByteArray(R"({"event":"","distinct_id":"u"})") << "no event name";
    QTest::newRow("posthog event name not a string") << QByteArray(R"({"event":5,"distinct_id":"u"})") << "no event name";
    QTest::newRow("segment without ids") << QByteArray(R"({"type":"track","event":"x"})") << "neither \"userId\" nor \"anonymousId\"";
    QTest::newRow("segment track without event") << QByteArray(R"({"type":"track","userId":"u"})") << "without \"event\"";
    QTest::newRow("unknown segment type") << QByteArray(R"({"type":"purchase","userId":"u"})") << "unknown Segment message type";
    QTest::newRow("nothing recognisable") << QByteArray(R"({"foo":1})") << "no event name";
    QTest::newRow("a number") << QByteArray("42") << "not a JSON object";
    QTest::newRow("a string") << QByteArray(R"("hello")") << "not a JSON object";
    QTest::newRow("properties not an object") << QByteArray(R"({"event":"e","distinct_id":"u","properties":[1]})")
                                              << "\"properties\" is not an object";
    QTest::newRow("batch not an array") << QByteArray(R"({"batch":{"event":"e"}})") << "\"batch\" is not an array";
    QTest::newRow("empty batch") << QByteArray(R"({"batch":[]})") << "empty batch";
}

void TestFormat::rejected() {
    QFETCH(QByteArray, line);
    QFETCH(QString, messagePart);
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"r", 1, -1}, false);
    QVERIFY(decoded.parsed);
    QCOMPARE(decoded.events.size(), std::size_t(0));
    QCOMPARE(decoded.rejected.size(), std::size_t(1));
    QVERIFY2(qs(decoded.rejected.front().message).contains(messagePart), decoded.rejected.front().message.c_str());
    QCOMPARE(QByteArray::fromStdString(decoded.rejected.front().rawBytes()), line);
}

void TestFormat::unparseable_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<qlonglong>("offset");
    QTest::addColumn<QString>("messagePart");
    QTest::newRow("truncated object") << QByteArray(R"({"event":"e","distinct_id":"u")") << qlonglong(30) << "unexpected end of input";
    QTest::newRow("bad literal") << QByteArray(R"({"event":tru})") << qlonglong(12) << "invalid literal";
    QTest::newRow("invalid UTF-8") << QByteArray("{\"event\":\"\xff\xfe\",\"distinct_id\":\"u\"}") << qlonglong(10) << "UTF-8";
    QTest::newRow("trailing garbage") << QByteArray(R"({"event":"e"} x)") << qlonglong(14) << "parse error";
    const QByteArray deep = QByteArray(5000, '[') + QByteArray(5000, ']');
    QTest::newRow("nested too deep") << deep << qlonglong(-1) << "nested deeper than";
}

void TestFormat::unparseable() {
    QFETCH(QByteArray, line);
    QFETCH(qlonglong, offset);
    QFETCH(QString, messagePart);
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"u", 1, -1}, false);
    QVERIFY(!decoded.parsed);
    QCOMPARE(decoded.eventCount(), std::size_t(0));
    QVERIFY2(qs(decoded.parseError).contains(messagePart), decoded.parseError.c_str());
    if (offset >= 0)
        QCOMPARE(qlonglong(decoded.errorOffset), offset);
    else
        QCOMPARE(decoded.errorOffset, std::string::npos);
    // The decoder recovers for the next line.
    const QByteArray good = R"({"event":"e","distinct_id":"u"})";
    QCOMPARE(decoder.decode(std::string_view(good.constData(), good.size()), {"u", 2, -1}, false).events.size(),
             std::size_t(1));
}

void TestFormat::forcedFormat() {
    const QByteArray segment = R"({"type":"track","event":"x","userId":"u"})";
    EventDecoder asPostHog(Format::PostHog);
    const DecodedLine& decoded =
        asPostHog.decode(std::string_view(segment.constData(), segment.size()), {"f", 1, -1}, false);
    // As PostHog, a Segment message has an event name but no distinct_id.
    QCOMPARE(decoded.events.size(), std::size_t(0));
    QCOMPARE(decoded.rejected.size(), std::size_t(1));
    EventDecoder asSegment(Format::Segment);
    QCOMPARE(asSegment.decode(std::string_view(segment.constData(), segment.size()), {"f", 1, -1}, false).events.size(),
             std::size_t(1));
}

void TestFormat::numericDistinctId() {
    const QByteArray line = R"({"batch":[{"event":"a","distinct_id":12345},{"type":"track","event":"b","userId":1.5}]})";
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"n", 1, -1}, false);
    QCOMPARE(decoded.events.size(), std::size_t(2));
    QCOMPARE(qs(decoded.events[0].distinctId), QString("12345"));
    QCOMPARE(qs(decoded.events[1].distinctId), QString("1.5"));
}

void TestFormat::rawBytes() {
    // A batch element's raw is its exact bytes, whitespace included (it used to be minified).
    const QByteArray line = R"({ "batch" : [ { "event" : "a" , "distinct_id" : "u" } ] })";
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"r", 1, -1}, false);
    QCOMPARE(decoded.events.size(), std::size_t(1));
    QCOMPARE(QByteArray::fromStdString(decoded.events[0].rawBytes()),
             QByteArray(R"({ "event" : "a" , "distinct_id" : "u" })"));
}

// posthog-js sends $set / $set_once beside "properties"; PostHog's ingestion folds them in
// (nodejs/src/utils/event.ts), the top-level value winning per key. The raw bytes stay as sent.
void TestFormat::personPropertiesFolded_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QStringList>("properties"); // of each event, minified

    QTest::newRow("posthog-js identify: top-level $set and $set_once")
        << QByteArray(R"({"event":"$identify","properties":{"distinct_id":"u1","$anon_distinct_id":"a1"},)"
                      R"("$set":{"email":"ada@example.com"},"$set_once":{"first_seen":"2024-05-01"}})")
        << QStringList{R"({"distinct_id":"u1","$anon_distinct_id":"a1","$set":{"email":"ada@example.com"},)"
                       R"("$set_once":{"first_seen":"2024-05-01"}})"};
    QTest::newRow("both: top-level wins per key, keys keep their place")
        << QByteArray(R"({"event":"$set","distinct_id":"u1","properties":{"$set":{"email":"old","plan":"free"},)"
                      R"("x":1},"$set":{"name":"Ada","email":"new"}})")
        << QStringList{R"({"$set":{"email":"new","plan":"free","name":"Ada"},"x":1})"};
    QTest::newRow("posthog-node: in properties only, untouched")
        << QByteArray(R"({"event":"$identify","distinct_id":"u1","properties":{"$set":{"email":"a@b.c"}}})")
        << QStringList{R"({"$set":{"email":"a@b.c"}})"};
    QTest::newRow("top-level $unset is not folded, as PostHog reads it from properties only")
        << QByteArray(R"({"event":"$set","distinct_id":"u1","properties":{"a":1},"$unset":["plan"]})")
        << QStringList{R"({"a":1})"};
    QTest::newRow("not an object: not folded")
        << QByteArray(R"({"event":"$set","distinct_id":"u1","properties":{"a":1},"$set":null,"$set_once":"x"})")
        << QStringList{R"({"a":1})"};
    QTest::newRow("empty top-level $set still creates one")
        << QByteArray(R"({"event":"$pageview","distinct_id":"u1","$set":{}})") << QStringList{R"({"$set":{}})"};
    QTest::newRow("properties' $set not an object: replaced")
        << QByteArray(R"({"event":"$set","distinct_id":"u1","properties":{"$set":"x"},"$set":{"a":"b"}})")
        << QStringList{R"({"$set":{"a":"b"}})"};
    QTest::newRow("escaped keys and nested values")
        << QByteArray(R"({"event":"$set","distinct_id":"u1","$set":{"a\"b\u0001":{"n":[1,2]}}})")
        << QStringList{R"({"$set":{"a\"b\u0001":{"n":[1,2]}}})"};
    QTest::newRow("a /e array: every event keeps its own folded properties")
        << QByteArray(R"([{"event":"a","properties":{"distinct_id":"u1"},"$set":{"k":1}},)"
                      R"({"event":"b","properties":{"distinct_id":"u2"},"$set_once":{"k":2}}])")
        << QStringList{R"({"distinct_id":"u1","$set":{"k":1}})", R"({"distinct_id":"u2","$set_once":{"k":2}})"};
}

void TestFormat::personPropertiesFolded() {
    QFETCH(QByteArray, line);
    QFETCH(QStringList, properties);

    EventDecoder decoder;
    const PaddedLine padded(line);
    const DecodedLine& decoded = decoder.decode(padded.view(), {"f", 1, -1});
    QCOMPARE(decoded.events.size(), std::size_t(properties.size()));
    for (qsizetype i = 0; i < properties.size(); ++i) {
        const Event& event = decoded.events[static_cast<std::size_t>(i)];
        QCOMPARE(qs(simdjson::minify(event.properties)), properties[i]);
        QVERIFY(event.properties.is_object());
    }
    if (decoded.events.size() == 1) QCOMPARE(QByteArray::fromStdString(decoded.events[0].rawBytes()), line);
}

void TestFormat::segmentFields_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QString>("properties");

    QTest::newRow("page name and category into properties")
        << QByteArray(R"({"type":"page","anonymousId":"a","name":"Pricing","category":"Docs","properties":{"url":"u"}})")
        << R"({"url":"u","name":"Pricing","category":"Docs"})";
    QTest::newRow("analytics.js page already has them: untouched")
        << QByteArray(R"({"type":"page","anonymousId":"a","name":"Pricing","properties":{"name":"Pricing","path":"/p"}})")
        << R"({"name":"Pricing","path":"/p"})";
    QTest::newRow("top-level name wins, in its place")
        << QByteArray(R"({"type":"page","anonymousId":"a","name":"New","properties":{"name":"Old","x":1}})")
        << R"({"name":"New","x":1})";
    QTest::newRow("page without properties")
        << QByteArray(R"({"type":"page","anonymousId":"a","name":"Home"})") << R"({"name":"Home"})";
    QTest::newRow("screen name")
        << QByteArray(R"({"type":"screen","userId":"u","name":"Settings","properties":{"tab":2}})")
        << R"({"tab":2,"name":"Settings"})";
    QTest::newRow("a non-string name is left out")
        << QByteArray(R"({"type":"page","anonymousId":"a","name":7,"properties":{}})") << R"({})";
    QTest::newRow("group: traits, and groupId as $group_key")
        << QByteArray(R"({"type":"group","userId":"u","groupId":"acme","traits":{"name":"Acme","plan":"pro"}})")
        << R"({"name":"Acme","plan":"pro","$group_key":"acme"})";
    QTest::newRow("group: numeric groupId keeps its type")
        << QByteArray(R"({"type":"group","userId":"u","groupId":42})") << R"({"$group_key":42})";
    QTest::newRow("track name is not a page name")
        << QByteArray(R"({"type":"track","event":"e","userId":"u","name":"x","properties":{}})") << R"({})";
}

void TestFormat::segmentFields() {
    QFETCH(QByteArray, line);
    QFETCH(QString, properties);
    EventDecoder decoder;
    const PaddedLine padded(line);
    const DecodedLine& decoded = decoder.decode(padded.view(), {"s", 1, -1});
    QCOMPARE(decoded.events.size(), std::size_t(1));
    QCOMPARE(qs(simdjson::minify(decoded.events[0].properties)), properties);
    QCOMPARE(QByteArray::fromStdString(decoded.events[0].rawBytes()), line);
}

void TestFormat::historicalMigration_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QList<bool>>("flags");

    // posthog-node with historicalMigration: true puts the flag on the /batch body.
    QTest::newRow("posthog-node /batch body")
        << QByteArray(R"({"api_key":"phc","historical_migration":true,"batch":[{"event":"a","distinct_id":"u"},)"
                      R"({"event":"b","distinct_id":"u"}],"sent_at":"2024-05-01T12:00:00Z"})")
        << QList<bool>{true, true};
    QTest::newRow("no flag") << QByteArray(R"({"api_key":"phc","batch":[{"event":"a","distinct_id":"u"}]})")
                             << QList<bool>{false};
    QTest::newRow("false") << QByteArray(R"({"historical_migration":false,"batch":[{"event":"a","distinct_id":"u"}]})")
                           << QList<bool>{false};
    QTest::newRow("a single-event body")
        << QByteArray(R"({"event":"a","distinct_id":"u","historical_migration":true})") << QList<bool>{true};
    QTest::newRow("an element's own flag outranks the body's")
        << QByteArray(R"({"historical_migration":true,"batch":[{"event":"a","distinct_id":"u","historical_migration":false},)"
                      R"({"event":"b","distinct_id":"u"}]})")
        << QList<bool>{false, true};
    QTest::newRow("not a boolean") << QByteArray(R"({"historical_migration":"true","batch":[{"event":"a","distinct_id":"u"}]})")
                                   << QList<bool>{false};
    QTest::newRow("canonical event")
        << QByteArray(R"({"name":"a","distinct_id":"u","historical_migration":true})") << QList<bool>{true};
}

void TestFormat::historicalMigration() {
    QFETCH(QByteArray, line);
    QFETCH(QList<bool>, flags);
    EventDecoder decoder;
    const PaddedLine padded(line);
    const DecodedLine& decoded = decoder.decode(padded.view(), {"h", 1, -1});
    QCOMPARE(decoded.events.size(), std::size_t(flags.size()));
    for (qsizetype i = 0; i < flags.size(); ++i)
        QCOMPARE(decoded.events[static_cast<std::size_t>(i)].historicalMigration, flags[i]);
    // The flag is the body's, not a property.
    for (const Event& event : decoded.events)
        QCOMPARE(qs(simdjson::minify(event.properties)).contains("historical_migration"), false);
}

void TestFormat::bigIntegers_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<int>("events");
    QTest::addColumn<int>("checked");      // position in decoded.events of the event checked below
    QTest::addColumn<QByteArray>("raw");   // its raw bytes
    QTest::addColumn<QString>("property"); // a property that holds a big integer ("" for none)
    QTest::addColumn<double>("value");     // read as the nearest double, as JSON.parse reads it
    QTest::addColumn<QString>("distinctId");

    const QByteArray single = R"({"event":"e","distinct_id":"u","properties":{"n":123456789012345678901234567890}})";
    QTest::newRow("single event") << single << 1 << 0 << single << "n" << 1.2345678901234568e29 << "u";
    const QByteArray element = R"({"event":"a","distinct_id":"u","properties":{"n":123456789012345678901234567890}})";
    QTest::newRow("array element") << QByteArray("[" + element + R"(,{"event":"b","distinct_id":"u"}])") << 2 << 0
                                   << element << "n" << 1.2345678901234568e29 << "u";
    const QByteArray negative = R"({"event":"a","distinct_id":"u","properties":{"n":-98765432109876543210}})";
    QTest::newRow("envelope element, negative")
        << QByteArray(R"({"api_key":"phc","batch":[{"event":"b","distinct_id":"u"}, )" + negative + "]}") << 2 << 1
        << negative << "n" << -9.876543210987654e19 << "u";
    const QByteArray justAbove = R"({"event":"e","distinct_id":"u","properties":{"n":18446744073709551616}})";
    QTest::newRow("uint64 max + 1") << justAbove << 1 << 0 << justAbove << "n" << 18446744073709551616.0 << "u";
    const QByteArray id = R"({"event":"e","distinct_id":123456789012345678901234567890})";
    // capture (serde_json) reads it as an f64 and writes it with ryu: no "+" in the exponent.
    QTest::newRow("big integer distinct id, as PostHog's capture stringifies it")
        << id << 1 << 0 << id << "" << 0.0 << "1.2345678901234568e29";
    const QByteArray inString = R"({"event":"123456789012345678901234567890","distinct_id":"u","n":1e99999999999999999999})";
    QTest::newRow("digits in a string are left alone; 1e... is no integer, and out of range")
        << inString << 0 << -1 << QByteArray() << "" << 0.0 << "";
}

void TestFormat::bigIntegers() {
    QFETCH(QByteArray, line);
    QFETCH(int, events);
    QFETCH(int, checked);
    QFETCH(QByteArray, raw);
    QFETCH(QString, property);
    QFETCH(double, value);
    QFETCH(QString, distinctId);

    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"big", 1, -1}, false);
    if (events == 0) {
        QVERIFY(!decoded.parsed);
        QVERIFY2(qs(decoded.parseError).contains("number overflow"), decoded.parseError.c_str());
        return;
    }
    QVERIFY2(decoded.parsed, decoded.parseError.c_str());
    QCOMPARE(decoded.events.size(), std::size_t(events));
    QCOMPARE(decoded.rejected.size(), std::size_t(0));
    const Event& event = decoded.events[static_cast<std::size_t>(checked)];
    QCOMPARE(QByteArray::fromStdString(event.rawBytes()), raw);
    QCOMPARE(qs(event.distinctId), distinctId);
    if (!property.isEmpty()) {
        const QByteArray key = property.toUtf8();
        simdjson::dom::element number;
        QCOMPARE(event.properties.at_key(std::string_view(key.constData(), key.size())).get(number),
                 simdjson::SUCCESS);
        QVERIFY(number.is_double());
        QCOMPARE(number.get_double().value(), value);
    }
}

void TestFormat::salvagedElements_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QList<int>>("decoded");     // indexes of the decoded events
    QTest::addColumn<QList<int>>("rejected");    // indexes of the rejected elements
    QTest::addColumn<QList<int>>("unparseable"); // indexes of the unparseable elements
    QTest::addColumn<QByteArray>("badRaw");      // the first unparseable element's exact bytes
    QTest::addColumn<QString>("messagePart");
    QTest::addColumn<qlonglong>("offset"); // of the error in badRaw; -1: none; -2: not checked
    QTest::addColumn<qlonglong>("sentAt"); // of the decoded events, -1 when none

    const QByteArray a = R"({"event":"a","distinct_id":"u"})";
    const QByteArray c = R"({"event":"c","distinct_id":"u"})";
    const QByteArray overflow = R"({"event":"b","distinct_id":"u","properties":{"n":1e400}})";
    QTest::newRow("1e400 in one of three (array)")
        << QByteArray("[" + a + "," + overflow + "," + c + "]") << QList<int>{0, 2} << QList<int>{} << QList<int>{1}
        << overflow << "number overflow" << qlonglong(-2) << qlonglong(-1);
    const QByteArray utf8 = "{\"event\":\"b\xff\xfe\",\"distinct_id\":\"u\"}";
    QTest::newRow("invalid UTF-8 in one of three (envelope, sent_at still applies)")
        << QByteArray(R"({"api_key":"phc_x","sent_at":"2024-05-01T12:00:01Z","batch":[)" + a + ", " + utf8 + " ,\n" +
                      c + "]}")
        << QList<int>{0, 2} << QList<int>{} << QList<int>{1} << utf8 << "UTF-8" << qlonglong(11)
        << qlonglong(1714564801000);
    const QByteArray syntax = R"({"event":tru,"distinct_id":"u"})";
    QTest::newRow("syntax error inside one element")
        << QByteArray("[" + a + "," + syntax + "," + c + "]") << QList<int>{0, 2} << QList<int>{} << QList<int>{1}
        << syntax << "invalid literal" << qlonglong(-2) << qlonglong(-1);
    const QByteArray missingColon = R"({"type":"track" "event":"x","userId":"u"})";
    QTest::newRow("segment batch: a bad first element, a rejected one, sentAt")
        << QByteArray(R"({"batch":[)" + missingColon +
                      R"(,{"type":"track","event":"y","userId":"u"},{"type":"track","event":"z"}],"sentAt":"2024-05-01T12:00:01.500Z"})")
        << QList<int>{1} << QList<int>{2} << QList<int>{0} << missingColon << "syntax error" << qlonglong(-2)
        << qlonglong(1714564801500);
    const QByteArray bigAndBad = R"({"event":"b","distinct_id":123456789012345678901234567890,"x":"\uZZZZ"})";
    QTest::newRow("a big integer beside a bad escape; a big integer elsewhere is accepted")
        << QByteArray(R"([{"event":"a","distinct_id":"u","properties":{"n":99999999999999999999}},)" + bigAndBad + "]")
        << QList<int>{0} << QList<int>{} << QList<int>{1} << bigAndBad << "invalid string" << qlonglong(-2)
        << qlonglong(-1);
    const QByteArray junk = R"({"event":"b"} x)";
    QTest::newRow("junk after an element is the element's")
        << QByteArray("[" + a + ",  " + junk + "  ]") << QList<int>{0} << QList<int>{} << QList<int>{1} << junk
        << "syntax error" << qlonglong(-2) << qlonglong(-1);
    const QByteArray only = "{\"event\":\"\xff\"}";
    QTest::newRow("the only element is bad: no 'empty array' rejection")
        << QByteArray("[" + only + "]") << QList<int>{} << QList<int>{} << QList<int>{0} << only << "UTF-8"
        << qlonglong(10) << qlonglong(-1);
    QTest::newRow("two bad elements, a good one between")
        << QByteArray("[" + overflow + "," + a + "," + only + "]") << QList<int>{1} << QList<int>{} << QList<int>{0, 2}
        << overflow << "number overflow" << qlonglong(-2) << qlonglong(-1);
}

void TestFormat::salvagedElements() {
    QFETCH(QByteArray, line);
    QFETCH(QList<int>, decoded);
    QFETCH(QList<int>, rejected);
    QFETCH(QList<int>, unparseable);
    QFETCH(QByteArray, badRaw);
    QFETCH(QString, messagePart);
    QFETCH(qlonglong, offset);
    QFETCH(qlonglong, sentAt);

    const PaddedLine padded(line);
    for (const bool inPlace : {false, true}) {
        EventDecoder decoder;
        const DecodedLine& result =
            inPlace ? decoder.decode(padded.view(), {"s", 4, -1}, true)
                    : decoder.decode(std::string_view(line.constData(), line.size()), {"s", 4, -1}, false);
        QVERIFY2(result.parsed, result.parseError.c_str());
        QList<int> gotDecoded, gotRejected, gotUnparseable;
        for (const Event& event : result.events) {
            gotDecoded << event.origin.index;
            QCOMPARE(event.origin.line, std::uint64_t(4));
            if (sentAt >= 0) QCOMPARE(qlonglong(event.sentAt.value_or(-1)), sentAt);
        }
        for (const RejectedEvent& r : result.rejected) gotRejected << r.origin.index;
        for (const UnparseableElement& u : result.unparseable) {
            gotUnparseable << u.origin.index;
            QCOMPARE(u.origin.line, std::uint64_t(4));
            QVERIFY(!u.message.empty());
        }
        QCOMPARE(gotDecoded, decoded);
        QCOMPARE(gotRejected, rejected);
        QCOMPARE(gotUnparseable, unparseable);
        QCOMPARE(result.eventCount(), std::size_t(decoded.size() + rejected.size() + unparseable.size()));
        const UnparseableElement& bad = result.unparseable.front();
        QCOMPARE(bytes(bad.raw), badRaw);
        QVERIFY2(qs(bad.message).contains(messagePart, Qt::CaseInsensitive), bad.message.c_str());
        if (offset >= 0) QCOMPARE(qlonglong(bad.errorOffset), offset);
        if (offset == -1) QCOMPARE(bad.errorOffset, std::string::npos);
        if (offset == -2) QVERIFY(bad.errorOffset < bad.raw.size());
        // Every element keeps its exact bytes, good or bad.
        for (const QByteArray& raw : rawByIndex(result)) QVERIFY2(line.contains(raw), raw.constData());
    }
}

void TestFormat::brokenStructure_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QString>("messagePart");
    const QByteArray a = R"({"event":"a","distinct_id":"u"})";
    QTest::newRow("unbalanced") << QByteArray("[" + a + ",{\"event\":\"\xff\"") << "";
    QTest::newRow("unterminated string") << QByteArray("[" + a + ",{\"event\":\"\xff}]") << "";
    QTest::newRow("mismatched brackets") << QByteArray("[" + a + ",{\"a\":[1}, {\"event\":\"\xff\"}]") << "";
    QTest::newRow("an empty slot") << QByteArray("[" + a + ",,{\"event\":\"\xff\"}]") << "";
    QTest::newRow("a trailing comma") << QByteArray("[" + a + ",{\"event\":\"\xff\"},]") << "";
    QTest::newRow("bad bytes after the array") << QByteArray("[" + a + "] \xff") << "";
    QTest::newRow("bad UTF-8 outside the batch") << QByteArray("{\"api_key\":\"\xff\",\"batch\":[" + a + "]}")
                                                 << "UTF-8";
    QTest::newRow("number out of range outside the batch") << QByteArray(R"({"sent_at":1e400,"batch":[)" + a + "]}")
                                                           << "number overflow";
    QTest::newRow("bad member outside the batch") << QByteArray(R"({"sent_at" 1,"batch":[)" + a + "]}") << "";
    QTest::newRow("batch is not an array") << QByteArray("{\"batch\":{\"event\":\"\xff\"}}") << "UTF-8";
    QTest::newRow("an object without batch") << QByteArray("{\"event\":\"\xff\",\"distinct_id\":\"u\"}") << "UTF-8";
    QTest::newRow("not a container") << QByteArray("\"\xff\"") << "UTF-8";
}

void TestFormat::brokenStructure() {
    // When the body cannot be split into elements, it is one unparseable dead letter, as before.
    QFETCH(QByteArray, line);
    QFETCH(QString, messagePart);
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"x", 1, -1}, false);
    QVERIFY(!decoded.parsed);
    QCOMPARE(decoded.eventCount(), std::size_t(0));
    QVERIFY(decoded.unparseable.empty());
    QVERIFY(!decoded.parseError.empty());
    if (!messagePart.isEmpty()) QVERIFY2(qs(decoded.parseError).contains(messagePart), decoded.parseError.c_str());
}

void TestFormat::duplicateBatch_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QString>("messagePart");
    const QByteArray a = R"({"event":"a","distinct_id":"u"})";
    const QByteArray b = R"({"event":"b","distinct_id":"u"})";
    QTest::newRow("two arrays") << QByteArray(R"({"batch":[)" + a + R"(],"batch":[)" + b + "]}")
                                << "duplicate \"batch\" member at byte 43 (the first is at byte 1)";
    QTest::newRow("the second spelled with an escape")
        << QByteArray(R"({"sent_at":"2024-05-01T12:00:01Z","batch":[)" + a + R"(], "bat\u0063h":[)" + b + "]}")
        << "at byte 77 (the first is at byte 34)";
    QTest::newRow("the second not an array") << QByteArray(R"({"batch":[)" + a + R"(],"batch":5})") << "at byte 43";
    QTest::newRow("the first not an array") << QByteArray(R"({"batch":5,"batch":[)" + a + "]}") << "at byte 11";
    QTest::newRow("and a bad element") << QByteArray("{\"batch\":[{\"event\":\"\xff\"}],\"batch\":[" + b + "]}")
                                       << "at byte 25";
}

void TestFormat::duplicateBatch() {
    // PostHog's capture refuses duplicate fields: the whole body is one rejected dead letter, so
    // neither batch is dropped unseen.
    QFETCH(QByteArray, line);
    QFETCH(QString, messagePart);
    EventDecoder decoder;
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"d", 1, -1}, false);
    QVERIFY(decoded.parsed);
    QCOMPARE(decoded.events.size(), std::size_t(0));
    QCOMPARE(decoded.unparseable.size(), std::size_t(0));
    QCOMPARE(decoded.rejected.size(), std::size_t(1));
    const RejectedEvent& rejected = decoded.rejected.front();
    QVERIFY2(qs(rejected.message).contains(messagePart), rejected.message.c_str());
    QVERIFY2(qs(rejected.message).startsWith("duplicate \"batch\" member"), rejected.message.c_str());
    QCOMPARE(rejected.origin.index, -1);
    QCOMPARE(QByteArray::fromStdString(rejected.rawBytes()), line);
}

void TestFormat::exactElementBytes_data() {
    QTest::addColumn<QByteArray>("line");
    QTest::addColumn<QList<QByteArray>>("raw"); // by index: decoded, rejected and unparseable alike
    QTest::addColumn<int>("decoded");

    const QByteArray numbers = R"({"event":"a","distinct_id":"u","properties":{"z":-0,"h":1.0E2,"e":1e-0}})";
    const QByteArray spaced = "{ \"event\" :\t\"b\" ,\r\n \"distinct_id\":\"u\" }";
    const QByteArray rejected = R"({"event":"r","properties":{"z":-0.0}})";
    QTest::newRow("array: -0, 1.0E2, odd whitespace, a rejected element")
        << QByteArray("[ " + numbers + " ,\n\t" + spaced + "\t,\r\n" + rejected + "\n]")
        << QList<QByteArray>{numbers, spaced, rejected} << 2;
    QTest::newRow("posthog envelope")
        << QByteArray(R"({"api_key":"phc","batch" :  [)" + spaced + " , " + rejected + "," + numbers +
                      R"(  ] , "sent_at":"2024-05-01T12:00:01Z"})")
        << QList<QByteArray>{spaced, rejected, numbers} << 2;
    const QByteArray segment = R"({"type":"track","event":"x","userId":"u","properties":{"n":-0,"big":1.0E+2}})";
    QTest::newRow("segment batch, non-object elements rejected with their bytes")
        << QByteArray(R"({"batch":[ -0 , )" + segment + R"(, 1.0E2 ,"s"],"sentAt":"2024-05-01T12:00:01Z"})")
        << QList<QByteArray>{"-0", segment, "1.0E2", "\"s\""} << 1;
    const QByteArray tricky = R"({"event":"a\"],[{\\","distinct_id":"u,]}\"\\\"","properties":{"k]":"}{"}})";
    QTest::newRow("strings full of brackets, commas and escapes")
        << QByteArray("[" + tricky + "," + tricky + "]") << QList<QByteArray>{tricky, tricky} << 2;
    const QByteArray utf8 = "{\"event\":\"b\xff\",\"distinct_id\":\"u\", \"n\": -0}";
    QTest::newRow("salvaged: the good elements keep their bytes too")
        << QByteArray("{\"batch\": [ " + numbers + " ,\n" + utf8 + " , " + spaced + " ] }")
        << QList<QByteArray>{numbers, utf8, spaced} << 2;
    const QByteArray big = R"({"event":"a","distinct_id":"u","n":-123456789012345678901})";
    QTest::newRow("a big integer: raw is the original, not the widened copy")
        << QByteArray("[" + numbers + "," + big + "]") << QList<QByteArray>{numbers, big} << 2;
}

void TestFormat::exactElementBytes() {
    QFETCH(QByteArray, line);
    QFETCH(QList<QByteArray>, raw);
    QFETCH(int, decoded);
    const PaddedLine padded(line);
    EventDecoder decoder;
    for (const bool inPlace : {false, true}) {
        const DecodedLine& result =
            inPlace ? decoder.decode(padded.view(), {"x", 1, -1}, true)
                    : decoder.decode(std::string_view(line.constData(), line.size()), {"x", 1, -1}, false);
        QVERIFY2(result.parsed, result.parseError.c_str());
        QCOMPARE(result.events.size(), std::size_t(decoded));
        QCOMPARE(result.eventCount(), std::size_t(raw.size()));
        QCOMPARE(rawByIndex(result).values(), raw);
    }
}

void TestFormat::largeBatchSalvage() {
    // 10,000 elements, one of them bad: each element parsed alone, then one rebuilt document.
    constexpr int kElements = 10000;
    constexpr int kBad = 6789;
    QByteArray line = R"({"api_key":"phc","sent_at":"2024-05-01T12:00:01Z","batch":[)";
    for (int i = 0; i < kElements; ++i) {
        if (i > 0) line += ',';
        line += i == kBad ? QByteArray("{\"event\":\"bad\xff\",\"distinct_id\":\"u\"}")
                          : R"({"event":"e)" + QByteArray::number(i) + R"(","distinct_id":"u","properties":{"i":)" +
                                QByteArray::number(i) + "}}";
    }
    line += "]}";
    EventDecoder decoder;
    QElapsedTimer timer;
    timer.start();
    const DecodedLine& decoded = decoder.decode(std::string_view(line.constData(), line.size()), {"l", 1, -1}, false);
    const qint64 elapsedMs = timer.elapsed();
    QVERIFY(decoded.parsed);
    QCOMPARE(decoded.events.size(), std::size_t(kElements - 1));
    QCOMPARE(decoded.unparseable.size(), std::size_t(1));
    QCOMPARE(decoded.unparseable.front().origin.index, kBad);
    QCOMPARE(decoded.events[kBad].origin.index, kBad + 1);
    QCOMPARE(QByteArray::fromStdString(decoded.events[kBad].rawBytes()),
             QByteArray(R"({"event":"e6790","distinct_id":"u","properties":{"i":6790}})"));
    QCOMPARE(qlonglong(decoded.events.back().sentAt.value_or(-1)), qlonglong(1714564801000));
    // Generous, for a shared machine: it takes a few milliseconds in an optimised build.
    QVERIFY2(elapsedMs < 2000, qPrintable(QString::number(elapsedMs) + " ms"));
}

void TestFormat::streamOfLibrary_data() {
    QTest::addColumn<QString>("library");
    QTest::addColumn<QString>("stream");
    for (const char* lib : {"web", "posthog-js", "posthog-ios", "posthog-android", "posthog-react-native",
                            "analytics.js", "analytics-next", "analytics-ios"})
        QTest::newRow(lib) << lib << "client";
    for (const char* lib : {"posthog-node", "posthog-python", "posthog-go", "posthog-ruby", "posthog-php",
                            "posthog-java", "@segment/analytics-node", "analytics-python", "analytics-go"})
        QTest::newRow(lib) << lib << "server";
    QTest::newRow("unknown library") << "my-sdk" << "unknown";
    QTest::newRow("empty") << "" << "unknown";
}

void TestFormat::streamOfLibrary() {
    QFETCH(QString, library);
    QFETCH(QString, stream);
    const QByteArray lib = library.toUtf8();
    QCOMPARE(qs(toString(pipescope::streamOfLibrary(std::string_view(lib.constData(), lib.size())))), stream);
}

void TestFormat::timestamps_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<qlonglong>("millis"); // -1: not a time
    QTest::newRow("utc") << "2024-05-01T12:00:00Z" << qlonglong(1714564800000);
    QTest::newRow("millis") << "2024-05-01T12:00:00.123Z" << qlonglong(1714564800123);
    QTest::newRow("micros truncated") << "2024-05-01T12:00:00.123456Z" << qlonglong(1714564800123);
    QTest::newRow("offset") << "2024-05-01T14:00:00+02:00" << qlonglong(1714564800000);
    QTest::newRow("negative offset no colon") << "2024-05-01T07:00:00-0500" << qlonglong(1714564800000);
    QTest::newRow("no zone is utc") << "2024-05-01T12:00:00" << qlonglong(1714564800000);
    QTest::newRow("date only") << "2024-05-01" << qlonglong(1714521600000);
    QTest::newRow("epoch") << "1970-01-01T00:00:00Z" << qlonglong(0);
    QTest::newRow("leap day") << "2024-02-29T00:00:00Z" << qlonglong(1709164800000);
    QTest::newRow("epoch ms text") << "1714564800123" << qlonglong(1714564800123);
    QTest::newRow("not a leap day") << "2023-02-29T00:00:00Z" << qlonglong(-1);
    QTest::newRow("month 13") << "2024-13-01T00:00:00Z" << qlonglong(-1);
    QTest::newRow("garbage") << "yesterday" << qlonglong(-1);
    QTest::newRow("trailing junk") << "2024-05-01T12:00:00Zjunk" << qlonglong(-1);
    QTest::newRow("empty") << "" << qlonglong(-1);
}

void TestFormat::timestamps() {
    QFETCH(QString, text);
    QFETCH(qlonglong, millis);
    const QByteArray bytes = text.toUtf8();
    const Millis parsed = parseTimestamp(std::string_view(bytes.constData(), bytes.size()));
    QCOMPARE(qlonglong(parsed.value_or(-1)), millis);
    if (millis > 0 && text.contains('T')) {
        // Round trip through the formatter.
        const std::string formatted = formatTimestamp(millis);
        QCOMPARE(qlonglong(parseTimestamp(formatted).value_or(-2)), millis);
    }
}

void TestFormat::lineReaderPlainAndGzip() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QByteArray content;
    for (int i = 1; i <= 50000; ++i) content += "{\"n\":" + QByteArray::number(i) + "}\r\n";
    content += "\n";             // a blank line
    content += "{\"last\":true}"; // no final newline
    writeFile(dir.filePath("plain.ndjson"), content);
    // The name does not say gzip: detection is by content.
    writeGzip(dir.filePath("packed.data"), content);

    for (const QString& name : {QString("plain.ndjson"), QString("packed.data")}) {
        LineReader reader(dir.filePath(name).toStdString());
        std::uint64_t count = 0;
        std::string last;
        while (auto line = reader.next()) {
            ++count;
            QCOMPARE(line->number, count);
            QVERIFY(!line->oversize);
            QVERIFY(line->text.empty() || line->text.back() != '\r');
            if (count == 1) QCOMPARE(qs(line->text), QString("{\"n\":1}"));
            last = std::string(line->text);
        }
        QCOMPARE(count, std::uint64_t(50002));
        QCOMPARE(qs(last), QString("{\"last\":true}"));
        QCOMPARE(reader.compressed(), name == "packed.data");
    }
}

void TestFormat::lineReaderOversize() {
    QTemporaryDir dir;
    QByteArray content = "{\"a\":1}\n" + QByteArray(300000, 'x') + "\n{\"b\":2}\n";
    writeFile(dir.filePath("big.ndjson"), content);
    LineReader reader(dir.filePath("big.ndjson").toStdString(), 100000);
    auto first = reader.next();
    QVERIFY(first && !first->oversize);
    auto big = reader.next();
    QVERIFY(big);
    QVERIFY(big->oversize);
    QCOMPARE(big->number, std::uint64_t(2));
    QCOMPARE(big->fullLength, std::uint64_t(300000));
    QVERIFY(big->text.size() <= 100000);
    auto third = reader.next();
    QVERIFY(third);
    QCOMPARE(qs(third->text), QString("{\"b\":2}"));
    QCOMPARE(third->number, std::uint64_t(3));
    QVERIFY(!reader.next());
}

void TestFormat::lineReaderTruncatedGzip() {
    QTemporaryDir dir;
    QByteArray content;
    for (int i = 0; i < 20000; ++i) content += "{\"event\":\"e\",\"distinct_id\":\"u" + QByteArray::number(i) + "\"}\n";
    const QString full = dir.filePath("full.gz");
    writeGzip(full, content);
    QFile file(full);
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QByteArray packed = file.readAll();
    writeFile(dir.filePath("cut.gz"), packed.left(packed.size() / 2));

    LineReader reader(dir.filePath("cut.gz").toStdString());
    std::uint64_t lines = 0;
    QString error;
    try {
        while (reader.next()) ++lines;
    } catch (const InputError& e) {
        error = e.what();
    }
    QVERIFY(lines > 0);
    QVERIFY(lines < 20000);
    QVERIFY2(error.contains("cut.gz") && error.contains("truncated gzip"), qPrintable(error));
}

void TestFormat::lineReaderMissingFile() {
    try {
        LineReader reader("/nonexistent/dir/events.ndjson");
        QFAIL("expected an InputError");
    } catch (const InputError& e) {
        const QString message = e.what();
        QVERIFY(message.contains("/nonexistent/dir/events.ndjson"));
        QVERIFY(message.contains("No such file"));
    }
}

QTEST_APPLESS_MAIN(TestFormat)
#include "tst_format.moc"
