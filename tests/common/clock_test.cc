#include "common/clock.h"

#include "gtest/gtest.h"

namespace twopc {
namespace {

TEST(SimulatedClockTest, MovesOnlyWhenAdvanced) {
  SimulatedClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Milliseconds(1500));
  EXPECT_EQ(clock.Now(), absl::FromUnixMillis(101'500));
}

TEST(RealClockTest, NeverGoesBackwards) {
  Clock* clock = Clock::Real();
  absl::Time previous = clock->Now();
  for (int i = 0; i < 10'000; ++i) {
    const absl::Time now = clock->Now();
    ASSERT_GE(now, previous);
    previous = now;
  }
}

}  // namespace
}  // namespace twopc
