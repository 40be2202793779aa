// Bad input from a participant, on the coordinator's side of the Link
// stream: a registered participant answers every batch with edited replies
// (unknown request ids, votes and acks swapped, unknown enum values, error
// replies with any code, huge reasons, a hello naming someone else, ...).
// Each round runs Execute over it and the real kv sidecar p1.
//
// Oracles: the client gets a clean answer (committed or ABORTED) within the
// call deadline; atomicity holds on p1 (its key is written if and only if
// the answer was "committed", and Get agrees); both servers stay healthy.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_world.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/scripted_participant.h"
#include "tests/testing/status_matchers.h"

namespace twopc::fuzz {
namespace {

using ::twopc::testing::IsOk;

constexpr size_t kDefaultRounds = 60;
// The hostile participant is registered under this many ids, used in turn,
// so that a link it broke has time to reconnect before its next round.
constexpr size_t kHostileIds = 8;
// The transaction timeout: a hostile answer that is ignored costs this.
constexpr absl::Duration kTransactionTimeout = absl::Milliseconds(300);
constexpr absl::Duration kCallTimeout = absl::Seconds(10);

// The edits the participant made, shared between its gRPC threads and the
// test thread.
class EditLog {
 public:
  void Add(std::vector<std::string> edits) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (std::string& edit : edits) edits_.push_back(std::move(edit));
  }
  std::string TakeAll() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::string all = absl::StrJoin(edits_, "; ");
    edits_.clear();
    return all;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> edits_ ABSL_GUARDED_BY(mu_);
};

std::string HostileId(size_t i) { return absl::StrCat("hostile-", i); }

TEST(HostileParticipantTest, CoordinatorAnswersCleanlyAndKeepsAtomicity) {
  google::protobuf::LogSilencer quiet;
  const FuzzBudget budget(kDefaultRounds);
  absl::StatusOr<std::unique_ptr<FuzzWorld>> started =
      FuzzWorld::Start(WorldOptions());
  ASSERT_THAT(started, IsOk());
  FuzzWorld& world = **started;
  // The participant's own mutator: it runs on gRPC threads. Both outlive
  // the participant.
  auto tamperer = std::make_shared<Mutator>(
      budget.seed(), std::vector<std::string>{"hostile-0", "p1"});
  EditLog edits;
  absl::StatusOr<std::unique_ptr<ScriptedParticipant>> hostile =
      ScriptedParticipant::Start();
  ASSERT_THAT(hostile, IsOk());
  for (size_t i = 0; i < kHostileIds; ++i) {
    ASSERT_THAT(world.Register(HostileId(i), (*hostile)->address()), IsOk());
  }
  (*hostile)->set_tamper([tamperer, &edits](v1::ParticipantBatch* batch) {
    // A lying hello only now and then (the link would be down most of the
    // time), and an honest answer now and then.
    const bool lie =
        batch->has_hello() ? tamperer->OneIn(8) : !tamperer->OneIn(4);
    if (!lie) return;
    std::vector<std::string> log;
    tamperer->MutateMessage(batch, &log);
    edits.Add(std::move(log));
  });

  size_t round = 0;
  for (; budget.Continue(round); ++round) {
    const std::string hostile_id = HostileId(round % kHostileIds);
    ASSERT_THAT(world.WaitForParticipant(hostile_id), IsOk());
    const std::string key = absl::StrCat("hostile/", round);
    v1::ExecuteRequest request;
    request.set_idempotency_key(absl::StrCat("hostile-", round));
    v1::Branch* mine = request.add_branches();
    mine->set_participant_id(world.refs().participant);
    auto* put = mine->mutable_kv()->add_operations()->mutable_put();
    put->set_key(key);
    put->set_value("v");
    v1::Branch* theirs = request.add_branches();
    theirs->set_participant_id(hostile_id);
    theirs->set_payload("anything");
    *request.mutable_timeout() =
        google::protobuf::util::TimeUtil::MillisecondsToDuration(
            absl::ToInt64Milliseconds(kTransactionTimeout));

    absl::StatusOr<v1::Transaction> result =
        world.Execute(request, kCallTimeout);
    const std::string replay = absl::StrCat(
        budget.Describe(), ", round ", round, ", edits: ", edits.TakeAll());
    ASSERT_TRUE(result.ok() || absl::IsAborted(result.status()))
        << result.status() << "; " << replay;
    ASSERT_FALSE(!result.ok() && result.status().message().empty()) << replay;

    v1::GetRequest get;
    get.mutable_ref()->set_idempotency_key(request.idempotency_key());
    v1::GetResponse got;
    ASSERT_THAT(CallUnary(world.transactions(),
                          &v1::TransactionService::Stub::Get, get, &got),
                IsOk())
        << replay;
    ASSERT_EQ(got.transaction().outcome(),
              result.ok() ? v1::OUTCOME_COMMITTED : v1::OUTCOME_ABORTED)
        << replay;
    // p1 ends its branch the way the client was told, and only then.
    const std::string id = got.transaction().transaction_id();
    const std::string outcome = result.ok() ? "COMMITTED" : "ABORTED";
    ASSERT_THAT(WaitUntil(
                    [&]() -> absl::Status {
                      const std::string state = world.SidecarBranchState(id);
                      if (state == outcome) return absl::OkStatus();
                      return absl::FailedPreconditionError(
                          absl::StrCat("p1's branch of ", id, " is ", state));
                    },
                    kCallTimeout),
                IsOk())
        << "the client was told " << outcome << "; " << replay;
    absl::StatusOr<std::optional<std::string>> value = world.KvGet(key);
    ASSERT_THAT(value, IsOk());
    ASSERT_EQ(*value,
              result.ok() ? std::optional<std::string>("v") : std::nullopt)
        << replay;
    ASSERT_THAT(world.CheckServing(), IsOk()) << replay;
  }
  std::printf("hostile participant: %zu rounds (%s)\n", round,
              budget.Describe().c_str());
}

}  // namespace
}  // namespace twopc::fuzz
