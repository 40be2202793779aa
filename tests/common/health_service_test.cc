#include "common/health_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/grpc_server.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace twopc {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using ::twopc::testing::IsOk;

// Every twopc server serves the health service (StartGrpcServer).
class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<RunningServer> running =
        StartGrpcServer("127.0.0.1:0", {}, 4 << 20);
    ASSERT_THAT(running, IsOk());
    server_ = std::move(*running);
    stub_ = Health::NewStub(grpc::CreateChannel(
        server_.address, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_.server != nullptr) {
      server_.server->Shutdown(absl::ToChronoTime(absl::Now()));
    }
  }

  RunningServer server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, TheWholeServerIsServing) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  HealthCheckResponse response;
  ASSERT_TRUE(stub_->Check(&context, HealthCheckRequest(), &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
}

TEST_F(HealthServiceTest, AnyOtherServiceIsNotFound) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  HealthCheckRequest request;
  request.set_service("twopc.v1.NoSuchService");
  HealthCheckResponse response;
  EXPECT_EQ(stub_->Check(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(HealthServiceTest, WatchReportsOnceAndHoldsTheCallUntilCancelled) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto reader = stub_->Watch(&context, HealthCheckRequest());
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  context.TryCancel();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(HealthServiceTest, WatchOfAnotherServiceReportsItUnknown) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  HealthCheckRequest request;
  request.set_service("twopc.v1.NoSuchService");
  auto reader = stub_->Watch(&context, request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  context.TryCancel();
}

// An open Watch must not hold up the server's shutdown past its deadline.
TEST_F(HealthServiceTest, AnOpenWatchEndsWhenTheServerShutsDown) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto reader = stub_->Watch(&context, HealthCheckRequest());
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  server_.server->Shutdown(absl::ToChronoTime(absl::Now()));
  server_.server->Wait();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_NE(reader->Finish().error_code(), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace twopc
