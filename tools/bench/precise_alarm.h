// PreciseAlarm: a grpc::Alarm that fires close to its deadline.
//
// gRPC 1.51 checks its timers only when its poller wakes, which with the
// poll engine (common/process_tuning.h) is on millisecond ticks: a
// grpc::Alarm fired 0.9 ms after its deadline at the median here (measured
// with 0.7 and 5 ms alarms). The open-loop generator measures a call's
// latency from the moment it was due, so that lateness counted as the
// server's. PreciseAlarm has a thread of its own sleep until the deadline
// (~0.1 ms late here) and then sets an immediate grpc::Alarm, whose tag
// comes out of the queue at once.
//
// Contract, as grpc::Alarm's: one Set at a time; the tag comes out of the
// queue exactly once per Set, never before the deadline unless cancelled,
// with ok = true when the deadline passed, or ok = false when Cancel came
// first (a Cancel racing the deadline may still see true).
//
// Thread-safe; Set and Cancel are meant for the thread polling the queue.
#ifndef TWOPC_TOOLS_BENCH_PRECISE_ALARM_H_
#define TWOPC_TOOLS_BENCH_PRECISE_ALARM_H_

#include <chrono>
#include <optional>
#include <thread>

#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace twopc::bench {

class PreciseAlarm {
 public:
  using Clock = std::chrono::steady_clock;

  PreciseAlarm();
  // Cancels what is set (its tag still comes out of the queue, which must
  // outlive the alarm until then) and stops the thread.
  ~PreciseAlarm();

  PreciseAlarm(const PreciseAlarm&) = delete;
  PreciseAlarm& operator=(const PreciseAlarm&) = delete;

  // REQUIRES: the tag of the previous Set came out of the queue.
  void Set(grpc::CompletionQueue* queue, Clock::time_point deadline, void* tag)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The tag comes out at once (ok = false), unless it already did.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // Hands the tag to the queue now, through a grpc::Alarm: an immediate one,
  // or a cancelled one (ok = false).
  void FireLocked(bool cancelled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  absl::CondVar changed_;
  grpc::CompletionQueue* queue_ ABSL_GUARDED_BY(mu_) = nullptr;
  void* tag_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Set and not yet handed to alarm_.
  std::optional<Clock::time_point> deadline_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm alarm_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;  // last: starts once everything above is ready
};

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_PRECISE_ALARM_H_
