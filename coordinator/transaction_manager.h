// TransactionManager: the runtime around TransactionMachine. It owns every
// live transaction, carries out the machines' actions (sends on participant
// links, decision-log writes through group commit, client replies, timers)
// and answers the client, participant and operator APIs.
//
// Live transactions (not yet final) are in memory; finished ones are read
// back from the decision log (with a small cache of the most recent) until
// compaction removes them after `retention`.
//
// Locking: one mutex guards all live transactions. Every action a machine
// emits is non-blocking (queue a send, queue a log write, complete a
// waiter, arm a timer), so actions run under the lock, in order, which keeps
// log writes of one transaction in the order the machine asked for them.
// Callbacks from links and the log writer take the lock themselves; nothing
// calls out of the manager while holding it except those non-blocking
// queues. Known exception, to be removed: lookups of finished transactions
// (Get, Watch, QueryOutcomes, idempotency-key checks) read RocksDB under the
// lock.
//
// Thread-safety: all public methods may be called concurrently.
#ifndef TWOPC_COORDINATOR_TRANSACTION_MANAGER_H_
#define TWOPC_COORDINATOR_TRANSACTION_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "coordinator/audit_log.h"
#include "coordinator/limits.h"
#include "coordinator/participant_registry.h"
#include "coordinator/topic_registry.h"
#include "coordinator/transaction_machine.h"
#include "storage/decision_log.h"
#include "twopc/v1/admin.pb.h"
#include "twopc/v1/participant.pb.h"
#include "twopc/v1/transaction.pb.h"

namespace twopc::coordinator {

struct ManagerOptions {
  Limits limits;
  RetryPolicy retry;
  // How long finished transactions stay inspectable before compaction.
  absl::Duration retention = absl::Hours(24);
  // How often compaction runs.
  absl::Duration compaction_interval = absl::Minutes(1);
  // Finished transactions kept in memory for fast Get/Watch.
  size_t recent_cache_size = 10'000;
  // Called when the decision log cannot be written: the outcome of what was
  // being decided is unknown, so the process must stop and let recovery
  // read what is durable. The default prints `message` and exits (70).
  std::function<void(const std::string& message)> on_fatal;
};

class TransactionManager {
 public:
  // Called once with the result of Execute or Commit: the Transaction when
  // committed; ABORTED when definitely aborted; an ambiguous code when the
  // outcome is unknown. May run on any thread, with internal locks held:
  // it must only hand the result over (e.g. notify a waiting thread).
  using Done = std::function<void(absl::StatusOr<v1::Transaction>)>;

  // All pointers must outlive the manager. `registry` must deliver link
  // callbacks to OnReply / OnDeliveryFailure.
  TransactionManager(uint64_t epoch, Clock* clock, storage::Store* store,
                     storage::DecisionLog* log, AuditLog* audit,
                     ParticipantRegistry* registry, TopicRegistry* topics,
                     ManagerOptions options);
  // Stops the timer thread. Waiters still pending get UNAVAILABLE.
  ~TransactionManager();

  // Reads the decision log, aborts every undecided transaction and re-drives
  // phase 2 of every decided, unfinished one; then starts the timer and
  // compaction threads. Call once, before serving. DATA_LOSS for a corrupt
  // log.
  absl::Status Start();

  // The first step of a graceful shutdown. From now on, a request that
  // would start a new transaction (Execute, Begin) is refused UNAVAILABLE
  // with ErrorInfo DEFINITE, reason SHUTTING_DOWN: it was not started, and
  // a client may send it to the coordinator that comes next. Everything
  // else goes on, so the transactions already started can be decided: their
  // votes, a client's Commit, Get, retries of a keyed Execute. Returns once
  // every live transaction is decided (its waiting clients answered), or
  // after `grace`. Idempotent.
  void Drain(absl::Duration grace) ABSL_LOCKS_EXCLUDED(mu_);

  // Stops timers and compaction, answers every waiting client UNAVAILABLE
  // (ambiguous) and refuses new requests with UNAVAILABLE. Call before
  // shutting the gRPC server down. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // --- TransactionService (codes as documented in transaction.proto) ---
  void Execute(v1::ExecuteRequest request, Done done);
  absl::StatusOr<v1::BeginResponse> Begin(const v1::BeginRequest& request);
  absl::Status AddBranch(const v1::AddBranchRequest& request);
  absl::StatusOr<uint32_t> AddMessages(const v1::AddMessagesRequest& request);
  void Commit(const v1::CommitRequest& request, Done done);
  absl::StatusOr<v1::Transaction> Abort(const v1::AbortRequest& request);
  absl::StatusOr<v1::Transaction> Get(const v1::TransactionRef& ref);

  // For Watch: waits (at most `timeout`) until the transaction differs from
  // `previous` and returns it (or returns it at once when it already does).
  absl::StatusOr<v1::Transaction> WaitForChange(
      const v1::TransactionRef& ref, const v1::Transaction& previous,
      absl::Duration timeout);

  // --- CoordinatorService ---
  std::vector<v1::QueryOutcomesResponse::Result> QueryOutcomes(
      const std::vector<std::string>& transaction_ids);

  // --- Link callbacks ---
  // Replies from one participant, in the order received, under one
  // acquisition of the lock.
  void OnReplies(const std::string& participant_id,
                 absl::Span<const v1::BranchReply> replies)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnDeliveryFailure(const std::string& participant_id,
                         const std::string& transaction_id,
                         const std::string& error) ABSL_LOCKS_EXCLUDED(mu_);

  // --- Operators (AdminService; codes as documented in admin.proto) ---
  v1::Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);
  // Live and logged transactions, newest first, filtered and paged. A page
  // may come back short (with a token) when many records did not match.
  absl::StatusOr<v1::ListTransactionsResponse> List(
      const v1::ListTransactionsRequest& request) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // A transaction's branches, timeline (including audited operator actions)
  // and messages.
  absl::StatusOr<v1::TransactionDetail> Describe(const v1::TransactionRef& ref)
      ABSL_LOCKS_EXCLUDED(mu_);
  // In doubt, being retried or parked for at least `older_than`, longest
  // stuck first, each with the reason.
  std::vector<v1::StuckTransaction> ListStuck(absl::Duration older_than) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unfinished transactions with a branch on each participant.
  std::map<std::string, uint32_t> UnfinishedByParticipant() const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Who asks for an operator action on what, and why (written to the audit
  // log).
  struct OperatorRequest {
    // The transaction id; the participant id for RemoveParticipant.
    std::string target;
    std::string reason;
    std::string operator_name;
  };
  // Each checks the action against the transaction's state, writes the audit
  // record (also for a refusal) and only then acts.
  absl::StatusOr<v1::TransactionDetail> Retry(const OperatorRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::TransactionDetail> Park(const OperatorRequest& request,
                                             bool parked)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::TransactionDetail> Force(const OperatorRequest& request,
                                              v1::Outcome outcome)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Removes participant `request.target` from the registry (synced) and
  // closes its link, unless a live transaction still has a branch on it.
  // A reason is required. Audited like the actions above.
  // OK; NOT_FOUND (not registered); FAILED_PRECONDITION (unfinished
  // transactions, one of them named); INVALID_ARGUMENT.
  // Transactions that name it are refused with NOT_FOUND from the check
  // on, so none can prepare there once the check passed. A sidecar still
  // running registers again at its next heartbeat (answered NOT_FOUND):
  // stop it first.
  absl::Status RemoveParticipant(const OperatorRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t epoch() const { return epoch_; }

 private:
  struct Entry {
    explicit Entry(TransactionMachine m) : machine(std::move(m)) {}
    TransactionMachine machine;
    // The work to send with each prepare, by participant, until it is sent.
    std::map<std::string, v1::Branch> work;
    // Clients waiting for the decision, and for completion.
    std::vector<Done> on_decided;
    std::vector<Done> on_finished;
    absl::Time wake_at = absl::InfiniteFuture();
    // Bytes of the branches and messages added to an interactive
    // transaction so far (for max_transaction_bytes).
    size_t bytes = 0;
    // The log holds the index entry of the idempotency key (written with
    // the transaction's first record).
    bool key_indexed = false;
  };

  // Creates a live transaction (ACTIVE). REQUIRES: validated input.
  Entry* CreateLocked(const std::string& idempotency_key, uint64_t fingerprint,
                      absl::Duration timeout,
                      const google::protobuf::Map<std::string, std::string>&
                          labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live transaction `transaction_id` if it is ACTIVE (open for
  // `what`); otherwise ABORTED, FAILED_PRECONDITION or NOT_FOUND.
  absl::StatusOr<Entry*> FindActiveLocked(const std::string& transaction_id,
                                          absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finds a live transaction by id; nullptr if not live.
  Entry* FindLiveLocked(const std::string& transaction_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A live or finished transaction's record by ref, or NOT_FOUND (with the
  // presumed-abort explanation). May read the log.
  absl::StatusOr<internal::TransactionRecord> LookupLocked(
      const v1::TransactionRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits on an existing transaction for Execute/Commit retries.
  void AttachLocked(Entry* entry, bool wait_for_completion, Done done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnReplyLocked(const std::string& participant_id,
                     const v1::BranchReply& reply, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Carries out `actions` for `entry` in order; may destroy the entry.
  void ApplyLocked(const std::string& transaction_id, Actions actions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // False when the participant is not registered.
  bool SendLocked(Entry& entry, const std::string& participant_id,
                  v1::BranchRequest request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnPersisted(const std::string& transaction_id,
                   const absl::Status& status,
                   std::vector<v1::MessagePosition> positions)
      ABSL_LOCKS_EXCLUDED(mu_);
  // INVALID_ARGUMENT when adding `more` bytes to `entry` would pass
  // max_transaction_bytes.
  absl::Status CheckTransactionBytes(const Entry& entry, size_t more) const;
  // Checks `messages` (limits, topics, partitions) and creates nothing:
  // with auto-creation on, AddMessageLocked creates unknown topics.
  absl::Status ValidateMessages(
      const google::protobuf::RepeatedPtrField<v1::Message>& messages,
      int already_added);
  // Adds `message` to a live transaction, resolving its partition (and,
  // with auto-creation on, creating its topic). REQUIRES: ValidateMessages
  // passed for it.
  absl::Status AddMessageLocked(Entry& entry, v1::Message message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const std::string& transaction_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberRecentLocked(internal::TransactionRecord record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The id an idempotency key names, among live and recently finished
  // transactions; empty if none.
  std::string FindKeyLocked(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE once Stop() was called.
  absl::Status CheckRunningLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK unless draining (or stopped): then why no new transaction starts.
  absl::Status CheckMayStartLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllDecidedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND while RemoveParticipant removes `participant_id`.
  absl::Status CheckNotRemovingLocked(const std::string& participant_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets *allowed to `check` of the transaction's machine (the live one, or
  // one rebuilt from the log for a finished transaction). NOT_FOUND and
  // other lookup errors are returned instead.
  absl::Status CheckOperatorActionLocked(
      const std::string& transaction_id,
      const std::function<absl::Status(const TransactionMachine&)>& check,
      absl::Status* allowed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The audit record of `action` on request.target, stamped now.
  v1::AuditRecord AuditRecordOf(const OperatorRequest& request,
                                const std::string& action,
                                absl::string_view result) const;
  // Appends an audit record (synced) of `action` on request.target;
  // UNAVAILABLE when it cannot.
  absl::Status WriteAudit(const OperatorRequest& request,
                          const std::string& action, absl::string_view result)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Runs an audited operator action: `check` says whether it is allowed, the
  // audit record is written (without the manager's lock), and `act` runs on
  // the live machine if the check still passes then.
  absl::StatusOr<v1::TransactionDetail> RunOperatorAction(
      const OperatorRequest& request, const std::string& action,
      const std::function<absl::Status(const TransactionMachine&)>& check,
      const std::function<Actions(TransactionMachine&)>& act)
      ABSL_LOCKS_EXCLUDED(mu_);
  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void CompactionLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Compact() ABSL_LOCKS_EXCLUDED(mu_);

  const uint64_t epoch_;
  Clock* const clock_;
  storage::Store* const store_;
  storage::DecisionLog* const log_;
  AuditLog* const audit_;
  ParticipantRegistry* const registry_;
  TopicRegistry* const topics_;
  const ManagerOptions options_;
  const absl::Time start_time_;

  mutable absl::Mutex mu_;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::unique_ptr<Entry>> live_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> live_keys_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, internal::TransactionRecord> recent_
      ABSL_GUARDED_BY(mu_);
  // Idempotency keys of recently finished transactions: their final record
  // may not be readable from the log yet.
  std::map<std::string, std::string> recent_keys_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> recent_order_ ABSL_GUARDED_BY(mu_);
  // (wake-up time, transaction id); one per live transaction at most.
  std::set<std::pair<absl::Time, std::string>> timers_ ABSL_GUARDED_BY(mu_);
  // Bumped on every change to any transaction; Watch waits on it.
  uint64_t change_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Highest record id removed by compaction ("" = none).
  std::string compacted_through_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  // Participants RemoveParticipant is removing: no transaction may start a
  // branch on them.
  absl::flat_hash_set<std::string> removing_ ABSL_GUARDED_BY(mu_);

  // Counters for stats.
  uint64_t committed_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t aborted_total_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<absl::Time> recent_commits_ ABSL_GUARDED_BY(mu_);
  std::deque<absl::Duration> commit_latencies_ ABSL_GUARDED_BY(mu_);

  std::thread timer_thread_;
  std::thread compaction_thread_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_TRANSACTION_MANAGER_H_
