// End to end with real processes: a coordinator and three kv sidecars on
// loopback, moving money between accounts on different sidecars while
// processes are killed (-9), frozen and restarted at each protocol step.
// After every scenario: every branch agrees with what the client was told,
// and the total balance never changes.
#include <signal.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::PickFreePort;
using ::twopc::testing::StatusIs;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr int64_t kOpening = 100;
const std::vector<std::string> kSidecars = {"p1", "p2", "p3"};

class TransactionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
    for (const std::string& id : kSidecars) {
      // A short in-doubt time so prepared branches orphaned by a crash are
      // resolved within the test.
      ASSERT_THAT(cluster_.StartParticipant(id, {"--in_doubt_after=1"}),
                  IsOk());
    }
    ASSERT_THAT(cluster_.WaitForParticipants(kSidecars, kWait), IsOk());
    v1::ExecuteRequest seed;
    for (const std::string& id : kSidecars) {
      v1::Branch* branch = seed.add_branches();
      branch->set_participant_id(id);
      auto* put = branch->mutable_kv()->add_operations()->mutable_put();
      put->set_key("balance/acct");
      put->set_value(absl::StrCat(kOpening));
    }
    seed.set_wait_for_completion(true);
    ASSERT_THAT(Execute(seed), IsOk());
  }

  void TearDown() override {
    if (HasFailure()) cluster_.PrintLogs();
  }

  absl::StatusOr<v1::Transaction> Execute(const v1::ExecuteRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    v1::ExecuteResponse response;
    grpc::Status status =
        cluster_.Transactions()->Execute(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response.transaction();
  }

  // Waits for completion by default: the accounts' locks are released when
  // Execute returns, so the next transfer does not conflict with this one
  // (a conflicting prepare votes NO at once).
  static v1::ExecuteRequest Transfer(const std::string& from,
                                     const std::string& to, int64_t amount,
                                     const std::string& key = "",
                                     bool wait_for_completion = true) {
    v1::ExecuteRequest request;
    request.set_idempotency_key(key);
    request.set_wait_for_completion(wait_for_completion);
    v1::Branch* debit = request.add_branches();
    debit->set_participant_id(from);
    auto* sub = debit->mutable_kv()->add_operations()->mutable_add();
    sub->set_key("balance/acct");
    sub->set_delta(-amount);
    sub->set_min(0);
    v1::Branch* credit = request.add_branches();
    credit->set_participant_id(to);
    auto* add = credit->mutable_kv()->add_operations()->mutable_add();
    add->set_key("balance/acct");
    add->set_delta(amount);
    return request;
  }

  int64_t Balance(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    v1::KvGetRequest request;
    request.set_key("balance/acct");
    v1::KvGetResponse response;
    grpc::Status status = cluster_.Kv(id)->Get(&context, request, &response);
    EXPECT_TRUE(status.ok()) << id << ": " << status.error_message();
    int64_t value = -1;
    EXPECT_TRUE(absl::SimpleAtoi(response.value(), &value)) << response.value();
    return value;
  }

  int64_t Total() {
    int64_t total = 0;
    for (const std::string& id : kSidecars) total += Balance(id);
    return total;
  }

  absl::StatusOr<v1::Transaction> Get(const std::string& id) {
    grpc::ClientContext context;
    v1::GetRequest request;
    request.mutable_ref()->set_transaction_id(id);
    v1::GetResponse response;
    grpc::Status status =
        cluster_.Transactions()->Get(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response.transaction();
  }

  // Waits until `done` holds, polling; false after kWait.
  bool Eventually(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return done();
  }

  // Waits until a transaction with idempotency key `key` exists; its id, or
  // "" after kWait.
  std::string IdForKey(const std::string& key) {
    std::string id;
    Eventually([&] {
      grpc::ClientContext context;
      v1::GetRequest request;
      request.mutable_ref()->set_idempotency_key(key);
      v1::GetResponse response;
      if (!cluster_.Transactions()->Get(&context, request, &response).ok()) {
        return false;
      }
      id = response.transaction().transaction_id();
      return true;
    });
    return id;
  }

  // Waits until the live transaction `id` has a YES vote from `participant`.
  bool WaitForYes(const std::string& id, const std::string& participant) {
    return Eventually([&] {
      absl::StatusOr<v1::Transaction> t = Get(id);
      if (!t.ok()) return false;
      for (const auto& b : t->branches()) {
        if (b.participant_id() == participant && b.vote() == v1::VOTE_YES) {
          return true;
        }
      }
      return false;
    });
  }

  // Runs transfers until one succeeds: the accounts' locks were released.
  bool LocksReleased(const std::string& from, const std::string& to) {
    return Eventually([&] { return Execute(Transfer(from, to, 1)).ok(); });
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
};

TEST_F(TransactionsTest, TransfersKeepTheTotalAndOverdraftsAbortEverywhere) {
  ASSERT_THAT(Execute(Transfer("p1", "p2", 30)), IsOk());
  ASSERT_THAT(Execute(Transfer("p2", "p3", 50)), IsOk());
  EXPECT_EQ(Balance("p1"), 70);
  EXPECT_EQ(Balance("p2"), 80);
  EXPECT_EQ(Balance("p3"), 150);

  // p1 has 70: moving 71 would make it negative. Nothing changes anywhere.
  EXPECT_THAT(Execute(Transfer("p1", "p3", 71)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("p1")));
  EXPECT_EQ(Balance("p1"), 70);
  EXPECT_EQ(Balance("p3"), 150);
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, ConcurrentTransfersKeepTheTotal) {
  std::vector<std::thread> clients;
  std::atomic<int> committed{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 25; ++i) {
        const std::string& from = kSidecars[(c + i) % 3];
        const std::string& to = kSidecars[(c + i + 1) % 3];
        // Conflicting transfers vote NO at once (locks); that is fine.
        committed += Execute(Transfer(from, to, 1 + (i % 7))).ok();
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_GT(committed.load(), 0);
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, DeadlineAbortsWhenASidecarIsFrozen) {
  cluster_.Freeze("p2");
  v1::ExecuteRequest request = Transfer("p1", "p2", 10);
  request.mutable_timeout()->set_nanos(300'000'000);
  EXPECT_THAT(Execute(request),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("p2")));
  cluster_.Thaw("p2");
  EXPECT_TRUE(LocksReleased("p1", "p2"));
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, SidecarKilledBeforeVotingAbortsAndRecovers) {
  cluster_.Kill("p2");
  EXPECT_THAT(Execute(Transfer("p1", "p2", 10)),
              StatusIs(absl::StatusCode::kAborted));
  ASSERT_THAT(cluster_.StartParticipant("p2", {"--in_doubt_after=1"}), IsOk());
  ASSERT_THAT(cluster_.WaitForParticipants({"p2"}, kWait), IsOk());
  EXPECT_TRUE(LocksReleased("p1", "p2"));
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, SidecarKilledAfterVotingYesCommitsAfterRestart) {
  // Hold the transaction in phase 1 by freezing p1, let p2 vote YES, then
  // kill p2 while it holds the prepared branch.
  cluster_.Freeze("p1");
  absl::StatusOr<v1::Transaction> result;
  std::jthread client([&] { result = Execute(Transfer("p2", "p1", 40, "t-kill-after-yes", false)); });
  const std::string id = IdForKey("t-kill-after-yes");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForYes(id, "p2"));
  cluster_.Kill("p2");
  cluster_.Thaw("p1");
  client.join();
  ASSERT_THAT(result, IsOk());  // decided COMMIT: p2's vote was durable
  // The answer came with the decision (wait_for_completion is off): p1's
  // commit may still be on its way.
  EXPECT_TRUE(Eventually([&] { return Balance("p1") == 140; }));

  ASSERT_THAT(cluster_.StartParticipant("p2", {"--in_doubt_after=1"}), IsOk());
  EXPECT_TRUE(Eventually([&] { return Balance("p2") == 60; }));
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<v1::Transaction> t = Get(id);
    return t.ok() && t->state() == v1::TRANSACTION_STATE_COMMITTED;
  }));
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, CoordinatorKilledAfterTheDecisionFinishesTheCommit) {
  // p2 votes YES and is then frozen, so its commit is not delivered before
  // the coordinator dies.
  cluster_.Freeze("p1");
  absl::StatusOr<v1::Transaction> result;
  std::jthread client([&] { result = Execute(Transfer("p2", "p1", 25, "t-coord", false)); });
  const std::string id = IdForKey("t-coord");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForYes(id, "p2"));
  cluster_.Freeze("p2");
  cluster_.Thaw("p1");
  client.join();
  ASSERT_THAT(result, IsOk());

  cluster_.Kill(LocalCluster::kCoordinator);
  cluster_.Thaw("p2");
  ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<v1::Transaction> t = Get(id);
    return t.ok() && t->state() == v1::TRANSACTION_STATE_COMMITTED;
  }));
  EXPECT_EQ(Balance("p1"), 125);
  EXPECT_EQ(Balance("p2"), 75);
  EXPECT_EQ(Total(), 3 * kOpening);
}

TEST_F(TransactionsTest, CoordinatorKilledBeforeTheDecisionAbortsEverywhere) {
  // p1 would wait 10 minutes before asking about a branch it holds
  // prepared: its locks must be released because it sees the coordinator's
  // new epoch (nothing of the undecided transaction is in the log).
  cluster_.Kill("p1");
  ASSERT_THAT(cluster_.StartParticipant("p1", {"--in_doubt_after=600"}),
              IsOk());
  ASSERT_THAT(cluster_.WaitForParticipants({"p1"}, kWait), IsOk());
  cluster_.Freeze("p2");
  absl::StatusOr<v1::Transaction> result;
  std::jthread client([&] {
    v1::ExecuteRequest request = Transfer("p1", "p2", 33, "t-undecided", false);
    result = Execute(request);
  });
  const std::string id = IdForKey("t-undecided");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForYes(id, "p1"));
  cluster_.Kill(LocalCluster::kCoordinator);
  client.join();
  // The client cannot know the outcome from this error...
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(IsAmbiguous(result.status().code())) << result.status();

  cluster_.Thaw("p2");
  ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
  // ...and asks: the transaction is aborted, on every branch.
  absl::StatusOr<v1::Transaction> t = Get(id);
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->outcome(), v1::OUTCOME_ABORTED);
  // Retrying the commit by id tells why.
  grpc::ClientContext context;
  v1::CommitRequest commit;
  commit.set_transaction_id(id);
  v1::CommitResponse response;
  const absl::Status retried = FromGrpcStatus(
      cluster_.Transactions()->Commit(&context, commit, &response));
  EXPECT_THAT(retried, StatusIs(absl::StatusCode::kAborted,
                                HasSubstr("restarted before deciding")));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(retried);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "COORDINATOR_RESTART");
  ASSERT_THAT(cluster_.WaitForParticipants(kSidecars, kWait), IsOk());
  EXPECT_TRUE(LocksReleased("p1", "p2"));
  EXPECT_EQ(Total(), 3 * kOpening);
}

// Callback mode with the real coordinator: while the application is down,
// the sidecar answers the commit UNAVAILABLE with the delivery error, the
// coordinator shows that error as the branch's last error and retries, and
// once the application is back on its address the transaction finishes.
TEST_F(TransactionsTest, ACommitTheApplicationCannotTakeShowsWhyAndFinishesLater) {
  const std::string listen = absl::StrCat("127.0.0.1:", PickFreePort());
  int ledger_starts = 0;
  auto start_ledger = [&]() -> std::unique_ptr<Subprocess> {
    auto ledger = Subprocess::Start(
        {std::string(TWOPC_BIN_DIR) + "/twopc-example-ledger",
         "--listen=" + listen, "--journal=" + dir_.Sub("ledger.journal")},
        dir_.Sub(absl::StrCat("ledger.", ++ledger_starts, ".log")));
    EXPECT_THAT(ledger, IsOk());
    if (!ledger.ok()) return nullptr;
    EXPECT_THAT((*ledger)->WaitForLine("listening on", kWait), IsOk());
    return std::move(*ledger);
  };
  std::unique_ptr<Subprocess> ledger = start_ledger();
  ASSERT_NE(ledger, nullptr);
  ASSERT_THAT(cluster_.StartParticipant("ledger", {"--callback=" + listen}),
              IsOk());
  ASSERT_THAT(cluster_.WaitForParticipants({"ledger"}, kWait), IsOk());

  // A deposit on the ledger, held in phase 1 by a frozen p1 until the
  // ledger has voted YES and stopped.
  v1::ExecuteRequest request;
  request.set_idempotency_key("t-app-down");
  v1::Branch* deposit = request.add_branches();
  deposit->set_participant_id("ledger");
  deposit->set_payload("alice 100");
  v1::Branch* kv = request.add_branches();
  kv->set_participant_id("p1");
  auto* put = kv->mutable_kv()->add_operations()->mutable_put();
  put->set_key("deposit/alice");
  put->set_value("100");
  cluster_.Freeze("p1");
  absl::StatusOr<v1::Transaction> result;
  std::jthread client([&] { result = Execute(request); });
  const std::string id = IdForKey("t-app-down");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitForYes(id, "ledger"));
  ledger->Signal(SIGTERM);
  ASSERT_THAT(ledger->Wait(kWait), IsOk());
  cluster_.Thaw("p1");
  client.join();
  ASSERT_THAT(result, IsOk());  // decided: the ledger's vote was durable

  auto ledger_error = [&] {
    grpc::ClientContext context;
    v1::DescribeTransactionRequest describe;
    describe.mutable_ref()->set_transaction_id(id);
    v1::TransactionDetail detail;
    if (!cluster_.Admin()->DescribeTransaction(&context, describe, &detail)
             .ok()) {
      return std::string();
    }
    for (const v1::BranchDetail& branch : detail.branches()) {
      if (branch.participant_id() == "ledger") return branch.last_error();
    }
    return std::string();
  };
  std::string error;
  EXPECT_TRUE(Eventually([&] {
    error = ledger_error();
    return !error.empty();
  }));
  EXPECT_THAT(error, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(error, HasSubstr("did not acknowledge the commit"));
  absl::StatusOr<v1::Transaction> waiting = Get(id);
  ASSERT_THAT(waiting, IsOk());
  EXPECT_NE(waiting->state(), v1::TRANSACTION_STATE_COMMITTED);

  ledger = start_ledger();
  ASSERT_NE(ledger, nullptr);
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<v1::Transaction> t = Get(id);
    return t.ok() && t->state() == v1::TRANSACTION_STATE_COMMITTED;
  }));
  EXPECT_THAT(ledger->WaitForLine("committed " + id, kWait), IsOk());
}

}  // namespace
}  // namespace twopc
