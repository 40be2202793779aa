#include "tests/simulation/injected_bug.h"

namespace twopc::simulation {

const char* BugName(InjectedBug bug) {
  switch (bug) {
    case InjectedBug::kNone:
      return "none";
    case InjectedBug::kCommitBeforeDurable:
      return "commit_before_durable";
    case InjectedBug::kRecoveryAbortsLoggedCommit:
      return "recovery_aborts_logged_commit";
    case InjectedBug::kEagerPresumedAbort:
      return "eager_presumed_abort";
    case InjectedBug::kVoteBeforePreparedSynced:
      return "vote_before_prepared_synced";
  }
  return "unknown";
}

std::optional<InjectedBug> ParseBug(std::string_view name) {
  if (name == BugName(InjectedBug::kNone)) return InjectedBug::kNone;
  for (InjectedBug bug : kAllInjectedBugs) {
    if (name == BugName(bug)) return bug;
  }
  return std::nullopt;
}

}  // namespace twopc::simulation
