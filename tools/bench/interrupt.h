// Ctrl-C for the bench: the first SIGINT or SIGTERM sets a flag that the
// long-running steps poll, so they stop early and the normal clean-up runs
// (child processes killed, temporary directories removed). A second signal
// terminates at once (child processes still die: see ChildProcess).
//
// Thread-safe.
#ifndef TWOPC_TOOLS_BENCH_INTERRUPT_H_
#define TWOPC_TOOLS_BENCH_INTERRUPT_H_

#include "absl/time/time.h"

namespace twopc::bench {

// Installs the handler. Call once, early in main.
void InstallInterruptHandler();

// True once SIGINT or SIGTERM arrived.
bool Interrupted();

// Waits for `duration` unless interrupted first; returns !Interrupted().
bool SleepUnlessInterrupted(absl::Duration duration);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_INTERRUPT_H_
