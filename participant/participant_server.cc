#include "participant/participant_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/identifiers.h"
#include "common/status_macros.h"

namespace twopc::participant {

absl::StatusOr<std::unique_ptr<ParticipantServer>> ParticipantServer::Start(
    ParticipantOptions options) {
  RETURN_IF_ERROR(ValidateIdentifier("participant id (--id)", options.id));
  if (options.data_dir.empty()) options.data_dir = absl::StrCat("var/", options.id);
  std::unique_ptr<ParticipantServer> server(
      new ParticipantServer(std::move(options)));
  const ParticipantOptions& opts = server->options_;
  ASSIGN_OR_RETURN(server->store_,
                   storage::Store::Open(opts.data_dir, {.role = "participant", .column_families = {}}));
  ASSIGN_OR_RETURN(server->server_,
                   StartGrpcServer(opts.listen, {}, opts.max_message_bytes));
  return server;
}

void ParticipantServer::Shutdown(absl::Duration grace) {
  if (server_.server == nullptr) return;
  server_.server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_.server->Wait();
  server_.server.reset();
  store_.reset();
}

ParticipantServer::~ParticipantServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace twopc::participant
