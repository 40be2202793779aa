// TxnWorkload: the transaction the benchmark measures. Each call is one
// TransactionService.Execute with a kv branch on each participant (a put of
// `payload_bytes` bytes) and `messages` messages of `payload_bytes` bytes to
// `topic`.
//
// Keys: client c's call number s writes "bench/<run_id>/c/<s mod 65,536>" on
// every participant, so concurrent calls never touch the same key (the kv
// sidecar's locks do not wait: a conflict would abort) and the key space
// stays bounded. An abort caused by a lock conflict anyway is counted apart
// from the intended ones.
//
// Intended aborts: a share `abort_ratio` of each client's calls, evenly
// spaced, carries on its first branch an `expect` precondition that fails, so
// that participant votes NO and the others get an abort.
//
// Calls: one unary Execute per transaction, or (`stream`) one request on an
// ExecuteStreamClient (client/execute_stream_client.h) that the clients of
// one client thread and one channel share, driven on that thread's queue:
// the requests submitted while a write is out go together in the next
// message.
//
// Thread-safe.
#ifndef TWOPC_TOOLS_BENCH_TXN_WORKLOAD_H_
#define TWOPC_TOOLS_BENCH_TXN_WORKLOAD_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "client/execute_stream_client.h"
#include "tools/bench/workload.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::bench {

struct TxnShape {
  // Kv sidecars, one branch each. REQUIRES: not empty.
  std::vector<std::string> participant_ids;
  int payload_bytes = 100;
  int messages = 0;
  // An existing topic. REQUIRES: set when messages > 0.
  std::string topic;
  // Share of the transactions meant to abort, 0..1.
  double abort_ratio = 0;
  // Give every transaction an idempotency key (the coordinator then keeps a
  // fingerprint of the request).
  bool idempotency_keys = false;
  // Keeps this run's keys and idempotency keys apart from earlier runs'.
  std::string run_id;
  // Over ExecuteStream instead of unary Execute calls.
  bool stream = false;
  // A transaction not answered this long after it started fails
  // DEADLINE_EXCEEDED: the deadline of its Execute call, or of its request
  // on the stream (ExecuteStreamClient::Options::deadline).
  absl::Duration deadline = absl::Seconds(60);
};

class TxnWorkload final : public Workload {
 public:
  // Spreads clients over `channels` (to the coordinator) round-robin.
  TxnWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
              TxnShape shape);

  ~TxnWorkload() override;

  std::unique_ptr<PendingCall> Start(int client, uint64_t sequence,
                                     grpc::CompletionQueue* cq,
                                     QueueEvent* done) override;
  bool Release(grpc::CompletionQueue* cq) override;

  // Serialized size of a transaction that is not meant to abort.
  size_t RequestBytes() const;

 private:
  class StreamedExecute;

  bool MeantToAbort(uint64_t sequence) const;
  v1::ExecuteRequest Build(int client, uint64_t sequence,
                           bool meant_to_abort) const;
  // The stream client of `cq`'s thread on channel `index`.
  client::ExecuteStreamClient* StreamOf(grpc::CompletionQueue* cq,
                                        size_t index);

  const TxnShape shape_;
  const std::string payload_;
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::TransactionService::Stub>> stubs_;
  absl::Mutex mu_;
  // With `stream`: each client thread's queue -> a client per channel.
  std::map<grpc::CompletionQueue*,
           std::vector<std::unique_ptr<client::ExecuteStreamClient>>>
      streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_TXN_WORKLOAD_H_
