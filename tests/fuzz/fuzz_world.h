// FuzzWorld: the servers the bad-input tests attack, in this process: a
// coordinator (temp data dir, port 0) and one kv participant sidecar, "p1",
// registered with it. In-process rather than real processes because the
// tests need thousands of calls in seconds and no restarts; a crash of a
// server is a crash of the test, which ctest reports.
//
// It also keeps the things requests refer to (Refs: a topic with messages,
// an open interactive transaction, a committed one, a consumer group
// member), and takes State snapshots for the "nothing half written" oracle.
//
// Thread-compatible.
#ifndef TWOPC_TESTS_FUZZ_FUZZ_WORLD_H_
#define TWOPC_TESTS_FUZZ_FUZZ_WORLD_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "coordinator/coordinator_server.h"
#include "participant/participant_server.h"
#include "tests/testing/temp_dir.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::fuzz {

// Names of existing things, for seeds and for the mutator's dictionary.
struct Refs {
  std::string participant = "p1";
  std::string topic = "fuzz-topic";
  int32_t partitions = 4;
  // An ACTIVE interactive transaction (re-opened by Refresh once used up).
  std::string open_transaction;
  // A committed transaction and its idempotency key.
  std::string committed_transaction;
  std::string committed_key = "fuzz-committed";
  std::string group = "fuzz-group";
  std::string member;
  uint64_t generation = 0;
};

// What a request could leave behind. Compared before and after a rejected
// request by CheckNothingLeftBehind.
struct State {
  std::set<std::string> live_transactions;
  uint64_t committed_total = 0;
  // name -> partitions and retention
  std::map<std::string, std::string> topics;
  // id -> endpoint and resource
  std::map<std::string, std::string> participants;
  // "group/member"
  std::set<std::string> group_members;
  // "topic/partition" -> committed offset, of Refs::group
  std::map<std::string, int64_t> group_offsets;
  // p1's committed key-value state: key -> hash of the value
  std::map<std::string, size_t> kv;
};

// Polls `done` (every 10 ms) until it returns OK; its last error after
// `timeout`.
absl::Status WaitUntil(const std::function<absl::Status()>& done,
                       absl::Duration timeout);

// Calls a unary method of a typed stub with a deadline; the answer as an
// absl::Status (ErrorInfo kept).
template <typename Stub, typename Request, typename Response>
absl::Status CallUnary(Stub& stub,
                       grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                    const Request&, Response*),
                       const Request& request, Response* response,
                       absl::Duration timeout = absl::Seconds(10)) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return FromGrpcStatus((stub.*method)(&context, request, response));
}

// OK when `after` shows nothing a rejected request could have added: no new
// live transaction, no commit, topics, registrations, committed offsets and
// kv state unchanged, no new group member. (Transactions may disappear and
// members may expire meanwhile: deadlines and session timeouts run on.)
absl::Status CheckNothingLeftBehind(const State& before, const State& after);

// A kv sidecar's committed state: key -> hash of the value.
absl::StatusOr<std::map<std::string, size_t>> KvDigest(v1::KvService::Stub& kv);

struct WorldOptions {
  coordinator::Limits limits;
  int32_t auto_create_partitions = 0;
};

class FuzzWorld {
 public:
  // Starts the coordinator and p1, waits until p1 is registered with a
  // connected link, creates Refs::topic with a few messages and a
  // committed transaction, and calls Refresh.
  static absl::StatusOr<std::unique_ptr<FuzzWorld>> Start(
      const WorldOptions& options);
  ~FuzzWorld();

  // Re-creates what requests may have used up: an open transaction, a live
  // group member with the current generation.
  absl::Status Refresh();

  const Refs& refs() const { return refs_; }
  // Identifiers worth trying in hostile requests. Without participant ids
  // for Register, whose hostile use (moving p1 elsewhere) is allowed by
  // design and would only disable the rest of the run.
  std::vector<std::string> Dictionary(bool with_participants) const;

  absl::StatusOr<State> Snapshot() const;
  // Waits until no transaction is PREPARING or COMMITTING, so that kv state
  // and counters only change when the next request makes them.
  absl::Status Quiesce() const;
  // Replaces the channels (and their connections) to both servers.
  void Reconnect();
  // OK when both servers answer the gRPC health check.
  absl::Status CheckServing() const;

  // The state Get reports for `transaction_id`.
  absl::StatusOr<v1::TransactionState> StateOf(
      const std::string& transaction_id) const;
  // Waits until participant `id` is registered with a connected link.
  absl::Status WaitForParticipant(const std::string& id) const;
  // Registers participant `id` served at `endpoint` and waits for its link.
  absl::Status Register(const std::string& id,
                        const std::string& endpoint) const;
  // Execute with a client deadline of `timeout`.
  absl::StatusOr<v1::Transaction> Execute(const v1::ExecuteRequest& request,
                                          absl::Duration timeout) const;
  // p1's branch of `transaction_id`: BranchManager::StateOf.
  std::string SidecarBranchState(const std::string& transaction_id) const;
  // p1's committed value of `key` (nullopt when absent).
  absl::StatusOr<std::optional<std::string>> KvGet(
      const std::string& key) const;

  const std::shared_ptr<grpc::Channel>& coordinator_channel() const {
    return coordinator_channel_;
  }
  const std::shared_ptr<grpc::Channel>& sidecar_channel() const {
    return sidecar_channel_;
  }
  v1::TransactionService::Stub& transactions() const { return *transactions_; }
  v1::AdminService::Stub& admin() const { return *admin_; }
  v1::QueueService::Stub& queues() const { return *queues_; }

 private:
  FuzzWorld() = default;
  absl::Status SeedQueueAndLog();

  testing::TempDir dir_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::unique_ptr<participant::ParticipantServer> sidecar_;
  std::shared_ptr<grpc::Channel> coordinator_channel_;
  std::shared_ptr<grpc::Channel> sidecar_channel_;
  std::unique_ptr<v1::TransactionService::Stub> transactions_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::QueueService::Stub> queues_;
  std::unique_ptr<v1::CoordinatorService::Stub> gateway_;
  std::unique_ptr<v1::KvService::Stub> kv_;
  Refs refs_;
};

// How long, and from which seed, the fuzz loops run. From the environment:
//   TWOPC_FUZZ_SEED        the seed (default 1: every default run is the same)
//   TWOPC_FUZZ_ITERATIONS  iterations of every loop (default: the loop's own)
//   TWOPC_FUZZ_SECONDS     run every loop for this long instead (long runs,
//                          e.g. from `make chaos`)
class FuzzBudget {
 public:
  explicit FuzzBudget(size_t default_iterations);
  uint64_t seed() const { return seed_; }
  // True while iteration `i` (from 0) should run.
  bool Continue(size_t i) const;
  std::string Describe() const;

 private:
  uint64_t seed_ = 1;
  size_t iterations_ = 0;
  absl::Time end_ = absl::InfinitePast();
};

}  // namespace twopc::fuzz

#endif  // TWOPC_TESTS_FUZZ_FUZZ_WORLD_H_
