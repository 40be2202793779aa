#include "tests/simulation/schedule.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/transaction_machine.h"
#include "participant/branch_manager.h"
#include "tests/simulation/invariant_checker.h"
#include "tests/simulation/sim_clients.h"
#include "tests/simulation/sim_coordinator.h"
#include "tests/simulation/sim_decision_log.h"
#include "tests/simulation/sim_network.h"
#include "tests/simulation/sim_participant.h"
#include "tests/simulation/sim_random.h"
#include "tests/simulation/sim_trace.h"

namespace twopc::simulation {
namespace {

// Heal steps after which an unsettled schedule is a liveness failure. The
// most that 25,000 schedules needed was under 800 (parked retries, every
// 10 s of simulated time reached in 250 ms jumps, take the longest).
constexpr int kMaxHealSteps = 5'000;

// Step weights: how likely each kind of event is, when it can happen.
constexpr double kDeliverWeight = 8;
constexpr double kTimerWeight = 4;
constexpr double kLogSyncWeight = 3;
constexpr double kClientWeight = 3;
constexpr double kStoreSyncWeight = 2;
constexpr double kPrepareWeight = 2;
constexpr double kTimePassesWeight = 1.5;
constexpr double kRestartWeight = 1.5;
constexpr double kPollWeight = 1;
// A client that gives up waiting for Commit and calls Abort.
constexpr double kImpatientClientWeight = 0.03;

// Short timings so that retries, in-doubt queries, parking and forgetting
// all happen within a schedule.
coordinator::RetryPolicy SimRetryPolicy() {
  return {.initial_backoff = absl::Milliseconds(100),
          .max_backoff = absl::Seconds(2),
          .jitter = 0.2,
          .park_after_attempts = 6,
          .parked_interval = absl::Seconds(10)};
}

// `jitter_seed` comes from the schedule's seed, so a schedule replays.
participant::BranchManagerOptions SimBranchOptions(uint64_t jitter_seed) {
  return {.participant_id = "",
          .in_doubt_after = absl::Seconds(1),
          .query_backoff_initial = absl::Milliseconds(250),
          .query_backoff_max = absl::Seconds(2),
          .query_backoff_jitter = 0.2,
          .jitter_seed = jitter_seed,
          .finished_retention = absl::Seconds(3),
          .finished_retention_without_deadline = absl::Seconds(10),
          .on_fatal = nullptr};
}

// Everything the seed decides before the first step.
struct Shape {
  std::vector<bool> callback_mode;  // per participant
  std::vector<ClientPlan> transactions;
  NetworkFaults faults;
  double crash_weight = 0;
  int fault_steps = 0;

  std::string Describe() const {
    return absl::StrCat(
        callback_mode.size(), " participants, ", transactions.size(),
        " transactions, loss ", faults.loss, ", duplication ", faults.duplicate,
        ", delay up to ", absl::FormatDuration(faults.max_delay),
        ", crash weight ", crash_weight, ", ", fault_steps, " fault steps");
  }
};

std::vector<PlannedBranch> DrawBranches(std::mt19937_64& rng,
                                        int participants) {
  std::vector<NodeId> nodes(participants);
  for (int i = 0; i < participants; ++i) nodes[i] = i;
  std::shuffle(nodes.begin(), nodes.end(), rng);
  const int count =
      std::uniform_int_distribution<int>(1, std::min(4, participants))(rng);
  std::discrete_distribution<int> vote({/*YES=*/8, /*NO=*/0.7,
                                        /*READ_ONLY=*/1.3});
  constexpr v1::Vote kVotes[] = {v1::VOTE_YES, v1::VOTE_NO, v1::VOTE_READ_ONLY};
  std::vector<PlannedBranch> branches;
  for (int i = 0; i < count; ++i) {
    branches.push_back({.participant = nodes[i], .vote = kVotes[vote(rng)]});
  }
  return branches;
}

Shape DrawShape(std::mt19937_64& rng) {
  Shape shape;
  const int participants = std::uniform_int_distribution<int>(2, 5)(rng);
  for (int i = 0; i < participants; ++i) {
    shape.callback_mode.push_back(Chance(rng, 0.5));
  }
  const int transactions = std::uniform_int_distribution<int>(1, 8)(rng);
  for (int i = 0; i < transactions; ++i) {
    shape.transactions.push_back(
        {.branches = DrawBranches(rng, participants),
         .interactive = Chance(rng, 0.3),
         .timeout = RandomDuration(rng, absl::Seconds(1), absl::Seconds(10))});
  }
  shape.faults.loss = PickOne<double>(rng, {0, 0.01, 0.05, 0.2});
  shape.faults.duplicate = PickOne<double>(rng, {0, 0.05, 0.2});
  shape.faults.max_delay = PickOne<absl::Duration>(
      rng, {absl::Milliseconds(5), absl::Milliseconds(100), absl::Seconds(1)});
  shape.crash_weight = PickOne<double>(rng, {0, 0.02, 0.08});
  shape.fault_steps = std::uniform_int_distribution<int>(50, 500)(rng);
  return shape;
}

class ScheduleRunner {
 public:
  explicit ScheduleRunner(const ScheduleOptions& options)
      : options_(options),
        rng_(options.seed),
        shape_(DrawShape(rng_)),
        trace_(options.trace),
        network_(&rng_, &trace_),
        coordinator_(&clock_, &network_, &log_, &trace_, SimRetryPolicy(),
                     options.bug),
        checker_(&coordinator_, &log_, &participants_),
        clients_(shape_.transactions, &coordinator_, &checker_, &rng_,
                 &trace_) {
    for (size_t i = 0; i < shape_.callback_mode.size(); ++i) {
      ParticipantConfig config{
          .callback_mode = shape_.callback_mode[i],
          .options = SimBranchOptions(options.seed * 1000 + i + 1),
          .poll_interval = absl::Milliseconds(250),
          .acknowledge_before_sync =
              options.bug == InjectedBug::kVoteBeforePreparedSynced};
      participants_.push_back(std::make_unique<SimParticipant>(
          static_cast<NodeId>(i), std::move(config), &clock_, &network_, &rng_,
          &trace_,
          [this](NodeId participant, const std::string& id, v1::Vote vote) {
            checker_.OnVoteSent(participant, id, vote);
          }));
    }
  }

  ScheduleResult Run() {
    result_.shape = shape_.Describe();
    trace_.Note("seed ", options_.seed, ": ", result_.shape);
    coordinator_.Start();
    for (auto& participant : participants_) StartParticipant(*participant);
    network_.set_faults(shape_.faults);
    for (int i = 0; i < shape_.fault_steps && !result_.failure; ++i) {
      RunStep(FaultPhaseChoices());
    }
    Heal();
    CountOutcomes();
    result_.steps = step_;
    result_.trace = trace_.lines();
    return std::move(result_);
  }

 private:
  // Something that can happen now, and how likely it is.
  struct Choice {
    double weight;
    std::function<void()> happen;
  };

  // Faults off until everything settles, within kMaxHealSteps.
  void Heal() {
    if (result_.failure) return;
    NetworkFaults calm = shape_.faults;
    calm.loss = 0;
    calm.duplicate = 0;
    network_.set_faults(calm);
    Note("heal: faults off");
    for (int heal_steps = 0; !result_.failure && !Quiescent(); ++heal_steps) {
      if (heal_steps == kMaxHealSteps) {
        result_.failure = absl::StrCat(
            "step ", step_, ": liveness: not settled after ", kMaxHealSteps,
            " heal steps: ", checker_.DescribeUnsettled(), "; ",
            network_.in_flight(), " messages in flight");
        return;
      }
      RunStep(HealPhaseChoices());
    }
    if (result_.failure) return;
    if (std::optional<std::string> violation = checker_.CheckFinal()) {
      result_.failure = absl::StrCat("after healing: ", *violation);
    }
  }

  void RunStep(const std::vector<Choice>& choices) {
    ++step_;
    std::vector<double> weights;
    for (const Choice& choice : choices) weights.push_back(choice.weight);
    std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
    choices[pick(rng_)].happen();
    if (std::optional<std::string> violation = checker_.CheckSafety()) {
      result_.failure = absl::StrCat("step ", step_, ": ", *violation);
    }
  }

  std::vector<Choice> FaultPhaseChoices() {
    std::vector<Choice> choices = ProgressChoices();
    if (coordinator_.up()) AddClientChoices(choices);
    AddCrashAndRestartChoices(choices);
    choices.push_back({kTimePassesWeight, [this] {
                         Advance(RandomDuration(rng_, absl::Milliseconds(1),
                                                absl::Milliseconds(300)));
                       }});
    return choices;
  }

  std::vector<Choice> HealPhaseChoices() {
    std::vector<Choice> choices = ProgressChoices();
    AddRestartChoices(choices);
    if (choices.empty()) {
      choices.push_back({1, [this] { AdvanceToNextEvent(); }});
    }
    return choices;
  }

  // What the system does by itself when time allows.
  std::vector<Choice> ProgressChoices() {
    std::vector<Choice> choices;
    const absl::Time now = clock_.Now();
    if (network_.HasDue(now)) {
      choices.push_back({kDeliverWeight, [this] { Deliver(); }});
    }
    if (coordinator_.up() && log_.has_unsynced()) {
      choices.push_back({kLogSyncWeight, [this] {
                           Note("decision log syncs");
                           log_.Sync();
                         }});
    }
    const std::optional<absl::Time> timer =
        coordinator_.up() ? coordinator_.NextTimer() : std::nullopt;
    if (timer.has_value() && *timer <= now) {
      choices.push_back({kTimerWeight, [this] {
                           Note("coordinator timer");
                           coordinator_.FireTimer();
                         }});
    }
    for (auto& participant : participants_) {
      SimParticipant* p = participant.get();
      if (!p->up()) continue;
      if (p->has_unsynced()) {
        choices.push_back({kStoreSyncWeight, [this, p] {
                             Note(NameOf(*p), " store syncs");
                             p->SyncStore();
                           }});
      }
      if (p->has_pending_prepare()) {
        choices.push_back({kPrepareWeight, [this, p] {
                             Note(NameOf(*p), " resource answers a prepare");
                             p->CompletePrepare();
                           }});
      }
      if (p->next_poll() <= now) {
        choices.push_back({kPollWeight, [this, p] {
                             Note(NameOf(*p), " coordinator client round");
                             p->Poll();
                           }});
      }
    }
    return choices;
  }

  void AddClientChoices(std::vector<Choice>& choices) {
    if (clients_.HasWork()) {
      choices.push_back({kClientWeight, [this] {
                           Note("a client calls");
                           clients_.Act();
                         }});
    }
    if (clients_.HasWaiting()) {
      choices.push_back({kImpatientClientWeight, [this] {
                           Note("a waiting client gives up");
                           clients_.GiveUp();
                         }});
    }
  }

  void AddCrashAndRestartChoices(std::vector<Choice>& choices) {
    AddRestartChoices(choices);
    if (shape_.crash_weight == 0) return;
    if (coordinator_.up()) {
      choices.push_back({shape_.crash_weight, [this] {
                           Note("coordinator crashes");
                           ++result_.crashes;
                           coordinator_.Crash();
                         }});
    }
    // All participants together crash as often as the coordinator.
    const double participant_weight =
        shape_.crash_weight / static_cast<double>(participants_.size());
    for (auto& participant : participants_) {
      SimParticipant* p = participant.get();
      if (!p->up()) continue;
      choices.push_back({participant_weight, [this, p] {
                           Note(NameOf(*p), " crashes");
                           ++result_.crashes;
                           p->Crash();
                         }});
    }
  }

  void AddRestartChoices(std::vector<Choice>& choices) {
    if (!coordinator_.up()) {
      choices.push_back({kRestartWeight, [this] {
                           Note("coordinator restarts");
                           coordinator_.Start();
                         }});
    }
    for (auto& participant : participants_) {
      SimParticipant* p = participant.get();
      if (p->up()) continue;
      choices.push_back({kRestartWeight, [this, p] {
                           Note(NameOf(*p), " restarts");
                           StartParticipant(*p);
                         }});
    }
  }

  void StartParticipant(SimParticipant& participant) {
    const absl::Status status = participant.Start();
    if (!status.ok()) {
      result_.failure = absl::StrCat("step ", step_, ": ", NameOf(participant),
                                     " cannot start: ", status.ToString());
    }
  }

  void Deliver() {
    const Message message = network_.TakeDue(clock_.Now());
    if (trace_.enabled()) Note("deliver ", message.Describe());
    if (message.to == kCoordinator) {
      coordinator_.Receive(message);
    } else {
      participants_[message.to]->Receive(message);
    }
  }

  void Advance(absl::Duration duration) {
    clock_.Advance(duration);
    Note("time passes");
  }

  // Nothing can happen now: move the clock to the next thing that will.
  void AdvanceToNextEvent() {
    std::optional<absl::Time> next = network_.NextDue();
    auto consider = [&next](absl::Time t) {
      if (!next.has_value() || t < *next) next = t;
    };
    if (std::optional<absl::Time> timer = coordinator_.NextTimer()) {
      consider(*timer);
    }
    for (const auto& participant : participants_) {
      consider(participant->next_poll());
    }
    Advance(*next - clock_.Now());
  }

  bool Quiescent() const {
    if (!checker_.Settled() || network_.in_flight() > 0 ||
        log_.has_unsynced()) {
      return false;
    }
    return std::none_of(participants_.begin(), participants_.end(),
                        [](const auto& p) { return p->has_unsynced(); });
  }

  void CountOutcomes() {
    if (!coordinator_.up()) return;
    for (const std::string& id : clients_.BegunIds()) {
      absl::StatusOr<v1::Outcome> outcome = coordinator_.Lookup(id);
      if (!outcome.ok()) continue;
      if (*outcome == v1::OUTCOME_COMMITTED) ++result_.committed;
      if (*outcome == v1::OUTCOME_ABORTED) ++result_.aborted;
    }
  }

  static std::string NameOf(const SimParticipant& participant) {
    return NodeName(participant.id());
  }

  // A step's line in the trace: "#12 +1.234s what".
  template <typename... Parts>
  void Note(const Parts&... parts) {
    if (!trace_.enabled()) return;
    trace_.Note("#", step_, " +", absl::FormatDuration(clock_.Now() - kStart),
                " ", parts...);
  }

  static constexpr absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

  const ScheduleOptions options_;
  std::mt19937_64 rng_;
  Shape shape_;
  Trace trace_;
  SimulatedClock clock_{kStart};
  SimNetwork network_;
  SimDecisionLog log_;
  SimCoordinator coordinator_;
  std::vector<std::unique_ptr<SimParticipant>> participants_;
  InvariantChecker checker_;
  SimClients clients_;
  int step_ = 0;
  ScheduleResult result_;
};

}  // namespace

ScheduleResult RunSchedule(const ScheduleOptions& options) {
  return ScheduleRunner(options).Run();
}

}  // namespace twopc::simulation
