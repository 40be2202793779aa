#include "common/unparseable_request.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fuzz/raw_call.h"
#include "tests/testing/status_matchers.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::twopc::fuzz::RawCall;
using ::twopc::fuzz::RawResult;
using ::twopc::testing::IsOk;

// Not a message of any type: a field tag whose varint never ends.
constexpr char kGarbage[] = "\xff";

// Synchronous unary: Get answers OK, Scan fails by itself with INTERNAL.
class SyncKv final : public v1::KvService::Service {
  grpc::Status Get(grpc::ServerContext*, const v1::KvGetRequest*,
                   v1::KvGetResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status Scan(grpc::ServerContext*, const v1::KvScanRequest*,
                    v1::KvScanResponse*) override {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the disk is on fire");
  }
};

// Callback unary: Execute answers OK.
class CallbackTransactions final
    : public v1::TransactionService::CallbackService {
  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context,
                                    const v1::ExecuteRequest*,
                                    v1::ExecuteResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// Synchronous server streaming: Subscribe ends at once.
class SyncQueue final : public v1::QueueService::Service {
  grpc::Status Subscribe(grpc::ServerContext*, const v1::SubscribeRequest*,
                         grpc::ServerWriter<v1::SubscribeResponse>*) override {
    return grpc::Status::OK;
  }
};

// Bidirectional: Link reads to the end of the stream and answers OK.
class SyncLink final : public v1::ParticipantService::Service {
  grpc::Status Link(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
          stream) override {
    v1::CoordinatorBatch batch;
    while (stream->Read(&batch)) {
    }
    return grpc::Status::OK;
  }
};

class UnparseableRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<RunningServer> running = StartGrpcServer(
        "127.0.0.1:0", {&kv_, &transactions_, &queue_, &link_}, 4 << 20);
    ASSERT_THAT(running, IsOk());
    server_ = std::move(*running);
    channel_ = grpc::CreateChannel(server_.address,
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_.server != nullptr) server_.server->Shutdown();
  }

  RawResult Call(const std::string& method, const std::string& request) {
    return RawCall(channel_, method, request, absl::Seconds(10),
                   /*max_responses=*/SIZE_MAX);
  }

  SyncKv kv_;
  CallbackTransactions transactions_;
  SyncQueue queue_;
  SyncLink link_;
  RunningServer server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(UnparseableRequestTest, SynchronousUnaryIsInvalidArgumentNamingTheType) {
  const RawResult result = Call("/twopc.v1.KvService/Get", kGarbage);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(),
              AllOf(HasSubstr("/twopc.v1.KvService/Get"),
                    HasSubstr("is not a valid twopc.v1.KvGetRequest")));
}

// Callback methods are the hot path: they get no interceptor (it would cost
// every call), so gRPC's own answer stands.
TEST_F(UnparseableRequestTest, CallbackMethodsAreNotIntercepted) {
  const RawResult result =
      Call("/twopc.v1.TransactionService/Execute", kGarbage);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(result.status.error_message(), "");
}

TEST_F(UnparseableRequestTest, ServerStreamingIsInvalidArgumentNamingTheType) {
  const RawResult result = Call("/twopc.v1.QueueService/Subscribe", kGarbage);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(),
              HasSubstr("is not a valid twopc.v1.SubscribeRequest"));
  EXPECT_TRUE(result.responses.empty());
}

TEST_F(UnparseableRequestTest, ValidRequestsAndHandlerErrorsAreUntouched) {
  EXPECT_TRUE(
      Call("/twopc.v1.KvService/Get", v1::KvGetRequest().SerializeAsString())
          .status.ok());
  EXPECT_TRUE(Call("/twopc.v1.TransactionService/Execute",
                   v1::ExecuteRequest().SerializeAsString())
                  .status.ok());
  EXPECT_TRUE(Call("/twopc.v1.QueueService/Subscribe",
                   v1::SubscribeRequest().SerializeAsString())
                  .status.ok());
  // A handler's own INTERNAL (here: for a valid request) stays as it is.
  const RawResult scan =
      Call("/twopc.v1.KvService/Scan", v1::KvScanRequest().SerializeAsString());
  EXPECT_EQ(scan.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(scan.status.error_message(), "the disk is on fire");
}

// A streamed message that does not parse looks like the end of the stream,
// to the handler and to interceptors alike: the handler's answer stands.
TEST_F(UnparseableRequestTest, StreamingMethodsAreLeftToTheirHandlers) {
  EXPECT_TRUE(Call("/twopc.v1.ParticipantService/Link", kGarbage).status.ok());
}

TEST_F(UnparseableRequestTest, UnknownMethodStaysUnimplemented) {
  EXPECT_EQ(Call("/twopc.v1.KvService/Nope", kGarbage).status.error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST(UnparseableRequestMessageTest, NamesTheRequestTypeWhenKnown) {
  EXPECT_THAT(UnparseableRequestMessage("/twopc.v1.TransactionService/Commit"),
              AllOf(HasSubstr("request to /twopc.v1.TransactionService/Commit "
                              "is not a valid twopc.v1.CommitRequest"),
                    HasSubstr("send a serialised twopc.v1.CommitRequest")));
  EXPECT_THAT(UnparseableRequestMessage("/no.Such/Method"),
              HasSubstr("is not a valid request message"));
  EXPECT_THAT(UnparseableRequestMessage(""),
              HasSubstr("is not a valid request message"));
}

}  // namespace
}  // namespace twopc
