#include "common/grpc_status.h"

#include <string>
#include <utility>

#include "absl/strings/cord.h"

namespace twopc {
namespace {

constexpr char kErrorInfoTypeUrl[] = "type.googleapis.com/twopc.v1.ErrorInfo";

}  // namespace

bool IsAmbiguous(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

absl::Status WithErrorInfo(absl::Status status, v1::ErrorInfo info) {
  if (status.ok()) return status;
  if (info.certainty() == v1::ErrorInfo::CERTAINTY_UNSPECIFIED) {
    info.set_certainty(IsAmbiguous(status.code())
                           ? v1::ErrorInfo::CERTAINTY_AMBIGUOUS
                           : v1::ErrorInfo::CERTAINTY_DEFINITE);
  }
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status WithErrorInfo(absl::Status status,
                           v1::ErrorInfo::Certainty certainty,
                           const std::string& reason) {
  v1::ErrorInfo info;
  info.set_certainty(certainty);
  info.set_reason(reason);
  return WithErrorInfo(std::move(status), std::move(info));
}

std::optional<v1::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  v1::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info;
}

v1::RpcStatus ToRpcStatus(const absl::Status& status) {
  v1::RpcStatus result;
  result.set_code(static_cast<int>(status.code()));
  if (status.ok()) return result;
  // Messages quote request fields; bounded, they always fit in the trailers
  // (gRPC cannot deliver a status whose trailers pass its 8 KiB limit).
  std::string message(status.message().substr(0, kMaxStatusMessageBytes));
  if (message.size() < status.message().size()) message += "...";
  result.set_message(std::move(message));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(status);
  if (info.has_value() && info->ByteSizeLong() <= kMaxStatusMessageBytes) {
    result.add_details()->PackFrom(*info);
  }
  return result;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  v1::RpcStatus details = ToRpcStatus(status);
  const auto code = static_cast<grpc::StatusCode>(details.code());
  if (details.details().empty()) return grpc::Status(code, details.message());
  return grpc::Status(code, details.message(), details.SerializeAsString());
}

absl::Status FromRpcStatus(const v1::RpcStatus& status) {
  if (status.code() == 0) return absl::OkStatus();
  absl::Status result(static_cast<absl::StatusCode>(status.code()),
                      status.message());
  for (const auto& any : status.details()) {
    v1::ErrorInfo info;
    if (any.UnpackTo(&info)) return WithErrorInfo(std::move(result), info);
  }
  return result;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  v1::RpcStatus details;
  if (status.error_details().empty() ||
      !details.ParseFromString(status.error_details())) {
    details.Clear();
  }
  details.set_code(static_cast<int>(status.error_code()));
  details.set_message(status.error_message());
  return FromRpcStatus(details);
}

}  // namespace twopc
