// OpenCalls: counts the calls an asynchronous gRPC service has open on a
// completion queue, so that shutdown can wait for every one of them to end
// before the queue (and the loop draining it) goes away.
//
// Why: Server::Shutdown and Server::Wait do not wait for asynchronous calls.
// After them, a call's last events may still be on the queue, and its
// handler may start another operation (Finish, the next Request) that must
// not reach a queue that is shut down. So the service opens each call with
// TryOpen, the call reports Closed as the last thing it does, and the owner
// calls CloseAndWait (after the server's Shutdown, while the queue is still
// drained) before destroying the service.
//
// Lifetime: must outlive every call's Closed; keep it in the owner of the
// loop, destroyed after the loop's thread has been joined.
//
// Thread-safety: thread-safe.
#ifndef TWOPC_COMMON_OPEN_CALLS_H_
#define TWOPC_COMMON_OPEN_CALLS_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace twopc {

class OpenCalls {
 public:
  // Counts a new call, unless CloseAndWait was called: then returns false
  // and the caller must not request the call.
  bool TryOpen() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    ++open_;
    return true;
  }

  // A call opened with TryOpen has ended: nothing of it is left on the
  // queue and it will start nothing more.
  void Closed() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --open_;
  }

  // Refuses new calls and waits until every open call has ended.
  // REQUIRES: not on the thread that drains the calls' queue.
  void CloseAndWait() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    mu_.Await(absl::Condition(
        +[](int* open) { return *open == 0; }, &open_));
  }

 private:
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace twopc

#endif  // TWOPC_COMMON_OPEN_CALLS_H_
