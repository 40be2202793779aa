// InvariantChecker: the promises of DESIGN.md section 2 (atomicity,
// durability of the decision) as checks over the simulated nodes, run after
// every step of a schedule, plus the liveness check at the end.
//
// Safety, after every step (CheckSafety):
//   * atomicity: no transaction has a branch committed and another aborted
//     (nor one branch both);
//   * a branch is committed only if a COMMITTED record of its transaction
//     was durable in the decision log before;
//   * a branch is committed only if its participant sent a YES vote for it
//     and the schedule planned YES (a branch that voted NO or never voted
//     never commits); a durable COMMIT record names only votes that the
//     participants actually sent;
//   * the decision never changes: the first outcome a client was told or
//     the coordinator reported (Get) stays the outcome, across crashes, and
//     no branch ends the other way.
// "Committed" and "aborted" are what SimParticipant::View reports (durable
// commit, or prepared state rolled back) and are sticky: once seen, they
// count even after the participant has forgotten the branch.
//
// Liveness, once faults stop (Settled, CheckFinal): the coordinator has no
// unfinished transaction, every participant has every branch final and
// nothing pending, each transaction's outcome is COMMITTED with every
// YES branch committed, or ABORTED with none, and no callback application
// still holds a branch staged that it was never told the outcome of.
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_INVARIANT_CHECKER_H_
#define TWOPC_TESTS_SIMULATION_INVARIANT_CHECKER_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/simulation/sim_coordinator.h"
#include "tests/simulation/sim_decision_log.h"
#include "tests/simulation/sim_network.h"
#include "tests/simulation/sim_participant.h"

namespace twopc::simulation {

// One branch as the schedule planned it.
struct PlannedBranch {
  NodeId participant = 0;
  v1::Vote vote = v1::VOTE_YES;
};

class InvariantChecker {
 public:
  // Pointers must outlive the checker.
  InvariantChecker(
      const SimCoordinator* coordinator, const SimDecisionLog* log,
      const std::vector<std::unique_ptr<SimParticipant>>* participants);

  // A transaction began with these branches.
  void AddTransaction(const std::string& transaction_id,
                      std::vector<PlannedBranch> branches);

  // Observations, as they happen.
  void OnVoteSent(NodeId participant, const std::string& transaction_id,
                  v1::Vote vote);
  void OnClientTold(const std::string& transaction_id, v1::Outcome outcome,
                    const std::string& how);

  // The first safety violation so far, after looking at every node now.
  std::optional<std::string> CheckSafety();
  // Every node up and every transaction final everywhere.
  bool Settled() const;
  // What is not settled, for the failure report.
  std::string DescribeUnsettled() const;
  // The end-of-schedule consistency. REQUIRES: Settled().
  std::optional<std::string> CheckFinal();

 private:
  struct Transaction {
    std::vector<PlannedBranch> branches;
    // Sticky observations at participants.
    std::set<NodeId> committed;
    std::set<NodeId> aborted;
    std::set<std::pair<NodeId, v1::Vote>> votes_sent;
    // The first outcome anyone learnt, and from where.
    std::optional<v1::Outcome> decision;
    std::string decision_source;
  };

  void Fail(std::string violation);
  // Records `outcome` (if decided) and checks it against what was learnt.
  void NoteDecision(const std::string& id, Transaction& txn,
                    v1::Outcome outcome, const std::string& source);
  void ObserveBranches(const std::string& id, Transaction& txn);
  void CheckTransaction(const std::string& id, Transaction& txn);
  void CheckCommitRecord(const std::string& id, const Transaction& txn);

  const SimCoordinator* const coordinator_;
  const SimDecisionLog* const log_;
  const std::vector<std::unique_ptr<SimParticipant>>* const participants_;
  std::map<std::string, Transaction> transactions_;
  std::optional<std::string> violation_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_INVARIANT_CHECKER_H_
