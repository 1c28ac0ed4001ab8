#pragma once
// lz-string's decompressFromBase64 (the format posthog-js sends with compression=lz64), so the
// collector needs no JavaScript at runtime. Private to core/collector/.
//
// lz-string is LZW over UTF-16 code units: every dictionary entry is an earlier output piece
// plus the first unit of the piece after it, so entries are kept as (offset, length) spans of
// the output instead of strings. Output grows at most quadratically in the input (a small body
// can decode to gigabytes), hence the cap, checked on every output unit: decoding stops as soon
// as the UTF-8 the output will become passes it, and the memory held never exceeds about
// 2 bytes per allowed byte (the UTF-16 units) plus the UTF-8 result.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace pipescope::collector_detail {

struct LzStringResult {
    enum class Status { Ok, Invalid, TooLarge, Overloaded };
    Status status = Status::Ok;
    std::string text;  // UTF-8; lone surrogates become U+FFFD
    std::string error; // Invalid / TooLarge: what and where
};

// `base64` may contain line breaks (skipped) and spaces (read as '+', which form decoding
// turns into spaces). Any other character outside the base64 alphabet is Invalid, as is a
// stream that ends before its end marker. TooLarge as soon as the output, counted in the UTF-8
// bytes it becomes, passes maxDecodedBytes. `grow` (when set) is asked before the memory held
// for the output grows, with the number of bytes added; false stops decoding (Overloaded).
LzStringResult decompressLzStringFromBase64(std::string_view base64, std::size_t maxDecodedBytes,
                                            const std::function<bool(std::size_t)>& grow = {});

} // namespace pipescope::collector_detail
