#include "collector/request_decoding.h"

#include "collector/lz_string.h"
#include "format/batch_layout.h"
#include "format/json_error.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <simdjson.h>
#include <zlib.h>

namespace pipescope::collector_detail {
namespace {

constexpr std::size_t kInflateChunk = 64 * 1024;
// A thread's simdjson parser keeps the capacity of the largest body it parsed; above this it
// is dropped after use so a rare 100 MB batch does not pin that much per server thread.
constexpr std::size_t kParserCapacityKept = 16u << 20;

bool isSpace(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && isSpace(text.front()))
        text.remove_prefix(1);
    while (!text.empty() && isSpace(text.back()))
        text.remove_suffix(1);
    return text;
}

std::string lowercase(std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch); });
    return lower;
}

bool startsWith(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

DecodedBody failure(DecodedBody::Status status, std::string reason, std::string detail) {
    DecodedBody body;
    body.status = status;
    body.reason = std::move(reason);
    body.detail = std::move(detail);
    return body;
}

DecodedBody invalidBody(std::string reason, std::string detail) {
    return failure(DecodedBody::Status::Invalid, std::move(reason), std::move(detail));
}

DecodedBody decodedTooLarge(std::string detail) {
    return failure(DecodedBody::Status::TooLarge, "decompressed_too_large", std::move(detail));
}

DecodedBody decodeOverloaded(std::string_view what) {
    return failure(DecodedBody::Status::Overloaded, "overloaded",
                   "too many bytes in flight to decode the " + std::string(what) + " body; retry later");
}

DecodedBody fromLzString(LzStringResult decoded, BodyEncoding encoding, std::string_view context) {
    switch (decoded.status) {
    case LzStringResult::Status::TooLarge:
        return decodedTooLarge(std::move(decoded.error));
    case LzStringResult::Status::Invalid:
        return invalidBody("lz64_invalid", std::string(context) + decoded.error);
    case LzStringResult::Status::Overloaded:
        return decodeOverloaded("lz64");
    case LzStringResult::Status::Ok:
        break;
    }
    DecodedBody body;
    body.encoding = encoding;
    body.json = std::move(decoded.text);
    return body;
}

// Inflates gzip (and zlib) streams, several members in a row included, never holding more than
// maxBytes + one chunk of output: a bomb is refused while it inflates.
DecodedBody gunzip(std::string_view compressed, std::size_t maxBytes, const DecodeBudget& budget) {
    z_stream stream{};
    if (inflateInit2(&stream, 15 + 32) != Z_OK) // 15 + 32: either header, detected
        return invalidBody("gzip_invalid", "gzip: zlib could not be initialised");
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
    stream.avail_in =
        static_cast<uInt>(std::min<std::size_t>(compressed.size(), std::numeric_limits<uInt>::max()));

    DecodedBody body;
    body.encoding = BodyEncoding::Gzip;
    std::size_t produced = 0;
    for (;;) {
        if (produced > maxBytes) {
            inflateEnd(&stream);
            return decodedTooLarge("gzip body inflates to more than " + std::to_string(maxBytes) + " bytes");
        }
        const std::size_t room = std::min(kInflateChunk, maxBytes + 1 - produced);
        if (produced + room > body.json.capacity()) {
            // Grown here, not by the string's doubling: what is held stays within the cap (+1
            // byte, to see that it is passed) and is counted in flight before it is taken.
            const std::size_t capacity =
                std::min(std::max(produced + room, body.json.capacity() * 2), maxBytes + 1);
            if (budget && !budget(capacity - body.json.capacity())) {
                inflateEnd(&stream);
                return decodeOverloaded("gzip");
            }
            body.json.reserve(capacity);
        }
        body.json.resize(produced + room);
        stream.next_out = reinterpret_cast<Bytef*>(body.json.data() + produced);
        stream.avail_out = static_cast<uInt>(room);
        const int status = inflate(&stream, Z_NO_FLUSH);
        produced += room - stream.avail_out;
        const std::size_t consumed = compressed.size() - stream.avail_in;
        if (status == Z_STREAM_END) {
            if (stream.avail_in == 0) break;
            inflateReset(&stream); // concatenated members are one gzip file
            continue;
        }
        if (status == Z_OK) continue;
        if (status == Z_BUF_ERROR && stream.avail_in == 0) {
            inflateEnd(&stream);
            return invalidBody("gzip_truncated", "gzip stream ends after " +
                                                     std::to_string(compressed.size()) +
                                                     " bytes without its end (truncated body?)");
        }
        std::string detail = "gzip: ";
        detail += stream.msg != nullptr ? stream.msg : "invalid data";
        detail += " at compressed byte " + std::to_string(consumed);
        inflateEnd(&stream);
        return invalidBody("gzip_invalid", std::move(detail));
    }
    inflateEnd(&stream);
    body.json.resize(produced);
    if (produced > maxBytes)
        return decodedTooLarge("gzip body inflates to more than " + std::to_string(maxBytes) + " bytes");
    return body;
}

constexpr std::uint8_t kNotBase64 = 0xFF;

constexpr std::array<std::uint8_t, 256> makeBase64Values() {
    std::array<std::uint8_t, 256> values{};
    for (auto& value : values)
        value = kNotBase64;
    constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i)
        values[static_cast<unsigned char>(alphabet[i])] = static_cast<std::uint8_t>(i);
    values['-'] = 62; // the URL-safe alphabet too
    values['_'] = 63;
    values[' '] = 62; // a '+' that went through form decoding unescaped
    return values;
}

constexpr auto kBase64Values = makeBase64Values();

bool decodeBase64(std::string_view text, std::string& out, std::string& error) {
    out.clear();
    out.reserve(text.size() / 4 * 3 + 3);
    std::uint32_t accumulator = 0;
    int bits = 0;
    bool padding = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        if (ch == '\r' || ch == '\n' || ch == '\t') continue;
        if (ch == '=') {
            padding = true;
            continue;
        }
        const std::uint8_t value = kBase64Values[static_cast<unsigned char>(ch)];
        if (value == kNotBase64 || padding) {
            error = "base64: byte " + std::to_string(static_cast<unsigned>(static_cast<unsigned char>(ch))) +
                    " at offset " + std::to_string(i) +
                    (padding ? " follows the '=' padding" : " is not base64");
            return false;
        }
        accumulator = (accumulator << 6) | value;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((accumulator >> bits) & 0xFF));
        }
    }
    if (bits >= 6) { // one character alone cannot encode a byte
        error = "base64: the text ends inside a byte (" + std::to_string(text.size()) + " characters)";
        return false;
    }
    return true;
}

bool looksLikeJson(std::string_view text) {
    text = trim(text);
    return !text.empty() && (text.front() == '{' || text.front() == '[');
}

// base64 never grows its input, but the output is still capped and counted like any decoding.
DecodedBody decodeBase64Body(std::string_view text, BodyEncoding encoding, std::size_t maxBytes,
                             const DecodeBudget& budget, std::string_view context) {
    const std::size_t estimate = text.size() / 4 * 3 + 3; // what decodeBase64 reserves
    if (budget && !budget(estimate)) return decodeOverloaded("base64");
    DecodedBody body;
    body.encoding = encoding;
    std::string error;
    if (!decodeBase64(text, body.json, error))
        return invalidBody("base64_invalid", std::string(context) + error);
    if (body.json.size() > maxBytes)
        return decodedTooLarge("base64 body decodes to more than " + std::to_string(maxBytes) + " bytes");
    return body;
}

DecodedBody decodeForm(std::string_view raw, std::string_view compressionParam, std::size_t maxBytes,
                       const DecodeBudget& budget) {
    std::string data;
    bool hasData = false;
    std::string compression(compressionParam);
    std::string name;
    std::string value;
    std::size_t position = 0;
    while (position <= raw.size()) {
        const std::size_t end = std::min(raw.find('&', position), raw.size());
        const std::string_view field = raw.substr(position, end - position);
        const std::size_t equals = std::min(field.find('='), field.size());
        if (!decodeFormComponent(field.substr(0, equals), name) ||
            !decodeFormComponent(field.substr(std::min(equals + 1, field.size())), value))
            return invalidBody("form_invalid",
                               "form body: a '%' without two hex digits in the field at offset " +
                                   std::to_string(position));
        if (name == "data") {
            data = std::move(value);
            hasData = true;
        } else if (name == "compression") {
            compression = value;
        }
        position = end + 1;
    }
    if (!hasData) return invalidBody("form_invalid", "form body has no data field");

    compression = lowercase(trim(compression));
    if (compression == "lz64")
        return fromLzString(decompressLzStringFromBase64(trim(data), maxBytes, budget),
                            BodyEncoding::FormLz64, "form field data: ");
    if (looksLikeJson(data)) {
        // Percent-decoding only shrinks, but the result is still held and capped.
        if (data.size() > maxBytes)
            return decodedTooLarge("form field data decodes to more than " + std::to_string(maxBytes) +
                                   " bytes");
        if (budget && !budget(data.size())) return decodeOverloaded("form");
        DecodedBody body;
        body.encoding = BodyEncoding::Form;
        body.json = std::move(data);
        return body;
    }
    return decodeBase64Body(trim(data), BodyEncoding::Form, maxBytes, budget, "form field data: ");
}

// Replaces every byte that is not part of a well-formed UTF-8 sequence with '?', keeping
// offsets, so the token can still be read from a body the sink gets unchanged.
std::string withValidUtf8(std::string_view text) {
    std::string out(text);
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    std::size_t i = 0;
    while (i < text.size()) {
        const unsigned char lead = bytes[i];
        std::size_t length = 0;
        std::uint32_t min = 0;
        if (lead < 0x80) {
            ++i;
            continue;
        } else if (lead >= 0xC2 && lead <= 0xDF) {
            length = 2;
            min = 0x80;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            length = 3;
            min = 0x800;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            length = 4;
            min = 0x10000;
        }
        bool valid = length != 0 && i + length <= text.size();
        std::uint32_t codePoint = length == 2 ? (lead & 0x1F) : length == 3 ? (lead & 0x0F) : (lead & 0x07);
        for (std::size_t k = 1; valid && k < length; ++k) {
            valid = (bytes[i + k] & 0xC0) == 0x80;
            codePoint = (codePoint << 6) | (bytes[i + k] & 0x3F);
        }
        valid = valid && codePoint >= min && codePoint <= 0x10FFFF &&
                !(codePoint >= 0xD800 && codePoint <= 0xDFFF);
        if (valid) {
            i += length;
        } else {
            out[i] = '?';
            ++i;
        }
    }
    return out;
}


// The length of the JSON number at the start of `text` (RFC 8259 grammar), 0 when there is none.
std::size_t jsonNumberLength(std::string_view text) {
    std::size_t i = 0;
    auto digits = [&] {
        const std::size_t start = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9')
            ++i;
        return i - start;
    };
    if (i < text.size() && text[i] == '-') ++i;
    if (i < text.size() && text[i] == '0')
        ++i;
    else if (digits() == 0)
        return 0;
    if (i < text.size() && text[i] == '.') {
        ++i;
        if (digits() == 0) return 0;
    }
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
        if (digits() == 0) return 0;
    }
    return i;
}

bool isNumberChar(char ch) {
    return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.' || ch == 'e' || ch == 'E';
}

// A copy of `json` in which every well-formed number outside strings is replaced by a 0 padded
// with spaces (offsets kept): simdjson refuses integers beyond 64 bits and doubles beyond
// range, which are still JSON, and the collector needs no number to find the token.
// Malformed numbers are left as they are, so they still fail the parse.
std::string withNeutralNumbers(std::string_view json) {
    std::string out(json);
    bool inString = false;
    std::size_t i = 0;
    while (i < out.size()) {
        const char ch = out[i];
        if (inString) {
            if (ch == '\\')
                i += 2;
            else {
                inString = ch != '"';
                ++i;
            }
            continue;
        }
        if (ch == '"') {
            inString = true;
            ++i;
            continue;
        }
        if (!isNumberChar(ch)) {
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < out.size() && isNumberChar(out[end]))
            ++end;
        const std::string_view run(out.data() + i, end - i);
        if (jsonNumberLength(run) == run.size()) {
            out[i] = '0';
            std::fill(out.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                      out.begin() + static_cast<std::ptrdiff_t>(end), ' ');
        }
        i = end;
    }
    return out;
}

std::string_view stringMember(simdjson::dom::object object, std::string_view key) {
    std::string_view value;
    if (object.at_key(key).get_string().get(value) == simdjson::SUCCESS) return value;
    return {};
}

std::string_view tokenMember(simdjson::dom::object object) {
    for (std::string_view key : {"api_key", "token", "$token", "writeKey"}) {
        if (std::string_view value = stringMember(object, key); !value.empty()) return value;
    }
    return {};
}

std::string_view firstElementObjectToken(simdjson::dom::array array);

std::string_view eventToken(simdjson::dom::object event) {
    simdjson::dom::object properties;
    if (event.at_key("properties").get_object().get(properties) == simdjson::SUCCESS) {
        for (std::string_view key : {"token", "$token"}) {
            if (std::string_view value = stringMember(properties, key); !value.empty()) return value;
        }
    }
    return tokenMember(event);
}

std::string_view firstElementObjectToken(simdjson::dom::array array) {
    for (simdjson::dom::element element : array) {
        simdjson::dom::object event;
        if (element.get_object().get(event) == simdjson::SUCCESS) return eventToken(event);
        break;
    }
    return {};
}

void readDocument(simdjson::dom::element document, JsonInspection& inspection) {
    inspection.valid = true;
    simdjson::dom::object object;
    simdjson::dom::array array;
    if (document.get_object().get(object) == simdjson::SUCCESS) {
        inspection.isObject = true;
        inspection.hasType = object.at_key("type").error() == simdjson::SUCCESS;
        std::string_view token = tokenMember(object);
        simdjson::dom::array batch;
        if (token.empty() && object.at_key("batch").get_array().get(batch) == simdjson::SUCCESS)
            token = firstElementObjectToken(batch);
        else if (token.empty())
            token = eventToken(object);
        inspection.token = std::string(token);
    } else if (document.get_array().get(array) == simdjson::SUCCESS) {
        inspection.token = std::string(firstElementObjectToken(array));
    }
}

// Where the value of the first top-level member `key` of the JSON object at the start of `object`
// starts; npos when it has none. A structural walk (strings and nesting), like BatchScanner: the
// DOM keeps no offsets, and the bytes need not parse (numbers beyond 64 bits, invalid UTF-8 are
// still JSON here). The first of duplicate keys, as simdjson's at_key and the decoder read it.
std::size_t topLevelMemberValue(std::string_view object, std::string_view key) {
    int depth = 0;
    bool expectKey = false;
    std::size_t i = 0;
    while (i < object.size()) {
        const char ch = object[i];
        if (ch == '"') {
            const std::size_t start = i + 1;
            bool escaped = false;
            for (++i; i < object.size() && object[i] != '"'; ++i) {
                if (object[i] == '\\') {
                    escaped = true;
                    ++i;
                }
            }
            if (i >= object.size()) return std::string::npos;
            const std::string_view raw = object.substr(start, i - start);
            ++i;
            if (depth != 1 || !expectKey) continue;
            expectKey = false;
            bool same = !escaped && raw == key;
            if (escaped) {
                const nlohmann::json decoded =
                    nlohmann::json::parse("\"" + std::string(raw) + "\"", nullptr, false);
                same = decoded.is_string() && decoded.get_ref<const std::string&>() == key;
            }
            if (!same) continue;
            while (i < object.size() && (isSpace(object[i]) || object[i] == ':'))
                ++i;
            return i < object.size() ? i : std::string::npos;
        }
        if (ch == '{' || ch == '[') {
            ++depth;
            expectKey = depth == 1 && ch == '{';
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0) return std::string::npos; // the end of the object
        } else if (ch == ',' && depth == 1) {
            expectKey = true;
        }
        ++i;
    }
    return std::string::npos;
}

// The bytes of the first top-level member `key` of `object` when its value is a string (quotes
// included) or a literal (number, true, false, null); empty otherwise.
std::string_view topLevelScalar(std::string_view object, std::string_view key) {
    const std::size_t start = topLevelMemberValue(object, key);
    if (start == std::string::npos || object[start] == '{' || object[start] == '[') return {};
    std::size_t end = start;
    if (object[start] == '"') {
        for (end = start + 1; end < object.size() && object[end] != '"'; ++end)
            if (object[end] == '\\') ++end;
        if (end >= object.size()) return {};
        return object.substr(start, end + 1 - start);
    }
    while (end < object.size() && object[end] != ',' && object[end] != '}' && !isSpace(object[end]))
        ++end;
    return object.substr(start, end - start);
}

std::string jsonString(std::string_view text) {
    return nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One Capture V1 event with the members PostHog's capture adds spliced into its properties. The
// body passed inspectJson(), so every element is JSON; read structurally, nothing is re-encoded.
std::string v1EventAsPostHog(std::string_view element, std::string_view lib, std::string_view libVersion) {
    if (element.empty() || element.front() != '{') return std::string(element);
    const std::size_t propertiesAt = topLevelMemberValue(element, "properties");
    const bool hasProperties = propertiesAt != std::string::npos;
    if (hasProperties && element[propertiesAt] != '{')
        return std::string(element); // properties that are not an object: the pipeline's to judge
    const std::string_view properties = hasProperties ? element.substr(propertiesAt) : std::string_view();
    auto lacks = [&](std::string_view key) {
        return !hasProperties || topLevelMemberValue(properties, key) == std::string::npos;
    };

    std::string members;
    auto add = [&](std::string_view key, const std::string& jsonValue) {
        if (!members.empty()) members += ',';
        members += jsonString(key) + ':' + jsonValue;
    };
    if (!lib.empty() && lacks("$lib")) {
        add("$lib", jsonString(lib));
        if (!libVersion.empty() && lacks("$lib_version")) add("$lib_version", jsonString(libVersion));
    }
    for (const auto& [field, property] :
         {std::pair{"session_id", "$session_id"}, std::pair{"window_id", "$window_id"}}) {
        const std::string_view value = topLevelScalar(element, field);
        if (!value.empty() && value.front() == '"' && lacks(property)) add(property, std::string(value));
    }
    if (members.empty()) return std::string(element);

    std::string out(element);
    if (hasProperties) {
        const std::size_t next = element.find_first_not_of(" \t\r\n", propertiesAt + 1);
        if (next != std::string_view::npos && element[next] != '}') members += ',';
        out.insert(propertiesAt + 1, members);
    } else {
        const std::size_t next = element.find_first_not_of(" \t\r\n", 1);
        std::string member = "\"properties\":{" + members + "}";
        if (next != std::string_view::npos && element[next] != '}') member += ',';
        out.insert(1, member);
    }
    return out;
}

} // namespace

std::string basicAuthUser(std::string_view authorization) {
    authorization = trim(authorization);
    if (lowercase(authorization.substr(0, 6)) != "basic ") return {};
    std::string credentials;
    std::string error;
    if (!decodeBase64(trim(authorization.substr(6)), credentials, error)) return {};
    return credentials.substr(0, credentials.find(':'));
}

std::string bearerToken(std::string_view authorization) {
    authorization = trim(authorization);
    if (lowercase(authorization.substr(0, 7)) != "bearer ") return {};
    return std::string(trim(authorization.substr(7)));
}

bool captureV1ToBatch(std::string& json, std::string_view token, std::string_view sdkInfo) {
    BatchScanner scanner;
    BatchLayout layout;
    if (!scanner.scan(json, layout) || !layout.envelope || !layout.hasBatch) return false;

    std::string_view lib;
    std::string_view libVersion;
    if (const std::size_t slash = sdkInfo.rfind('/'); slash != std::string_view::npos && slash > 0) {
        lib = trim(sdkInfo.substr(0, slash));
        libVersion = trim(sdkInfo.substr(slash + 1));
    } else {
        lib = trim(sdkInfo);
    }

    std::string out = "{";
    if (!token.empty()) out += "\"api_key\":" + jsonString(token) + ",";
    // created_at is fixed when the batch is built, as v0's sent_at is when it is sent; its bytes
    // are copied as they are.
    if (const std::string_view createdAt = topLevelScalar(json, "created_at");
        !createdAt.empty() && createdAt.front() == '"')
        out += "\"sent_at\":" + std::string(createdAt) + ",";
    if (topLevelScalar(json, "historical_migration") == "true") out += "\"historical_migration\":true,";
    out += "\"batch\":[";
    for (std::size_t i = 0; i < layout.elements.size(); ++i) {
        if (i > 0) out += ',';
        out += v1EventAsPostHog(layout.elements[i].of(json), lib, libVersion);
    }
    out += "]}";
    json = std::move(out);
    return true;
}

bool decodeFormComponent(std::string_view encoded, std::string& decoded) {
    decoded.clear();
    decoded.reserve(encoded.size());
    auto hexValue = [](char ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < encoded.size(); ++i) {
        const char ch = encoded[i];
        if (ch == '+') {
            decoded.push_back(' ');
        } else if (ch == '%') {
            if (i + 2 >= encoded.size()) return false;
            const int high = hexValue(encoded[i + 1]);
            const int low = hexValue(encoded[i + 2]);
            if (high < 0 || low < 0) return false;
            decoded.push_back(static_cast<char>(high * 16 + low));
            i += 2;
        } else {
            decoded.push_back(ch);
        }
    }
    return true;
}

DecodedBody decodeRequestBody(std::string& raw, const BodyHints& hints, std::size_t maxDecodedBytes,
                              const DecodeBudget& budget) {
    const std::string encoding = lowercase(trim(hints.contentEncoding));
    const std::string compression = lowercase(trim(hints.compressionParam));
    const bool gzipHeader = encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate";
    if (!encoding.empty() && encoding != "identity" && !gzipHeader)
        return invalidBody("unsupported_content_encoding",
                           "Content-Encoding '" + encoding + "' is not supported (gzip, deflate or none)");
    const bool gzipMagic = raw.size() >= 2 && static_cast<unsigned char>(raw[0]) == 0x1F &&
                           static_cast<unsigned char>(raw[1]) == 0x8B;
    if (gzipHeader || gzipMagic || compression == "gzip-js" || compression == "gzip")
        return gunzip(raw, maxDecodedBytes, budget);

    // posthog-js's form bodies start with data=; a form content type alone does not make a
    // form (curl -d sends JSON as application/x-www-form-urlencoded).
    const std::string_view text = trim(raw);
    const bool formType = startsWith(lowercase(trim(hints.contentType)), "application/x-www-form-urlencoded");
    const bool dataField =
        startsWith(text, "data=") || (formType && text.find("&data=") != std::string_view::npos);
    if (dataField || (formType && !text.empty() && !looksLikeJson(text) && compression != "lz64" &&
                      compression != "base64"))
        return decodeForm(raw, compression, maxDecodedBytes, budget);

    if (compression == "lz64")
        return fromLzString(decompressLzStringFromBase64(text, maxDecodedBytes, budget), BodyEncoding::Lz64,
                            {});
    if (compression == "base64")
        return decodeBase64Body(text, BodyEncoding::Base64, maxDecodedBytes, budget, {});
    DecodedBody body;
    body.encoding = BodyEncoding::Plain;
    body.json = std::move(raw);
    raw.clear();
    return body;
}

JsonInspection inspectJson(std::string& json) {
    JsonInspection inspection;
    if (trim(json).empty()) {
        inspection.reason = "empty_body";
        inspection.detail = "the body is empty";
        return inspection;
    }
    if (json.capacity() - json.size() < simdjson::SIMDJSON_PADDING)
        json.reserve(json.size() + simdjson::SIMDJSON_PADDING);

    thread_local simdjson::dom::parser parser;
    simdjson::dom::element document;
    simdjson::error_code error = parser.parse(json.data(), json.size(), false).get(document);
    std::string repaired;
    if (error == simdjson::UTF8_ERROR) {
        // The pipeline decides what invalid UTF-8 in a string means; the collector only needs
        // the token, so it reads a repaired copy.
        repaired = withValidUtf8(json);
        repaired.reserve(repaired.size() + simdjson::SIMDJSON_PADDING);
        error = parser.parse(repaired.data(), repaired.size(), false).get(document);
    }
    if (error == simdjson::NUMBER_ERROR || error == simdjson::NUMBER_OUT_OF_RANGE) {
        // 123456789012345678901234567890 and 1e400 are JSON (this simdjson calls both a
        // NUMBER_ERROR, as it does a malformed number): the pipeline dead-letters the
        // element it cannot decode; the collector only needs the token, so it reads a copy in
        // which numbers are 0. A malformed number survives the copy and still fails.
        repaired = withNeutralNumbers(repaired.empty() ? std::string_view(json) : std::string_view(repaired));
        repaired.reserve(repaired.size() + simdjson::SIMDJSON_PADDING);
        error = parser.parse(repaired.data(), repaired.size(), false).get(document);
    }
    if (error == simdjson::SUCCESS) {
        readDocument(document, inspection);
    } else if (error == simdjson::DEPTH_ERROR) {
        inspection.reason = "json_too_deep";
        inspection.detail = "JSON nested deeper than " + std::to_string(parser.max_depth()) + " levels";
    } else {
        const JsonErrorLocation location = locateJsonError(repaired.empty() ? std::string_view(json) : repaired);
        if (!location.found) {
            // Valid JSON that simdjson still cannot represent: pass it on; the pipeline
            // dead-letters what it cannot decode.
            inspection.valid = true;
        } else {
            inspection.reason = "not_json";
            inspection.detail = "not JSON at byte offset " + std::to_string(location.offset) + ": " + location.message;
        }
    }
    if (parser.capacity() > kParserCapacityKept) parser = simdjson::dom::parser{};
    return inspection;
}

void insertTypeMember(std::string& json, std::string_view type) {
    const std::size_t brace = json.find_first_not_of(" \t\r\n");
    if (brace == std::string::npos || json[brace] != '{') return;
    const std::size_t next = json.find_first_not_of(" \t\r\n", brace + 1);
    std::string member = "\"type\":\"" + std::string(type) + "\"";
    if (next != std::string::npos && json[next] != '}') member += ',';
    json.insert(brace + 1, member);
}

} // namespace pipescope::collector_detail
