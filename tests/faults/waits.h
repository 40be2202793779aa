// Bounded waits for fault tests: on a condition, and on a child process's
// exit. Nothing sleeps for a fixed time.
#ifndef TWOPC_TESTS_FAULTS_WAITS_H_
#define TWOPC_TESTS_FAULTS_WAITS_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace twopc::testing {

// Calls `done` every 100 ms until it returns true. OK then;
// DEADLINE_EXCEEDED saying `what` did not happen after `timeout`.
absl::Status PollUntil(const std::function<bool()>& done,
                       absl::Duration timeout, absl::string_view what);

// Waits until a child process of this test has exited and returns its exit
// code (128 + the signal number when a signal ended it), without reaping
// it: its owner (a Subprocess, through LocalCluster) still does.
// DEADLINE_EXCEEDED after `timeout`. For a test in which exactly one child
// exits on its own (LocalCluster does not report exit codes).
absl::StatusOr<int> WaitForChildExit(absl::Duration timeout);

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_FAULTS_WAITS_H_
