// ClientCalls: serves TransactionService.Execute and Commit, the client hot
// path, with gRPC's asynchronous API: the server's completion queue,
// drained by a CompletionQueueLoop (common/) whose one thread also polls the
// connections bound to it.
//
// Why not the callback API: there every call is read by a poller thread and
// handed to one of gRPC's callback threads, a thread switch per call. Here a
// request that this thread reads is handled on the spot, and one wake-up
// serves every event that is ready. The same loop drives the participant
// links (coordinator_server.cc), so the prepares of the calls it read are
// written to the links after the event, on the same thread.
//
// Each call: the request bytes are parsed here (so bytes that are not a
// request get INVALID_ARGUMENT naming the method, instead of gRPC's empty
// UNIMPLEMENTED), handed to the TransactionManager, and answered from the
// manager's callback on whatever thread makes it. A client that cancels
// does not free its call early: the call is answered (into the void) when
// the manager decides, which the transaction's deadline bounds.
//
// Thread-safety: internal. Lifetime: construct after the server started;
// destroy after the server has shut down and the manager has answered every
// waiting call (TransactionManager::Stop). The calls still on the queue then
// end when the loop drains it.
#ifndef TWOPC_COORDINATOR_CLIENT_CALLS_H_
#define TWOPC_COORDINATOR_CLIENT_CALLS_H_

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/completion_queue_loop.h"
#include "coordinator/services.h"
#include "coordinator/transaction_manager.h"

namespace twopc::coordinator {

class ClientCalls {
 public:
  // Nothing is owned. `service` and `manager` must outlive this object;
  // `queue` is the server's completion queue for asynchronous methods,
  // drained by a CompletionQueueLoop until every call has ended (destroy
  // the loop after this object).
  ClientCalls(TransactionServiceImpl* service, TransactionManager* manager,
              grpc::ServerCompletionQueue* queue);
  // Requests no more calls.
  ~ClientCalls();

  ClientCalls(const ClientCalls&) = delete;
  ClientCalls& operator=(const ClientCalls&) = delete;

 private:
  class Call;

  // Asks gRPC for the next call of `method` (Execute or Commit).
  void Request(bool execute) ABSL_LOCKS_EXCLUDED(mu_);

  TransactionServiceImpl* const service_;
  TransactionManager* const manager_;
  grpc::ServerCompletionQueue* const queue_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_CLIENT_CALLS_H_
