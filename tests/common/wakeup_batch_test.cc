#include "common/wakeup_batch.h"

#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace twopc {
namespace {

class CountingWaker final : public Waker {
 public:
  void Wake() override { ++wakes; }
  int wakes = 0;
};

TEST(WakeupBatchTest, WithoutABatchTheCallerWakesAtOnce) {
  auto waker = std::make_shared<CountingWaker>();
  EXPECT_FALSE(WakeupBatch::Defer(waker));
  EXPECT_EQ(waker->wakes, 0);
}

TEST(WakeupBatchTest, DeferredWakersAreWokenOnceWhenTheBatchCloses) {
  auto first = std::make_shared<CountingWaker>();
  auto second = std::make_shared<CountingWaker>();
  {
    WakeupBatch batch;
    EXPECT_TRUE(WakeupBatch::Defer(first));
    EXPECT_TRUE(WakeupBatch::Defer(second));
    EXPECT_TRUE(WakeupBatch::Defer(first));
    EXPECT_EQ(first->wakes, 0);
    EXPECT_EQ(second->wakes, 0);
  }
  EXPECT_EQ(first->wakes, 1);
  EXPECT_EQ(second->wakes, 1);
  // Closed: the next Defer is the caller's to wake.
  EXPECT_FALSE(WakeupBatch::Defer(first));
}

TEST(WakeupBatchTest, OnlyTheOutermostBatchWakes) {
  auto waker = std::make_shared<CountingWaker>();
  {
    WakeupBatch outer;
    {
      WakeupBatch inner;
      EXPECT_TRUE(WakeupBatch::Defer(waker));
    }
    EXPECT_EQ(waker->wakes, 0);
  }
  EXPECT_EQ(waker->wakes, 1);
}

TEST(WakeupBatchTest, ABatchBelongsToItsThread) {
  auto waker = std::make_shared<CountingWaker>();
  WakeupBatch batch;
  bool deferred_elsewhere = true;
  std::thread other(
      [&] { deferred_elsewhere = WakeupBatch::Defer(waker); });
  other.join();
  EXPECT_FALSE(deferred_elsewhere);
}

TEST(WakeupBatchTest, TheBatchKeepsADeferredWakerAlive) {
  auto waker = std::make_shared<CountingWaker>();
  std::weak_ptr<CountingWaker> watch = waker;
  {
    WakeupBatch batch;
    WakeupBatch::Defer(waker);
    waker.reset();
    EXPECT_FALSE(watch.expired());
  }
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace twopc
