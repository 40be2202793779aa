// Validation of the identifiers named in proto/twopc/v1/common.proto.
#ifndef TWOPC_COMMON_IDENTIFIERS_H_
#define TWOPC_COMMON_IDENTIFIERS_H_

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace twopc {

// OK when `value` matches [A-Za-z0-9._-]{1,max_length}; otherwise
// INVALID_ARGUMENT naming `what` (e.g. "participant id") and the rule.
absl::Status ValidateIdentifier(absl::string_view what, absl::string_view value,
                                size_t max_length = 64);

}  // namespace twopc

#endif  // TWOPC_COMMON_IDENTIFIERS_H_
