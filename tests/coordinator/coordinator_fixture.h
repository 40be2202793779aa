// Test fixture for the coordinator runtime in one process: a real
// CoordinatorServer (gRPC, RocksDB, group commit, links) against scripted
// fake participants that serve ParticipantService.Link on port 0.
#ifndef TWOPC_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
#define TWOPC_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::coordinator {

using ::twopc::testing::IsOk;
using ::twopc::testing::TempDir;

inline constexpr absl::Duration kWait = absl::Seconds(20);

// A participant whose answers the test scripts. Records every request.
class FakeParticipant final : public v1::ParticipantService::Service {
 public:
  enum class OnPrepare { kYes, kNo, kSilent };

  explicit FakeParticipant(std::string id) : id_(std::move(id)) {
    auto server = StartGrpcServer("127.0.0.1:0", {this}, 8 << 20);
    EXPECT_THAT(server, IsOk());
    server_ = std::move(*server);
  }
  ~FakeParticipant() override {
    server_.server->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  const std::string& id() const { return id_; }
  const std::string& address() const { return server_.address; }

  void set_on_prepare(OnPrepare mode) {
    absl::MutexLock lock(&mu_);
    on_prepare_ = mode;
  }
  void set_ack_commits(bool ack) {
    absl::MutexLock lock(&mu_);
    ack_commits_ = ack;
  }

  // "prepare:<txn>", "commit:<txn>", "abort:<txn>", in arrival order.
  std::vector<std::string> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  uint64_t last_epoch() const {
    absl::MutexLock lock(&mu_);
    return last_epoch_;
  }

  // Waits until `event` was received; false after kWait.
  bool WaitFor(const std::string& event) const {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::find(received_.begin(), received_.end(), event) !=
             received_.end();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
  }

  grpc::Status Link(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
          stream) override {
    v1::CoordinatorBatch batch;
    bool first = true;
    while (stream->Read(&batch)) {
      v1::ParticipantBatch out;
      if (first) {
        out.mutable_hello()->set_participant_id(id_);
        first = false;
      }
      {
        absl::MutexLock lock(&mu_);
        last_epoch_ = batch.coordinator_epoch();
        for (const v1::BranchRequest& request : batch.requests()) {
          v1::BranchReply reply;
          reply.set_request_id(request.request_id());
          reply.set_transaction_id(request.transaction_id());
          if (request.has_prepare()) {
            received_.push_back("prepare:" + request.transaction_id());
            if (on_prepare_ == OnPrepare::kSilent) continue;
            reply.set_vote(on_prepare_ == OnPrepare::kYes ? v1::VOTE_YES
                                                          : v1::VOTE_NO);
            if (on_prepare_ == OnPrepare::kNo) {
              reply.set_reason("balance would be -5 (min 0)");
            }
          } else if (request.has_commit()) {
            received_.push_back("commit:" + request.transaction_id());
            if (!ack_commits_) continue;
            reply.set_ack(v1::BranchReply::ACK_COMMITTED);
          } else {
            received_.push_back("abort:" + request.transaction_id());
            reply.set_ack(v1::BranchReply::ACK_ABORTED);
          }
          *out.add_replies() = std::move(reply);
        }
      }
      if (!stream->Write(out)) break;
    }
    return grpc::Status::OK;
  }

 private:
  const std::string id_;
  RunningServer server_;
  mutable absl::Mutex mu_;
  OnPrepare on_prepare_ ABSL_GUARDED_BY(mu_) = OnPrepare::kYes;
  bool ack_commits_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::string> received_ ABSL_GUARDED_BY(mu_);
  uint64_t last_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = std::make_unique<FakeParticipant>("a");
    b_ = std::make_unique<FakeParticipant>("b");
    StartCoordinator();
    Register(*a_);
    Register(*b_);
  }

  void StartCoordinator() {
    CoordinatorOptions options = options_;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Sub("coordinator");
    options.manager.retry.initial_backoff = absl::Milliseconds(20);
    auto server = CoordinatorServer::Start(options);
    ASSERT_THAT(server, IsOk());
    coordinator_ = std::move(*server);
    auto channel = grpc::CreateChannel(coordinator_->address(),
                                       grpc::InsecureChannelCredentials());
    transactions_ = v1::TransactionService::NewStub(channel);
    gateway_ = v1::CoordinatorService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
    queues_ = v1::QueueService::NewStub(channel);
  }

  void RestartCoordinator() {
    coordinator_->Shutdown(absl::Seconds(1));
    coordinator_.reset();
    StartCoordinator();
  }

  void Register(const FakeParticipant& p) {
    grpc::ClientContext context;
    v1::RegisterRequest request;
    request.set_participant_id(p.id());
    request.set_endpoint(p.address());
    request.set_resource("kv");
    v1::RegisterResponse response;
    ASSERT_TRUE(gateway_->Register(&context, request, &response).ok());
    EXPECT_EQ(response.coordinator_epoch(), coordinator_->epoch());
  }

  static v1::Branch KvBranch(const std::string& participant) {
    v1::Branch branch;
    branch.set_participant_id(participant);
    auto* put = branch.mutable_kv()->add_operations()->mutable_put();
    put->set_key("k");
    put->set_value("v");
    return branch;
  }

  v1::ExecuteRequest TwoBranches(const std::string& key = "") {
    v1::ExecuteRequest request;
    request.set_idempotency_key(key);
    *request.add_branches() = KvBranch("a");
    *request.add_branches() = KvBranch("b");
    return request;
  }

  absl::StatusOr<v1::Transaction> Execute(const v1::ExecuteRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    v1::ExecuteResponse response;
    grpc::Status status = transactions_->Execute(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response.transaction();
  }

  absl::StatusOr<v1::Transaction> Get(const std::string& id) {
    grpc::ClientContext context;
    v1::GetRequest request;
    request.mutable_ref()->set_transaction_id(id);
    v1::GetResponse response;
    grpc::Status status = transactions_->Get(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response.transaction();
  }

  // Waits until Get(id) reports `state`.
  bool WaitForState(const std::string& id, v1::TransactionState state) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    v1::WatchRequest request;
    request.mutable_ref()->set_transaction_id(id);
    auto reader = transactions_->Watch(&context, request);
    v1::WatchResponse response;
    while (reader->Read(&response)) {
      if (response.transaction().state() == state) {
        context.TryCancel();
        return true;
      }
    }
    return false;
  }

  TempDir dir_;
  CoordinatorOptions options_;
  std::unique_ptr<FakeParticipant> a_, b_;
  std::unique_ptr<CoordinatorServer> coordinator_;
  std::unique_ptr<v1::TransactionService::Stub> transactions_;
  std::unique_ptr<v1::CoordinatorService::Stub> gateway_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::QueueService::Stub> queues_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
