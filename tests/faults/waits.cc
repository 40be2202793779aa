#include "tests/faults/waits.h"

#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace twopc::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

}  // namespace

absl::Status PollUntil(const std::function<bool()>& done,
                       absl::Duration timeout, absl::string_view what) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, " did not happen within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> WaitForChildExit(absl::Duration timeout) {
  siginfo_t info = {};
  RETURN_IF_ERROR(PollUntil(
      [&] {
        // WNOWAIT: look at the exited child without reaping it.
        info.si_pid = 0;
        return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
               info.si_pid != 0;
      },
      timeout, "a child process exiting"));
  return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

}  // namespace twopc::testing
