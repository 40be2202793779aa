// Callback mode with real processes: twopc-participant --callback in front
// of the example ledger application (examples/callback_app), the test
// playing the coordinator.
#include <signal.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/participant/kv_builders.h"
#include "tests/participant/process_harness.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::participant {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;
using namespace ::twopc::participant::testing;  // NOLINT

constexpr uint64_t kEpoch = 1;

v1::Branch Payload(const std::string& payload) {
  v1::Branch branch;
  branch.set_participant_id("ledger");
  branch.set_payload(payload);
  return branch;
}

class CallbackProcessTest : public ::testing::Test {
 protected:
  // Starts the ledger on `listen`; sets address_.
  std::unique_ptr<Subprocess> StartLedger(
      const std::string& listen, std::vector<std::string> extra_flags = {}) {
    std::vector<std::string> argv = {Bin("twopc-example-ledger"),
                                     "--listen=" + listen,
                                     "--journal=" + dir_.Sub("ledger.journal")};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    auto ledger = Subprocess::Start(
        argv, dir_.Sub(absl::StrCat("ledger.", ++starts_, ".log")));
    EXPECT_THAT(ledger, IsOk());
    if (!ledger.ok()) return nullptr;
    auto line = (*ledger)->WaitForLine("listening on", kWait);
    EXPECT_THAT(line, IsOk());
    if (!line.ok()) return nullptr;
    ledger_address_ = ListeningAddress(*line);
    return std::move(*ledger);
  }

  // A sidecar in callback mode in front of the ledger started last.
  auto StartCallbackSidecar(FakeCoordinator& coordinator) {
    return StartSidecar("ledger",
                        {"--callback=" + ledger_address_,
                         "--coordinator=" + coordinator.address(),
                         "--data_dir=" + dir_.Sub("sidecar")},
                        dir_.Sub(absl::StrCat("sidecar.", ++starts_, ".log")));
  }

  TempDir dir_;
  int starts_ = 0;
  std::string ledger_address_;
};

TEST_F(CallbackProcessTest, ForwardsToTheApplicationAndRetriesCommitUntilItIsBack) {
  FakeCoordinator coordinator(kEpoch);
  ASSERT_TRUE(coordinator.ok());
  std::unique_ptr<Subprocess> ledger = StartLedger("127.0.0.1:0");
  ASSERT_NE(ledger, nullptr);
  auto sidecar = StartCallbackSidecar(coordinator);
  ASSERT_THAT(sidecar, IsOk());
  LinkClient link(sidecar->address, kEpoch, "ledger");
  auto hello = link.Open();
  ASSERT_THAT(hello, IsOk());
  EXPECT_EQ(hello->resource(), "callback");
  ASSERT_TRUE(coordinator.WaitFor([](FakeCoordinator& c) {
    return !c.registrations_.empty() &&
           c.registrations_[0].resource() == "callback";
  }));

  // Deposit: prepare + commit reach the application.
  link.Send({PrepareRequest(1, "deposit", Payload("alice 100"))});
  auto vote = link.Await(1);
  ASSERT_THAT(vote, IsOk()) << sidecar->process->Output();
  ASSERT_EQ(vote->vote(), v1::VOTE_YES) << vote->reason();
  link.Send({CommitRequest(2, "deposit")});
  auto ack = link.Await(2);
  ASSERT_THAT(ack, IsOk());
  EXPECT_EQ(ack->ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_THAT(ledger->WaitForLine("committed deposit", kWait),
              IsOk());

  // The application's NO and its reason reach the coordinator.
  link.Send({PrepareRequest(3, "overdraw", Payload("alice -130\nbob 130"))});
  auto no = link.Await(3);
  ASSERT_THAT(no, IsOk());
  EXPECT_EQ(no->vote(), v1::VOTE_NO);
  EXPECT_THAT(no->reason(), HasSubstr("insufficient funds"));

  // Bad input for this resource: a kv branch.
  link.Send({PrepareRequest(4, "kv", KvBranch({Put("k", "v")}))});
  auto wrong = link.Await(4);
  ASSERT_THAT(wrong, IsOk());
  EXPECT_EQ(wrong->vote(), v1::VOTE_NO);
  EXPECT_THAT(wrong->reason(), HasSubstr("instead of a payload"));

  // A transfer is prepared, then the application goes down before the
  // commit arrives.
  link.Send({PrepareRequest(5, "transfer", Payload("alice -30\nbob 30"))});
  auto yes = link.Await(5);
  ASSERT_THAT(yes, IsOk());
  ASSERT_EQ(yes->vote(), v1::VOTE_YES) << yes->reason();
  ledger->Signal(SIGTERM);
  ASSERT_THAT(ledger->Wait(kWait), IsOk());
  link.Send({CommitRequest(6, "transfer")});
  ASSERT_THAT(sidecar->process->WaitForLine("commit of transfer to application",
                                            kWait),
              IsOk());
  // Not acknowledged before it is applied: UNAVAILABLE, with the reason.
  auto unavailable = link.Await(6);
  ASSERT_THAT(unavailable, IsOk());
  ASSERT_TRUE(unavailable->has_error());
  EXPECT_EQ(unavailable->error().code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(unavailable->error().message(),
              HasSubstr("has not acknowledged it yet"));
  EXPECT_THAT(unavailable->error().message(), HasSubstr(ledger_address_));

  // Back on the same address: the sidecar's retries deliver the commit, and
  // the coordinator asking again is acknowledged once it is.
  ledger = StartLedger(ledger_address_);
  ASSERT_NE(ledger, nullptr);
  EXPECT_THAT(ledger->WaitForLine("committed transfer: alice=70 bob=30", kWait),
              IsOk());
  uint64_t id = 100;
  absl::StatusOr<v1::BranchReply> committed;
  const absl::Time give_up = absl::Now() + kWait;
  do {  // until the sidecar has heard the application's answer
    link.Send({CommitRequest(++id, "transfer")});
    committed = link.Await(id);
    ASSERT_THAT(committed, IsOk());
  } while (committed->has_error() && absl::Now() < give_up);
  EXPECT_EQ(committed->ack(), v1::BranchReply::ACK_COMMITTED);

  // Duplicates are answered by the sidecar's barrier.
  link.Send({CommitRequest(7, "transfer"), AbortRequest(8, "never-prepared")});
  auto again = link.Await(7);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->ack(), v1::BranchReply::ACK_COMMITTED);
  auto aborted = link.Await(8);
  ASSERT_THAT(aborted, IsOk());
  EXPECT_EQ(aborted->ack(), v1::BranchReply::ACK_ABORTED);
  link.Send({PrepareRequest(9, "never-prepared", Payload("bob 1"))});
  auto late = link.Await(9);
  ASSERT_THAT(late, IsOk());
  EXPECT_EQ(late->vote(), v1::VOTE_NO);

  EXPECT_TRUE(link.Finish().ok());
  sidecar->process->Signal(SIGTERM);
  EXPECT_THAT(sidecar->process->WaitForLine("stopped", kWait), IsOk());
}

// The application staged a branch but its answer came too late: the sidecar
// votes NO and must still tell the application to abort, or the staged
// change would block its accounts forever.
TEST_F(CallbackProcessTest, ALatePrepareAnswerStillGetsTheApplicationAnAbort) {
  FakeCoordinator coordinator(kEpoch);
  ASSERT_TRUE(coordinator.ok());
  std::unique_ptr<Subprocess> ledger =
      StartLedger("127.0.0.1:0", {"--prepare_reply_delay_ms=1500"});
  ASSERT_NE(ledger, nullptr);
  auto sidecar = StartCallbackSidecar(coordinator);
  ASSERT_THAT(sidecar, IsOk());
  LinkClient link(sidecar->address, kEpoch, "ledger");
  ASSERT_THAT(link.Open(), IsOk());

  v1::BranchRequest slow = PrepareRequest(1, "slow", Payload("carol 10"));
  const int64_t deadline_us =
      absl::ToUnixMicros(absl::Now() + absl::Milliseconds(300));
  slow.mutable_prepare()->mutable_deadline()->set_seconds(deadline_us /
                                                          1'000'000);
  slow.mutable_prepare()->mutable_deadline()->set_nanos(
      static_cast<int32_t>(deadline_us % 1'000'000) * 1000);
  link.Send({slow});
  auto no = link.Await(1);
  ASSERT_THAT(no, IsOk());
  EXPECT_EQ(no->vote(), v1::VOTE_NO);
  // The application heard the abort: carol is not left staged.
  EXPECT_THAT(ledger->WaitForLine("aborted slow", kWait), IsOk())
      << ledger->Output();
  link.Send({PrepareRequest(2, "next", Payload("carol 5"))});
  auto next = link.Await(2);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->vote(), v1::VOTE_YES) << next->reason();
  EXPECT_TRUE(link.Finish().ok());
}

// The sidecar dies after the application staged a branch and before the
// vote was recorded. Back up, it must tell the application to abort, or the
// staged change would hold carol's account until the application gives up.
TEST_F(CallbackProcessTest, ASidecarKilledBeforeItsVoteGetsTheApplicationAnAbort) {
  FakeCoordinator coordinator(kEpoch);
  ASSERT_TRUE(coordinator.ok());
  std::unique_ptr<Subprocess> ledger =
      StartLedger("127.0.0.1:0", {"--prepare_reply_delay_ms=2000"});
  ASSERT_NE(ledger, nullptr);
  auto sidecar = StartCallbackSidecar(coordinator);
  ASSERT_THAT(sidecar, IsOk());
  {
    LinkClient link(sidecar->address, kEpoch, "ledger");
    ASSERT_THAT(link.Open(), IsOk());
    link.Send({PrepareRequest(1, "stranded", Payload("carol 10"))});
    // Staged; its answer is held back 2 s. The sidecar dies meanwhile.
    ASSERT_THAT(ledger->WaitForLine("prepared stranded: YES", kWait), IsOk());
    sidecar->process->Signal(SIGKILL);
    ASSERT_THAT(sidecar->process->Wait(kWait), IsOk());
    EXPECT_FALSE(link.Answered(1));
  }

  auto restarted = StartCallbackSidecar(coordinator);
  ASSERT_THAT(restarted, IsOk());
  EXPECT_THAT(ledger->WaitForLine("aborted stranded", kWait), IsOk())
      << ledger->Output() << restarted->process->Output();
  // The coordinator never got a vote: a repeated prepare is refused by the
  // sidecar without asking the application again.
  LinkClient link(restarted->address, kEpoch, "ledger");
  ASSERT_THAT(link.Open(), IsOk());
  link.Send({PrepareRequest(2, "stranded", Payload("carol 10"))});
  auto again = link.Await(2);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->vote(), v1::VOTE_NO);
  EXPECT_THAT(again->reason(), HasSubstr("before it recorded the vote"));
  EXPECT_TRUE(link.Finish().ok());
  restarted->process->Signal(SIGTERM);
  EXPECT_THAT(restarted->process->WaitForLine("stopped", kWait), IsOk());
}

}  // namespace
}  // namespace twopc::participant
