// twopc-bench queue: queue read throughput (Fetch and Subscribe) and
// commit-to-subscriber latency against a running coordinator with one kv
// sidecar. See the README's Benchmarks section.
#ifndef TWOPC_TOOLS_BENCH_QUEUE_BENCH_H_
#define TWOPC_TOOLS_BENCH_QUEUE_BENCH_H_

#include <string>

namespace twopc::bench {

struct QueueFlags {
  std::string coordinator = "127.0.0.1:7400";
  // A registered kv sidecar to run the publishing transactions on.
  std::string participant = "p1";
  int messages = 200'000;
  int value_bytes = 100;
  // Single-message commits timed to the subscriber.
  int latency_samples = 200;
};

// Publishes `messages` messages to a fresh one-partition topic, reads them
// back with Fetch and with Subscribe, times single-message commits to the
// subscriber, and prints the figures (as one JSON object with `json`).
// Returns the process exit code.
int RunQueueBench(const QueueFlags& flags, bool json);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_QUEUE_BENCH_H_
