// Failure points: named places in the code where a test can make the process
// crash, stall or fail, to check that the promises hold whatever happens
// there (issue 7).
//
//   TWOPC_FAILPOINT("storage.before_sync");        // may crash or stall here
//   if (TWOPC_FAILPOINT("storage.sync_error")) {   // may also inject an error
//     ... behave exactly as if the operation had failed ...
//   }
//
// TWOPC_FAILPOINT(name) evaluates to true only when the point is armed with
// the `error` action and fires; `crash` and `delay` act inside it and it
// evaluates to false. Every name must be in the list of known points in
// failpoint.cc (name, where it is, what acting there tests); arming an
// unknown name is an error, and evaluating one while anything is armed
// aborts the process (a typo at a call site is a bug, found by the tests).
//
// Cost: while nothing is armed (always, in production) a point is one
// relaxed load of a global flag and a branch predicted not taken.
//
// Arming. A spec names points and what they do:
//
//   spec    := [entry] { ";" [entry] }
//   entry   := name "=" action [ "@" N ] [ ",once" ]
//   action  := "crash" [ ":" MILLISECONDS ] | "delay:" MILLISECONDS | "error"
//
//   crash      the process dies at once, as from kill -9 (SIGKILL: no
//              destructors, no flushing), after one line on stderr:
//              "twopc: failure point NAME: crash (hit N)".
//   crash:MS   the calling thread stalls there MS milliseconds while the
//              other threads go on (a slow disk), then the process dies as
//              above: this catches work that wrongly runs ahead of the point
//              (e.g. a reply sent before the record it depends on is synced).
//   delay:MS   the calling thread sleeps MS milliseconds there, then goes on.
//   error      the point evaluates to true; the caller fails the operation
//              as documented for that point. Only points listed as error
//              points accept it (and they accept nothing else).
//   @N         the first N-1 hits pass; it fires from the Nth hit on
//              (default 1: the first hit).
//   ,once      it fires at most once (crash is once by nature).
//
// e.g.
// "storage.before_sync=crash@3;participant.after_prepare_synced=delay:500". The
// servers (twopc-coordinator, twopc-participant) arm points at start-up from
// the TWOPC_FAILPOINTS environment variable and their --failpoints flag
// (ArmAtStartup); in-process tests call Arm / ArmFromSpec / Disarm.
//
// Thread-safety: every function may be called from any thread; arming while
// other threads evaluate points is safe.
#ifndef TWOPC_COMMON_FAILPOINT_H_
#define TWOPC_COMMON_FAILPOINT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

#define TWOPC_FAILPOINT(name)                                       \
  (ABSL_PREDICT_FALSE(::twopc::failpoint::internal::any_armed.load( \
       std::memory_order_relaxed)) &&                               \
   ::twopc::failpoint::internal::Evaluate(name))

namespace twopc::failpoint {

enum class Action { kCrash, kDelay, kError };

// What an armed point does, and when.
struct Trigger {
  Action action = Action::kCrash;
  // How long the calling thread sleeps at the point (kDelay), or before
  // the process dies (kCrash).
  absl::Duration delay = absl::ZeroDuration();
  // Fires from this hit on (1 = the first hit).
  int64_t from_hit = 1;
  // Fires at most once.
  bool once = false;
};

// One entry of the list of known points.
struct PointInfo {
  const char* name;
  // Where the point is in the code.
  const char* where;
  // What acting there checks (for error points: how the operation fails).
  const char* checks;
  // Error points accept only `error`; the others only `crash` and `delay`.
  bool error_point;
};

// Every known point, in the documented order.
absl::Span<const PointInfo> KnownPoints();

// Parses a spec (grammar above) into point name -> trigger; a point named
// twice keeps the last entry. INVALID_ARGUMENT naming the bad entry: bad
// syntax, an unknown point (the message lists the known ones), or an action
// the point does not accept.
absl::StatusOr<std::map<std::string, Trigger>> ParseSpec(
    absl::string_view spec);

// Arms `name` with `trigger`, replacing any previous trigger and restarting
// its hit count. INVALID_ARGUMENT as for ParseSpec (also for from_hit < 1 or
// a negative delay); nothing changes then.
absl::Status Arm(absl::string_view name, const Trigger& trigger);

// Parses `spec` and arms every point in it; on error nothing is armed.
absl::Status ArmFromSpec(absl::string_view spec);

// For a server's main(), before anything else runs: arms the points of the
// TWOPC_FAILPOINTS environment variable, then those of `flag_spec` (the
// --failpoints flag; it wins for a point named in both). When anything is
// armed, prints one line to stderr saying what, so that its log shows that
// faults were injected. On error (INVALID_ARGUMENT, saying which source was
// bad) nothing is armed and the server should exit.
absl::Status ArmAtStartup(absl::string_view flag_spec);

// Disarms one point (no-op when it is not armed), or every point.
void Disarm(absl::string_view name);
void DisarmAll();

// Times `name` was reached since it was last armed; 0 when it is not armed.
int64_t Hits(absl::string_view name);

namespace internal {

// True while any point is armed.
extern std::atomic<bool> any_armed;

// The slow path of TWOPC_FAILPOINT: counts the hit, acts, and returns true
// when an `error` trigger fired.
bool Evaluate(const char* name);

}  // namespace internal
}  // namespace twopc::failpoint

#endif  // TWOPC_COMMON_FAILPOINT_H_
