#include "regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "schema.h"

namespace pipescope::schema_detail {

namespace {

// One match-data block per thread, made on first use. Size 1 is enough: only "did it match"
// matters, and PCRE2 still reports a match when the ovector is too small for the groups.
struct ThreadMatchData {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~ThreadMatchData() { pcre2_match_data_free(data); }
};

pcre2_match_data* threadMatchData() {
    thread_local ThreadMatchData holder;
    return holder.data;
}

} // namespace

Regex::Regex(std::string pattern, const std::string& where) : m_source(std::move(pattern)) {
    int errorCode = 0;
    PCRE2_SIZE errorOffset = 0;
    // DOLLAR_ENDONLY: in ECMA-262 "$" matches only at the very end, not before a final newline.
    m_code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(m_source.data()), m_source.size(),
                           PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &errorCode, &errorOffset, nullptr);
    if (!m_code) {
        PCRE2_UCHAR buffer[256];
        pcre2_get_error_message(errorCode, buffer, sizeof buffer);
        throw SchemaError("at \"" + where + "\": invalid regular expression \"" + m_source +
                          "\": " + reinterpret_cast<const char*>(buffer) + " at offset " +
                          std::to_string(errorOffset));
    }
    m_jit = pcre2_jit_compile(m_code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(m_code); }

bool Regex::search(std::string_view subject) const {
    auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
    // Subjects come from simdjson, which has already validated the UTF-8.
    int rc = m_jit ? pcre2_jit_match(m_code, text, subject.size(), 0, 0, threadMatchData(), nullptr)
                   : pcre2_match(m_code, text, subject.size(), 0, PCRE2_NO_UTF_CHECK, threadMatchData(), nullptr);
    // rc == 0 is a match whose groups did not fit the ovector; negative is no match or a limit hit.
    return rc >= 0;
}

} // namespace pipescope::schema_detail
