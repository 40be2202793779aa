// BranchManager: the sidecar's branch lifecycle and barrier. It owns no
// threads, sockets or timers: requests come in (Handle), outcomes of
// in-doubt queries come in (ApplyOutcome), and answers go out through the
// caller's Reply callbacks once the BranchStore reports the record synced.
// Time is read from the injected Clock only.
//
// Lifecycle of a branch (per transaction id):
//
//   (unknown) --prepare--> PREPARING --YES, PREPARED record synced--> PREPARED
//       |                     |  \--NO, ABORTED record synced--------> ABORTED
//       |                     \--READ_ONLY (nothing kept)-------------> READ_ONLY
//       |                                                 commit / abort
//       |                       PREPARED --record synced, resource applied-->
//       |                                 COMMITTED / ABORTED
//       \--abort--> ABORTED record synced --> ABORTED (a late prepare votes NO)
//
// Barrier rules (answers, "same answer again" for duplicates):
//   * prepare:  PREPARED/COMMITTED -> VOTE_YES (one-phase: ACK_COMMITTED);
//               ABORTED -> VOTE_NO with the reason; READ_ONLY -> VOTE_READ_ONLY
//               (one-phase: ACK_COMMITTED). While PREPARING, duplicates wait
//               for the first one's answer; while an outcome is delivered
//               to the resource, they are answered from it once it is
//               recorded (one-phase ones once it is delivered). A passed
//               deadline votes NO.
//   * commit:   COMMITTED or READ_ONLY -> ACK_COMMITTED; ABORTED -> ACK_ABORTED
//               (the remembered outcome); PREPARING (not voted yet) ->
//               error FAILED_PRECONDITION, no effect.
//               UNKNOWN branch -> ACK_COMMITTED without effect and without a
//               record: the coordinator only commits branches that voted YES
//               and a YES is durable here, so an unknown branch can only be
//               one already committed and forgotten (or one that never
//               existed, for which acknowledging is harmless).
//   * abort:    ABORTED or READ_ONLY -> ACK_ABORTED; COMMITTED -> ACK_COMMITTED
//               (it cannot be undone; the coordinator sees the truth);
//               PREPARING -> remembered, answered once the prepare finishes
//               and the abort is recorded; UNKNOWN -> an ABORTED record is
//               synced first (so a late prepare votes NO), then ACK_ABORTED.
//   * every reply to commit/abort is sent only after the outcome is synced
//     and applied to the resource (for a callback application: acknowledged
//     by it). While an application fails to acknowledge (down, erroring),
//     commit/abort get error UNAVAILABLE with its last delivery error
//     instead: the outcome is durable here and delivery is retried, and the
//     coordinator records the error and asks again later.
//
// Resources that stage elsewhere (Resource::applies_unknown_aborts(), i.e.
// a callback application): before the resource is asked to prepare, an
// intent record is synced, an ABORTED record not yet applied ("the sidecar
// stopped after asking its application to prepare..."). The vote's record
// (PREPARED, ABORTED, or for READ_ONLY a deletion), synced before the vote
// is sent, replaces it. So after a crash at any point before the vote is
// recorded, the restarted sidecar finds the intent and tells the
// application to abort the branch it may have staged (retried until
// acknowledged), and a repeated prepare votes NO: the coordinator cannot
// have been told the vote. This costs callback-mode prepares one more sync
// round (shared by concurrent prepares), and READ_ONLY votes one sync.
//
// Epoch fencing: a request whose coordinator epoch is below the highest seen
// gets error FAILED_PRECONDITION with ErrorInfo reason STALE_EPOCH and has no
// effect. A higher epoch becomes the highest at once (in memory) and is
// written to the store in the background, so it survives a restart once any
// batch submitted after it is synced.
//
// In-doubt branches: a branch PREPARED for `in_doubt_after` becomes due for
// an outcome query; so does, at once, every PREPARED branch found at
// start-up, and every one whose transaction id is of an epoch older than the
// highest seen (its coordinator restarted, and writes nothing before a
// decision, so the new one answers from its log or presumes abort; its
// backoff starts again, as the new one may still be reading its log). Each
// time a branch is handed out by DueForOutcomeQuery its next query is pushed
// back by a capped exponential backoff, until ApplyOutcome (or a
// commit/abort from the coordinator) resolves it.
//
// Memory: a finished branch (COMMITTED, ABORTED, READ_ONLY) is remembered,
// in memory and on disk, until ForgetFinished drops it: `finished_retention`
// after the later of its end and its transaction's deadline (a prepare that
// arrives after its deadline votes NO anyway, so a forgotten branch cannot
// be prepared twice), or `finished_retention_without_deadline` after its end
// when the prepare carried no deadline. A commit or abort of a forgotten
// branch is then answered as for an unknown one. The coordinator should
// therefore always send a deadline with each prepare. Under load most
// remembered branches are finished ones, so in memory a finished branch keeps
// only what its answers need (its outcome, whether it voted YES, the abort
// reason and its forget time); the full state is kept only while a branch is
// in progress.
//
// Failure points (common/failpoint.h): participant.after_prepare_synced (the
// PREPARED record is synced, the YES not yet sent) and
// participant.after_commit_applied (a commit is applied to the resource, not
// yet acknowledged).
//
// Thread-safety: all public methods may be called concurrently. Reply
// callbacks run without any BranchManager lock held, on the calling thread
// or on the store's/resource's callback thread; they must be quick.
#ifndef TWOPC_PARTICIPANT_BRANCH_MANAGER_H_
#define TWOPC_PARTICIPANT_BRANCH_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "participant/branch_store.h"
#include "participant/resource.h"
#include "twopc/v1/participant.pb.h"

namespace twopc::participant {

struct BranchManagerOptions {
  // Put in error details.
  std::string participant_id;
  // A branch PREPARED this long asks the coordinator for the outcome.
  absl::Duration in_doubt_after = absl::Seconds(10);
  // Backoff between outcome queries of one branch: initial, doubling, cap.
  absl::Duration query_backoff_initial = absl::Milliseconds(500);
  absl::Duration query_backoff_max = absl::Seconds(30);
  // Each query delay is scaled by a random factor in [1 - jitter,
  // 1 + jitter], so that the branches left in doubt by one crash (here and
  // at other sidecars) do not all ask at the same moments. In [0, 1).
  double query_backoff_jitter = 0.2;
  // Seeds that jitter; 0 picks a random seed (simulations pass theirs, to
  // replay).
  uint64_t jitter_seed = 0;
  // How long finished branches are remembered; see "Memory" above.
  absl::Duration finished_retention = absl::Minutes(1);
  absl::Duration finished_retention_without_deadline = absl::Minutes(10);
  // Called once when the branch store fails a write; the process should
  // stop (the sidecar's default prints the error and exits 70). Unset: the
  // manager keeps answering every request with the error.
  std::function<void(const std::string& message)> on_fatal;
};

class BranchManager {
 public:
  // Receives the one answer to a request (request_id and transaction_id set).
  using Reply = std::function<void(v1::BranchReply reply)>;

  // Recovers the state in `store` (re-taking resource reservations for
  // PREPARED branches, resuming delivery of recorded but unapplied outcomes).
  // `store`, `resource` and `clock` are not owned and must outlive the
  // manager. OK; INVALID_ARGUMENT for options out of range; errors from
  // BranchStore::Recover.
  static absl::StatusOr<std::unique_ptr<BranchManager>> Create(
      BranchManagerOptions options, BranchStore* store, Resource* resource,
      Clock* clock);

  BranchManager(const BranchManager&) = delete;
  BranchManager& operator=(const BranchManager&) = delete;

  // Notes the epoch of a coordinator batch. OK (maybe a new highest);
  // FAILED_PRECONDITION with ErrorInfo STALE_EPOCH when below the highest.
  absl::Status ObserveEpoch(uint64_t epoch) ABSL_LOCKS_EXCLUDED(mu_);

  // Handles one request of a batch of epoch `epoch`; `reply` is called
  // exactly once (maybe inline) with the answer, per the rules above.
  void Handle(uint64_t epoch, const v1::BranchRequest& request, Reply reply)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Transaction ids of PREPARED branches whose outcome should be asked now
  // (at most `max`). Each returned branch's next query is pushed back.
  std::vector<std::string> DueForOutcomeQuery(size_t max)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The coordinator's answer for an in-doubt branch: COMMITTED / ABORTED
  // drive it to that outcome (as a commit/abort request would, without a
  // reply); PENDING does nothing (the backoff is already set). Ignored when
  // the branch is not PREPARED.
  void ApplyOutcome(const std::string& transaction_id, v1::Outcome outcome)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets the finished branches whose retention has passed (in memory,
  // and their records on disk, in the background). Returns how many.
  size_t ForgetFinished() ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t highest_epoch() const ABSL_LOCKS_EXCLUDED(mu_);
  // Branches currently PREPARED (voted YES, no outcome yet).
  size_t prepared_branches() const ABSL_LOCKS_EXCLUDED(mu_);
  // Requests received and not answered yet.
  size_t in_flight_requests() const ABSL_LOCKS_EXCLUDED(mu_);
  // The state name of a branch ("PREPARED", "COMMITTED", ...; "UNKNOWN").
  std::string StateOf(const std::string& transaction_id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& resource_kind() const { return resource_kind_; }

 private:
  enum class Kind { kPrepare, kPrepareOnePhase, kCommit, kAbort };
  enum class State {
    kPreparing,
    kPrepared,
    kCommitting,
    kAborting,
    kCommitted,
    kAborted,
    kReadOnly
  };
  struct Waiter {
    Kind kind;
    uint64_t request_id;
    std::string transaction_id;
    Reply reply;
  };
  // A branch in progress: kPreparing, kPrepared, kCommitting or kAborting.
  struct Entry {
    State state = State::kPreparing;
    // The transaction's deadline from the prepare; InfiniteFuture if none.
    absl::Time deadline = absl::InfiniteFuture();
    bool one_phase = false;
    bool abort_requested = false;
    bool voted_yes = false;
    std::string reason;
    // The PREPARED record while the branch is prepared or being decided.
    BranchRecord record;
    std::vector<Waiter> waiters;
    // COMMITTING or ABORTING: the outcome record is synced (votes can be
    // answered from it while it is delivered to the resource).
    bool outcome_recorded = false;
    // COMMITTING or ABORTING: why the resource has not acknowledged the
    // outcome yet (its last failed delivery); OK while none failed.
    absl::Status apply_error;
    absl::Time next_query_at;
    int query_attempts = 0;
  };
  // A finished branch: what the answers to late duplicates need.
  struct Finished {
    State state;  // kCommitted, kAborted or kReadOnly
    bool voted_yes = false;
    // When ForgetFinished may drop it.
    absl::Time forget_at;
    // Why it aborted; empty unless kAborted.
    std::string reason;
  };
  using EntryMap = absl::flat_hash_map<std::string, Entry>;
  // Work to do once mu_ is released.
  using Actions = std::vector<std::function<void()>>;

  BranchManager(BranchManagerOptions options, BranchStore* store,
                Resource* resource, Clock* clock);

  absl::Status CheckEpochLocked(uint64_t epoch, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `txid` was handed out by a coordinator epoch older than the
  // highest seen (false for an id that is not a coordinator's).
  bool OfEarlierEpochLocked(const std::string& txid) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PrepareLocked(const std::string& txid, const v1::PrepareBranch& prepare,
                     Waiter waiter, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitLocked(const std::string& txid, Waiter waiter, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortLocked(const std::string& txid, const std::string& reason,
                   Waiter waiter, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Syncs an ABORTED record for `txid` (kept until ForgetAt(deadline));
  // then, when `apply`, tells the resource to abort; then answers the
  // entry's waiters.
  void RecordAbortLocked(const std::string& txid, const Entry& entry,
                         absl::Time deadline, bool apply, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a PREPARED (or one-phase PREPARING) branch to its outcome.
  void DecideLocked(const std::string& txid, Entry& entry, bool commit,
                    Actions* actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Asks the resource to prepare; its answer goes to OnPrepared.
  void PrepareResource(const std::string& txid, const v1::Branch& branch,
                       absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // The intent record of a resource that stages elsewhere is synced: ask it
  // to prepare now (or, when an abort came meanwhile, vote NO without it).
  void OnIntentSynced(const std::string& txid, const v1::Branch& branch,
                      absl::Time deadline, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnPrepared(const std::string& txid, PrepareResult result)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A READ_ONLY vote's intent record is deleted (synced): finish the branch.
  void OnIntentDeleted(const std::string& txid, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnPreparedRecordSynced(const std::string& txid,
                              const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The outcome record is synced: deliver it to the resource (when `apply`),
  // then finish.
  void OnOutcomeSynced(const std::string& txid, BranchRecord record,
                       bool commit, bool apply, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnApplied(const std::string& txid, BranchRecord record, bool commit)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A delivery of the outcome to the resource failed (it is retried): the
  // commits and aborts waiting get the error, and so do later ones until it
  // is delivered.
  void OnApplyDelayed(const std::string& txid, const absl::Status& error)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A commit or abort of a COMMITTING or ABORTING branch waits for its
  // delivery, or gets the delivery's error when one failed.
  void AnswerOrWaitForDeliveryLocked(const std::string& txid, Entry& entry,
                                     Waiter waiter, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails `txid`'s waiters (and, for a store error, every later request).
  void Fail(const std::string& txid, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Answers the waiters that `entry`'s state can answer.
  void AnswerWaitersLocked(Entry& entry, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For a COMMITTING or ABORTING entry whose outcome is recorded: the
  // finished state its votes are answered from.
  static State RecordedOutcome(const Entry& entry);
  // `txid`'s outcome record is synced and is being delivered to the
  // resource: its votes need no more (a delivery to an application may take
  // long), so prepares are answered now and from here on.
  void NoteOutcomeRecordedLocked(const std::string& txid, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // If `txid` is finished, answers `waiter` from what is remembered of it
  // and returns true; otherwise returns false and leaves `waiter` untouched.
  bool AnswerIfFinishedLocked(const std::string& txid, Waiter& waiter,
                              Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer to a request of `kind` for a branch in `state` (kPrepared or
  // a finished state), per the barrier rules.
  static v1::BranchReply Answer(State state, bool voted_yes,
                                const std::string& reason, Kind kind);
  v1::BranchReply ErrorReply(const std::string& txid, uint64_t request_id,
                             const absl::Status& status) const;
  void Respond(Waiter waiter, v1::BranchReply reply, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a branch finishing now may be forgotten.
  absl::Time ForgetAt(absl::Time deadline) const;
  // The branch at `it` ends in `state` (kCommitted, kAborted or kReadOnly):
  // answers its waiters, then moves it from entries_ to finished_ (`it` is
  // invalidated).
  void FinishLocked(EntryMap::iterator it, State state, Actions* actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `txid` to finished_ and schedules it for ForgetFinished.
  void RememberFinishedLocked(const std::string& txid, Finished finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BranchManagerOptions options_;
  BranchStore* const store_;
  Resource* const resource_;
  Clock* const clock_;
  const std::string resource_kind_;

  mutable absl::Mutex mu_;
  // Delays between outcome queries of a branch.
  Backoff query_backoff_ ABSL_GUARDED_BY(mu_);
  // Branches in progress. A transaction id is in at most one of entries_
  // and finished_.
  EntryMap entries_ ABSL_GUARDED_BY(mu_);
  // Finished branches, until ForgetFinished drops them: about the
  // retention times the commit rate (~900,000 at 15,000 tx/s and a minute).
  // A B-tree, not a hash map: a hash map of that size rehashes everything
  // at once as it grows, stalling the sidecar's loop for hundreds of
  // milliseconds (absl's flat_hash_map: 0.5 s at a million entries here; a
  // B-tree insert peaked at ~1 ms and was faster on average).
  absl::btree_map<std::string, Finished> finished_ ABSL_GUARDED_BY(mu_);
  // The transaction ids of finished_ by forget time (earliest first). On a
  // deque, which grows without moving what it holds: a vector of a million
  // moves them all at once (a 70 ms push here; on the deque at most ~1 ms).
  std::priority_queue<std::pair<absl::Time, std::string>,
                      std::deque<std::pair<absl::Time, std::string>>,
                      std::greater<>>
      forget_queue_ ABSL_GUARDED_BY(mu_);
  // Transaction ids of entries in state kPrepared.
  absl::flat_hash_set<std::string> prepared_ ABSL_GUARDED_BY(mu_);
  uint64_t highest_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by the first failed store write; every later request gets it.
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_BRANCH_MANAGER_H_
