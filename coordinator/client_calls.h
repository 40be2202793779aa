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
// Thread-safety: internal. Lifetime: construct after the server started.
// To stop: stop the manager (TransactionManager::Stop answers every waiting
// call), shut the server down, then `open_calls->CloseAndWait()` while the
// loop still runs; destroy this object after that.
#ifndef TWOPC_COORDINATOR_CLIENT_CALLS_H_
#define TWOPC_COORDINATOR_CLIENT_CALLS_H_

#include <memory>

#include <grpcpp/grpcpp.h>

#include "common/completion_queue_loop.h"
#include "common/open_calls.h"
#include "coordinator/services.h"
#include "coordinator/transaction_manager.h"

namespace twopc::coordinator {

class ClientCalls {
 public:
  // Nothing is owned; all must outlive this object. `queue` is the
  // server's completion queue for asynchronous methods, drained by a
  // CompletionQueueLoop until every call has ended; each call is counted
  // in `open_calls`.
  ClientCalls(TransactionServiceImpl* service, TransactionManager* manager,
              grpc::ServerCompletionQueue* queue, OpenCalls* open_calls);

  ClientCalls(const ClientCalls&) = delete;
  ClientCalls& operator=(const ClientCalls&) = delete;

 private:
  class Call;

  // Asks gRPC for the next call of `method` (Execute or Commit), unless
  // open_calls_ is closed.
  void Request(bool execute);

  TransactionServiceImpl* const service_;
  TransactionManager* const manager_;
  grpc::ServerCompletionQueue* const queue_;
  OpenCalls* const open_calls_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_CLIENT_CALLS_H_
