#pragma once
// Just enough RFC 3986 for "$id" and "$ref": splitting a URI reference into its components and
// resolving it against a base (section 5.2). No normalisation beyond dot-segment removal, because
// schemas are matched by the exact URI text they were given under.

#include <string>
#include <string_view>

namespace pipescope::schema_detail {

struct UriParts {
    std::string scheme;
    std::string authority;
    std::string path;
    std::string query;
    std::string fragment;
    bool hasScheme = false;
    bool hasAuthority = false;
    bool hasQuery = false;
    bool hasFragment = false;
};

UriParts parseUriReference(std::string_view text);
std::string composeUri(const UriParts& parts);
std::string removeDotSegments(std::string_view path);
// RFC 3986 section 5.2.2; works for any base (also "urn:" ones and a relative or empty base).
std::string resolveUri(std::string_view base, std::string_view reference);
// The URI without its fragment, and the fragment without '#' (empty when there is none).
std::string_view uriWithoutFragment(std::string_view uri);
std::string_view uriFragment(std::string_view uri);
// "%25" -> "%"; malformed escapes are kept as they are.
std::string percentDecode(std::string_view text);
// Escapes everything but unreserved characters and '/', for turning a file path into a URI path.
std::string percentEncodePath(std::string_view path);

} // namespace pipescope::schema_detail
