#include "tools/bench/echo.h"

#include <grpcpp/generic/async_generic_service.h>

#include <cstdio>
#include <cstdlib>

#include "absl/time/clock.h"
#include "common/shutdown.h"

namespace twopc::bench {
namespace {

constexpr char kEchoMethod[] = "/twopc.bench.Echo/Echo";
constexpr absl::Duration kCallDeadline = absl::Seconds(60);

// Answers each call with the bytes it received. Unary calls arrive through
// the generic (bidi) reactor: read one message, write it back, finish.
class EchoService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext*) override {
    return new Reactor();
  }

  class Reactor final : public grpc::ServerGenericBidiReactor {
   public:
    Reactor() { StartRead(&message_); }

   private:
    void OnReadDone(bool ok) override {
      if (ok) {
        StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    void OnDone() override { delete this; }

    grpc::ByteBuffer message_;
  };
};

class EchoCall final : public PendingCall {
 public:
  EchoCall(grpc::GenericStub* stub, const grpc::ByteBuffer& request,
           grpc::CompletionQueue* cq, void* tag) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    reader_ = stub->PrepareUnaryCall(&context_, kEchoMethod, request, cq);
    reader_->StartCall();
    reader_->Finish(&response_, &status_, tag);
  }

  CallOutcome Outcome() const override {
    return status_.ok() ? CallOutcome::kCommitted : CallOutcome::kFailed;
  }
  std::string Error() const override { return StatusText(status_); }
  void Cancel() override { context_.TryCancel(); }

 private:
  grpc::ClientContext context_;
  grpc::ByteBuffer response_;
  grpc::Status status_;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader_;
};

grpc::ByteBuffer BytesOfSize(size_t size) {
  const std::string bytes(size, 'e');
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

int RunEchoServer(const std::string& listen) {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "twopc-bench echo-server: cannot listen on %s\n",
                 listen.c_str());
    return EXIT_FAILURE;
  }
  std::printf("twopc-bench echo-server listening on %s:%d\n",
              listen.substr(0, listen.rfind(':')).c_str(), port);
  std::fflush(stdout);
  WaitForShutdownSignal();
  server->Shutdown();
  return EXIT_SUCCESS;
}

EchoWorkload::EchoWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
                           size_t request_bytes)
    : request_(BytesOfSize(request_bytes)) {
  for (const auto& channel : channels) {
    stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
  }
}

std::unique_ptr<PendingCall> EchoWorkload::Start(int client, uint64_t,
                                                 grpc::CompletionQueue* cq,
                                                 QueueEvent* done) {
  return std::make_unique<EchoCall>(stubs_[client % stubs_.size()].get(),
                                    request_, cq, done);
}

}  // namespace twopc::bench
