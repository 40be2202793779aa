// LocalCluster: a coordinator and participant sidecars as real processes on
// loopback, for integration and fault tests. Each process keeps its port and
// data directory across restarts, so a test can kill -9, freeze and restart
// any of them. The destructor kills everything it started.
//
// Thread-compatible.
#ifndef TWOPC_TESTS_TESTING_CLUSTER_H_
#define TWOPC_TESTS_TESTING_CLUSTER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::testing {

// A port that was free a moment ago (bound to 0, read, released).
int PickFreePort();

class LocalCluster {
 public:
  // `bin_dir` holds the binaries; `work_dir` gets data and logs.
  LocalCluster(std::string bin_dir, std::string work_dir);
  ~LocalCluster();

  static constexpr char kCoordinator[] = "coordinator";

  // Starts (or restarts) the coordinator and waits until it serves.
  absl::Status StartCoordinator(std::vector<std::string> extra_flags = {});
  // Starts (or restarts) sidecar `id` (kv resource unless extra flags say
  // otherwise) and waits until it serves.
  absl::Status StartParticipant(const std::string& id,
                                std::vector<std::string> extra_flags = {});

  // SIGKILL, and reap.
  void Kill(const std::string& name);
  // SIGTERM, and wait for a clean exit (error if it is not clean).
  absl::Status Stop(const std::string& name);
  // Waits until `name` exits on its own; returns its exit code (128 + the
  // signal number when a signal ended it). DEADLINE_EXCEEDED after
  // `timeout`; NOT_FOUND for a process never started.
  absl::StatusOr<int> WaitForExit(const std::string& name,
                                  absl::Duration timeout);
  // SIGSTOP, returning once every thread of `name` has stopped / SIGCONT.
  void Freeze(const std::string& name);
  void Thaw(const std::string& name);

  // StartCoordinator, StartParticipant for each of `ids` (kv sidecars),
  // then WaitForParticipants: a cluster ready for transactions.
  absl::Status StartWithSidecars(const std::vector<std::string>& ids);

  // Waits until every named participant is registered with a connected link.
  absl::Status WaitForParticipants(const std::vector<std::string>& ids,
                                   absl::Duration timeout);

  std::string coordinator_address() const;
  std::string participant_address(const std::string& id) const;
  std::string Log(const std::string& name) const;
  // Prints every process's output to stderr, for a failed test's TearDown.
  void PrintLogs() const;

  std::unique_ptr<v1::TransactionService::Stub> Transactions() const;
  std::unique_ptr<v1::AdminService::Stub> Admin() const;
  std::unique_ptr<v1::QueueService::Stub> Queues() const;
  std::unique_ptr<v1::KvService::Stub> Kv(const std::string& id) const;

 private:
  struct Node {
    int port = 0;
    std::unique_ptr<Subprocess> process;
    int starts = 0;
  };
  absl::Status Launch(const std::string& name, std::vector<std::string> argv);

  const std::string bin_dir_;
  const std::string work_dir_;
  std::map<std::string, Node> nodes_;
};

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_CLUSTER_H_
