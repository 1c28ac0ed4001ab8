#include "uri.h"

namespace pipescope::schema_detail {

namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string mergePaths(const UriParts& base, std::string_view refPath) {
    if (base.hasAuthority && base.path.empty()) return "/" + std::string(refPath);
    auto slash = base.path.rfind('/');
    if (slash == std::string::npos) return std::string(refPath);
    return base.path.substr(0, slash + 1) + std::string(refPath);
}

} // namespace

UriParts parseUriReference(std::string_view text) {
    UriParts parts;
    // The scheme is only a scheme when it comes before any '/', '?' or '#' ("a/b:c" is a path).
    auto colon = text.find(':');
    if (colon != std::string_view::npos && colon > 0 && isAlpha(text[0])) {
        bool valid = true;
        for (std::size_t i = 1; i < colon; ++i) {
            char c = text[i];
            if (!isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.') {
                valid = false;
                break;
            }
        }
        if (valid) {
            parts.hasScheme = true;
            parts.scheme = std::string(text.substr(0, colon));
            text.remove_prefix(colon + 1);
        }
    }
    if (auto hash = text.find('#'); hash != std::string_view::npos) {
        parts.hasFragment = true;
        parts.fragment = std::string(text.substr(hash + 1));
        text = text.substr(0, hash);
    }
    if (auto question = text.find('?'); question != std::string_view::npos) {
        parts.hasQuery = true;
        parts.query = std::string(text.substr(question + 1));
        text = text.substr(0, question);
    }
    if (text.substr(0, 2) == "//") {
        text.remove_prefix(2);
        auto end = text.find('/');
        parts.hasAuthority = true;
        parts.authority = std::string(text.substr(0, end));
        text = end == std::string_view::npos ? std::string_view() : text.substr(end);
    }
    parts.path = std::string(text);
    return parts;
}

std::string composeUri(const UriParts& parts) {
    std::string out;
    if (parts.hasScheme) out += parts.scheme + ":";
    if (parts.hasAuthority) out += "//" + parts.authority;
    out += parts.path;
    if (parts.hasQuery) out += "?" + parts.query;
    if (parts.hasFragment) out += "#" + parts.fragment;
    return out;
}

std::string removeDotSegments(std::string_view input) {
    // RFC 3986 section 5.2.4, literally.
    std::string in(input);
    std::string out;
    while (!in.empty()) {
        if (in.starts_with("../")) {
            in.erase(0, 3);
        } else if (in.starts_with("./")) {
            in.erase(0, 2);
        } else if (in.starts_with("/./")) {
            in.erase(0, 2);
        } else if (in == "/.") {
            in = "/";
        } else if (in.starts_with("/../") || in == "/..") {
            if (in == "/..")
                in = "/";
            else
                in.erase(0, 3);
            auto slash = out.rfind('/');
            out.erase(slash == std::string::npos ? 0 : slash);
        } else if (in == "." || in == "..") {
            in.clear();
        } else {
            std::size_t start = in[0] == '/' ? 1 : 0;
            auto next = in.find('/', start);
            if (next == std::string::npos) next = in.size();
            out += in.substr(0, next);
            in.erase(0, next);
        }
    }
    return out;
}

std::string resolveUri(std::string_view base, std::string_view reference) {
    UriParts ref = parseUriReference(reference);
    UriParts b = parseUriReference(base);
    UriParts target;
    if (ref.hasScheme) {
        target = ref;
        target.path = removeDotSegments(ref.path);
    } else {
        if (ref.hasAuthority) {
            target.hasAuthority = true;
            target.authority = ref.authority;
            target.path = removeDotSegments(ref.path);
            target.hasQuery = ref.hasQuery;
            target.query = ref.query;
        } else {
            if (ref.path.empty()) {
                target.path = b.path;
                target.hasQuery = ref.hasQuery || b.hasQuery;
                target.query = ref.hasQuery ? ref.query : b.query;
            } else {
                target.path = ref.path.starts_with('/') ? removeDotSegments(ref.path)
                                                         : removeDotSegments(mergePaths(b, ref.path));
                target.hasQuery = ref.hasQuery;
                target.query = ref.query;
            }
            target.hasAuthority = b.hasAuthority;
            target.authority = b.authority;
        }
        target.hasScheme = b.hasScheme;
        target.scheme = b.scheme;
    }
    target.hasFragment = ref.hasFragment;
    target.fragment = ref.fragment;
    return composeUri(target);
}

std::string_view uriWithoutFragment(std::string_view uri) {
    auto hash = uri.find('#');
    return hash == std::string_view::npos ? uri : uri.substr(0, hash);
}

std::string_view uriFragment(std::string_view uri) {
    auto hash = uri.find('#');
    return hash == std::string_view::npos ? std::string_view() : uri.substr(hash + 1);
}

std::string percentDecode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            int hi = hexValue(text[i + 1]);
            int lo = hexValue(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += text[i];
    }
    return out;
}

std::string percentEncodePath(std::string_view path) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : path) {
        if (isAlpha(static_cast<char>(c)) || isDigit(static_cast<char>(c)) || c == '-' || c == '.' || c == '_' ||
            c == '~' || c == '/') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

} // namespace pipescope::schema_detail
