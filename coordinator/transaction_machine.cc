#include "coordinator/transaction_machine.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace twopc::coordinator {
namespace {

using internal::BranchRecord;
using v1::TransactionState;

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

bool HoldsPreparedState(const BranchRecord& branch) {
  // A branch that voted NO or READ_ONLY holds nothing; one that voted YES or
  // has not answered yet may hold prepared state.
  return branch.vote() == v1::VOTE_YES || branch.vote() == v1::VOTE_UNSPECIFIED;
}

}  // namespace

TransactionMachine::TransactionMachine(internal::TransactionRecord record,
                                       RetryPolicy policy, uint64_t seed)
    : record_(std::move(record)),
      policy_(policy),
      backoff_({.initial = policy.initial_backoff,
                .max = policy.max_backoff,
                .jitter = policy.jitter},
               seed) {
  if (record_.state() == v1::TRANSACTION_STATE_UNSPECIFIED) {
    record_.set_state(v1::TRANSACTION_STATE_ACTIVE);
  }
}

TransactionMachine TransactionMachine::FromLog(
    internal::TransactionRecord record, RetryPolicy policy, uint64_t seed) {
  return TransactionMachine(std::move(record), policy, seed);
}

bool TransactionMachine::decided() const {
  return record_.outcome() != v1::OUTCOME_PENDING && !commit_logging_;
}

bool TransactionMachine::finished() const {
  return record_.state() == v1::TRANSACTION_STATE_COMMITTED ||
         record_.state() == v1::TRANSACTION_STATE_ABORTED;
}

BranchRecord* TransactionMachine::FindBranch(const std::string& participant_id) {
  for (BranchRecord& branch : *record_.mutable_branches()) {
    if (branch.participant_id() == participant_id) return &branch;
  }
  return nullptr;
}

Actions TransactionMachine::Open(absl::Time now) {
  (void)now;
  return {action::WakeAt{absl::FromUnixMicros(record_.deadline_us())}};
}

void TransactionMachine::AddBranch(const std::string& participant_id) {
  record_.add_branches()->set_participant_id(participant_id);
}

void TransactionMachine::AddMessage(v1::Message message) {
  *record_.add_messages() = std::move(message);
}

void TransactionMachine::SetMessagePositions(
    std::vector<v1::MessagePosition> positions) {
  record_.clear_messages();
  record_.clear_message_positions();
  for (v1::MessagePosition& position : positions) {
    *record_.add_message_positions() = std::move(position);
  }
}

Actions TransactionMachine::Recover(absl::Time now) {
  switch (record_.state()) {
    case v1::TRANSACTION_STATE_ACTIVE:
    case v1::TRANSACTION_STATE_PREPARING:
      return DecideAbort(kRestartAbortCode, "", kRestartAbortReason, now);
    case v1::TRANSACTION_STATE_COMMITTING: {
      // The record is on disk, so the decision is durable.
      Actions actions;
      for (BranchRecord& branch : *record_.mutable_branches()) {
        branch.set_attempts(0);
      }
      SendPhase2(now, &actions);
      MaybeFinish(now, &actions);
      return actions;
    }
    case v1::TRANSACTION_STATE_ABORTING:
      // Older records only: aborts need no acknowledgement.
      return DecideAbort(record_.abort_code(), record_.abort_participant_id(),
                         record_.abort_reason(), now);
    default:
      return {};
  }
}

Actions TransactionMachine::Commit(absl::Time now) {
  Actions actions;
  record_.set_state(v1::TRANSACTION_STATE_PREPARING);
  // Nothing is written (presumed abort): a crash before the decision leaves
  // no record, and a participant holding a prepared branch of an earlier
  // epoch asks for its outcome as soon as it sees the next epoch.
  for (const BranchRecord& branch : record_.branches()) {
    actions.push_back(action::SendPrepare{branch.participant_id()});
  }
  actions.push_back(action::WakeAt{absl::FromUnixMicros(record_.deadline_us())});
  (void)now;
  return actions;
}

absl::Status TransactionMachine::Abort(const std::string& reason,
                                       absl::Time now, Actions* actions) {
  if (record_.outcome() == v1::OUTCOME_ABORTED) return absl::OkStatus();
  if (commit_logging_) {
    return absl::UnavailableError(absl::StrCat(
        "transaction ", record_.transaction_id(),
        " is being decided COMMITTED right now; ask for the outcome with Get"));
  }
  if (record_.outcome() == v1::OUTCOME_COMMITTED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", record_.transaction_id(),
        " is already decided COMMITTED and cannot be aborted"));
  }
  *actions = DecideAbort("CLIENT_ABORT", "", reason, now);
  return absl::OkStatus();
}

Actions TransactionMachine::OnVote(const std::string& participant_id,
                                   v1::Vote vote, const std::string& reason,
                                   absl::Time now) {
  if (vote != v1::VOTE_YES && vote != v1::VOTE_NO &&
      vote != v1::VOTE_READ_ONLY) {
    // Not a vote the protocol knows: the participant is broken. Treated as
    // a failed delivery (phase 1 aborts, naming it).
    return OnDeliveryError(participant_id,
                           absl::StrCat("answered with an invalid vote (",
                                        static_cast<int>(vote), ")"),
                           now);
  }
  BranchRecord* branch = FindBranch(participant_id);
  if (branch == nullptr || branch->vote() != v1::VOTE_UNSPECIFIED) return {};
  branch->set_vote(vote);
  branch->set_vote_reason(reason);
  branch->set_vote_time_us(Micros(now));
  if (vote != v1::VOTE_YES) branch->set_finished(true);

  if (record_.outcome() == v1::OUTCOME_ABORTED) {
    // A late YES: make sure its prepared state is released.
    if (vote == v1::VOTE_YES) return {action::SendAbort{participant_id}};
    return {};
  }
  if (record_.state() != v1::TRANSACTION_STATE_PREPARING || commit_logging_) {
    return {};
  }
  if (vote == v1::VOTE_NO) {
    return DecideAbort(
        "VOTED_NO", participant_id,
        absl::StrCat("participant ", participant_id, " voted NO: ",
                     reason.empty() ? "no reason given" : reason),
        now);
  }
  Actions actions;
  MaybeDecideCommit(now, &actions);
  return actions;
}

Actions TransactionMachine::OnDeliveryError(const std::string& participant_id,
                                            const std::string& error,
                                            absl::Time now) {
  BranchRecord* branch = FindBranch(participant_id);
  if (branch == nullptr) return {};
  branch->set_last_error(error);
  if (record_.state() == v1::TRANSACTION_STATE_PREPARING &&
      branch->vote() == v1::VOTE_UNSPECIFIED && !commit_logging_) {
    // The branch stays unvoted: it may have prepared before the failure, so
    // DecideAbort sends it an abort.
    return DecideAbort(
        "PARTICIPANT_UNAVAILABLE", participant_id,
        absl::StrCat("participant ", participant_id,
                     " could not prepare: ", error),
        now);
  }
  // Phase 2: the retry timer delivers again.
  return {};
}

void TransactionMachine::MaybeDecideCommit(absl::Time now, Actions* actions) {
  for (const BranchRecord& branch : record_.branches()) {
    if (branch.vote() != v1::VOTE_YES && branch.vote() != v1::VOTE_READ_ONLY) {
      return;
    }
  }
  // Every branch is prepared: the decision is commit once it is durable.
  commit_logging_ = true;
  record_.set_state(v1::TRANSACTION_STATE_COMMITTING);
  record_.set_outcome(v1::OUTCOME_COMMITTED);
  record_.set_decide_time_us(Micros(now));
  actions->push_back(action::Persist{.sync = true});
}

Actions TransactionMachine::OnPersisted(absl::Time now) {
  if (!commit_logging_) return {};
  commit_logging_ = false;
  Actions actions;
  actions.push_back(action::Reply{});
  SendPhase2(now, &actions);
  MaybeFinish(now, &actions);
  return actions;
}

void TransactionMachine::SendPhase2(absl::Time now, Actions* actions) {
  uint32_t max_attempts = 0;
  for (BranchRecord& branch : *record_.mutable_branches()) {
    if (branch.finished()) continue;
    branch.set_attempts(branch.attempts() + 1);
    branch.set_last_attempt_time_us(Micros(now));
    max_attempts = std::max(max_attempts, branch.attempts());
    actions->push_back(action::SendCommit{branch.participant_id()});
  }
  if (max_attempts == 0) return;
  if (!record_.parked() && max_attempts >= policy_.park_after_attempts) {
    record_.set_parked(true);
    actions->push_back(action::Persist{.sync = false});
  }
  const absl::Duration delay =
      record_.parked() ? policy_.parked_interval
                       : backoff_.Delay(max_attempts - 1);
  actions->push_back(action::WakeAt{now + delay});
}

Actions TransactionMachine::OnAck(const std::string& participant_id,
                                  bool committed, absl::Time now) {
  BranchRecord* branch = FindBranch(participant_id);
  if (branch == nullptr || branch->finished() ||
      record_.state() != v1::TRANSACTION_STATE_COMMITTING || commit_logging_) {
    return {};
  }
  Actions actions;
  if (!committed) {
    // The participant lost a YES vote's prepared state: an operator must
    // look. Keep the branch unfinished and stop the fast retries.
    branch->set_last_error(
        "participant reports the branch ABORTED although it voted YES and "
        "commit was decided; atomicity is at risk, operator action needed");
    if (!record_.parked()) {
      record_.set_parked(true);
      actions.push_back(action::Persist{.sync = false});
    }
    return actions;
  }
  branch->set_finished(true);
  branch->set_ack_time_us(Micros(now));
  branch->clear_last_error();
  MaybeFinish(now, &actions);
  return actions;
}

void TransactionMachine::MaybeFinish(absl::Time now, Actions* actions) {
  if (record_.state() != v1::TRANSACTION_STATE_COMMITTING) return;
  for (const BranchRecord& branch : record_.branches()) {
    if (!branch.finished()) return;
  }
  record_.set_state(v1::TRANSACTION_STATE_COMMITTED);
  record_.set_finish_time_us(Micros(now));
  record_.set_parked(false);
  actions->push_back(action::Persist{.sync = false});
  actions->push_back(action::Done{});
}

Actions TransactionMachine::OnTimer(absl::Time now) {
  switch (record_.state()) {
    case v1::TRANSACTION_STATE_ACTIVE:
    case v1::TRANSACTION_STATE_PREPARING: {
      if (commit_logging_ ||
          now < absl::FromUnixMicros(record_.deadline_us())) {
        return {};
      }
      std::vector<std::string> silent;
      for (const BranchRecord& branch : record_.branches()) {
        if (branch.vote() == v1::VOTE_UNSPECIFIED) {
          silent.push_back(branch.participant_id());
        }
      }
      return DecideAbort(
          "DEADLINE_PASSED", silent.empty() ? "" : silent.front(),
          record_.state() == v1::TRANSACTION_STATE_ACTIVE
              ? std::string("deadline passed before Commit was called")
              : absl::StrCat("deadline passed before every branch voted; no "
                             "vote from ",
                             absl::StrJoin(silent, ", ")),
          now);
    }
    case v1::TRANSACTION_STATE_COMMITTING: {
      if (commit_logging_) return {};
      Actions actions;
      SendPhase2(now, &actions);
      return actions;
    }
    default:
      return {};
  }
}

absl::Status TransactionMachine::CheckForce(v1::Outcome outcome) const {
  const std::string& id = record_.transaction_id();
  if (commit_logging_) {
    return absl::UnavailableError(absl::StrCat(
        "transaction ", id,
        " is being decided COMMITTED right now; look again in a moment"));
  }
  if (record_.outcome() != v1::OUTCOME_PENDING) {
    if (record_.outcome() == outcome) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", id, " is decided ",
        record_.outcome() == v1::OUTCOME_COMMITTED ? "COMMITTED" : "ABORTED",
        " in the decision log; a decided transaction can never be forced the "
        "other way",
        record_.outcome() == v1::OUTCOME_COMMITTED
            ? " (finish it with force-commit or retry)"
            : ""));
  }
  if (outcome == v1::OUTCOME_ABORTED) return absl::OkStatus();
  std::vector<std::string> unprepared;
  for (const BranchRecord& branch : record_.branches()) {
    if (branch.vote() != v1::VOTE_YES && branch.vote() != v1::VOTE_READ_ONLY) {
      unprepared.push_back(absl::StrCat(
          branch.participant_id(), " (",
          branch.vote() == v1::VOTE_UNSPECIFIED
              ? std::string("no vote yet")
              : v1::Vote_Name(branch.vote()),
          ")"));
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "transaction ", id,
      " cannot be forced to commit: not every branch is prepared: ",
      absl::StrJoin(unprepared, ", "), "; force-abort it instead"));
}

Actions TransactionMachine::Force(v1::Outcome outcome,
                                  const std::string& reason, absl::Time now) {
  if (outcome == v1::OUTCOME_COMMITTED) {
    return record_.state() == v1::TRANSACTION_STATE_COMMITTING ? RetryNow(now)
                                                               : Actions{};
  }
  if (record_.outcome() == v1::OUTCOME_ABORTED) return {};
  record_.set_forced(true);
  return DecideAbort("FORCED_ABORT", "",
                     absl::StrCat("forced to abort by an operator: ", reason),
                     now);
}

absl::Status TransactionMachine::CheckPhase2Pending() const {
  if (record_.state() == v1::TRANSACTION_STATE_COMMITTING && !commit_logging_) {
    return absl::OkStatus();
  }
  if (finished()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transaction ", record_.transaction_id(), " is already ",
        record_.state() == v1::TRANSACTION_STATE_COMMITTED ? "COMMITTED"
                                                           : "ABORTED",
        ": nothing left to deliver"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "transaction ", record_.transaction_id(),
      " is not decided yet, so phase 2 has not started; decide it with "
      "force-abort (or wait for its votes)"));
}

Actions TransactionMachine::RetryNow(absl::Time now) {
  Actions actions;
  SendPhase2(now, &actions);
  return actions;
}

Actions TransactionMachine::SetParked(bool parked, absl::Time now) {
  if (record_.parked() == parked) return {};
  record_.set_parked(parked);
  Actions actions = {action::Persist{.sync = false}};
  if (parked) {
    actions.push_back(action::WakeAt{now + policy_.parked_interval});
    return actions;
  }
  for (BranchRecord& branch : *record_.mutable_branches()) {
    if (!branch.finished()) branch.set_attempts(0);
  }
  SendPhase2(now, &actions);
  return actions;
}

Actions TransactionMachine::DecideAbort(const std::string& code,
                                        const std::string& participant,
                                        const std::string& reason,
                                        absl::Time now) {
  const bool prepared = record_.state() != v1::TRANSACTION_STATE_ACTIVE;
  record_.set_state(v1::TRANSACTION_STATE_ABORTED);
  record_.set_outcome(v1::OUTCOME_ABORTED);
  record_.set_abort_reason(reason);
  record_.set_abort_code(code);
  record_.set_abort_participant_id(participant);
  record_.set_decide_time_us(Micros(now));
  record_.set_finish_time_us(Micros(now));
  Actions actions;
  actions.push_back(action::Reply{});
  if (prepared) {
    for (const BranchRecord& branch : record_.branches()) {
      if (HoldsPreparedState(branch)) {
        actions.push_back(action::SendAbort{branch.participant_id()});
      }
    }
  }
  // Unforced: presumed abort makes a lost abort record harmless.
  actions.push_back(action::Persist{.sync = false});
  actions.push_back(action::Done{});
  return actions;
}

}  // namespace twopc::coordinator
