#include "common/backoff.h"

#include <algorithm>
#include <random>

namespace twopc {

absl::Duration Backoff::Delay(uint64_t retry) {
  absl::Duration delay = policy_.initial;
  for (uint64_t i = 0; i < retry && delay < policy_.max; ++i) delay *= 2;
  delay = std::min(delay, policy_.max);
  // splitmix64 (Steele, Lea and Flood), then 53 bits to [0, 1).
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  z ^= z >> 31;
  const double unit = static_cast<double>(z >> 11) * 0x1.0p-53;
  return delay * (1 - policy_.jitter + 2 * policy_.jitter * unit);
}

uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace twopc
