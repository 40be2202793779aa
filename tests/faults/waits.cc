#include "tests/faults/waits.h"


#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

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

}  // namespace twopc::testing
