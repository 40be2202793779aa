// SimParticipant: a participant sidecar of the simulation, running the REAL
// participant::BranchManager (barrier, durable votes, in-doubt queries,
// forgetting) over the in-memory FakeBranchStore, whose unsynced writes a
// crash drops. BranchManager owns no threads and reads time only from the
// injected clock, so it can be driven step by step: the schedule decides
// when the store syncs and when the resource finishes a prepare. Around it,
// this class plays the sidecar's link (branch requests in, replies out) and
// its coordinator client (QueryOutcomes, ForgetFinished). Registration and
// heartbeats are left out: participants learn a new coordinator epoch from
// its first request.
//
// The resource is SimResource: it votes what the schedule planned (carried
// in the branch payload: "VOTE_YES", "VOTE_NO", "VOTE_READ_ONLY") and
// answers prepares asynchronously. In kv mode a commit's effect is a
// "committed/<id>" key written in the outcome's batch (like KvResource); in
// callback mode it is delivered to an ApplicationLedger after the outcome
// is recorded (like CallbackResource), and that ledger survives sidecar
// crashes because the application is another process.
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_PARTICIPANT_H_
#define TWOPC_TESTS_SIMULATION_SIM_PARTICIPANT_H_

#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "participant/branch_manager.h"
#include "participant/resource.h"
#include "tests/participant/fake_branch_store.h"
#include "tests/simulation/sim_network.h"
#include "tests/simulation/sim_trace.h"

namespace twopc::simulation {

// What a callback-mode application did, by transaction id: branches it
// staged (asked to prepare a branch planned YES, whether or not its answer
// reached the sidecar) and the outcomes delivered to it.
struct ApplicationLedger {
  std::set<std::string> staged;
  std::set<std::string> committed;
  std::set<std::string> aborted;
};

class SimResource : public participant::Resource {
 public:
  // `ledger` (callback mode only; else nullptr) must outlive the resource.
  SimResource(bool callback_mode, ApplicationLedger* ledger);

  std::string kind() const override { return "sim"; }
  bool applies_in_batch() const override { return ledger_ == nullptr; }
  // Queued: the answer comes with CompletePrepare.
  void Prepare(const std::string& transaction_id, const v1::Branch& branch,
               absl::Time deadline, PrepareDone done) override;
  void AddCommitEffects(const participant::BranchRecord& prepared,
                        participant::StoreBatch* batch) override;
  void ApplyOutcome(const std::string& transaction_id,
                    const participant::BranchRecord& record, bool committed,
                    ApplyDone done, ApplyDelayed delayed) override;
  bool applies_unknown_aborts() const override { return ledger_ != nullptr; }
  void Restore(const std::string&, const participant::BranchRecord&) override {}

  bool has_pending_prepare() const { return !pending_.empty(); }
  // Answers one queued prepare, chosen with `rng`.
  // REQUIRES: has_pending_prepare().
  void CompletePrepare(std::mt19937_64& rng);

  // The key whose presence in the store means "committed" in kv mode.
  static std::string CommitMarker(const std::string& transaction_id);

 private:
  struct PendingPrepare {
    std::string transaction_id;
    PrepareDone done;
    participant::PrepareResult result;
  };

  ApplicationLedger* const ledger_;
  std::vector<PendingPrepare> pending_;
};

struct ParticipantConfig {
  // Callback mode (outcomes delivered to an application) instead of kv.
  bool callback_mode = false;
  // participant_id is filled in by SimParticipant.
  participant::BranchManagerOptions options;
  // How often the coordinator client runs (heartbeat, queries, forgetting).
  absl::Duration poll_interval = absl::Milliseconds(250);
  // Test-only bug: the store acknowledges writes before syncing them.
  bool acknowledge_before_sync = false;
};

class SimParticipant {
 public:
  // Called for every vote the participant sends (before the network).
  using VoteObserver = std::function<void(
      NodeId participant, const std::string& transaction_id, v1::Vote vote)>;

  // What the participant's durable state and application say about one
  // branch: committed (record, kv effect or application), or prepared
  // state rolled back (ABORTED after a YES, or the application told to
  // abort). Both true is itself a violation.
  struct BranchView {
    bool committed = false;
    bool aborted = false;
    // Callback mode: the application staged the branch and was told
    // neither outcome (its reservation is still held).
    bool left_staged = false;
  };

  // Pointers must outlive the participant. It starts down: call Start.
  SimParticipant(NodeId id, ParticipantConfig config, SimulatedClock* clock,
                 SimNetwork* network, std::mt19937_64* rng, Trace* trace,
                 VoteObserver on_vote);

  // A new process over the durable store. Errors from BranchManager::Create.
  // REQUIRES: !up().
  absl::Status Start();
  // Crash: unsynced store writes, pending prepares and memory are lost.
  // REQUIRES: up().
  void Crash();
  bool up() const { return manager_ != nullptr; }
  NodeId id() const { return id_; }

  // --- REQUIRES: up(). ---
  void Receive(const Message& message);
  bool has_unsynced() const { return store_.unsynced() > 0; }
  // One group-commit round of the store.
  void SyncStore() { store_.Sync(); }
  bool has_pending_prepare() const { return resource_->has_pending_prepare(); }
  void CompletePrepare() { resource_->CompletePrepare(*rng_); }
  // When the coordinator client runs next.
  absl::Time next_poll() const { return next_poll_; }
  // One round of the coordinator client: forget old branches, ask the
  // outcome of in-doubt branches.
  void Poll();
  // Whether `transaction_id`'s branch is final here (or unknown).
  bool Finished(const std::string& transaction_id) const;
  // No prepared branch, no unanswered request, no pending prepare.
  bool Idle() const;
  std::string StateOf(const std::string& transaction_id) const {
    return manager_->StateOf(transaction_id);
  }

  // Durable truth, also while down.
  BranchView View(const std::string& transaction_id);

 private:
  void Send(NodeId to, uint64_t to_incarnation, Payload payload);
  void OnReply(uint64_t coordinator_incarnation, v1::BranchReply reply);
  // Traces the branch's state after a change.
  void NoteState(const std::string& transaction_id);

  const NodeId id_;
  const ParticipantConfig config_;
  SimulatedClock* const clock_;
  SimNetwork* const network_;
  std::mt19937_64* const rng_;
  Trace* const trace_;
  const VoteObserver on_vote_;

  // Durable across crashes: the disk and the application.
  participant::FakeBranchStore store_;
  ApplicationLedger ledger_;
  // What BranchManager writes to: store_, or the buggy front for
  // acknowledge_before_sync.
  std::unique_ptr<participant::BranchStore> buggy_front_;
  // One process incarnation.
  std::unique_ptr<SimResource> resource_;
  std::unique_ptr<participant::BranchManager> manager_;
  absl::Time next_poll_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_PARTICIPANT_H_
