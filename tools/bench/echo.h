// The gRPC ceiling: a unary echo of opaque bytes, with no proto and no work,
// served by `twopc-bench echo-server` (a separate process, like the
// coordinator) and driven by the same LoadGenerator as the transactions.
// Our transaction rate divided by the echo rate at the same client count is
// a machine-independent figure: it says how much of what gRPC alone can do
// on this machine a whole two-phase commit achieves.
#ifndef TWOPC_TOOLS_BENCH_ECHO_H_
#define TWOPC_TOOLS_BENCH_ECHO_H_

#include <grpcpp/generic/generic_stub.h>

#include <memory>
#include <string>
#include <vector>

#include "tools/bench/workload.h"

namespace twopc::bench {

// Serves the echo method on `listen` (HOST:PORT, port 0 = any free port),
// prints "twopc-bench echo-server listening on HOST:PORT", and returns an exit
// code once SIGINT or SIGTERM arrives.
// REQUIRES: twopc::BlockShutdownSignals() was called.
int RunEchoServer(const std::string& listen);

// Calls the echo method with `request_bytes` bytes. Thread-safe.
class EchoWorkload final : public Workload {
 public:
  // Spreads clients over `channels` (to an echo server) round-robin.
  EchoWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
               size_t request_bytes);

  std::unique_ptr<PendingCall> Start(int client, uint64_t sequence,
                                     grpc::CompletionQueue* cq,
                                     QueueEvent* done) override;

 private:
  const grpc::ByteBuffer request_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
};

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_ECHO_H_
