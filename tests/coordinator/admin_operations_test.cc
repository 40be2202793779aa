// AdminService operator actions against a real CoordinatorServer and
// scripted participants: listing with filters and pages, timelines, stuck
// transactions, retry, park, forced decisions and their audit log.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "coordinator/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/status_matchers.h"

namespace twopc::coordinator {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::twopc::testing::StatusIs;

class AdminOperationsTest : public CoordinatorServerTest {
 protected:
  // Calls an AdminService method with a deadline.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Admin(
      grpc::Status (v1::AdminService::Stub::*method)(grpc::ClientContext*,
                                                     const Request&,
                                                     Response*),
      const Request& request) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    Response response;
    grpc::Status status = ((*admin_).*method)(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  absl::StatusOr<v1::ListTransactionsResponse> List(
      v1::ListTransactionsRequest request) {
    return Admin(&v1::AdminService::Stub::ListTransactions, request);
  }

  std::vector<v1::StuckTransaction> Stuck() {
    v1::ListStuckTransactionsRequest request;
    request.mutable_older_than();  // zero: everything stuck right now
    auto response =
        Admin(&v1::AdminService::Stub::ListStuckTransactions, request);
    EXPECT_THAT(response, IsOk());
    if (!response.ok()) return {};
    return {response->transactions().begin(), response->transactions().end()};
  }

  // Waits until exactly one transaction is stuck with a reason containing
  // `reason`, and returns it.
  absl::StatusOr<v1::StuckTransaction> WaitForStuck(const std::string& reason) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      std::vector<v1::StuckTransaction> stuck = Stuck();
      if (stuck.size() == 1 &&
          stuck[0].reason().find(reason) != std::string::npos) {
        return stuck[0];
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::DeadlineExceededError("nothing got stuck with " + reason);
  }

  absl::StatusOr<v1::TransactionDetail> Force(const std::string& id,
                                              v1::Outcome outcome,
                                              const std::string& reason) {
    v1::ForceTransactionRequest request;
    request.set_transaction_id(id);
    request.set_outcome(outcome);
    request.set_reason(reason);
    request.set_operator_("alice");
    return Admin(&v1::AdminService::Stub::ForceTransaction, request);
  }

  absl::StatusOr<v1::TransactionDetail> Describe(const std::string& id) {
    v1::DescribeTransactionRequest request;
    request.mutable_ref()->set_transaction_id(id);
    return Admin(&v1::AdminService::Stub::DescribeTransaction, request);
  }

  std::vector<v1::AuditRecord> Audit() {
    auto response = Admin(&v1::AdminService::Stub::ListAuditRecords,
                          v1::ListAuditRecordsRequest());
    EXPECT_THAT(response, IsOk());
    if (!response.ok()) return {};
    return {response->records().begin(), response->records().end()};
  }
};

std::vector<std::string> Kinds(const v1::TransactionDetail& detail) {
  std::vector<std::string> kinds;
  for (const v1::TimelineEvent& event : detail.timeline()) {
    kinds.push_back(event.kind());
  }
  return kinds;
}

TEST_F(AdminOperationsTest, ListFiltersAndPagesNewestFirstAcrossRestarts) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::ExecuteRequest request = TwoBranches();
    if (i % 2 == 0) (*request.mutable_labels())["team"] = "payments";
    if (i == 4) b_->set_on_prepare(FakeParticipant::OnPrepare::kNo);
    absl::StatusOr<v1::Transaction> t = Execute(request);
    ids.push_back(i == 4 ? "" : t->transaction_id());
  }
  b_->set_on_prepare(FakeParticipant::OnPrepare::kYes);
  RestartCoordinator();  // the list now comes from the decision log
  ASSERT_TRUE(Execute(TwoBranches()).ok());

  // Pages of two, newest first, no duplicates, six in all.
  std::vector<std::string> seen;
  v1::ListTransactionsRequest request;
  request.set_page_size(2);
  for (int page = 0; page < 10; ++page) {
    absl::StatusOr<v1::ListTransactionsResponse> response = List(request);
    ASSERT_THAT(response, IsOk());
    for (const v1::Transaction& t : response->transactions()) {
      seen.push_back(t.transaction_id());
    }
    if (response->next_page_token().empty()) break;
    request.set_page_token(response->next_page_token());
  }
  ASSERT_THAT(seen, SizeIs(6));
  EXPECT_EQ(seen[5], ids[0]);
  EXPECT_EQ(seen[4], ids[1]);

  v1::ListTransactionsRequest aborted;
  aborted.add_states(v1::TRANSACTION_STATE_ABORTED);
  EXPECT_THAT(List(aborted)->transactions(), SizeIs(1));

  v1::ListTransactionsRequest labelled;
  (*labelled.mutable_labels())["team"] = "payments";
  EXPECT_THAT(List(labelled)->transactions(), SizeIs(3));

  v1::ListTransactionsRequest on_a;
  on_a.set_participant_id("a");
  EXPECT_THAT(List(on_a)->transactions(), SizeIs(6));
  on_a.set_participant_id("nobody");
  EXPECT_THAT(List(on_a)->transactions(), SizeIs(0));

  v1::ListTransactionsRequest old;
  old.mutable_older_than()->set_seconds(3600);
  EXPECT_THAT(List(old)->transactions(), SizeIs(0));

  v1::ListTransactionsRequest bad;
  bad.set_page_token("not-a-token");
  EXPECT_THAT(List(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("page_token")));
  bad.clear_page_token();
  bad.set_page_size(1001);
  EXPECT_THAT(List(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AdminOperationsTest, AnInDoubtTransactionIsReportedAndForcedToAbort) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  v1::ExecuteRequest request = TwoBranches();
  request.mutable_timeout()->set_seconds(300);
  absl::StatusOr<v1::Transaction> client_result;
  std::thread client([&] { client_result = Execute(request); });

  absl::StatusOr<v1::StuckTransaction> stuck =
      WaitForStuck("waiting for votes from b");
  ASSERT_THAT(stuck, IsOk());
  const std::string id = stuck->transaction().transaction_id();
  EXPECT_EQ(stuck->transaction().state(), v1::TRANSACTION_STATE_PREPARING);
  EXPECT_THAT(stuck->reason(), HasSubstr("in doubt for"));

  EXPECT_THAT(Force(id, v1::OUTCOME_COMMITTED, "try"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("b (no vote yet)")));
  EXPECT_THAT(Force(id, v1::OUTCOME_ABORTED, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("reason is required")));
  absl::StatusOr<v1::TransactionDetail> forced =
      Force(id, v1::OUTCOME_ABORTED, "b is frozen, ticket 42");
  ASSERT_THAT(forced, IsOk());
  EXPECT_EQ(forced->transaction().state(), v1::TRANSACTION_STATE_ABORTED);
  EXPECT_TRUE(forced->transaction().forced());

  client.join();
  EXPECT_THAT(client_result, StatusIs(absl::StatusCode::kAborted,
                                      HasSubstr("b is frozen, ticket 42")));
  EXPECT_TRUE(a_->WaitFor("abort:" + id));
  EXPECT_THAT(Stuck(), SizeIs(0));

  // Both attempts are audited, newest first; the refusal says why.
  std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_THAT(audit, SizeIs(2));
  EXPECT_EQ(audit[0].action(), "force-abort");
  EXPECT_EQ(audit[0].result(), "applied");
  EXPECT_EQ(audit[0].operator_(), "alice");
  EXPECT_EQ(audit[1].action(), "force-commit");
  EXPECT_THAT(audit[1].result(), HasSubstr("not every branch is prepared"));

  absl::StatusOr<v1::TransactionDetail> detail = Describe(id);
  ASSERT_THAT(detail, IsOk());
  EXPECT_THAT(Kinds(*detail), Contains("force-abort"));
  EXPECT_THAT(Kinds(*detail), Contains("vote"));  // a's YES
  EXPECT_THAT(Kinds(*detail), Contains("decided"));

  // The audit log is durable.
  RestartCoordinator();
  EXPECT_THAT(Audit(), SizeIs(2));
}

TEST_F(AdminOperationsTest, PhaseTwoIsRetriedParkedAndNeverForcedToAbort) {
  b_->set_ack_commits(false);
  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  ASSERT_THAT(t, IsOk());
  const std::string id = t->transaction_id();

  // Once a has acknowledged, only b is missing.
  absl::StatusOr<v1::StuckTransaction> stuck = WaitForStuck("by b after");
  ASSERT_THAT(stuck, IsOk());
  EXPECT_THAT(stuck->reason(), HasSubstr("commit not acknowledged for"));

  EXPECT_THAT(Force(id, v1::OUTCOME_ABORTED, "undo it"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("decided COMMITTED")));
  EXPECT_EQ(Get(id)->state(), v1::TRANSACTION_STATE_COMMITTING);

  v1::ParkTransactionRequest park;
  park.set_transaction_id(id);
  park.set_reason("b is being rebuilt");
  ASSERT_THAT(Admin(&v1::AdminService::Stub::ParkTransaction, park), IsOk());
  v1::ListTransactionsRequest parked;
  parked.set_parked_only(true);
  ASSERT_THAT(List(parked)->transactions(), SizeIs(1));
  EXPECT_THAT(Stuck()[0].reason(), HasSubstr("parked"));

  v1::UnparkTransactionRequest unpark;
  unpark.set_transaction_id(id);
  unpark.set_reason("b is back");
  ASSERT_THAT(Admin(&v1::AdminService::Stub::UnparkTransaction, unpark),
              IsOk());
  v1::RetryTransactionRequest retry;
  retry.set_transaction_id(id);
  ASSERT_THAT(Admin(&v1::AdminService::Stub::RetryTransaction, retry), IsOk());
  b_->set_ack_commits(true);  // the next retry finishes it
  ASSERT_TRUE(WaitForState(id, v1::TRANSACTION_STATE_COMMITTED));
  EXPECT_THAT(Admin(&v1::AdminService::Stub::RetryTransaction, retry),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already COMMITTED")));

  absl::StatusOr<v1::TransactionDetail> detail = Describe(id);
  ASSERT_THAT(detail, IsOk());
  ASSERT_THAT(detail->branches(), SizeIs(2));
  EXPECT_GE(detail->branches(1).attempts(), 2u);
  EXPECT_TRUE(detail->branches(1).has_ack_time());
  for (const char* kind : {"created", "vote", "decided", "commit_sent", "ack",
                           "park", "unpark", "retry", "finished"}) {
    EXPECT_THAT(Kinds(*detail), Contains(kind));
  }
  // Forcing the decided direction of a finished transaction is a no-op.
  EXPECT_THAT(Force(id, v1::OUTCOME_COMMITTED, "make sure"), IsOk());
}

TEST_F(AdminOperationsTest, AParticipantIsRemovedOnlyOnceNothingNeedsIt) {
  auto remove = [this](const std::string& id, const std::string& reason) {
    v1::RemoveParticipantRequest request;
    request.set_participant_id(id);
    request.set_reason(reason);
    request.set_operator_("alice");
    return Admin(&v1::AdminService::Stub::RemoveParticipant, request);
  };
  b_->set_ack_commits(false);
  absl::StatusOr<v1::Transaction> t = Execute(TwoBranches());
  ASSERT_THAT(t, IsOk());

  // b still owes the commit acknowledgement: refused, and audited.
  EXPECT_THAT(remove("b", "retired"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("participant b still has 1 unfinished "
                                 "transaction (e.g. " +
                                 t->transaction_id() + ")")));
  EXPECT_THAT(remove("b", ""), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("a reason is required")));
  EXPECT_THAT(remove("c", "typo"), StatusIs(absl::StatusCode::kNotFound,
                                            HasSubstr("not registered")));
  EXPECT_THAT(remove("b b", "typo"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  b_->set_ack_commits(true);
  ASSERT_TRUE(WaitForState(t->transaction_id(),
                           v1::TRANSACTION_STATE_COMMITTED));
  ASSERT_THAT(remove("b", "retired"), IsOk());

  // Gone from the list, for new transactions, and across a restart.
  auto listed = [this] {
    std::vector<std::string> ids;
    auto response = Admin(&v1::AdminService::Stub::ListParticipants,
                          v1::ListParticipantsRequest());
    EXPECT_THAT(response, IsOk());
    if (!response.ok()) return ids;
    for (const v1::ParticipantInfo& p : response->participants()) {
      ids.push_back(p.participant_id());
    }
    return ids;
  };
  EXPECT_THAT(listed(), ::testing::ElementsAre("a"));
  EXPECT_THAT(Execute(TwoBranches()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("participant b is not registered")));
  RestartCoordinator();
  EXPECT_THAT(listed(), ::testing::ElementsAre("a"));
  EXPECT_THAT(remove("b", "again"), StatusIs(absl::StatusCode::kNotFound));

  // Both attempts are in the audit log, newest first.
  std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_THAT(audit, SizeIs(2));
  EXPECT_EQ(audit[0].action(), "remove-participant");
  EXPECT_EQ(audit[0].target(), "b");
  EXPECT_EQ(audit[0].operator_(), "alice");
  EXPECT_EQ(audit[0].result(), "applied");
  EXPECT_THAT(audit[1].result(), HasSubstr("still has 1 unfinished"));

  // A sidecar that comes back registers again and is used again.
  Register(*b_);
  EXPECT_THAT(Execute(TwoBranches()), IsOk());
}

// Between the check and the registry's change, no transaction may start a
// branch on the participant (it could prepare and commit there, and then
// never reach phase 2). The audit record is written with the registry's
// change, not before it: a crash in between leaves no record claiming a
// removal that did not happen.
TEST_F(AdminOperationsTest, NoTransactionStartsOnAParticipantBeingRemoved) {
  ASSERT_THAT(failpoint::ArmFromSpec(
                  "coordinator.removing_participant=delay:1000"),
              IsOk());
  absl::Cleanup disarm = [] { failpoint::DisarmAll(); };
  absl::StatusOr<v1::RemoveParticipantResponse> removed;
  std::thread removal([&] {
    v1::RemoveParticipantRequest request;
    request.set_participant_id("b");
    request.set_reason("retired");
    removed = Admin(&v1::AdminService::Stub::RemoveParticipant, request);
  });
  const absl::Time deadline = absl::Now() + kWait;
  while (failpoint::Hits("coordinator.removing_participant") == 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_THAT(Execute(TwoBranches()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("participant b is being removed")));
  EXPECT_THAT(Audit(), SizeIs(0));
  removal.join();
  EXPECT_THAT(removed, IsOk());
  std::vector<v1::AuditRecord> audit = Audit();
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].action(), "remove-participant");
  EXPECT_EQ(audit[0].result(), "applied");
  EXPECT_THAT(b_->received(), ::testing::IsEmpty());
  EXPECT_THAT(Execute(TwoBranches()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("participant b is not registered")));
}

TEST_F(AdminOperationsTest, UnknownTransactionsAreNotFound) {
  EXPECT_THAT(Describe("99-1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Force("99-1", v1::OUTCOME_ABORTED, "why"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Audit(), SizeIs(0));
}

// Stats name every limit in force, with the value the coordinator was
// started with (what `twopcctl stats` shows an operator).
TEST_F(AdminOperationsTest, StatsShowTheLimitsInForce) {
  options_.manager.limits.max_execute_streams = 7;
  options_.manager.limits.max_branches = 3;
  RestartCoordinator();
  auto stats = Admin(&v1::AdminService::Stub::GetStats, v1::GetStatsRequest());
  ASSERT_THAT(stats, IsOk());
  const Limits& limits = options_.manager.limits;
  EXPECT_EQ(stats->limits().size(), limits.Describe().size());
  for (const auto& [name, value] : limits.Describe()) {
    ASSERT_EQ(stats->limits().count(name), 1u) << name;
    EXPECT_EQ(stats->limits().at(name), value) << name;
  }
  EXPECT_EQ(stats->limits().at("max_execute_streams"), "7");
  EXPECT_EQ(stats->limits().at("max_branches"), "3");
}

}  // namespace
}  // namespace twopc::coordinator
