// ConsumerGroups: consumer-group membership and committed offsets.
//
// Membership lives in memory: members Join, Heartbeat within their session
// timeout, and each partition of the group's topics is assigned to exactly
// one live member subscribed to its topic (partition p of a topic goes to
// the (p mod k)-th of its k subscribed members, in member-id order). Any
// change of membership, including a member expiring, bumps the generation.
// After a coordinator restart members get NOT_FOUND and join again.
//
// Committed offsets are durable (synced) per (group, topic, partition) and
// mean "the next offset to read". Only the member a partition is assigned to,
// in the current generation, may commit it.
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_COORDINATOR_CONSUMER_GROUPS_H_
#define TWOPC_COORDINATOR_CONSUMER_GROUPS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/topic_registry.h"
#include "storage/partition_log.h"
#include "storage/store.h"
#include "twopc/v1/admin.pb.h"
#include "twopc/v1/queue.pb.h"

namespace twopc::coordinator {

class ConsumerGroups {
 public:
  static constexpr char kFamily[] = "group_offsets";

  // All pointers must outlive this. `store` is opened with kFamily.
  ConsumerGroups(storage::Store* store, TopicRegistry* topics,
                 storage::PartitionLogs* logs, Clock* clock, uint64_t epoch);

  // Codes as documented in proto/twopc/v1/queue.proto.
  absl::StatusOr<v1::JoinGroupResponse> Join(const v1::JoinGroupRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::GroupHeartbeatResponse> Heartbeat(
      const v1::GroupHeartbeatRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  void Leave(const v1::LeaveGroupRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CommitOffsets(const v1::CommitOffsetsRequest& request)
      ABSL_LOCKS_EXCLUDED(commit_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::FetchOffsetsResponse> FetchOffsets(
      const v1::FetchOffsetsRequest& request) const ABSL_LOCKS_EXCLUDED(mu_);

  // For operators: groups with members, assignments, offsets and lag.
  std::vector<v1::GroupInfo> List() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<v1::GroupInfo> Describe(const std::string& group_id)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Member {
    std::vector<std::string> topics;
    absl::Duration session_timeout;
    absl::Time last_heartbeat;
    std::vector<v1::TopicPartition> assignment;
  };
  struct Group {
    uint64_t generation = 0;
    std::map<std::string, Member> members;
  };

  // The live member `member_id` of `group_id` (expiring others first);
  // NOT_FOUND when there is none.
  absl::StatusOr<std::pair<Group*, Member*>> FindMemberLocked(
      const std::string& group_id, const std::string& member_id,
      absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops members whose session expired; rebalances when any did.
  void ExpireLocked(Group& group, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes every member's assignment and bumps the generation.
  void RebalanceLocked(Group& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> ReadOffset(const std::string& group_id,
                                     const std::string& topic,
                                     int32_t partition) const;
  absl::StatusOr<v1::GroupInfo> DescribeLocked(const std::string& group_id,
                                               Group& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Store* const store_;
  TopicRegistry* const topics_;
  storage::PartitionLogs* const logs_;
  Clock* const clock_;
  const uint64_t epoch_;

  // Held across a commit's ownership check and its synced write, so a
  // member that lost a partition cannot overwrite, after the check, an
  // offset its new owner committed. Taken before mu_; not held by
  // heartbeats, which only need mu_.
  absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, Group> groups_ ABSL_GUARDED_BY(mu_);
  uint64_t next_member_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_CONSUMER_GROUPS_H_
