// Helpers for real-process tests of twopc-participant: the test plays the
// coordinator.
//
//  * FakeCoordinator: an in-process CoordinatorService on port 0 that records
//    Register / Heartbeat / QueryOutcomes and answers outcome queries as the
//    test decides (OUTCOME_PENDING until told otherwise).
//  * LinkClient: a client of ParticipantService.Link that sends batches and
//    collects replies by request_id.
//  * StartSidecar: starts the binary and waits for its "listening on" line.
//
// Every wait has a deadline; nothing sleeps for a fixed time.
#ifndef TWOPC_TESTS_PARTICIPANT_PROCESS_HARNESS_H_
#define TWOPC_TESTS_PARTICIPANT_PROCESS_HARNESS_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::participant::testing {

constexpr absl::Duration kWait = absl::Seconds(20);

inline std::string Bin(const std::string& name) {
  return absl::StrCat(TWOPC_BIN_DIR, "/", name);
}

// "... listening on HOST:PORT ..." -> "HOST:PORT".
inline std::string ListeningAddress(const std::string& line) {
  const std::string marker = "listening on ";
  const size_t start = line.find(marker) + marker.size();
  return line.substr(start, line.find(' ', start) - start);
}

// Calls `condition` every 20ms until it returns true (true) or `timeout`
// passes (false). For conditions no callback can signal, e.g. a value read
// over RPC.
template <typename F>
bool PollUntil(F condition, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class FakeCoordinator final : public v1::CoordinatorService::Service {
 public:
  // Serves on `listen` (port 0 = any free port). Check ok() afterwards.
  explicit FakeCoordinator(uint64_t epoch,
                           const std::string& listen = "127.0.0.1:0")
      : epoch_(epoch) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    if (server_ != nullptr && port != 0) {
      address_ = absl::StrCat("127.0.0.1:", port);
    }
  }
  ~FakeCoordinator() override { Stop(); }

  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(absl::ToChronoTime(absl::Now()));
    server_->Wait();
    server_.reset();
  }

  bool ok() const { return !address_.empty(); }
  const std::string& address() const { return address_; }

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    absl::MutexLock lock(&mu_);
    registrations_.push_back(*request);
    known_.insert(request->participant_id());
    response->set_coordinator_epoch(epoch_);
    response->mutable_heartbeat_interval()->set_nanos(100'000'000);  // 100ms
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!known_.contains(request->participant_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "not registered");
    }
    heartbeats_.push_back(*request);
    response->set_coordinator_epoch(epoch_);
    return grpc::Status::OK;
  }
  grpc::Status QueryOutcomes(grpc::ServerContext*,
                             const v1::QueryOutcomesRequest* request,
                             v1::QueryOutcomesResponse* response) override {
    absl::MutexLock lock(&mu_);
    for (const std::string& txid : request->transaction_ids()) {
      ++queries_[txid];
      auto* result = response->add_results();
      result->set_transaction_id(txid);
      auto it = outcomes_.find(txid);
      result->set_outcome(it == outcomes_.end() ? v1::OUTCOME_PENDING
                                                : it->second);
    }
    return grpc::Status::OK;
  }

  void SetOutcome(const std::string& txid, v1::Outcome outcome) {
    absl::MutexLock lock(&mu_);
    outcomes_[txid] = outcome;
  }
  // Forgets every registration (the next heartbeat gets NOT_FOUND).
  void ForgetParticipants() {
    absl::MutexLock lock(&mu_);
    known_.clear();
  }

  // Waits until `condition` (called with the lock held) holds.
  template <typename F>
  bool WaitFor(F condition, absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return condition(*this);
    };
    // Conditions depend on RPCs arriving, which take mu_: re-evaluated then.
    return mu_.AwaitWithTimeout(absl::Condition(&check), timeout);
  }

  // Read with the lock held (inside WaitFor) or after the RPCs are done.
  std::vector<v1::RegisterRequest> registrations_;
  std::vector<v1::HeartbeatRequest> heartbeats_;
  std::map<std::string, int> queries_;

 private:
  const uint64_t epoch_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  absl::Mutex mu_;
  std::set<std::string> known_;
  std::map<std::string, v1::Outcome> outcomes_;
};

class LinkClient {
 public:
  LinkClient(const std::string& address, uint64_t epoch,
             std::string expected_id = "")
      : epoch_(epoch),
        expected_id_(std::move(expected_id)),
        stub_(v1::ParticipantService::NewStub(grpc::CreateChannel(
            address, grpc::InsecureChannelCredentials()))) {}

  ~LinkClient() {
    if (stream_ != nullptr) {
      context_.TryCancel();
      if (reader_.joinable()) reader_.join();
      stream_->Finish().ok();
    }
  }

  // Opens the stream with a first batch carrying `requests` and waits for
  // the hello. Errors: the stream's status when it ends first.
  absl::StatusOr<v1::ParticipantHello> Open(
      const std::vector<v1::BranchRequest>& requests = {}) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stream_ = stub_->Link(&context_);
    Send(requests);
    v1::ParticipantBatch first;
    if (!stream_->Read(&first)) {
      grpc::Status status = stream_->Finish();
      stream_.reset();
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    reader_ = std::thread([this] {
      v1::ParticipantBatch batch;
      while (stream_->Read(&batch)) {
        absl::MutexLock lock(&mu_);
        ++batches_;
        for (auto& reply : *batch.mutable_replies()) {
          replies_[reply.request_id()] = reply;
        }
      }
      absl::MutexLock lock(&mu_);
      closed_ = true;
    });
    return first.hello();
  }

  bool Send(const std::vector<v1::BranchRequest>& requests) {
    v1::CoordinatorBatch batch;
    batch.set_coordinator_epoch(epoch_);
    batch.set_expected_participant_id(expected_id_);
    for (const auto& request : requests) *batch.add_requests() = request;
    return stream_->Write(batch);
  }

  // The reply to `request_id`, waiting up to `timeout`.
  absl::StatusOr<v1::BranchReply> Await(uint64_t request_id,
                                        absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || replies_.contains(request_id);
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    auto it = replies_.find(request_id);
    if (it == replies_.end()) {
      return absl::DeadlineExceededError(
          absl::StrCat("no reply to request ", request_id,
                       closed_ ? " (stream closed)" : ""));
    }
    return it->second;
  }

  bool Answered(uint64_t request_id) {
    absl::MutexLock lock(&mu_);
    return replies_.contains(request_id);
  }

  // Half-closes and returns the stream's status.
  grpc::Status Finish() {
    stream_->WritesDone();
    reader_.join();
    grpc::Status status = stream_->Finish();
    stream_.reset();
    return status;
  }

 private:
  const uint64_t epoch_;
  const std::string expected_id_;
  std::unique_ptr<v1::ParticipantService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::CoordinatorBatch, v1::ParticipantBatch>>
      stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::map<uint64_t, v1::BranchReply> replies_ ABSL_GUARDED_BY(mu_);
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

struct Sidecar {
  std::unique_ptr<::twopc::testing::Subprocess> process;
  std::string address;
};

// Starts twopc-participant with `args` (plus --id, --listen=127.0.0.1:0
// unless given) and waits for it to listen.
inline absl::StatusOr<Sidecar> StartSidecar(const std::string& id,
                                            std::vector<std::string> args,
                                            const std::string& log_path) {
  std::vector<std::string> argv = {Bin("twopc-participant"),
                                   absl::StrCat("--id=", id)};
  bool has_listen = false;
  for (const std::string& arg : args) {
    has_listen |= arg.rfind("--listen", 0) == 0;
  }
  if (!has_listen) argv.push_back("--listen=127.0.0.1:0");
  argv.insert(argv.end(), args.begin(), args.end());
  auto process = ::twopc::testing::Subprocess::Start(argv, log_path);
  if (!process.ok()) return process.status();
  auto line = (*process)->WaitForLine("listening on", kWait);
  if (!line.ok()) return line.status();
  return Sidecar{std::move(*process), ListeningAddress(*line)};
}

// Committed value of `key` at a kv sidecar; nullopt when absent.
inline absl::StatusOr<std::optional<std::string>> KvGet(
    const std::string& address, const std::string& key) {
  auto stub = v1::KvService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::KvGetRequest request;
  request.set_key(key);
  v1::KvGetResponse response;
  grpc::Status status = stub->Get(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  if (!response.found()) return std::optional<std::string>();
  return std::optional<std::string>(response.value());
}

}  // namespace twopc::participant::testing

#endif  // TWOPC_TESTS_PARTICIPANT_PROCESS_HARNESS_H_
