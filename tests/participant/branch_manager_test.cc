#include "participant/branch_manager.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/kv_resource.h"
#include "tests/participant/fake_branch_store.h"
#include "tests/participant/kv_builders.h"
#include "tests/testing/status_matchers.h"

namespace twopc::participant {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using namespace ::twopc::participant::testing;  // NOLINT

constexpr uint64_t kEpoch = 5;

// A branch for a callback application.
v1::Branch Payload(const std::string& payload) {
  v1::Branch branch;
  branch.set_participant_id("p1");
  branch.set_payload(payload);
  return branch;
}

// A callback application, as the sidecar sees it through a resource that
// stages elsewhere. It outlives sidecar restarts (it is another process).
struct Application {
  std::vector<std::string> asked;  // Prepare calls, in order
  std::set<std::string> aborted;   // Abort deliveries
  std::set<std::string> committed;
  // Prepares not answered yet, by transaction id.
  std::map<std::string, Resource::PrepareDone> pending;
  // While set, every delivery of an outcome fails with this error and is
  // kept in `undelivered` (the resource would retry it).
  std::optional<absl::Status> down;
  std::map<std::string, std::pair<bool, Resource::ApplyDone>> undelivered;
};

class StagingResource : public Resource {
 public:
  explicit StagingResource(Application* app) : app_(app) {}
  std::string kind() const override { return "callback"; }
  bool applies_in_batch() const override { return false; }
  bool applies_unknown_aborts() const override { return true; }
  void Prepare(const std::string& txid, const v1::Branch&, absl::Time,
               PrepareDone done) override {
    app_->asked.push_back(txid);
    app_->pending[txid] = std::move(done);
  }
  void AddCommitEffects(const BranchRecord&, StoreBatch*) override {}
  void ApplyOutcome(const std::string& txid, const BranchRecord&,
                    bool committed, ApplyDone done,
                    ApplyDelayed delayed) override {
    if (app_->down.has_value()) {
      app_->undelivered[txid] = {committed, std::move(done)};
      delayed(*app_->down);
      return;
    }
    (committed ? app_->committed : app_->aborted).insert(txid);
    done();
  }
  void Restore(const std::string&, const BranchRecord&) override {}

  // The application is back: the retried deliveries succeed.
  void Recover() {
    app_->down.reset();
    auto undelivered = std::move(app_->undelivered);
    app_->undelivered.clear();
    for (auto& [txid, delivery] : undelivered) {
      (delivery.first ? app_->committed : app_->aborted).insert(txid);
      delivery.second();
    }
  }

  // The application answers `txid`'s prepare.
  void Answer(const std::string& txid, v1::Vote vote) {
    PrepareResult result;
    result.vote = vote;
    PrepareDone done = std::move(app_->pending.at(txid));
    app_->pending.erase(txid);
    done(std::move(result));
  }

 private:
  Application* const app_;
};

class BranchManagerTest : public ::testing::Test {
 protected:
  BranchManagerTest() { Restart(); }

  // A fresh process over the same durable state (unsynced writes are kept
  // unless the test drops them first).
  void Restart() {
    manager_.reset();
    kv_ = std::make_unique<KvResource>(&store_);
    // A restarted sidecar never hears the answers to its old prepares.
    app_.pending.clear();
    Resource* resource = kv_.get();
    if (callback_mode_) {
      staging_ = std::make_unique<StagingResource>(&app_);
      resource = staging_.get();
    }
    auto manager = BranchManager::Create(
        {.participant_id = "p1",
         .in_doubt_after = absl::Seconds(10),
         .query_backoff_initial = absl::Seconds(1),
         .query_backoff_max = absl::Seconds(4),
         .query_backoff_jitter = 0,  // exact delays; see the jitter test
         .finished_retention = absl::Minutes(1),
         .finished_retention_without_deadline = absl::Minutes(10),
         .on_fatal = nullptr},
        &store_, resource, &clock_);
    ASSERT_THAT(manager, IsOk());
    manager_ = std::move(*manager);
  }

  void Send(const v1::BranchRequest& request, uint64_t epoch = kEpoch) {
    manager_->Handle(epoch, request, [this](v1::BranchReply reply) {
      absl::MutexLock lock(&mu_);
      replies_[reply.request_id()] = std::move(reply);
    });
  }
  bool Answered(uint64_t id) {
    absl::MutexLock lock(&mu_);
    return replies_.contains(id);
  }
  v1::BranchReply ReplyTo(uint64_t id) {
    absl::MutexLock lock(&mu_);
    EXPECT_TRUE(replies_.contains(id)) << "no reply to request " << id;
    return replies_[id];
  }
  std::optional<std::string> Value(const std::string& key) {
    return *store_.Get(key);
  }

  absl::Mutex mu_;
  std::map<uint64_t, v1::BranchReply> replies_ ABSL_GUARDED_BY(mu_);
  SimulatedClock clock_;
  FakeBranchStore store_;
  std::unique_ptr<KvResource> kv_;
  // Callback mode (set, then Restart): the application instead of kv_.
  bool callback_mode_ = false;
  Application app_;
  std::unique_ptr<StagingResource> staging_;
  std::unique_ptr<BranchManager> manager_;
};

TEST_F(BranchManagerTest, VotesYesOnlyAfterThePreparedRecordIsSynced) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  EXPECT_FALSE(Answered(1));
  EXPECT_EQ(manager_->in_flight_requests(), 1u);
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  EXPECT_EQ(ReplyTo(1).transaction_id(), "t1");
  ASSERT_TRUE(store_.DurableRecord("t1").has_value());
  EXPECT_EQ(store_.DurableRecord("t1")->state(), BranchRecord::PREPARED);
  EXPECT_EQ(manager_->prepared_branches(), 1u);
  EXPECT_EQ(manager_->in_flight_requests(), 0u);
}

TEST_F(BranchManagerTest, ConcurrentPreparesShareOneSync) {
  for (int i = 1; i <= 20; ++i) {
    Send(PrepareRequest(i, absl::StrCat("t", i),
                        KvBranch({Put(absl::StrCat("k", i), "v")})));
  }
  EXPECT_EQ(store_.Sync(), 20 + 1);  // + the epoch record
  EXPECT_EQ(store_.syncs(), 1);
  for (int i = 1; i <= 20; ++i) EXPECT_EQ(ReplyTo(i).vote(), v1::VOTE_YES);
}

TEST_F(BranchManagerTest, DuplicatePrepareGetsTheSameAnswerWithoutEffect) {
  const v1::Branch branch = KvBranch({Add("n", 1)});
  Send(PrepareRequest(1, "t1", branch));
  Send(PrepareRequest(2, "t1", branch));  // while the first is being synced
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_YES);
  const int writes = store_.writes();
  Send(PrepareRequest(3, "t1", branch));
  EXPECT_EQ(ReplyTo(3).vote(), v1::VOTE_YES);
  EXPECT_EQ(store_.writes(), writes);
  Send(CommitRequest(4, "t1"));
  store_.Sync();
  EXPECT_EQ(Value("n"), "1");
  Send(PrepareRequest(5, "t1", branch));
  EXPECT_EQ(ReplyTo(5).vote(), v1::VOTE_YES);
  Send(CommitRequest(6, "t1"));
  EXPECT_EQ(ReplyTo(6).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(store_.unsynced(), 0u);
  EXPECT_EQ(Value("n"), "1");  // applied once
}

TEST_F(BranchManagerTest, CommitIsAcknowledgedAfterItIsSyncedAndApplied) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  Send(CommitRequest(2, "t1"));
  EXPECT_FALSE(Answered(2));
  EXPECT_EQ(kv_->LockHolder("k"), "t1");  // held until the commit is durable
  EXPECT_EQ(Value("k"), std::nullopt);
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(Value("k"), "v");
  EXPECT_EQ(kv_->LockHolder("k"), "");
  EXPECT_EQ(store_.DurableRecord("t1")->state(), BranchRecord::COMMITTED);
  EXPECT_EQ(manager_->StateOf("t1"), "COMMITTED");
}

TEST_F(BranchManagerTest, AbortReleasesLocksAndDuplicatesAreAcknowledged) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  Send(AbortRequest(2, "t1", "client gave up"));
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_ABORTED);
  EXPECT_EQ(kv_->LockHolder("k"), "");
  EXPECT_EQ(Value("k"), std::nullopt);
  Send(AbortRequest(3, "t1"));
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_ABORTED);
  // A commit after the abort gets the remembered outcome.
  Send(CommitRequest(4, "t1"));
  EXPECT_EQ(ReplyTo(4).ack(), v1::BranchReply::ACK_ABORTED);
  Send(PrepareRequest(5, "t1", KvBranch({Put("k", "v")})));
  EXPECT_EQ(ReplyTo(5).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(5).reason(), HasSubstr("client gave up"));
}

TEST_F(BranchManagerTest, AbortBeforePrepareIsRememberedDurably) {
  Send(AbortRequest(1, "t1", "deadline"));
  EXPECT_FALSE(Answered(1));  // not before the abort is synced
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).ack(), v1::BranchReply::ACK_ABORTED);
  Restart();  // remembered across a restart
  Send(PrepareRequest(2, "t1", KvBranch({Put("k", "v")})));
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(2).reason(), HasSubstr("deadline"));
  EXPECT_EQ(kv_->locked_keys(), 0u);
  EXPECT_EQ(store_.unsynced(), 0u);
}

TEST_F(BranchManagerTest, CommitOfAnUnknownBranchIsAcknowledgedWithoutEffect) {
  Send(CommitRequest(1, "never-seen"));
  EXPECT_EQ(ReplyTo(1).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(store_.unsynced(), 1u);  // only the epoch record
  EXPECT_EQ(manager_->StateOf("never-seen"), "UNKNOWN");
}

TEST_F(BranchManagerTest, AbortOfACommittedBranchReportsCommitted) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  Send(CommitRequest(2, "t1"));
  store_.Sync();
  Send(AbortRequest(3, "t1"));
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(Value("k"), "v");
}

TEST_F(BranchManagerTest, CommitBeforeTheVoteIsRefusedWithoutEffect) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  Send(CommitRequest(2, "t1"));
  ASSERT_TRUE(ReplyTo(2).has_error());
  EXPECT_EQ(ReplyTo(2).error().code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  EXPECT_EQ(Value("k"), std::nullopt);
}

TEST_F(BranchManagerTest, AbortDuringPrepareIsAppliedAfterTheVote) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  Send(AbortRequest(2, "t1"));
  store_.Sync();  // prepared record; the abort starts
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  EXPECT_FALSE(Answered(2));
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_ABORTED);
  EXPECT_EQ(kv_->locked_keys(), 0u);
}

TEST_F(BranchManagerTest, NoVoteIsRecordedAndRepeated) {
  store_.SetKv("balance", "5");
  Send(PrepareRequest(1, "t1", KvBranch({Add("balance", -6, 0)})));
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(1).reason(), HasSubstr("below the minimum 0"));
  EXPECT_EQ(store_.DurableRecord("t1")->state(), BranchRecord::ABORTED);
  Restart();
  store_.SetKv("balance", "100");
  Send(PrepareRequest(2, "t1", KvBranch({Add("balance", -6, 0)})));
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(2).reason(), HasSubstr("below the minimum 0"));
  Send(AbortRequest(3, "t1"));
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_ABORTED);
}

TEST_F(BranchManagerTest, ReadOnlyVoteNeedsNoSyncAndSkipsPhaseTwo) {
  store_.SetKv("k", "v");
  Send(PrepareRequest(1, "t1", KvBranch({ExpectValue("k", "v")})));
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_READ_ONLY);
  Send(PrepareRequest(2, "t1", KvBranch({ExpectValue("k", "v")})));
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_READ_ONLY);
  Send(CommitRequest(3, "t1"));
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_COMMITTED);
}

TEST_F(BranchManagerTest, OnePhasePrepareCommitsInOneDurableStep) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")}), /*one_phase=*/true));
  EXPECT_FALSE(Answered(1));
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(Value("k"), "v");
  EXPECT_EQ(store_.syncs(), 1);
  EXPECT_EQ(kv_->locked_keys(), 0u);
  Send(PrepareRequest(2, "t1", KvBranch({Put("k", "v")}), true));
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_COMMITTED);

  Send(PrepareRequest(3, "t2", KvBranch({ExpectAbsent("k"), Put("x", "1")}), true));
  store_.Sync();
  EXPECT_EQ(ReplyTo(3).vote(), v1::VOTE_NO);
  EXPECT_EQ(Value("x"), std::nullopt);
}

TEST_F(BranchManagerTest, PassedDeadlineVotesNo) {
  v1::BranchRequest request = PrepareRequest(1, "t1", KvBranch({Put("k", "v")}));
  request.mutable_prepare()->mutable_deadline()->set_seconds(
      absl::ToUnixSeconds(clock_.Now()) - 1);
  Send(request);
  store_.Sync();
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(1).reason(), HasSubstr("deadline"));
  EXPECT_EQ(kv_->locked_keys(), 0u);
}

TEST_F(BranchManagerTest, StaleEpochIsRejectedAndTheHighestEpochIsDurable) {
  EXPECT_THAT(manager_->ObserveEpoch(7), IsOk());
  store_.Sync();
  EXPECT_EQ(store_.durable_epoch(), 7u);
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})), /*epoch=*/6);
  const v1::BranchReply reply = ReplyTo(1);
  ASSERT_TRUE(reply.has_error());
  EXPECT_EQ(reply.error().code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  v1::ErrorInfo info;
  ASSERT_EQ(reply.error().details_size(), 1);
  ASSERT_TRUE(reply.error().details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "STALE_EPOCH");
  EXPECT_EQ(info.transaction_id(), "t1");
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
  EXPECT_EQ(kv_->locked_keys(), 0u);

  Restart();
  EXPECT_EQ(manager_->highest_epoch(), 7u);
  EXPECT_THAT(manager_->ObserveEpoch(6),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("older than epoch 7")));
  Send(PrepareRequest(2, "t1", KvBranch({Put("k", "v")})), /*epoch=*/7);
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_YES);
}

TEST_F(BranchManagerTest, PowerCutBeforeTheSyncLosesTheUnvotedPrepare) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.DropUnsynced();
  EXPECT_FALSE(Answered(1));
  Restart();
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
  EXPECT_EQ(kv_->locked_keys(), 0u);
  // The coordinator resends; it votes normally.
  Send(PrepareRequest(2, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_YES);
}

TEST_F(BranchManagerTest, PreparedBranchSurvivesAPowerCutWithItsLocks) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  Send(PrepareRequest(2, "t2", KvBranch({Put("j", "w")})));
  store_.Sync();
  Send(CommitRequest(3, "t1"));  // not synced: lost in the power cut
  store_.DropUnsynced();
  Restart();
  EXPECT_EQ(manager_->StateOf("t1"), "PREPARED");
  EXPECT_EQ(manager_->prepared_branches(), 2u);
  EXPECT_EQ(kv_->LockHolder("k"), "t1");
  EXPECT_EQ(kv_->LockHolder("j"), "t2");
  Send(PrepareRequest(4, "t3", KvBranch({Put("k", "other")})));
  store_.Sync();  // the NO is recorded before it is sent
  EXPECT_EQ(ReplyTo(4).vote(), v1::VOTE_NO);
  // Found at start-up: due for an outcome query at once.
  std::vector<std::string> due = manager_->DueForOutcomeQuery(100);
  std::sort(due.begin(), due.end());
  EXPECT_THAT(due, ElementsAre("t1", "t2"));
  manager_->ApplyOutcome("t1", v1::OUTCOME_COMMITTED);
  manager_->ApplyOutcome("t2", v1::OUTCOME_ABORTED);
  store_.Sync();
  EXPECT_EQ(Value("k"), "v");
  EXPECT_EQ(Value("j"), std::nullopt);
  EXPECT_EQ(kv_->locked_keys(), 0u);
  EXPECT_EQ(manager_->prepared_branches(), 0u);
  // A late commit from the coordinator is answered from the record.
  Send(CommitRequest(5, "t1"));
  EXPECT_EQ(ReplyTo(5).ack(), v1::BranchReply::ACK_COMMITTED);
}

TEST_F(BranchManagerTest, InDoubtBranchesAreQueriedWithCappedBackoff) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("t1"));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
  manager_->ApplyOutcome("t1", v1::OUTCOME_PENDING);  // ask again later
  // Backoff 1s, 2s, 4s, 4s (cap).
  for (absl::Duration backoff :
       {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4), absl::Seconds(4)}) {
    clock_.Advance(backoff - absl::Milliseconds(1));
    EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
    clock_.Advance(absl::Milliseconds(1));
    EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("t1"));
  }
  manager_->ApplyOutcome("t1", v1::OUTCOME_ABORTED);
  store_.Sync();
  EXPECT_EQ(manager_->StateOf("t1"), "ABORTED");
  EXPECT_EQ(kv_->locked_keys(), 0u);
  clock_.Advance(absl::Minutes(1));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
}

// The coordinator writes nothing before it decides, so after its restart
// nobody will answer the votes of its undecided transactions: a branch of an
// earlier epoch asks at once instead of waiting for in_doubt_after.
TEST_F(BranchManagerTest, BranchesOfARestartedCoordinatorAskAtOnce) {
  Send(PrepareRequest(1, "5-1", KvBranch({Put("a", "v")})));
  // Not an id a coordinator hands out.
  Send(PrepareRequest(2, "t1", KvBranch({Put("b", "v")})));
  store_.Sync();
  Send(PrepareRequest(3, "5-2", KvBranch({Put("c", "v")})));  // still syncing
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());

  ASSERT_THAT(manager_->ObserveEpoch(kEpoch + 1), IsOk());
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("5-1"));
  store_.Sync();  // 5-2 is prepared after the restart was seen
  EXPECT_EQ(ReplyTo(3).vote(), v1::VOTE_YES);
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("5-2"));
  // The new coordinator presumes both aborted.
  manager_->ApplyOutcome("5-1", v1::OUTCOME_ABORTED);
  manager_->ApplyOutcome("5-2", v1::OUTCOME_ABORTED);
  store_.Sync();
  EXPECT_EQ(kv_->LockHolder("a"), "");
  EXPECT_EQ(kv_->LockHolder("c"), "");

  // Branches of the new epoch, and other ids, wait as before.
  Send(PrepareRequest(4, "6-1", KvBranch({Put("d", "v")})), kEpoch + 1);
  store_.Sync();
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("6-1", "t1"));
}

// A branch asked about for a while has a long backoff; a restarted
// coordinator may not answer until it has read its log, so after the epoch
// changes the questions start again from the shortest backoff.
TEST_F(BranchManagerTest, ARestartedCoordinatorIsAskedFromTheShortestBackoff) {
  Send(PrepareRequest(1, "5-1", KvBranch({Put("a", "v")})));
  store_.Sync();
  clock_.Advance(absl::Seconds(10));
  for (absl::Duration backoff : {absl::ZeroDuration(), absl::Seconds(1),
                                 absl::Seconds(2)}) {
    clock_.Advance(backoff);
    ASSERT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("5-1"));
  }
  ASSERT_THAT(manager_->ObserveEpoch(kEpoch + 1), IsOk());
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("5-1"));
  clock_.Advance(absl::Seconds(1));  // not 4 s
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), ElementsAre("5-1"));
}

// Branches left in doubt by one crash ask again at spread-out moments.
TEST_F(BranchManagerTest, JitterSpreadsTheOutcomeQueriesOfManyBranches) {
  BranchManagerOptions options{.participant_id = "p1",
                               .in_doubt_after = absl::Seconds(10),
                               .query_backoff_initial = absl::Seconds(1),
                               .query_backoff_max = absl::Seconds(4),
                               .query_backoff_jitter = 0.2,
                               .jitter_seed = 5,
                               .finished_retention = absl::Minutes(1),
                               .finished_retention_without_deadline =
                                   absl::Minutes(10),
                               .on_fatal = nullptr};
  manager_.reset();
  options.query_backoff_jitter = 1;  // could make a delay 0
  EXPECT_THAT(BranchManager::Create(options, &store_, kv_.get(), &clock_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.query_backoff_jitter = 0.2;
  auto manager = BranchManager::Create(options, &store_, kv_.get(), &clock_);
  ASSERT_THAT(manager, IsOk());
  manager_ = std::move(*manager);
  constexpr int kBranches = 50;
  for (int i = 0; i < kBranches; ++i) {
    const std::string key = "k" + std::to_string(i);
    Send(PrepareRequest(i + 1, "t" + std::to_string(i),
                        KvBranch({Put(key, "v")})));
  }
  store_.Sync();
  clock_.Advance(absl::Seconds(10));
  ASSERT_THAT(manager_->DueForOutcomeQuery(100), SizeIs(kBranches));
  // The next query of each is due 1 s later, ±20%.
  clock_.Advance(absl::Milliseconds(799));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100), IsEmpty());
  clock_.Advance(absl::Milliseconds(201));
  const size_t first_half = manager_->DueForOutcomeQuery(100).size();
  EXPECT_GT(first_half, 5u);
  EXPECT_LT(first_half, kBranches - 5u);
  clock_.Advance(absl::Milliseconds(200));
  EXPECT_THAT(manager_->DueForOutcomeQuery(100),
              SizeIs(kBranches - first_half));
}

TEST_F(BranchManagerTest, StoreFailureFailsRequestsAmbiguouslyAndForGood) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.FailNextSync();
  store_.Sync();
  ASSERT_TRUE(ReplyTo(1).has_error());
  EXPECT_EQ(ReplyTo(1).error().code(),
            static_cast<int>(absl::StatusCode::kInternal));
  Send(PrepareRequest(2, "t2", KvBranch({Put("j", "v")})));
  ASSERT_TRUE(ReplyTo(2).has_error());
  EXPECT_THAT(ReplyTo(2).error().message(), HasSubstr("must be restarted"));
}

TEST_F(BranchManagerTest, MalformedRequestsGetInvalidArgument) {
  v1::BranchRequest no_op;
  no_op.set_request_id(1);
  no_op.set_transaction_id("t1");
  Send(no_op);
  EXPECT_EQ(ReplyTo(1).error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  Send(CommitRequest(2, ""));
  EXPECT_EQ(ReplyTo(2).error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
}

v1::BranchRequest WithDeadline(v1::BranchRequest request, absl::Time deadline) {
  request.mutable_prepare()->mutable_deadline()->set_seconds(
      absl::ToUnixSeconds(deadline));
  return request;
}

TEST_F(BranchManagerTest, FinishedBranchesAreForgottenAfterTheirDeadline) {
  const absl::Time deadline = clock_.Now() + absl::Seconds(30);
  Send(WithDeadline(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})), deadline));
  store_.Sync();
  Send(CommitRequest(2, "t1"));
  store_.Sync();
  ASSERT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_COMMITTED);
  // Remembered until deadline + retention (30s + 1min).
  clock_.Advance(absl::Seconds(89));
  EXPECT_EQ(manager_->ForgetFinished(), 0u);
  Send(WithDeadline(PrepareRequest(3, "t1", KvBranch({Put("k", "v")})), deadline));
  EXPECT_EQ(ReplyTo(3).vote(), v1::VOTE_YES);  // same answer, no effect
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(manager_->ForgetFinished(), 1u);
  store_.Sync();
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
  EXPECT_FALSE(store_.DurableRecord("t1").has_value());
  // A very late duplicate prepare is past its deadline: NO, no second effect.
  Send(WithDeadline(PrepareRequest(4, "t1", KvBranch({Put("k", "v")})), deadline));
  store_.Sync();
  EXPECT_EQ(ReplyTo(4).vote(), v1::VOTE_NO);
  EXPECT_EQ(kv_->locked_keys(), 0u);
}

TEST_F(BranchManagerTest, ForgettingSurvivesARestart) {
  Send(AbortRequest(1, "no-deadline"));
  Send(PrepareRequest(2, "read-only", KvBranch({ExpectAbsent("x")})));
  store_.Sync();
  Restart();
  EXPECT_EQ(manager_->StateOf("no-deadline"), "ABORTED");
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(manager_->ForgetFinished(), 1u);
  store_.Sync();
  EXPECT_FALSE(store_.DurableRecord("no-deadline").has_value());
  Restart();
  EXPECT_EQ(manager_->StateOf("no-deadline"), "UNKNOWN");
}

TEST_F(BranchManagerTest, FinishedBranchesKeepTheirAnswersAcrossARestart) {
  Send(PrepareRequest(1, "aborted", KvBranch({Put("a", "1")})));
  Send(PrepareRequest(2, "committed", KvBranch({Put("b", "2")})));
  store_.Sync();
  Send(AbortRequest(3, "aborted", "client gave up"));
  Send(CommitRequest(4, "committed"));
  Send(CommitRequest(5, "committed"));  // waits with the first
  EXPECT_FALSE(Answered(4));
  EXPECT_FALSE(Answered(5));
  store_.Sync();
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_ABORTED);
  EXPECT_EQ(ReplyTo(4).ack(), v1::BranchReply::ACK_COMMITTED);
  EXPECT_EQ(ReplyTo(5).ack(), v1::BranchReply::ACK_COMMITTED);
  store_.Sync();  // the records noting that the outcomes were applied
  uint64_t id = 10;
  for (const bool restart : {false, true}) {
    SCOPED_TRACE(restart ? "after a restart" : "before a restart");
    if (restart) Restart();
    EXPECT_EQ(manager_->StateOf("aborted"), "ABORTED");
    EXPECT_EQ(manager_->StateOf("committed"), "COMMITTED");
    const int writes = store_.writes();
    Send(PrepareRequest(++id, "aborted", KvBranch({Put("a", "1")})));
    EXPECT_EQ(ReplyTo(id).vote(), v1::VOTE_NO);
    EXPECT_EQ(ReplyTo(id).reason(), "branch already aborted: client gave up");
    Send(CommitRequest(++id, "aborted"));
    EXPECT_EQ(ReplyTo(id).ack(), v1::BranchReply::ACK_ABORTED);
    Send(PrepareRequest(++id, "committed", KvBranch({Put("b", "2")})));
    EXPECT_EQ(ReplyTo(id).vote(), v1::VOTE_YES);
    Send(PrepareRequest(++id, "committed", KvBranch({Put("b", "2")}),
                        /*one_phase=*/true));
    EXPECT_EQ(ReplyTo(id).ack(), v1::BranchReply::ACK_COMMITTED);
    Send(AbortRequest(++id, "committed"));
    EXPECT_EQ(ReplyTo(id).ack(), v1::BranchReply::ACK_COMMITTED);
    EXPECT_EQ(store_.writes(), writes);  // answered from memory
    EXPECT_EQ(manager_->in_flight_requests(), 0u);
  }
  EXPECT_EQ(Value("a"), std::nullopt);
  EXPECT_EQ(Value("b"), "2");
  EXPECT_EQ(kv_->locked_keys(), 0u);
}

TEST_F(BranchManagerTest, ForgottenReadOnlyBranchCanBeAbortedAfresh) {
  store_.SetKv("k", "v");
  const absl::Time deadline = clock_.Now() + absl::Seconds(30);
  Send(WithDeadline(PrepareRequest(1, "t1", KvBranch({ExpectValue("k", "v")})),
                    deadline));
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_READ_ONLY);
  EXPECT_EQ(manager_->StateOf("t1"), "READ_ONLY");
  Send(AbortRequest(2, "t1"));
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_ABORTED);  // no sync
  clock_.Advance(absl::Seconds(89));
  EXPECT_EQ(manager_->ForgetFinished(), 0u);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(manager_->ForgetFinished(), 1u);
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
  // Unknown again: an abort is recorded, then remembered and forgotten anew.
  Send(AbortRequest(3, "t1", "late"));
  EXPECT_FALSE(Answered(3));
  store_.Sync();
  EXPECT_EQ(ReplyTo(3).ack(), v1::BranchReply::ACK_ABORTED);
  EXPECT_EQ(manager_->StateOf("t1"), "ABORTED");
  EXPECT_EQ(manager_->ForgetFinished(), 0u);
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(manager_->ForgetFinished(), 1u);
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
}

TEST_F(BranchManagerTest, PreparedBranchesAreNeverForgotten) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));
  store_.Sync();
  clock_.Advance(absl::Hours(24));
  EXPECT_EQ(manager_->ForgetFinished(), 0u);
  EXPECT_EQ(manager_->StateOf("t1"), "PREPARED");
}

// Callback mode: the application stages a branch when asked to prepare. A
// crash before the vote is recorded must not leave it staged forever.
TEST_F(BranchManagerTest, AnApplicationLeftStagedByACrashIsToldToAbort) {
  callback_mode_ = true;
  Restart();
  Send(PrepareRequest(1, "t1", Payload("alice -10")));
  EXPECT_THAT(app_.asked, IsEmpty());  // not before the intent is synced
  store_.Sync();
  EXPECT_THAT(app_.asked, ElementsAre("t1"));
  // The application staged t1; the sidecar crashes before its answer.
  Restart();
  EXPECT_THAT(app_.aborted, ElementsAre("t1"));
  EXPECT_EQ(manager_->StateOf("t1"), "ABORTED");
  store_.Sync();  // the abort's delivery is noted
  EXPECT_TRUE(store_.DurableRecord("t1")->applied());
  // The coordinator cannot have been told YES: a repeated prepare votes NO
  // and is not asked again.
  Send(PrepareRequest(2, "t1", Payload("alice -10")));
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(2).reason(), HasSubstr("before it recorded the vote"));
  EXPECT_THAT(app_.asked, ElementsAre("t1"));
  Restart();
  EXPECT_THAT(app_.aborted, ElementsAre("t1"));  // delivered once

  // A power cut before the intent is synced: the application was never
  // asked, so there is nothing to abort.
  Send(PrepareRequest(3, "t2", Payload("bob 5")));
  store_.DropUnsynced();
  Restart();
  EXPECT_THAT(app_.asked, ElementsAre("t1"));
  EXPECT_EQ(manager_->StateOf("t2"), "UNKNOWN");
}

TEST_F(BranchManagerTest, TheApplicationsVoteReplacesTheIntent) {
  callback_mode_ = true;
  Restart();
  Send(PrepareRequest(1, "yes", Payload("a 1")));
  Send(PrepareRequest(2, "read-only", Payload("a 0")));
  store_.Sync();
  staging_->Answer("yes", v1::VOTE_YES);
  staging_->Answer("read-only", v1::VOTE_READ_ONLY);
  // Not before the intent is gone: a crash could bring it back and abort a
  // branch of a transaction that commits.
  EXPECT_FALSE(Answered(2));
  store_.Sync();
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_READ_ONLY);
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  EXPECT_EQ(store_.DurableRecord("yes")->state(), BranchRecord::PREPARED);
  EXPECT_FALSE(store_.DurableRecord("read-only").has_value());
  Restart();
  EXPECT_THAT(app_.aborted, IsEmpty());
  EXPECT_EQ(manager_->StateOf("yes"), "PREPARED");
}

TEST_F(BranchManagerTest, AnAbortWhileTheIntentIsWrittenSparesTheApplication) {
  callback_mode_ = true;
  Restart();
  Send(PrepareRequest(1, "t1", Payload("a 1")));
  Send(AbortRequest(2, "t1", "client gave up"));
  store_.Sync();  // the intent; then the NO is recorded
  store_.Sync();
  EXPECT_THAT(app_.asked, IsEmpty());
  EXPECT_EQ(ReplyTo(1).vote(), v1::VOTE_NO);
  EXPECT_THAT(ReplyTo(1).reason(), HasSubstr("client gave up"));
  EXPECT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_ABORTED);
  EXPECT_TRUE(store_.DurableRecord("t1")->applied());
  Restart();
  EXPECT_THAT(app_.aborted, IsEmpty());
}

// Callback mode: while the application does not acknowledge a commit, the
// coordinator's commits are answered UNAVAILABLE with the reason (it records
// it and retries) instead of waiting unanswered.
TEST_F(BranchManagerTest, ACommitTheApplicationDoesNotAcknowledgeIsUnavailable) {
  callback_mode_ = true;
  Restart();
  Send(PrepareRequest(1, "t1", Payload("a 1")));
  store_.Sync();
  staging_->Answer("t1", v1::VOTE_YES);
  store_.Sync();
  ASSERT_EQ(ReplyTo(1).vote(), v1::VOTE_YES);
  app_.down = absl::UnavailableError("connection refused");
  Send(CommitRequest(2, "t1"));
  store_.Sync();  // the COMMITTED record; then the delivery fails
  ASSERT_TRUE(ReplyTo(2).has_error());
  EXPECT_EQ(ReplyTo(2).error().code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(ReplyTo(2).error().message(),
              HasSubstr("has not acknowledged it yet"));
  EXPECT_THAT(ReplyTo(2).error().message(), HasSubstr("connection refused"));
  EXPECT_EQ(store_.DurableRecord("t1")->state(), BranchRecord::COMMITTED);
  // The coordinator's retry gets the same answer at once.
  Send(CommitRequest(3, "t1"));
  ASSERT_TRUE(ReplyTo(3).has_error());
  EXPECT_EQ(ReplyTo(3).error().code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  // Back: the delivery succeeds, and the next retry is acknowledged.
  staging_->Recover();
  EXPECT_THAT(app_.committed, ElementsAre("t1"));
  Send(CommitRequest(4, "t1"));
  EXPECT_EQ(ReplyTo(4).ack(), v1::BranchReply::ACK_COMMITTED);
}

// A late duplicate prepare that comes while ForgetFinished is deleting its
// branch's record must not write a record that the deletion then removes
// (store writes become durable in submission order).
TEST_F(BranchManagerTest, APrepareDuringForgettingWritesNothingTheForgetDeletes) {
  Send(PrepareRequest(1, "t1", KvBranch({Put("k", "v")})));  // no deadline
  store_.Sync();
  Send(CommitRequest(2, "t1"));
  store_.Sync();
  ASSERT_EQ(ReplyTo(2).ack(), v1::BranchReply::ACK_COMMITTED);
  clock_.Advance(absl::Minutes(11));
  store_.set_on_write([this](const StoreBatch& batch) {
    if (!batch.forget.empty()) {
      Send(PrepareRequest(3, "t1", KvBranch({Put("k", "v")})));
    }
  });
  EXPECT_EQ(manager_->ForgetFinished(), 1u);
  store_.Sync();
  ASSERT_TRUE(Answered(3));
  EXPECT_EQ(ReplyTo(3).vote(), v1::VOTE_YES);  // from what was remembered
  // Nothing was prepared again: no branch in memory lacks its record.
  EXPECT_EQ(manager_->StateOf("t1"), "UNKNOWN");
  EXPECT_EQ(manager_->prepared_branches(), 0u);
  EXPECT_FALSE(store_.DurableRecord("t1").has_value());
  EXPECT_EQ(kv_->LockHolder("k"), "");
}

// Callback mode: a vote only needs its outcome durable. While the abort
// of a branch left staged by a crash cannot reach the application, the
// coordinator's repeated prepare is still answered NO at once.
TEST_F(BranchManagerTest, AVoteIsAnsweredWhileItsAbortIsStillBeingDelivered) {
  callback_mode_ = true;
  Restart();
  Send(PrepareRequest(1, "t1", Payload("a 1")));
  store_.Sync();
  ASSERT_THAT(app_.asked, ElementsAre("t1"));
  app_.down = absl::UnavailableError("connection refused");
  Restart();  // finds the intent; its abort cannot be delivered
  EXPECT_THAT(app_.undelivered, SizeIs(1));
  Send(PrepareRequest(2, "t1", Payload("a 1")));
  ASSERT_TRUE(Answered(2));
  EXPECT_EQ(ReplyTo(2).vote(), v1::VOTE_NO);
  Send(AbortRequest(3, "t1"));
  ASSERT_TRUE(ReplyTo(3).has_error());  // not delivered yet
  staging_->Recover();
  EXPECT_THAT(app_.aborted, ElementsAre("t1"));
  Send(AbortRequest(4, "t1"));
  EXPECT_EQ(ReplyTo(4).ack(), v1::BranchReply::ACK_ABORTED);
}

}  // namespace
}  // namespace twopc::participant
