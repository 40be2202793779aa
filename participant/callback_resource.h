// CallbackResource: Resource 2, the application's own
// ApplicationCallbackService (proto/twopc/v1/callback.proto), reached at
// --callback=ADDR. The barrier in BranchManager sits in front of it, so the
// application sees a Prepare again only as Resource (resource.h) says, and
// Commit/Abort only after the outcome is durably recorded here. The sidecar
// syncs an intent record before each Prepare: if it crashes before the vote
// is recorded, it tells the application to abort that branch once it is
// back (BranchManager).
//
//  * Prepare: the branch must carry `payload` (<= 1 MiB). An error status
//    from the application (including unreachable) is a NO vote with that
//    status as the reason.
//  * ApplyOutcome: Commit or Abort, retried with capped exponential backoff
//    until the application returns OK; `done` runs then, `delayed` after
//    each failed attempt (the coordinator's commit/abort is then answered
//    UNAVAILABLE with the error; see BranchManager). After a sidecar restart
//    delivery resumes from the record.
//  * Aborts of branches the sidecar does not know (never prepared here, or
//    finished and forgotten) are delivered too, and a crash right after the
//    intent record was synced ends in an Abort whose Prepare never reached
//    the application; Abort must therefore accept unknown transaction ids.
//
// Calls to the application run on a small pool of worker threads, never on
// the caller's; a branch refused without a call (no payload, too large) is
// answered inline.
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_PARTICIPANT_CALLBACK_RESOURCE_H_
#define TWOPC_PARTICIPANT_CALLBACK_RESOURCE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "participant/resource.h"
#include "twopc/v1/callback.grpc.pb.h"

namespace twopc::participant {

struct CallbackResourceOptions {
  // The application's host:port.
  std::string address;
  // Backoff of Commit/Abort delivery: initial, doubling, cap (each delay
  // jittered by up to ±20%, so retries after an outage spread out).
  absl::Duration retry_initial = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(5);
  // Deadline of one Commit/Abort call; Prepare uses the branch deadline,
  // capped by prepare_timeout.
  absl::Duration rpc_timeout = absl::Seconds(5);
  absl::Duration prepare_timeout = absl::Seconds(30);
  int threads = 4;
  size_t max_payload_bytes = 1 << 20;
};

class CallbackResource : public Resource {
 public:
  // `clock` is not owned and must outlive the resource.
  CallbackResource(CallbackResourceOptions options, Clock* clock);
  // Stops the workers; deliveries still being retried are abandoned (they
  // resume from the records at the next start). Later calls queue work that
  // never runs. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  ~CallbackResource() override { Stop(); }

  std::string kind() const override { return "callback"; }
  bool applies_in_batch() const override { return false; }
  bool applies_unknown_aborts() const override { return true; }

  void Prepare(const std::string& transaction_id, const v1::Branch& branch,
               absl::Time deadline, PrepareDone done) override;
  void AddCommitEffects(const BranchRecord&, StoreBatch*) override {}
  void ApplyOutcome(const std::string& transaction_id,
                    const BranchRecord& record, bool committed,
                    ApplyDone done, ApplyDelayed delayed) override;
  void Restore(const std::string&, const BranchRecord&) override {}

 private:
  void Schedule(absl::Time at, std::function<void()> task)
      ABSL_LOCKS_EXCLUDED(mu_);
  void RunWorker() ABSL_LOCKS_EXCLUDED(mu_);
  void Deliver(std::string transaction_id, bool committed, int attempt,
               ApplyDone done, ApplyDelayed delayed);

  const CallbackResourceOptions options_;
  Clock* const clock_;
  std::unique_ptr<v1::ApplicationCallbackService::Stub> stub_;

  absl::Mutex mu_;
  Backoff retry_backoff_ ABSL_GUARDED_BY(mu_);
  absl::CondVar changed_;
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_CALLBACK_RESOURCE_H_
