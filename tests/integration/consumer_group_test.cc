// Consumer groups with real processes: two `twopcctl consume --group`
// members share a topic's partitions; one is killed with -9; the other takes
// its partitions over from the group's committed offsets and skips nothing.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

constexpr absl::Duration kWait = absl::Seconds(30);

class ConsumerGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
    ASSERT_THAT(cluster_.StartParticipant("p1"), IsOk());
    ASSERT_THAT(cluster_.WaitForParticipants({"p1"}, kWait), IsOk());
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name("jobs");
    create.set_partitions(2);
    v1::TopicInfo info;
    ASSERT_TRUE(cluster_.Admin()->CreateTopic(&context, create, &info).ok());
  }

  // Publishes job-<phase>-<partition>-<i> for i < n on both partitions.
  void Publish(int phase, int n) {
    for (int i = 0; i < n; ++i) {
      v1::ExecuteRequest request;
      v1::Branch* branch = request.add_branches();
      branch->set_participant_id("p1");
      auto* put = branch->mutable_kv()->add_operations()->mutable_put();
      put->set_key(absl::StrCat("job/", phase, "/", i));
      put->set_value("queued");
      for (int p = 0; p < 2; ++p) {
        v1::Message* m = request.add_messages();
        m->set_topic("jobs");
        m->set_partition(p);
        m->set_value(absl::StrCat("job-", phase, "-", p, "-", i));
      }
      grpc::ClientContext context;
      v1::ExecuteResponse response;
      ASSERT_TRUE(
          cluster_.Transactions()->Execute(&context, request, &response).ok());
    }
  }

  std::unique_ptr<Subprocess> Consumer(const std::string& name) {
    auto process = Subprocess::Start(
        {std::string(TWOPC_BIN_DIR) + "/twopcctl",
         "--coordinator=" + cluster_.coordinator_address(), "consume", "jobs",
         "--group=workers", "--follow", "--session_timeout=1"},
        dir_.Sub(name));
    EXPECT_THAT(process, IsOk());
    return std::move(*process);
  }

  // Waits until `process` printed every value in `values`.
  static bool PrintedAll(Subprocess& process,
                         const std::vector<std::string>& values) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      const std::string output = process.Output();
      bool all = true;
      for (const std::string& v : values) {
        all &= output.find(v + "\n") != std::string::npos;
      }
      if (all) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
};

TEST_F(ConsumerGroupTest, SurvivorTakesOverFromCommittedOffsets) {
  constexpr int kPerPhase = 15;
  Publish(1, kPerPhase);
  std::unique_ptr<Subprocess> a = Consumer("a.out");
  // a alone owns both partitions and drains phase 1.
  std::vector<std::string> phase1;
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < kPerPhase; ++i) {
      phase1.push_back(absl::StrCat("job-1-", p, "-", i));
    }
  }
  ASSERT_TRUE(PrintedAll(*a, phase1)) << a->Output();

  std::unique_ptr<Subprocess> b = Consumer("b.out");
  ASSERT_THAT(b->WaitForLine("generation", kWait), IsOk());
  a->Kill();  // kill -9 while it may hold a partition

  Publish(2, kPerPhase);
  // b gets both partitions once a's session expires and continues from the
  // committed offsets: every phase-2 message reaches b (nothing skipped).
  std::vector<std::string> phase2;
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < kPerPhase; ++i) {
      phase2.push_back(absl::StrCat("job-2-", p, "-", i));
    }
  }
  EXPECT_TRUE(PrintedAll(*b, phase2)) << "a:\n"
                                      << a->Output() << "\nb:\n"
                                      << b->Output();
  // And b did not start again from 0 on the partitions a had drained: the
  // committed offsets were honoured (at most the batch a printed but had not
  // committed when it died can repeat).
  int repeated = 0;
  for (const std::string& v : phase1) {
    repeated += b->Output().find(v + "\n") != std::string::npos;
  }
  EXPECT_LT(repeated, kPerPhase);
  b->Signal(SIGTERM);
}

}  // namespace
}  // namespace twopc
