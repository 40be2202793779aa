#include "coordinator/coordinator_server.h"

#include <utility>

#include "common/status_macros.h"

namespace twopc::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  ASSIGN_OR_RETURN(server->store_,
                   storage::Store::Open(options.data_dir, {.role = "coordinator", .column_families = {}}));
  ASSIGN_OR_RETURN(server->epoch_, server->store_->IncrementCounter("epoch"));
  ASSIGN_OR_RETURN(server->server_,
                   StartGrpcServer(options.listen, {}, options.max_message_bytes));
  return server;
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (server_.server == nullptr) return;
  server_.server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_.server->Wait();
  server_.server.reset();
  store_.reset();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace twopc::coordinator
