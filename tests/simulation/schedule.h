// RunSchedule: one deterministic simulated schedule of the two-phase-commit
// protocol, entirely decided by its seed.
//
// The seed draws the shape: 2-5 participants (kv or callback resource), 1-8
// transactions of 1-4 branches with planned votes YES / NO / READ_ONLY,
// one-shot or interactive (Commit in a later step, or never: the deadline
// aborts), a fault profile (message loss, duplication, delay, crash rate)
// and the number of fault steps. Then, step by step, the same generator
// picks what happens next among what can happen: a message delivered (in
// random order), the decision log or a participant's store syncing, a
// resource answering a prepare, a coordinator timer, a participant's
// in-doubt query round, a client call (begin, commit, abort), the clock
// moving, a node crashing or restarting. After the fault steps the heal
// phase restarts every node and turns faults off until everything settles
// (or a step bound is hit: a liveness failure). The invariants
// (invariant_checker.h) are checked after every step.
//
// The same seed gives the same schedule and the same trace, so a failing
// seed replays exactly.
#ifndef TWOPC_TESTS_SIMULATION_SCHEDULE_H_
#define TWOPC_TESTS_SIMULATION_SCHEDULE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/simulation/injected_bug.h"

namespace twopc::simulation {

struct ScheduleOptions {
  uint64_t seed = 1;
  // Test-only protocol bug to inject (kNone for the real check).
  InjectedBug bug = InjectedBug::kNone;
  // Keep the step-by-step trace in the result.
  bool trace = false;
};

struct ScheduleResult {
  // The first invariant violation, "step N: what"; nullopt when all held.
  std::optional<std::string> failure;
  // The drawn shape, one line.
  std::string shape;
  // Steps run (fault and heal phases).
  int steps = 0;
  // Final outcomes of the transactions that began, and crashes injected.
  int committed = 0;
  int aborted = 0;
  int crashes = 0;
  // The trace, when ScheduleOptions::trace.
  std::vector<std::string> trace;
};

ScheduleResult RunSchedule(const ScheduleOptions& options);

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SCHEDULE_H_
