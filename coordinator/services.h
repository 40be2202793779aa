// The coordinator's gRPC services: thin adapters from grpc to
// TransactionManager / ParticipantRegistry. They convert statuses at the
// edge (common/grpc_status.h) and hold no state of their own.
#ifndef TWOPC_COORDINATOR_SERVICES_H_
#define TWOPC_COORDINATOR_SERVICES_H_

#include <functional>

#include "coordinator/audit_log.h"
#include "coordinator/consumer_groups.h"
#include "coordinator/participant_registry.h"
#include "coordinator/topic_registry.h"
#include "coordinator/transaction_manager.h"
#include "storage/group_commit_writer.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::coordinator {

// TransactionService (clients). Execute, Commit and ExecuteStream are
// asynchronous raw methods, served by ClientCalls
// (coordinator/client_calls.h) and ExecuteStreams
// (coordinator/execute_streams.h) on the server's completion queue; the
// rest are synchronous here. Thread-safe.
class TransactionServiceImpl final
    : public v1::TransactionService::WithRawMethod_Execute<
          v1::TransactionService::WithRawMethod_Commit<
              v1::TransactionService::WithRawMethod_ExecuteStream<
                  v1::TransactionService::Service>>> {
 public:
  explicit TransactionServiceImpl(TransactionManager* manager)
      : manager_(manager) {}

  grpc::Status Begin(grpc::ServerContext* context,
                     const v1::BeginRequest* request,
                     v1::BeginResponse* response) override;
  grpc::Status AddBranch(grpc::ServerContext* context,
                         const v1::AddBranchRequest* request,
                         v1::AddBranchResponse* response) override;
  grpc::Status AddMessages(grpc::ServerContext* context,
                           const v1::AddMessagesRequest* request,
                           v1::AddMessagesResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context,
                     const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::WatchResponse>* writer) override;

 private:
  TransactionManager* const manager_;
};

// CoordinatorService (participant sidecars). Thread-safe.
class CoordinatorServiceImpl final : public v1::CoordinatorService::Service {
 public:
  CoordinatorServiceImpl(TransactionManager* manager,
                         ParticipantRegistry* registry)
      : manager_(manager), registry_(registry) {}

  grpc::Status Register(grpc::ServerContext* context,
                        const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status QueryOutcomes(grpc::ServerContext* context,
                             const v1::QueryOutcomesRequest* request,
                             v1::QueryOutcomesResponse* response) override;

 private:
  TransactionManager* const manager_;
  ParticipantRegistry* const registry_;
};

// AdminService (operators). Thread-safe.
class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(TransactionManager* manager, AuditLog* audit,
                   ParticipantRegistry* registry, TopicRegistry* topics,
                   ConsumerGroups* groups,
                   std::function<storage::GroupCommitWriter::Stats()>
                       writer_stats)
      : manager_(manager),
        audit_(audit),
        registry_(registry),
        topics_(topics),
        groups_(groups),
        writer_stats_(std::move(writer_stats)) {}

  grpc::Status DescribeTransaction(grpc::ServerContext* context,
                                   const v1::DescribeTransactionRequest* request,
                                   v1::TransactionDetail* response) override;
  grpc::Status ListTransactions(grpc::ServerContext* context,
                                const v1::ListTransactionsRequest* request,
                                v1::ListTransactionsResponse* response) override;
  grpc::Status ListStuckTransactions(
      grpc::ServerContext* context,
      const v1::ListStuckTransactionsRequest* request,
      v1::ListStuckTransactionsResponse* response) override;
  grpc::Status RetryTransaction(grpc::ServerContext* context,
                                const v1::RetryTransactionRequest* request,
                                v1::TransactionDetail* response) override;
  grpc::Status ParkTransaction(grpc::ServerContext* context,
                               const v1::ParkTransactionRequest* request,
                               v1::TransactionDetail* response) override;
  grpc::Status UnparkTransaction(grpc::ServerContext* context,
                                 const v1::UnparkTransactionRequest* request,
                                 v1::TransactionDetail* response) override;
  grpc::Status ForceTransaction(grpc::ServerContext* context,
                                const v1::ForceTransactionRequest* request,
                                v1::TransactionDetail* response) override;
  grpc::Status ListAuditRecords(grpc::ServerContext* context,
                                const v1::ListAuditRecordsRequest* request,
                                v1::ListAuditRecordsResponse* response) override;
  grpc::Status ListParticipants(grpc::ServerContext* context,
                                const v1::ListParticipantsRequest* request,
                                v1::ListParticipantsResponse* response) override;
  grpc::Status RemoveParticipant(grpc::ServerContext* context,
                                 const v1::RemoveParticipantRequest* request,
                                 v1::RemoveParticipantResponse* response)
      override;
  grpc::Status GetStats(grpc::ServerContext* context,
                        const v1::GetStatsRequest* request,
                        v1::Stats* response) override;
  grpc::Status CreateTopic(grpc::ServerContext* context,
                           const v1::CreateTopicRequest* request,
                           v1::TopicInfo* response) override;
  grpc::Status UpdateTopic(grpc::ServerContext* context,
                           const v1::UpdateTopicRequest* request,
                           v1::TopicInfo* response) override;
  grpc::Status ListTopics(grpc::ServerContext* context,
                          const v1::ListTopicsRequest* request,
                          v1::ListTopicsResponse* response) override;
  grpc::Status DescribeTopic(grpc::ServerContext* context,
                             const v1::DescribeTopicRequest* request,
                             v1::TopicInfo* response) override;
  grpc::Status ListGroups(grpc::ServerContext* context,
                          const v1::ListGroupsRequest* request,
                          v1::ListGroupsResponse* response) override;
  grpc::Status DescribeGroup(grpc::ServerContext* context,
                             const v1::DescribeGroupRequest* request,
                             v1::GroupInfo* response) override;

 private:
  TransactionManager* const manager_;
  AuditLog* const audit_;
  ParticipantRegistry* const registry_;
  TopicRegistry* const topics_;
  ConsumerGroups* const groups_;
  const std::function<storage::GroupCommitWriter::Stats()> writer_stats_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_SERVICES_H_
