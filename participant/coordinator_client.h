// CoordinatorClient: the sidecar's side of CoordinatorService, run by two
// background threads.
//
//  * Registration: Register(id, endpoint, resource) until it succeeds (capped
//    exponential backoff while the coordinator is unreachable: the sidecar
//    serves regardless), then Heartbeat every heartbeat_interval (from the
//    RegisterResponse, else the option). NOT_FOUND from Heartbeat means
//    "register again"; other errors back off and keep heartbeating. The
//    epochs in the responses are passed to BranchManager::ObserveEpoch.
//  * In-doubt resolution: every poll_interval, asks QueryOutcomes for the
//    branches BranchManager::DueForOutcomeQuery hands out (at most 1,000 per
//    call) and applies the answers. The per-branch backoff lives in
//    BranchManager; a failed call just waits for the next round. The same
//    thread calls BranchManager::ForgetFinished.
//
// With an empty `coordinator` address only ForgetFinished runs.
//
// Transitions (registered, unreachable) are logged to stderr, once each.
//
// Thread-safety: construct and destroy from one thread; registered() from
// any.
#ifndef TWOPC_PARTICIPANT_COORDINATOR_CLIENT_H_
#define TWOPC_PARTICIPANT_COORDINATOR_CLIENT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "participant/branch_manager.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::participant {

struct CoordinatorClientOptions {
  std::string participant_id;
  // The coordinator's host:port; empty = none.
  std::string coordinator;
  // Where this sidecar serves ParticipantService (sent in Register).
  std::string endpoint;
  // "kv" or "callback".
  std::string resource;
  // Heartbeat period when the coordinator does not give one.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // Backoff while the coordinator is unreachable: initial, doubling, cap
  // (each delay jittered by up to ±20%, so that the sidecars of a restarted
  // coordinator do not all call it at the same moments).
  absl::Duration retry_initial = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(5);
  // How often to look for in-doubt branches due for a query.
  absl::Duration poll_interval = absl::Milliseconds(100);
  // Deadline of each RPC.
  absl::Duration rpc_timeout = absl::Seconds(5);
};

class CoordinatorClient {
 public:
  // Starts both threads. `manager` is not owned and must outlive this.
  CoordinatorClient(CoordinatorClientOptions options, BranchManager* manager);
  // Stops and joins the threads (an RPC in flight ends by its deadline).
  ~CoordinatorClient();

  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  bool registered() const { return registered_.load(); }

 private:
  void RunRegistration();
  void RunResolver();

  const CoordinatorClientOptions options_;
  BranchManager* const manager_;
  std::unique_ptr<v1::CoordinatorService::Stub> stub_;
  std::atomic<bool> registered_{false};
  absl::Notification stop_;
  std::thread registration_;
  std::thread resolver_;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_COORDINATOR_CLIENT_H_
