#include "common/completion_queue_loop.h"

#include <string>
#include <vector>

#include <grpc/support/time.h>
#include <grpcpp/alarm.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace twopc {
namespace {

using ::testing::ElementsAre;

// The loop's thread's record of what ran, in order.
class Log {
 public:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  // Waits until `entry` is recorded, then returns every entry.
  std::vector<std::string> AwaitThenAll(const std::string& entry) {
    absl::MutexLock lock(&mu_);
    auto recorded = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::find(entries_.begin(), entries_.end(), entry) !=
             entries_.end();
    };
    mu_.Await(absl::Condition(&recorded));
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

class Recorder final : public CompletionQueueLoop::Handler {
 public:
  Recorder(std::string name, Log* log, std::function<void()> then = nullptr)
      : name_(std::move(name)), log_(log), then_(std::move(then)) {}
  void OnEvent(bool) override {
    log_->Add(name_);
    if (then_) then_();
  }

 private:
  const std::string name_;
  Log* const log_;
  const std::function<void()> then_;
};

// Posts `handler` to the loop's queue, due at once.
void Post(CompletionQueueLoop& loop, grpc::Alarm& alarm,
          CompletionQueueLoop::Handler* handler) {
  alarm.Set(loop.queue(), gpr_inf_past(GPR_CLOCK_MONOTONIC), handler);
}

// The before-waiting handler runs once after every round of events that
// were ready together; what it asks to run soon runs right after it.
TEST(CompletionQueueLoopTest, BeforeWaitingRunsOnceAfterTheReadyEvents) {
  Log log;
  absl::Notification release;
  CompletionQueueLoop* loop_ptr = nullptr;
  Recorder soon("soon", &log);
  CompletionQueueLoop loop(std::make_unique<grpc::CompletionQueue>(), [&] {
    log.Add("idle");
    loop_ptr->RunSoon(&soon);
  });
  loop_ptr = &loop;
  Recorder blocker("blocker", &log, [&] { release.WaitForNotification(); });
  std::vector<std::unique_ptr<Recorder>> events;
  for (int i = 0; i < 3; ++i) {
    events.push_back(
        std::make_unique<Recorder>("event" + std::to_string(i), &log));
  }
  grpc::Alarm blocker_alarm;
  Post(loop, blocker_alarm, &blocker);
  log.AwaitThenAll("blocker");  // the loop's thread is held inside it
  std::vector<grpc::Alarm> alarms(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    Post(loop, alarms[i], events[i].get());
  }
  release.Notify();
  EXPECT_THAT(log.AwaitThenAll("soon"),
              ElementsAre("blocker", "event0", "event1", "event2", "idle",
                          "soon"));
}

TEST(CompletionQueueLoopTest, RunSoonRunsAfterTheEventOnce) {
  Log log;
  CompletionQueueLoop loop;
  Recorder soon("soon", &log);
  Recorder event("event", &log, [&] {
    EXPECT_TRUE(loop.InLoopThread());
    loop.RunSoon(&soon);
    loop.RunSoon(&soon);
  });
  grpc::Alarm alarm;
  Post(loop, alarm, &event);
  EXPECT_THAT(log.AwaitThenAll("soon"), ElementsAre("event", "soon"));
  EXPECT_FALSE(loop.InLoopThread());
}

}  // namespace
}  // namespace twopc
