#include "tools/bench/precise_alarm.h"

#include <grpc/support/time.h>

#include "absl/time/time.h"

namespace twopc::bench {

PreciseAlarm::PreciseAlarm() : thread_([this] { Run(); }) {}

PreciseAlarm::~PreciseAlarm() {
  Cancel();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.Signal();
  }
  thread_.join();
}

void PreciseAlarm::Set(grpc::CompletionQueue* queue, Clock::time_point deadline,
                       void* tag) {
  absl::MutexLock lock(&mu_);
  queue_ = queue;
  tag_ = tag;
  deadline_ = deadline;
  changed_.Signal();
}

void PreciseAlarm::Cancel() {
  absl::MutexLock lock(&mu_);
  if (deadline_.has_value()) {
    FireLocked(/*cancelled=*/true);
  } else {
    alarm_.Cancel();  // nothing happens when it already fired
  }
}

void PreciseAlarm::Run() {
  absl::MutexLock lock(&mu_);
  while (true) {
    while (!stopping_ && !deadline_.has_value()) changed_.Wait(&mu_);
    if (stopping_) return;
    const Clock::time_point now = Clock::now();
    if (*deadline_ <= now) {
      FireLocked(/*cancelled=*/false);
    } else {
      // Woken early by a new Set or Cancel: the loop looks again.
      changed_.WaitWithTimeout(&mu_, absl::FromChrono(*deadline_ - now));
    }
  }
}

void PreciseAlarm::FireLocked(bool cancelled) {
  if (cancelled) {
    // An alarm cancelled before its deadline comes out with ok = false (an
    // immediate one would have fired inside Set).
    alarm_.Set(queue_, gpr_inf_future(GPR_CLOCK_MONOTONIC), tag_);
    alarm_.Cancel();
  } else {
    alarm_.Set(queue_, gpr_time_0(GPR_CLOCK_MONOTONIC), tag_);
  }
  deadline_.reset();
}

}  // namespace twopc::bench
