// CoordinatorServer: the twopc-coordinator process minus flag parsing.
//
// Owns the data directory (decision log, participant registry), the group
// commit writer, the participant links, the transaction manager and the gRPC
// server. Every start takes a new coordinator epoch, stored durably before
// anything is served, so participants can fence older incarnations; then the
// decision log is recovered (undecided transactions aborted, decided ones
// re-driven) before the first client call is accepted.
//
// Thread-safety: Start and Shutdown are called from one thread; accessors are
// safe from any thread after Start returned OK.
#ifndef TWOPC_COORDINATOR_COORDINATOR_SERVER_H_
#define TWOPC_COORDINATOR_COORDINATOR_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/completion_queue_loop.h"
#include "common/grpc_server.h"
#include "common/open_calls.h"
#include "coordinator/client_calls.h"
#include "coordinator/consumer_groups.h"
#include "coordinator/execute_streams.h"
#include "coordinator/participant_registry.h"
#include "coordinator/queue_service.h"
#include "coordinator/topic_registry.h"
#include "coordinator/services.h"
#include "coordinator/transaction_manager.h"
#include "storage/decision_log.h"
#include "storage/group_commit_writer.h"
#include "storage/partition_log.h"
#include "storage/store.h"

namespace twopc::coordinator {

struct CoordinatorOptions {
  // "host:port" to serve on; port 0 picks a free port.
  std::string listen = "127.0.0.1:7400";
  // RocksDB data directory; created when missing.
  std::string data_dir = "var/coordinator";
  // Largest gRPC message accepted (a whole transaction must fit).
  int max_message_bytes = 8 << 20;
  // How often participants must heartbeat.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // Publishing to an unknown topic creates it with this many partitions;
  // 0 refuses (NOT_FOUND).
  int32_t auto_create_partitions = 0;
  // How often topic retention runs.
  absl::Duration retention_interval = absl::Seconds(10);
  ManagerOptions manager;
};

class CoordinatorServer {
 public:
  // Opens the data directory, takes the next epoch, recovers the decision
  // log and starts serving.
  // OK; FAILED_PRECONDITION / DATA_LOSS for an unusable data directory;
  // UNAVAILABLE when `listen` cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const CoordinatorOptions& options);

  // Drains first: starts no new transaction (TransactionManager::Drain,
  // and new ExecuteStream calls end at once SHUTTING_DOWN) and gives the
  // ones already started until `grace` to be decided, so that their clients
  // get outcomes. Then stops accepting calls, finishes or cancels the ones
  // in flight (waiting until `grace` at most), and closes the data
  // directory.
  void Shutdown(absl::Duration grace);

  ~CoordinatorServer();

  const std::string& address() const { return server_.address; }
  uint64_t epoch() const { return epoch_; }

 private:
  CoordinatorServer() = default;

  // Declaration order is construction order; destruction is explicit in
  // Shutdown.
  std::unique_ptr<storage::Store> store_;
  uint64_t epoch_ = 0;
  std::unique_ptr<storage::PartitionLogs> queues_;
  std::unique_ptr<storage::GroupCommitWriter> writer_;
  std::unique_ptr<storage::DecisionLog> log_;
  // Drains the server's asynchronous queue: the client calls and every
  // participant link.
  std::unique_ptr<CompletionQueueLoop> loop_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<TopicRegistry> topics_;
  std::unique_ptr<ConsumerGroups> groups_;
  std::unique_ptr<ParticipantRegistry> registry_;
  std::unique_ptr<TransactionManager> manager_;
  std::unique_ptr<TransactionServiceImpl> transaction_service_;
  // The asynchronous calls of client_calls_ and execute_streams_; outlives
  // the loop's thread.
  OpenCalls open_client_calls_;
  std::unique_ptr<ClientCalls> client_calls_;
  std::unique_ptr<ExecuteStreams> execute_streams_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<QueueServiceImpl> queue_service_;
  RunningServer server_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_COORDINATOR_SERVER_H_
