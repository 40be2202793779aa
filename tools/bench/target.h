// The system a transaction benchmark runs against: either a cluster the bench
// starts itself on loopback (--local) or a running one (--coordinator), and
// the processes whose CPU time it reports.
#ifndef TWOPC_TOOLS_BENCH_TARGET_H_
#define TWOPC_TOOLS_BENCH_TARGET_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/child_process.h"

namespace twopc::bench {

// A server process of the target; `pid` is unknown when it could not be
// found (then its CPU time is not reported).
struct WatchedProcess {
  std::string name;  // "coordinator" or a participant id
  std::optional<pid_t> pid;
};

struct Target {
  std::string coordinator;
  // Kv sidecars for the transactions' branches, in branch order.
  std::vector<std::string> participant_ids;
  std::vector<WatchedProcess> processes;
};

// A coordinator and kv sidecars p1..pk started from the twopc binaries in
// `bin_dir`, on loopback with kernel-chosen ports, with data and logs in a
// scratch directory, with the servers' defaults (fsync on). Destruction
// kills the processes and removes the directory.
//
// Thread-compatible.
class LocalTwopcCluster {
 public:
  // Starts the processes and waits until every sidecar is registered with a
  // connected link. Errors as ChildProcess::StartServer, plus
  // DEADLINE_EXCEEDED when a sidecar does not connect.
  static absl::StatusOr<std::unique_ptr<LocalTwopcCluster>> Start(
      const std::string& bin_dir, int participants);

  Target target() const;

 private:
  struct Server {
    std::string name;
    std::unique_ptr<ChildProcess> process;
  };
  LocalTwopcCluster() = default;

  std::unique_ptr<ScratchDir> dir_;  // first: outlives the processes
  std::vector<Server> servers_;      // the coordinator, then the sidecars
};

// A running cluster at `coordinator`: its first `participants` connected kv
// sidecars in id order. Process ids come from `pids` ("NAME=PID", NAME being
// "coordinator" or a participant id) or else are looked up in /proc by binary
// name and listening port (see FindServerProcess).
// UNAVAILABLE when the coordinator does not answer; FAILED_PRECONDITION
// when it has fewer connected kv sidecars; INVALID_ARGUMENT for a bad
// `pids` entry.
absl::StatusOr<Target> ConnectToCluster(const std::string& coordinator,
                                        int participants,
                                        const std::vector<std::string>& pids);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_TARGET_H_
