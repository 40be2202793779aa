#include "common/grpc_status.h"

#include "gtest/gtest.h"

namespace twopc {
namespace {

TEST(GrpcStatusTest, AmbiguousCodesAreExactlyTheDocumentedOnes) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    const bool expected = code == absl::StatusCode::kUnavailable ||
                          code == absl::StatusCode::kDeadlineExceeded ||
                          code == absl::StatusCode::kCancelled ||
                          code == absl::StatusCode::kUnknown ||
                          code == absl::StatusCode::kInternal;
    EXPECT_EQ(IsAmbiguous(code), expected) << absl::StatusCodeToString(code);
  }
}

TEST(GrpcStatusTest, ErrorInfoSurvivesTheRoundTrip) {
  v1::ErrorInfo info;
  info.set_reason("PARTICIPANT_UNKNOWN");
  info.set_participant_id("inventory");
  const absl::Status original = WithErrorInfo(
      absl::NotFoundError("participant inventory is not registered"), info);

  const grpc::Status wire = ToGrpcStatus(original);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(wire.error_message(), "participant inventory is not registered");
  EXPECT_FALSE(wire.error_details().empty());

  const absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.message(), original.message());
  const std::optional<v1::ErrorInfo> got = GetErrorInfo(back);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->reason(), "PARTICIPANT_UNKNOWN");
  EXPECT_EQ(got->participant_id(), "inventory");
  EXPECT_EQ(got->certainty(), v1::ErrorInfo::CERTAINTY_DEFINITE);
}

// A status inside a message (ExecuteStream's results) carries the same.
TEST(GrpcStatusTest, RpcStatusCarriesCodeMessageAndErrorInfo) {
  v1::ErrorInfo info;
  info.set_reason("VOTED_NO");
  info.set_participant_id("b");
  const absl::Status original =
      WithErrorInfo(absl::AbortedError("participant b voted NO"), info);
  const v1::RpcStatus message = ToRpcStatus(original);
  EXPECT_EQ(message.code(), static_cast<int>(grpc::StatusCode::ABORTED));
  EXPECT_EQ(message.message(), "participant b voted NO");
  const absl::Status back = FromRpcStatus(message);
  EXPECT_EQ(back.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(back.message(), original.message());
  ASSERT_TRUE(GetErrorInfo(back).has_value());
  EXPECT_EQ(GetErrorInfo(back)->reason(), "VOTED_NO");
  EXPECT_EQ(GetErrorInfo(back)->participant_id(), "b");

  EXPECT_EQ(ToRpcStatus(absl::OkStatus()).code(), 0);
  EXPECT_TRUE(FromRpcStatus(v1::RpcStatus()).ok());
  EXPECT_EQ(ToRpcStatus(absl::NotFoundError(std::string(1 << 20, 'm')))
                .message()
                .size(),
            kMaxStatusMessageBytes + 3);
}

TEST(GrpcStatusTest, CertaintyDefaultsFromTheCode) {
  const absl::Status status =
      WithErrorInfo(absl::UnavailableError("link down"), v1::ErrorInfo());
  EXPECT_EQ(GetErrorInfo(status)->certainty(),
            v1::ErrorInfo::CERTAINTY_AMBIGUOUS);
}

// A certainty given explicitly wins over the code's: a shutdown's
// UNAVAILABLE can be definite.
TEST(GrpcStatusTest, CertaintyAndReasonGivenExplicitly) {
  const absl::Status status =
      WithErrorInfo(absl::UnavailableError("shutting down"),
                    v1::ErrorInfo::CERTAINTY_DEFINITE, "SHUTTING_DOWN");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "shutting down");
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->certainty(),
            v1::ErrorInfo::CERTAINTY_DEFINITE);
  EXPECT_EQ(GetErrorInfo(status)->reason(), "SHUTTING_DOWN");
}

TEST(GrpcStatusTest, PlainStatusesConvertWithoutDetails) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status wire = ToGrpcStatus(absl::AbortedError("voted no"));
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_TRUE(wire.error_details().empty());
  EXPECT_FALSE(GetErrorInfo(FromGrpcStatus(wire)).has_value());
}

TEST(GrpcStatusTest, LongMessagesAreCutSoTheStatusAlwaysArrives) {
  const std::string huge(1 << 20, 'm');
  grpc::Status status = ToGrpcStatus(absl::NotFoundError(huge));
  EXPECT_EQ(status.error_message().size(), kMaxStatusMessageBytes + 3);
  EXPECT_EQ(status.error_message().substr(kMaxStatusMessageBytes), "...");
  v1::ErrorInfo info;
  info.set_participant_id(huge);
  grpc::Status with_info =
      ToGrpcStatus(WithErrorInfo(absl::NotFoundError("short"), info));
  EXPECT_EQ(with_info.error_message(), "short");
  EXPECT_TRUE(with_info.error_details().empty());
}

}  // namespace
}  // namespace twopc
