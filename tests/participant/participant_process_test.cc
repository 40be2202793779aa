// Real twopc-participant processes driven by the test, which plays the
// coordinator: a Link client for phase 1/2 and an in-process fake
// CoordinatorService for registration, heartbeats and outcome queries.
#include <signal.h>
#include <sys/wait.h>

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
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;
using namespace ::twopc::participant::testing;  // NOLINT

constexpr uint64_t kEpoch = 3;

std::optional<std::string> Get(const Sidecar& sidecar, const std::string& key) {
  auto value = KvGet(sidecar.address, key);
  EXPECT_THAT(value, IsOk());
  return value.ok() ? *value : std::nullopt;
}

int64_t Balance(const Sidecar& sidecar, const std::string& key) {
  std::optional<std::string> value = Get(sidecar, key);
  return value.has_value() ? std::stoll(*value) : 0;
}

v1::ErrorInfo InfoOf(const v1::BranchReply& reply) {
  v1::ErrorInfo info;
  if (reply.error().details_size() > 0) reply.error().details(0).UnpackTo(&info);
  return info;
}

class ParticipantProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coordinator_ = std::make_unique<FakeCoordinator>(kEpoch);
    ASSERT_TRUE(coordinator_->ok());
  }

  absl::StatusOr<Sidecar> Start(const std::string& id,
                                std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--coordinator=" + coordinator_->address(),
        "--data_dir=" + dir_.Sub(id)};
    args.insert(args.end(), extra.begin(), extra.end());
    // A fresh log per start, so "listening on" is this start's line.
    return StartSidecar(id, args,
                        dir_.Sub(absl::StrCat(id, ".", ++starts_, ".log")));
  }

  TempDir dir_;
  int starts_ = 0;
  std::unique_ptr<FakeCoordinator> coordinator_;
};

// Bank transfers across three sidecars: money moves only when every branch
// votes YES; a transfer that would overdraw is refused and aborted
// everywhere; the total never changes.
TEST_F(ParticipantProcessTest, BankTransfersAcrossThreeSidecarsKeepTheTotal) {
  std::vector<Sidecar> sidecars;
  std::vector<std::unique_ptr<LinkClient>> links;
  for (const char* id : {"bank1", "bank2", "bank3"}) {
    auto sidecar = Start(id);
    ASSERT_THAT(sidecar, IsOk());
    sidecars.push_back(std::move(*sidecar));
    links.push_back(
        std::make_unique<LinkClient>(sidecars.back().address, kEpoch, id));
    auto hello = links.back()->Open();
    ASSERT_THAT(hello, IsOk());
    EXPECT_EQ(hello->participant_id(), id);
    EXPECT_EQ(hello->resource(), "kv");
    EXPECT_EQ(hello->highest_epoch(), kEpoch);
  }
  // Every sidecar registers with its endpoint and heartbeats.
  ASSERT_TRUE(coordinator_->WaitFor([](FakeCoordinator& c) {
    std::set<std::string> registered, beating;
    for (const auto& r : c.registrations_) registered.insert(r.participant_id());
    for (const auto& h : c.heartbeats_) beating.insert(h.participant_id());
    return registered.size() == 3 && beating.size() == 3;
  }));
  uint64_t id = 1;
  // Seed: one-phase commits of opening balances.
  const std::vector<std::pair<std::string, int>> accounts = {
      {"alice", 100}, {"bob", 50}, {"carol", 0}};
  for (int i = 0; i < 3; ++i) {
    const uint64_t request = id++;
    links[i]->Send({PrepareRequest(
        request, absl::StrCat("seed-", i),
        KvBranch({Put(accounts[i].first, absl::StrCat(accounts[i].second))}),
        /*one_phase=*/true)});
    auto reply = links[i]->Await(request);
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->ack(), v1::BranchReply::ACK_COMMITTED);
  }

  // Transfer 30 from alice (bank1) to bob (bank2) and 5 to carol (bank3).
  struct Leg {
    int sidecar;
    std::string account;
    int64_t delta;
  };
  auto transfer = [&](const std::string& txid, const std::vector<Leg>& legs,
                      bool expect_commit, const std::string& no_reason = "") {
    std::vector<uint64_t> requests;
    for (const Leg& leg : legs) {
      requests.push_back(id++);
      links[leg.sidecar]->Send({PrepareRequest(
          requests.back(), txid,
          KvBranch({Add(leg.account, leg.delta, /*min=*/0)}))});
    }
    bool all_yes = true;
    for (size_t i = 0; i < legs.size(); ++i) {
      auto reply = links[legs[i].sidecar]->Await(requests[i]);
      ASSERT_THAT(reply, IsOk());
      if (reply->vote() != v1::VOTE_YES) {
        all_yes = false;
        EXPECT_EQ(reply->vote(), v1::VOTE_NO);
        EXPECT_THAT(reply->reason(), HasSubstr(no_reason));
      }
    }
    EXPECT_EQ(all_yes, expect_commit);
    requests.clear();
    for (const Leg& leg : legs) {
      requests.push_back(id++);
      links[leg.sidecar]->Send({all_yes ? CommitRequest(requests.back(), txid)
                                        : AbortRequest(requests.back(), txid,
                                                       "a branch voted NO")});
    }
    for (size_t i = 0; i < legs.size(); ++i) {
      auto reply = links[legs[i].sidecar]->Await(requests[i]);
      ASSERT_THAT(reply, IsOk());
      EXPECT_EQ(reply->ack(), all_yes ? v1::BranchReply::ACK_COMMITTED
                                      : v1::BranchReply::ACK_ABORTED);
    }
  };
  auto total = [&] {
    return Balance(sidecars[0], "alice") + Balance(sidecars[1], "bob") +
           Balance(sidecars[2], "carol");
  };
  transfer("t1", {{0, "alice", -35}, {1, "bob", 30}, {2, "carol", 5}}, true);
  EXPECT_EQ(Balance(sidecars[0], "alice"), 65);
  EXPECT_EQ(Balance(sidecars[1], "bob"), 80);
  EXPECT_EQ(Balance(sidecars[2], "carol"), 5);
  EXPECT_EQ(total(), 150);

  // bob cannot pay 100: NO at bank2, aborted at bank1 and bank3 too.
  transfer("t2", {{1, "bob", -100}, {2, "carol", 60}, {0, "alice", 40}}, false,
           "below the minimum 0");
  EXPECT_EQ(Balance(sidecars[0], "alice"), 65);
  EXPECT_EQ(Balance(sidecars[1], "bob"), 80);
  EXPECT_EQ(Balance(sidecars[2], "carol"), 5);
  EXPECT_EQ(total(), 150);

  // The aborted branches released their locks.
  transfer("t3", {{2, "carol", -5}, {0, "alice", 5}}, true);
  EXPECT_EQ(total(), 150);

  // Bad input: a clear NO, nothing written.
  const uint64_t bad = id++;
  links[0]->Send({PrepareRequest(bad, "t4",
                                 KvBranch({Put("x", "1"),
                                           Put(std::string(2000, 'k'), "v")}))});
  auto bad_reply = links[0]->Await(bad);
  ASSERT_THAT(bad_reply, IsOk());
  EXPECT_EQ(bad_reply->vote(), v1::VOTE_NO);
  EXPECT_THAT(bad_reply->reason(), HasSubstr("keys must be 1..1024 bytes"));
  EXPECT_EQ(Get(sidecars[0], "x"), std::nullopt);

  // KvService: scan and argument checks.
  auto stub = v1::KvService::NewStub(grpc::CreateChannel(
      sidecars[0].address, grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    v1::KvScanRequest request;
    request.set_prefix("al");
    v1::KvScanResponse response;
    ASSERT_TRUE(stub->Scan(&context, request, &response).ok());
    ASSERT_EQ(response.entries_size(), 1);
    EXPECT_EQ(response.entries(0).key(), "alice");
    EXPECT_EQ(response.entries(0).value(), "70");
  }
  {
    grpc::ClientContext context;
    v1::KvScanRequest request;
    request.set_limit(10'001);
    v1::KvScanResponse response;
    EXPECT_EQ(stub->Scan(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_THAT(KvGet(sidecars[0].address, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));

  for (auto& link : links) EXPECT_TRUE(link->Finish().ok());
  for (Sidecar& sidecar : sidecars) {
    sidecar.process->Signal(SIGTERM);
    auto status = sidecar.process->Wait(kWait);
    ASSERT_THAT(status, IsOk());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    EXPECT_THAT(sidecar.process->Output(), HasSubstr("stopped"));
  }
}

// kill -9 with two prepared branches; after the restart the sidecar keeps
// their locks, asks the coordinator, and applies commit to one and abort to
// the other.
TEST_F(ParticipantProcessTest, KilledSidecarResolvesPreparedBranchesAfterRestart) {
  uint64_t id = 1;
  {
    auto sidecar = Start("p1", {"--in_doubt_after=60"});
    ASSERT_THAT(sidecar, IsOk());
    LinkClient link(sidecar->address, kEpoch);
    ASSERT_THAT(link.Open(), IsOk());
    link.Send({PrepareRequest(1, "commit-me", KvBranch({Put("a", "1")})),
               PrepareRequest(2, "abort-me", KvBranch({Put("b", "2")}))});
    for (uint64_t request : {1, 2}) {
      auto reply = link.Await(request);
      ASSERT_THAT(reply, IsOk());
      EXPECT_EQ(reply->vote(), v1::VOTE_YES);
    }
    id = 3;
    sidecar->process->Kill();  // SIGKILL
  }
  auto sidecar = Start("p1", {"--in_doubt_after=60"});
  ASSERT_THAT(sidecar, IsOk());
  EXPECT_THAT(sidecar->process->Output(),
              HasSubstr("2 prepared branches recovered"));
  // Found at start-up: asked at once (not after 60s).
  ASSERT_TRUE(coordinator_->WaitFor([](FakeCoordinator& c) {
    return c.queries_.contains("commit-me") && c.queries_.contains("abort-me");
  }));
  // Still PENDING: the locks survived the restart.
  LinkClient link(sidecar->address, kEpoch);
  ASSERT_THAT(link.Open(), IsOk());
  const uint64_t conflicting = id++;
  link.Send({PrepareRequest(conflicting, "other", KvBranch({Put("a", "x")}))});
  auto refused = link.Await(conflicting);
  ASSERT_THAT(refused, IsOk());
  EXPECT_EQ(refused->vote(), v1::VOTE_NO);
  EXPECT_THAT(refused->reason(), HasSubstr("locked by prepared transaction commit-me"));

  coordinator_->SetOutcome("commit-me", v1::OUTCOME_COMMITTED);
  coordinator_->SetOutcome("abort-me", v1::OUTCOME_ABORTED);
  // The next queries (after the backoff) resolve both.
  ASSERT_TRUE(PollUntil([&] { return Get(*sidecar, "a") == "1"; }));
  ASSERT_TRUE(PollUntil([&] {
    // A duplicate prepare is answered from the branch's state, no effect:
    // YES while PREPARED, NO once aborted.
    const uint64_t probe = id++;
    link.Send({PrepareRequest(probe, "abort-me", KvBranch({Put("b", "2")}))});
    auto reply = link.Await(probe);
    return reply.ok() && reply->vote() == v1::VOTE_NO;
  }));
  for (const auto& [txid, ack] :
       std::vector<std::pair<std::string, v1::BranchReply::Ack>>{
           {"commit-me", v1::BranchReply::ACK_COMMITTED},
           {"abort-me", v1::BranchReply::ACK_ABORTED}}) {
    const uint64_t late = id++;
    link.Send({CommitRequest(late, txid)});
    auto answer = link.Await(late);
    ASSERT_THAT(answer, IsOk());
    EXPECT_EQ(answer->ack(), ack) << txid;
  }
  EXPECT_EQ(Get(*sidecar, "a"), "1");
  EXPECT_EQ(Get(*sidecar, "b"), std::nullopt);
  // Locks released: b can be prepared again.
  const uint64_t again = id++;
  link.Send({PrepareRequest(again, "again", KvBranch({Put("b", "3")}))});
  auto yes = link.Await(again);
  ASSERT_THAT(yes, IsOk());
  EXPECT_EQ(yes->vote(), v1::VOTE_YES);
}

TEST_F(ParticipantProcessTest, InDoubtBranchAsksAfterTheConfiguredTime) {
  auto sidecar = Start("p1", {"--in_doubt_after=0.2"});
  ASSERT_THAT(sidecar, IsOk());
  LinkClient link(sidecar->address, kEpoch);
  ASSERT_THAT(link.Open(), IsOk());
  coordinator_->SetOutcome("t1", v1::OUTCOME_COMMITTED);
  link.Send({PrepareRequest(1, "t1", KvBranch({Put("k", "v")}))});
  auto reply = link.Await(1);
  ASSERT_THAT(reply, IsOk());
  ASSERT_EQ(reply->vote(), v1::VOTE_YES);
  // The coordinator never sends the commit; the sidecar asks and applies.
  ASSERT_TRUE(PollUntil([&] { return Get(*sidecar, "k") == "v"; }));
  EXPECT_TRUE(coordinator_->WaitFor(
      [](FakeCoordinator& c) { return c.queries_.contains("t1"); }));
}

TEST_F(ParticipantProcessTest, OlderEpochsAreFencedAcrossRestarts) {
  auto sidecar = Start("p1");
  ASSERT_THAT(sidecar, IsOk());
  {
    LinkClient link(sidecar->address, 7);
    auto hello = link.Open({PrepareRequest(1, "t1", KvBranch({Put("k", "v")}))});
    ASSERT_THAT(hello, IsOk());
    EXPECT_EQ(hello->highest_epoch(), 7u);
    auto reply = link.Await(1);
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->vote(), v1::VOTE_YES);
  }
  auto stale = [&](Sidecar& s) {
    LinkClient old(s.address, 6);
    auto hello = old.Open({CommitRequest(2, "t1")});
    ASSERT_THAT(hello, IsOk());
    EXPECT_EQ(hello->highest_epoch(), 7u);
    auto reply = old.Await(2);
    ASSERT_THAT(reply, IsOk());
    ASSERT_TRUE(reply->has_error());
    EXPECT_EQ(reply->error().code(),
              static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
    EXPECT_EQ(InfoOf(*reply).reason(), "STALE_EPOCH");
  };
  stale(*sidecar);
  sidecar->process->Signal(SIGTERM);
  ASSERT_THAT(sidecar->process->Wait(kWait), IsOk());
  // The fake coordinator's epoch (3) is older too: registration must not
  // lower the highest epoch.
  auto restarted = Start("p1");
  ASSERT_THAT(restarted, IsOk());
  stale(*restarted);
  EXPECT_FALSE(KvGet(restarted->address, "k")->has_value());  // not committed

  // A link to the wrong participant is refused.
  LinkClient wrong(restarted->address, 7, "p2");
  EXPECT_THAT(wrong.Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("not the expected 'p2'")));
}

TEST_F(ParticipantProcessTest, ServesWhileTheCoordinatorIsDownAndRegistersLater) {
  // Learn a free port, then stop the coordinator.
  const std::string address = coordinator_->address();
  coordinator_->Stop();
  auto sidecar = Start("p1");
  ASSERT_THAT(sidecar, IsOk());
  // Serving without a coordinator.
  LinkClient link(sidecar->address, kEpoch);
  ASSERT_THAT(link.Open({PrepareRequest(1, "t1", KvBranch({Put("k", "v")}),
                                        /*one_phase=*/true)}),
              IsOk());
  auto reply = link.Await(1);
  ASSERT_THAT(reply, IsOk());
  EXPECT_EQ(reply->ack(), v1::BranchReply::ACK_COMMITTED);
  ASSERT_THAT((*sidecar).process->WaitForLine("retrying with backoff", kWait),
              IsOk());

  coordinator_ = std::make_unique<FakeCoordinator>(kEpoch, address);
  ASSERT_TRUE(coordinator_->ok());
  ASSERT_TRUE(coordinator_->WaitFor([&](FakeCoordinator& c) {
    return !c.registrations_.empty() && !c.heartbeats_.empty();
  }));
  EXPECT_EQ(coordinator_->registrations_[0].participant_id(), "p1");
  EXPECT_EQ(coordinator_->registrations_[0].endpoint(), sidecar->address);
  EXPECT_EQ(coordinator_->registrations_[0].resource(), "kv");

  // Forgotten by the coordinator: the next heartbeat registers again.
  coordinator_->ForgetParticipants();
  ASSERT_TRUE(coordinator_->WaitFor(
      [](FakeCoordinator& c) { return c.registrations_.size() >= 2; }));

  // Stops cleanly even with the coordinator's stream still open.
  sidecar->process->Signal(SIGTERM);
  auto status = sidecar->process->Wait(kWait);
  ASSERT_THAT(status, IsOk());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_THAT(sidecar->process->Output(), HasSubstr("stopped"));
}

}  // namespace
}  // namespace twopc::participant
