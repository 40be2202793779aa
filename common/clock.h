// Clock: the only way twopc code reads the time.
//
// Production code gets a SystemClock; tests inject a SimulatedClock and move
// time forward explicitly, so nothing depends on real elapsed time and no
// test sleeps.
#ifndef TWOPC_COMMON_CLOCK_H_
#define TWOPC_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace twopc {

// Thread-safe: Now() may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  // Current wall-clock time. SystemClock: never goes backwards within one
  // process (clamped), so durations computed from it are never negative.
  virtual absl::Time Now() const = 0;

  // The process-wide real clock. Never null; never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}

  absl::Time Now() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Moves time forward by `d`. REQUIRES: d >= 0.
  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc

#endif  // TWOPC_COMMON_CLOCK_H_
