// Nemesis: injects process-level faults into a LocalCluster from its own
// thread, one at a time, at random moments drawn from a seed:
//   * kill -9 the coordinator or a sidecar, and restart it after a while;
//   * freeze (SIGSTOP) the coordinator or a sidecar, and thaw it after a
//     while;
//   * cut a sidecar off from the coordinator with iptables for a while
//     (only where LoopbackCut is available, i.e. as root).
// The schedule (pauses, kinds, targets, durations) is a function of the
// seed; what the faults hit depends on real timing, so a run is
// reproducible only as far as a real-process test can be.
//
// Thread-safe: Counts() may be called from any thread.
#ifndef TWOPC_TESTS_CHAOS_NEMESIS_H_
#define TWOPC_TESTS_CHAOS_NEMESIS_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "tests/testing/cluster.h"

namespace twopc::chaos {

enum class FaultKind {
  kKillCoordinator,
  kKillSidecar,
  kFreezeCoordinator,
  kFreezeSidecar,
  kCutSidecar,
};

// e.g. "kill -9 coordinator".
const char* FaultName(FaultKind kind);

struct NemesisOptions {
  uint64_t seed = 1;
  std::vector<std::string> sidecars;
  // Flags the processes were started with; restarts use them again.
  std::vector<std::string> coordinator_flags;
  std::vector<std::string> sidecar_flags;
  // Quiet time before each fault, and how long it lasts (down time before a
  // restart, freeze, cut): uniform in [min, max].
  absl::Duration min_pause = absl::Milliseconds(300);
  absl::Duration max_pause = absl::Milliseconds(1500);
  absl::Duration min_fault = absl::Milliseconds(100);
  absl::Duration max_fault = absl::Milliseconds(2500);
  // Where iptables output goes; cut rules are tagged with `cut_tag`.
  std::string log_dir;
  std::string cut_tag;
};

class Nemesis {
 public:
  // Starts injecting faults at once. `cluster` must outlive the Nemesis, and
  // nothing else may use it until Stop() returns.
  Nemesis(testing::LocalCluster* cluster, NemesisOptions options);

  // Stop()s, then ends the worker thread. The processes the nemesis
  // restarted are children of that thread, and Subprocess makes them die
  // with it (PR_SET_PDEATHSIG fires when the forking thread exits): destroy
  // the Nemesis only when done with the cluster.
  ~Nemesis();
  Nemesis(const Nemesis&) = delete;
  Nemesis& operator=(const Nemesis&) = delete;

  // Stops injecting, ends the fault in progress (restarts the killed
  // process, thaws the frozen one, removes the cut) and returns once every
  // process runs again. OK, or the first error restarting a process (faults
  // stop at that point). Idempotent.
  absl::Status Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Faults injected so far, by kind (every enabled kind listed).
  std::map<FaultKind, int64_t> Counts() const ABSL_LOCKS_EXCLUDED(mu_);

  // Why cuts are not injected, or "" when they are.
  std::string cuts_unavailable_reason() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();
  // Injects one fault of `kind` and ends it. Error when a restart fails.
  absl::Status Inject(FaultKind kind);
  absl::Status Restart(const std::string& name);
  // Cuts `sidecar` off for `how_long`; when iptables fails, disables cuts.
  void CutOff(const std::string& sidecar, absl::Duration how_long);
  void Count(FaultKind kind) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits `d`, or less when stopped. True when stopped.
  bool PauseFor(absl::Duration d) {
    return stop_.WaitForNotificationWithTimeout(d);
  }
  absl::Duration Between(absl::Duration low, absl::Duration high);
  const std::string& AnySidecar();
  void Announce(const std::string& what);

  testing::LocalCluster* const cluster_;
  const NemesisOptions options_;
  const absl::Time start_;
  // Used by the worker thread only (after construction).
  std::vector<FaultKind> kinds_;  // enabled, one entry per unit of weight
  std::mt19937_64 random_;

  absl::Notification stop_;
  absl::Notification healed_;    // the worker ended its last fault
  absl::Notification released_;  // the worker may exit
  mutable absl::Mutex mu_;
  std::map<FaultKind, int64_t> counts_ ABSL_GUARDED_BY(mu_);
  std::string cuts_unavailable_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace twopc::chaos

#endif  // TWOPC_TESTS_CHAOS_NEMESIS_H_
