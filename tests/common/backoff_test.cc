#include "common/backoff.h"

#include <set>

#include "gtest/gtest.h"

namespace twopc {
namespace {

TEST(BackoffTest, DoublesUpToTheCapWithoutJitter) {
  Backoff backoff({.initial = absl::Milliseconds(100),
                   .max = absl::Milliseconds(500),
                   .jitter = 0},
                  1);
  EXPECT_EQ(backoff.Delay(0), absl::Milliseconds(100));
  EXPECT_EQ(backoff.Delay(1), absl::Milliseconds(200));
  EXPECT_EQ(backoff.Delay(2), absl::Milliseconds(400));
  EXPECT_EQ(backoff.Delay(3), absl::Milliseconds(500));
  EXPECT_EQ(backoff.Delay(1000), absl::Milliseconds(500));
}

TEST(BackoffTest, JitterSpreadsDelaysWithinItsBounds) {
  const BackoffPolicy policy{.initial = absl::Seconds(1),
                             .max = absl::Seconds(8),
                             .jitter = 0.2};
  Backoff backoff(policy, 42);
  std::set<absl::Duration> seen;
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration delay = backoff.Delay(3);  // 8 s before jitter
    EXPECT_GE(delay, absl::Milliseconds(6400));
    EXPECT_LE(delay, absl::Milliseconds(9600));
    seen.insert(delay);
  }
  EXPECT_GT(seen.size(), 900u);
  // Both halves of the range are used.
  EXPECT_LT(*seen.begin(), absl::Milliseconds(6600));
  EXPECT_GT(*seen.rbegin(), absl::Milliseconds(9400));
}

TEST(BackoffTest, ASeedReplaysAndSeedsDiffer) {
  const BackoffPolicy policy;
  Backoff a(policy, 7), b(policy, 7), c(policy, 8);
  bool differ = false;
  for (int i = 0; i < 10; ++i) {
    const absl::Duration delay = a.Delay(i);
    EXPECT_EQ(delay, b.Delay(i));
    differ |= delay != c.Delay(i);
  }
  EXPECT_TRUE(differ);
  EXPECT_NE(RandomSeed(), RandomSeed());
}

// The sequence of a seed is part of the contract: simulations replay by it.
TEST(BackoffTest, TheSequenceOfASeedIsPinned) {
  Backoff backoff({.initial = absl::Milliseconds(100),
                   .max = absl::Seconds(10),
                   .jitter = 0.2},
                  1);
  EXPECT_EQ(absl::ToInt64Microseconds(backoff.Delay(0)), 102662);
  EXPECT_EQ(absl::ToInt64Microseconds(backoff.Delay(1)), 219662);
  EXPECT_EQ(absl::ToInt64Microseconds(backoff.Delay(2)), 475360);
}

}  // namespace
}  // namespace twopc
