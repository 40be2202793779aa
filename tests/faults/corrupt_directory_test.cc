// Damaged data directories, with the real binaries: for every kind of damage
// (tests/faults/file_damage.h) to a coordinator's and a sidecar's directory,
// the process refuses to start, with a non-zero exit and one line on its
// output naming the directory and saying what to do, and never serves: its
// port does not answer.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/faults/bank.h"
#include "tests/faults/file_damage.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr absl::Duration kExitWait = absl::Seconds(30);
constexpr const char* kProcesses[] = {LocalCluster::kCoordinator, Bank::kP1,
                                      Bank::kP2};

class CorruptDirectoryTest : public ::testing::Test {
 protected:
  // Leaves in work_ the directories of a bank's coordinator and sidecars
  // after two runs: the first stopped cleanly (its logs are flushed into
  // tables when the second opens them), the second killed with synced
  // records in its write-ahead logs.
  void SetUp() override {
    LocalCluster cluster(TWOPC_BIN_DIR, work_.path());
    Bank bank(&cluster);
    ASSERT_THAT(bank.Open(), IsOk());
    TransferThreeTimes(bank);
    for (const char* name : kProcesses) {
      ASSERT_THAT(cluster.Stop(name), IsOk());
      ASSERT_THAT(bank.Start(name), IsOk());
    }
    TransferThreeTimes(bank);
    for (const char* name : kProcesses) cluster.Kill(name);
  }

  static void TransferThreeTimes(Bank& bank) {
    for (int i = 0; i < 3; ++i) {
      const Bank::Receipt receipt = bank.Transfer(Bank::kP1, 1);
      ASSERT_THAT(receipt.told, IsOk());
      ASSERT_THAT(bank.Committed(receipt.key), IsOk());  // locks released
    }
  }

  // Copies the directory of `name` to a fresh one, damages it, starts
  // `argv` + "--data_dir=<copy>" on it and checks the refusal.
  void ExpectRefusal(const std::string& name, std::vector<std::string> argv) {
    for (Damage damage : AllDamage()) {
      // Here the MANIFEST's last edit is not a flush and its loss is
      // harmless; tests/storage/store_corruption_test.cc covers a flush's.
      if (damage == Damage::kManifestLastEditLost) continue;
      SCOPED_TRACE(DamageName(damage));
      TempDir scratch;
      const std::string dir = scratch.Sub("data");
      fs::copy(work_.Sub(name), dir, fs::copy_options::recursive);
      ASSERT_THAT(ApplyDamage(dir, damage), IsOk());
      const int port = PickFreePort();
      std::vector<std::string> args = argv;
      args.push_back(absl::StrCat("--listen=127.0.0.1:", port));
      args.push_back(absl::StrCat("--data_dir=", dir));
      auto process = Subprocess::Start(args, scratch.Sub("log"));
      ASSERT_THAT(process, IsOk());
      absl::StatusOr<int> status = (*process)->Wait(kExitWait);
      ASSERT_THAT(status, IsOk());
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
      const std::string output = (*process)->Output();
      EXPECT_THAT(std::vector<std::string>(
                      absl::StrSplit(output, '\n', absl::SkipEmpty())),
                  SizeIs(1))
          << output;
      EXPECT_THAT(
          output,
          AllOf(HasSubstr(absl::StrCat("data directory ", dir, " is damaged")),
                HasSubstr("refusing to serve it"),
                HasSubstr("restore it from a backup"),
                Not(HasSubstr("listening on"))));
      EXPECT_FALSE(Answers(port));
    }
  }

  // Whether anything accepts a gRPC connection on `port`.
  static bool Answers(int port) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                       grpc::InsecureChannelCredentials());
    return channel->WaitForConnected(
        absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
  }

  TempDir work_;
};

TEST_F(CorruptDirectoryTest, TheCoordinatorRefusesEveryDamagedDirectory) {
  ExpectRefusal(LocalCluster::kCoordinator,
                {absl::StrCat(TWOPC_BIN_DIR, "/twopc-coordinator")});
}

TEST_F(CorruptDirectoryTest, TheSidecarRefusesEveryDamagedDirectory) {
  ExpectRefusal(Bank::kP1, {absl::StrCat(TWOPC_BIN_DIR, "/twopc-participant"),
                            "--id=p1", "--coordinator=none"});
}

}  // namespace
}  // namespace twopc::testing
