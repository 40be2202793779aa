// gMock matcher for the twopc.v1.ErrorInfo a status carries (common/
// grpc_status.h), on an absl::Status or a grpc::Status:
//   EXPECT_THAT(status, HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE,
//                                    "SHUTTING_DOWN"));
// Header-only: a test using it links twopc_common.
#ifndef TWOPC_TESTS_TESTING_ERROR_INFO_MATCHERS_H_
#define TWOPC_TESTS_TESTING_ERROR_INFO_MATCHERS_H_

#include <grpcpp/support/status.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "twopc/v1/common.pb.h"

namespace twopc::testing {

inline std::optional<v1::ErrorInfo> ErrorInfoOf(const absl::Status& status) {
  return GetErrorInfo(status);
}
inline std::optional<v1::ErrorInfo> ErrorInfoOf(const grpc::Status& status) {
  return GetErrorInfo(FromGrpcStatus(status));
}
inline std::string MessageOf(const absl::Status& status) {
  return std::string(status.message());
}
inline std::string MessageOf(const grpc::Status& status) {
  return status.error_message();
}

MATCHER_P2(HasErrorInfo, certainty, reason,
           "carries ErrorInfo with that certainty and reason") {
  const std::optional<v1::ErrorInfo> info = ErrorInfoOf(arg);
  if (!info.has_value()) {
    *result_listener << "no ErrorInfo (message: " << MessageOf(arg) << ")";
    return false;
  }
  *result_listener << "certainty " << info->certainty() << ", reason "
                   << info->reason();
  return info->certainty() == certainty && info->reason() == reason;
}

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_ERROR_INFO_MATCHERS_H_
