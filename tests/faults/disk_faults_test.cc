// Disk faults with the real binaries: a failed sync or a full disk under the
// coordinator's decision log, or under a sidecar's branch store (failure
// points storage.sync_error and storage.disk_full). The process must stop
// (exit 70) without acknowledging anything that is not durable, say why in
// one line naming its data directory and the error, and after a restart
// without the fault the transfer is aborted on every branch.
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/faults/bank.h"
#include "tests/faults/waits.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kExitWait = absl::Seconds(30);
// What a process that cannot write its data directory exits with.
constexpr int kDiskFailureExitCode = 70;

struct DiskFault {
  const char* point;
  // How the error reads, as RocksDB words it.
  const char* error;
};

const DiskFault kFaults[] = {{"storage.sync_error", "Input/output error"},
                             {"storage.disk_full", "No space left on device"}};

void PrintTo(const DiskFault& fault, std::ostream* os) { *os << fault.point; }

std::string FaultName(const ::testing::TestParamInfo<DiskFault>& info) {
  return info.param.point == std::string("storage.sync_error") ? "FailedSync"
                                                               : "FullDisk";
}

class DiskFaultTest : public ::testing::TestWithParam<DiskFault> {
 protected:
  void SetUp() override { ASSERT_THAT(bank_.Open(), IsOk()); }

  void TearDown() override {
    if (HasFailure()) cluster_.PrintLogs();
  }

  // Restarts `name` (after a clean stop, so that its next synced write is
  // the transfer's) with every synced write failing.
  void StartFailing(const std::string& name) {
    ASSERT_THAT(cluster_.Stop(name), IsOk());
    ASSERT_THAT(
        bank_.Start(
            name, {absl::StrCat("--failpoints=", GetParam().point, "=error")}),
        IsOk());
  }

  // `name` stopped with exit code 70 and one FATAL line naming its data
  // directory and the error.
  void ExpectStoppedSayingWhy(const std::string& name) {
    absl::StatusOr<int> exit_code = cluster_.WaitForExit(name, kExitWait);
    ASSERT_THAT(exit_code, IsOk());
    EXPECT_EQ(*exit_code, kDiskFailureExitCode);
    EXPECT_THAT(cluster_.Log(name),
                AllOf(HasSubstr("FATAL"),
                      HasSubstr(absl::StrCat("synced write to data directory ",
                                             dir_.Sub(name))),
                      HasSubstr(GetParam().error)));
  }

  // After recovery, the transfer `key` is aborted.
  void ExpectAborted(const std::string& key) {
    absl::StatusOr<bool> committed = bank_.Committed(key);
    ASSERT_THAT(committed, IsOk());
    EXPECT_FALSE(*committed);
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
  Bank bank_{&cluster_};
};

TEST_P(DiskFaultTest, TheCoordinatorStopsWithoutAcknowledgingAndAborts) {
  StartFailing(LocalCluster::kCoordinator);
  const Bank::Receipt receipt = bank_.Transfer(Bank::kP1, 10);
  // The decision could not be made durable: the client cannot be told
  // COMMITTED, nor ABORTED (the record may have reached the disk).
  EXPECT_TRUE(IsAmbiguous(receipt.told.code())) << receipt.told;
  ExpectStoppedSayingWhy(LocalCluster::kCoordinator);
  // Nothing more is acknowledged (the process is gone by now, so this only
  // checks that the client sees an error; the stop itself is the guarantee).
  EXPECT_FALSE(bank_.Transfer(Bank::kP2, 5).told.ok());

  ASSERT_THAT(bank_.Start(LocalCluster::kCoordinator), IsOk());
  ExpectAborted(receipt.key);
  EXPECT_THAT(bank_.Verify(), IsOk());  // aborted on both branches too
}

TEST_P(DiskFaultTest, ASidecarStopsWithoutVotingYesAndTheTransferAborts) {
  StartFailing(Bank::kP2);
  const Bank::Receipt receipt = bank_.Transfer(Bank::kP1, 10);
  EXPECT_FALSE(receipt.told.ok());
  ExpectStoppedSayingWhy(Bank::kP2);
  absl::StatusOr<v1::Transaction> transaction = bank_.Lookup(receipt.key);
  ASSERT_THAT(transaction, IsOk());
  int p2_branches = 0;
  for (const v1::BranchStatus& branch : transaction->branches()) {
    if (branch.participant_id() == Bank::kP2) {
      ++p2_branches;
      EXPECT_NE(branch.vote(), v1::VOTE_YES);
    }
  }
  EXPECT_EQ(p2_branches, 1);

  ASSERT_THAT(bank_.Start(Bank::kP2), IsOk());
  ExpectAborted(receipt.key);
  EXPECT_THAT(bank_.Verify(), IsOk());
}

INSTANTIATE_TEST_SUITE_P(FailedSyncAndFullDisk, DiskFaultTest,
                         ::testing::ValuesIn(kFaults), FaultName);

}  // namespace
}  // namespace twopc::testing
