// Helpers for absl::Status plumbing (Debian's abseil has no status macros).
#ifndef TWOPC_COMMON_STATUS_MACROS_H_
#define TWOPC_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TWOPC_CONCAT_INNER_(a, b) a##b
#define TWOPC_CONCAT_(a, b) TWOPC_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status _twopc_status = (expr);     \
    if (!_twopc_status.ok()) return _twopc_status; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on
// error returns its status, otherwise assigns the value to `lhs`, which may
// be a declaration such as `auto x`.
#define ASSIGN_OR_RETURN(lhs, expr) \
  TWOPC_ASSIGN_OR_RETURN_IMPL_(TWOPC_CONCAT_(_twopc_or_, __LINE__), lhs, expr)

#define TWOPC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

#endif  // TWOPC_COMMON_STATUS_MACROS_H_
