#include "tools/bench/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace twopc::bench {

// Values below kSubBuckets have a bucket each. Above, a value whose highest
// set bit is b (b >= kSubBucketBits) lands in octave b - kSubBucketBits + 1,
// split into kSubBuckets equal buckets by the kSubBucketBits bits after b.
int LatencyHistogram::BucketOf(uint64_t nanos) {
  if (nanos < kSubBuckets) return static_cast<int>(nanos);
  const int shift = std::bit_width(nanos) - 1 - kSubBucketBits;
  const int sub_bucket = static_cast<int>(nanos >> shift) - kSubBuckets;
  return ((shift + 1) << kSubBucketBits) + sub_bucket;
}

uint64_t LatencyHistogram::MidpointOf(int bucket) {
  const int octave = bucket >> kSubBucketBits;
  if (octave == 0) return bucket;
  const int shift = octave - 1;
  const uint64_t lowest =
      static_cast<uint64_t>((bucket & (kSubBuckets - 1)) + kSubBuckets)
      << shift;
  return lowest + ((uint64_t{1} << shift) >> 1);
}

void LatencyHistogram::Record(absl::Duration latency) {
  const uint64_t nanos = static_cast<uint64_t>(
      std::max<int64_t>(0, absl::ToInt64Nanoseconds(latency)));
  ++counts_[BucketOf(nanos)];
  ++count_;
  max_nanos_ = std::max(max_nanos_, nanos);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_nanos_ = std::max(max_nanos_, other.max_nanos_);
}

absl::Duration LatencyHistogram::Percentile(double quantile) const {
  if (count_ == 0) return absl::ZeroDuration();
  const uint64_t rank = std::max<uint64_t>(
      1,
      static_cast<uint64_t>(std::ceil(quantile * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return absl::Nanoseconds(std::min(MidpointOf(i), max_nanos_));
    }
  }
  return Max();
}

}  // namespace twopc::bench
