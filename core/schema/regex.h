#pragma once
// A "pattern" compiled once with PCRE2 (UTF mode, JIT when available). Matching is an unanchored
// search, as ECMA-262's RegExp.test() is, and uses per-thread match data so that one compiled
// schema can be used from many threads without locking or allocating per match.

#include <string>
#include <string_view>

struct pcre2_real_code_8;

namespace pipescope::schema_detail {

class Regex {
public:
    // Throws SchemaError naming `where` (the JSON Pointer of the keyword) and PCRE2's message.
    Regex(std::string pattern, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    bool search(std::string_view subject) const;
    const std::string& source() const { return m_source; }

private:
    std::string m_source;
    pcre2_real_code_8* m_code = nullptr;
    bool m_jit = false;
};

} // namespace pipescope::schema_detail
