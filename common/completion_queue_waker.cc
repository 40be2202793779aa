#include "common/completion_queue_waker.h"

#include <grpc/support/time.h>

namespace twopc {

void CompletionQueueWaker::Wake() {
  absl::MutexLock lock(&mu_);
  if (queue_ == nullptr || outstanding_) return;
  outstanding_ = true;
  alarm_.Set(queue_, gpr_inf_past(GPR_CLOCK_MONOTONIC), tag_);
}

void CompletionQueueWaker::OnWoken() {
  absl::MutexLock lock(&mu_);
  outstanding_ = false;
}

bool CompletionQueueWaker::Close() {
  absl::MutexLock lock(&mu_);
  queue_ = nullptr;
  return outstanding_;
}

}  // namespace twopc
