// LinkService: ParticipantService.Link, the coordinator's batched stream.
//
// Per stream: the first CoordinatorBatch is answered by a batch carrying
// only ParticipantHello (id, highest epoch after this batch's, resource);
// then every request of every batch is handed to BranchManager, and replies
// are written by one writer thread per stream that packs every reply ready
// at that moment into one ParticipantBatch. Replies are in no particular
// order (matched by request_id). When the coordinator half-closes, the
// replies still due are written before the stream ends (as long as the
// coordinator keeps the call open). When the stream breaks, pending replies
// are dropped: the coordinator resends unanswered requests on its next
// stream and the barrier answers them again.
//
// Stream status: FAILED_PRECONDITION when a batch's expected_participant_id
// is set and differs from this sidecar's id; OK when the coordinator closes
// the stream.
//
// Thread-safety: a gRPC service; any number of concurrent streams.
#ifndef TWOPC_PARTICIPANT_LINK_SERVICE_H_
#define TWOPC_PARTICIPANT_LINK_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "participant/branch_manager.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::participant {

class LinkService final : public v1::ParticipantService::Service {
 public:
  // `manager` is not owned and must outlive the service.
  LinkService(std::string participant_id, BranchManager* manager)
      : participant_id_(std::move(participant_id)), manager_(manager) {}

  grpc::Status Link(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<v1::ParticipantBatch,
                                             v1::CoordinatorBatch>* stream)
      override ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels every open stream (for a prompt shutdown) and every stream
  // opened later.
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::string participant_id_;
  BranchManager* const manager_;
  absl::Mutex mu_;
  absl::flat_hash_set<grpc::ServerContext*> open_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_LINK_SERVICE_H_
