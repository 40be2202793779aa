// SimCoordinator: the coordinator process of the simulation. Every
// transaction is driven by the REAL protocol core, coordinator::
// TransactionMachine. Around it, this class models what TransactionManager
// does (TransactionManager itself cannot be driven deterministically: it
// runs a timer thread on real time and writes RocksDB):
//   * carries out the machine's actions: branch requests onto the network
//     (prepares carry the deadline, every request the epoch), decision-log
//     writes (forced ones call OnPersisted after the log sync), client
//     replies, timers, finishing;
//   * participants' answers, including a late YES for a transaction that is
//     gone (answered with an abort unless it committed), delivery failures,
//     and QueryOutcomes (PENDING while undecided, presumed abort for unknown
//     ids);
//   * client calls Begin, Commit, Abort and Get (lookup: live, then finished
//     in this incarnation, then the durable log, then presumed abort for ids
//     handed out earlier);
//   * crash (all memory lost, clients waiting get nothing) and start (new
//     epoch; every unfinished logged transaction goes through FromLog and
//     Recover).
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_COORDINATOR_H_
#define TWOPC_TESTS_SIMULATION_SIM_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/transaction_machine.h"
#include "tests/simulation/injected_bug.h"
#include "tests/simulation/sim_decision_log.h"
#include "tests/simulation/sim_network.h"
#include "tests/simulation/sim_trace.h"

namespace twopc::simulation {

class SimCoordinator {
 public:
  // What a client is told: `outcome` (COMMITTED or ABORTED) of a transaction.
  using Told = std::function<void(const std::string& transaction_id,
                                  v1::Outcome outcome)>;

  // Pointers must outlive the coordinator. The coordinator starts down:
  // call Start.
  SimCoordinator(SimulatedClock* clock, SimNetwork* network,
                 SimDecisionLog* log, Trace* trace,
                 coordinator::RetryPolicy retry, InjectedBug bug);

  // Starts a new incarnation: takes the next epoch and recovers every
  // unfinished transaction in the durable log. REQUIRES: !up().
  void Start();
  // Crash: everything in memory is lost (clients waiting get no answer)
  // and the log loses what it had not synced. REQUIRES: up().
  void Crash();
  bool up() const { return up_; }
  uint64_t epoch() const { return epoch_; }

  // --- Client API. REQUIRES: up(). ---

  // A new transaction with `branches` (distinct participants), ACTIVE until
  // Commit; its deadline is now + `timeout`. Returns its id.
  std::string Begin(const std::vector<v1::Branch>& branches,
                    absl::Duration timeout);
  // Starts phase 1 of an ACTIVE transaction, or waits on one already
  // committing; `told` runs once the outcome is decided (maybe at once).
  // A transaction unknown here is looked up (Get) and answered if decided.
  void Commit(const std::string& transaction_id, Told told);
  // OK: the transaction is aborted; FAILED_PRECONDITION: it is committed;
  // UNAVAILABLE: its COMMIT record is being written (outcome unknown).
  absl::Status Abort(const std::string& transaction_id);
  // The outcome as Get would report it: PENDING while undecided (including
  // while the COMMIT record is being written), COMMITTED, ABORTED;
  // NOT_FOUND for an id this coordinator never handed out.
  absl::StatusOr<v1::Outcome> Lookup(const std::string& transaction_id) const;

  // --- Network and timers. REQUIRES: up(). ---

  // Handles a message addressed to the coordinator.
  void Receive(const Message& message);
  // When the earliest timer is due; nullopt when none is set.
  std::optional<absl::Time> NextTimer() const;
  // Fires the earliest timer. REQUIRES: it is due.
  void FireTimer();
  // Transactions not final yet.
  size_t live_transactions() const { return live_.size(); }

 private:
  struct Entry {
    explicit Entry(coordinator::TransactionMachine m) : machine(std::move(m)) {}
    coordinator::TransactionMachine machine;
    // The work to send with each prepare, by participant id.
    std::map<std::string, v1::Branch> work;
    // Clients waiting for the decision.
    std::vector<Told> waiting;
    absl::Time wake_at = absl::InfiniteFuture();
  };

  Entry* FindLive(const std::string& transaction_id);
  // Carries out `actions` of a live transaction, in order; may finish it.
  void Apply(const std::string& transaction_id, coordinator::Actions actions);
  void SendBranchRequest(const std::string& participant_id,
                         v1::BranchRequest request);
  void SetTimer(Entry& entry, const std::string& transaction_id,
                absl::Time when);
  void Finish(const std::string& transaction_id);
  // The forced COMMIT record written by `incarnation` is synced.
  void OnPersisted(const std::string& transaction_id, uint64_t incarnation);
  void OnBranchReply(NodeId participant, const v1::BranchReply& reply);
  void OnDeliveryFailure(NodeId participant, const std::string& transaction_id);
  void AnswerOutcomeQuery(const Message& query);
  // QueryOutcomes' answer for one id.
  v1::Outcome QueryOutcome(const std::string& transaction_id);
  // What recovery starts from for a logged `record` (the record itself,
  // unless the kRecoveryAbortsLoggedCommit bug is injected).
  internal::TransactionRecord RecoveredRecord(
      internal::TransactionRecord record) const;

  SimulatedClock* const clock_;
  SimNetwork* const network_;
  SimDecisionLog* const log_;
  Trace* const trace_;
  const coordinator::RetryPolicy retry_;
  const InjectedBug bug_;

  bool up_ = false;
  // Bumped by every Start, so callbacks of a crashed incarnation are ignored.
  uint64_t incarnation_ = 0;
  uint64_t epoch_ = 0;
  uint64_t next_sequence_ = 1;
  std::map<std::string, std::unique_ptr<Entry>> live_;
  // Transactions finished in this incarnation (the real "recent" cache).
  std::map<std::string, internal::TransactionRecord> finished_;
  // (wake-up time, transaction id); one per live transaction at most.
  std::set<std::pair<absl::Time, std::string>> timers_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_COORDINATOR_H_
