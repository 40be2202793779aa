// LatencyHistogram: a fixed-size, log-bucketed histogram of durations (HDR
// style), so a benchmark can record every latency without keeping them.
//
// Values are bucketed with 64 buckets per power of two: every reported
// percentile is within 1/64 (1.6 %) of a recorded value; the maximum is
// exact. Memory is fixed (a few tens of KiB) whatever the count.
//
// Thread-compatible: guard a shared histogram externally, or keep one per
// thread and Merge them.
#ifndef TWOPC_TOOLS_BENCH_LATENCY_HISTOGRAM_H_
#define TWOPC_TOOLS_BENCH_LATENCY_HISTOGRAM_H_

#include <array>
#include <cstdint>

#include "absl/time/time.h"

namespace twopc::bench {

class LatencyHistogram {
 public:
  // Records one latency; negative durations count as zero.
  void Record(absl::Duration latency);
  // Adds every value recorded in `other`.
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  // The smallest recorded value v such that at least `quantile` (0..1) of
  // the values are <= v (to the bucket's precision). Zero when empty.
  absl::Duration Percentile(double quantile) const;
  // Exact largest recorded value; zero when empty.
  absl::Duration Max() const { return absl::Nanoseconds(max_nanos_); }

 private:
  static constexpr int kSubBucketBits = 6;
  static constexpr int kSubBuckets = 1 << kSubBucketBits;
  // Enough buckets for any non-negative int64 nanosecond value.
  static constexpr int kBuckets = (64 - kSubBucketBits) * kSubBuckets;

  static int BucketOf(uint64_t nanos);
  // The middle of the range of values that fall into `bucket`.
  static uint64_t MidpointOf(int bucket);

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_nanos_ = 0;
};

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_LATENCY_HISTOGRAM_H_
