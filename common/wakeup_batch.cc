#include "common/wakeup_batch.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace twopc {
namespace {

// The wakers deferred by the batch open on this thread (if `open`).
struct ThreadBatch {
  bool open = false;
  std::vector<std::shared_ptr<Waker>> deferred;
};

thread_local ThreadBatch thread_batch;

}  // namespace

WakeupBatch::WakeupBatch() : outermost_(!thread_batch.open) {
  thread_batch.open = true;
}

WakeupBatch::~WakeupBatch() {
  if (!outermost_) return;
  thread_batch.open = false;
  // Wake outside the batch: a Wake() that produces more items wakes at once.
  std::vector<std::shared_ptr<Waker>> deferred;
  deferred.swap(thread_batch.deferred);
  for (const std::shared_ptr<Waker>& waker : deferred) waker->Wake();
  // Keep the vector's capacity for the next batch on this thread.
  deferred.clear();
  if (thread_batch.deferred.empty()) thread_batch.deferred.swap(deferred);
}

bool WakeupBatch::IsOpen() { return thread_batch.open; }

void WakeupBatch::Remember(std::shared_ptr<Waker> waker) {
  std::vector<std::shared_ptr<Waker>>& deferred = thread_batch.deferred;
  // A batch defers few distinct wakers (one per link or stream): a linear
  // scan beats a set.
  if (std::find(deferred.begin(), deferred.end(), waker) == deferred.end()) {
    deferred.push_back(std::move(waker));
  }
}

}  // namespace twopc
