// Deterministic simulation of the two-phase-commit protocol core: the real
// TransactionMachine and BranchManager under random message loss,
// duplication, reordering and delay, crashes and restarts, all driven by
// one seed per schedule (see schedule.h). Invariants are checked after
// every step.
//
// Environment:
//   TWOPC_SIM_SEEDS=N        schedules in RandomSchedules (default below);
//                            the long run is e.g. TWOPC_SIM_SEEDS=200000
//   TWOPC_SIM_FIRST_SEED=S   first seed of the run (default 1)
//   TWOPC_SIM_SEED=S         replay only seed S and print its step trace
//   TWOPC_SIM_BUG=NAME       inject a test-only bug (injected_bug.h) into
//                            RandomSchedules, to see how it is caught
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/simulation/injected_bug.h"
#include "tests/simulation/schedule.h"

namespace twopc::simulation {

// Names InjectedBugTest's parameter in test listings (found by ADL).
void PrintTo(InjectedBug bug, std::ostream* out) { *out << BugName(bug); }

namespace {

// About 20 s of CPU: 30-75 s of wall time on this shared 2-core machine.
constexpr uint64_t kDefaultSeeds = 25'000;
// Each injected bug must be caught within this many seeds.
constexpr uint64_t kBugSearchSeeds = 2000;
// Trace lines printed before a failure.
constexpr size_t kTraceTail = 80;

std::optional<uint64_t> EnvNumber(const char* name) {
  const char* text = std::getenv(name);
  uint64_t value = 0;
  if (text == nullptr) return std::nullopt;
  if (!absl::SimpleAtoi(text, &value)) {
    ADD_FAILURE() << name << " must be a number, got '" << text << "'";
    return std::nullopt;
  }
  return value;
}

InjectedBug EnvBug() {
  const char* text = std::getenv("TWOPC_SIM_BUG");
  if (text == nullptr) return InjectedBug::kNone;
  std::optional<InjectedBug> bug = ParseBug(text);
  if (!bug.has_value()) {
    ADD_FAILURE() << "unknown TWOPC_SIM_BUG '" << text << "'";
    return InjectedBug::kNone;
  }
  return *bug;
}

std::string ReplayCommand(uint64_t seed, InjectedBug bug) {
  std::error_code error;
  const std::filesystem::path binary =
      std::filesystem::read_symlink("/proc/self/exe", error);
  return absl::StrCat(bug == InjectedBug::kNone
                          ? ""
                          : absl::StrCat("TWOPC_SIM_BUG=", BugName(bug), " "),
                      "TWOPC_SIM_SEED=", seed, " ",
                      error ? "simulation_test" : binary.string(),
                      " --gtest_filter=Simulation.RandomSchedules");
}

std::string Tail(const std::vector<std::string>& lines, size_t count) {
  const size_t first = lines.size() > count ? lines.size() - count : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(first),
                       lines.end(), "\n");
}

// Reports a failed schedule: seed, violation, replay command, and the end
// of its trace from a traced re-run (which must fail the same way).
void ReportFailure(uint64_t seed, InjectedBug bug,
                   const ScheduleResult& result) {
  const ScheduleResult traced =
      RunSchedule({.seed = seed, .bug = bug, .trace = true});
  ADD_FAILURE() << "seed " << seed << " failed: " << *result.failure
                << "\n  shape: " << result.shape
                << "\n  replay: " << ReplayCommand(seed, bug) << "\n  last "
                << kTraceTail << " trace lines:\n"
                << Tail(traced.trace, kTraceTail);
  EXPECT_EQ(traced.failure, result.failure)
      << "seed " << seed << " did not reproduce with tracing on";
}

void ReplayOne(uint64_t seed, InjectedBug bug) {
  const ScheduleResult result =
      RunSchedule({.seed = seed, .bug = bug, .trace = true});
  std::cout << absl::StrJoin(result.trace, "\n") << "\n";
  EXPECT_EQ(result.failure, std::nullopt)
      << "seed " << seed << " failed: " << *result.failure;
}

TEST(Simulation, RandomSchedules) {
  const InjectedBug bug = EnvBug();
  if (std::optional<uint64_t> seed = EnvNumber("TWOPC_SIM_SEED")) {
    ReplayOne(*seed, bug);
    return;
  }
  const uint64_t first = EnvNumber("TWOPC_SIM_FIRST_SEED").value_or(1);
  const uint64_t count = EnvNumber("TWOPC_SIM_SEEDS").value_or(kDefaultSeeds);
  const auto start = std::chrono::steady_clock::now();
  uint64_t steps = 0;
  uint64_t committed = 0;
  uint64_t aborted = 0;
  uint64_t crashes = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    const ScheduleResult result = RunSchedule({.seed = seed, .bug = bug});
    if (result.failure.has_value()) {
      ReportFailure(seed, bug, result);
      return;
    }
    steps += result.steps;
    committed += result.committed;
    aborted += result.aborted;
    crashes += result.crashes;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::cout << count << " schedules (seeds " << first << ".."
            << first + count - 1 << ") in " << seconds << " s: " << steps
            << " steps, " << committed << " transactions committed, " << aborted
            << " aborted, " << crashes << " crashes\n";
  // A run where nothing commits (or nothing aborts) checks little.
  EXPECT_GT(committed, 0u);
  EXPECT_GT(aborted, 0u);
}

TEST(Simulation, SameSeedSameTrace) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const ScheduleResult first = RunSchedule({.seed = seed, .trace = true});
    const ScheduleResult second = RunSchedule({.seed = seed, .trace = true});
    ASSERT_FALSE(first.trace.empty());
    EXPECT_EQ(first.trace, second.trace) << "seed " << seed;
    EXPECT_EQ(first.steps, second.steps) << "seed " << seed;
  }
}

// The simulator must catch each injected protocol bug within a few seeds:
// otherwise its invariants or its faults are too weak.
class InjectedBugTest : public ::testing::TestWithParam<InjectedBug> {};

TEST_P(InjectedBugTest, IsCaught) {
  for (uint64_t seed = 1; seed <= kBugSearchSeeds; ++seed) {
    const ScheduleResult result =
        RunSchedule({.seed = seed, .bug = GetParam()});
    if (result.failure.has_value()) {
      std::cout << BugName(GetParam()) << " caught by seed " << seed << ": "
                << *result.failure << "\n";
      return;
    }
  }
  ADD_FAILURE() << BugName(GetParam()) << " survived " << kBugSearchSeeds
                << " schedules";
}

INSTANTIATE_TEST_SUITE_P(Simulation, InjectedBugTest,
                         ::testing::ValuesIn(kAllInjectedBugs),
                         [](const ::testing::TestParamInfo<InjectedBug>& info) {
                           return BugName(info.param);
                         });

}  // namespace
}  // namespace twopc::simulation
