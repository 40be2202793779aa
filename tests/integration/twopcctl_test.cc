// The README's example session, run for real: twopcctl against a coordinator
// and two kv sidecars. Asserts on the table and JSON output and exit codes.
#include <sys/wait.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

struct CtlResult {
  int exit_code = -1;
  std::string output;
};

class TwopcctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
    ASSERT_THAT(cluster_.StartParticipant("p1"), IsOk());
    ASSERT_THAT(cluster_.StartParticipant("p2"), IsOk());
    ASSERT_THAT(cluster_.WaitForParticipants({"p1", "p2"}, absl::Seconds(30)),
                IsOk());
  }

  CtlResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        std::string(TWOPC_BIN_DIR) + "/twopcctl",
        "--coordinator=" + cluster_.coordinator_address()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto process =
        Subprocess::Start(argv, dir_.Sub(absl::StrCat("ctl.", ++runs_)));
    EXPECT_THAT(process, IsOk());
    CtlResult result;
    auto status = (*process)->Wait(absl::Seconds(30));
    EXPECT_THAT(status, IsOk());
    if (status.ok() && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
    result.output = (*process)->Output();
    return result;
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
  int runs_ = 0;
};

TEST_F(TwopcctlTest, ReadmeExampleSession) {
  CtlResult list = Ctl({"participant", "list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.output, HasSubstr("PARTICIPANT"));
  EXPECT_THAT(list.output, MatchesRegex("(.|\n)*p1 +127.0.0.1:[0-9]+ +kv +HEALTHY +up(.|\n)*"));

  CtlResult seed = Ctl({"txn", "exec", "--op", "p1 put balance/alice 100",
                        "--op", "p2 put balance/bob 0"});
  EXPECT_EQ(seed.exit_code, 0) << seed.output;
  EXPECT_THAT(seed.output, HasSubstr("COMMITTED"));

  // The sidecars release their locks when phase 2 is delivered; a transfer
  // that conflicts with it votes NO, so retry a few times (as clients do).
  CtlResult transfer;
  for (int attempt = 0; attempt < 50; ++attempt) {
    transfer = Ctl({"txn", "exec", "--key", "transfer-1", "--op",
                    "p1 add balance/alice -30 min=0", "--op",
                    "p2 add balance/bob 30"});
    if (transfer.exit_code == 0) break;
  }
  EXPECT_EQ(transfer.exit_code, 0) << transfer.output;

  CtlResult overdraft = Ctl({"txn", "exec", "--op",
                             "p1 add balance/alice -300 min=0", "--op",
                             "p2 add balance/bob 300"});
  EXPECT_EQ(overdraft.exit_code, 4);
  EXPECT_THAT(overdraft.output, HasSubstr("voted NO"));
  EXPECT_THAT(overdraft.output, HasSubstr("below the minimum 0"));

  CtlResult bob;
  for (int attempt = 0; attempt < 50; ++attempt) {
    bob = Ctl({"kv", "get", "--sidecar", cluster_.participant_address("p2"),
               "balance/bob"});
    if (bob.output == "30\n") break;
  }
  EXPECT_EQ(bob.output, "30\n");

  CtlResult by_key = Ctl({"-o", "json", "txn", "get", "--by-key", "transfer-1"});
  EXPECT_EQ(by_key.exit_code, 0);
  EXPECT_THAT(by_key.output, HasSubstr("\"outcome\": \"OUTCOME_COMMITTED\""));

  CtlResult stats = Ctl({"-o", "json", "stats"});
  EXPECT_EQ(stats.exit_code, 0);
  EXPECT_THAT(stats.output, HasSubstr("\"committed_total\""));

  CtlResult topic = Ctl({"topic", "create", "transfers", "--partitions", "2"});
  EXPECT_EQ(topic.exit_code, 0) << topic.output;
  CtlResult with_message;
  for (int attempt = 0; attempt < 50; ++attempt) {
    with_message = Ctl({"txn", "exec", "--op", "p1 add balance/alice -5 min=0",
                        "--op", "p2 add balance/bob 5", "--msg",
                        "transfers:1 alice->bob 5"});
    if (with_message.exit_code == 0) break;
  }
  EXPECT_EQ(with_message.exit_code, 0) << with_message.output;
  EXPECT_THAT(with_message.output, HasSubstr("transfers"));
  CtlResult consumed = Ctl({"consume", "transfers", "--partition", "1"});
  EXPECT_EQ(consumed.exit_code, 0);
  EXPECT_THAT(consumed.output,
              MatchesRegex("(.|\n)*0 +[0-9]+-[0-9]+ +alice->bob +5\n"));
  CtlResult described = Ctl({"topic", "describe", "transfers"});
  EXPECT_THAT(described.output, MatchesRegex("(.|\n)*1 +0 +1\n"));
  CtlResult no_topic = Ctl({"txn", "exec", "--op", "p1 put x 1", "--msg",
                            "nowhere k v"});
  EXPECT_EQ(no_topic.exit_code, 3);
  EXPECT_THAT(no_topic.output, HasSubstr("topic create"));

  // An open interactive transaction is listed until it finishes.
  grpc::ClientContext begin_context;
  v1::BeginRequest begin;
  begin.mutable_timeout()->set_seconds(60);
  v1::BeginResponse begun;
  ASSERT_TRUE(cluster_.Transactions()->Begin(&begin_context, begin, &begun).ok());
  CtlResult listed = Ctl({"txn", "list", "--state", "active"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output,
              MatchesRegex("(.|\n)*" + begun.transaction_id() +
                           " +ACTIVE +PENDING +no(.|\n)*"));
  CtlResult parked = Ctl({"txn", "list", "--parked"});
  EXPECT_THAT(parked.output, ::testing::Not(HasSubstr(begun.transaction_id())));
  EXPECT_EQ(Ctl({"txn", "list", "--state", "nonsense"}).exit_code, 2);

  CtlResult missing = Ctl({"txn", "get", "12345-1"});
  EXPECT_EQ(missing.exit_code, 3);
  CtlResult usage = Ctl({"txn", "exec", "--op", "p1 frobnicate k"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.output, HasSubstr("unknown operation"));
}

// The benchmark tool works end to end (figures are not asserted: see the
// README's benchmark section for how they are measured).
TEST_F(TwopcctlTest, BenchQueueRuns) {
  auto bench = Subprocess::Start(
      {std::string(TWOPC_BIN_DIR) + "/twopc-bench", "--json", "queue",
       "--coordinator=" + cluster_.coordinator_address(), "--participant=p1",
       "--messages=3000", "--latency_samples=5"},
      dir_.Sub("bench.out"));
  ASSERT_THAT(bench, IsOk());
  auto status = (*bench)->Wait(absl::Seconds(60));
  ASSERT_THAT(status, IsOk());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (*bench)->Output();
  EXPECT_THAT((*bench)->Output(), HasSubstr("\"fetch_messages_per_second\""));
}

}  // namespace
}  // namespace twopc
