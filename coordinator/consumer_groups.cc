#include "coordinator/consumer_groups.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "storage/coding.h"

namespace twopc::coordinator {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::Duration kDefaultSession = absl::Seconds(10);
constexpr absl::Duration kMinSession = absl::Seconds(1);
constexpr absl::Duration kMaxSession = absl::Minutes(5);

std::string OffsetKey(const std::string& group, const std::string& topic,
                      int32_t partition) {
  return absl::StrCat(group, std::string(1, '\0'), topic, std::string(1, '\0'),
                      partition);
}

absl::Status UnknownMember(const std::string& group, const std::string& member) {
  return absl::NotFoundError(absl::StrCat(
      "member ", QuoteField(member), " is not in group ", QuoteField(group),
      " (its session expired or the coordinator restarted); join again"));
}

}  // namespace

ConsumerGroups::ConsumerGroups(storage::Store* store, TopicRegistry* topics,
                               storage::PartitionLogs* logs, Clock* clock,
                               uint64_t epoch)
    : store_(store), topics_(topics), logs_(logs), clock_(clock), epoch_(epoch) {}

absl::StatusOr<v1::JoinGroupResponse> ConsumerGroups::Join(
    const v1::JoinGroupRequest& request) {
  RETURN_IF_ERROR(ValidateIdentifier("group_id", request.group_id()));
  if (!request.member_id().empty()) {
    RETURN_IF_ERROR(ValidateIdentifier("member_id", request.member_id()));
  }
  if (request.topics().empty()) {
    return absl::InvalidArgumentError("name at least one topic to consume");
  }
  for (const std::string& topic : request.topics()) {
    RETURN_IF_ERROR(topics_->Describe(topic, false).status());
  }
  absl::Duration session =
      request.has_session_timeout()
          ? absl::Microseconds(
                TimeUtil::DurationToMicroseconds(request.session_timeout()))
          : kDefaultSession;
  if (session < kMinSession || session > kMaxSession) {
    return absl::InvalidArgumentError(
        "session_timeout must be between 1s and 5m");
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  Group& group = groups_[request.group_id()];
  ExpireLocked(group, now);
  const std::string member_id =
      request.member_id().empty()
          ? absl::StrCat("m", epoch_, "-", next_member_++)
          : request.member_id();
  Member& member = group.members[member_id];
  member.topics.assign(request.topics().begin(), request.topics().end());
  std::sort(member.topics.begin(), member.topics.end());
  member.session_timeout = session;
  member.last_heartbeat = now;
  RebalanceLocked(group);
  v1::JoinGroupResponse response;
  response.set_member_id(member_id);
  response.set_generation(group.generation);
  for (const auto& tp : member.assignment) *response.add_assignment() = tp;
  *response.mutable_heartbeat_interval() =
      TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(session / 3));
  return response;
}

absl::StatusOr<v1::GroupHeartbeatResponse> ConsumerGroups::Heartbeat(
    const v1::GroupHeartbeatRequest& request) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found,
                   FindMemberLocked(request.group_id(), request.member_id(), now));
  auto [group, member] = found;
  member->last_heartbeat = now;
  v1::GroupHeartbeatResponse response;
  response.set_generation(group->generation);
  for (const auto& tp : member->assignment) *response.add_assignment() = tp;
  return response;
}

absl::StatusOr<std::pair<ConsumerGroups::Group*, ConsumerGroups::Member*>>
ConsumerGroups::FindMemberLocked(const std::string& group_id,
                                 const std::string& member_id, absl::Time now) {
  auto group = groups_.find(group_id);
  if (group == groups_.end()) return UnknownMember(group_id, member_id);
  ExpireLocked(group->second, now);
  auto member = group->second.members.find(member_id);
  if (member == group->second.members.end()) {
    return UnknownMember(group_id, member_id);
  }
  return std::make_pair(&group->second, &member->second);
}

void ConsumerGroups::Leave(const v1::LeaveGroupRequest& request) {
  absl::MutexLock lock(&mu_);
  auto group = groups_.find(request.group_id());
  if (group == groups_.end()) return;
  if (group->second.members.erase(request.member_id()) > 0) {
    RebalanceLocked(group->second);
  }
}

void ConsumerGroups::ExpireLocked(Group& group, absl::Time now) {
  bool changed = false;
  for (auto it = group.members.begin(); it != group.members.end();) {
    if (now - it->second.last_heartbeat > it->second.session_timeout) {
      it = group.members.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) RebalanceLocked(group);
}

void ConsumerGroups::RebalanceLocked(Group& group) {
  ++group.generation;
  std::set<std::string> topics;
  for (auto& [id, member] : group.members) {
    member.assignment.clear();
    topics.insert(member.topics.begin(), member.topics.end());
  }
  for (const std::string& topic : topics) {
    absl::StatusOr<v1::TopicInfo> info = topics_->Describe(topic, false);
    if (!info.ok()) continue;
    std::vector<Member*> subscribed;
    for (auto& [id, member] : group.members) {  // in member-id order
      if (std::binary_search(member.topics.begin(), member.topics.end(),
                             topic)) {
        subscribed.push_back(&member);
      }
    }
    if (subscribed.empty()) continue;
    for (int32_t p = 0; p < info->partitions(); ++p) {
      v1::TopicPartition tp;
      tp.set_topic(topic);
      tp.set_partition(p);
      subscribed[p % subscribed.size()]->assignment.push_back(std::move(tp));
    }
  }
}

absl::Status ConsumerGroups::CommitOffsets(
    const v1::CommitOffsetsRequest& request) {
  absl::MutexLock commit_lock(&commit_mu_);
  rocksdb::WriteBatch batch;
  {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        auto found,
        FindMemberLocked(request.group_id(), request.member_id(), now));
    auto [group, member] = found;
    if (request.generation() != group->generation) {
      return absl::FailedPreconditionError(absl::StrCat(
          "generation ", request.generation(), " is stale (now ",
          group->generation, "); heartbeat to get the current assignment"));
    }
    for (const v1::PartitionOffset& offset : request.offsets()) {
      const auto& assignment = member->assignment;
      const bool assigned = std::any_of(
          assignment.begin(), assignment.end(), [&](const auto& tp) {
            return tp.topic() == offset.topic() &&
                   tp.partition() == offset.partition();
          });
      if (!assigned) {
        return absl::FailedPreconditionError(absl::StrCat(
            "partition ", offset.partition(), " of topic ",
            QuoteField(offset.topic()), " is not assigned to member ",
            QuoteField(request.member_id()),
            "; heartbeat to get the current assignment"));
      }
      ASSIGN_OR_RETURN(storage::PartitionLogs::Offsets bounds,
                       logs_->GetOffsets(offset.topic(), offset.partition()));
      if (offset.offset() < 0 || offset.offset() > bounds.end) {
        return absl::InvalidArgumentError(absl::StrCat(
            "offset ", offset.offset(), " of ", offset.topic(), "/",
            offset.partition(), " is past the end (", bounds.end, ")"));
      }
      std::string value;
      storage::PutFixed64BE(&value, static_cast<uint64_t>(offset.offset()));
      batch.Put(store_->family(kFamily),
                OffsetKey(request.group_id(), offset.topic(),
                          offset.partition()),
                value);
    }
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return storage::FromRocksDb(store_->db()->Write(sync, &batch),
                              "committing offsets");
}

absl::StatusOr<int64_t> ConsumerGroups::ReadOffset(const std::string& group_id,
                                                   const std::string& topic,
                                                   int32_t partition) const {
  std::string value;
  rocksdb::Status s = store_->db()->Get(
      rocksdb::ReadOptions(), store_->family(kFamily),
      OffsetKey(group_id, topic, partition), &value);
  if (s.IsNotFound()) return -1;
  RETURN_IF_ERROR(storage::FromRocksDb(s, "reading a committed offset"));
  if (value.size() != 8) return absl::DataLossError("corrupt committed offset");
  return static_cast<int64_t>(storage::DecodeFixed64BE(value));
}

absl::StatusOr<v1::FetchOffsetsResponse> ConsumerGroups::FetchOffsets(
    const v1::FetchOffsetsRequest& request) const {
  std::vector<std::string> topics(request.topics().begin(),
                                  request.topics().end());
  if (topics.empty()) {
    for (const v1::TopicInfo& info : topics_->List()) {
      topics.push_back(info.name());
    }
  }
  v1::FetchOffsetsResponse response;
  for (const std::string& topic : topics) {
    ASSIGN_OR_RETURN(v1::TopicInfo info, topics_->Describe(topic, false));
    for (int32_t p = 0; p < info.partitions(); ++p) {
      ASSIGN_OR_RETURN(int64_t offset,
                       ReadOffset(request.group_id(), topic, p));
      if (offset < 0) continue;
      v1::PartitionOffset* out = response.add_offsets();
      out->set_topic(topic);
      out->set_partition(p);
      out->set_offset(offset);
    }
  }
  return response;
}

absl::StatusOr<v1::GroupInfo> ConsumerGroups::DescribeLocked(
    const std::string& group_id, Group& group) {
  ExpireLocked(group, clock_->Now());
  v1::GroupInfo info;
  info.set_group_id(group_id);
  info.set_generation(group.generation);
  std::set<std::string> topics;
  std::map<std::pair<std::string, int32_t>, std::string> owner;
  for (const auto& [id, member] : group.members) {
    v1::GroupMember* out = info.add_members();
    out->set_member_id(id);
    *out->mutable_last_heartbeat() = TimeUtil::MicrosecondsToTimestamp(
        absl::ToUnixMicros(member.last_heartbeat));
    for (const auto& tp : member.assignment) {
      *out->add_assignment() = tp;
      owner[{tp.topic(), tp.partition()}] = id;
    }
    topics.insert(member.topics.begin(), member.topics.end());
  }
  for (const std::string& topic : topics) {
    info.add_topics(topic);
    ASSIGN_OR_RETURN(v1::TopicInfo described, topics_->Describe(topic, true));
    for (const v1::PartitionInfo& p : described.partition_info()) {
      v1::GroupPartition* out = info.add_partitions();
      out->set_topic(topic);
      out->set_partition(p.partition());
      ASSIGN_OR_RETURN(int64_t committed,
                       ReadOffset(group_id, topic, p.partition()));
      out->set_committed_offset(committed);
      out->set_end_offset(p.end_offset());
      out->set_lag(p.end_offset() -
                   (committed < 0 ? p.log_start_offset() : committed));
      out->set_member_id(owner[{topic, p.partition()}]);
    }
  }
  return info;
}

std::vector<v1::GroupInfo> ConsumerGroups::List() {
  std::vector<v1::GroupInfo> result;
  absl::MutexLock lock(&mu_);
  for (auto& [id, group] : groups_) {
    absl::StatusOr<v1::GroupInfo> info = DescribeLocked(id, group);
    if (info.ok()) result.push_back(std::move(*info));
  }
  return result;
}

absl::StatusOr<v1::GroupInfo> ConsumerGroups::Describe(
    const std::string& group_id) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("group ", QuoteField(group_id),
                     " has no members since the coordinator started"));
  }
  return DescribeLocked(group_id, it->second);
}

}  // namespace twopc::coordinator
