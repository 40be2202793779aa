#include "tests/simulation/invariant_checker.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace twopc::simulation {
namespace {

std::string Nodes(const std::set<NodeId>& nodes) {
  return absl::StrJoin(nodes, ",", [](std::string* out, NodeId node) {
    out->append(NodeName(node));
  });
}

}  // namespace

InvariantChecker::InvariantChecker(
    const SimCoordinator* coordinator, const SimDecisionLog* log,
    const std::vector<std::unique_ptr<SimParticipant>>* participants)
    : coordinator_(coordinator), log_(log), participants_(participants) {}

void InvariantChecker::AddTransaction(const std::string& transaction_id,
                                      std::vector<PlannedBranch> branches) {
  transactions_[transaction_id].branches = std::move(branches);
}

void InvariantChecker::Fail(std::string violation) {
  if (!violation_.has_value()) violation_ = std::move(violation);
}

void InvariantChecker::OnVoteSent(NodeId participant,
                                  const std::string& transaction_id,
                                  v1::Vote vote) {
  transactions_[transaction_id].votes_sent.insert({participant, vote});
}

void InvariantChecker::OnClientTold(const std::string& transaction_id,
                                    v1::Outcome outcome,
                                    const std::string& how) {
  NoteDecision(transaction_id, transactions_[transaction_id], outcome,
               absl::StrCat("client told by ", how));
}

void InvariantChecker::NoteDecision(const std::string& id, Transaction& txn,
                                    v1::Outcome outcome,
                                    const std::string& source) {
  if (outcome == v1::OUTCOME_PENDING) return;
  if (!txn.decision.has_value()) {
    txn.decision = outcome;
    txn.decision_source = source;
  } else if (*txn.decision != outcome) {
    Fail(absl::StrCat("decision of ", id,
                      " changed: ", v1::Outcome_Name(*txn.decision), " (",
                      txn.decision_source, "), then ",
                      v1::Outcome_Name(outcome), " (", source, ")"));
  }
}

std::optional<std::string> InvariantChecker::CheckSafety() {
  for (auto& [id, txn] : transactions_) {
    ObserveBranches(id, txn);
    CheckTransaction(id, txn);
  }
  return violation_;
}

void InvariantChecker::ObserveBranches(const std::string& id,
                                       Transaction& txn) {
  for (const PlannedBranch& branch : txn.branches) {
    const SimParticipant::BranchView view =
        (*participants_)[branch.participant]->View(id);
    if (view.committed) txn.committed.insert(branch.participant);
    if (view.aborted) txn.aborted.insert(branch.participant);
  }
}

void InvariantChecker::CheckTransaction(const std::string& id,
                                        Transaction& txn) {
  if (!txn.committed.empty() && !txn.aborted.empty()) {
    Fail(absl::StrCat("atomicity: ", id, " committed at ", Nodes(txn.committed),
                      " and aborted at ", Nodes(txn.aborted)));
  }
  if (!txn.committed.empty() && !log_->CommitWasDurable(id)) {
    Fail(absl::StrCat(id, " committed at ", Nodes(txn.committed),
                      " but no COMMIT record was ever durable"));
  }
  for (const PlannedBranch& branch : txn.branches) {
    if (!txn.committed.contains(branch.participant)) continue;
    if (branch.vote != v1::VOTE_YES) {
      Fail(absl::StrCat(id, " committed at ", NodeName(branch.participant),
                        " although its planned vote is ",
                        v1::Vote_Name(branch.vote)));
    }
    if (!txn.votes_sent.contains({branch.participant, v1::VOTE_YES})) {
      Fail(absl::StrCat(id, " committed at ", NodeName(branch.participant),
                        ", which never sent a YES vote"));
    }
  }
  CheckCommitRecord(id, txn);
  if (coordinator_->up()) {
    absl::StatusOr<v1::Outcome> outcome = coordinator_->Lookup(id);
    if (!outcome.ok()) {
      Fail(absl::StrCat("coordinator lost ", id, ": ",
                        outcome.status().ToString()));
    } else {
      NoteDecision(id, txn, *outcome, "coordinator Get");
    }
  }
  if (txn.decision == v1::OUTCOME_COMMITTED && !txn.aborted.empty()) {
    Fail(absl::StrCat(id, " is COMMITTED (", txn.decision_source,
                      ") but aborted at ", Nodes(txn.aborted)));
  }
  if (txn.decision == v1::OUTCOME_ABORTED && !txn.committed.empty()) {
    Fail(absl::StrCat(id, " is ABORTED (", txn.decision_source,
                      ") but committed at ", Nodes(txn.committed)));
  }
}

void InvariantChecker::CheckCommitRecord(const std::string& id,
                                         const Transaction& txn) {
  const internal::TransactionRecord* record = log_->Read(id);
  if (record == nullptr || record->outcome() != v1::OUTCOME_COMMITTED) return;
  for (const internal::BranchRecord& branch : record->branches()) {
    const std::optional<NodeId> node = ParticipantNode(branch.participant_id());
    const bool sent =
        node.has_value() && txn.votes_sent.contains({*node, branch.vote()});
    if ((branch.vote() != v1::VOTE_YES &&
         branch.vote() != v1::VOTE_READ_ONLY) ||
        !sent) {
      Fail(absl::StrCat("durable COMMIT record of ", id, " has vote ",
                        v1::Vote_Name(branch.vote()), " for ",
                        branch.participant_id(),
                        sent ? "" : ", which that participant never sent"));
    }
  }
}

bool InvariantChecker::Settled() const {
  if (!coordinator_->up() || coordinator_->live_transactions() > 0) {
    return false;
  }
  for (const auto& participant : *participants_) {
    if (!participant->up() || !participant->Idle()) return false;
  }
  for (const auto& [id, txn] : transactions_) {
    for (const PlannedBranch& branch : txn.branches) {
      if (!(*participants_)[branch.participant]->Finished(id)) return false;
    }
  }
  return true;
}

std::string InvariantChecker::DescribeUnsettled() const {
  std::string text =
      coordinator_->up()
          ? absl::StrCat("coordinator has ", coordinator_->live_transactions(),
                         " unfinished transactions")
          : "coordinator down";
  for (const auto& [id, txn] : transactions_) {
    for (const PlannedBranch& branch : txn.branches) {
      const SimParticipant& participant = *(*participants_)[branch.participant];
      if (!participant.up()) {
        absl::StrAppend(&text, "; ", NodeName(branch.participant), " down");
      } else if (!participant.Finished(id)) {
        absl::StrAppend(&text, "; ", id, " at ", NodeName(branch.participant),
                        " is ", participant.StateOf(id));
      }
    }
  }
  return text;
}

std::optional<std::string> InvariantChecker::CheckFinal() {
  // CheckSafety after the last step noted every outcome the coordinator
  // reports (Get).
  for (const auto& [id, txn] : transactions_) {
    if (!txn.decision.has_value()) {
      Fail(absl::StrCat(id, " has no outcome after healing"));
    }
    for (const PlannedBranch& branch : txn.branches) {
      if ((*participants_)[branch.participant]->View(id).left_staged) {
        Fail(absl::StrCat(id, " is still staged in the application at ",
                          NodeName(branch.participant),
                          ": it was never told the outcome"));
      }
    }
    if (txn.decision != v1::OUTCOME_COMMITTED) continue;
    for (const PlannedBranch& branch : txn.branches) {
      if (branch.vote == v1::VOTE_YES &&
          !txn.committed.contains(branch.participant)) {
        Fail(absl::StrCat(id, " is COMMITTED but its branch at ",
                          NodeName(branch.participant), " never committed"));
      }
    }
  }
  return violation_;
}

}  // namespace twopc::simulation
