// ParticipantServer: the twopc-participant sidecar process minus flag parsing.
//
// Owns the sidecar's data directory (branch store and the built-in key-value
// resource), the resource (kv, or the application's callback service), the
// branch lifecycle (BranchManager), the gRPC server (ParticipantService,
// KvService in kv mode, health, reflection) and the coordinator client
// (registration, heartbeats, in-doubt resolution).
//
// Thread-safety: Start and Shutdown are called from one thread; accessors are
// safe from any thread after Start returned OK.
#ifndef TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_
#define TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_server.h"
#include "participant/branch_manager.h"
#include "participant/callback_resource.h"
#include "participant/coordinator_client.h"
#include "participant/kv_resource.h"
#include "participant/kv_service.h"
#include "participant/link_service.h"
#include "participant/rocksdb_branch_store.h"

namespace twopc::participant {

struct ParticipantOptions {
  // This sidecar's participant id, [A-Za-z0-9._-]{1,64}. Required.
  std::string id;
  // "host:port" to serve ParticipantService / KvService on; port 0 = any.
  std::string listen = "127.0.0.1:7401";
  // The coordinator's address, for registration and outcome queries; empty
  // runs without a coordinator (no registration, in-doubt branches wait).
  std::string coordinator = "127.0.0.1:7400";
  // Endpoint sent to the coordinator; empty = the address actually bound.
  std::string advertise;
  // RocksDB data directory; empty means var/<id>.
  std::string data_dir;
  // Application callback address; empty runs the built-in key-value resource.
  std::string callback;
  // A branch PREPARED this long asks the coordinator for its outcome.
  absl::Duration in_doubt_after = absl::Seconds(10);
  // Cap of the backoff between outcome queries of one branch.
  absl::Duration outcome_query_backoff_max = absl::Seconds(30);
  // How long finished branches are remembered after the later of their end
  // and their deadline (see BranchManager), and after their end when the
  // prepare had no deadline.
  absl::Duration finished_retention = absl::Minutes(1);
  absl::Duration finished_retention_without_deadline = absl::Minutes(10);
  // Heartbeat period when the coordinator's RegisterResponse gives none.
  absl::Duration heartbeat = absl::Seconds(2);
  int max_message_bytes = 8 << 20;
};

class ParticipantServer {
 public:
  // Validates options, opens the data directory, recovers the branches in
  // it and starts serving; registration with the coordinator proceeds in the
  // background (the coordinator may be down).
  // OK; INVALID_ARGUMENT (bad id or durations); FAILED_PRECONDITION /
  // DATA_LOSS for an unusable data directory; UNAVAILABLE when `listen`
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<ParticipantServer>> Start(
      ParticipantOptions options);

  // Stops serving (waiting at most `grace` for calls in flight), stops the
  // background work and closes the data directory. Idempotent.
  void Shutdown(absl::Duration grace);

  ~ParticipantServer();

  const std::string& address() const { return server_.address; }
  const ParticipantOptions& options() const { return options_; }
  BranchManager* manager() const { return manager_.get(); }

 private:
  explicit ParticipantServer(ParticipantOptions options)
      : options_(std::move(options)) {}

  ParticipantOptions options_;
  std::unique_ptr<RocksDbBranchStore> store_;
  // Exactly one of these is the resource.
  std::unique_ptr<KvResource> kv_;
  std::unique_ptr<CallbackResource> callback_;
  std::unique_ptr<BranchManager> manager_;
  std::unique_ptr<LinkService> link_service_;
  std::unique_ptr<KvServiceImpl> kv_service_;
  RunningServer server_;
  std::unique_ptr<CoordinatorClient> coordinator_client_;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_
