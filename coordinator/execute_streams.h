// ExecuteStreams: serves TransactionService.ExecuteStream, many
// transactions over one bidirectional stream, with gRPC's asynchronous API
// on the server's completion queue and its CompletionQueueLoop (the same
// loop as ClientCalls and the participant links).
//
// Why: a unary Execute costs a call of its own at both ends (a new HTTP/2
// stream, its headers, and one socket write per answer: gRPC never packs
// two calls' answers into one write). On a stream, every request of a
// message is handed to the TransactionManager at once, and every result
// that is ready after a round of the loop's events (e.g. all the decisions
// one log sync made durable) goes out in one message.
//
// Per stream:
//  * Each request is exactly an Execute; its answer (OK with the
//    transaction, or the error) is a result tagged with the request's tag.
//  * A message that does not parse, or holds more than
//    kMaxRequestsPerMessage requests, ends the stream INVALID_ARGUMENT once
//    the requests of earlier messages have their results; nothing of it is
//    started.
//  * Flow control: with kMaxUnanswered requests or more without a result,
//    the stream is not read until results go out.
//  * The stream ends OK once the client half-closed and every result went
//    out. If the client goes away, results are dropped, and the stream ends
//    once the manager has answered every request (the transactions'
//    deadlines bound that).
//
// Thread-safety: internal (a stream's results may come from any thread).
// Lifetime: as ClientCalls (construct after the server started; destroy
// after the server has shut down and the manager has answered every waiting
// call; the loop drains what is left).
#ifndef TWOPC_COORDINATOR_EXECUTE_STREAMS_H_
#define TWOPC_COORDINATOR_EXECUTE_STREAMS_H_

#include <cstddef>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/completion_queue_loop.h"
#include "coordinator/services.h"
#include "coordinator/transaction_manager.h"

namespace twopc::coordinator {

class ExecuteStreams {
 public:
  static constexpr int kMaxRequestsPerMessage = 1024;
  static constexpr int kMaxUnanswered = 4096;
  // Results are packed into messages of about this size at most (a larger
  // single result goes alone); clients accept 4 MiB by default.
  static constexpr size_t kMaxResponseBytes = 1 << 20;

  // Nothing is owned; all must outlive this object. `queue` is the
  // server's completion queue for asynchronous methods, drained by `loop`.
  ExecuteStreams(TransactionServiceImpl* service, TransactionManager* manager,
                 grpc::ServerCompletionQueue* queue, CompletionQueueLoop* loop);
  // Accepts no more streams.
  ~ExecuteStreams();

  ExecuteStreams(const ExecuteStreams&) = delete;
  ExecuteStreams& operator=(const ExecuteStreams&) = delete;

 private:
  class Stream;

  // Asks gRPC for the next stream.
  void Request() ABSL_LOCKS_EXCLUDED(mu_);

  TransactionServiceImpl* const service_;
  TransactionManager* const manager_;
  grpc::ServerCompletionQueue* const queue_;
  CompletionQueueLoop* const loop_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_EXECUTE_STREAMS_H_
