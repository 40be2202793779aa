#include "coordinator/coordinator_server.h"

#include <algorithm>
#include <utility>

#include "common/clock.h"
#include "common/status_macros.h"

namespace twopc::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  CoordinatorServer* s = server.get();
  ASSIGN_OR_RETURN(
      s->store_,
      storage::Store::Open(
          options.data_dir,
          {.role = "coordinator",
           .column_families = {storage::DecisionLog::kRecordsFamily,
                               storage::DecisionLog::kKeysFamily,
                               ParticipantRegistry::kFamily,
                               TopicRegistry::kFamily,
                               storage::PartitionLogs::kFamily,
                               storage::PartitionLogs::kMetaFamily,
                               ConsumerGroups::kFamily,
                               AuditLog::kFamily}}));
  ASSIGN_OR_RETURN(s->epoch_, s->store_->IncrementCounter("epoch"));
  s->queues_ = std::make_unique<storage::PartitionLogs>(s->store_.get());
  s->topics_ = std::make_unique<TopicRegistry>(
      s->store_.get(), s->queues_.get(), Clock::Real(),
      options.auto_create_partitions);
  RETURN_IF_ERROR(s->topics_->Load());
  s->topics_->StartRetention(options.retention_interval);
  s->groups_ = std::make_unique<ConsumerGroups>(
      s->store_.get(), s->topics_.get(), s->queues_.get(), Clock::Real(),
      s->epoch_);
  storage::GroupCommitWriter::Options writer_options;
  storage::PartitionLogs* queues = s->queues_.get();
  // Messages appended with a COMMIT record become readable once it is synced.
  writer_options.after_sync = [queues] { queues->MarkSynced(); };
  s->writer_ = std::make_unique<storage::GroupCommitWriter>(s->store_->db(),
                                                            writer_options);
  s->log_ = std::make_unique<storage::DecisionLog>(
      s->store_.get(), s->writer_.get(), s->queues_.get());

  // One thread drains the server's queue for asynchronous methods (the
  // client hot path, ClientCalls), drives every participant link, and
  // writes the decision-log records that a round of its events queued
  // itself, before it waits again (GroupCommitWriter::WriteQueuedHere). So
  // a transaction goes from its Execute through the prepares, the votes,
  // the synced COMMIT record to its answer and its commits on one thread,
  // without a hand-over. The queue exists before the server starts, so the
  // links can start (and recovery can use them) before anyone is served.
  GrpcServerBuilder builder(options.listen, options.max_message_bytes);
  std::unique_ptr<grpc::ServerCompletionQueue> queue = builder.AddAsyncQueue();
  grpc::ServerCompletionQueue* server_queue = queue.get();
  storage::GroupCommitWriter* log_writer = s->writer_.get();
  s->loop_ = std::make_unique<CompletionQueueLoop>(
      std::move(queue), [log_writer] { log_writer->WriteQueuedHere(); });

  // Link callbacks reach the manager, which is created right after; links
  // only start (and so only call back) in registry_->Load().
  ParticipantLink::Callbacks callbacks{
      .on_replies =
          [s](const std::string& participant,
              absl::Span<const v1::BranchReply> replies) {
            s->manager_->OnReplies(participant, replies);
          },
      .on_failure =
          [s](const std::string& participant, const std::string& transaction,
              const std::string& error) {
            s->manager_->OnDeliveryFailure(participant, transaction, error);
          }};
  s->registry_ = std::make_unique<ParticipantRegistry>(
      s->store_.get(), Clock::Real(), s->loop_.get(), s->epoch_,
      std::move(callbacks), options.heartbeat_interval);
  ASSIGN_OR_RETURN(s->audit_, AuditLog::Open(s->store_.get()));
  s->manager_ = std::make_unique<TransactionManager>(
      s->epoch_, Clock::Real(), s->store_.get(), s->log_.get(),
      s->audit_.get(), s->registry_.get(), s->topics_.get(), options.manager);
  RETURN_IF_ERROR(s->registry_->Load());
  RETURN_IF_ERROR(s->manager_->Start());

  s->transaction_service_ =
      std::make_unique<TransactionServiceImpl>(s->manager_.get());
  s->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(
      s->manager_.get(), s->registry_.get());
  storage::GroupCommitWriter* writer = s->writer_.get();
  s->admin_service_ = std::make_unique<AdminServiceImpl>(
      s->manager_.get(), s->audit_.get(), s->registry_.get(), s->topics_.get(),
      s->groups_.get(), [writer] { return writer->stats(); });
  s->queue_service_ = std::make_unique<QueueServiceImpl>(
      s->topics_.get(), s->queues_.get(), s->groups_.get());
  ASSIGN_OR_RETURN(
      s->server_,
      builder.Start({s->transaction_service_.get(),
                     s->coordinator_service_.get(), s->admin_service_.get(),
                     s->queue_service_.get()}));
  s->client_calls_ = std::make_unique<ClientCalls>(
      s->transaction_service_.get(), s->manager_.get(), server_queue,
      &s->open_client_calls_);
  s->execute_streams_ = std::make_unique<ExecuteStreams>(
      s->transaction_service_.get(), s->manager_.get(), server_queue,
      s->loop_.get(), &s->open_client_calls_,
      options.manager.limits.max_execute_streams);
  return server;
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  // 0. Drain: start nothing new, and give the transactions already started
  //    up to `grace` to be decided, so that their clients get outcomes.
  const absl::Time give_up = absl::Now() + grace;
  if (execute_streams_ != nullptr) execute_streams_->StopAccepting();
  if (manager_ != nullptr) manager_->Drain(grace);
  grace = std::max(give_up - absl::Now(), absl::ZeroDuration());
  // 1. Stop timers and answer waiting clients, and end the open streams,
  //    so no call blocks shutdown.
  if (manager_ != nullptr) manager_->Stop();
  if (execute_streams_ != nullptr) execute_streams_->Stop();
  if (queues_ != nullptr) queues_->EndWaits();  // long polls, subscriptions
  // 2. Stop serving.
  if (server_.server != nullptr) {
    server_.server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_.server->Wait();
  }
  // The server does not wait for asynchronous calls: their last events
  // may still be on the loop, which must run until every one has ended.
  open_client_calls_.CloseAndWait();
  client_calls_.reset();
  execute_streams_.reset();
  // 3. Links (their failure callbacks reach the manager, which may queue
  //    log writes); then the loop, which drains what is left of the calls
  //    from its queue (before the server goes); then the writer, which
  //    drains its queue into the log and the manager, then everything it
  //    wrote through.
  if (registry_ != nullptr) registry_->Shutdown();
  loop_.reset();
  server_.server.reset();
  if (topics_ != nullptr) topics_->StopRetention();
  writer_.reset();
  log_.reset();
  manager_.reset();
  audit_.reset();
  registry_.reset();
  groups_.reset();
  topics_.reset();
  queues_.reset();
  store_.reset();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace twopc::coordinator
