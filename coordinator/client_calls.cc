#include "coordinator/client_calls.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/unparseable_request.h"

namespace twopc::coordinator {
namespace {

// Calls of each method waiting for a client at any time, so a burst of
// arrivals is matched at once rather than one re-request at a time.
constexpr int kRequestsPerMethod = 16;

}  // namespace

// One Execute or Commit call, from the request gRPC matched to it until its
// answer is sent. Its tag on the queue is the Call itself.
class ClientCalls::Call final : public CompletionQueueLoop::Handler {
 public:
  Call(ClientCalls* owner, bool execute)
      : owner_(owner), execute_(execute), responder_(&context_) {}

  void Request() {
    if (execute_) {
      owner_->service_->RequestExecute(&context_, &request_, &responder_,
                                       owner_->queue_, owner_->queue_, tag());
    } else {
      owner_->service_->RequestCommit(&context_, &request_, &responder_,
                                      owner_->queue_, owner_->queue_, tag());
    }
  }

  // The call's one event at a time: a request arrived (or, !ok, the server
  // is shutting down), then the answer went out (or could not).
  void OnEvent(bool ok) override {
    if (answering_ || !ok) {
      OpenCalls* open_calls = owner_->open_calls_;
      delete this;
      open_calls->Closed();
      return;
    }
    answering_ = true;
    owner_->Request(execute_);  // the next call of this method
    if (execute_) {
      Start<v1::ExecuteRequest, v1::ExecuteResponse>(
          "Execute",
          [this](v1::ExecuteRequest request, TransactionManager::Done done) {
            owner_->manager_->Execute(std::move(request), std::move(done));
          });
    } else {
      Start<v1::CommitRequest, v1::CommitResponse>(
          "Commit",
          [this](v1::CommitRequest request, TransactionManager::Done done) {
            owner_->manager_->Commit(request, std::move(done));
          });
    }
  }

 private:
  // Parses the request and hands it to `start` (the manager) with the
  // callback that answers; the manager calls it exactly once.
  template <typename RequestType, typename Response, typename StartFn>
  void Start(absl::string_view method, StartFn start) {
    auto answer = [this](absl::StatusOr<v1::Transaction> result) {
      if (!result.ok()) {
        responder_.FinishWithError(ToGrpcStatus(result.status()), tag());
        return;
      }
      Response response;
      *response.mutable_transaction() = std::move(*result);
      grpc::ByteBuffer bytes;
      bool own_buffer = false;
      grpc::Status status = grpc::SerializationTraits<Response>::Serialize(
          response, &bytes, &own_buffer);
      if (status.ok()) {
        responder_.Finish(bytes, grpc::Status::OK, tag());
      } else {
        responder_.FinishWithError(status, tag());
      }
    };
    RequestType request;
    absl::Status parsed = ParseOwnRequest(
        request_, v1::TransactionService::service_full_name(), method,
        &request);
    if (!parsed.ok()) {
      answer(parsed);
      return;
    }
    start(std::move(request), std::move(answer));
  }

  // The call's tag: the loop casts tags back to Handler*.
  void* tag() { return static_cast<Handler*>(this); }

  ClientCalls* const owner_;
  const bool execute_;
  bool answering_ = false;
  SelfParsingContext context_;  // no unparseable-request interceptor
  grpc::ByteBuffer request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_;
};

ClientCalls::ClientCalls(TransactionServiceImpl* service,
                         TransactionManager* manager,
                         grpc::ServerCompletionQueue* queue,
                         OpenCalls* open_calls)
    : service_(service),
      manager_(manager),
      queue_(queue),
      open_calls_(open_calls) {
  for (int i = 0; i < kRequestsPerMethod; ++i) {
    Request(/*execute=*/true);
    Request(/*execute=*/false);
  }
}

void ClientCalls::Request(bool execute) {
  // Closed once shutting down: no new request may reach the queue then.
  if (!open_calls_->TryOpen()) return;
  (new Call(this, execute))->Request();
}

}  // namespace twopc::coordinator
