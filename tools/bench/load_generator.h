// LoadGenerator: drives a Workload from a few threads, each polling its own
// completion queue with many calls in flight (1,024 clients need no 1,024
// threads), in closed loop (every client keeps one call outstanding) or open
// loop (calls sent at a fixed rate whatever the latency).
//
// Calls count in a measurement window opened and closed by the caller, so a
// warm-up can run before it: a call counts in the window when it completes
// while the window is open. Latency is from the call's start (closed loop) or
// from the moment it was due (open loop, so a stalled server shows in the
// latency instead of slowing the load: no coordinated omission).
//
// Thread-safe.
#ifndef TWOPC_TOOLS_BENCH_LOAD_GENERATOR_H_
#define TWOPC_TOOLS_BENCH_LOAD_GENERATOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/workload.h"

namespace twopc::bench {

struct LoadOptions {
  // Closed loop: this many clients, each with one call outstanding. Open
  // loop: the calls are spread round-robin over this many clients (the
  // workload's key spaces and channels).
  int clients = 1;
  // Calls per second in open loop; 0 = closed loop.
  double rate = 0;
  // Open loop: at most this many calls in flight; a call that falls due
  // while they are is not sent (counted as skipped).
  int max_outstanding = 10'000;
  // Threads sending and completing calls (at most `clients` are used).
  int threads = 1;
};

// Calls counted, by how they ended (see CallOutcome).
struct LoadCounters {
  uint64_t committed = 0;
  uint64_t aborted_as_intended = 0;
  uint64_t conflicts = 0;
  uint64_t aborted_unexpectedly = 0;
  uint64_t committed_unexpectedly = 0;
  uint64_t failed = 0;
  // Open loop: calls due but not sent (max_outstanding in flight).
  uint64_t skipped = 0;
  // The first call that did not end as intended ("CODE: message").
  std::string first_error;

  void Count(CallOutcome outcome, const PendingCall& call);
  void Add(const LoadCounters& other);
  uint64_t aborted() const {
    return aborted_as_intended + conflicts + aborted_unexpectedly;
  }
  // Every call that completed.
  uint64_t completed() const {
    return committed + committed_unexpectedly + aborted() + failed;
  }
};

// What completed while a window was open.
struct LoadWindow {
  LoadCounters counters;
  // Latency of the committed calls.
  LatencyHistogram latency;
  // Open loop: how long after it was due each call was sent, the
  // generator's own delay (timer lateness, a busy thread), which the
  // latency includes. Empty in closed loop.
  LatencyHistogram send_delay;
  absl::Duration elapsed;
};

class LoadGenerator {
 public:
  enum class StopMode {
    kDrain,   // wait for the calls in flight
    kCancel,  // cancel them
  };

  // Starts sending at once. `workload` must outlive the generator.
  // REQUIRES: clients >= 1, threads >= 1; rate >= 0.
  LoadGenerator(Workload* workload, const LoadOptions& options);
  // Stop(kCancel) unless stopped.
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  // Starts counting into a fresh window.
  // REQUIRES: no window is open.
  void OpenWindow();
  // Stops counting and returns the window.
  // REQUIRES: a window is open.
  LoadWindow CloseWindow();

  // Everything completed since the start, window or not.
  LoadCounters Totals() const;
  // p99 latency of the open window so far (zero when none is open).
  absl::Duration WindowP99() const;

  // Stops sending, ends the calls in flight as `mode` says (counting them),
  // and joins the threads. Idempotent. Totals stay readable.
  void Stop(StopMode mode);

 private:
  class ClientThread;
  enum class RunState { kRunning, kDraining, kCancelling };

  std::atomic<RunState> run_state_{RunState::kRunning};
  std::vector<std::unique_ptr<ClientThread>> threads_;
  absl::Time window_start_;
  bool stopped_ = false;
};

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_LOAD_GENERATOR_H_
