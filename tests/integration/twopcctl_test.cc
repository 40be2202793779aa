// The README's example session, run for real: twopcctl against a coordinator
// and two kv sidecars. Asserts on the table and JSON output and exit codes.
#include <signal.h>
#include <sys/wait.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/grpc_status.h"
#include "tests/participant/process_harness.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

using CtlResult = ::twopc::testing::ProcessResult;

class TwopcctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartWithSidecars({"p1", "p2"}), IsOk());
  }

  CtlResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        std::string(TWOPC_BIN_DIR) + "/twopcctl",
        "--coordinator=" + cluster_.coordinator_address()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = Subprocess::Run(
        argv, dir_.Sub(absl::StrCat("ctl.", ++runs_)), absl::Seconds(30));
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : CtlResult();
  }

  // Runs a listing command that must succeed and print its table (so that a
  // check that something is absent from it cannot pass on an error).
  std::string Listing(std::vector<std::string> args) {
    CtlResult result = Ctl(std::move(args));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_THAT(result.output, ::testing::StartsWith("TRANSACTION "));
    return result.output;
  }

  // Runs twopcctl until its output contains `needle` (bounded); returns
  // the last result.
  CtlResult CtlUntil(const std::string& needle, std::vector<std::string> args) {
    CtlResult result;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    do {
      result = Ctl(args);
    } while (result.output.find(needle) == std::string::npos &&
             absl::Now() < deadline);
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
  EXPECT_THAT(Listing({"txn", "list", "--parked"}),
              Not(HasSubstr(begun.transaction_id())));
  EXPECT_EQ(Ctl({"txn", "list", "--state", "nonsense"}).exit_code, 2);

  CtlResult missing = Ctl({"txn", "get", "12345-1"});
  EXPECT_EQ(missing.exit_code, 3);
  CtlResult usage = Ctl({"txn", "exec", "--op", "p1 frobnicate k"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.output, HasSubstr("unknown operation"));
}

// The operator's 3 a.m. session: a participant application frozen with
// SIGSTOP leaves a transaction in doubt; `txn stuck` finds it, a forced
// commit and the removal of the participant are refused, a forced abort
// resolves it, and all three are audited.
TEST_F(TwopcctlTest, OperatorFindsAndForceAbortsAStuckTransaction) {
  auto ledger = Subprocess::Start(
      {std::string(TWOPC_BIN_DIR) + "/twopc-example-ledger",
       "--listen=127.0.0.1:0", "--journal=" + dir_.Sub("ledger.journal")},
      dir_.Sub("ledger.log"));
  ASSERT_THAT(ledger, IsOk());
  auto line = (*ledger)->WaitForLine("listening on", absl::Seconds(30));
  ASSERT_THAT(line, IsOk());
  ASSERT_THAT(cluster_.StartParticipant(
                  "ledger", {"--callback=" +
                             participant::testing::ListeningAddress(*line)}),
              IsOk());
  ASSERT_THAT(cluster_.WaitForParticipants({"ledger"}, absl::Seconds(30)),
              IsOk());
  (*ledger)->Signal(SIGSTOP);

  v1::ExecuteRequest request;
  request.mutable_timeout()->set_seconds(120);
  (*request.mutable_labels())["team"] = "payments";
  v1::Branch* kv = request.add_branches();
  kv->set_participant_id("p1");
  auto* put = kv->mutable_kv()->add_operations()->mutable_put();
  put->set_key("order/7");
  put->set_value("paid");
  v1::Branch* app = request.add_branches();
  app->set_participant_id("ledger");
  app->set_payload("alice 10");
  grpc::Status client_status;
  std::thread client([&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::ExecuteResponse response;
    client_status =
        cluster_.Transactions()->Execute(&context, request, &response);
  });

  CtlResult stuck = CtlUntil("ledger", {"txn", "stuck", "--older-than", "0s"});
  EXPECT_EQ(stuck.exit_code, 0);
  EXPECT_THAT(stuck.output, HasSubstr("STUCK FOR"));
  EXPECT_THAT(stuck.output,
              MatchesRegex("(.|\n)*[0-9]+-[0-9]+ +PREPARING +[0-9.]+m?s +in "
                           "doubt for [0-9]+m?s: waiting for votes from "
                           "ledger\n"));
  const std::string id = stuck.output.substr(
      stuck.output.find('\n') + 1,
      stuck.output.find(' ', stuck.output.find('\n')) -
          stuck.output.find('\n') - 1);
  CtlResult stuck_json = Ctl({"-o", "json", "txn", "stuck", "--older-than", "0s"});
  EXPECT_THAT(stuck_json.output, HasSubstr("\"reason\": \"in doubt for"));
  EXPECT_THAT(Ctl({"txn", "list", "--label", "team=payments"}).output,
              MatchesRegex("(.|\n)*" + id + " +PREPARING +PENDING(.|\n)*"));
  EXPECT_THAT(Ctl({"participant", "list"}).output,
              MatchesRegex("(.|\n)*ledger +127.0.0.1:[0-9]+ +callback +HEALTHY "
                           "+up +[-0-9: .]+ +[0-9]+ +[0-9]+ +1\n(.|\n)*"));

  CtlResult commit = Ctl({"txn", "force-commit", id, "--reason", "push it"});
  EXPECT_EQ(commit.exit_code, 5) << commit.output;
  EXPECT_THAT(commit.output, HasSubstr("refused: transaction " + id +
                                       " cannot be forced to commit"));
  EXPECT_THAT(commit.output, HasSubstr("ledger (no vote yet)"));
  EXPECT_EQ(Ctl({"txn", "force-abort", id}).exit_code, 2);  // no --reason
  // The stuck transaction still needs the ledger: its removal is refused.
  CtlResult remove = Ctl({"participant", "remove", "ledger", "--reason", "x"});
  EXPECT_EQ(remove.exit_code, 5) << remove.output;
  EXPECT_THAT(remove.output, HasSubstr("participant ledger still has 1 "
                                       "unfinished transaction (e.g. " +
                                       id + ")"));

  CtlResult abort = Ctl({"txn", "force-abort", id, "--reason",
                         "ledger app frozen, INC-7", "--operator", "oncall"});
  EXPECT_EQ(abort.exit_code, 0) << abort.output;
  EXPECT_THAT(abort.output,
              MatchesRegex("(.|\n)*" + id + " +ABORTED +ABORTED +no +yes(.|\n)*"));
  client.join();
  EXPECT_EQ(client_status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(client_status.error_message(), HasSubstr("INC-7"));
  EXPECT_THAT(Listing({"txn", "stuck", "--older-than", "0s"}),
              Not(HasSubstr(id)));

  CtlResult described = Ctl({"txn", "describe", id});
  EXPECT_EQ(described.exit_code, 0);
  EXPECT_THAT(described.output,
              MatchesRegex("(.|\n)*vote +p1 +voted YES\n(.|\n)*"));
  EXPECT_THAT(described.output,
              MatchesRegex("(.|\n)*force-abort +- +by oncall: ledger app frozen, "
                           "INC-7 \\(applied\\)(.|\n)*"));
  EXPECT_THAT(described.output, HasSubstr("decided"));

  CtlResult audit = Ctl({"audit", "list"});
  EXPECT_EQ(audit.exit_code, 0);
  EXPECT_THAT(audit.output,
              MatchesRegex("TIME +OPERATOR +ACTION +TARGET +REASON +RESULT\n"
                           "[-0-9: .]+ +oncall +force-abort +" + id +
                           " +ledger app frozen, INC-7 +applied\n"
                           "[-0-9: .]+ +[a-z]+ +remove-participant +ledger +x "
                           "+participant ledger still has 1 unfinished "
                           "transaction[^\n]*\n"
                           "[-0-9: .]+ +[a-z]+ +force-commit +" + id +
                           " +push it +transaction " + id +
                           " cannot be forced to commit(.|\n)*"));
  CtlResult audit_json = Ctl({"-o", "json", "audit", "list"});
  EXPECT_THAT(audit_json.output, HasSubstr("\"action\": \"force-abort\""));
  (*ledger)->Signal(SIGCONT);
}

// Decided transactions are never forced the other way, and phase-2 actions
// need a transaction in phase 2.
TEST_F(TwopcctlTest, OperatorActionsOnADecidedTransactionAreRefused) {
  CtlResult committed = Ctl({"-o", "json", "txn", "exec", "--op",
                             "p1 put a 1", "--op", "p2 put b 2"});
  ASSERT_EQ(committed.exit_code, 0) << committed.output;
  const size_t at = committed.output.find("\"transaction_id\": \"") + 19;
  const std::string id =
      committed.output.substr(at, committed.output.find('"', at) - at);

  CtlResult refused = Ctl({"txn", "force-abort", id, "--reason", "oops"});
  EXPECT_EQ(refused.exit_code, 5);
  EXPECT_THAT(refused.output,
              HasSubstr("is decided COMMITTED in the decision log; a decided "
                        "transaction can never be forced the other way"));
  EXPECT_EQ(Ctl({"txn", "retry", id}).exit_code, 5);
  EXPECT_EQ(Ctl({"txn", "park", id, "--reason", "x"}).exit_code, 5);
  EXPECT_EQ(Ctl({"txn", "park", id}).exit_code, 2);
  EXPECT_EQ(Ctl({"txn", "force-abort", "77-1", "--reason", "x"}).exit_code, 3);
  EXPECT_EQ(Ctl({"txn", "force-commit", id, "--reason", "finish"}).exit_code, 0);
  EXPECT_THAT(Ctl({"txn", "get", id}).output, HasSubstr("COMMITTED"));
  EXPECT_THAT(Ctl({"txn", "describe", id}).output,
              MatchesRegex("(.|\n)*ack +p2 +commit acknowledged(.|\n)*"));

  // Listing: filters and pages.
  ASSERT_EQ(Ctl({"txn", "exec", "--op", "p1 put c 3", "--label", "k=v"})
                .exit_code,
            0);
  CtlResult first = Ctl({"txn", "list", "--limit", "1"});
  EXPECT_THAT(first.output, HasSubstr("more: add --page-token"));
  const std::string token =
      first.output.substr(first.output.find("--page-token ") + 13);
  CtlResult second = Ctl({"txn", "list", "--limit", "1", "--page-token",
                          token.substr(0, token.size() - 1)});
  EXPECT_THAT(second.output, HasSubstr(id));
  EXPECT_THAT(Listing({"txn", "list", "--label", "k=v"}), Not(HasSubstr(id)));
  EXPECT_THAT(Ctl({"txn", "list", "--participant", "p2"}).output,
              HasSubstr(id));
  EXPECT_THAT(Listing({"txn", "list", "--older-than", "1h"}),
              Not(HasSubstr(id)));
  EXPECT_THAT(Ctl({"txn", "list", "--state", "committed"}).output,
              HasSubstr(id));
  EXPECT_EQ(Ctl({"txn", "list", "--older-than", "soon"}).exit_code, 2);
  EXPECT_EQ(Ctl({"-o", "json", "txn", "describe", id}).exit_code, 0);
}

// A retired sidecar is stopped, then removed; the removal is audited.
TEST_F(TwopcctlTest, OperatorRemovesARetiredParticipant) {
  ASSERT_THAT(cluster_.Stop("p2"), IsOk());
  EXPECT_EQ(Ctl({"participant", "remove", "p2"}).exit_code, 2);  // no reason
  EXPECT_EQ(Ctl({"participant", "remove", "p9", "--reason", "x"}).exit_code,
            3);
  CtlResult removed = Ctl({"participant", "remove", "p2", "--reason",
                           "host decommissioned", "--operator", "oncall"});
  EXPECT_EQ(removed.exit_code, 0) << removed.output;
  EXPECT_EQ(removed.output, "removed participant p2\n");
  CtlResult list = Ctl({"participant", "list"});
  EXPECT_THAT(list.output, HasSubstr("p1"));
  EXPECT_THAT(list.output, Not(HasSubstr("p2")));
  CtlResult exec = Ctl({"txn", "exec", "--op", "p2 put a 1"});
  EXPECT_EQ(exec.exit_code, 3) << exec.output;
  EXPECT_THAT(exec.output, HasSubstr("participant p2 is not registered"));
  EXPECT_THAT(Ctl({"audit", "list"}).output,
              MatchesRegex("(.|\n)*oncall +remove-participant +p2 +host "
                           "decommissioned +applied\n(.|\n)*"));
}

// The coordinator address comes from TWOPC_COORDINATOR too; an unreachable
// one is one clear line and exit code 1.
TEST_F(TwopcctlTest, UnreachableCoordinatorIsOneClearLine) {
  auto process = Subprocess::Start(
      {std::string(TWOPC_BIN_DIR) + "/twopcctl", "--timeout=2",
       "--coordinator=127.0.0.1:1", "txn", "stuck"},
      dir_.Sub("unreachable.out"));
  ASSERT_THAT(process, IsOk());
  auto status = (*process)->Wait(absl::Seconds(30));
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_THAT((*process)->Output(),
              MatchesRegex("twopcctl: coordinator 127.0.0.1:1 unreachable "
                           "\\(.*\\); is it running\\? set --coordinator or "
                           "TWOPC_COORDINATOR\n"));
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
