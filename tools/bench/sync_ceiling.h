// The storage ceiling: synced RocksDB writes per second from one thread, the
// bound on decisions per second without group commit.
#ifndef TWOPC_TOOLS_BENCH_SYNC_CEILING_H_
#define TWOPC_TOOLS_BENCH_SYNC_CEILING_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace twopc::bench {

// Writes 100-byte values with sync=true, one at a time, for `duration` into
// a fresh RocksDB at `dir` (created, and removed afterwards), and returns the
// writes per second. Stops early when the bench is interrupted.
// INTERNAL when RocksDB fails.
absl::StatusOr<double> MeasureSyncedWritesPerSecond(const std::string& dir,
                                                    absl::Duration duration);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_SYNC_CEILING_H_
