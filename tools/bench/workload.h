// What the load generator sends: a Workload starts asynchronous gRPC calls
// on a completion queue and judges how each ended. Implementations: the
// transaction workload (txn_workload.h) and the echo ceiling (echo.h).
#ifndef TWOPC_TOOLS_BENCH_WORKLOAD_H_
#define TWOPC_TOOLS_BENCH_WORKLOAD_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/completion_queue_loop.h"

namespace twopc::bench {

// How one call ended, as the load generator counts it.
enum class CallOutcome {
  kCommitted,              // OK (for the echo workload: any OK call)
  kAbortedAsIntended,      // ABORTED, and the workload meant it to abort
  kConflict,               // ABORTED by a lock conflict nobody intended
  kAbortedUnexpectedly,    // ABORTED for another reason
  kCommittedUnexpectedly,  // OK although the workload meant it to abort
  kFailed,                 // any other status (UNAVAILABLE, DEADLINE, ...)
};

// One call in flight, started by Workload::Start. Thread-compatible: used
// by the one thread that polls its completion queue.
class PendingCall {
 public:
  virtual ~PendingCall() = default;
  // REQUIRES: the call's tag came out of its completion queue.
  virtual CallOutcome Outcome() const = 0;
  // The gRPC status of a call that did not end as intended, as
  // "CODE: message", for diagnostics.
  virtual std::string Error() const = 0;
  // Asks gRPC to cancel the call; its tag still comes back (then kFailed).
  virtual void Cancel() = 0;
};

// Every tag on a client thread's completion queue: the thread calls
// OnEvent for each one that comes out (`ok` as CompletionQueue::Next says).
// The same interface as CompletionQueueLoop's, so that what drives its
// calls on a loop (ExecuteStreamClient) can run on these queues too.
using QueueEvent = CompletionQueueLoop::Handler;

// Thread-safe: Start is called concurrently from every client thread.
class Workload {
 public:
  virtual ~Workload() = default;
  // Starts call number `sequence` (0, 1, ... for each client) of client
  // `client` (0 .. clients-1) on `cq`, whose thread is the caller. Its end
  // is reported once, on that thread, by `done->OnEvent`: `done` comes out
  // of `cq` as the tag of a call of its own, or a workload event of its
  // own on `cq` (a stream's read) calls it. Never from within Start. The
  // returned call must live until then.
  virtual std::unique_ptr<PendingCall> Start(int client, uint64_t sequence,
                                             grpc::CompletionQueue* cq,
                                             QueueEvent* done) = 0;

  // For stopping, once no call of `cq` is in flight: ends what the workload
  // keeps open on `cq` besides calls (e.g. streams shared by calls). True
  // when nothing of the workload's is left on `cq`, so it may be shut
  // down; otherwise its events still come out of `cq` and the thread asks
  // again after each. Called on the thread of `cq`.
  virtual bool Release(grpc::CompletionQueue* /*cq*/) { return true; }
};

// `count` channels to `target`, each with its own connection (gRPC would
// otherwise share one connection between channels with equal arguments).
// Workloads spread clients over them: more connections let gRPC use more
// threads on both sides.
std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(
    const std::string& target, int count);

// "CODE: message" of a gRPC status (e.g. "ABORTED: participant p1 voted NO").
std::string StatusText(const grpc::Status& status);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_WORKLOAD_H_
