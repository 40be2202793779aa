#include "common/identifiers.h"

#include "absl/strings/ascii.h"
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
      absl::StrCat(what, " '", value.substr(0, 80), "' is invalid: use 1 to ",
                   max_length, " characters from [A-Za-z0-9._-]"));
}

}  // namespace twopc
