#include "participant/participant_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "participant/kv_resource.h"

namespace twopc::participant {

absl::StatusOr<std::unique_ptr<ParticipantServer>> ParticipantServer::Start(
    ParticipantOptions options) {
  RETURN_IF_ERROR(ValidateIdentifier("participant id (--id)", options.id));
  if (options.in_doubt_after <= absl::ZeroDuration() ||
      options.heartbeat <= absl::ZeroDuration() ||
      options.outcome_query_backoff_max <= absl::ZeroDuration() ||
      options.finished_retention <= absl::ZeroDuration() ||
      options.finished_retention_without_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--in_doubt_after, --heartbeat, --outcome_query_backoff_max and the "
        "--finished_retention flags must be positive");
  }
  if (options.data_dir.empty()) options.data_dir = absl::StrCat("var/", options.id);
  std::unique_ptr<ParticipantServer> server(
      new ParticipantServer(std::move(options)));
  ParticipantServer& s = *server;
  const ParticipantOptions& opts = s.options_;
  ASSIGN_OR_RETURN(s.store_, RocksDbBranchStore::Open(opts.data_dir));
  Resource* resource = nullptr;
  if (opts.callback.empty()) {
    s.kv_ = std::make_unique<KvResource>(s.store_.get());
    resource = s.kv_.get();
  } else {
    s.callback_ = std::make_unique<CallbackResource>(
        CallbackResourceOptions{.address = opts.callback}, Clock::Real());
    resource = s.callback_.get();
  }
  ASSIGN_OR_RETURN(
      s.manager_,
      BranchManager::Create(
          {.participant_id = opts.id,
           .in_doubt_after = opts.in_doubt_after,
           .query_backoff_initial =
               std::min(absl::Milliseconds(500), opts.in_doubt_after),
           .query_backoff_max = opts.outcome_query_backoff_max,
           .finished_retention = opts.finished_retention,
           .finished_retention_without_deadline =
               opts.finished_retention_without_deadline,
           .on_fatal =
               [](const std::string& message) {
                 std::fprintf(stderr, "twopc-participant: FATAL: %s\n",
                              message.c_str());
                 std::fflush(stderr);
                 std::_Exit(70);
               }},
          s.store_.get(), resource, Clock::Real()));
  s.link_service_ = std::make_unique<LinkService>(opts.id, s.manager_.get(),
                                                  s.store_.get());
  std::vector<grpc::Service*> services = {s.link_service_.get()};
  if (s.kv_ != nullptr) {
    s.kv_service_ = std::make_unique<KvServiceImpl>(s.store_.get());
    services.push_back(s.kv_service_.get());
  }
  GrpcServerBuilder builder(opts.listen, opts.max_message_bytes);
  std::unique_ptr<grpc::ServerCompletionQueue> queue = builder.AddAsyncQueue();
  ASSIGN_OR_RETURN(s.server_, builder.Start(services));
  s.link_service_->Start(std::move(queue));
  {
    s.coordinator_client_ = std::make_unique<CoordinatorClient>(
        CoordinatorClientOptions{
            .participant_id = opts.id,
            .coordinator = opts.coordinator,
            .endpoint = opts.advertise.empty() ? s.server_.address
                                               : opts.advertise,
            .resource = resource->kind(),
            .heartbeat_interval = opts.heartbeat,
            .retry_initial = absl::Milliseconds(100),
            .retry_max = absl::Seconds(5),
            .poll_interval = std::min(absl::Milliseconds(100),
                                      opts.in_doubt_after),
            .rpc_timeout = absl::Seconds(5)},
        s.manager_.get());
  }
  return server;
}

void ParticipantServer::Shutdown(absl::Duration grace) {
  if (server_.server == nullptr) return;
  coordinator_client_.reset();
  link_service_->CancelAll();
  server_.server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_.server->Wait();
  link_service_->Stop();  // drains the streams' queue; before the server
  server_.server.reset();
  // No new work from here on. Stop the application deliveries, then drain
  // the store (its callbacks still reach the manager and the resource).
  if (callback_ != nullptr) callback_->Stop();
  store_.reset();
  manager_.reset();
  kv_.reset();
  callback_.reset();
}

ParticipantServer::~ParticipantServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace twopc::participant
