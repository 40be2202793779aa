#include "coordinator/transaction_machine.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace twopc::coordinator {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;

constexpr absl::Duration kTimeout = absl::Seconds(10);

// The outside world of one machine: a decision log that keeps only synced
// writes across a crash, participants' received messages, client replies.
class Harness {
 public:
  explicit Harness(std::vector<std::string> participants, uint64_t seed = 42) {
    internal::TransactionRecord record;
    record.set_transaction_id("t1");
    record.set_create_time_us(absl::ToUnixMicros(clock_.Now()));
    record.set_deadline_us(absl::ToUnixMicros(clock_.Now() + kTimeout));
    for (const std::string& p : participants) {
      record.add_branches()->set_participant_id(p);
    }
    machine_.emplace(std::move(record), policy_, seed);
  }

  TransactionMachine& machine() { return *machine_; }
  SimulatedClock& clock() { return clock_; }

  // Applies `actions`; returns them for inspection.
  Actions Apply(Actions actions) {
    for (const Action& a : actions) {
      if (auto* p = std::get_if<action::SendPrepare>(&a)) {
        sent_.push_back("prepare:" + p->participant_id);
      } else if (auto* c = std::get_if<action::SendCommit>(&a)) {
        sent_.push_back("commit:" + c->participant_id);
      } else if (auto* ab = std::get_if<action::SendAbort>(&a)) {
        sent_.push_back("abort:" + ab->participant_id);
      } else if (auto* persist = std::get_if<action::Persist>(&a)) {
        unsynced_ = machine_->record();
        if (persist->sync) pending_sync_ = true;
      } else if (std::holds_alternative<action::Reply>(a)) {
        replies_.push_back(machine_->outcome());
      } else if (auto* wake = std::get_if<action::WakeAt>(&a)) {
        wake_at_ = wake->when;
      } else if (std::holds_alternative<action::Done>(a)) {
        done_ = true;
      }
    }
    return actions;
  }

  // The log syncs: the latest write becomes durable.
  void Sync() {
    if (unsynced_) synced_ = unsynced_;
    if (pending_sync_) {
      pending_sync_ = false;
      Apply(machine_->OnPersisted(clock_.Now()));
    }
  }

  // Power cut: unsynced writes are lost; the machine is rebuilt from the
  // log (or there is none: presumed abort) and recovered.
  void CrashAndRecover() {
    unsynced_.reset();
    pending_sync_ = false;
    sent_.clear();
    if (!synced_.has_value()) {
      machine_.reset();
      return;
    }
    machine_.emplace(TransactionMachine::FromLog(*synced_, policy_, 7));
    Apply(machine_->Recover(clock_.Now()));
  }

  bool has_machine() const { return machine_.has_value(); }
  std::vector<std::string> TakeSent() { return std::exchange(sent_, {}); }
  const std::vector<v1::Outcome>& replies() const { return replies_; }
  std::optional<absl::Time> wake_at() const { return wake_at_; }
  bool done() const { return done_; }
  bool pending_sync() const { return pending_sync_; }
  const std::optional<internal::TransactionRecord>& synced() const {
    return synced_;
  }

  void FireTimer() {
    ASSERT_TRUE(wake_at_.has_value());
    if (clock_.Now() < *wake_at_) clock_.Advance(*wake_at_ - clock_.Now());
    Apply(machine_->OnTimer(clock_.Now()));
  }

 private:
  SimulatedClock clock_;
  RetryPolicy policy_;
  std::optional<TransactionMachine> machine_;
  std::optional<internal::TransactionRecord> unsynced_, synced_;
  bool pending_sync_ = false;
  std::vector<std::string> sent_;
  std::vector<v1::Outcome> replies_;
  std::optional<absl::Time> wake_at_;
  bool done_ = false;
};

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

TEST(TransactionMachineTest, CommitHappyPath) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  EXPECT_EQ(h.machine().state(), v1::TRANSACTION_STATE_PREPARING);
  EXPECT_THAT(h.TakeSent(), ElementsAre("prepare:a", "prepare:b"));

  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  EXPECT_FALSE(h.pending_sync());
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  // Decided, but nothing is sent or replied before the COMMIT record syncs.
  EXPECT_TRUE(h.pending_sync());
  EXPECT_THAT(h.TakeSent(), IsEmpty());
  EXPECT_THAT(h.replies(), IsEmpty());

  h.Sync();
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_COMMITTED));
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:a", "commit:b"));
  EXPECT_EQ(h.synced()->state(), v1::TRANSACTION_STATE_COMMITTING);

  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  EXPECT_FALSE(h.done());
  h.Apply(h.machine().OnAck("b", true, h.clock().Now()));
  EXPECT_TRUE(h.done());
  EXPECT_EQ(h.machine().state(), v1::TRANSACTION_STATE_COMMITTED);
}

TEST(TransactionMachineTest, NoVoteAbortsAndReleasesOnlyBranchesThatMayHoldState) {
  Harness h({"a", "b", "c"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_NO, "balance would be -5",
                             h.clock().Now()));
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_ABORTED));
  EXPECT_THAT(h.machine().record().abort_reason(),
              HasSubstr("participant b voted NO: balance would be -5"));
  // a voted YES, c has not answered: both may hold state. b holds none.
  EXPECT_THAT(h.TakeSent(), UnorderedElementsAre("abort:a", "abort:c"));
  EXPECT_TRUE(h.done());
  EXPECT_FALSE(h.pending_sync());

  // c's late YES is answered with an abort, never a commit.
  h.Apply(h.machine().OnVote("c", v1::VOTE_YES, "", h.clock().Now()));
  EXPECT_THAT(h.TakeSent(), ElementsAre("abort:c"));
}

TEST(TransactionMachineTest, ReadOnlyBranchesSkipPhaseTwo) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  h.Apply(h.machine().OnVote("a", v1::VOTE_READ_ONLY, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:b"));
  h.Apply(h.machine().OnAck("b", true, h.clock().Now()));
  EXPECT_TRUE(h.done());
}

TEST(TransactionMachineTest, AllReadOnlyStillLogsTheCommitBeforeReplying) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_READ_ONLY, "", h.clock().Now()));
  EXPECT_THAT(h.replies(), IsEmpty());
  h.Sync();
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_COMMITTED));
  EXPECT_TRUE(h.done());
}

TEST(TransactionMachineTest, DeadlineAbortsWhenAVoteIsMissing) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  // A wake-up before the deadline changes nothing.
  h.Apply(h.machine().OnTimer(h.clock().Now() + kTimeout / 2));
  EXPECT_THAT(h.replies(), IsEmpty());
  h.FireTimer();
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_ABORTED));
  EXPECT_THAT(h.machine().record().abort_reason(), HasSubstr("no vote from b"));
  EXPECT_EQ(h.machine().record().abort_code(), "DEADLINE_PASSED");
  EXPECT_THAT(h.TakeSent(), UnorderedElementsAre("abort:a", "abort:b"));
}

TEST(TransactionMachineTest, DeadlineAbortsAnInteractiveTransactionNeverCommitted) {
  Harness h({"a"});
  h.Apply(h.machine().Open(h.clock().Now()));
  h.FireTimer();
  EXPECT_EQ(h.machine().outcome(), v1::OUTCOME_ABORTED);
  EXPECT_THAT(h.machine().record().abort_reason(),
              HasSubstr("before Commit was called"));
  // Nothing was prepared, so nothing is sent.
  EXPECT_THAT(h.TakeSent(), IsEmpty());
}

TEST(TransactionMachineTest, DeadlineCannotAbortOnceTheCommitRecordIsRequested) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  ASSERT_TRUE(h.pending_sync());
  h.clock().Advance(kTimeout * 2);
  h.Apply(h.machine().OnTimer(h.clock().Now()));
  Actions actions;
  // Ambiguous while the record is being written: it may or may not land.
  EXPECT_THAT(h.machine().Abort("client", h.clock().Now(), &actions),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(h.machine().decided());
  EXPECT_THAT(h.replies(), IsEmpty());
  h.Sync();
  EXPECT_TRUE(h.machine().decided());
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_COMMITTED));
  EXPECT_THAT(h.machine().Abort("client", h.clock().Now(), &actions),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(TransactionMachineTest, ClientAbortIsIdempotentAndRefusedAfterCommit) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  Actions actions;
  ASSERT_THAT(h.machine().Abort("changed my mind", h.clock().Now(), &actions),
              IsOk());
  h.Apply(actions);
  EXPECT_THAT(h.TakeSent(), ElementsAre("abort:a"));
  Actions again;
  ASSERT_THAT(h.machine().Abort("again", h.clock().Now(), &again), IsOk());
  EXPECT_THAT(again, IsEmpty());
  EXPECT_EQ(h.machine().record().abort_reason(), "changed my mind");
}

TEST(TransactionMachineTest, PrepareErrorAbortsAndStillReleasesThatBranch) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  h.Apply(h.machine().OnDeliveryError("a", "UNAVAILABLE: link broke",
                                      h.clock().Now()));
  EXPECT_EQ(h.machine().outcome(), v1::OUTCOME_ABORTED);
  EXPECT_THAT(h.machine().record().abort_reason(), HasSubstr("link broke"));
  EXPECT_EQ(h.machine().record().abort_code(), "PARTICIPANT_UNAVAILABLE");
  EXPECT_EQ(h.machine().record().abort_participant_id(), "a");
  // a may have prepared before its link broke: it gets an abort too.
  EXPECT_THAT(h.TakeSent(), UnorderedElementsAre("abort:a", "abort:b"));
}

TEST(TransactionMachineTest, DuplicateVotesAndAcksHaveNoSecondEffect) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_NO, "dup", h.clock().Now()));
  EXPECT_EQ(h.machine().outcome(), v1::OUTCOME_PENDING);
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  h.TakeSent();
  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  EXPECT_FALSE(h.done());
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_COMMITTED));
  // Unknown participants are ignored.
  EXPECT_THAT(h.machine().OnVote("zz", v1::VOTE_NO, "", h.clock().Now()),
              IsEmpty());
}

TEST(TransactionMachineTest, PhaseTwoRetriesWithGrowingBackoffThenParks) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  h.TakeSent();
  absl::Duration previous_gap = absl::ZeroDuration();
  for (int retry = 0; retry < 6; ++retry) {
    const absl::Time before = h.clock().Now();
    h.FireTimer();
    EXPECT_THAT(h.TakeSent(), ElementsAre("commit:a"));
    const absl::Duration gap = h.clock().Now() - before;
    if (retry > 0 && retry < 5) {
      EXPECT_GT(gap, previous_gap * 1.2);
    }
    previous_gap = gap;
  }
  EXPECT_EQ(h.machine().record().branches(0).attempts(), 7u);
  // Default budget is 20 attempts: not parked yet.
  EXPECT_FALSE(h.machine().record().parked());
  for (int retry = 0; retry < 14; ++retry) h.FireTimer();
  EXPECT_TRUE(h.machine().record().parked());
  // Parked transactions are still retried, slowly.
  const absl::Time before = h.clock().Now();
  h.TakeSent();
  h.FireTimer();
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:a"));
  EXPECT_GE(h.clock().Now() - before, absl::Seconds(45));
  // The ack still finishes it.
  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  EXPECT_TRUE(h.done());
  EXPECT_FALSE(h.machine().record().parked());
}

TEST(TransactionMachineTest, RetryDelaysAreJitteredWithinTheirBounds) {
  // The first retry waits initial_backoff (100 ms) scaled by a factor in
  // [1 - jitter, 1 + jitter] = [0.8, 1.2], drawn from the machine's seed.
  absl::Duration shortest = absl::InfiniteDuration();
  absl::Duration longest = absl::ZeroDuration();
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Harness h({"a"}, seed);
    h.Apply(h.machine().Commit(h.clock().Now()));
    h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
    h.Sync();
    ASSERT_TRUE(h.wake_at().has_value());
    const absl::Duration delay = *h.wake_at() - h.clock().Now();
    EXPECT_GE(delay, absl::Milliseconds(80)) << "seed " << seed;
    EXPECT_LE(delay, absl::Milliseconds(120)) << "seed " << seed;
    shortest = std::min(shortest, delay);
    longest = std::max(longest, delay);
  }
  // Spread over the range, so retries of many transactions do not align.
  EXPECT_LT(shortest, absl::Milliseconds(85));
  EXPECT_GT(longest, absl::Milliseconds(115));
}

TEST(TransactionMachineTest, AbortedAckAfterYesParksForAnOperator) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  h.Apply(h.machine().OnAck("a", false, h.clock().Now()));
  EXPECT_TRUE(h.machine().record().parked());
  EXPECT_FALSE(h.done());
  EXPECT_THAT(h.machine().record().branches(0).last_error(),
              HasSubstr("atomicity"));
}

// Crash points: the recovered machine must agree with what a client may have
// been told, and never send both a commit and an abort for one transaction.

TEST(TransactionMachineCrashTest, CrashBeforeDecisionSyncAborts) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  ASSERT_TRUE(h.pending_sync());
  EXPECT_THAT(h.replies(), IsEmpty());
  h.CrashAndRecover();
  // Nothing was synced: the transaction is unknown, i.e. presumed aborted.
  EXPECT_FALSE(h.has_machine());
}

TEST(TransactionMachineCrashTest, NothingIsWrittenBeforeTheDecision) {
  Harness h({"a", "b"});
  const Actions actions = h.Apply(h.machine().Commit(h.clock().Now()));
  EXPECT_FALSE(std::any_of(actions.begin(), actions.end(), [](const Action& a) {
    return std::holds_alternative<action::Persist>(a);
  }));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  EXPECT_FALSE(h.synced().has_value());
  h.CrashAndRecover();
  EXPECT_FALSE(h.has_machine());  // presumed abort; "a" asks and is told
}

// Versions before 2026-12-04 wrote an unforced PREPARING record at Commit.
TEST(TransactionMachineCrashTest, ALoggedPreparingRecordAbortsEveryBranch) {
  internal::TransactionRecord record;
  record.set_transaction_id("t1");
  record.set_state(v1::TRANSACTION_STATE_PREPARING);
  internal::BranchRecord* a = record.add_branches();
  a->set_participant_id("a");
  a->set_vote(v1::VOTE_YES);
  record.add_branches()->set_participant_id("b");
  TransactionMachine machine =
      TransactionMachine::FromLog(std::move(record), RetryPolicy(), 7);
  std::vector<std::string> aborted;
  for (const Action& action : machine.Recover(absl::UnixEpoch())) {
    if (auto* abort = std::get_if<action::SendAbort>(&action)) {
      aborted.push_back(abort->participant_id);
    }
  }
  EXPECT_EQ(machine.outcome(), v1::OUTCOME_ABORTED);
  EXPECT_THAT(aborted, UnorderedElementsAre("a", "b"));
  EXPECT_THAT(machine.record().abort_reason(), HasSubstr("restarted"));
}

TEST(TransactionMachineCrashTest, CrashAfterDecisionSyncRedrivesCommit) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  ASSERT_THAT(h.replies(), ElementsAre(v1::OUTCOME_COMMITTED));
  h.CrashAndRecover();
  EXPECT_EQ(h.machine().outcome(), v1::OUTCOME_COMMITTED);
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:a", "commit:b"));
}

TEST(TransactionMachineCrashTest, CrashAfterKOfNAcksRedrivesTheRest) {
  for (int k = 0; k <= 3; ++k) {
    SCOPED_TRACE(absl::StrCat("acks before crash: ", k));
    Harness h({"a", "b", "c"});
    h.Apply(h.machine().Commit(h.clock().Now()));
    for (const char* p : {"a", "b", "c"}) {
      h.Apply(h.machine().OnVote(p, v1::VOTE_YES, "", h.clock().Now()));
    }
    h.Sync();
    h.TakeSent();
    const std::vector<std::string> order = {"a", "b", "c"};
    for (int i = 0; i < k; ++i) {
      h.Apply(h.machine().OnAck(order[i], true, h.clock().Now()));
    }
    h.CrashAndRecover();
    ASSERT_TRUE(h.has_machine());
    EXPECT_EQ(h.machine().outcome(), v1::OUTCOME_COMMITTED);
    // Acks were not forced, so every branch may be sent commit again (the
    // participant's barrier answers a duplicate); none is sent an abort.
    for (const std::string& sent : h.TakeSent()) {
      EXPECT_THAT(sent, HasSubstr("commit:"));
    }
    for (const char* p : {"a", "b", "c"}) {
      h.Apply(h.machine().OnAck(p, true, h.clock().Now()));
    }
    EXPECT_EQ(h.machine().state(), v1::TRANSACTION_STATE_COMMITTED);
  }
}

TEST(TransactionMachineCrashTest, FinishedTransactionsNeedNothingAfterRecovery) {
  Harness h({"a"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  h.Sync();  // the final record reached the disk
  h.CrashAndRecover();
  EXPECT_THAT(h.TakeSent(), IsEmpty());
  EXPECT_EQ(h.machine().state(), v1::TRANSACTION_STATE_COMMITTED);
}

// --- Operator actions ---

TEST(TransactionMachineTest, ForceAbortDecidesAnUndecidedTransaction) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.TakeSent();
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  // b never answers: commit cannot be forced, abort can.
  EXPECT_THAT(h.machine().CheckForce(v1::OUTCOME_COMMITTED),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("b (no vote yet)")));
  ASSERT_THAT(h.machine().CheckForce(v1::OUTCOME_ABORTED), IsOk());
  h.Apply(h.machine().Force(v1::OUTCOME_ABORTED, "b is frozen",
                            h.clock().Now()));
  EXPECT_THAT(h.replies(), ElementsAre(v1::OUTCOME_ABORTED));
  EXPECT_TRUE(h.machine().record().forced());
  EXPECT_EQ(h.machine().record().abort_code(), "FORCED_ABORT");
  EXPECT_THAT(h.machine().record().abort_reason(), HasSubstr("b is frozen"));
  EXPECT_THAT(h.TakeSent(), UnorderedElementsAre("abort:a", "abort:b"));
  EXPECT_TRUE(h.done());
  // Forcing the direction it already has is accepted and does nothing.
  EXPECT_THAT(h.machine().CheckForce(v1::OUTCOME_ABORTED), IsOk());
  EXPECT_THAT(h.machine().Force(v1::OUTCOME_ABORTED, "again", h.clock().Now()),
              IsEmpty());
  EXPECT_THAT(h.machine().CheckForce(v1::OUTCOME_COMMITTED),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("never be forced the other way")));
}

TEST(TransactionMachineTest, ADecidedCommitCanNeverBeForcedToAbort) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  // While the COMMIT record is being written the outcome is not known yet.
  EXPECT_THAT(h.machine().CheckForce(v1::OUTCOME_ABORTED),
              StatusIs(absl::StatusCode::kUnavailable));
  h.Sync();
  h.TakeSent();
  EXPECT_THAT(h.machine().CheckForce(v1::OUTCOME_ABORTED),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("decided COMMITTED")));
  // Forcing commit finishes the decided direction: phase 2 goes out now.
  ASSERT_THAT(h.machine().CheckForce(v1::OUTCOME_COMMITTED), IsOk());
  h.Apply(h.machine().Force(v1::OUTCOME_COMMITTED, "push", h.clock().Now()));
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:a", "commit:b"));
  EXPECT_FALSE(h.machine().record().forced());
}

TEST(TransactionMachineTest, RetryParkAndUnparkActOnPhaseTwoOnly) {
  Harness h({"a", "b"});
  h.Apply(h.machine().Commit(h.clock().Now()));
  EXPECT_THAT(h.machine().CheckPhase2Pending(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not decided yet")));
  h.Apply(h.machine().OnVote("a", v1::VOTE_YES, "", h.clock().Now()));
  h.Apply(h.machine().OnVote("b", v1::VOTE_YES, "", h.clock().Now()));
  h.Sync();
  h.Apply(h.machine().OnAck("a", true, h.clock().Now()));
  h.TakeSent();
  ASSERT_THAT(h.machine().CheckPhase2Pending(), IsOk());

  // Retry delivers to the unacknowledged branch only, at once.
  h.Apply(h.machine().RetryNow(h.clock().Now()));
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:b"));
  EXPECT_EQ(h.machine().record().branches(1).attempts(), 2u);

  // Parked: the next delivery waits for the parked interval.
  h.Apply(h.machine().SetParked(true, h.clock().Now()));
  EXPECT_TRUE(h.machine().record().parked());
  EXPECT_EQ(*h.wake_at(), h.clock().Now() + RetryPolicy().parked_interval);
  EXPECT_THAT(h.TakeSent(), IsEmpty());
  EXPECT_THAT(h.machine().SetParked(true, h.clock().Now()), IsEmpty());

  // Unparked: the budget starts again and delivery happens now.
  h.Apply(h.machine().SetParked(false, h.clock().Now()));
  EXPECT_FALSE(h.machine().record().parked());
  EXPECT_THAT(h.TakeSent(), ElementsAre("commit:b"));
  EXPECT_EQ(h.machine().record().branches(1).attempts(), 1u);

  h.Apply(h.machine().OnAck("b", true, h.clock().Now()));
  EXPECT_TRUE(h.done());
  EXPECT_THAT(h.machine().CheckPhase2Pending(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already COMMITTED")));
}

}  // namespace
}  // namespace twopc::coordinator
