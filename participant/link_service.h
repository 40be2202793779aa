// LinkService: ParticipantService.Link, the coordinator's batched stream,
// served with gRPC's asynchronous API by one thread: a CompletionQueueLoop
// (common/) draining the server's completion queue.
//
// Per stream: the first CoordinatorBatch is answered by a batch carrying
// only ParticipantHello (id, highest epoch after this batch's, resource);
// then every request of every batch is handed to BranchManager. Replies are
// in no particular order (matched by request_id) and packed: everything
// ready when the stream can write goes into one ParticipantBatch. When the
// coordinator half-closes, the replies still due are written before the
// stream ends (as long as the coordinator keeps the call open). When the
// stream breaks, pending replies are dropped: the coordinator resends
// unanswered requests on its next stream and the barrier answers them again.
//
// One thread from socket to disk and back: the loop reads the batches that
// have arrived, hands their requests to the manager, and once every ready
// event is handled (the loop's before-waiting handler) writes what they
// queued in the branch store itself, in one synced write
// (BranchStore::WriteQueuedHere), and then the replies that became ready.
// So a prepare's vote leaves on the thread that read the prepare, with no
// thread switch on the way; on this product's small (virtual) machines
// each switch costs far more than the work around it. Replies that become
// ready on other threads (an application's callback answering) wake the
// loop.
//
// The server must be hybrid (synchronous services next to this one, e.g.
// KvService): gRPC then polls every connection from this loop's thread only,
// and hands the synchronous methods' calls to their own threads.
//
// Stream status: INVALID_ARGUMENT when a batch does not parse as a
// CoordinatorBatch (the method is raw: gRPC itself would show such a batch
// as the end of the stream); FAILED_PRECONDITION when a batch's
// expected_participant_id is set and differs from this sidecar's id;
// UNAVAILABLE once CancelAll was called; OK when the coordinator closes the
// stream.
//
// Lifetime: register the service with the server, start the server with an
// asynchronous queue, then Start(queue). To stop: CancelAll, shut the server
// down, Stop (drains the queue), then destroy the server and this service.
//
// Thread-safety: Start, CancelAll and Stop from the thread that owns the
// server; everything else runs on the loop's thread.
#ifndef TWOPC_PARTICIPANT_LINK_SERVICE_H_
#define TWOPC_PARTICIPANT_LINK_SERVICE_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/completion_queue_loop.h"
#include "participant/branch_manager.h"
#include "participant/branch_store.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::participant {

class LinkService final : public v1::ParticipantService::WithRawMethod_Link<
                              v1::ParticipantService::Service> {
 public:
  // `manager` and `store` (the manager's) are not owned and must outlive
  // the service.
  LinkService(std::string participant_id, BranchManager* manager,
              BranchStore* store);
  // REQUIRES: Stop was called, if Start was.
  ~LinkService() override;

  // Serves Link calls from `queue`, the started server's completion queue
  // for asynchronous methods, on a loop thread of its own.
  void Start(std::unique_ptr<grpc::ServerCompletionQueue> queue);

  // Cancels every open stream (for a prompt shutdown) and refuses every
  // stream opened later with UNAVAILABLE.
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Drains the queue and joins the loop's thread. REQUIRES: the server has
  // shut down (Server::Shutdown returned), so every call has ended.
  void Stop();

 private:
  class Stream;

  // Asks gRPC for the next Link call, unless stopping.
  void RequestStream() ABSL_LOCKS_EXCLUDED(mu_);
  // A call arrived on `stream`: false when it must be refused (CancelAll).
  bool Opened(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);
  void Closed(Stream* stream) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string participant_id_;
  BranchManager* const manager_;
  BranchStore* const store_;
  grpc::ServerCompletionQueue* queue_ = nullptr;  // owned by loop_
  std::unique_ptr<CompletionQueueLoop> loop_;

  absl::Mutex mu_;
  absl::flat_hash_set<Stream*> open_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // No new call may be requested from a queue being shut down.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_LINK_SERVICE_H_
