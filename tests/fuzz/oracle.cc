#include "tests/fuzz/oracle.h"

#include <cstdlib>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace twopc::fuzz {
namespace {

using grpc::StatusCode;

std::string Show(const grpc::Status& status) {
  const std::string& message = status.error_message();
  return absl::StrCat(
      "code ", status.error_code(), " message \"",
      message.size() > 200 ? message.substr(0, 200) + "..." : message, "\"");
}

// What is unclean about `result`; empty when it is a clean answer.
std::string Finding(const CallFacts& facts, const RawResult& result) {
  if (facts.response_type != nullptr) {
    for (const std::string& response : result.responses) {
      std::unique_ptr<google::protobuf::Message> parsed(
          facts.response_type->New());
      if (!parsed->ParseFromString(response)) {
        return absl::StrCat("a response does not parse as ",
                            facts.response_type->GetTypeName());
      }
    }
  }
  const grpc::Status& status = result.status;
  if (status.ok()) return "";
  // This side cancels a stream after its first response.
  if (!result.responses.empty() &&
      status.error_code() == StatusCode::CANCELLED) {
    return "";
  }
  if (facts.may_wait && status.error_code() == StatusCode::DEADLINE_EXCEEDED) {
    return "";
  }
  // gRPC's client-side wording for a status it could not receive (its
  // trailers passed the 8 KiB metadata limit).
  if (status.error_code() == StatusCode::RESOURCE_EXHAUSTED &&
      absl::StartsWith(status.error_message(), "received ") &&
      absl::EndsWith(status.error_message(), " metadata size exceeds limit")) {
    return absl::StrCat("an error too large to deliver: ", Show(status));
  }
  if (!IsRejection(status.error_code())) {
    return absl::StrCat("not a clean error code: ", Show(status));
  }
  if (status.error_message().empty()) {
    return absl::StrCat("an error without a message: ", Show(status));
  }
  return "";
}

}  // namespace

bool IsRejection(StatusCode code) {
  switch (code) {
    case StatusCode::INVALID_ARGUMENT:
    case StatusCode::NOT_FOUND:
    case StatusCode::FAILED_PRECONDITION:
    case StatusCode::OUT_OF_RANGE:
    case StatusCode::RESOURCE_EXHAUSTED:
    case StatusCode::ALREADY_EXISTS:
    case StatusCode::ABORTED:
      return true;
    default:
      return false;
  }
}

Verdict Judge(const CallFacts& facts, const RawResult& result) {
  Verdict verdict;
  verdict.finding = Finding(facts, result);
  return verdict;
}

}  // namespace twopc::fuzz
