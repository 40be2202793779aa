#include "common/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/types/optional.h"
#include "common/status_macros.h"

namespace twopc::failpoint {
namespace internal {

std::atomic<bool> any_armed{false};

}  // namespace internal

namespace {

constexpr char kEnvironmentVariable[] = "TWOPC_FAILPOINTS";

// The known points. A new point goes here first, then into the code.
constexpr PointInfo kPoints[] = {
    {"storage.before_sync",
     "GroupCommitWriter's thread: a round's WriteBatch is built, its synced "
     "write not started (coordinator: the decision log; sidecar: the branch "
     "store)",
     "nothing in the round is durable or acknowledged: recovery treats its "
     "records as never written (an undecided transaction is presumed "
     "aborted; a prepare that was not synced was never voted YES)",
     false},
    {"storage.after_sync",
     "GroupCommitWriter's thread: the round's batch is synced; queue offsets "
     "not yet published, no `done` callback run",
     "durable records nobody was told of: a synced COMMIT must still commit "
     "everywhere after recovery, and its messages appear exactly once",
     false},
    {"storage.sync_error",
     "GroupCommitWriter's thread, in place of the synced write",
     "error: the write fails as a failed fsync does (IO error: Input/output "
     "error) and nothing is written; the writer then fails everything, and "
     "the process stops (exit 70) without acknowledging anything",
     true},
    {"storage.disk_full",
     "GroupCommitWriter's thread, in place of the synced write",
     "error: as storage.sync_error, but as on a full disk (IO error: No "
     "space left on device)",
     true},
    {"coordinator.after_decision_synced",
     "TransactionManager::OnPersisted: the COMMIT record is synced, before "
     "the client is answered and before any Commit is sent",
     "a durable decision nobody was told of: recovery must re-drive commit "
     "to every branch",
     false},
    {"coordinator.removing_participant",
     "TransactionManager::RemoveParticipant: the removal is allowed and no "
     "new branch may go to the participant, but neither the registry's "
     "change nor its audit record (one synced write) is written yet",
     "a removal caught half-way: no transaction starts on the participant "
     "meanwhile; after a crash there it is still registered and the audit "
     "log does not claim it was removed",
     false},
    {"coordinator.after_commit_ack",
     "TransactionManager::OnReply, as a phase-2 acknowledgement arrives and "
     "before it is recorded (arm with @k to die at the k-th ack: after k-1 "
     "of n branches acknowledged)",
     "a commit acknowledged by some branches only: recovery re-delivers to "
     "all, and each applies it exactly once",
     false},
    {"storage.queue_append",
     "PartitionLogs::Append, on the writer thread while a COMMIT record's "
     "batch is built (DecisionLog::AppendCommit)",
     "a half-built commit batch: neither the record nor any of its messages "
     "may appear after recovery; offsets stay gap-free",
     false},
    {"participant.after_prepare_synced",
     "sidecar BranchManager: the PREPARED record is synced, the YES vote not "
     "yet sent",
     "a durable YES nobody received: after a restart the branch is in doubt "
     "and must end as the coordinator decided",
     false},
    {"participant.after_commit_applied",
     "sidecar BranchManager: a commit is recorded and applied to the "
     "resource, its acknowledgement not yet sent",
     "an applied, unacknowledged commit: the coordinator's retry must be "
     "acknowledged without applying the branch twice",
     false},
};

const PointInfo* FindPoint(absl::string_view name) {
  for (const PointInfo& point : kPoints) {
    if (name == point.name) return &point;
  }
  return nullptr;
}

absl::Status Validate(absl::string_view name, const Trigger& trigger) {
  const PointInfo* point = FindPoint(name);
  if (point == nullptr) {
    std::vector<absl::string_view> names;
    for (const PointInfo& known : kPoints) names.push_back(known.name);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown failure point '", name,
                     "'; known points: ", absl::StrJoin(names, ", ")));
  }
  if ((trigger.action == Action::kError) != point->error_point) {
    return absl::InvalidArgumentError(absl::StrCat(
        "failure point '", name, "' ",
        point->error_point ? "accepts only the action 'error'"
                           : "cannot inject an error; use crash or delay:MS"));
  }
  if (trigger.from_hit < 1 || trigger.delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "failure point '", name, "': the hit must be >= 1 and the delay >= 0"));
  }
  return absl::OkStatus();
}

// "crash" | "crash:MS" | "delay:MS" | "error"; nullopt for anything else.
absl::optional<Trigger> ParseAction(absl::string_view text) {
  Trigger trigger;
  if (text == "crash") {
    trigger.action = Action::kCrash;
    return trigger;
  }
  if (text == "error") {
    trigger.action = Action::kError;
    return trigger;
  }
  if (absl::ConsumePrefix(&text, "crash:")) {
    trigger.action = Action::kCrash;
  } else if (absl::ConsumePrefix(&text, "delay:")) {
    trigger.action = Action::kDelay;
  } else {
    return absl::nullopt;
  }
  int64_t millis = 0;
  if (!absl::SimpleAtoi(text, &millis) || millis < 0) return absl::nullopt;
  trigger.delay = absl::Milliseconds(millis);
  return trigger;
}

// NAME "=" ACTION ["@" N] [",once"] -> (name, trigger).
absl::StatusOr<std::pair<std::string, Trigger>> ParseEntry(
    absl::string_view entry) {
  const absl::Status bad = absl::InvalidArgumentError(absl::StrCat(
      "bad failure point entry '", entry,
      "': expected NAME=ACTION[@N][,once] with ACTION one of crash, "
      "crash:MILLISECONDS, delay:MILLISECONDS, error and N >= 1"));
  std::pair<absl::string_view, absl::string_view> name_action =
      absl::StrSplit(entry, absl::MaxSplits('=', 1));
  absl::string_view rest = name_action.second;
  const bool once = absl::ConsumeSuffix(&rest, ",once");
  std::pair<absl::string_view, absl::string_view> action_hit =
      absl::StrSplit(rest, absl::MaxSplits('@', 1));
  absl::optional<Trigger> trigger = ParseAction(action_hit.first);
  if (name_action.first.empty() || !trigger.has_value()) return bad;
  trigger->once = once;
  if (rest.find('@') != absl::string_view::npos &&
      (!absl::SimpleAtoi(action_hit.second, &trigger->from_hit) ||
       trigger->from_hit < 1)) {
    return bad;
  }
  RETURN_IF_ERROR(Validate(name_action.first, *trigger));
  return std::make_pair(std::string(name_action.first), *trigger);
}

struct ArmedPoint {
  Trigger trigger;
  int64_t hits = 0;
  int64_t fired = 0;
};

class Registry {
 public:
  // REQUIRES: every trigger passed Validate.
  void ArmAll(const std::map<std::string, Trigger>& triggers)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, trigger] : triggers) {
      armed_.insert_or_assign(name, ArmedPoint{.trigger = trigger});
    }
    UpdateFlagLocked();
  }

  void Disarm(absl::string_view name) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (auto it = armed_.find(name); it != armed_.end()) armed_.erase(it);
    UpdateFlagLocked();
  }

  void DisarmAll() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    armed_.clear();
    UpdateFlagLocked();
  }

  int64_t Hits(absl::string_view name) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = armed_.find(name);
    return it == armed_.end() ? 0 : it->second.hits;
  }

  // Counts a hit of `name`; the trigger to act on now, if it fires.
  absl::optional<std::pair<Trigger, int64_t>> Hit(absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = armed_.find(name);
    if (it == armed_.end()) return absl::nullopt;
    ArmedPoint& point = it->second;
    ++point.hits;
    if (point.hits < point.trigger.from_hit ||
        (point.trigger.once && point.fired > 0)) {
      return absl::nullopt;
    }
    ++point.fired;
    return std::make_pair(point.trigger, point.hits);
  }

 private:
  void UpdateFlagLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    internal::any_armed.store(!armed_.empty(), std::memory_order_relaxed);
  }

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, ArmedPoint> armed_ ABSL_GUARDED_BY(mu_);
};

Registry& GetRegistry() {
  static Registry* const registry = new Registry();
  return *registry;
}

void Announce(absl::string_view name, absl::string_view what, int64_t hit) {
  const std::string line = absl::StrCat("twopc: failure point ", name, ": ",
                                        what, " (hit ", hit, ")\n");
  // write(2), not stdio: nothing buffered is lost when a crash follows.
  [[maybe_unused]] ssize_t written =
      write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

absl::Span<const PointInfo> KnownPoints() { return kPoints; }

absl::StatusOr<std::map<std::string, Trigger>> ParseSpec(
    absl::string_view spec) {
  std::map<std::string, Trigger> triggers;
  for (absl::string_view entry : absl::StrSplit(spec, ';')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) continue;
    ASSIGN_OR_RETURN(auto parsed, ParseEntry(entry));
    triggers.insert_or_assign(std::move(parsed.first), parsed.second);
  }
  return triggers;
}

absl::Status Arm(absl::string_view name, const Trigger& trigger) {
  RETURN_IF_ERROR(Validate(name, trigger));
  GetRegistry().ArmAll({{std::string(name), trigger}});
  return absl::OkStatus();
}

absl::Status ArmFromSpec(absl::string_view spec) {
  ASSIGN_OR_RETURN(auto triggers, ParseSpec(spec));
  GetRegistry().ArmAll(triggers);
  return absl::OkStatus();
}

absl::Status ArmAtStartup(absl::string_view flag_spec) {
  const char* env = std::getenv(kEnvironmentVariable);
  const absl::string_view env_spec = env == nullptr ? "" : env;
  absl::StatusOr<std::map<std::string, Trigger>> triggers = ParseSpec(env_spec);
  if (!triggers.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "$", kEnvironmentVariable, ": ", triggers.status().message()));
  }
  absl::StatusOr<std::map<std::string, Trigger>> from_flag =
      ParseSpec(flag_spec);
  if (!from_flag.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--failpoints: ", from_flag.status().message()));
  }
  for (auto& [name, trigger] : *from_flag) {
    triggers->insert_or_assign(name, trigger);
  }
  if (triggers->empty()) return absl::OkStatus();
  GetRegistry().ArmAll(*triggers);
  std::fprintf(stderr,
               "twopc: failure points armed: %s='%s' --failpoints='%s'\n",
               kEnvironmentVariable, std::string(env_spec).c_str(),
               std::string(flag_spec).c_str());
  return absl::OkStatus();
}

void Disarm(absl::string_view name) { GetRegistry().Disarm(name); }

void DisarmAll() { GetRegistry().DisarmAll(); }

int64_t Hits(absl::string_view name) { return GetRegistry().Hits(name); }

namespace internal {

bool Evaluate(const char* name) {
  if (FindPoint(name) == nullptr) {
    std::fprintf(stderr,
                 "twopc: failure point '%s' is not in the list of known "
                 "points (common/failpoint.cc)\n",
                 name);
    std::abort();
  }
  auto fired = GetRegistry().Hit(name);
  if (!fired.has_value()) return false;
  const auto& [trigger, hit] = *fired;
  switch (trigger.action) {
    case Action::kCrash:
      absl::SleepFor(trigger.delay);
      Announce(name, "crash", hit);
      raise(SIGKILL);
      return false;  // not reached
    case Action::kDelay:
      Announce(name,
               absl::StrCat("delay ", absl::FormatDuration(trigger.delay)),
               hit);
      absl::SleepFor(trigger.delay);
      return false;
    case Action::kError:
      Announce(name, "error", hit);
      return true;
  }
  return false;
}

}  // namespace internal
}  // namespace twopc::failpoint
