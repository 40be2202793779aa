// Retry delays: capped exponential backoff, with jitter so that many
// retriers that failed together (branches of one crashed coordinator,
// sidecars of one restarted coordinator) do not retry in lockstep.
//
// Deterministic for a given seed, so simulations replay exactly.
#ifndef TWOPC_COMMON_BACKOFF_H_
#define TWOPC_COMMON_BACKOFF_H_

#include <cstdint>

#include "absl/time/time.h"

namespace twopc {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(100);
  // The delay doubles per attempt up to this.
  absl::Duration max = absl::Seconds(10);
  // Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
  // REQUIRES: 0 <= jitter < 1.
  double jitter = 0.2;
};

class Backoff {
 public:
  Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), rng_(seed) {}

  // The delay before retry number `retry` (0 for the first retry):
  // initial * 2^retry, capped at max, then jittered.
  absl::Duration Delay(uint64_t retry);

 private:
  BackoffPolicy policy_;
  uint64_t rng_;
};

// A seed that differs between processes and calls, for callers that need no
// replay.
uint64_t RandomSeed();

}  // namespace twopc

#endif  // TWOPC_COMMON_BACKOFF_H_
