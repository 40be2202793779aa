// Validation of client requests against Limits. Every function returns OK
// or INVALID_ARGUMENT with a message naming the field, the limit and what
// to do. Pure functions: no I/O, no registry lookups.
#ifndef TWOPC_COORDINATOR_REQUEST_VALIDATION_H_
#define TWOPC_COORDINATOR_REQUEST_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/limits.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_field.h"
#include "twopc/v1/common.pb.h"

namespace twopc::coordinator {

// The timeout to use: `timeout` when set and within limits, else the default.
absl::StatusOr<absl::Duration> ValidateTimeout(
    const google::protobuf::Duration& timeout, bool has_timeout,
    const Limits& limits);

absl::Status ValidateIdempotencyKey(const std::string& key,
                                    const Limits& limits);

absl::Status ValidateLabels(
    const google::protobuf::Map<std::string, std::string>& labels,
    const Limits& limits);

// One branch: participant id syntax, work present, payload and KV limits.
absl::Status ValidateBranch(const v1::Branch& branch, const Limits& limits);

// The branch list of a transaction about to commit: 1..max_branches, one per
// participant, each valid.
absl::Status ValidateBranches(
    const google::protobuf::RepeatedPtrField<v1::Branch>& branches,
    const Limits& limits);

// Message syntax and sizes (topic existence is checked by the caller).
absl::Status ValidateMessage(const v1::Message& message);

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_REQUEST_VALIDATION_H_
