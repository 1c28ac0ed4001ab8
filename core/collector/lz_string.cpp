#include "collector/lz_string.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace pipescope::collector_detail {
namespace {

constexpr std::uint8_t kNotBase64 = 0xFF;

constexpr std::array<std::uint8_t, 256> makeBase64Values() {
    std::array<std::uint8_t, 256> values{};
    for (auto& value : values)
        value = kNotBase64;
    constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    for (std::size_t i = 0; i < alphabet.size(); ++i)
        values[static_cast<unsigned char>(alphabet[i])] = static_cast<std::uint8_t>(i);
    return values;
}

// lz-string's own table: '=' is 64, whose low six bits are zero, so padding reads as 0 bits.
constexpr auto kBase64Values = makeBase64Values();

// Reads the code stream the way lz-string's _decompress does: six bits per character, most
// significant first, values assembled least significant bit first. Past the end it reads
// zeros, as the JavaScript does (charAt() of a missing index).
class BitReader {
public:
    explicit BitReader(std::vector<std::uint8_t> values) : m_values(std::move(values)) {
        m_value = valueAt(0);
    }

    std::uint32_t read(unsigned bitCount) {
        std::uint32_t bits = 0;
        for (unsigned i = 0; i < bitCount; ++i) {
            const bool bit = (m_value & m_position) != 0;
            m_position >>= 1;
            if (m_position == 0) {
                m_position = kResetPosition;
                m_value = valueAt(m_index++);
            }
            bits |= static_cast<std::uint32_t>(bit) << i;
        }
        return bits;
    }

    // lz-string gives up ("") once it has read past the input without meeting the end marker.
    bool exhausted() const { return m_index > m_values.size(); }

private:
    static constexpr std::uint32_t kResetPosition = 32;

    std::uint32_t valueAt(std::size_t index) const { return index < m_values.size() ? m_values[index] : 0; }

    std::vector<std::uint8_t> m_values;
    std::uint32_t m_value = 0;
    std::uint32_t m_position = kResetPosition;
    std::size_t m_index = 1;
};

struct Span {
    std::uint32_t offset;
    std::uint32_t length;
};

void appendUtf8(std::string& out, std::uint32_t codePoint) {
    if (codePoint < 0x80) {
        out.push_back(static_cast<char>(codePoint));
    } else if (codePoint < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (codePoint >> 6)));
        out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
    } else if (codePoint < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (codePoint >> 12)));
        out.push_back(static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (codePoint >> 18)));
        out.push_back(static_cast<char>(0x80 | ((codePoint >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
    }
}

// The UTF-8 bytes a unit adds, given the unit before it: a surrogate pair is 4 bytes (3 counted
// for the high half, 1 for the low), a lone surrogate becomes U+FFFD (3).
std::size_t utf8Bytes(char16_t unit, char16_t before) {
    if (unit < 0x80) return 1;
    if (unit < 0x800) return 2;
    if (unit >= 0xDC00 && unit <= 0xDFFF && before >= 0xD800 && before <= 0xDBFF) return 1;
    return 3;
}

void utf16ToUtf8(const std::u16string& units, std::string& out) {
    for (std::size_t i = 0; i < units.size(); ++i) {
        std::uint32_t unit = units[i];
        if (unit >= 0xD800 && unit <= 0xDBFF && i + 1 < units.size() && units[i + 1] >= 0xDC00 &&
            units[i + 1] <= 0xDFFF) {
            unit = 0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00);
            ++i;
        } else if (unit >= 0xD800 && unit <= 0xDFFF) {
            unit = 0xFFFD;
        }
        appendUtf8(out, unit);
    }
}

LzStringResult invalid(std::string error) {
    return {LzStringResult::Status::Invalid, {}, std::move(error)};
}

LzStringResult overloaded() {
    return {LzStringResult::Status::Overloaded, {}, "lz64: too many bytes in flight to decode the body"};
}

LzStringResult tooLarge(std::size_t maxDecodedBytes) {
    return {LzStringResult::Status::TooLarge,
            {},
            "lz64 body decompresses to more than " + std::to_string(maxDecodedBytes) + " bytes"};
}

} // namespace

LzStringResult decompressLzStringFromBase64(std::string_view base64, std::size_t maxDecodedBytes,
                                            const std::function<bool(std::size_t)>& grow) {
    std::vector<std::uint8_t> values;
    values.reserve(base64.size());
    for (std::size_t i = 0; i < base64.size(); ++i) {
        const char ch = base64[i];
        if (ch == '\r' || ch == '\n') continue;
        const std::uint8_t value = kBase64Values[static_cast<unsigned char>(ch == ' ' ? '+' : ch)];
        if (value == kNotBase64)
            return invalid("lz64: byte " +
                           std::to_string(static_cast<unsigned>(static_cast<unsigned char>(ch))) +
                           " at offset " + std::to_string(i) + " is not a base64 character");
        values.push_back(value);
    }
    if (values.empty()) return invalid("lz64: empty input");

    // Spans are 32-bit; a cap beyond that is far past anything the collector accepts anyway.
    // Every unit is at least one UTF-8 byte, so the UTF-8 cap bounds the units too.
    const std::size_t maxBytes =
        std::min<std::size_t>(maxDecodedBytes, std::numeric_limits<std::uint32_t>::max() / 2);

    BitReader reader(std::move(values));
    std::u16string output;
    std::size_t outputBytes = 0; // UTF-8 bytes `output` becomes
    // Grown here rather than by the string's doubling, so what is held stays within the cap and
    // is announced to `grow` first.
    auto makeRoom = [&](std::size_t units) {
        if (units <= output.capacity()) return true;
        const std::size_t capacity = std::min(std::max(units, output.capacity() * 2), maxBytes + 1);
        if (grow && !grow((capacity - output.capacity()) * sizeof(char16_t))) return false;
        output.reserve(capacity);
        return true;
    };
    auto append = [&](char16_t unit) {
        outputBytes += utf8Bytes(unit, output.empty() ? char16_t{0} : output.back());
        output.push_back(unit);
    };
    // Codes 0..2 are commands (8-bit literal, 16-bit literal, end), not entries.
    std::vector<Span> dictionary(3, Span{0, 0});

    auto readLiteral = [&](std::uint32_t command) {
        return static_cast<char16_t>(reader.read(command == 0 ? 8 : 16));
    };

    const std::uint32_t first = reader.read(2);
    if (first == 2) return {};
    if (first == 3) return invalid("lz64: the stream does not start with a literal");
    dictionary.push_back({0, 1});
    if (!makeRoom(1)) return overloaded();
    append(readLiteral(first));
    Span previous{0, 1};

    std::uint32_t enlargeIn = 4;
    unsigned numBits = 3;
    auto countEntry = [&] {
        if (--enlargeIn == 0) {
            enlargeIn = std::uint32_t{1} << numBits;
            ++numBits;
        }
    };

    for (;;) {
        if (reader.exhausted()) return invalid("lz64: the data ends before its end marker (truncated?)");
        if (numBits > 31) return invalid("lz64: code width beyond 31 bits");

        const std::uint32_t code = reader.read(numBits);
        if (code == 2) break;
        if (code < 2) {
            // A literal is an entry of its own and, at once, the next output piece.
            const Span current{static_cast<std::uint32_t>(output.size()), 1};
            if (!makeRoom(output.size() + 1)) return overloaded();
            append(readLiteral(code));
            dictionary.push_back(current);
            countEntry();
            dictionary.push_back({previous.offset, previous.length + 1});
            countEntry();
            previous = current;
        } else {
            if (code > dictionary.size())
                return invalid("lz64: code " + std::to_string(code) + " refers to no dictionary entry (" +
                               std::to_string(dictionary.size()) + " defined)");
            // code == size: the entry being defined right now, previous piece + its first unit.
            const bool selfReference = code == dictionary.size();
            const Span source = selfReference ? previous : dictionary[code];
            const std::size_t start = output.size();
            const std::size_t pieceLength = std::size_t{source.length} + (selfReference ? 1 : 0);
            // One piece can be as long as everything decoded so far: room is made only for what
            // the cap still allows, and the copy stops at the cap.
            if (!makeRoom(std::min(start + pieceLength, maxBytes + 1))) return overloaded();
            for (std::size_t k = 0; k < pieceLength; ++k) {
                append(k < source.length ? output[source.offset + k] : output[source.offset]);
                if (outputBytes > maxBytes) return tooLarge(maxDecodedBytes);
            }
            // The new entry is the previous piece followed by the first unit of this one, which
            // the output holds right after it.
            dictionary.push_back({previous.offset, previous.length + 1});
            countEntry();
            previous = {static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(pieceLength)};
        }
        if (outputBytes > maxBytes) return tooLarge(maxDecodedBytes);
    }

    LzStringResult result;
    if (grow && !grow(outputBytes)) return overloaded();
    result.text.reserve(outputBytes);
    utf16ToUtf8(output, result.text);
    return result;
}

} // namespace pipescope::collector_detail
