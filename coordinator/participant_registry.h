// ParticipantRegistry: the durable set of registered participants, their
// links, and their liveness.
//
// Registration is synced before it is acknowledged. Each registered
// participant has one ParticipantLink, (re)created when its endpoint changes.
//
// Thread-safety: all methods may be called concurrently. Link callbacks may
// call back into the owner while no registry lock is held.
#ifndef TWOPC_COORDINATOR_PARTICIPANT_REGISTRY_H_
#define TWOPC_COORDINATOR_PARTICIPANT_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/completion_queue_loop.h"
#include "coordinator/participant_link.h"
#include "rocksdb/write_batch.h"
#include "storage/store.h"
#include "twopc/internal/decision_log.pb.h"
#include "twopc/v1/admin.pb.h"

namespace twopc::coordinator {

// NOT_FOUND with ErrorInfo reason PARTICIPANT_UNKNOWN and the message
// "participant <id> <what>". REQUIRES: `participant_id` passed
// ValidateIdentifier (it is shown unquoted).
absl::Status ParticipantUnknownError(const std::string& participant_id,
                                     absl::string_view what);

class ParticipantRegistry {
 public:
  static constexpr char kFamily[] = "participants";

  // `store` (opened with kFamily), `clock` and `loop` (which drives every
  // link's stream) must outlive the registry; `loop` must keep running
  // until Shutdown returned.
  ParticipantRegistry(storage::Store* store, Clock* clock,
                      CompletionQueueLoop* loop, uint64_t epoch,
                      ParticipantLink::Callbacks callbacks,
                      absl::Duration heartbeat_interval);

  // Loads registered participants and starts their links.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  // Registers or re-registers (durably, synced). INVALID_ARGUMENT for a bad
  // id ([A-Za-z0-9._-]{1,64}) or endpoint (host:port, host a name, an IPv4
  // address or an [IPv6] address, port 1..65535; at most 256 bytes).
  absl::Status Register(const std::string& participant_id,
                        const std::string& endpoint,
                        const std::string& resource) ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets a participant (durably, synced, in one write with `with`: e.g.
  // the removal's audit record, so after a crash both are on disk or
  // neither) and closes its link: requests in flight on it fail with
  // UNAVAILABLE, and Send refuses from now on. NOT_FOUND (nothing written)
  // when not registered. The caller checks that no transaction still needs
  // it.
  absl::Status Remove(const std::string& participant_id,
                      rocksdb::WriteBatch with) ABSL_LOCKS_EXCLUDED(mu_);

  // Records a heartbeat. NOT_FOUND when not registered.
  absl::Status Heartbeat(const std::string& participant_id,
                         uint32_t prepared_branches,
                         uint32_t in_flight_requests) ABSL_LOCKS_EXCLUDED(mu_);

  bool IsRegistered(const std::string& participant_id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // OK when registered; else ParticipantUnknownError, saying what to do.
  // REQUIRES: `participant_id` passed ValidateIdentifier.
  absl::Status CheckRegistered(const std::string& participant_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `request` on the participant's link (see ParticipantLink::Send).
  // Returns false, doing nothing, when the participant is not registered.
  bool Send(const std::string& participant_id, v1::BranchRequest request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Everyone, with health, for operators.
  std::vector<v1::ParticipantInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);

  // Stops every link and waits until nothing of theirs is left on the
  // loop. Call before the registry is destroyed (its links need the loop).
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Duration heartbeat_interval() const { return heartbeat_interval_; }

 private:
  struct Entry {
    internal::ParticipantRecord record;
    std::shared_ptr<ParticipantLink> link;
    absl::Time last_heartbeat = absl::InfinitePast();
    uint32_t prepared_branches = 0;
    uint32_t reported_in_flight = 0;
  };

  std::shared_ptr<ParticipantLink> MakeLink(
      const internal::ParticipantRecord& record);
  // Stops the entry's link and moves it to retired_.
  void RetireLinkLocked(Entry& entry, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Destroys the retired links once no Send uses them. Waits for the link
  // loop: not on the loop's thread, and with no lock that it may wait for.
  void DestroyRetiredLinks() ABSL_LOCKS_EXCLUDED(mu_);

  storage::Store* const store_;
  Clock* const clock_;
  CompletionQueueLoop* const loop_;
  const uint64_t epoch_;
  const ParticipantLink::Callbacks callbacks_;
  const absl::Duration heartbeat_interval_;

  mutable absl::Mutex mu_;
  std::map<std::string, Entry> participants_ ABSL_GUARDED_BY(mu_);
  // Links replaced by a re-registration or removed, stopped. They are
  // destroyed by the Register or Remove call that retired them, once no
  // Send holds them: the last reference must never be dropped inside Send,
  // which runs under the caller's lock that the loop's thread may be
  // waiting for (and a link's destructor waits for the loop).
  std::vector<std::shared_ptr<ParticipantLink>> retired_ ABSL_GUARDED_BY(mu_);
  // Serialises Register and Remove calls (which write to disk outside mu_).
  absl::Mutex register_mu_;
  // Set by Shutdown: Send refuses, so no new link references are taken.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Send calls holding a link reference outside mu_; Shutdown waits for 0.
  int active_sends_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_PARTICIPANT_REGISTRY_H_
