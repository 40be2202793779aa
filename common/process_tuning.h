// Process-wide settings for twopc's long-running binaries (coordinator,
// sidecar, benchmark). Call TuneProcess() first thing in main(), before any
// gRPC or abseil synchronisation is used.
#ifndef TWOPC_COMMON_PROCESS_TUNING_H_
#define TWOPC_COMMON_PROCESS_TUNING_H_

namespace twopc {

// * gRPC's polling engine defaults to "poll" instead of "epoll1" unless
//   $GRPC_POLL_STRATEGY says otherwise. With epoll1 one designated thread
//   polls and kicks (futex wake, context switch) the thread each event is
//   for; with poll a thread waiting on its completion queue polls its own
//   connections. On the 2-core target that is 13-37% more transactions per
//   second at 64 clients (README, Benchmarks). poll() costs grow with the
//   number of connections a process holds: with thousands of client
//   connections, set GRPC_POLL_STRATEGY=epoll1.
// * abseil's Mutex lock-order (deadlock) checks are off: Debian's abseil
//   runs them on every acquisition, 1-3% of the servers' CPU under load.
//   The tests keep them.
void TuneProcess();

}  // namespace twopc

#endif  // TWOPC_COMMON_PROCESS_TUNING_H_
