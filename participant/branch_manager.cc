#include "participant/branch_manager.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/transaction_id.h"

namespace twopc::participant {
namespace {

constexpr size_t kMaxTransactionIdBytes = 256;

void RunAll(std::vector<std::function<void()>>& actions) {
  for (auto& action : actions) action();
  actions.clear();
}

absl::Time DeadlineOf(const v1::PrepareBranch& prepare) {
  if (!prepare.has_deadline()) return absl::InfiniteFuture();
  return absl::FromUnixSeconds(prepare.deadline().seconds()) +
         absl::Nanoseconds(prepare.deadline().nanos());
}

// A record keeps the transaction's deadline in unix micros, 0 for none.
void SetDeadline(absl::Time deadline, BranchRecord* record) {
  if (deadline != absl::InfiniteFuture()) {
    record->set_deadline_micros(absl::ToUnixMicros(deadline));
  }
}
absl::Time DeadlineOf(const BranchRecord& record) {
  return record.deadline_micros() != 0
             ? absl::FromUnixMicros(record.deadline_micros())
             : absl::InfiniteFuture();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BranchManager>> BranchManager::Create(
    BranchManagerOptions options, BranchStore* store, Resource* resource,
    Clock* clock) {
  if (!(options.query_backoff_jitter >= 0 && options.query_backoff_jitter < 1)) {
    return absl::InvalidArgumentError(
        "query_backoff_jitter must be at least 0 and below 1");
  }
  ASSIGN_OR_RETURN(RecoveredState recovered, store->Recover());
  std::unique_ptr<BranchManager> manager(
      new BranchManager(std::move(options), store, resource, clock));
  // Outcomes recorded but not yet delivered to the resource.
  std::vector<std::pair<std::string, BranchRecord>> to_apply;
  {
    absl::MutexLock lock(&manager->mu_);
    manager->highest_epoch_ = recovered.highest_epoch;
    const absl::Time now = clock->Now();
    for (auto& [txid, record] : recovered.records) {
      const BranchRecord::State recorded = record.state();
      if (recorded != BranchRecord::PREPARED &&
          recorded != BranchRecord::COMMITTED &&
          recorded != BranchRecord::ABORTED) {
        return absl::DataLossError(
            absl::StrCat("branch record of ", txid, " has unknown state ",
                         static_cast<int>(recorded)));
      }
      const bool commit = recorded == BranchRecord::COMMITTED;
      if (recorded != BranchRecord::PREPARED && record.applied()) {
        manager->RememberFinishedLocked(
            txid,
            Finished{
                .state = commit ? State::kCommitted : State::kAborted,
                .voted_yes = record.voted_yes(),
                .forget_at =
                    record.forget_at_micros() != 0
                        ? absl::FromUnixMicros(record.forget_at_micros())
                        : now + manager->options_
                                    .finished_retention_without_deadline,
                .reason = record.reason()});
        continue;
      }
      Entry& entry = manager->entries_[txid];
      entry.voted_yes = record.voted_yes();
      entry.reason = record.reason();
      entry.deadline = DeadlineOf(record);
      if (recorded == BranchRecord::PREPARED) {
        entry.state = State::kPrepared;
        entry.next_query_at = now;  // found at start-up: ask at once
        resource->Restore(txid, record);
        entry.record = std::move(record);
        manager->prepared_.insert(txid);
      } else {
        // Recorded, not yet delivered to the resource.
        entry.state = commit ? State::kCommitting : State::kAborting;
        to_apply.emplace_back(txid, std::move(record));
      }
    }
  }
  BranchManager* raw = manager.get();
  for (auto& [txid, record] : to_apply) {
    const bool commit = record.state() == BranchRecord::COMMITTED;
    raw->OnOutcomeSynced(txid, std::move(record), commit, /*apply=*/true,
                         absl::OkStatus());
  }
  return manager;
}

BranchManager::BranchManager(BranchManagerOptions options, BranchStore* store,
                             Resource* resource, Clock* clock)
    : options_(std::move(options)),
      store_(store),
      resource_(resource),
      clock_(clock),
      resource_kind_(resource->kind()),
      query_backoff_({.initial = options_.query_backoff_initial,
                      .max = options_.query_backoff_max,
                      .jitter = options_.query_backoff_jitter},
                     options_.jitter_seed != 0 ? options_.jitter_seed
                                               : RandomSeed()) {}

absl::Status BranchManager::ObserveEpoch(uint64_t epoch) {
  Actions actions;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = CheckEpochLocked(epoch, &actions);
  }
  RunAll(actions);
  return status;
}

absl::Status BranchManager::CheckEpochLocked(uint64_t epoch, Actions* actions) {
  if (epoch < highest_epoch_) {
    v1::ErrorInfo info;
    info.set_reason("STALE_EPOCH");
    info.set_certainty(v1::ErrorInfo::CERTAINTY_DEFINITE);
    info.set_participant_id(options_.participant_id);
    (*info.mutable_metadata())["epoch"] = absl::StrCat(epoch);
    (*info.mutable_metadata())["highest_epoch"] = absl::StrCat(highest_epoch_);
    return WithErrorInfo(
        absl::FailedPreconditionError(absl::StrCat(
            "coordinator epoch ", epoch, " is older than epoch ",
            highest_epoch_,
            " already seen by participant ", options_.participant_id,
            ": this coordinator has been replaced; request ignored")),
        std::move(info));
  }
  if (epoch > highest_epoch_) {
    highest_epoch_ = epoch;
    // The coordinator restarted: it wrote nothing for a transaction it had
    // not decided, so its vote may never be heard. Ask now, not after
    // in_doubt_after, and from the shortest backoff: the new coordinator
    // may not answer until it has read its log.
    const absl::Time now = clock_->Now();
    for (const std::string& txid : prepared_) {
      auto it = entries_.find(txid);
      if (it == entries_.end() || !OfEarlierEpochLocked(txid)) continue;
      it->second.next_query_at = now;
      it->second.query_attempts = 0;
    }
    // Before anything of this epoch is answered: every later batch then
    // persists it (see BranchStore::NoteEpoch).
    store_->NoteEpoch(epoch);
    actions->push_back([this, epoch] {
      StoreBatch batch;
      batch.highest_epoch = epoch;
      // Nothing waits for it: replies that depend on it come from batches
      // that carry the epoch and are synced.
      store_->Write(std::move(batch), nullptr);
    });
  }
  return absl::OkStatus();
}

bool BranchManager::OfEarlierEpochLocked(const std::string& txid) const {
  const absl::optional<TransactionId> id = TransactionId::Parse(txid);
  return id.has_value() && id->epoch < highest_epoch_;
}

void BranchManager::Handle(uint64_t epoch, const v1::BranchRequest& request,
                           Reply reply) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    ++in_flight_;
    const std::string& txid = request.transaction_id();
    Waiter waiter{Kind::kPrepare, request.request_id(), txid, std::move(reply)};
    absl::Status status = failure_;
    if (status.ok()) status = CheckEpochLocked(epoch, &actions);
    if (status.ok() &&
        (txid.empty() || txid.size() > kMaxTransactionIdBytes)) {
      status = absl::InvalidArgumentError(
          absl::StrCat("transaction_id must be 1..", kMaxTransactionIdBytes,
                       " bytes, got ", txid.size()));
    }
    if (status.ok() && request.op_case() == v1::BranchRequest::OP_NOT_SET) {
      status = absl::InvalidArgumentError(
          "branch request has none of prepare, commit, abort set");
    }
    if (!status.ok()) {
      Respond(std::move(waiter), ErrorReply(txid, request.request_id(), status),
              &actions);
    } else {
      switch (request.op_case()) {
        case v1::BranchRequest::kPrepare:
          waiter.kind = request.prepare().one_phase() ? Kind::kPrepareOnePhase
                                                      : Kind::kPrepare;
          PrepareLocked(txid, request.prepare(), std::move(waiter), &actions);
          break;
        case v1::BranchRequest::kCommit:
          waiter.kind = Kind::kCommit;
          CommitLocked(txid, std::move(waiter), &actions);
          break;
        default:
          waiter.kind = Kind::kAbort;
          AbortLocked(txid, request.abort().reason(), std::move(waiter),
                      &actions);
          break;
      }
    }
  }
  RunAll(actions);
}

void BranchManager::PrepareLocked(const std::string& txid,
                                  const v1::PrepareBranch& prepare,
                                  Waiter waiter, Actions* actions) {
  if (AnswerIfFinishedLocked(txid, waiter, actions)) return;
  auto [it, inserted] = entries_.try_emplace(txid);
  Entry& entry = it->second;
  if (!inserted) {
    // A vote needs the outcome durable, not delivered (a one-phase answer
    // acknowledges the commit, so it waits for the delivery).
    const bool vote_recorded =
        entry.outcome_recorded && waiter.kind == Kind::kPrepare;
    if (entry.state == State::kPrepared || vote_recorded) {
      const Kind kind = waiter.kind;
      Respond(std::move(waiter),
              Answer(vote_recorded ? RecordedOutcome(entry) : entry.state,
                     entry.voted_yes, entry.reason, kind),
              actions);
    } else {
      // PREPARING, COMMITTING or ABORTING: answered once it gets further.
      entry.waiters.push_back(std::move(waiter));
    }
    return;
  }
  entry.state = State::kPreparing;
  entry.one_phase = prepare.one_phase();
  entry.waiters.push_back(std::move(waiter));
  const absl::Time deadline = DeadlineOf(prepare);
  entry.deadline = deadline;
  if (deadline <= clock_->Now()) {
    PrepareResult no;
    no.vote = v1::VOTE_NO;
    no.reason = "the transaction's deadline passed before the prepare arrived";
    actions->push_back([this, txid, no = std::move(no)]() mutable {
      OnPrepared(txid, std::move(no));
    });
    return;
  }
  auto branch = std::make_shared<const v1::Branch>(prepare.branch());
  if (!resource_->applies_unknown_aborts()) {
    actions->push_back([this, txid, branch, deadline] {
      PrepareResource(txid, *branch, deadline);
    });
    return;
  }
  // The intent: see "Resources that stage elsewhere" in the header.
  BranchRecord intent;
  intent.set_state(BranchRecord::ABORTED);
  intent.set_applied(false);
  intent.set_reason(
      "the sidecar stopped after asking its application to prepare and "
      "before it recorded the vote");
  SetDeadline(deadline, &intent);
  intent.set_forget_at_micros(absl::ToUnixMicros(ForgetAt(deadline)));
  StoreBatch batch;
  batch.records.emplace_back(txid, std::move(intent));
  actions->push_back([this, txid, branch, deadline,
                      batch = std::move(batch)]() mutable {
    store_->Write(std::move(batch),
                  [this, txid, branch, deadline](const absl::Status& s) {
                    OnIntentSynced(txid, *branch, deadline, s);
                  });
  });
}

void BranchManager::PrepareResource(const std::string& txid,
                                    const v1::Branch& branch,
                                    absl::Time deadline) {
  resource_->Prepare(txid, branch, deadline, [this, txid](PrepareResult r) {
    OnPrepared(txid, std::move(r));
  });
}

void BranchManager::OnIntentSynced(const std::string& txid,
                                   const v1::Branch& branch,
                                   absl::Time deadline,
                                   const absl::Status& status) {
  if (!status.ok()) {
    Fail(txid, status);
    return;
  }
  std::string aborted_reason;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end() || it->second.state != State::kPreparing) return;
    if (it->second.abort_requested) {
      aborted_reason = it->second.reason.empty() ? "aborted by the coordinator"
                                                 : it->second.reason;
    }
  }
  if (!aborted_reason.empty()) {
    // Aborted while the intent was being written: the application need
    // not stage what is already decided.
    OnPrepared(txid, PrepareResult::No(std::move(aborted_reason)));
    return;
  }
  PrepareResource(txid, branch, deadline);
}

void BranchManager::OnPrepared(const std::string& txid, PrepareResult result) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end() || it->second.state != State::kPreparing) return;
    Entry& entry = it->second;
    switch (result.vote) {
      case v1::VOTE_READ_ONLY:
        // Nothing to commit and nothing reserved: finished, not recorded.
        if (resource_->applies_unknown_aborts()) {
          // The intent is deleted before the vote is sent, or a crash could
          // bring it back and abort a branch of a committed transaction.
          StoreBatch forget;
          forget.forget.push_back(txid);
          actions.push_back([this, txid, forget = std::move(forget)]() mutable {
            store_->Write(std::move(forget),
                          [this, txid](const absl::Status& s) {
                            OnIntentDeleted(txid, s);
                          });
          });
          break;
        }
        FinishLocked(it, State::kReadOnly, &actions);
        break;
      case v1::VOTE_YES:
        entry.voted_yes = true;
        entry.record = std::move(result.prepared);
        entry.record.set_state(BranchRecord::PREPARED);
        entry.record.set_voted_yes(true);
        entry.record.set_prepared_at_micros(absl::ToUnixMicros(clock_->Now()));
        SetDeadline(entry.deadline, &entry.record);
        if (entry.one_phase) {
          // An abort that arrived while preparing wins: the coordinator may
          // have decided abort (e.g. at the deadline).
          DecideLocked(txid, entry, /*commit=*/!entry.abort_requested,
                       &actions);
        } else {
          StoreBatch batch;
          batch.records.emplace_back(txid, entry.record);
          actions.push_back([this, txid, batch = std::move(batch)]() mutable {
            store_->Write(std::move(batch), [this, txid](const absl::Status& s) {
              OnPreparedRecordSynced(txid, s);
            });
          });
        }
        break;
      default: {
        // NO (or a resource answering nonsense): record it, then answer.
        entry.state = State::kAborting;
        entry.reason = result.vote == v1::VOTE_NO
                           ? result.reason
                           : absl::StrCat("resource gave no valid vote (",
                                          static_cast<int>(result.vote), ")");
        // When the resource may have staged something (its prepare's
        // outcome is unknown), it is told to abort, retried until it
        // acknowledges; the record says so until then.
        RecordAbortLocked(txid, entry, entry.deadline,
                          /*apply=*/result.may_hold_state, &actions);
        break;
      }
    }
  }
  RunAll(actions);
}

void BranchManager::OnIntentDeleted(const std::string& txid,
                                    const absl::Status& status) {
  if (!status.ok()) {
    Fail(txid, status);
    return;
  }
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end() || it->second.state != State::kPreparing) return;
    FinishLocked(it, State::kReadOnly, &actions);
  }
  RunAll(actions);
}

void BranchManager::OnPreparedRecordSynced(const std::string& txid,
                                           const absl::Status& status) {
  if (!status.ok()) {
    Fail(txid, status);
    return;
  }
  TWOPC_FAILPOINT("participant.after_prepare_synced");
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    entry.state = State::kPrepared;
    const absl::Time now = clock_->Now();
    entry.next_query_at =
        OfEarlierEpochLocked(txid) ? now : now + options_.in_doubt_after;
    prepared_.insert(txid);
    AnswerWaitersLocked(entry, &actions);
    if (entry.abort_requested) {
      DecideLocked(txid, entry, /*commit=*/false, &actions);
    }
  }
  RunAll(actions);
}

void BranchManager::CommitLocked(const std::string& txid, Waiter waiter,
                                 Actions* actions) {
  if (AnswerIfFinishedLocked(txid, waiter, actions)) return;
  auto it = entries_.find(txid);
  if (it == entries_.end()) {
    // Unknown: see the header. Acknowledged without effect or record.
    v1::BranchReply reply;
    reply.set_ack(v1::BranchReply::ACK_COMMITTED);
    Respond(std::move(waiter), std::move(reply), actions);
    return;
  }
  Entry& entry = it->second;
  switch (entry.state) {
    case State::kPreparing:
      Respond(std::move(waiter),
              ErrorReply(txid, waiter.request_id,
                         absl::FailedPreconditionError(
                             "commit before the branch voted YES; ignored")),
              actions);
      return;
    case State::kPrepared:
      entry.waiters.push_back(std::move(waiter));
      DecideLocked(txid, entry, /*commit=*/true, actions);
      return;
    default:
      // COMMITTING or ABORTING: answered once it is finished, or now when
      // its application is not acknowledging the outcome.
      AnswerOrWaitForDeliveryLocked(txid, entry, std::move(waiter), actions);
      return;
  }
}

void BranchManager::NoteOutcomeRecordedLocked(const std::string& txid,
                                              Actions* actions) {
  auto it = entries_.find(txid);
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  entry.outcome_recorded = true;
  std::vector<Waiter> keep;
  for (Waiter& waiter : entry.waiters) {
    if (waiter.kind != Kind::kPrepare) {
      keep.push_back(std::move(waiter));
      continue;
    }
    Respond(std::move(waiter),
            Answer(RecordedOutcome(entry), entry.voted_yes, entry.reason,
                   Kind::kPrepare),
            actions);
  }
  entry.waiters = std::move(keep);
}

BranchManager::State BranchManager::RecordedOutcome(const Entry& entry) {
  return entry.state == State::kCommitting ? State::kCommitted
                                           : State::kAborted;
}

void BranchManager::AnswerOrWaitForDeliveryLocked(const std::string& txid,
                                                  Entry& entry, Waiter waiter,
                                                  Actions* actions) {
  if (entry.apply_error.ok()) {
    entry.waiters.push_back(std::move(waiter));
    return;
  }
  const uint64_t id = waiter.request_id;
  Respond(std::move(waiter), ErrorReply(txid, id, entry.apply_error), actions);
}

void BranchManager::AbortLocked(const std::string& txid,
                                const std::string& reason, Waiter waiter,
                                Actions* actions) {
  if (AnswerIfFinishedLocked(txid, waiter, actions)) return;
  auto [it, inserted] = entries_.try_emplace(txid);
  Entry& entry = it->second;
  if (inserted) {
    // Unknown: remember the abort durably, so a late prepare votes NO.
    entry.state = State::kAborting;
    entry.reason = reason.empty() ? "aborted by the coordinator" : reason;
    entry.waiters.push_back(std::move(waiter));
    RecordAbortLocked(txid, entry, absl::InfiniteFuture(),
                      /*apply=*/resource_->applies_unknown_aborts(), actions);
    return;
  }
  switch (entry.state) {
    case State::kPreparing:
      entry.abort_requested = true;
      if (entry.reason.empty()) entry.reason = reason;
      entry.waiters.push_back(std::move(waiter));
      return;
    case State::kPrepared:
      entry.reason = reason.empty() ? "aborted by the coordinator" : reason;
      entry.waiters.push_back(std::move(waiter));
      DecideLocked(txid, entry, /*commit=*/false, actions);
      return;
    default:
      // COMMITTING or ABORTING: as for a commit.
      AnswerOrWaitForDeliveryLocked(txid, entry, std::move(waiter), actions);
      return;
  }
}

void BranchManager::RecordAbortLocked(const std::string& txid,
                                      const Entry& entry, absl::Time deadline,
                                      bool apply, Actions* actions) {
  BranchRecord record;
  record.set_state(BranchRecord::ABORTED);
  record.set_applied(!apply);
  record.set_reason(entry.reason);
  SetDeadline(deadline, &record);
  record.set_forget_at_micros(absl::ToUnixMicros(ForgetAt(deadline)));
  StoreBatch batch;
  batch.records.emplace_back(txid, record);
  actions->push_back(
      [this, txid, record, apply, batch = std::move(batch)]() mutable {
        store_->Write(std::move(batch),
                      [this, txid, record, apply](const absl::Status& s) {
                        OnOutcomeSynced(txid, record, /*commit=*/false, apply,
                                        s);
                      });
      });
}

void BranchManager::DecideLocked(const std::string& txid, Entry& entry,
                                 bool commit, Actions* actions) {
  prepared_.erase(txid);
  entry.state = commit ? State::kCommitting : State::kAborting;
  if (!commit && entry.reason.empty()) {
    entry.reason = "aborted by the coordinator";
  }
  BranchRecord record = entry.record;
  record.set_state(commit ? BranchRecord::COMMITTED : BranchRecord::ABORTED);
  record.set_applied(resource_->applies_in_batch());
  record.set_voted_yes(true);
  if (!commit) record.set_reason(entry.reason);
  record.set_forget_at_micros(absl::ToUnixMicros(ForgetAt(entry.deadline)));
  StoreBatch batch;
  if (commit) resource_->AddCommitEffects(entry.record, &batch);
  // The outcome record need not keep the writes once they are applied.
  if (record.applied()) record.clear_kv_writes();
  batch.records.emplace_back(txid, record);
  // Keep the locked keys for ApplyOutcome (they are in `record`).
  actions->push_back([this, txid, record, commit,
                      batch = std::move(batch)]() mutable {
    store_->Write(std::move(batch),
                  [this, txid, record, commit](const absl::Status& s) {
                    OnOutcomeSynced(txid, record, commit, /*apply=*/true, s);
                  });
  });
}

void BranchManager::OnOutcomeSynced(const std::string& txid,
                                    BranchRecord record, bool commit,
                                    bool apply, const absl::Status& status) {
  if (!status.ok()) {
    Fail(txid, status);
    return;
  }
  if (!apply) {
    OnApplied(txid, std::move(record), commit);
    return;
  }
  if (!resource_->applies_in_batch()) {
    // The delivery may take long (kv applies inline, answering everyone).
    Actions actions;
    {
      absl::MutexLock lock(&mu_);
      NoteOutcomeRecordedLocked(txid, &actions);
    }
    RunAll(actions);
  }
  BranchRecord copy = record;
  resource_->ApplyOutcome(
      txid, copy, commit,
      [this, txid, record = std::move(record), commit]() mutable {
        OnApplied(txid, std::move(record), commit);
      },
      [this, txid](const absl::Status& error) {
        OnApplyDelayed(txid, error);
      });
}

void BranchManager::OnApplyDelayed(const std::string& txid,
                                   const absl::Status& error) {
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    if (entry.state != State::kCommitting && entry.state != State::kAborting) {
      return;
    }
    entry.apply_error = absl::UnavailableError(absl::StrCat(
        "the ", entry.state == State::kCommitting ? "commit" : "abort",
        " of this branch is recorded at participant ", options_.participant_id,
        " and is being delivered to its application, which has not "
        "acknowledged it yet; ask again later: ",
        error.message()));
    std::vector<Waiter> waiting = std::move(entry.waiters);
    entry.waiters.clear();
    for (Waiter& waiter : waiting) {
      if (waiter.kind == Kind::kCommit || waiter.kind == Kind::kAbort) {
        AnswerOrWaitForDeliveryLocked(txid, entry, std::move(waiter),
                                      &actions);
      } else {
        // One-phase prepares: answered once delivered (an UNAVAILABLE
        // answer would read as a failed prepare).
        entry.waiters.push_back(std::move(waiter));
      }
    }
  }
  RunAll(actions);
}

void BranchManager::OnApplied(const std::string& txid, BranchRecord record,
                              bool commit) {
  if (commit) TWOPC_FAILPOINT("participant.after_commit_applied");
  if (!record.applied()) {
    // Note that it reached the resource. Need not wait for the sync: if
    // lost, the outcome is delivered again after a restart (idempotent).
    record.set_applied(true);
    record.clear_kv_writes();
    record.clear_locked_keys();
    // Its retention counts from now, the branch's end (it may have been
    // decided long ago, e.g. an intent found at start-up).
    record.set_forget_at_micros(
        absl::ToUnixMicros(ForgetAt(DeadlineOf(record))));
    StoreBatch batch;
    batch.records.emplace_back(txid, std::move(record));
    store_->Write(std::move(batch), nullptr);
  }
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(txid);
    if (it == entries_.end()) return;
    FinishLocked(it, commit ? State::kCommitted : State::kAborted, &actions);
  }
  RunAll(actions);
}

void BranchManager::Fail(const std::string& txid, const absl::Status& status) {
  Actions actions;
  std::string fatal;  // set by the first failure only
  {
    absl::MutexLock lock(&mu_);
    if (failure_.ok()) {
      failure_ = absl::Status(
          status.code(),
          absl::StrCat("participant ", options_.participant_id,
                       " cannot write its branch store and must be "
                       "restarted: ",
                       status.message()));
      fatal = failure_.ToString();
    }
    auto it = entries_.find(txid);
    if (it != entries_.end()) {
      for (Waiter& waiter : it->second.waiters) {
        const uint64_t id = waiter.request_id;
        Respond(std::move(waiter), ErrorReply(txid, id, failure_), &actions);
      }
      it->second.waiters.clear();
    }
  }
  RunAll(actions);
  // Nothing more can be made durable: only a restart can tell what is on
  // disk. Let the owner stop the process (it must not keep serving).
  if (!fatal.empty() && options_.on_fatal) options_.on_fatal(fatal);
}

void BranchManager::AnswerWaitersLocked(Entry& entry, Actions* actions) {
  std::vector<Waiter> keep;
  for (Waiter& waiter : entry.waiters) {
    const bool answerable =
        entry.state != State::kPrepared || waiter.kind == Kind::kPrepare ||
        waiter.kind == Kind::kPrepareOnePhase;
    if (!answerable) {
      keep.push_back(std::move(waiter));
      continue;
    }
    const Kind kind = waiter.kind;
    Respond(std::move(waiter),
            Answer(entry.state, entry.voted_yes, entry.reason, kind), actions);
  }
  entry.waiters = std::move(keep);
}

bool BranchManager::AnswerIfFinishedLocked(const std::string& txid,
                                           Waiter& waiter, Actions* actions) {
  auto it = finished_.find(txid);
  if (it == finished_.end()) return false;
  const Finished& finished = it->second;
  const Kind kind = waiter.kind;
  Respond(std::move(waiter),
          Answer(finished.state, finished.voted_yes, finished.reason, kind),
          actions);
  return true;
}

v1::BranchReply BranchManager::Answer(State state, bool voted_yes,
                                      const std::string& reason, Kind kind) {
  v1::BranchReply reply;
  const bool prepare = kind == Kind::kPrepare;
  const bool one_phase = kind == Kind::kPrepareOnePhase;
  switch (state) {
    case State::kPrepared:
      reply.set_vote(v1::VOTE_YES);
      break;
    case State::kCommitted:
      if (prepare) {
        reply.set_vote(v1::VOTE_YES);
      } else {
        reply.set_ack(v1::BranchReply::ACK_COMMITTED);
      }
      break;
    case State::kReadOnly:
      if (prepare) {
        reply.set_vote(v1::VOTE_READ_ONLY);
      } else if (kind == Kind::kAbort) {
        reply.set_ack(v1::BranchReply::ACK_ABORTED);
      } else {
        reply.set_ack(v1::BranchReply::ACK_COMMITTED);
      }
      break;
    case State::kAborted:
      if (prepare || one_phase) {
        reply.set_vote(v1::VOTE_NO);
        reply.set_reason(voted_yes
                             ? absl::StrCat("branch already aborted: ", reason)
                             : reason);
      } else {
        reply.set_ack(v1::BranchReply::ACK_ABORTED);
      }
      break;
    default:
      // Not reached: transitional states are answered later.
      reply.set_ack(v1::BranchReply::ACK_UNSPECIFIED);
      break;
  }
  return reply;
}

v1::BranchReply BranchManager::ErrorReply(const std::string& txid,
                                          uint64_t request_id,
                                          const absl::Status& status) const {
  v1::BranchReply reply;
  reply.set_request_id(request_id);
  reply.set_transaction_id(txid);
  v1::RpcStatus* error = reply.mutable_error();
  error->set_code(static_cast<int>(status.code()));
  error->set_message(std::string(status.message()));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) {
    info.emplace();
    info->set_certainty(IsAmbiguous(status.code())
                            ? v1::ErrorInfo::CERTAINTY_AMBIGUOUS
                            : v1::ErrorInfo::CERTAINTY_DEFINITE);
    info->set_participant_id(options_.participant_id);
  }
  info->set_transaction_id(txid);
  error->add_details()->PackFrom(*info);
  return reply;
}

void BranchManager::Respond(Waiter waiter, v1::BranchReply reply,
                            Actions* actions) {
  --in_flight_;
  reply.set_request_id(waiter.request_id);
  reply.set_transaction_id(std::move(waiter.transaction_id));
  actions->push_back([reply = std::move(reply),
                      fn = std::move(waiter.reply)]() mutable {
    fn(std::move(reply));
  });
}

std::vector<std::string> BranchManager::DueForOutcomeQuery(size_t max) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> due;
  const absl::Time now = clock_->Now();
  for (const std::string& txid : prepared_) {
    if (entries_[txid].next_query_at <= now) due.push_back(txid);
  }
  // In id order, not the hash set's (which differs between runs): the
  // jitter each branch draws then replays for a given seed.
  if (due.size() > max) {
    std::nth_element(due.begin(), due.begin() + max, due.end());
    due.resize(max);
  }
  std::sort(due.begin(), due.end());
  for (const std::string& txid : due) {
    Entry& entry = entries_[txid];
    entry.next_query_at = now + query_backoff_.Delay(entry.query_attempts);
    ++entry.query_attempts;
  }
  return due;
}

void BranchManager::ApplyOutcome(const std::string& transaction_id,
                                 v1::Outcome outcome) {
  if (outcome != v1::OUTCOME_COMMITTED && outcome != v1::OUTCOME_ABORTED) {
    return;
  }
  Actions actions;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(transaction_id);
    if (it == entries_.end() || it->second.state != State::kPrepared) return;
    if (outcome == v1::OUTCOME_ABORTED) {
      it->second.reason = "aborted by the coordinator (outcome query)";
    }
    DecideLocked(transaction_id, it->second,
                 outcome == v1::OUTCOME_COMMITTED, &actions);
  }
  RunAll(actions);
}

absl::Time BranchManager::ForgetAt(absl::Time deadline) const {
  const absl::Time now = clock_->Now();
  if (deadline == absl::InfiniteFuture()) {
    return now + options_.finished_retention_without_deadline;
  }
  return std::max(now, deadline) + options_.finished_retention;
}

void BranchManager::FinishLocked(EntryMap::iterator it, State state,
                                 Actions* actions) {
  Entry& entry = it->second;
  entry.state = state;
  AnswerWaitersLocked(entry, actions);  // all of them, now it is finished
  RememberFinishedLocked(it->first,
                         Finished{.state = state,
                                  .voted_yes = entry.voted_yes,
                                  .forget_at = ForgetAt(entry.deadline),
                                  .reason = std::move(entry.reason)});
  entries_.erase(it);
}

void BranchManager::RememberFinishedLocked(const std::string& txid,
                                           Finished finished) {
  // A read-only branch may carry the reason of an abort that came while it
  // was preparing; its answers do not use it.
  if (finished.state != State::kAborted) finished.reason.clear();
  forget_queue_.emplace(finished.forget_at, txid);
  finished_.insert_or_assign(txid, std::move(finished));
}

size_t BranchManager::ForgetFinished() {
  StoreBatch batch;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    while (!forget_queue_.empty() && forget_queue_.top().first <= now) {
      const std::string txid = forget_queue_.top().second;
      forget_queue_.pop();
      auto it = finished_.find(txid);
      if (it == finished_.end() || it->second.forget_at > now) continue;
      batch.forget.push_back(txid);
    }
  }
  if (batch.forget.empty()) return 0;
  // The deletions are queued before the branches leave finished_ (store
  // writes become durable in submission order): a request for one of them
  // meanwhile is still answered from memory and writes nothing, and a
  // prepare after that writes its record after the deletion, not before.
  // Unsynced: a forget lost in a crash is redone after the restart.
  const std::vector<std::string> forgotten = batch.forget;
  store_->Write(std::move(batch), nullptr);
  absl::MutexLock lock(&mu_);
  for (const std::string& txid : forgotten) finished_.erase(txid);
  return forgotten.size();
}

uint64_t BranchManager::highest_epoch() const {
  absl::MutexLock lock(&mu_);
  return highest_epoch_;
}

size_t BranchManager::prepared_branches() const {
  absl::MutexLock lock(&mu_);
  return prepared_.size();
}

size_t BranchManager::in_flight_requests() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

std::string BranchManager::StateOf(const std::string& transaction_id) const {
  absl::MutexLock lock(&mu_);
  State state;
  if (auto it = entries_.find(transaction_id); it != entries_.end()) {
    state = it->second.state;
  } else if (auto done = finished_.find(transaction_id);
             done != finished_.end()) {
    state = done->second.state;
  } else {
    return "UNKNOWN";
  }
  switch (state) {
    case State::kPreparing:
      return "PREPARING";
    case State::kPrepared:
      return "PREPARED";
    case State::kCommitting:
      return "COMMITTING";
    case State::kAborting:
      return "ABORTING";
    case State::kCommitted:
      return "COMMITTED";
    case State::kAborted:
      return "ABORTED";
    case State::kReadOnly:
      return "READ_ONLY";
  }
  return "UNKNOWN";
}

}  // namespace twopc::participant
