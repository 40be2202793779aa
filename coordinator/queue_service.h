// QueueServiceImpl: consumers read the partitions that committed
// transactions publish to (see proto/twopc/v1/queue.proto). Fetch and
// Subscribe read partitions; the group calls go to ConsumerGroups.
//
// Subscribe holds at most one batch per stream: it reads the next batch
// only after the previous one was written, so gRPC flow control makes a slow
// consumer wait without blocking producers or growing memory.
//
// Thread-safety: thread-safe.
#ifndef TWOPC_COORDINATOR_QUEUE_SERVICE_H_
#define TWOPC_COORDINATOR_QUEUE_SERVICE_H_

#include "coordinator/consumer_groups.h"
#include "coordinator/topic_registry.h"
#include "storage/partition_log.h"
#include "twopc/v1/queue.grpc.pb.h"

namespace twopc::coordinator {

class QueueServiceImpl final : public v1::QueueService::Service {
 public:
  QueueServiceImpl(TopicRegistry* topics, storage::PartitionLogs* logs,
                   ConsumerGroups* groups)
      : topics_(topics), logs_(logs), groups_(groups) {}

  grpc::Status Fetch(grpc::ServerContext* context,
                     const v1::FetchRequest* request,
                     v1::FetchResponse* response) override;
  grpc::Status Subscribe(
      grpc::ServerContext* context, const v1::SubscribeRequest* request,
      grpc::ServerWriter<v1::SubscribeResponse>* writer) override;
  grpc::Status JoinGroup(grpc::ServerContext* context,
                         const v1::JoinGroupRequest* request,
                         v1::JoinGroupResponse* response) override;
  grpc::Status GroupHeartbeat(grpc::ServerContext* context,
                              const v1::GroupHeartbeatRequest* request,
                              v1::GroupHeartbeatResponse* response) override;
  grpc::Status LeaveGroup(grpc::ServerContext* context,
                          const v1::LeaveGroupRequest* request,
                          v1::LeaveGroupResponse* response) override;
  grpc::Status CommitOffsets(grpc::ServerContext* context,
                             const v1::CommitOffsetsRequest* request,
                             v1::CommitOffsetsResponse* response) override;
  grpc::Status FetchOffsets(grpc::ServerContext* context,
                            const v1::FetchOffsetsRequest* request,
                            v1::FetchOffsetsResponse* response) override;

 private:
  // NOT_FOUND / INVALID_ARGUMENT for a bad topic, partition or offset.
  absl::Status CheckPosition(const std::string& topic, int32_t partition,
                             int64_t offset) const;

  TopicRegistry* const topics_;
  storage::PartitionLogs* const logs_;
  ConsumerGroups* const groups_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_QUEUE_SERVICE_H_
