#include "common/identifiers.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace twopc {

absl::Status ValidateIdentifier(absl::string_view what, absl::string_view value,
                                size_t max_length) {
  bool ok = !value.empty() && value.size() <= max_length;
  for (char c : value) {
    ok &= absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-';
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " ", QuoteField(value), " is invalid: use 1 to ",
                   max_length, " characters from [A-Za-z0-9._-]"));
}

std::string QuoteField(absl::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) {
    return absl::StrCat("'", absl::CHexEscape(value), "'");
  }
  return absl::StrCat("'", absl::CHexEscape(value.substr(0, max_bytes)),
                      "...' (", value.size(), " bytes)");
}

}  // namespace twopc
