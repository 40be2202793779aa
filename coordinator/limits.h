// Limits: every bound the coordinator enforces on client input, with the
// defaults documented in proto/twopc/v1/transaction.proto and README.md.
// Each is a twopc-coordinator flag.
#ifndef TWOPC_COORDINATOR_LIMITS_H_
#define TWOPC_COORDINATOR_LIMITS_H_

#include <cstddef>
#include <map>
#include <string>

#include "absl/time/time.h"

namespace twopc::coordinator {

struct Limits {
  int max_branches = 16;
  int max_messages = 1000;
  // An opaque payload, or a kv branch as encoded.
  size_t max_branch_bytes = 1 << 20;
  size_t max_transaction_bytes = 4 << 20;
  int max_kv_operations = 1000;
  size_t max_kv_key_bytes = 1024;
  // A put's value (and an expect's): 1 MiB - 4 KiB, below max_branch_bytes
  // by more than the longest key and the encoding, so that a put of the
  // largest value fits in a branch. The sidecar's KvLimits match.
  size_t max_kv_value_bytes = (1 << 20) - (4 << 10);
  absl::Duration default_timeout = absl::Seconds(10);
  absl::Duration max_timeout = absl::Minutes(5);
  size_t max_idempotency_key_bytes = 128;
  int max_labels = 16;
  size_t max_reason_bytes = 1024;
  // Transactions not yet finished, across all clients.
  int max_inflight = 100'000;
  // ExecuteStream calls open at once, across all clients. Each holds up to
  // ExecuteStreams::kMaxUnsent + kMaxRequestsPerMessage - 1 results, so
  // this bounds what clients that do not read can make the coordinator
  // hold.
  int max_execute_streams = 256;

  // Name -> value, for `twopcctl stats` and the README.
  std::map<std::string, std::string> Describe() const;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_LIMITS_H_
