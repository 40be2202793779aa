// Validation of the identifiers named in proto/twopc/v1/common.proto, and
// quoting of client-provided fields in error messages.
#ifndef TWOPC_COMMON_IDENTIFIERS_H_
#define TWOPC_COMMON_IDENTIFIERS_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace twopc {

// OK when `value` matches [A-Za-z0-9._-]{1,max_length}; otherwise
// INVALID_ARGUMENT naming `what` (e.g. "participant id"), the value (quoted
// with QuoteField) and the rule.
absl::Status ValidateIdentifier(absl::string_view what, absl::string_view value,
                                size_t max_length = 64);

// The most bytes of a field QuoteField shows.
inline constexpr size_t kMaxQuotedBytes = 80;

// `value` for an error message: in single quotes, with quotes, backslashes
// and bytes outside printable ASCII C-escaped (\', \\, \n, \xff). A value
// longer than `max_bytes` is cut to its first `max_bytes` bytes, followed by
// "..." and its real length: 'mmmm...' (1048576 bytes).
//
// Every handler quotes request fields through this, so that a huge field
// cannot push the rest of the message (what to do) past the cap that
// ToGrpcStatus (common/grpc_status.h) puts on every status message.
std::string QuoteField(absl::string_view value,
                       size_t max_bytes = kMaxQuotedBytes);

}  // namespace twopc

#endif  // TWOPC_COMMON_IDENTIFIERS_H_
