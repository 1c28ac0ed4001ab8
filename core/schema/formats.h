#pragma once
// Checks for the draft 7 "format" values. Unknown formats have no checker (they are annotations).

#include <string_view>

namespace pipescope::schema_detail {

using FormatCheck = bool (*)(std::string_view);

// nullptr for a format this validator does not know (ignored, as draft 7 allows).
FormatCheck findFormatCheck(std::string_view format);

} // namespace pipescope::schema_detail
