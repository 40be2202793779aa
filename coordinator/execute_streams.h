// ExecuteStreams: serves TransactionService.ExecuteStream, many
// transactions over one bidirectional stream, with gRPC's asynchronous API
// on the server's completion queue and its CompletionQueueLoop (the same
// loop as ClientCalls and the participant links).
//
// Why: a unary Execute costs a call of its own at both ends (a new HTTP/2
// stream, its headers, and one socket write per answer: gRPC never packs
// two calls' answers into one write). On a stream, every request of a
// message is handed to the TransactionManager at once (in one event of the
// loop: up to kMaxRequestsPerMessage Executes), and the results that become
// ready together (e.g. all the decisions one log sync made durable) go out
// in one message; results made on another thread go out at once, and what
// is ready while a write is out goes in the next.
//
// Per stream:
//  * Each request is exactly an Execute; its answer (OK with the
//    transaction, or the error) is a result tagged with the request's tag.
//  * A message that does not parse, or holds more than
//    kMaxRequestsPerMessage requests, ends the stream INVALID_ARGUMENT once
//    the requests of earlier messages have their results; nothing of it is
//    started.
//  * Flow control: with kMaxUnsent requests or more whose results have not
//    been written (waiting for the manager, or for the client to read), the
//    stream is not read until results go out. A message is read whole, so
//    up to kMaxUnsent + kMaxRequestsPerMessage - 1 may be pending.
//  * The stream ends OK once the client half-closed and every result went
//    out. If the client goes away, results are dropped, and the stream ends
//    once the manager has answered every request (at the transactions'
//    deadlines, or at their completion for `wait_for_completion`).
//  * At most `max_streams` are open at once: one more ends at once
//    RESOURCE_EXHAUSTED, nothing of it started.
//  * Stop (at shutdown, after the manager stopped) ends every stream
//    UNAVAILABLE once the requests it started have their results written;
//    what the client sent after that is not started. So a shutdown does not
//    wait for clients that keep a stream open.
//
// Thread-safety: internal (a stream's results may come from any thread).
// Lifetime: as ClientCalls (construct after the server started; to stop,
// stop the manager, then Stop this, shut the server down, then
// `open_calls->CloseAndWait()` while the loop still runs; destroy this
// object after that).
#ifndef TWOPC_COORDINATOR_EXECUTE_STREAMS_H_
#define TWOPC_COORDINATOR_EXECUTE_STREAMS_H_

#include <cstddef>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/completion_queue_loop.h"
#include "common/open_calls.h"
#include "coordinator/services.h"
#include "coordinator/transaction_manager.h"

namespace twopc::coordinator {

class ExecuteStreams {
 public:
  static constexpr int kMaxRequestsPerMessage = 1024;
  static constexpr int kMaxUnsent = 4096;
  // Results are packed into messages of about this size at most (a larger
  // single result goes alone); clients accept 4 MiB by default.
  static constexpr size_t kMaxResponseBytes = 1 << 20;

  // Nothing is owned; all must outlive this object. `queue` is the
  // server's completion queue for asynchronous methods, drained by `loop`;
  // each stream is counted in `open_calls`.
  ExecuteStreams(TransactionServiceImpl* service, TransactionManager* manager,
                 grpc::ServerCompletionQueue* queue, CompletionQueueLoop* loop,
                 OpenCalls* open_calls, int max_streams);

  ExecuteStreams(const ExecuteStreams&) = delete;
  ExecuteStreams& operator=(const ExecuteStreams&) = delete;

  // Ends every stream that starts from now on at once, UNAVAILABLE with
  // ErrorInfo DEFINITE, SHUTTING_DOWN; the open ones go on (the coordinator
  // is draining: their transactions still get their results).
  void StopAccepting() ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every open stream and every stream that starts from now on (see
  // above). Call after the manager stopped, before the server shuts down.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Stream;

  // Asks gRPC for the next stream, unless open_calls_ is closed.
  void Request();
  // A stream started: registered for Stop. False when it is not to be
  // served (stopping, or max_streams_ are open): it is then ended at once.
  bool Opened(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);
  // A stream is about to be deleted.
  void Closed(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);

  TransactionServiceImpl* const service_;
  TransactionManager* const manager_;
  grpc::ServerCompletionQueue* const queue_;
  CompletionQueueLoop* const loop_;
  OpenCalls* const open_calls_;
  const int max_streams_;

  // Before each Stream's mu_.
  absl::Mutex mu_;
  absl::flat_hash_set<Stream*> open_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_EXECUTE_STREAMS_H_
