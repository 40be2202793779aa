// The transaction benchmark's report on stdout: for one run a block of
// figures, for a sweep a markdown table; or, with --json, one JSON object:
//
//   {"config": {...the options...},
//    "runs": [{"clients", "seconds", "committed", "committed_per_second",
//              "aborted_per_second", "aborted_as_intended", "conflicts",
//              "aborted_unexpectedly", "committed_unexpectedly", "failed",
//              "skipped", "latency_us": {"p50", "p90", "p99", "p999", "max"},
//              "send_delay_us": {"p50", "p99", "max"} (open loop only),
//              "log_syncs", "decisions_synced", "decisions_per_sync",
//              "cpu_us_per_transaction": {NAME: us, ..., "total": us},
//              "echo_calls_per_second", "echo_latency_us": {"p50", "p99"},
//              "ratio_to_echo", "first_error"}, ...],
//    "rocksdb_synced_writes_per_second": N}
//
// Rates are per second of the measured window; latencies are of the committed
// transactions (echo: of the calls); CPU is per completed transaction
// (committed or aborted). A figure that could not be measured is left out
// (JSON) or shown as "-".
#ifndef TWOPC_TOOLS_BENCH_REPORT_H_
#define TWOPC_TOOLS_BENCH_REPORT_H_

#include <optional>
#include <vector>

#include "tools/bench/target.h"
#include "tools/bench/txn_bench.h"

namespace twopc::bench {

// Prints `runs` (measured with `options` against `target`) and the storage
// ceiling, when measured, on stdout, as text or as JSON (options.json).
void PrintReport(const TxnBenchOptions& options, const Target& target,
                 const std::vector<RunResult>& runs,
                 std::optional<double> synced_writes_per_second);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_REPORT_H_
