#pragma once
// lz-string's decompressFromBase64 (the format posthog-js sends with compression=lz64), so the
// collector needs no JavaScript at runtime. Private to core/collector/.
//
// lz-string is LZW over UTF-16 code units: every dictionary entry is an earlier output piece
// plus the first unit of the piece after it, so entries are kept as (offset, length) spans of
// the output instead of strings. Output grows at most quadratically in the input (a small body
// can decode to gigabytes), hence the cap, checked after every code.

#include <cstddef>
#include <string>
#include <string_view>

namespace pipescope::collector_detail {

struct LzStringResult {
    enum class Status { Ok, Invalid, TooLarge };
    Status status = Status::Ok;
    std::string text;  // UTF-8; lone surrogates become U+FFFD
    std::string error; // Invalid / TooLarge: what and where
};

// `base64` may contain line breaks (skipped) and spaces (read as '+', which form decoding
// turns into spaces). Any other character outside the base64 alphabet is Invalid, as is a
// stream that ends before its end marker. TooLarge as soon as the output passes
// maxDecodedBytes (UTF-16 units while decoding, UTF-8 bytes after).
LzStringResult decompressLzStringFromBase64(std::string_view base64, std::size_t maxDecodedBytes);

} // namespace pipescope::collector_detail
