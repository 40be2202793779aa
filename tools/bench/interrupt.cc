#include "tools/bench/interrupt.h"

#include <signal.h>

#include <algorithm>
#include <atomic>

#include "absl/time/clock.h"

namespace twopc::bench {
namespace {

std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void OnSignal(int) { interrupted.store(true); }

constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

}  // namespace

void InstallInterruptHandler() {
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  action.sa_flags = SA_RESETHAND;  // a second signal takes the default action
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool Interrupted() { return interrupted.load(); }

bool SleepUnlessInterrupted(absl::Duration duration) {
  const absl::Time end = absl::Now() + duration;
  for (absl::Time now = absl::Now(); now < end && !Interrupted();
       now = absl::Now()) {
    absl::SleepFor(std::min(kPollInterval, end - now));
  }
  return !Interrupted();
}

}  // namespace twopc::bench
