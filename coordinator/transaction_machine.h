// TransactionMachine: the two-phase-commit protocol for one transaction, as a
// plain state machine. Events go in (commit requested, vote, log write synced,
// acknowledgement, timer); actions come out (send, persist, reply, wake me
// at). It owns no threads, sockets, files or clocks: the caller passes the
// time with every event and carries out the actions. That is what lets tests
// drive it through every schedule deterministically.
//
// The protocol is presumed abort:
//
//   ACTIVE --Commit--> PREPARING: send Prepare to every branch. Nothing is
//       persisted before the decision: after a crash the transaction is
//       unknown, hence aborted, and its participants learn that by asking.
//   PREPARING, all votes YES or READ_ONLY: persist the COMMIT record *forced*
//       (Persist{sync=true}); nothing else happens until OnPersisted.
//   OnPersisted: the decision is durable -> Reply (client told COMMITTED),
//       send Commit to every YES branch -> COMMITTING.
//   COMMITTING: resend Commit to unacknowledged branches with capped
//       exponential backoff and jitter; after `park_after_attempts` the
//       transaction is parked (still retried, every `parked_interval`).
//       Every branch acknowledged -> COMMITTED (persisted unforced) -> Done.
//   PREPARING, a NO vote, a prepare error, the deadline, or Abort: decide
//       abort -> Reply, send Abort to every branch that may hold state,
//       persist unforced -> ABORTED -> Done. Aborts need no acknowledgement:
//       a participant that misses one asks (QueryOutcomes) and is told
//       ABORTED, from the record or by presumption.
//
// Atomicity argument: Commit is only ever sent after OnPersisted, i.e. after
// the COMMIT record is synced; the machine never decides abort once it has
// asked for that record (late timers and Abort calls are refused); and a
// branch that voted NO or never voted is never sent Commit.
//
// Thread-compatible: the caller serialises all calls on one machine.
#ifndef TWOPC_COORDINATOR_TRANSACTION_MACHINE_H_
#define TWOPC_COORDINATOR_TRANSACTION_MACHINE_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "twopc/internal/decision_log.pb.h"

namespace twopc::coordinator {

// How phase-2 deliveries are retried.
struct RetryPolicy {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  // Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
  double jitter = 0.2;
  // Attempts per branch before the transaction is parked.
  uint32_t park_after_attempts = 20;
  // Retry interval once parked.
  absl::Duration parked_interval = absl::Minutes(1);
};

// The abort code and reason of a transaction a coordinator restart caught
// undecided: from an old PREPARING record (Recover), or presumed for an id of
// an earlier epoch that is not in the log.
inline constexpr char kRestartAbortCode[] = "COORDINATOR_RESTART";
inline constexpr char kRestartAbortReason[] =
    "the coordinator restarted before deciding";

// What the machine asks its caller to do. Carry them out in order.
namespace action {
// Send PrepareBranch for this participant's branch.
struct SendPrepare {
  std::string participant_id;
};
// Send CommitBranch (only ever after the COMMIT record is synced).
struct SendCommit {
  std::string participant_id;
};
// Send AbortBranch.
struct SendAbort {
  std::string participant_id;
};
// Write record() to the decision log. With `sync` (only ever the COMMIT
// record, which also publishes the record's messages), call OnPersisted once
// the write is synced; without, the write may be lost in a crash and no
// callback is expected.
struct Persist {
  bool sync = false;
};
// The outcome is decided (and, for commit, durable): answer the clients
// waiting for it.
struct Reply {};
// Call OnTimer at `when` (replaces any earlier wake-up).
struct WakeAt {
  absl::Time when;
};
// The transaction reached its final state; no more actions will follow
// except answers to late messages.
struct Done {};
}  // namespace action

using Action =
    std::variant<action::SendPrepare, action::SendCommit, action::SendAbort,
                 action::Persist, action::Reply, action::WakeAt, action::Done>;
using Actions = std::vector<Action>;

class TransactionMachine {
 public:
  // A new interactive or one-shot transaction in state ACTIVE. `record` has
  // the id, key, branches (participant ids, votes unset), labels, create
  // time and deadline filled in. `seed` seeds the retry jitter.
  // REQUIRES: at least one branch; distinct participant ids.
  TransactionMachine(internal::TransactionRecord record, RetryPolicy policy,
                     uint64_t seed);

  // A machine for a record read back from the log at start-up; call
  // Recover next.
  static TransactionMachine FromLog(internal::TransactionRecord record,
                                    RetryPolicy policy, uint64_t seed);

  // Resumes after a restart: a decided, unfinished transaction has phase 2
  // delivered again; a final one needs nothing. An undecided one (only a
  // PREPARING record of a version before 2026-12-04: nothing is written
  // before the decision now) is aborted ("the coordinator restarted before
  // deciding").
  Actions Recover(absl::Time now);

  // The wake-up for an ACTIVE transaction's deadline.
  Actions Open(absl::Time now);

  // Interactive transactions collect branches and messages while ACTIVE.
  // REQUIRES: state ACTIVE; `participant_id` not yet a branch.
  void AddBranch(const std::string& participant_id);
  // REQUIRES: state ACTIVE.
  void AddMessage(v1::Message message);

  // Where the messages were published, known once the COMMIT record (which
  // carries them) is synced; the messages themselves now live in their
  // partitions and are dropped from the record. Call before OnPersisted.
  void SetMessagePositions(std::vector<v1::MessagePosition> positions);

  // Starts phase 1. REQUIRES: state ACTIVE (the caller checks and answers
  // FAILED_PRECONDITION / ABORTED otherwise).
  Actions Commit(absl::Time now);

  // Aborts an undecided transaction. OK (also when already aborted: no
  // actions); FAILED_PRECONDITION when commit was decided; UNAVAILABLE
  // (ambiguous) while the COMMIT record is being written.
  absl::Status Abort(const std::string& reason, absl::Time now,
                     Actions* actions);

  // A participant's vote on its prepare. Duplicates and votes for unknown
  // participants are ignored; a late YES after an abort is answered with
  // SendAbort; a value other than YES, NO or READ_ONLY is handled as
  // OnDeliveryError.
  Actions OnVote(const std::string& participant_id, v1::Vote vote,
                 const std::string& reason, absl::Time now);

  // A request could not be delivered or processed (link down, the
  // participant fenced this coordinator, its application is down). During
  // phase 1 the transaction aborts (PARTICIPANT_UNAVAILABLE), and the branch
  // is still sent an abort since it may have prepared. In phase 2 the error
  // is recorded and delivery retried.
  Actions OnDeliveryError(const std::string& participant_id,
                          const std::string& error, absl::Time now);

  // The forced COMMIT record is synced.
  Actions OnPersisted(absl::Time now);

  // A participant acknowledged phase 2. `committed` is what it reports; a
  // branch that says aborted after voting YES breaks atomicity: the
  // transaction is parked with the error for an operator.
  Actions OnAck(const std::string& participant_id, bool committed,
                absl::Time now);

  // A requested wake-up time has come: deadline or retry.
  Actions OnTimer(absl::Time now);

  // --- Operator actions. Each Check* says, without changing anything,
  // whether the action is allowed now; the action itself REQUIRES that its
  // check passed (the caller audits between the two). ---

  // Forcing abort is allowed until commit is decided (an aborted
  // transaction accepts it as a no-op). Forcing commit is allowed once
  // commit is decided (it re-delivers phase 2 now); an undecided
  // transaction always has a branch that has not voted YES, so it can never
  // be forced to commit. FAILED_PRECONDITION: decided the other way, or
  // commit with a branch not prepared; UNAVAILABLE: the COMMIT record is
  // being written right now. REQUIRES: `outcome` is COMMITTED or ABORTED
  // (the caller validates it).
  absl::Status CheckForce(v1::Outcome outcome) const;
  Actions Force(v1::Outcome outcome, const std::string& reason,
                absl::Time now);

  // Retry, park and unpark act on phase 2: commit decided (and durable),
  // some branch not acknowledged yet. FAILED_PRECONDITION otherwise.
  absl::Status CheckPhase2Pending() const;
  // Delivers phase 2 now to every unacknowledged branch; the retry schedule
  // continues from there.
  Actions RetryNow(absl::Time now);
  // Parked: retried every `parked_interval` only. Unparked: the attempt
  // budget starts again and delivery happens now. Idempotent.
  Actions SetParked(bool parked, absl::Time now);

  const internal::TransactionRecord& record() const { return record_; }
  // Moves the record out, for a finished transaction about to be dropped:
  // the machine must not be used afterwards.
  internal::TransactionRecord TakeRecord() && { return std::move(record_); }
  v1::TransactionState state() const { return record_.state(); }
  v1::Outcome outcome() const { return record_.outcome(); }
  // The outcome is decided and durable enough to tell anyone: abort as soon
  // as it is taken (presumed abort), commit once its record is synced.
  bool decided() const;
  // Final: COMMITTED or ABORTED.
  bool finished() const;

 private:
  internal::BranchRecord* FindBranch(const std::string& participant_id);
  Actions DecideAbort(const std::string& code, const std::string& participant,
                      const std::string& reason, absl::Time now);
  void MaybeDecideCommit(absl::Time now, Actions* actions);
  void SendPhase2(absl::Time now, Actions* actions);
  void MaybeFinish(absl::Time now, Actions* actions);

  internal::TransactionRecord record_;
  RetryPolicy policy_;
  // Phase-2 retry delays (8 bytes of jitter state: a machine per
  // transaction must be cheap to create).
  Backoff backoff_;
  // The forced COMMIT record has been requested but not yet synced.
  bool commit_logging_ = false;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_TRANSACTION_MACHINE_H_
