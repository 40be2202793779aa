// The cost of a failure point (common/failpoint.h): disabled, i.e. nothing
// armed, as always in production; and, for comparison, while another point
// is armed (every point then takes the registry's lock).
//
//   build-faults/tests/faults/failpoint_benchmark
#include "benchmark/benchmark.h"
#include "common/failpoint.h"

namespace twopc::failpoint {
namespace {

// The loop alone, for reference.
void BM_NoPoint(benchmark::State& state) {
  int64_t fired = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(fired);
  }
}
BENCHMARK(BM_NoPoint);

void BM_DisabledPoint(benchmark::State& state) {
  DisarmAll();
  int64_t fired = 0;
  for (auto _ : state) {
    fired += TWOPC_FAILPOINT("storage.sync_error");
    benchmark::DoNotOptimize(fired);
  }
}
BENCHMARK(BM_DisabledPoint);

void BM_PointWhileAnotherIsArmed(benchmark::State& state) {
  if (!ArmFromSpec("storage.disk_full=error@1000000000000").ok()) {
    state.SkipWithError("cannot arm");
  }
  int64_t fired = 0;
  for (auto _ : state) {
    fired += TWOPC_FAILPOINT("storage.sync_error");
    benchmark::DoNotOptimize(fired);
  }
  DisarmAll();
}
BENCHMARK(BM_PointWhileAnotherIsArmed);

}  // namespace
}  // namespace twopc::failpoint
