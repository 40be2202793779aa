// Clean process shutdown on SIGINT / SIGTERM for the twopc servers.
#ifndef TWOPC_COMMON_SHUTDOWN_H_
#define TWOPC_COMMON_SHUTDOWN_H_

namespace twopc {

// Blocks SIGINT and SIGTERM in the calling thread; threads created afterwards
// inherit the mask, so the signals are only ever taken by
// WaitForShutdownSignal. Call first thing in main(), before any thread starts.
void BlockShutdownSignals();

// Waits until SIGINT or SIGTERM is delivered and returns its number.
// REQUIRES: BlockShutdownSignals() was called.
int WaitForShutdownSignal();

}  // namespace twopc

#endif  // TWOPC_COMMON_SHUTDOWN_H_
