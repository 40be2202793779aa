#include "common/clock.h"

#include <atomic>
#include <cassert>

namespace twopc {
namespace {

class SystemClock : public Clock {
 public:
  absl::Time Now() const override {
    // Clamp so that a wall-clock step backwards never yields a time earlier
    // than one already handed out.
    int64_t now = absl::ToUnixNanos(absl::Now());
    int64_t last = last_.load(std::memory_order_relaxed);
    while (now > last &&
           !last_.compare_exchange_weak(last, now, std::memory_order_relaxed)) {
    }
    return absl::FromUnixNanos(now > last ? now : last);
  }

 private:
  mutable std::atomic<int64_t> last_{0};
};

}  // namespace

Clock* Clock::Real() {
  static Clock* const clock = new SystemClock();
  return clock;
}

absl::Time SimulatedClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void SimulatedClock::Advance(absl::Duration d) {
  assert(d >= absl::ZeroDuration());
  absl::MutexLock lock(&mu_);
  now_ += d;
}

}  // namespace twopc
