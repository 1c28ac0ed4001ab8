#pragma once
// Where a text stops being JSON, for error messages that say where (simdjson says only what).
// Run it only on bytes a fast parser refused: it reads the whole text again with nlohmann's SAX
// parser, which builds nothing and is iterative, so a deeply nested body is no danger.

#include <cstddef>
#include <string>
#include <string_view>

namespace pipescope {

struct JsonErrorLocation {
    bool found = false;      // false: the text is JSON as nlohmann reads it
    std::size_t offset = 0;  // byte offset of the error in the text
    std::string message;     // nlohmann's message without its "[json.exception...] " prefix,
                             // e.g. "syntax error while parsing value - invalid literal; last read: 'x'"
                             // or "number overflow parsing '1e400'"
};

JsonErrorLocation locateJsonError(std::string_view text);

} // namespace pipescope
