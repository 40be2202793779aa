#include "tests/simulation/sim_participant.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tests/simulation/sim_random.h"

namespace twopc::simulation {
namespace {

using participant::BranchRecord;
using participant::BranchStore;
using participant::StoreBatch;

constexpr size_t kMaxIdsPerQuery = 1000;

// The kVoteBeforePreparedSynced bug: every write is acknowledged at once,
// before the store has synced it.
class AcknowledgeBeforeSyncStore : public BranchStore {
 public:
  explicit AcknowledgeBeforeSyncStore(BranchStore* store) : store_(store) {}

  void Write(StoreBatch batch, Done done) override {
    store_->Write(std::move(batch), nullptr);
    if (done) done(absl::OkStatus());
  }
  void NoteEpoch(uint64_t epoch) override { store_->NoteEpoch(epoch); }
  absl::StatusOr<participant::RecoveredState> Recover() override {
    return store_->Recover();
  }
  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) override {
    return store_->Get(key);
  }
  absl::StatusOr<std::vector<participant::KvEntry>> Scan(
      absl::string_view prefix, absl::string_view start_after, size_t limit,
      bool* more) override {
    return store_->Scan(prefix, start_after, limit, more);
  }

 private:
  BranchStore* const store_;
};

}  // namespace

SimResource::SimResource(bool callback_mode, ApplicationLedger* ledger)
    : ledger_(callback_mode ? ledger : nullptr) {}

std::string SimResource::CommitMarker(const std::string& transaction_id) {
  return absl::StrCat("committed/", transaction_id);
}

void SimResource::Prepare(const std::string& transaction_id,
                          const v1::Branch& branch, absl::Time /*deadline*/,
                          PrepareDone done) {
  participant::PrepareResult result;
  if (!v1::Vote_Parse(branch.payload(), &result.vote)) {
    result = participant::PrepareResult::No("unplanned branch payload");
  }
  if (result.vote == v1::VOTE_NO) result.reason = "the schedule said NO";
  if (result.vote == v1::VOTE_YES) {
    if (ledger_ != nullptr) ledger_->staged.insert(transaction_id);
    participant::KvWrite* write = result.prepared.add_kv_writes();
    write->set_key(CommitMarker(transaction_id));
    write->set_value("1");
  }
  pending_.push_back({transaction_id, std::move(done), std::move(result)});
}

void SimResource::CompletePrepare(std::mt19937_64& rng) {
  const size_t pick = PickIndex(rng, pending_.size());
  PendingPrepare prepare = std::move(pending_[pick]);
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(pick));
  prepare.done(std::move(prepare.result));
}

void SimResource::AddCommitEffects(const BranchRecord& prepared,
                                   StoreBatch* batch) {
  if (ledger_ != nullptr) return;  // delivered by ApplyOutcome instead
  for (const participant::KvWrite& write : prepared.kv_writes()) {
    batch->kv.push_back(write);
  }
}

void SimResource::ApplyOutcome(const std::string& transaction_id,
                               const BranchRecord& /*record*/, bool committed,
                               ApplyDone done, ApplyDelayed /*delayed*/) {
  if (ledger_ != nullptr) {
    (committed ? ledger_->committed : ledger_->aborted).insert(transaction_id);
  }
  done();
}

SimParticipant::SimParticipant(NodeId id, ParticipantConfig config,
                               SimulatedClock* clock, SimNetwork* network,
                               std::mt19937_64* rng, Trace* trace,
                               VoteObserver on_vote)
    : id_(id),
      config_(std::move(config)),
      clock_(clock),
      network_(network),
      rng_(rng),
      trace_(trace),
      on_vote_(std::move(on_vote)) {
  if (config_.acknowledge_before_sync) {
    buggy_front_ = std::make_unique<AcknowledgeBeforeSyncStore>(&store_);
  }
}

absl::Status SimParticipant::Start() {
  participant::BranchManagerOptions options = config_.options;
  options.participant_id = ParticipantId(id_);
  resource_ = std::make_unique<SimResource>(config_.callback_mode, &ledger_);
  BranchStore* store = buggy_front_ != nullptr
                           ? buggy_front_.get()
                           : static_cast<BranchStore*>(&store_);
  ASSIGN_OR_RETURN(manager_,
                   participant::BranchManager::Create(std::move(options), store,
                                                      resource_.get(), clock_));
  network_->Restart(id_);
  next_poll_ = clock_->Now();
  trace_->Note("  ", ParticipantId(id_), " starts with ",
               manager_->prepared_branches(), " prepared branches");
  return absl::OkStatus();
}

void SimParticipant::Crash() {
  // Nothing may call back into the dead process: drop the store's queued
  // writes (and their callbacks) before the manager and resource go.
  store_.DropUnsynced();
  manager_.reset();
  resource_.reset();
  network_->Crash(id_, clock_->Now());
}

void SimParticipant::Receive(const Message& message) {
  if (const auto* request = std::get_if<BranchRequestMsg>(&message.payload)) {
    const std::string& id = request->request.transaction_id();
    manager_->Handle(
        request->epoch, request->request,
        [this, to = message.from_incarnation](v1::BranchReply reply) {
          OnReply(to, std::move(reply));
        });
    NoteState(id);
  } else if (const auto* answer =
                 std::get_if<OutcomeAnswerMsg>(&message.payload)) {
    for (const auto& [id, outcome] : answer->outcomes) {
      manager_->ApplyOutcome(id, outcome);
      NoteState(id);
    }
  }
}

void SimParticipant::NoteState(const std::string& transaction_id) {
  if (!trace_->enabled()) return;
  trace_->Note("  ", ParticipantId(id_), " has ", transaction_id, " ",
               manager_->StateOf(transaction_id));
}

void SimParticipant::OnReply(uint64_t coordinator_incarnation,
                             v1::BranchReply reply) {
  if (reply.result_case() == v1::BranchReply::kVote) {
    on_vote_(id_, reply.transaction_id(), reply.vote());
  }
  Send(kCoordinator, coordinator_incarnation, BranchReplyMsg{std::move(reply)});
}

void SimParticipant::Send(NodeId to, uint64_t to_incarnation, Payload payload) {
  network_->Send(Message{.from = id_,
                         .to = to,
                         .from_incarnation = 0,
                         .to_incarnation = to_incarnation,
                         .deliver_at = absl::InfinitePast(),
                         .payload = std::move(payload)},
                 clock_->Now());
}

void SimParticipant::Poll() {
  next_poll_ = clock_->Now() + config_.poll_interval;
  if (const size_t forgotten = manager_->ForgetFinished()) {
    trace_->Note("  ", ParticipantId(id_), " forgets ", forgotten,
                 " finished branches");
  }
  std::vector<std::string> due = manager_->DueForOutcomeQuery(kMaxIdsPerQuery);
  if (due.empty()) return;
  // DueForOutcomeQuery iterates a hash set: sort for a reproducible trace.
  std::sort(due.begin(), due.end());
  Send(kCoordinator, 0, OutcomeQueryMsg{std::move(due)});
}

bool SimParticipant::Finished(const std::string& transaction_id) const {
  const std::string state = manager_->StateOf(transaction_id);
  return state == "COMMITTED" || state == "ABORTED" || state == "READ_ONLY" ||
         state == "UNKNOWN";
}

bool SimParticipant::Idle() const {
  return manager_->prepared_branches() == 0 &&
         manager_->in_flight_requests() == 0 &&
         !resource_->has_pending_prepare();
}

SimParticipant::BranchView SimParticipant::View(
    const std::string& transaction_id) {
  BranchView view;
  if (std::optional<BranchRecord> record =
          store_.DurableRecord(transaction_id)) {
    view.committed = record->state() == BranchRecord::COMMITTED;
    // Only an abort after YES rolls prepared state back. An ABORTED record
    // without it is a refusal (NO vote, abort before prepare), which may
    // legitimately follow a commit whose branch was forgotten: a late
    // duplicate prepare then votes NO.
    view.aborted =
        record->state() == BranchRecord::ABORTED && record->voted_yes();
  }
  absl::StatusOr<std::optional<std::string>> marker =
      store_.Get(SimResource::CommitMarker(transaction_id));
  if (marker.ok() && marker->has_value()) view.committed = true;
  if (ledger_.committed.contains(transaction_id)) view.committed = true;
  if (ledger_.aborted.contains(transaction_id)) view.aborted = true;
  view.left_staged = ledger_.staged.contains(transaction_id) &&
                     !ledger_.committed.contains(transaction_id) &&
                     !ledger_.aborted.contains(transaction_id);
  return view;
}

}  // namespace twopc::simulation
