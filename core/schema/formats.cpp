#include "formats.h"

#include <array>
#include <cstdint>
#include <string>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace pipescope::schema_detail {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Reads exactly `count` digits at `pos`.
bool readDigits(std::string_view s, std::size_t& pos, int count, int& value) {
    if (pos + count > s.size()) return false;
    value = 0;
    for (int i = 0; i < count; ++i) {
        char c = s[pos + i];
        if (!isDigit(c)) return false;
        value = value * 10 + (c - '0');
    }
    pos += count;
    return true;
}

bool readChar(std::string_view s, std::size_t& pos, char expected) {
    if (pos >= s.size() || s[pos] != expected) return false;
    ++pos;
    return true;
}

bool isLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

// RFC 3339 full-date.
bool parseDate(std::string_view s, std::size_t& pos) {
    int year = 0, month = 0, day = 0;
    if (!readDigits(s, pos, 4, year) || !readChar(s, pos, '-') || !readDigits(s, pos, 2, month) ||
        !readChar(s, pos, '-') || !readDigits(s, pos, 2, day))
        return false;
    static constexpr std::array<int, 12> daysInMonth{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1) return false;
    int maxDay = daysInMonth[month - 1] + (month == 2 && isLeapYear(year) ? 1 : 0);
    return day <= maxDay;
}

// RFC 3339 full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM); second 60 is a leap second.
bool parseTime(std::string_view s, std::size_t& pos) {
    int hour = 0, minute = 0, second = 0;
    if (!readDigits(s, pos, 2, hour) || !readChar(s, pos, ':') || !readDigits(s, pos, 2, minute) ||
        !readChar(s, pos, ':') || !readDigits(s, pos, 2, second))
        return false;
    if (hour > 23 || minute > 59 || second > 60) return false;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        std::size_t start = pos;
        while (pos < s.size() && isDigit(s[pos]))
            ++pos;
        if (pos == start) return false;
    }
    if (pos >= s.size()) return false;
    char zone = s[pos++];
    if (zone == 'Z' || zone == 'z') return true;
    if (zone != '+' && zone != '-') return false;
    int offsetHour = 0, offsetMinute = 0;
    if (!readDigits(s, pos, 2, offsetHour) || !readChar(s, pos, ':') || !readDigits(s, pos, 2, offsetMinute))
        return false;
    return offsetHour <= 23 && offsetMinute <= 59;
}

bool checkDate(std::string_view s) {
    std::size_t pos = 0;
    return parseDate(s, pos) && pos == s.size();
}

bool checkTime(std::string_view s) {
    std::size_t pos = 0;
    return parseTime(s, pos) && pos == s.size();
}

bool checkDateTime(std::string_view s) {
    std::size_t pos = 0;
    if (!parseDate(s, pos)) return false;
    if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't')) return false;
    ++pos;
    return parseTime(s, pos) && pos == s.size();
}

bool checkHostnameImpl(std::string_view s, bool allowNonAscii) {
    if (s.empty() || s.size() > 253) return false;
    std::size_t labelStart = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == '.') {
            std::size_t length = i - labelStart;
            if (length == 0 || length > 63) return false;
            if (s[labelStart] == '-' || s[i - 1] == '-') return false;
            labelStart = i + 1;
            continue;
        }
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80 && allowNonAscii) continue;
        if (!isAlpha(static_cast<char>(c)) && !isDigit(static_cast<char>(c)) && c != '-') return false;
    }
    return true;
}

bool checkHostname(std::string_view s) { return checkHostnameImpl(s, false); }
bool checkIdnHostname(std::string_view s) { return checkHostnameImpl(s, true); }

bool checkIpv4(std::string_view s) {
    int parts = 0;
    std::size_t pos = 0;
    while (true) {
        std::size_t start = pos;
        int value = 0;
        while (pos < s.size() && isDigit(s[pos]) && pos - start < 3) {
            value = value * 10 + (s[pos] - '0');
            ++pos;
        }
        std::size_t length = pos - start;
        // Leading zeros are rejected: some parsers read them as octal.
        if (length == 0 || value > 255 || (length > 1 && s[start] == '0')) return false;
        ++parts;
        if (pos == s.size()) break;
        if (s[pos] != '.' || parts == 4) return false;
        ++pos;
    }
    return parts == 4;
}

bool checkIpv6(std::string_view s) {
    if (s.empty()) return false;
    int groups = 0;
    bool compressed = false;
    std::size_t pos = 0;
    if (s.starts_with("::")) {
        compressed = true;
        pos = 2;
        if (pos == s.size()) return true;
    } else if (s[0] == ':') {
        return false;
    }
    while (pos < s.size()) {
        std::size_t start = pos;
        while (pos < s.size() && isHex(s[pos]) && pos - start < 5)
            ++pos;
        std::size_t length = pos - start;
        if (pos < s.size() && s[pos] == '.') {
            // An embedded IPv4 address takes the last two groups.
            if (!checkIpv4(s.substr(start))) return false;
            groups += 2;
            pos = s.size();
            break;
        }
        if (length == 0 || length > 4) return false;
        ++groups;
        if (pos == s.size()) break;
        if (s[pos] != ':') return false;
        ++pos;
        if (pos < s.size() && s[pos] == ':') {
            if (compressed) return false;
            compressed = true;
            ++pos;
            if (pos == s.size()) break;
        } else if (pos == s.size()) {
            return false;
        }
    }
    return compressed ? groups < 8 : groups == 8;
}

bool checkEmailImpl(std::string_view s, bool allowNonAscii) {
    auto at = s.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == s.size()) return false;
    std::string_view local = s.substr(0, at);
    std::string_view domain = s.substr(at + 1);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) return false;
    for (unsigned char c : local) {
        if (c >= 0x80) {
            if (!allowNonAscii) return false;
            continue;
        }
        if (isAlpha(static_cast<char>(c)) || isDigit(static_cast<char>(c))) continue;
        if (std::string_view("!#$%&'*+-/=?^_`{|}~.").find(static_cast<char>(c)) == std::string_view::npos)
            return false;
    }
    if (domain.front() == '[' && domain.back() == ']') {
        std::string_view literal = domain.substr(1, domain.size() - 2);
        if (literal.starts_with("IPv6:")) return checkIpv6(literal.substr(5));
        return checkIpv4(literal);
    }
    return checkHostnameImpl(domain, allowNonAscii);
}

bool checkEmail(std::string_view s) { return checkEmailImpl(s, false); }
bool checkIdnEmail(std::string_view s) { return checkEmailImpl(s, true); }

// Characters that may appear literally in a URI (RFC 3986 unreserved + reserved); IRIs also allow
// any non-ASCII character (RFC 3987 ucschar, simplified).
bool isUriChar(unsigned char c, bool iri) {
    if (c >= 0x80) return iri;
    if (isAlpha(static_cast<char>(c)) || isDigit(static_cast<char>(c))) return true;
    return std::string_view("-._~:/?#[]@!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos;
}

bool checkUriCharacters(std::string_view s, bool iri) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c == '%') {
            if (i + 2 >= s.size() || !isHex(s[i + 1]) || !isHex(s[i + 2])) return false;
            i += 2;
            continue;
        }
        if (!isUriChar(c, iri)) return false;
    }
    return true;
}

bool checkAuthority(std::string_view authority) {
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        if (authority.substr(0, at).find_first_of("[]") != std::string_view::npos) return false;
        authority.remove_prefix(at + 1);
    }
    std::string_view host = authority;
    std::string_view port;
    if (authority.starts_with('[')) {
        auto close = authority.find(']');
        if (close == std::string_view::npos) return false;
        std::string_view literal = authority.substr(1, close - 1);
        if (!literal.starts_with('v') && !literal.starts_with('V') && !checkIpv6(literal)) return false;
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty() && rest[0] != ':') return false;
        port = rest.empty() ? rest : rest.substr(1);
        host = {};
    } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
    }
    if (host.find_first_of("[]") != std::string_view::npos) return false;
    for (char c : port)
        if (!isDigit(c)) return false;
    return true;
}

bool checkUriReferenceImpl(std::string_view s, bool requireScheme, bool iri) {
    if (!checkUriCharacters(s, iri)) return false;
    std::string_view rest = s;
    auto colon = s.find(':');
    auto firstDelimiter = s.find_first_of("/?#");
    bool hasScheme = colon != std::string_view::npos && colon > 0 &&
                     (firstDelimiter == std::string_view::npos || colon < firstDelimiter) && isAlpha(s[0]);
    if (hasScheme) {
        for (std::size_t i = 1; i < colon; ++i)
            if (!isAlpha(s[i]) && !isDigit(s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.') return false;
        rest = s.substr(colon + 1);
    } else if (requireScheme) {
        return false;
    }
    auto hash = rest.find('#');
    std::string_view fragment = hash == std::string_view::npos ? std::string_view() : rest.substr(hash + 1);
    if (fragment.find('#') != std::string_view::npos) return false;
    rest = rest.substr(0, hash);
    if (rest.starts_with("//")) {
        rest.remove_prefix(2);
        auto end = rest.find_first_of("/?");
        if (!checkAuthority(rest.substr(0, end))) return false;
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    }
    auto question = rest.find('?');
    std::string_view path = rest.substr(0, question);
    if (path.find_first_of("[]") != std::string_view::npos) return false;
    // In a relative reference the first segment may not contain ':' (it would read as a scheme).
    if (!hasScheme) {
        auto firstSlash = path.find('/');
        if (path.substr(0, firstSlash).find(':') != std::string_view::npos) return false;
    }
    return true;
}

bool checkUri(std::string_view s) { return checkUriReferenceImpl(s, true, false); }
bool checkUriReference(std::string_view s) { return checkUriReferenceImpl(s, false, false); }
bool checkIri(std::string_view s) { return checkUriReferenceImpl(s, true, true); }
bool checkIriReference(std::string_view s) { return checkUriReferenceImpl(s, false, true); }

bool checkJsonPointer(std::string_view s) {
    if (s.empty()) return true;
    if (s[0] != '/') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '~' && (i + 1 >= s.size() || (s[i + 1] != '0' && s[i + 1] != '1'))) return false;
    }
    return true;
}

bool checkRelativeJsonPointer(std::string_view s) {
    std::size_t pos = 0;
    while (pos < s.size() && isDigit(s[pos]))
        ++pos;
    if (pos == 0 || (pos > 1 && s[0] == '0')) return false;
    std::string_view rest = s.substr(pos);
    return rest == "#" || checkJsonPointer(rest);
}

bool checkRegex(std::string_view s) {
    int errorCode = 0;
    PCRE2_SIZE errorOffset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), PCRE2_UTF, &errorCode,
                                     &errorOffset, nullptr);
    if (!code) return false;
    pcre2_code_free(code);
    return true;
}

bool checkUriTemplate(std::string_view s) {
    bool open = false;
    for (char c : s) {
        if (c == '{') {
            if (open) return false;
            open = true;
        } else if (c == '}') {
            if (!open) return false;
            open = false;
        }
    }
    return !open;
}

} // namespace

FormatCheck findFormatCheck(std::string_view format) {
    struct Known {
        std::string_view name;
        FormatCheck check;
    };
    static constexpr Known known[] = {
        {"date-time", checkDateTime},
        {"date", checkDate},
        {"time", checkTime},
        {"email", checkEmail},
        {"idn-email", checkIdnEmail},
        {"hostname", checkHostname},
        {"idn-hostname", checkIdnHostname},
        {"ipv4", checkIpv4},
        {"ipv6", checkIpv6},
        {"uri", checkUri},
        {"uri-reference", checkUriReference},
        {"iri", checkIri},
        {"iri-reference", checkIriReference},
        {"uri-template", checkUriTemplate},
        {"json-pointer", checkJsonPointer},
        {"relative-json-pointer", checkRelativeJsonPointer},
        {"regex", checkRegex},
    };
    for (const auto& entry : known)
        if (entry.name == format) return entry.check;
    return nullptr;
}

} // namespace pipescope::schema_detail
