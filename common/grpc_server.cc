#include "common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/health_service.h"
#include "common/unparseable_request.h"

namespace twopc {

GrpcServerBuilder::GrpcServerBuilder(std::string listen,
                                     int max_message_bytes)
    : listen_(std::move(listen)) {
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  builder_.AddListeningPort(listen_, grpc::InsecureServerCredentials(),
                            &port_);
  builder_.SetMaxReceiveMessageSize(max_message_bytes);
  // Accept the keepalive pings twopc clients send (every 2 s) instead of
  // closing their connections for "too many pings".
  builder_.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder_.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder_.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // One thread polls for the synchronous methods (the default is two): the
  // second mostly woke up to find nothing, costing a context switch per
  // event on this 2-core target (~5% of the coordinator's CPU per
  // transaction, `twopc-bench txn`). Handlers still get their own threads.
  builder_.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 1);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(MakeUnparseableRequestInterceptorFactory());
  builder_.experimental().SetInterceptorCreators(std::move(interceptors));
}

std::unique_ptr<grpc::ServerCompletionQueue>
GrpcServerBuilder::AddAsyncQueue() {
  return builder_.AddCompletionQueue();
}

absl::StatusOr<RunningServer> GrpcServerBuilder::Start(
    const std::vector<grpc::Service*>& services) {
  // Our own synchronous health service, not gRPC's default: that one uses
  // the callback API, whose completion queue comes with polling threads of
  // its own, and connections bound to it were read there and handed over
  // (~14% of the coordinator's CPU per transaction, `twopc-bench txn`).
  auto health = std::make_unique<HealthService>();
  builder_.RegisterService(health.get());
  for (grpc::Service* service : services) builder_.RegisterService(service);
  RunningServer running;
  running.server = builder_.BuildAndStart();
  running.health = std::move(health);
  if (running.server == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", listen_,
        ": address in use or not local? pick another with --listen"));
  }
  const std::string host = listen_.substr(0, listen_.rfind(':'));
  running.address = absl::StrCat(host, ":", port_);
  return running;
}

absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services,
    int max_message_bytes) {
  return GrpcServerBuilder(listen, max_message_bytes).Start(services);
}

}  // namespace twopc
