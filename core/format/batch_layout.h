#pragma once
// Where the elements of a batch lie in its bytes: a bare array `[e0, e1, ...]` or an object with a
// "batch" array (PostHog {api_key, batch, sent_at}, Segment {batch, sentAt}). A structural scan,
// not a parser: it follows strings (with their escapes) and the nesting of [] and {}, and nothing
// else, so it can split a body the parser refuses into its elements, and it gives every element
// its exact bytes (the DOM keeps no source offsets).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

struct ByteRange {
    std::size_t begin = 0;
    std::size_t end = 0; // one past the last byte
    std::string_view of(std::string_view bytes) const { return bytes.substr(begin, end - begin); }
};

struct BatchLayout {
    static constexpr std::size_t npos = std::string::npos;

    bool envelope = false; // an object (with or without "batch") rather than a bare array
    bool hasBatch = false; // envelope: the first "batch" member is an array, split into `elements`
    ByteRange batch;       // envelope: that array's bytes, '[' to ']'
    // Each element's bytes, without the whitespace around it: of the root array, or of the batch.
    std::vector<ByteRange> elements;
    std::size_t firstBatchKey = npos;     // envelope: offset of the first "batch" key (its quote)
    std::size_t duplicateBatchKey = npos; // and of the second, when there is one
};

class BatchScanner {
public:
    // One linear pass. False when the bytes are not one array or object, with balanced and
    // matching brackets, terminated strings, nothing but whitespace after it, well-formed members
    // at the root of an object, and no empty slot (`[a,,b]`, `[a,]`) in the array split. The
    // elements themselves are not checked: they are bytes between commas, for a parser to judge.
    bool scan(std::string_view bytes, BatchLayout& layout);
    // The same from the structural indexes simdjson's stage 1 found in `bytes` (each structural
    // character, the first byte of each string and scalar): a walk over a few tokens per ten
    // bytes instead of every byte, for a document that parsed.
    bool scan(std::string_view bytes, const std::uint32_t* structurals, std::size_t count,
              BatchLayout& layout);

private:
    std::string m_nesting; // the open brackets, innermost last
};

// When `bytes` holds integers beyond int64/uint64 (outside strings, integer syntax), writes to
// `out` a copy in which each gets ".0" appended, so that a parser reads it as the nearest double,
// as JavaScript's JSON.parse does; returns false (and leaves `out` alone) when there is none.
bool widenOutOfRangeIntegers(std::string_view bytes, std::string& out);

} // namespace pipescope
