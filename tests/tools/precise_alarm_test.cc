#include "tools/bench/precise_alarm.h"

#include <chrono>

#include <grpcpp/completion_queue.h>

#include "gtest/gtest.h"

namespace twopc::bench {
namespace {

using Clock = PreciseAlarm::Clock;

// The next tag out of `queue`, and its ok.
struct Event {
  void* tag = nullptr;
  bool ok = false;
};
Event Next(grpc::CompletionQueue& queue) {
  Event event;
  EXPECT_TRUE(queue.Next(&event.tag, &event.ok));
  return event;
}

class PreciseAlarmTest : public testing::Test {
 protected:
  ~PreciseAlarmTest() override {
    queue_.Shutdown();
    void* tag;
    bool ok;
    while (queue_.Next(&tag, &ok)) ADD_FAILURE() << "a tag came out twice";
  }

  grpc::CompletionQueue queue_;
  int tag_ = 0;
};

TEST_F(PreciseAlarmTest, FiresOncePerSetAndNeverBeforeItsDeadline) {
  PreciseAlarm alarm;
  for (auto delay :
       {std::chrono::microseconds(0), std::chrono::microseconds(300),
        std::chrono::microseconds(3000)}) {
    const Clock::time_point deadline = Clock::now() + delay;
    alarm.Set(&queue_, deadline, &tag_);
    const Event event = Next(queue_);
    EXPECT_GE(Clock::now(), deadline);
    EXPECT_EQ(event.tag, &tag_);
    EXPECT_TRUE(event.ok);
  }
}

TEST_F(PreciseAlarmTest, ADeadlineInThePastFiresAtOnce) {
  PreciseAlarm alarm;
  alarm.Set(&queue_, Clock::now() - std::chrono::seconds(1), &tag_);
  const Event event = Next(queue_);
  EXPECT_EQ(event.tag, &tag_);
  EXPECT_TRUE(event.ok);
}

TEST_F(PreciseAlarmTest, CancelHandsTheTagBackAtOnce) {
  PreciseAlarm alarm;
  alarm.Set(&queue_, Clock::now() + std::chrono::hours(1), &tag_);
  alarm.Cancel();
  const Event event = Next(queue_);
  EXPECT_EQ(event.tag, &tag_);
  EXPECT_FALSE(event.ok);

  // Usable again, and a Cancel after it fired changes nothing.
  alarm.Set(&queue_, Clock::now(), &tag_);
  EXPECT_TRUE(Next(queue_).ok);
  alarm.Cancel();
}

TEST_F(PreciseAlarmTest, DestroyingCancelsWhatIsSet) {
  {
    PreciseAlarm alarm;
    alarm.Set(&queue_, Clock::now() + std::chrono::hours(1), &tag_);
  }
  const Event event = Next(queue_);
  EXPECT_EQ(event.tag, &tag_);
  EXPECT_FALSE(event.ok);
}

}  // namespace
}  // namespace twopc::bench
