// twopc-example-loader (examples/stream_loader), the client library's
// example, against a real cluster: its transactions commit, running it again
// commits nothing new (idempotency keys), and with no coordinator every
// transaction fails as not started.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/kv.grpc.pb.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

using LoaderResult = ::twopc::testing::ProcessResult;

class ExampleLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartWithSidecars({"p1", "p2"}), IsOk());
  }

  LoaderResult Load(const std::string& address, int transactions,
                    int wait_seconds = 20) {
    std::vector<std::string> argv = {
        std::string(TWOPC_BIN_DIR) + "/twopc-example-loader",
        "--coordinator=" + address,
        "--participants=p1,p2",
        absl::StrCat("--transactions=", transactions),
        "--threads=4",
        "--prefix=load/",
        "--settle_seconds=5",
        absl::StrCat("--wait_seconds=", wait_seconds)};
    auto result = Subprocess::Run(
        argv, dir_.Sub(absl::StrCat("loader.", ++runs_)), absl::Seconds(60));
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : LoaderResult();
  }

  uint64_t CommittedTotal() {
    grpc::ClientContext context;
    v1::Stats stats;
    EXPECT_TRUE(cluster_.Admin()
                    ->GetStats(&context, v1::GetStatsRequest(), &stats)
                    .ok());
    return stats.committed_total();
  }

  std::string Value(const std::string& participant, const std::string& key) {
    grpc::ClientContext context;
    v1::KvGetRequest request;
    request.set_key(key);
    v1::KvGetResponse response;
    EXPECT_TRUE(
        cluster_.Kv(participant)->Get(&context, request, &response).ok());
    return response.found() ? response.value() : "(not found)";
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
  int runs_ = 0;
};

TEST_F(ExampleLoaderTest, LoadsOnceAndSettlesNothingTwice) {
  LoaderResult first = Load(cluster_.coordinator_address(), 300);
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, MatchesRegex("(.|\n)*committed +300\n(.|\n)*"));
  EXPECT_EQ(CommittedTotal(), 300u);
  EXPECT_EQ(Value("p1", "load/7"), "value-7");
  EXPECT_EQ(Value("p2", "load/299"), "value-299");

  // The same keys again: each names its first transaction, which is
  // answered again; nothing new commits.
  LoaderResult again = Load(cluster_.coordinator_address(), 300);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, MatchesRegex("(.|\n)*committed +300\n(.|\n)*"));
  EXPECT_EQ(CommittedTotal(), 300u);
}

TEST_F(ExampleLoaderTest, WithoutACoordinatorNothingStarts) {
  cluster_.Kill(LocalCluster::kCoordinator);
  // Sent again and again until the deadline, then given up as not sent.
  LoaderResult result =
      Load(cluster_.coordinator_address(), 20, /*wait_seconds=*/1);
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(result.output,
              MatchesRegex("(.|\n)*failed, not started +20\n(.|\n)*"));
  EXPECT_THAT(result.output, HasSubstr("not sent"));
}

}  // namespace
}  // namespace twopc
