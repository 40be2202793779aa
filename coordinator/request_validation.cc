#include "coordinator/request_validation.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/identifiers.h"
#include "common/status_macros.h"

namespace twopc::coordinator {
namespace {

absl::Status TooLarge(absl::string_view what, size_t size, size_t limit) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, " is ", size, " bytes; the limit is ", limit, " bytes"));
}

absl::Status ValidateKvOperation(const v1::KvOperation& op, int index,
                                 const Limits& limits) {
  const std::string where = absl::StrCat("kv operation ", index);
  const std::string* key = nullptr;
  switch (op.op_case()) {
    case v1::KvOperation::kPut:
      key = &op.put().key();
      if (op.put().value().size() > limits.max_kv_value_bytes) {
        return TooLarge(where + " value", op.put().value().size(),
                        limits.max_kv_value_bytes);
      }
      break;
    case v1::KvOperation::kDelete:
      key = &op.delete_().key();
      break;
    case v1::KvOperation::kAdd:
      key = &op.add().key();
      if (op.add().has_min() && op.add().has_max() &&
          op.add().min() > op.add().max()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": add bounds are empty (min > max)"));
      }
      break;
    case v1::KvOperation::kExpect:
      key = &op.expect().key();
      if (op.expect().condition_case() ==
          v1::KvOperation::Expect::CONDITION_NOT_SET) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": expect needs a value or absent=true"));
      }
      if (op.expect().value().size() > limits.max_kv_value_bytes) {
        return TooLarge(where + " expected value", op.expect().value().size(),
                        limits.max_kv_value_bytes);
      }
      break;
    case v1::KvOperation::OP_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat(where, " has no operation (put, delete, add, expect)"));
  }
  if (key->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has an empty key"));
  }
  if (key->size() > limits.max_kv_key_bytes) {
    return TooLarge(where + " key", key->size(), limits.max_kv_key_bytes);
  }
  return absl::OkStatus();
}

}  // namespace

std::map<std::string, std::string> Limits::Describe() const {
  return {
      {"max_branches", absl::StrCat(max_branches)},
      {"max_messages", absl::StrCat(max_messages)},
      {"max_branch_bytes", absl::StrCat(max_branch_bytes)},
      {"max_transaction_bytes", absl::StrCat(max_transaction_bytes)},
      {"max_kv_operations", absl::StrCat(max_kv_operations)},
      {"max_kv_key_bytes", absl::StrCat(max_kv_key_bytes)},
      {"max_kv_value_bytes", absl::StrCat(max_kv_value_bytes)},
      {"default_timeout", absl::FormatDuration(default_timeout)},
      {"max_timeout", absl::FormatDuration(max_timeout)},
      {"max_idempotency_key_bytes", absl::StrCat(max_idempotency_key_bytes)},
      {"max_labels", absl::StrCat(max_labels)},
      {"max_inflight", absl::StrCat(max_inflight)},
      {"max_execute_streams", absl::StrCat(max_execute_streams)},
  };
}

absl::StatusOr<absl::Duration> ValidateTimeout(
    const google::protobuf::Duration& timeout, bool has_timeout,
    const Limits& limits) {
  if (!has_timeout) return limits.default_timeout;
  const absl::Duration d =
      absl::Seconds(timeout.seconds()) + absl::Nanoseconds(timeout.nanos());
  if (d <= absl::ZeroDuration() || d > limits.max_timeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "timeout ", absl::FormatDuration(d), " is out of range: use more than 0 "
        "and at most ", absl::FormatDuration(limits.max_timeout),
        " (or leave it unset for ", absl::FormatDuration(limits.default_timeout),
        ")"));
  }
  return d;
}

absl::Status ValidateIdempotencyKey(const std::string& key,
                                    const Limits& limits) {
  if (key.size() > limits.max_idempotency_key_bytes) {
    return TooLarge("idempotency_key", key.size(),
                    limits.max_idempotency_key_bytes);
  }
  for (char c : key) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "idempotency_key must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(
    const google::protobuf::Map<std::string, std::string>& labels,
    const Limits& limits) {
  if (static_cast<int>(labels.size()) > limits.max_labels) {
    return absl::InvalidArgumentError(absl::StrCat(
        labels.size(), " labels; the limit is ", limits.max_labels));
  }
  for (const auto& [key, value] : labels) {
    RETURN_IF_ERROR(ValidateIdentifier("label key", key));
    RETURN_IF_ERROR(ValidateIdentifier("label value", value));
  }
  return absl::OkStatus();
}

absl::Status ValidateBranch(const v1::Branch& branch, const Limits& limits) {
  RETURN_IF_ERROR(
      ValidateIdentifier("branch participant_id", branch.participant_id()));
  const std::string where = absl::StrCat("branch for ", branch.participant_id());
  switch (branch.work_case()) {
    case v1::Branch::kPayload:
      if (branch.payload().size() > limits.max_branch_bytes) {
        return TooLarge(where + " payload", branch.payload().size(),
                        limits.max_branch_bytes);
      }
      return absl::OkStatus();
    case v1::Branch::kKv: {
      const auto& ops = branch.kv().operations();
      if (ops.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " has no kv operations"));
      }
      if (ops.size() > limits.max_kv_operations) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " has ", ops.size(),
                         " kv operations; the limit is ",
                         limits.max_kv_operations));
      }
      if (branch.kv().ByteSizeLong() > limits.max_branch_bytes) {
        return TooLarge(where, branch.kv().ByteSizeLong(),
                        limits.max_branch_bytes);
      }
      for (int i = 0; i < ops.size(); ++i) {
        absl::Status s = ValidateKvOperation(ops[i], i, limits);
        if (!s.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": ", s.message()));
        }
      }
      return absl::OkStatus();
    }
    case v1::Branch::WORK_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat(where, " has no work: set kv or payload"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBranches(
    const google::protobuf::RepeatedPtrField<v1::Branch>& branches,
    const Limits& limits) {
  if (branches.empty()) {
    return absl::InvalidArgumentError(
        "the transaction has no branch: add at least one");
  }
  if (branches.size() > limits.max_branches) {
    return absl::InvalidArgumentError(
        absl::StrCat(branches.size(), " branches; the limit is ",
                     limits.max_branches, " (one per participant)"));
  }
  std::set<std::string> seen;
  for (const v1::Branch& branch : branches) {
    RETURN_IF_ERROR(ValidateBranch(branch, limits));
    if (!seen.insert(branch.participant_id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "two branches for participant ", branch.participant_id(),
          ": put all of a participant's work into one branch"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMessage(const v1::Message& message) {
  RETURN_IF_ERROR(ValidateIdentifier("message topic", message.topic(), 128));
  if (message.key().size() > 1024) {
    return TooLarge("message key", message.key().size(), 1024);
  }
  if (message.value().size() > (1 << 20)) {
    return TooLarge("message value", message.value().size(), 1 << 20);
  }
  if (message.headers_size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message has ", message.headers_size(), " headers; the limit is 64"));
  }
  for (const v1::Header& header : message.headers()) {
    if (header.key().empty() || header.key().size() > 256) {
      return absl::InvalidArgumentError("header keys must be 1..256 bytes");
    }
    if (header.value().size() > (64 << 10)) {
      return TooLarge("header value", header.value().size(), 64 << 10);
    }
  }
  if (message.has_partition() && message.partition() < 0) {
    return absl::InvalidArgumentError("message partition must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace twopc::coordinator
