// Bounded waits for fault tests, on a condition. Nothing sleeps for a fixed
// time.
#ifndef TWOPC_TESTS_FAULTS_WAITS_H_
#define TWOPC_TESTS_FAULTS_WAITS_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace twopc::testing {

// Calls `done` every 100 ms until it returns true. OK then;
// DEADLINE_EXCEEDED saying `what` did not happen after `timeout`.
absl::Status PollUntil(const std::function<bool()>& done,
                       absl::Duration timeout, absl::string_view what);

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_FAULTS_WAITS_H_
