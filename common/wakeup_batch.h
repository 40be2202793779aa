// WakeupBatch: coalesces the wake-ups a thread causes while it hands many
// items to queues that other threads consume.
//
// A consumer thread sleeping on a queue costs a futex wake and a context
// switch each time a producer wakes it. A producer that adds many items in
// one go (the replies of one group-commit round, the votes of one received
// batch) would wake the consumer for the first item and then race it for
// the rest, so each item tends to travel alone. Instead, the producer opens
// a WakeupBatch for the loop; a queue's push calls Defer(waker) and, when a
// batch is open on this thread, skips its own wake-up; closing the batch
// wakes each deferred waker once, so the consumer finds all the items at
// once.
//
// Batches nest (an inner one is a no-op; the outermost one wakes). Defer
// keeps a reference to the waker until the batch closes. A batch must be
// short: never block (read a stream, wait for a result) while one is open,
// since the consumers it deferred may be what the wait depends on.
//
// Thread-safety: a batch belongs to the thread that opened it.
#ifndef TWOPC_COMMON_WAKEUP_BATCH_H_
#define TWOPC_COMMON_WAKEUP_BATCH_H_

#include <memory>

namespace twopc {

// Something a producer can wake: Wake() must make the consumer look at its
// queue again, and must be safe to call at any time from any thread.
class Waker {
 public:
  virtual ~Waker() = default;
  virtual void Wake() = 0;
};

class WakeupBatch {
 public:
  WakeupBatch();
  // Wakes every waker deferred while this (outermost) batch was open.
  ~WakeupBatch();

  WakeupBatch(const WakeupBatch&) = delete;
  WakeupBatch& operator=(const WakeupBatch&) = delete;

  // When a batch is open on this thread, remembers `waker` (once) and
  // returns true: the caller must not wake it now. Otherwise returns false
  // (without copying `waker`: no reference count is touched when no batch
  // is open): the caller wakes it itself.
  template <typename W>
  static bool Defer(const std::shared_ptr<W>& waker) {
    if (!IsOpen()) return false;
    Remember(waker);
    return true;
  }

 private:
  static bool IsOpen();
  static void Remember(std::shared_ptr<Waker> waker);

  const bool outermost_;
};

}  // namespace twopc

#endif  // TWOPC_COMMON_WAKEUP_BATCH_H_
