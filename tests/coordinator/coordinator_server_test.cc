// The coordinator runtime end to end, in one process: a real
// CoordinatorServer against scripted fake participants (coordinator_fixture.h).
#include "coordinator/coordinator_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/error_info_matchers.h"
#include "tests/testing/eventually.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::coordinator {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::TempDir;

TEST_F(CoordinatorServerTest, CommitsAcrossTwoParticipants) {
  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->outcome(), v1::OUTCOME_COMMITTED);
  const std::string id = t->transaction_id();
  EXPECT_TRUE(a_->WaitFor("commit:" + id));
  EXPECT_TRUE(b_->WaitFor("commit:" + id));
  EXPECT_TRUE(WaitForState(id, v1::TRANSACTION_STATE_COMMITTED));
  EXPECT_EQ(a_->last_epoch(), coordinator_->epoch());
}

TEST_F(CoordinatorServerTest, NoVoteAbortsWithTheReason) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kNo);
  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  EXPECT_THAT(t, twopc::testing::StatusIs(absl::StatusCode::kAborted,
                                          HasSubstr("balance would be -5")));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(t.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "VOTED_NO");
  EXPECT_EQ(info->participant_id(), "b");
  EXPECT_TRUE(a_->WaitFor("abort:" + info->transaction_id()));
  for (const std::string& event : a_->received()) {
    EXPECT_THAT(event, ::testing::Not(HasSubstr("commit:")));
  }
}

TEST_F(CoordinatorServerTest, DeadlineAbortsWhenAParticipantHangs) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  v1::ExecuteRequest request = TwoBranches();
  request.mutable_timeout()->set_nanos(200'000'000);
  absl::StatusOr<v1::Transaction> t = Execute(request);
  EXPECT_THAT(t, twopc::testing::StatusIs(absl::StatusCode::kAborted,
                                          HasSubstr("no vote from b")));
}

// A client that gives up (its deadline passes, or it cancels) gets an
// ambiguous status from its own gRPC; the transaction still goes on to its
// decision, and the coordinator answers the abandoned call into the void.
TEST_F(CoordinatorServerTest, AClientThatGivesUpDoesNotStopItsTransaction) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  v1::ExecuteRequest request = TwoBranches("gave-up");
  request.mutable_timeout()->set_nanos(300'000'000);
  {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Milliseconds(50)));
    v1::ExecuteResponse response;
    EXPECT_EQ(transactions_->Execute(&context, request, &response).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    v1::ExecuteRequest cancelled = TwoBranches("cancelled");
    cancelled.mutable_timeout()->set_nanos(300'000'000);
    grpc::ClientContext context;
    v1::ExecuteResponse response;
    grpc::Status status;
    absl::Notification done;
    transactions_->async()->Execute(&context, &cancelled, &response,
                                    [&](grpc::Status s) {
                                      status = std::move(s);
                                      done.Notify();
                                    });
    // Cancel once the coordinator has the call (a prepared "a" shows it).
    const absl::Time deadline = absl::Now() + kWait;
    auto prepares = [&] {
      int n = 0;
      for (const std::string& event : a_->received()) {
        n += event.rfind("prepare:", 0) == 0;
      }
      return n;
    };
    while (prepares() < 2 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_EQ(prepares(), 2);
    context.TryCancel();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  }
  // Both reach their decision (abort at the deadline: b never votes).
  for (const char* key : {"gave-up", "cancelled"}) {
    v1::ExecuteRequest again = TwoBranches(key);
    again.mutable_timeout()->set_nanos(300'000'000);
    EXPECT_THAT(Execute(again),
                twopc::testing::StatusIs(absl::StatusCode::kAborted,
                                         HasSubstr("no vote from b")))
        << key;
  }
  // And the coordinator serves new calls as before.
  b_->set_on_prepare(FakeParticipant::OnPrepare::kYes);
  EXPECT_THAT(Execute(TwoBranches()), IsOk());
}

TEST_F(CoordinatorServerTest, IdempotencyKeyReturnsTheSameTransaction) {
  absl::StatusOr<v1::Transaction> first = Execute(TwoBranches("order-17"));
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<v1::Transaction> again = Execute(TwoBranches("order-17"));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->transaction_id(), first->transaction_id());
  int prepares = 0;
  for (const std::string& event : a_->received()) {
    prepares += event.rfind("prepare:", 0) == 0;
  }
  EXPECT_EQ(prepares, 1);
  // The same key with another request is refused.
  v1::ExecuteRequest other = TwoBranches("order-17");
  other.mutable_branches()->RemoveLast();
  EXPECT_THAT(Execute(other),
              twopc::testing::StatusIs(absl::StatusCode::kAlreadyExists));
  // And the key finds it after a restart too.
  RestartCoordinator();
  absl::StatusOr<v1::Transaction> after = Execute(TwoBranches("order-17"));
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->transaction_id(), first->transaction_id());
}

TEST_F(CoordinatorServerTest, BadInputIsRefusedBeforeAnythingIsPrepared) {
  v1::ExecuteRequest empty;
  EXPECT_THAT(Execute(empty),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("no branch")));
  v1::ExecuteRequest duplicate;
  *duplicate.add_branches() = KvBranch("a");
  *duplicate.add_branches() = KvBranch("a");
  EXPECT_THAT(Execute(duplicate),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("two branches")));
  v1::ExecuteRequest unknown;
  *unknown.add_branches() = KvBranch("nobody");
  EXPECT_THAT(Execute(unknown),
              twopc::testing::StatusIs(absl::StatusCode::kNotFound,
                                       HasSubstr("not registered")));
  v1::ExecuteRequest too_many;
  for (int i = 0; i < 17; ++i) *too_many.add_branches() = KvBranch("a");
  EXPECT_THAT(Execute(too_many),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("limit is 16")));
  v1::ExecuteRequest oversized = TwoBranches();
  oversized.mutable_branches(0)->mutable_kv()->mutable_operations(0)
      ->mutable_put()->set_value(std::string((1 << 20) + 1, 'x'));
  EXPECT_THAT(Execute(oversized),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  v1::ExecuteRequest long_timeout = TwoBranches();
  long_timeout.mutable_timeout()->set_seconds(3600);
  EXPECT_THAT(Execute(long_timeout),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("timeout")));
  EXPECT_TRUE(a_->received().empty());
  EXPECT_THAT(Get("999-1"),
              twopc::testing::StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(CoordinatorServerTest, InteractiveTransactionCommitAndAbortRules) {
  grpc::ClientContext begin_context;
  v1::BeginRequest begin;
  v1::BeginResponse begun;
  ASSERT_TRUE(transactions_->Begin(&begin_context, begin, &begun).ok());
  const std::string id = begun.transaction_id();

  for (const char* participant : {"a", "b"}) {
    grpc::ClientContext context;
    v1::AddBranchRequest add;
    add.set_transaction_id(id);
    *add.mutable_branch() = KvBranch(participant);
    v1::AddBranchResponse added;
    ASSERT_TRUE(transactions_->AddBranch(&context, add, &added).ok());
    // A retry of the same call is fine.
    grpc::ClientContext retry_context;
    ASSERT_TRUE(transactions_->AddBranch(&retry_context, add, &added).ok());
  }
  grpc::ClientContext commit_context;
  v1::CommitRequest commit;
  commit.set_transaction_id(id);
  v1::CommitResponse committed;
  ASSERT_TRUE(transactions_->Commit(&commit_context, commit, &committed).ok());
  EXPECT_EQ(committed.transaction().outcome(), v1::OUTCOME_COMMITTED);

  // Abort after commit is refused; a second Commit answers the same.
  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_transaction_id(id);
  v1::AbortResponse aborted;
  EXPECT_EQ(transactions_->Abort(&abort_context, abort, &aborted).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext again_context;
  EXPECT_TRUE(transactions_->Commit(&again_context, commit, &committed).ok());

  // Commit after abort is ABORTED.
  grpc::ClientContext begin2_context;
  ASSERT_TRUE(transactions_->Begin(&begin2_context, begin, &begun).ok());
  grpc::ClientContext add2_context;
  v1::AddBranchRequest add;
  add.set_transaction_id(begun.transaction_id());
  *add.mutable_branch() = KvBranch("a");
  v1::AddBranchResponse added;
  ASSERT_TRUE(transactions_->AddBranch(&add2_context, add, &added).ok());
  grpc::ClientContext abort2_context;
  abort.set_transaction_id(begun.transaction_id());
  ASSERT_TRUE(transactions_->Abort(&abort2_context, abort, &aborted).ok());
  grpc::ClientContext commit2_context;
  commit.set_transaction_id(begun.transaction_id());
  EXPECT_EQ(
      transactions_->Commit(&commit2_context, commit, &committed).error_code(),
      grpc::StatusCode::ABORTED);
}

TEST_F(CoordinatorServerTest, RestartRedrivesDecidedCommitsWithANewEpoch) {
  b_->set_ack_commits(false);
  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  ASSERT_THAT(t, IsOk());
  const std::string id = t->transaction_id();
  ASSERT_TRUE(b_->WaitFor("commit:" + id));
  const uint64_t old_epoch = coordinator_->epoch();

  b_->set_ack_commits(true);
  RestartCoordinator();
  EXPECT_GT(coordinator_->epoch(), old_epoch);
  EXPECT_TRUE(WaitForState(id, v1::TRANSACTION_STATE_COMMITTED));
  EXPECT_EQ(b_->last_epoch(), coordinator_->epoch());
}

TEST_F(CoordinatorServerTest, KeyRetryAfterARestartFindsTheUnfinishedTransaction) {
  b_->set_ack_commits(false);
  absl::StatusOr<v1::Transaction> first = Execute(TwoBranches("order-9"));
  ASSERT_THAT(first, IsOk());
  RestartCoordinator();
  absl::StatusOr<v1::Transaction> again = Execute(TwoBranches("order-9"));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->transaction_id(), first->transaction_id());
}

TEST_F(CoordinatorServerTest, ShutdownAnswersWaitingClientsInsteadOfHanging) {
  b_->set_ack_commits(false);
  v1::ExecuteRequest request = TwoBranches();
  request.set_wait_for_completion(true);
  absl::StatusOr<v1::Transaction> result;
  std::thread client([&] { result = Execute(request); });
  ASSERT_TRUE(b_->WaitFor("commit:1-1"));
  coordinator_->Shutdown(absl::Milliseconds(200));
  client.join();
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(IsAmbiguous(result.status().code())) << result.status();
  StartCoordinator();  // for TearDown symmetry
}

// A graceful shutdown drains first: a transaction already started is
// decided and answered (here at its deadline) instead of being cut off
// ambiguous, while new transactions are refused as not started.
TEST_F(CoordinatorServerTest, ShutdownDecidesStartedTransactionsFirst) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  v1::ExecuteRequest started = TwoBranches();
  started.mutable_timeout()->set_seconds(2);
  absl::StatusOr<v1::Transaction> result;
  std::thread client([&] { result = Execute(started); });
  ASSERT_TRUE(b_->WaitFor("prepare:1-1"));
  std::thread shutdown([&] { coordinator_->Shutdown(kWait); });

  v1::ExecuteRequest later;
  *later.add_branches() = KvBranch("a");
  absl::Status refused;
  EXPECT_TRUE(twopc::testing::Eventually([&] {
    refused = Execute(later).status();
    return !refused.ok();
  }));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_THAT(refused, twopc::testing::HasErrorInfo(
                           v1::ErrorInfo::CERTAINTY_DEFINITE, "SHUTTING_DOWN"));

  client.join();
  EXPECT_THAT(result, twopc::testing::StatusIs(absl::StatusCode::kAborted,
                                               HasSubstr("no vote from b")));
  shutdown.join();
  StartCoordinator();  // for TearDown symmetry
}

TEST_F(CoordinatorServerTest, UnknownTransactionsArePresumedAborted) {
  grpc::ClientContext context;
  v1::QueryOutcomesRequest request;
  request.set_participant_id("a");
  request.add_transaction_ids("0-123456");  // an earlier epoch, never logged
  const std::string future =
      absl::StrCat(coordinator_->epoch(), "-", 1'000'000);
  request.add_transaction_ids(future);
  // Far beyond anything this epoch will hand out: answered, but the
  // sequence does not jump (or wrap around).
  request.add_transaction_ids(
      absl::StrCat(coordinator_->epoch(), "-18446744073709551615"));
  // A newer coordinator's transaction: not this one's to answer.
  request.add_transaction_ids(absl::StrCat(coordinator_->epoch() + 1, "-1"));
  v1::QueryOutcomesResponse response;
  ASSERT_TRUE(gateway_->QueryOutcomes(&context, request, &response).ok());
  ASSERT_EQ(response.results_size(), 4);
  EXPECT_EQ(response.results(0).outcome(), v1::OUTCOME_ABORTED);
  EXPECT_EQ(response.results(1).outcome(), v1::OUTCOME_ABORTED);
  EXPECT_EQ(response.results(2).outcome(), v1::OUTCOME_ABORTED);
  EXPECT_EQ(response.results(3).outcome(), v1::OUTCOME_PENDING);
  // The answer is final: the id can never be handed out and committed.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
    ASSERT_THAT(t, IsOk());
    EXPECT_NE(t->transaction_id(), future);
    EXPECT_EQ(t->transaction_id(),
              absl::StrCat(coordinator_->epoch(), "-", 1'000'001 + i));
  }
}

TEST_F(CoordinatorServerTest, RequestsAfterTheDeadlineAreAborted) {
  grpc::ClientContext begin_context;
  v1::BeginRequest begin;
  begin.mutable_timeout()->set_nanos(100'000'000);
  v1::BeginResponse begun;
  ASSERT_TRUE(transactions_->Begin(&begin_context, begin, &begun).ok());
  ASSERT_TRUE(WaitForState(begun.transaction_id(),
                           v1::TRANSACTION_STATE_ABORTED));
  grpc::ClientContext add_context;
  v1::AddBranchRequest add;
  add.set_transaction_id(begun.transaction_id());
  *add.mutable_branch() = KvBranch("a");
  v1::AddBranchResponse added;
  const grpc::Status status =
      transactions_->AddBranch(&add_context, add, &added);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("deadline"));
  grpc::ClientContext commit_context;
  v1::CommitRequest commit;
  commit.set_transaction_id(begun.transaction_id());
  v1::CommitResponse committed;
  EXPECT_EQ(transactions_->Commit(&commit_context, commit, &committed)
                .error_code(),
            grpc::StatusCode::ABORTED);
  EXPECT_TRUE(a_->received().empty());
}

class CoordinatorRetentionTest : public CoordinatorServerTest {
 protected:
  void SetUp() override {
    options_.manager.retention = absl::Milliseconds(200);
    options_.manager.compaction_interval = absl::Milliseconds(50);
    CoordinatorServerTest::SetUp();
  }
};

TEST_F(CoordinatorRetentionTest, FinishedTransactionsAreCompactedAfterRetention) {
  v1::ExecuteRequest request = TwoBranches("kept-a-while");
  request.set_wait_for_completion(true);
  absl::StatusOr<v1::Transaction> t = Execute(request);
  ASSERT_THAT(t, IsOk());
  const absl::Time deadline = absl::Now() + kWait;
  absl::StatusOr<v1::Transaction> got = Get(t->transaction_id());
  while (got.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    got = Get(t->transaction_id());
  }
  EXPECT_THAT(got, twopc::testing::StatusIs(absl::StatusCode::kNotFound,
                                            HasSubstr("compacted")));
  // The idempotency key is gone with it.
  grpc::ClientContext context;
  v1::GetRequest by_key;
  by_key.mutable_ref()->set_idempotency_key("kept-a-while");
  v1::GetResponse response;
  EXPECT_EQ(transactions_->Get(&context, by_key, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

class CoordinatorQueueTest : public CoordinatorServerTest {
 protected:
  void SetUp() override {
    CoordinatorServerTest::SetUp();
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name("orders");
    create.set_partitions(2);
    v1::TopicInfo info;
    ASSERT_TRUE(admin_->CreateTopic(&context, create, &info).ok());
  }

  v1::ExecuteRequest WithMessages(const std::string& key,
                                  const std::vector<int>& partitions) {
    v1::ExecuteRequest request = TwoBranches(key);
    for (int p : partitions) {
      v1::Message* m = request.add_messages();
      m->set_topic("orders");
      m->set_partition(p);
      m->set_value(absl::StrCat(key, "@", p));
    }
    return request;
  }

  // A subscription to orders/`partition` from offset 0, bounded by kWait.
  std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> Subscribe(
      grpc::ClientContext* context, int partition) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    v1::SubscribeRequest subscribe;
    subscribe.set_topic("orders");
    subscribe.set_partition(partition);
    return queues_->Subscribe(context, subscribe);
  }

  std::vector<std::string> Values(int partition) {
    grpc::ClientContext context;
    v1::FetchRequest fetch;
    fetch.set_topic("orders");
    fetch.set_partition(partition);
    v1::FetchResponse response;
    EXPECT_TRUE(queues_->Fetch(&context, fetch, &response).ok());
    std::vector<std::string> values;
    for (const auto& m : response.messages()) {
      EXPECT_EQ(m.offset(), static_cast<int64_t>(values.size()));
      values.push_back(m.value());
    }
    return values;
  }
};

TEST_F(CoordinatorQueueTest, CommittedMessagesAppearOnceInCommitOrder) {
  ASSERT_THAT(Execute(WithMessages("t1", {0, 1})), IsOk());
  b_->set_on_prepare(FakeParticipant::OnPrepare::kNo);
  EXPECT_FALSE(Execute(WithMessages("aborted", {0, 1})).ok());
  b_->set_on_prepare(FakeParticipant::OnPrepare::kYes);
  absl::StatusOr<v1::Transaction> t2 = Execute(WithMessages("t2", {0}));
  ASSERT_THAT(t2, IsOk());
  ASSERT_EQ(t2->message_positions_size(), 1);
  EXPECT_EQ(t2->message_positions(0).offset(), 1);
  // A retry with the same key publishes nothing again.
  ASSERT_THAT(Execute(WithMessages("t2", {0})), IsOk());

  RestartCoordinator();
  ASSERT_THAT(Execute(WithMessages("t3", {0})), IsOk());
  EXPECT_EQ(Values(0), (std::vector<std::string>{"t1@0", "t2@0", "t3@0"}));
  EXPECT_EQ(Values(1), (std::vector<std::string>{"t1@1"}));
}

TEST_F(CoordinatorQueueTest, AddedMessagesCountTowardsTheTransactionByteLimit) {
  grpc::ClientContext begin_context;
  v1::BeginRequest begin;
  v1::BeginResponse begun;
  ASSERT_TRUE(transactions_->Begin(&begin_context, begin, &begun).ok());
  // 900 KB a call: each call is within every per-message limit, the fifth
  // passes the 4 MiB the whole transaction may hold.
  grpc::Status status;
  int accepted = 0;
  for (; accepted < 10; ++accepted) {
    grpc::ClientContext context;
    v1::AddMessagesRequest add;
    add.set_transaction_id(begun.transaction_id());
    add.set_first_index(accepted);
    v1::Message* m = add.add_messages();
    m->set_topic("orders");
    m->set_value(std::string(900'000, 'x'));
    v1::AddMessagesResponse response;
    status = transactions_->AddMessages(&context, add, &response);
    if (!status.ok()) break;
  }
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("the limit is 4194304"));
}

TEST_F(CoordinatorQueueTest, UnknownTopicsAndPartitionsAreRefusedUpFront) {
  v1::ExecuteRequest unknown = TwoBranches();
  unknown.add_messages()->set_topic("nope");
  EXPECT_THAT(Execute(unknown),
              twopc::testing::StatusIs(absl::StatusCode::kNotFound,
                                       HasSubstr("topic create")));
  EXPECT_THAT(Execute(WithMessages("bad", {2})),
              twopc::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("partitions 0..1")));
  EXPECT_TRUE(a_->received().empty());
}

TEST_F(CoordinatorQueueTest, SubscribersSeeNewCommits) {
  grpc::ClientContext context;
  auto reader = Subscribe(&context, 1);
  ASSERT_THAT(Execute(WithMessages("s1", {1})), IsOk());
  v1::SubscribeResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_EQ(response.messages_size(), 1);
  EXPECT_EQ(response.messages(0).value(), "s1@1");
  EXPECT_FALSE(response.messages(0).transaction_id().empty());
  EXPECT_TRUE(response.messages(0).has_commit_time());
  context.TryCancel();
}

TEST_F(CoordinatorQueueTest, ConsumerGroupSharesPartitionsAndTakesOverOnExpiry) {
  ASSERT_THAT(Execute(WithMessages("g1", {0, 1})), IsOk());
  ASSERT_THAT(Execute(WithMessages("g2", {0, 1})), IsOk());
  auto join = [&](const std::string& member) {
    grpc::ClientContext context;
    v1::JoinGroupRequest request;
    request.set_group_id("billing");
    request.set_member_id(member);
    request.add_topics("orders");
    request.mutable_session_timeout()->set_seconds(1);
    v1::JoinGroupResponse response;
    EXPECT_TRUE(queues_->JoinGroup(&context, request, &response).ok());
    return response;
  };
  v1::JoinGroupResponse first = join("alpha");
  v1::JoinGroupResponse second = join("beta");
  auto heartbeat = [&](const std::string& member) {
    grpc::ClientContext context;
    v1::GroupHeartbeatRequest request;
    request.set_group_id("billing");
    request.set_member_id(member);
    v1::GroupHeartbeatResponse response;
    EXPECT_TRUE(queues_->GroupHeartbeat(&context, request, &response).ok());
    return response;
  };
  v1::GroupHeartbeatResponse alpha = heartbeat("alpha");
  ASSERT_EQ(alpha.assignment_size(), 1);
  EXPECT_EQ(alpha.assignment(0).partition(), 0);
  EXPECT_EQ(second.assignment_size(), 1);
  EXPECT_EQ(second.assignment(0).partition(), 1);

  // alpha consumed one message of partition 0 and commits.
  {
    grpc::ClientContext context;
    v1::CommitOffsetsRequest commit;
    commit.set_group_id("billing");
    commit.set_member_id("alpha");
    commit.set_generation(alpha.generation());
    v1::PartitionOffset* offset = commit.add_offsets();
    offset->set_topic("orders");
    offset->set_partition(0);
    offset->set_offset(1);
    v1::CommitOffsetsResponse response;
    ASSERT_TRUE(queues_->CommitOffsets(&context, commit, &response).ok());
    // beta may not commit alpha's partition.
    grpc::ClientContext other;
    commit.set_member_id("beta");
    EXPECT_EQ(queues_->CommitOffsets(&other, commit, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }

  // alpha stops heartbeating; after its session beta owns both partitions
  // and resumes partition 0 from alpha's committed offset.
  const absl::Time deadline = absl::Now() + kWait;
  v1::GroupHeartbeatResponse beta = heartbeat("beta");
  while (beta.assignment_size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    beta = heartbeat("beta");
  }
  ASSERT_EQ(beta.assignment_size(), 2);
  grpc::ClientContext context;
  v1::FetchOffsetsRequest fetch;
  fetch.set_group_id("billing");
  v1::FetchOffsetsResponse offsets;
  ASSERT_TRUE(queues_->FetchOffsets(&context, fetch, &offsets).ok());
  ASSERT_EQ(offsets.offsets_size(), 1);
  EXPECT_EQ(offsets.offsets(0).partition(), 0);
  EXPECT_EQ(offsets.offsets(0).offset(), 1);
  // The expired member learns it must rejoin.
  grpc::ClientContext gone;
  v1::GroupHeartbeatRequest request;
  request.set_group_id("billing");
  request.set_member_id("alpha");
  v1::GroupHeartbeatResponse response;
  EXPECT_EQ(queues_->GroupHeartbeat(&gone, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

class CoordinatorRetentionQueueTest : public CoordinatorQueueTest {
 protected:
  void SetUp() override {
    options_.retention_interval = absl::Milliseconds(50);
    CoordinatorQueueTest::SetUp();
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name("small");
    create.set_partitions(1);
    create.mutable_retention()->set_max_bytes(10);
    v1::TopicInfo info;
    ASSERT_TRUE(admin_->CreateTopic(&context, create, &info).ok());
  }
};

TEST_F(CoordinatorRetentionQueueTest, AgeRetentionDropsOldMessages) {
  {
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name("short-lived");
    create.set_partitions(1);
    create.mutable_retention()->mutable_max_age()->set_nanos(200'000'000);
    v1::TopicInfo info;
    ASSERT_TRUE(admin_->CreateTopic(&context, create, &info).ok());
  }
  v1::ExecuteRequest request = TwoBranches();
  request.add_messages()->set_topic("short-lived");
  ASSERT_THAT(Execute(request), IsOk());
  const absl::Time deadline = absl::Now() + kWait;
  int64_t start = 0;
  while (start == 0 && absl::Now() < deadline) {
    grpc::ClientContext context;
    v1::DescribeTopicRequest describe;
    describe.set_name("short-lived");
    v1::TopicInfo info;
    ASSERT_TRUE(admin_->DescribeTopic(&context, describe, &info).ok());
    start = info.partition_info(0).log_start_offset();
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(start, 1);
}

// A shutdown does not wait for open subscriptions (its grace here is the
// test's patience): the subscriber is told UNAVAILABLE, with the offset to
// subscribe again from.
TEST_F(CoordinatorQueueTest, ShutdownEndsSubscriptions) {
  grpc::ClientContext context;
  auto reader = Subscribe(&context, 1);
  ASSERT_THAT(Execute(WithMessages("s1", {1})), IsOk());
  v1::SubscribeResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_EQ(response.messages_size(), 1);
  ASSERT_EQ(response.messages(0).offset(), 0);
  coordinator_->Shutdown(kWait);
  EXPECT_FALSE(reader->Read(&response));
  const grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE)
      << end.error_message();
  EXPECT_THAT(end.error_message(), HasSubstr("subscribe again from offset 1"));
  StartCoordinator();  // for TearDown symmetry
}

// A Fetch long-polling an empty partition is answered (empty, OK) when the
// coordinator shuts down, instead of holding the shutdown for its grace
// period and then being cut off CANCELLED.
TEST_F(CoordinatorQueueTest, ShutdownAnswersALongPollingFetch) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + 3 * kWait));
  v1::FetchRequest fetch;
  fetch.set_topic("orders");
  fetch.set_partition(0);
  fetch.mutable_max_wait()->set_seconds(30);  // longer than the grace below
  v1::FetchResponse response;
  grpc::Status status;
  absl::Notification answered;
  queues_->async()->Fetch(&context, &fetch, &response,
                          [&](grpc::Status s) {
                            status = std::move(s);
                            answered.Notify();
                          });
  // A call made after the Fetch on the same connection: once it is
  // answered, the server has the Fetch (its stream was opened first).
  ASSERT_THAT(Get("no-such-transaction").status().code(),
              absl::StatusCode::kNotFound);
  coordinator_->Shutdown(kWait);
  answered.WaitForNotification();
  EXPECT_TRUE(status.ok()) << status.error_code() << ": "
                           << status.error_message();
  EXPECT_EQ(response.messages_size(), 0);
  StartCoordinator();  // for TearDown symmetry
}

TEST_F(CoordinatorQueueTest, ASubscriberThatDoesNotReadBlocksNobody) {
  grpc::ClientContext context;
  v1::SubscribeRequest subscribe;
  subscribe.set_topic("orders");
  subscribe.set_partition(0);
  subscribe.set_max_batch_messages(1);
  auto reader = queues_->Subscribe(&context, subscribe);  // never read
  for (int i = 0; i < 50; ++i) {
    v1::ExecuteRequest request = WithMessages(absl::StrCat("busy", i), {0});
    request.mutable_messages(0)->set_value(std::string(64 << 10, 'x'));
    ASSERT_THAT(Execute(request), IsOk());
  }
  EXPECT_EQ(Values(0).size(), 50u);
  context.TryCancel();
}

class CoordinatorAutoCreateTest : public CoordinatorQueueTest {
 protected:
  void SetUp() override {
    options_.auto_create_partitions = 3;
    CoordinatorQueueTest::SetUp();
  }
};

TEST_F(CoordinatorAutoCreateTest, PublishingCreatesUnknownTopics) {
  v1::ExecuteRequest request = TwoBranches();
  request.add_messages()->set_topic("fresh");
  ASSERT_THAT(Execute(request), IsOk());
  grpc::ClientContext context;
  v1::DescribeTopicRequest describe;
  describe.set_name("fresh");
  v1::TopicInfo info;
  ASSERT_TRUE(admin_->DescribeTopic(&context, describe, &info).ok());
  EXPECT_EQ(info.partitions(), 3);
}

TEST_F(CoordinatorRetentionQueueTest, SizeRetentionMovesTheLogStart) {
  for (int i = 0; i < 3; ++i) {
    v1::ExecuteRequest request = TwoBranches();
    v1::Message* m = request.add_messages();
    m->set_topic("small");
    m->set_value("123456");  // 6 bytes; only one fits in 10
    request.set_wait_for_completion(true);
    ASSERT_THAT(Execute(request), IsOk());
  }
  // A retention pass may run between the commits and move the start to 1
  // first: wait for the pass that sees all three.
  const absl::Time deadline = absl::Now() + kWait;
  grpc::Status status;
  int64_t log_start = 0;
  do {
    grpc::ClientContext context;
    v1::FetchRequest fetch;
    fetch.set_topic("small");
    v1::FetchResponse response;
    status = queues_->Fetch(&context, fetch, &response);
    if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
      std::optional<v1::ErrorInfo> info =
          GetErrorInfo(FromGrpcStatus(status));
      ASSERT_TRUE(info.has_value());
      log_start = info->log_start_offset();
      if (log_start == 2) break;
    } else {
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
    absl::SleepFor(absl::Milliseconds(20));
  } while (absl::Now() < deadline);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(log_start, 2);
}

// Each re-registration at a new endpoint closes the old link and destroys
// it then, while transactions keep using the participant.
TEST_F(CoordinatorServerTest, ReRegisteringMovesTheLinkUnderLoad) {
  std::atomic<bool> stop{false};
  std::atomic<int> executed{0};
  std::thread load([&] {
    while (!stop.load()) {
      // Transactions caught by a move abort (UNAVAILABLE); none may hang.
      (void)Execute(TwoBranches());
      ++executed;
    }
  });
  absl::Cleanup join = [&] {
    stop = true;
    load.join();
  };
  // Each move happens while transactions are running.
  auto progressed = [&executed](int from) {
    const absl::Time deadline = absl::Now() + kWait;
    while (executed.load() < from + 2 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    return executed.load() >= from + 2;
  };
  std::vector<std::unique_ptr<FakeParticipant>> moved;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(progressed(executed.load()));
    moved.push_back(std::make_unique<FakeParticipant>("b"));
    Register(*moved.back());
  }
  ASSERT_TRUE(progressed(executed.load()));
  std::move(join).Invoke();

  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->outcome(), v1::OUTCOME_COMMITTED);
  EXPECT_TRUE(moved.back()->WaitFor("commit:" + t->transaction_id()));
  EXPECT_TRUE(WaitForState(t->transaction_id(),
                           v1::TRANSACTION_STATE_COMMITTED));
  for (size_t i = 0; i + 1 < moved.size(); ++i) {
    EXPECT_THAT(moved[i]->received(),
                ::testing::Not(::testing::Contains(
                    "prepare:" + t->transaction_id())));
  }
  EXPECT_THAT(b_->received(), ::testing::Not(::testing::Contains(
                                  "prepare:" + t->transaction_id())));
}

TEST_F(CoordinatorServerTest, HeartbeatFromUnknownParticipantIsNotFound) {
  grpc::ClientContext context;
  v1::HeartbeatRequest request;
  request.set_participant_id("ghost");
  v1::HeartbeatResponse response;
  EXPECT_EQ(gateway_->Heartbeat(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace twopc::coordinator
