// Eventually: for tests that wait on a condition another thread or process
// brings about, polled with a bounded deadline instead of a fixed sleep.
#ifndef TWOPC_TESTS_TESTING_EVENTUALLY_H_
#define TWOPC_TESTS_TESTING_EVENTUALLY_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace twopc::testing {

// Polls `condition` every few milliseconds until it holds (true) or
// `timeout` passes (false).
template <typename Condition>
bool Eventually(Condition condition,
                absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_EVENTUALLY_H_
