#include "common/process_tuning.h"

#include <cstdlib>

#include "absl/synchronization/mutex.h"

namespace twopc {

void TuneProcess() {
  setenv("GRPC_POLL_STRATEGY", "poll", /*overwrite=*/0);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace twopc
