// Conversion between absl::Status (used inside twopc) and grpc::Status (used
// only at service edges), carrying twopc.v1.ErrorInfo details both ways.
#ifndef TWOPC_COMMON_GRPC_STATUS_H_
#define TWOPC_COMMON_GRPC_STATUS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "twopc/v1/common.pb.h"

namespace twopc {

// True for the codes whose outcome is unknown (see proto/twopc/v1/common.proto):
// UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, INTERNAL.
bool IsAmbiguous(absl::StatusCode code);

// Returns `status` with `info` attached (replacing any earlier ErrorInfo).
// Certainty is filled from the code when `info` leaves it unspecified.
absl::Status WithErrorInfo(absl::Status status, v1::ErrorInfo info);

// Returns `status` with an ErrorInfo of just `certainty` and `reason`.
absl::Status WithErrorInfo(absl::Status status,
                           v1::ErrorInfo::Certainty certainty,
                           const std::string& reason);

// The ErrorInfo attached to `status`, if any.
std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status);

// Status messages sent to clients are cut to this many bytes (plus "...").
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// absl -> twopc.v1.RpcStatus (a status inside a message, e.g. one result of
// ExecuteStream): same code and message (cut to kMaxStatusMessageBytes),
// and the ErrorInfo in `details` unless it is larger than that.
v1::RpcStatus ToRpcStatus(const absl::Status& status);

// absl -> gRPC: same code and message (cut to kMaxStatusMessageBytes); an
// attached ErrorInfo travels in the error details as a twopc.v1.RpcStatus
// unless it is larger than that (then it is dropped).
grpc::Status ToGrpcStatus(const absl::Status& status);

// For unary handlers: moves an OK result into `*response`, or converts the
// error with ToGrpcStatus.
template <typename Response>
grpc::Status ReplyWith(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

// gRPC -> absl: the inverse of ToGrpcStatus (ErrorInfo restored when present).
absl::Status FromGrpcStatus(const grpc::Status& status);

// twopc.v1.RpcStatus -> absl: the inverse of ToRpcStatus.
absl::Status FromRpcStatus(const v1::RpcStatus& status);

}  // namespace twopc

#endif  // TWOPC_COMMON_GRPC_STATUS_H_
