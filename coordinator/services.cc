#include "coordinator/services.h"

#include <map>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::coordinator {
namespace {

bool IsFinal(const v1::Transaction& t) {
  return t.state() == v1::TRANSACTION_STATE_COMMITTED ||
         t.state() == v1::TRANSACTION_STATE_ABORTED;
}

}  // namespace

grpc::Status TransactionServiceImpl::Begin(grpc::ServerContext*,
                                           const v1::BeginRequest* request,
                                           v1::BeginResponse* response) {
  absl::StatusOr<v1::BeginResponse> result = manager_->Begin(*request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::AddBranch(
    grpc::ServerContext*, const v1::AddBranchRequest* request,
    v1::AddBranchResponse*) {
  return ToGrpcStatus(manager_->AddBranch(*request));
}

grpc::Status TransactionServiceImpl::AddMessages(
    grpc::ServerContext*, const v1::AddMessagesRequest* request,
    v1::AddMessagesResponse* response) {
  absl::StatusOr<uint32_t> count = manager_->AddMessages(*request);
  if (!count.ok()) return ToGrpcStatus(count.status());
  response->set_message_count(*count);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::Abort(grpc::ServerContext*,
                                           const v1::AbortRequest* request,
                                           v1::AbortResponse* response) {
  absl::StatusOr<v1::Transaction> result = manager_->Abort(*request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response->mutable_transaction() = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::Get(grpc::ServerContext*,
                                         const v1::GetRequest* request,
                                         v1::GetResponse* response) {
  absl::StatusOr<v1::Transaction> result = manager_->Get(request->ref());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response->mutable_transaction() = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status TransactionServiceImpl::Watch(
    grpc::ServerContext* context, const v1::WatchRequest* request,
    grpc::ServerWriter<v1::WatchResponse>* writer) {
  absl::StatusOr<v1::Transaction> current = manager_->Get(request->ref());
  if (!current.ok()) return ToGrpcStatus(current.status());
  while (true) {
    v1::WatchResponse response;
    *response.mutable_transaction() = *current;
    if (!writer->Write(response)) return grpc::Status::CANCELLED;
    if (IsFinal(*current)) return grpc::Status::OK;
    // Wake up now and then to notice a cancelled client.
    v1::Transaction previous = *current;
    do {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      current = manager_->WaitForChange(request->ref(), previous,
                                        absl::Milliseconds(500));
      if (!current.ok()) return ToGrpcStatus(current.status());
    } while (current->SerializeAsString() == previous.SerializeAsString());
  }
}

grpc::Status CoordinatorServiceImpl::Register(
    grpc::ServerContext*, const v1::RegisterRequest* request,
    v1::RegisterResponse* response) {
  absl::Status status = registry_->Register(
      request->participant_id(), request->endpoint(), request->resource());
  if (!status.ok()) return ToGrpcStatus(status);
  response->set_coordinator_epoch(manager_->epoch());
  *response->mutable_heartbeat_interval() =
      google::protobuf::util::TimeUtil::MillisecondsToDuration(
          absl::ToInt64Milliseconds(registry_->heartbeat_interval()));
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::Heartbeat(
    grpc::ServerContext*, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  absl::Status status =
      registry_->Heartbeat(request->participant_id(),
                           request->prepared_branches(),
                           request->in_flight_requests());
  if (!status.ok()) return ToGrpcStatus(status);
  response->set_coordinator_epoch(manager_->epoch());
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::QueryOutcomes(
    grpc::ServerContext*, const v1::QueryOutcomesRequest* request,
    v1::QueryOutcomesResponse* response) {
  if (request->transaction_ids_size() > 1000) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "at most 1,000 transaction ids per QueryOutcomes");
  }
  std::vector<std::string> ids(request->transaction_ids().begin(),
                               request->transaction_ids().end());
  for (auto& result : manager_->QueryOutcomes(ids)) {
    *response->add_results() = std::move(result);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DescribeTransaction(
    grpc::ServerContext*, const v1::DescribeTransactionRequest* request,
    v1::TransactionDetail* response) {
  return ReplyWith(manager_->Describe(request->ref()), response);
}

grpc::Status AdminServiceImpl::ListTransactions(
    grpc::ServerContext*, const v1::ListTransactionsRequest* request,
    v1::ListTransactionsResponse* response) {
  return ReplyWith(manager_->List(*request), response);
}

grpc::Status AdminServiceImpl::ListStuckTransactions(
    grpc::ServerContext*, const v1::ListStuckTransactionsRequest* request,
    v1::ListStuckTransactionsResponse* response) {
  absl::Duration older_than = absl::Seconds(30);
  if (request->has_older_than()) {
    older_than = absl::Microseconds(
        google::protobuf::util::TimeUtil::DurationToMicroseconds(request->older_than()));
  }
  if (older_than < absl::ZeroDuration()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "older_than must not be negative");
  }
  for (v1::StuckTransaction& stuck : manager_->ListStuck(older_than)) {
    *response->add_transactions() = std::move(stuck);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RetryTransaction(
    grpc::ServerContext*, const v1::RetryTransactionRequest* request,
    v1::TransactionDetail* response) {
  return ReplyWith(manager_->Retry({.target = request->transaction_id(),
                                .reason = "",
                                .operator_name = ""}),
               response);
}

grpc::Status AdminServiceImpl::ParkTransaction(
    grpc::ServerContext*, const v1::ParkTransactionRequest* request,
    v1::TransactionDetail* response) {
  return ReplyWith(manager_->Park({.target = request->transaction_id(),
                               .reason = request->reason(),
                               .operator_name = request->operator_()},
                              /*parked=*/true),
               response);
}

grpc::Status AdminServiceImpl::UnparkTransaction(
    grpc::ServerContext*, const v1::UnparkTransactionRequest* request,
    v1::TransactionDetail* response) {
  return ReplyWith(manager_->Park({.target = request->transaction_id(),
                               .reason = request->reason(),
                               .operator_name = request->operator_()},
                              /*parked=*/false),
               response);
}

grpc::Status AdminServiceImpl::ForceTransaction(
    grpc::ServerContext*, const v1::ForceTransactionRequest* request,
    v1::TransactionDetail* response) {
  return ReplyWith(manager_->Force({.target = request->transaction_id(),
                                .reason = request->reason(),
                                .operator_name = request->operator_()},
                               request->outcome()),
               response);
}

grpc::Status AdminServiceImpl::RemoveParticipant(
    grpc::ServerContext*, const v1::RemoveParticipantRequest* request,
    v1::RemoveParticipantResponse*) {
  return ToGrpcStatus(
      manager_->RemoveParticipant({.target = request->participant_id(),
                                   .reason = request->reason(),
                                   .operator_name = request->operator_()}));
}

grpc::Status AdminServiceImpl::ListAuditRecords(
    grpc::ServerContext*, const v1::ListAuditRecordsRequest* request,
    v1::ListAuditRecordsResponse* response) {
  return ReplyWith(audit_->List(*request), response);
}

grpc::Status AdminServiceImpl::ListParticipants(
    grpc::ServerContext*, const v1::ListParticipantsRequest*,
    v1::ListParticipantsResponse* response) {
  const std::map<std::string, uint32_t> unfinished =
      manager_->UnfinishedByParticipant();
  for (v1::ParticipantInfo& info : registry_->List()) {
    auto it = unfinished.find(info.participant_id());
    info.set_unfinished_transactions(it == unfinished.end() ? 0 : it->second);
    *response->add_participants() = std::move(info);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetStats(grpc::ServerContext*,
                                        const v1::GetStatsRequest*,
                                        v1::Stats* response) {
  *response = manager_->GetStats();
  const storage::GroupCommitWriter::Stats writer = writer_stats_();
  response->set_log_syncs(writer.syncs);
  response->set_decisions_synced(writer.awaited_records);
  response->set_decisions_per_sync(
      writer.awaited_syncs == 0
          ? 0.0
          : static_cast<double>(writer.awaited_records) / writer.awaited_syncs);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CreateTopic(grpc::ServerContext*,
                                           const v1::CreateTopicRequest* request,
                                           v1::TopicInfo* response) {
  return ReplyWith(topics_->Create(*request), response);
}

grpc::Status AdminServiceImpl::UpdateTopic(grpc::ServerContext*,
                                           const v1::UpdateTopicRequest* request,
                                           v1::TopicInfo* response) {
  return ReplyWith(topics_->Update(*request), response);
}

grpc::Status AdminServiceImpl::ListTopics(grpc::ServerContext*,
                                          const v1::ListTopicsRequest*,
                                          v1::ListTopicsResponse* response) {
  for (v1::TopicInfo& info : topics_->List()) {
    *response->add_topics() = std::move(info);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DescribeTopic(
    grpc::ServerContext*, const v1::DescribeTopicRequest* request,
    v1::TopicInfo* response) {
  return ReplyWith(topics_->Describe(request->name(), true), response);
}

grpc::Status AdminServiceImpl::ListGroups(grpc::ServerContext*,
                                          const v1::ListGroupsRequest*,
                                          v1::ListGroupsResponse* response) {
  for (v1::GroupInfo& info : groups_->List()) {
    *response->add_groups() = std::move(info);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DescribeGroup(
    grpc::ServerContext*, const v1::DescribeGroupRequest* request,
    v1::GroupInfo* response) {
  return ReplyWith(groups_->Describe(request->group_id()), response);
}

}  // namespace twopc::coordinator
