#include "tests/simulation/sim_coordinator.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/transaction_id.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::simulation {
namespace {

using coordinator::Action;
using coordinator::Actions;
using coordinator::TransactionMachine;
namespace action = coordinator::action;

bool IsFinal(v1::TransactionState state) {
  return state == v1::TRANSACTION_STATE_COMMITTED ||
         state == v1::TRANSACTION_STATE_ABORTED;
}

uint64_t MachineSeed(const std::string& transaction_id) {
  return std::hash<std::string>()(transaction_id);
}

}  // namespace

SimCoordinator::SimCoordinator(SimulatedClock* clock, SimNetwork* network,
                               SimDecisionLog* log, Trace* trace,
                               coordinator::RetryPolicy retry, InjectedBug bug)
    : clock_(clock),
      network_(network),
      log_(log),
      trace_(trace),
      retry_(retry),
      bug_(bug) {}

void SimCoordinator::Start() {
  up_ = true;
  ++incarnation_;
  epoch_ = log_->TakeNextEpoch();
  next_sequence_ = 1;
  network_->Restart(kCoordinator);
  trace_->Note("  coordinator starts, epoch ", epoch_);
  std::vector<internal::TransactionRecord> unfinished;
  for (const auto& [id, record] : log_->durable()) {
    if (!IsFinal(record.state())) unfinished.push_back(RecoveredRecord(record));
  }
  for (internal::TransactionRecord& record : unfinished) {
    const std::string id = record.transaction_id();
    trace_->Note("  coordinator recovers ", id, " (",
                 v1::TransactionState_Name(record.state()), ")");
    auto entry = std::make_unique<Entry>(TransactionMachine::FromLog(
        std::move(record), retry_, MachineSeed(id)));
    Entry* raw = entry.get();
    live_.emplace(id, std::move(entry));
    Apply(id, raw->machine.Recover(clock_->Now()));
  }
}

internal::TransactionRecord SimCoordinator::RecoveredRecord(
    internal::TransactionRecord record) const {
  if (bug_ == InjectedBug::kRecoveryAbortsLoggedCommit &&
      record.state() == v1::TRANSACTION_STATE_COMMITTING) {
    record.set_state(v1::TRANSACTION_STATE_PREPARING);
    record.set_outcome(v1::OUTCOME_PENDING);
  }
  return record;
}

void SimCoordinator::Crash() {
  up_ = false;
  live_.clear();
  finished_.clear();
  timers_.clear();
  log_->Crash();
  network_->Crash(kCoordinator, clock_->Now());
}

std::string SimCoordinator::Begin(const std::vector<v1::Branch>& branches,
                                  absl::Duration timeout) {
  const absl::Time now = clock_->Now();
  const std::string id =
      TransactionId{.epoch = epoch_, .sequence = next_sequence_++}.ToString();
  internal::TransactionRecord record;
  record.set_transaction_id(id);
  record.set_epoch(epoch_);
  record.set_create_time_us(absl::ToUnixMicros(now));
  record.set_deadline_us(absl::ToUnixMicros(now + timeout));
  auto entry = std::make_unique<Entry>(
      TransactionMachine(std::move(record), retry_, MachineSeed(id)));
  for (const v1::Branch& branch : branches) {
    entry->machine.AddBranch(branch.participant_id());
    entry->work[branch.participant_id()] = branch;
  }
  Entry* raw = entry.get();
  live_.emplace(id, std::move(entry));
  trace_->Note("  coordinator begins ", id);
  Apply(id, raw->machine.Open(now));
  return id;
}

void SimCoordinator::Commit(const std::string& transaction_id, Told told) {
  Entry* entry = FindLive(transaction_id);
  if (entry == nullptr) {
    // A retry after the transaction finished (or after a crash).
    absl::StatusOr<v1::Outcome> outcome = Lookup(transaction_id);
    if (outcome.ok() && *outcome != v1::OUTCOME_PENDING) {
      told(transaction_id, *outcome);
    }
    return;
  }
  const bool start = entry->machine.state() == v1::TRANSACTION_STATE_ACTIVE;
  if (entry->machine.decided()) {
    told(transaction_id, entry->machine.outcome());
  } else {
    entry->waiting.push_back(std::move(told));
  }
  if (start) Apply(transaction_id, entry->machine.Commit(clock_->Now()));
}

absl::Status SimCoordinator::Abort(const std::string& transaction_id) {
  Entry* entry = FindLive(transaction_id);
  if (entry == nullptr) {
    absl::StatusOr<v1::Outcome> outcome = Lookup(transaction_id);
    if (!outcome.ok()) return outcome.status();
    if (*outcome == v1::OUTCOME_COMMITTED) {
      return absl::FailedPreconditionError("already decided COMMITTED");
    }
    return absl::OkStatus();
  }
  Actions actions;
  const absl::Status status =
      entry->machine.Abort("aborted by the client", clock_->Now(), &actions);
  if (status.ok()) Apply(transaction_id, std::move(actions));
  return status;
}

absl::StatusOr<v1::Outcome> SimCoordinator::Lookup(
    const std::string& transaction_id) const {
  if (auto it = live_.find(transaction_id); it != live_.end()) {
    // While the COMMIT record is being written the commit is not decided.
    const TransactionMachine& machine = it->second->machine;
    return machine.decided() ? machine.outcome() : v1::OUTCOME_PENDING;
  }
  if (auto it = finished_.find(transaction_id); it != finished_.end()) {
    return it->second.outcome();
  }
  if (const internal::TransactionRecord* record = log_->Read(transaction_id)) {
    return record->outcome();
  }
  // Presumed abort for an id handed out before that never reached the log.
  const absl::optional<TransactionId> parsed =
      TransactionId::Parse(transaction_id);
  const bool ours_and_past =
      parsed.has_value() &&
      (parsed->epoch < epoch_ ||
       (parsed->epoch == epoch_ && parsed->sequence < next_sequence_));
  if (!ours_and_past) {
    return absl::NotFoundError(
        absl::StrCat("transaction ", transaction_id, " does not exist"));
  }
  return v1::OUTCOME_ABORTED;
}

void SimCoordinator::Receive(const Message& message) {
  if (const auto* reply = std::get_if<BranchReplyMsg>(&message.payload)) {
    OnBranchReply(message.from, reply->reply);
  } else if (const auto* failure =
                 std::get_if<DeliveryFailureMsg>(&message.payload)) {
    OnDeliveryFailure(message.from, failure->transaction_id);
  } else if (std::holds_alternative<OutcomeQueryMsg>(message.payload)) {
    AnswerOutcomeQuery(message);
  }
}

std::optional<absl::Time> SimCoordinator::NextTimer() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

void SimCoordinator::FireTimer() {
  const std::string id = timers_.begin()->second;
  timers_.erase(timers_.begin());
  Entry* entry = FindLive(id);
  entry->wake_at = absl::InfiniteFuture();
  trace_->Note("  coordinator timer of ", id);
  Apply(id, entry->machine.OnTimer(clock_->Now()));
}

SimCoordinator::Entry* SimCoordinator::FindLive(
    const std::string& transaction_id) {
  auto it = live_.find(transaction_id);
  return it == live_.end() ? nullptr : it->second.get();
}

void SimCoordinator::Apply(const std::string& transaction_id, Actions actions) {
  Entry* entry = FindLive(transaction_id);
  if (entry == nullptr) return;
  const internal::TransactionRecord& record = entry->machine.record();
  bool done = false;
  bool persisted_early = false;
  for (const Action& a : actions) {
    if (const auto* prepare = std::get_if<action::SendPrepare>(&a)) {
      v1::BranchRequest request;
      v1::PrepareBranch* p = request.mutable_prepare();
      *p->mutable_branch() = entry->work[prepare->participant_id];
      *p->mutable_deadline() =
          google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
              record.deadline_us());
      request.set_transaction_id(transaction_id);
      SendBranchRequest(prepare->participant_id, std::move(request));
    } else if (const auto* commit = std::get_if<action::SendCommit>(&a)) {
      v1::BranchRequest request;
      request.mutable_commit();
      request.set_transaction_id(transaction_id);
      SendBranchRequest(commit->participant_id, std::move(request));
    } else if (const auto* abort = std::get_if<action::SendAbort>(&a)) {
      v1::BranchRequest request;
      request.mutable_abort()->set_reason(record.abort_reason());
      request.set_transaction_id(transaction_id);
      SendBranchRequest(abort->participant_id, std::move(request));
    } else if (const auto* persist = std::get_if<action::Persist>(&a)) {
      trace_->Note("  coordinator logs ", transaction_id, " ",
                   v1::TransactionState_Name(record.state()),
                   persist->sync ? " (forced)" : "");
      if (persist->sync && bug_ == InjectedBug::kCommitBeforeDurable) {
        log_->Append(record, nullptr);
        persisted_early = true;
      } else if (persist->sync) {
        log_->Append(record,
                     [this, transaction_id, incarnation = incarnation_] {
                       OnPersisted(transaction_id, incarnation);
                     });
      } else {
        log_->Append(record, nullptr);
      }
    } else if (std::holds_alternative<action::Reply>(a)) {
      trace_->Note("  coordinator decides ", transaction_id, " ",
                   v1::Outcome_Name(record.outcome()), " ",
                   record.abort_code());
      for (Told& told : entry->waiting) told(transaction_id, record.outcome());
      entry->waiting.clear();
    } else if (const auto* wake = std::get_if<action::WakeAt>(&a)) {
      SetTimer(*entry, transaction_id, wake->when);
    } else if (std::holds_alternative<action::Done>(a)) {
      done = true;
    }
  }
  if (done) {
    Finish(transaction_id);
  } else if (persisted_early) {
    Apply(transaction_id, entry->machine.OnPersisted(clock_->Now()));
  }
}

void SimCoordinator::SendBranchRequest(const std::string& participant_id,
                                       v1::BranchRequest request) {
  network_->Send(
      Message{.from = kCoordinator,
              .to = *ParticipantNode(participant_id),
              .from_incarnation = 0,
              .to_incarnation = 0,
              .deliver_at = absl::InfinitePast(),
              .payload = BranchRequestMsg{epoch_, std::move(request)}},
      clock_->Now());
}

void SimCoordinator::SetTimer(Entry& entry, const std::string& transaction_id,
                              absl::Time when) {
  timers_.erase({entry.wake_at, transaction_id});
  entry.wake_at = when;
  timers_.insert({when, transaction_id});
}

void SimCoordinator::Finish(const std::string& transaction_id) {
  auto it = live_.find(transaction_id);
  Entry& entry = *it->second;
  const internal::TransactionRecord& record = entry.machine.record();
  for (Told& told : entry.waiting) told(transaction_id, record.outcome());
  trace_->Note("  coordinator finishes ", transaction_id, " ",
               v1::Outcome_Name(record.outcome()));
  finished_[transaction_id] = record;
  timers_.erase({entry.wake_at, transaction_id});
  live_.erase(it);
}

void SimCoordinator::OnPersisted(const std::string& transaction_id,
                                 uint64_t incarnation) {
  if (!up_ || incarnation != incarnation_) return;
  Entry* entry = FindLive(transaction_id);
  if (entry == nullptr) return;
  Apply(transaction_id, entry->machine.OnPersisted(clock_->Now()));
}

void SimCoordinator::OnBranchReply(NodeId participant,
                                   const v1::BranchReply& reply) {
  const absl::Time now = clock_->Now();
  const std::string& id = reply.transaction_id();
  const std::string participant_id = ParticipantId(participant);
  Entry* entry = FindLive(id);
  if (entry == nullptr) {
    // A late YES for a transaction that is gone: release it unless it
    // committed (then it is a duplicate of a vote already counted).
    if (reply.result_case() == v1::BranchReply::kVote &&
        reply.vote() == v1::VOTE_YES) {
      absl::StatusOr<v1::Outcome> outcome = Lookup(id);
      if (!outcome.ok() || *outcome != v1::OUTCOME_COMMITTED) {
        v1::BranchRequest request;
        request.set_transaction_id(id);
        request.mutable_abort()->set_reason("transaction aborted");
        SendBranchRequest(participant_id, std::move(request));
      }
    }
    return;
  }
  switch (reply.result_case()) {
    case v1::BranchReply::kVote:
      Apply(id, entry->machine.OnVote(participant_id, reply.vote(),
                                      reply.reason(), now));
      break;
    case v1::BranchReply::kAck:
      Apply(id, entry->machine.OnAck(
                    participant_id,
                    reply.ack() == v1::BranchReply::ACK_COMMITTED, now));
      break;
    case v1::BranchReply::kError:
      Apply(id, entry->machine.OnDeliveryError(
                    participant_id,
                    absl::StrCat(
                        absl::StatusCodeToString(static_cast<absl::StatusCode>(
                            reply.error().code())),
                        ": ", reply.error().message()),
                    now));
      break;
    case v1::BranchReply::RESULT_NOT_SET:
      break;
  }
}

void SimCoordinator::OnDeliveryFailure(NodeId participant,
                                       const std::string& transaction_id) {
  Entry* entry = FindLive(transaction_id);
  if (entry == nullptr) return;
  Apply(transaction_id, entry->machine.OnDeliveryError(
                            ParticipantId(participant),
                            "UNAVAILABLE: link broke", clock_->Now()));
}

void SimCoordinator::AnswerOutcomeQuery(const Message& query) {
  OutcomeAnswerMsg answer;
  for (const std::string& id :
       std::get<OutcomeQueryMsg>(query.payload).transaction_ids) {
    answer.outcomes.emplace_back(id, QueryOutcome(id));
  }
  network_->Send(Message{.from = kCoordinator,
                         .to = query.from,
                         .from_incarnation = 0,
                         .to_incarnation = query.from_incarnation,
                         .deliver_at = absl::InfinitePast(),
                         .payload = std::move(answer)},
                 clock_->Now());
}

v1::Outcome SimCoordinator::QueryOutcome(const std::string& transaction_id) {
  if (Entry* entry = FindLive(transaction_id)) {
    if (entry->machine.decided()) return entry->machine.outcome();
    return bug_ == InjectedBug::kEagerPresumedAbort ? v1::OUTCOME_ABORTED
                                                    : v1::OUTCOME_PENDING;
  }
  const absl::optional<TransactionId> parsed =
      TransactionId::Parse(transaction_id);
  if (parsed.has_value() && parsed->epoch > epoch_) {
    return v1::OUTCOME_PENDING;  // a newer coordinator must answer
  }
  absl::StatusOr<v1::Outcome> outcome = Lookup(transaction_id);
  if (outcome.ok()) return *outcome;
  // Unknown: presumed abort. An id of this epoch not handed out yet is
  // skipped so that it never will be (and so can never commit).
  if (parsed.has_value() && parsed->epoch == epoch_ &&
      parsed->sequence >= next_sequence_) {
    next_sequence_ = parsed->sequence + 1;
  }
  return v1::OUTCOME_ABORTED;
}

}  // namespace twopc::simulation
