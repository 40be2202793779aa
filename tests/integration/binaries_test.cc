// Real processes: every binary answers --help, servers start on port 0,
// serve gRPC health, take a new epoch per start, and stop cleanly on signals.
#include <signal.h>
#include <sys/wait.h>

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

constexpr absl::Duration kStartTimeout = absl::Seconds(20);

std::string Bin(const std::string& name) {
  return absl::StrCat(TWOPC_BIN_DIR, "/", name);
}

// "... listening on HOST:PORT ..." -> "HOST:PORT".
std::string ListeningAddress(const std::string& line) {
  const std::string marker = "listening on ";
  const size_t start = line.find(marker) + marker.size();
  return line.substr(start, line.find(' ', start) - start);
}

int ExitCodeOf(Subprocess& process) {
  auto status = process.Wait(absl::Seconds(20));
  EXPECT_THAT(status, IsOk());
  if (!status.ok() || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

class BinariesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BinariesTest, HelpListsFlagsAndExitsZero) {
  TempDir dir;
  auto process = Subprocess::Start({Bin(GetParam()), "--help"}, dir.Sub("out"));
  ASSERT_THAT(process, IsOk());
  EXPECT_EQ(ExitCodeOf(**process), 0);
  EXPECT_THAT((*process)->Output(), HasSubstr("--"));
  EXPECT_THAT((*process)->Output(), HasSubstr(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(All, BinariesTest,
                         ::testing::Values("twopc-coordinator",
                                           "twopc-participant", "twopcctl",
                                           "twopc-bench",
                                           "twopc-example-ledger",
                                           "twopc-example-loader"));

grpc::health::v1::HealthCheckResponse::ServingStatus CheckHealth(
    const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status =
      stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST(CoordinatorProcessTest, ServesHealthAndTakesANewEpochPerStart) {
  TempDir dir;
  for (int start = 1; start <= 2; ++start) {
    auto coordinator = Subprocess::Start(
        {Bin("twopc-coordinator"), "--listen=127.0.0.1:0",
         "--data_dir=" + dir.Sub("data")},
        dir.Sub(absl::StrCat("log.", start)));
    ASSERT_THAT(coordinator, IsOk());
    auto line = (*coordinator)->WaitForLine("listening on", kStartTimeout);
    ASSERT_THAT(line, IsOk());
    EXPECT_THAT(*line, HasSubstr(absl::StrCat("(epoch ", start, ",")));
    EXPECT_EQ(CheckHealth(ListeningAddress(*line)),
              grpc::health::v1::HealthCheckResponse::SERVING);
    (*coordinator)->Signal(start == 1 ? SIGINT : SIGTERM);
    EXPECT_EQ(ExitCodeOf(**coordinator), 0);
    EXPECT_THAT((*coordinator)->Output(), HasSubstr("stopped"));
  }
}

TEST(ParticipantProcessTest, ServesHealthAndStopsOnSigterm) {
  TempDir dir;
  auto participant = Subprocess::Start(
      {Bin("twopc-participant"), "--id=p1", "--listen=127.0.0.1:0",
       "--data_dir=" + dir.Sub("p1")},
      dir.Sub("log"));
  ASSERT_THAT(participant, IsOk());
  auto line = (*participant)->WaitForLine("listening on", kStartTimeout);
  ASSERT_THAT(line, IsOk());
  EXPECT_EQ(CheckHealth(ListeningAddress(*line)),
            grpc::health::v1::HealthCheckResponse::SERVING);
  (*participant)->Signal(SIGTERM);
  EXPECT_EQ(ExitCodeOf(**participant), 0);
}

TEST(ParticipantProcessTest, RejectsABadIdWithAClearMessage) {
  TempDir dir;
  auto participant = Subprocess::Start(
      {Bin("twopc-participant"), "--id=bad id", "--listen=127.0.0.1:0",
       "--data_dir=" + dir.Sub("p")},
      dir.Sub("log"));
  ASSERT_THAT(participant, IsOk());
  EXPECT_NE(ExitCodeOf(**participant), 0);
  EXPECT_THAT((*participant)->Output(), HasSubstr("participant id (--id)"));
}

TEST(TwopcctlProcessTest, HealthReportsServingAndUnreachable) {
  TempDir dir;
  auto coordinator = Subprocess::Start(
      {Bin("twopc-coordinator"), "--listen=127.0.0.1:0",
       "--data_dir=" + dir.Sub("data")},
      dir.Sub("coordinator.log"));
  ASSERT_THAT(coordinator, IsOk());
  auto line = (*coordinator)->WaitForLine("listening on", kStartTimeout);
  ASSERT_THAT(line, IsOk());
  const std::string address = ListeningAddress(*line);

  auto json = Subprocess::Start(
      {Bin("twopcctl"), "--coordinator=" + address, "-o", "json", "health"},
      dir.Sub("json.out"));
  ASSERT_THAT(json, IsOk());
  EXPECT_EQ(ExitCodeOf(**json), 0);
  EXPECT_THAT((*json)->Output(), HasSubstr("\"status\": \"SERVING\""));

  (*coordinator)->Signal(SIGTERM);
  EXPECT_EQ(ExitCodeOf(**coordinator), 0);

  auto down = Subprocess::Start(
      {Bin("twopcctl"), "--coordinator=" + address, "--timeout=2", "health"},
      dir.Sub("down.out"));
  ASSERT_THAT(down, IsOk());
  EXPECT_EQ(ExitCodeOf(**down), 1);
  EXPECT_THAT((*down)->Output(), HasSubstr("unreachable"));

  auto usage = Subprocess::Start({Bin("twopcctl"), "no-such-command"},
                                 dir.Sub("usage.out"));
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(ExitCodeOf(**usage), 2);
}

}  // namespace
}  // namespace twopc
