// twopc-bench txn: the transaction benchmark. Runs TxnWorkload against a
// cluster (started with --local, or running), measures one window per client
// count after a warm-up, reads the coordinator's group-commit counters and
// the processes' CPU time at the window's edges, measures the gRPC echo and
// RocksDB synced-write ceilings of the machine in the same run, and prints
// the results (report.h).
#ifndef TWOPC_TOOLS_BENCH_TXN_BENCH_H_
#define TWOPC_TOOLS_BENCH_TXN_BENCH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/bench/load_generator.h"

namespace twopc::bench {

struct TxnBenchOptions {
  // Target: a running coordinator, or a cluster started by the bench.
  std::string coordinator = "127.0.0.1:7400";
  bool local = false;
  // Branches per transaction (with --local: the sidecars started).
  int participants = 2;
  // "NAME=PID" of a running cluster's processes, for CPU time.
  std::vector<std::string> pids;

  // Load: one measured window per entry of `client_counts` (closed loop),
  // or one window at load.rate per second (open loop).
  std::vector<int> client_counts = {64};
  LoadOptions load;
  int channels = 4;
  // Transactions over ExecuteStream (the clients of a channel and a client
  // thread share one stream) instead of one Execute call each.
  bool stream = false;
  // A transaction not answered this long after it started fails
  // DEADLINE_EXCEEDED (TxnShape::deadline).
  absl::Duration deadline = absl::Seconds(60);

  // Transactions.
  int payload_bytes = 100;
  int messages = 0;
  int partitions = 8;
  double abort_ratio = 0;
  bool idempotency_keys = false;

  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  // The echo and RocksDB ceilings, each measured for ceiling_duration.
  bool ceilings = true;
  absl::Duration ceiling_duration = absl::Seconds(3);

  bool json = false;
  // Progress line on stderr once a second (also when stderr is a terminal).
  bool progress = false;
};

// The CPU time one process spent per completed transaction in a window;
// nullopt when its process id is unknown or nothing completed.
struct CpuShare {
  std::string name;  // "coordinator", a participant id, or "bench"
  std::optional<absl::Duration> per_transaction;
};

struct EchoCeiling {
  double calls_per_second = 0;
  absl::Duration p50;
  absl::Duration p99;
};

// One measured window.
struct RunResult {
  int clients = 0;
  LoadWindow window;
  // Deltas of the coordinator's group-commit counters over the window;
  // nullopt when GetStats failed.
  std::optional<uint64_t> log_syncs;
  std::optional<uint64_t> decisions_synced;
  // The target's processes, then the bench itself.
  std::vector<CpuShare> cpu;
  // The echo ceiling at the same client count (when measured).
  std::optional<EchoCeiling> echo;

  double committed_per_second() const;
  double aborted_per_second() const;
  std::optional<double> decisions_per_sync() const;
  // Sum over `cpu`; nullopt when one is unknown.
  std::optional<absl::Duration> total_cpu_per_transaction() const;
  // committed_per_second / echo calls per second.
  std::optional<double> ratio_to_echo() const;
};

// Runs the benchmark and prints its report on stdout (errors and progress on
// stderr). Returns the exit code: 0, 1 on error, 130 when interrupted.
int RunTxnBench(const TxnBenchOptions& options);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_TXN_BENCH_H_
