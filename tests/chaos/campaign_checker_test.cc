// The checker against synthetic campaigns: a consistent one passes, and each
// kind of doctored result is caught as exactly that kind of violation.
#include "tests/chaos/campaign_checker.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace twopc::chaos {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int64_t kOpening = 3000;

SteadyTime At(int millis) {
  return SteadyTime() + std::chrono::milliseconds(millis);
}

TransferRecord Transfer(const std::string& name, Reply reply, Outcome outcome,
                        int sent, int replied) {
  TransferRecord t;
  t.name = name;
  t.participants = {"p1", "p2"};
  t.reply = reply;
  t.outcome = outcome;
  t.sent = At(sent);
  t.replied = At(replied);
  return t;
}

TransferRecord ToldCommitted(const std::string& name, int sent, int replied,
                             MessagePosition position) {
  TransferRecord t =
      Transfer(name, Reply::kCommitted, Outcome::kCommitted, sent, replied);
  t.told_position = position;
  return t;
}

PartitionContents Partition(std::vector<QueuedMessage> messages) {
  PartitionContents partition;
  partition.end_offset = messages.empty() ? 0 : messages.back().offset + 1;
  partition.messages = std::move(messages);
  return partition;
}

class CampaignCheckerTest : public ::testing::Test {
 protected:
  // A consistent campaign on sidecars p1 and p2 (p3 holds nothing):
  //   a, b  told COMMITTED (a in partition 0, b in partition 1);
  //   c     told ABORTED;
  //   d     ambiguous, resolved COMMITTED (partition 0, after a);
  //   e     ambiguous, resolved ABORTED;
  //   f     rejected (a definite error other than ABORTED).
  CampaignCheckerTest() {
    transfers_ = {
        ToldCommitted("a", 0, 10, {.partition = 0, .offset = 0}),
        ToldCommitted("b", 20, 30, {.partition = 1, .offset = 0}),
        Transfer("c", Reply::kAborted, Outcome::kAborted, 5, 15),
        Transfer("d", Reply::kAmbiguous, Outcome::kCommitted, 40, 60),
        Transfer("e", Reply::kAmbiguous, Outcome::kAborted, 45, 70),
        Transfer("f", Reply::kRejected, Outcome::kAborted, 50, 51),
    };
    observed_.total_balance = kOpening;
    observed_.markers = {{"p1", {"a", "b", "d"}}, {"p2", {"a", "b", "d"}}};
    observed_.partitions = {
        Partition({{.offset = 0, .value = "a"}, {.offset = 1, .value = "d"}}),
        Partition({{.offset = 0, .value = "b"}}),
        Partition({}),
    };
  }

  CheckResult Check() const {
    return CheckCampaign(kOpening, transfers_, observed_);
  }

  // Checks that the campaign has `count` violations, all of `kind`.
  void ExpectOnly(Violation kind, int64_t count) const {
    const CheckResult result = Check();
    EXPECT_EQ(result.count(kind), count) << result.ToString();
    EXPECT_EQ(result.total(), count) << result.ToString();
  }

  TransferRecord& Named(const std::string& name) {
    for (TransferRecord& t : transfers_) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "no transfer " << name;
    return transfers_.front();
  }

  std::vector<QueuedMessage>& MessagesOf(int partition) {
    return observed_.partitions[partition].messages;
  }

  std::vector<TransferRecord> transfers_;
  ClusterObservation observed_;
};

TEST_F(CampaignCheckerTest, ConsistentCampaignHasNoViolation) {
  const CheckResult result = Check();
  EXPECT_EQ(result.total(), 0) << result.ToString();
}

TEST_F(CampaignCheckerTest, ChangedTotalBalance) {
  observed_.total_balance = kOpening + 1;
  ExpectOnly(Violation::kBalanceChanged, 1);
}

TEST_F(CampaignCheckerTest, TransferAppliedOnOneBranchOnly) {
  observed_.markers["p2"].erase("a");
  ExpectOnly(Violation::kPartlyApplied, 1);
}

TEST_F(CampaignCheckerTest, ToldCommittedButAppliedNowhere) {
  observed_.markers["p1"].erase("a");
  observed_.markers["p2"].erase("a");
  ExpectOnly(Violation::kCommittedNotApplied, 1);
}

TEST_F(CampaignCheckerTest, ResolvedCommittedButAppliedNowhere) {
  observed_.markers["p1"].erase("d");
  observed_.markers["p2"].erase("d");
  ExpectOnly(Violation::kCommittedNotApplied, 1);
}

TEST_F(CampaignCheckerTest, AbortedOrRejectedButApplied) {
  for (const char* name : {"c", "e", "f"}) {
    observed_.markers["p1"].insert(name);
    observed_.markers["p2"].insert(name);
  }
  ExpectOnly(Violation::kAbortedButApplied, 3);
}

TEST_F(CampaignCheckerTest, MarkerOfNoTransferOrOnAnotherSidecar) {
  observed_.markers["p1"].insert("nobody");
  observed_.markers["p3"].insert("a");
  ExpectOnly(Violation::kStrayMarker, 2);
}

TEST_F(CampaignCheckerTest, OutcomeStillUnknown) {
  Named("e").outcome = Outcome::kUnknown;
  ExpectOnly(Violation::kOutcomeUnknown, 1);
}

TEST_F(CampaignCheckerTest, WorkStillOpenAtTheEnd) {
  observed_.unfinished = 2;
  ExpectOnly(Violation::kUnfinishedAtEnd, 2);
}

TEST_F(CampaignCheckerTest, HoleBetweenOffsets) {
  MessagesOf(0)[1].offset = 2;
  observed_.partitions[0].end_offset = 3;
  ExpectOnly(Violation::kOffsetGap, 1);
}

TEST_F(CampaignCheckerTest, PartitionNotReadFromZeroOrNotToItsEnd) {
  observed_.partitions[1].end_offset = 2;  // offset 1 was never read
  observed_.partitions[2].log_start_offset = 1;
  observed_.partitions[2].end_offset = 1;
  ExpectOnly(Violation::kOffsetGap, 2);
}

TEST_F(CampaignCheckerTest, CommittedMessageTwice) {
  MessagesOf(0).push_back({.offset = 2, .value = "d"});
  observed_.partitions[0].end_offset = 3;
  ExpectOnly(Violation::kDuplicateMessage, 1);
}

TEST_F(CampaignCheckerTest, CommittedMessageMissing) {
  MessagesOf(0).pop_back();  // d
  observed_.partitions[0].end_offset = 1;
  ExpectOnly(Violation::kMissingMessage, 1);
}

TEST_F(CampaignCheckerTest, MessageOfAbortedOrUnknownTransfer) {
  MessagesOf(2) = {{.offset = 0, .value = "c"},
                   {.offset = 1, .value = "f"},
                   {.offset = 2, .value = "stranger"}};
  observed_.partitions[2].end_offset = 3;
  ExpectOnly(Violation::kMessageOfUncommitted, 3);
}

TEST_F(CampaignCheckerTest, MessageElsewhereThanTheClientWasTold) {
  Named("b").told_position = MessagePosition{.partition = 1, .offset = 7};
  ExpectOnly(Violation::kWrongPosition, 1);
}

TEST_F(CampaignCheckerTest, LaterTransferBelowOneToldCommittedBeforeItWasSent) {
  // a was told COMMITTED (at 10) before d was sent (at 40): d below a
  // breaks commit order.
  MessagesOf(0) = {{.offset = 0, .value = "d"}, {.offset = 1, .value = "a"}};
  Named("a").told_position = MessagePosition{.partition = 0, .offset = 1};
  ExpectOnly(Violation::kCommitOrder, 1);
}

TEST_F(CampaignCheckerTest, OverlappingTransfersMayCommitInEitherOrder) {
  // x was in flight during all of y: either order is a valid commit order.
  transfers_.push_back(
      ToldCommitted("x", 100, 150, {.partition = 2, .offset = 1}));
  transfers_.push_back(
      ToldCommitted("y", 110, 120, {.partition = 2, .offset = 0}));
  for (const char* sidecar : {"p1", "p2"}) {
    observed_.markers[sidecar].insert({"x", "y"});
  }
  observed_.partitions[2] =
      Partition({{.offset = 0, .value = "y"}, {.offset = 1, .value = "x"}});
  const CheckResult result = Check();
  EXPECT_EQ(result.total(), 0) << result.ToString();
}

TEST_F(CampaignCheckerTest, ReportCountsEachKindAndShowsExamples) {
  observed_.total_balance = kOpening - 5;
  observed_.markers["p2"].erase("b");
  const std::string report = Check().ToString();
  EXPECT_THAT(report, AllOf(HasSubstr("violations: 2 (must be 0)"),
                            HasSubstr("total " + std::to_string(kOpening - 5)),
                            HasSubstr("b: applied on 1 of 2 branches")));
}

TEST(TallyTest, CountsRepliesAndSettledOutcomes) {
  const std::vector<TransferRecord> transfers = {
      Transfer("a", Reply::kCommitted, Outcome::kCommitted, 0, 1),
      Transfer("b", Reply::kAborted, Outcome::kAborted, 0, 1),
      Transfer("c", Reply::kRejected, Outcome::kAborted, 0, 1),
      Transfer("d", Reply::kAmbiguous, Outcome::kCommitted, 0, 1),
      Transfer("e", Reply::kAmbiguous, Outcome::kAborted, 0, 1),
      Transfer("f", Reply::kAmbiguous, Outcome::kUnknown, 0, 1),
  };
  const TransferTally tally = Tally(transfers);
  EXPECT_EQ(tally.attempted, 6);
  EXPECT_EQ(tally.committed, 2);
  EXPECT_EQ(tally.aborted, 3);
  EXPECT_EQ(tally.rejected, 1);
  EXPECT_EQ(tally.ambiguous, 3);
  EXPECT_EQ(tally.ambiguous_committed, 1);
  EXPECT_EQ(tally.ambiguous_aborted, 1);
  EXPECT_EQ(tally.unknown, 1);
}

}  // namespace
}  // namespace twopc::chaos
