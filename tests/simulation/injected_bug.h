// InjectedBug: test-only protocol bugs that the simulated nodes can be told
// to commit, to prove that the simulator catches them. They live in the
// simulator's model of the runtime around the real protocol code; the
// product code is never changed. kNone is the only mode of the normal run.
#ifndef TWOPC_TESTS_SIMULATION_INJECTED_BUG_H_
#define TWOPC_TESTS_SIMULATION_INJECTED_BUG_H_

#include <optional>
#include <string_view>

namespace twopc::simulation {

enum class InjectedBug {
  kNone,
  // Coordinator: carries on (replies COMMITTED, sends Commit) as soon as the
  // COMMIT record is queued, before the log sync makes it durable.
  kCommitBeforeDurable,
  // Coordinator recovery treats a logged COMMIT record as undecided and
  // aborts the transaction ("decide abort after commit was logged").
  kRecoveryAbortsLoggedCommit,
  // Coordinator answers QueryOutcomes with ABORTED for a live transaction
  // that is not decided yet (presumed abort applied too early).
  kEagerPresumedAbort,
  // Participant store acknowledges writes before they are synced, so a YES
  // is sent before the PREPARED record is durable and a crash forgets it.
  kVoteBeforePreparedSynced,
};

// "none", "commit_before_durable", ...; the names accepted by ParseBug.
const char* BugName(InjectedBug bug);
std::optional<InjectedBug> ParseBug(std::string_view name);

inline constexpr InjectedBug kAllInjectedBugs[] = {
    InjectedBug::kCommitBeforeDurable,
    InjectedBug::kRecoveryAbortsLoggedCommit,
    InjectedBug::kEagerPresumedAbort,
    InjectedBug::kVoteBeforePreparedSynced,
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_INJECTED_BUG_H_
