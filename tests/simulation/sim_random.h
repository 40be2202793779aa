// The random choices of a schedule. Every one of them is drawn from the
// schedule's single generator, in a deterministic order, which is what makes
// a seed replay exactly.
#ifndef TWOPC_TESTS_SIMULATION_SIM_RANDOM_H_
#define TWOPC_TESTS_SIMULATION_SIM_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/time/time.h"

namespace twopc::simulation {

// True with `probability` (0 never, 1 always).
inline bool Chance(std::mt19937_64& rng, double probability) {
  return std::uniform_real_distribution<double>(0, 1)(rng) < probability;
}

// Uniform in [0, size). REQUIRES: size > 0.
inline size_t PickIndex(std::mt19937_64& rng, size_t size) {
  return std::uniform_int_distribution<size_t>(0, size - 1)(rng);
}

// One of `options`, uniformly. REQUIRES: !options.empty().
template <typename T>
T PickOne(std::mt19937_64& rng, const std::vector<T>& options) {
  return options[PickIndex(rng, options.size())];
}

// Uniform in [low, high], in microseconds.
inline absl::Duration RandomDuration(std::mt19937_64& rng, absl::Duration low,
                                     absl::Duration high) {
  return absl::Microseconds(std::uniform_int_distribution<int64_t>(
      absl::ToInt64Microseconds(low), absl::ToInt64Microseconds(high))(rng));
}

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_RANDOM_H_
