// Crashes at the named failure points of the storage layer and the sidecar
// (common/failpoint.cc), with the real binaries, during 2-branch bank
// transfers: the process dies there, is restarted, and the bank checks the
// promises (tests/faults/bank.h): both branches of every transfer agree, the
// total is conserved, no client was told COMMITTED for a transfer that ended
// aborted, and the messages of the committed transfers are published exactly
// once.
//
// Each point is tried two ways: the process crashes there at once (as from
// kill -9), or it first stalls there while its other threads go on (a slow
// disk); the second catches work that wrongly runs ahead of the point, e.g.
// a vote sent before its record is synced.
#include <ostream>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/faults/bank.h"
#include "tests/faults/waits.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::testing {
namespace {

// Enough transfers for every case to reach its hit (most need one or two).
constexpr int kMaxTransfers = 6;
constexpr absl::Duration kWait = absl::Seconds(45);
// Ample time for the other threads of a stalled process to run ahead.
constexpr absl::Duration kStall = absl::Seconds(1);

struct CrashCase {
  // LocalCluster::kCoordinator or a sidecar of the bank.
  const char* process;
  const char* point;
  // The hit of `point` (counted from the process's start) to crash at.
  int hit;
};

// The coordinator syncs once per transfer, for its decision: the COMMIT
// record with the transfer's message, before the client is told (its
// PREPARING and COMMITTED records are written unsynced, see
// GroupCommitWriter). The debit sidecar p1 syncs its PREPARED record, then
// its COMMITTED record with the new balance.
const CrashCase kCases[] = {
    // The decision is not durable: presumed abort, the client was not told.
    {LocalCluster::kCoordinator, "storage.before_sync", 1},
    {LocalCluster::kCoordinator, "storage.queue_append", 1},
    // The decision is durable, nobody was told: recovery commits both
    // branches and publishes the message once.
    {LocalCluster::kCoordinator, "storage.after_sync", 1},
    {LocalCluster::kCoordinator, "coordinator.after_decision_synced", 1},
    // Decided and delivered, one of two acks in: recovery re-delivers.
    {LocalCluster::kCoordinator, "coordinator.after_commit_ack", 2},
    // The second decision, after a first transfer committed: that one stays
    // committed, this one aborts.
    {LocalCluster::kCoordinator, "storage.before_sync", 2},
    // The sidecar dies before its YES is durable: abort everywhere.
    {Bank::kP1, "storage.before_sync", 1},
    // Its YES is durable but never sent: in doubt, then aborted.
    {Bank::kP1, "storage.after_sync", 1},
    {Bank::kP1, "participant.after_prepare_synced", 1},
    // Decided commit, the sidecar dies before/after recording it: it
    // commits after its restart, exactly once.
    {Bank::kP1, "storage.before_sync", 2},
    {Bank::kP1, "storage.after_sync", 2},
    {Bank::kP1, "participant.after_commit_applied", 1},
};

// How the process dies at the point.
enum class Death {
  // At once.
  kCrash,
  // After stalling there for kStall while its other threads go on.
  kStallThenCrash,
};

void PrintTo(const CrashCase& c, std::ostream* os) {
  *os << c.process << " " << c.point << "@" << c.hit;
}

void PrintTo(Death death, std::ostream* os) {
  *os << (death == Death::kCrash ? "crash" : "stall then crash");
}

std::string CaseName(
    const ::testing::TestParamInfo<std::tuple<CrashCase, Death>>& info) {
  const auto& [c, death] = info.param;
  return absl::StrReplaceAll(
      absl::StrCat(c.process, "_", c.point, "_at_", c.hit,
                   death == Death::kCrash ? "_crash" : "_stall_then_crash"),
      {{".", "_"}});
}

class CrashPointTest
    : public ::testing::TestWithParam<std::tuple<CrashCase, Death>> {
 protected:
  void SetUp() override { ASSERT_THAT(bank_.Open(), IsOk()); }

  void TearDown() override {
    if (HasFailure()) cluster_.PrintLogs();
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
  Bank bank_{&cluster_};
};

TEST_P(CrashPointTest, TheBankKeepsItsPromisesAfterTheCrash) {
  const auto& [c, death] = GetParam();
  const std::string action =
      death == Death::kCrash
          ? "crash"
          : absl::StrCat("crash:", absl::ToInt64Milliseconds(kStall));
  // Restarted after a clean stop, so the hits count from the transfers.
  ASSERT_THAT(cluster_.Stop(c.process), IsOk());
  ASSERT_THAT(bank_.Start(c.process, {absl::StrCat("--failpoints=", c.point,
                                                   "=", action, "@", c.hit)}),
              IsOk());
  const std::string crash_line =
      absl::StrCat("failure point ", c.point, ": crash (hit ", c.hit, ")");
  auto crashed = [&] {
    return cluster_.Log(c.process).find(crash_line) != std::string::npos;
  };

  // One transfer at a time (each waits for the previous one to finish, so
  // that its account locks are free), alternating directions.
  for (int i = 0; i < kMaxTransfers && !crashed(); ++i) {
    const Bank::Receipt receipt =
        bank_.Transfer(i % 2 == 0 ? Bank::kP1 : Bank::kP2, 10 + i);
    ASSERT_THAT(
        PollUntil(
            [&] { return crashed() || bank_.Outcome(receipt.key).has_value(); },
            kWait, absl::StrCat(receipt.key, " finishing")),
        IsOk());
  }
  ASSERT_TRUE(crashed()) << c.point << " was not hit " << c.hit << " times";

  ASSERT_THAT(bank_.Start(c.process), IsOk());
  EXPECT_THAT(bank_.Verify(), IsOk());
}

INSTANTIATE_TEST_SUITE_P(
    CrashPoints, CrashPointTest,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(Death::kCrash,
                                         Death::kStallThenCrash)),
    CaseName);

}  // namespace
}  // namespace twopc::testing
