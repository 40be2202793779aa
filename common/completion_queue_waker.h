// CompletionQueueWaker: wakes the thread that drains a gRPC completion queue
// by posting a tag to it (an alarm that is due at once), so that thread can
// look at work handed to it by other threads: the Waker of a consumer that
// sleeps in CompletionQueue::Next rather than on a condition variable.
//
// At most one wake-up is outstanding: Wake() while one is posts nothing, so
// any number of producers cost the consumer one event. The consumer calls
// OnWoken() when the tag comes back, before it looks at its work, so a
// Wake() that follows is not lost.
//
// Held by shared_ptr: a WakeupBatch (common/wakeup_batch.h) may keep it past
// the consumer's end. Close() ends the wake-ups: Wake() is then a no-op, so
// the queue may be shut down once no wake-up is outstanding.
//
// Thread-safety: Wake and Close from any thread; OnWoken from the consumer.
#ifndef TWOPC_COMMON_COMPLETION_QUEUE_WAKER_H_
#define TWOPC_COMMON_COMPLETION_QUEUE_WAKER_H_

#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/wakeup_batch.h"

namespace twopc {

class CompletionQueueWaker final : public Waker {
 public:
  // Wake-ups arrive on `queue` as `tag`.
  CompletionQueueWaker(grpc::CompletionQueue* queue, void* tag)
      : queue_(queue), tag_(tag) {}

  void Wake() override ABSL_LOCKS_EXCLUDED(mu_);

  // The consumer took the wake-up's tag off the queue.
  void OnWoken() ABSL_LOCKS_EXCLUDED(mu_);

  // No wake-up after this. Returns true when one is still outstanding: its
  // tag is yet to come back.
  bool Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  grpc::CompletionQueue* queue_ ABSL_GUARDED_BY(mu_);  // null once closed
  void* const tag_;
  bool outstanding_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm alarm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc

#endif  // TWOPC_COMMON_COMPLETION_QUEUE_WAKER_H_
