#include "coordinator/topic_registry.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::coordinator {
namespace {

using google::protobuf::util::TimeUtil;

absl::StatusOr<std::pair<int64_t, int64_t>> ValidateRetention(
    const v1::Retention& retention) {
  const int64_t age_us = TimeUtil::DurationToMicroseconds(retention.max_age());
  if (age_us < 0 || retention.max_bytes() < 0) {
    return absl::InvalidArgumentError(
        "retention max_age and max_bytes must be >= 0 (0 = unlimited)");
  }
  return std::make_pair(age_us, retention.max_bytes());
}

}  // namespace

TopicRegistry::TopicRegistry(storage::Store* store,
                             storage::PartitionLogs* logs, Clock* clock,
                             int32_t auto_create_partitions)
    : store_(store),
      logs_(logs),
      clock_(clock),
      auto_create_partitions_(auto_create_partitions) {}

v1::TopicInfo TopicRegistry::ToInfo(const internal::TopicRecord& record) {
  v1::TopicInfo info;
  info.set_name(record.name());
  info.set_partitions(record.partitions());
  *info.mutable_retention()->mutable_max_age() =
      TimeUtil::MicrosecondsToDuration(record.retention_max_age_us());
  info.mutable_retention()->set_max_bytes(record.retention_max_bytes());
  *info.mutable_create_time() =
      TimeUtil::MicrosecondsToTimestamp(record.create_time_us());
  return info;
}

absl::Status TopicRegistry::Load() {
  std::unique_ptr<rocksdb::Iterator> it(store_->db()->NewIterator(
      rocksdb::ReadOptions(), store_->family(kFamily)));
  std::vector<internal::TopicRecord> records;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    internal::TopicRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "topic registry in ", store_->dir(), " holds a corrupt record"));
    }
    records.push_back(std::move(record));
  }
  RETURN_IF_ERROR(storage::FromRocksDb(it->status(), "loading topics"));
  for (const internal::TopicRecord& record : records) {
    RETURN_IF_ERROR(logs_->AddTopic(record.name(), record.partitions()));
  }
  absl::MutexLock lock(&mu_);
  for (internal::TopicRecord& record : records) {
    topics_[record.name()] = std::move(record);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::TopicInfo> TopicRegistry::Create(
    const v1::CreateTopicRequest& request) {
  RETURN_IF_ERROR(ValidateIdentifier("topic name", request.name(), 128));
  if (request.partitions() < 1 || request.partitions() > kMaxPartitions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "topic ", request.name(), ": partitions must be 1..", kMaxPartitions,
        ", got ", request.partitions()));
  }
  ASSIGN_OR_RETURN(auto retention, ValidateRetention(request.retention()));
  internal::TopicRecord record;
  record.set_name(request.name());
  record.set_partitions(request.partitions());
  record.set_retention_max_age_us(retention.first);
  record.set_retention_max_bytes(retention.second);
  {
    absl::MutexLock lock(&mu_);
    auto it = topics_.find(request.name());
    if (it != topics_.end()) {
      const internal::TopicRecord& existing = it->second;
      if (existing.partitions() == record.partitions() &&
          existing.retention_max_age_us() == record.retention_max_age_us() &&
          existing.retention_max_bytes() == record.retention_max_bytes()) {
        return ToInfo(existing);
      }
      return absl::AlreadyExistsError(absl::StrCat(
          "topic ", request.name(), " already exists with ",
          existing.partitions(),
          " partitions and other settings; partitions cannot change"));
    }
    record.set_create_time_us(absl::ToUnixMicros(clock_->Now()));
    RETURN_IF_ERROR(logs_->AddTopic(record.name(), record.partitions()));
    rocksdb::WriteOptions sync;
    sync.sync = true;
    RETURN_IF_ERROR(storage::FromRocksDb(
        store_->db()->Put(sync, store_->family(kFamily), record.name(),
                          record.SerializeAsString()),
        "creating topic"));
    topics_[record.name()] = record;
  }
  return ToInfo(record);
}

absl::StatusOr<v1::TopicInfo> TopicRegistry::Update(
    const v1::UpdateTopicRequest& request) {
  ASSIGN_OR_RETURN(auto retention, ValidateRetention(request.retention()));
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(request.name());
  if (it == topics_.end()) {
    return absl::NotFoundError(
        absl::StrCat("topic '", request.name(), "' does not exist"));
  }
  internal::TopicRecord record = it->second;
  record.set_retention_max_age_us(retention.first);
  record.set_retention_max_bytes(retention.second);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(storage::FromRocksDb(
      store_->db()->Put(sync, store_->family(kFamily), record.name(),
                        record.SerializeAsString()),
      "updating topic"));
  it->second = record;
  return ToInfo(record);
}

absl::StatusOr<v1::TopicInfo> TopicRegistry::Describe(
    const std::string& name, bool with_partitions) const {
  v1::TopicInfo info;
  {
    absl::MutexLock lock(&mu_);
    auto it = topics_.find(name);
    if (it == topics_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "topic '", name, "' does not exist; create it with "
          "`twopcctl topic create`"));
    }
    info = ToInfo(it->second);
  }
  if (with_partitions) {
    for (int32_t p = 0; p < info.partitions(); ++p) {
      ASSIGN_OR_RETURN(storage::PartitionLogs::Offsets offsets,
                       logs_->GetOffsets(name, p));
      v1::PartitionInfo* partition = info.add_partition_info();
      partition->set_partition(p);
      partition->set_log_start_offset(offsets.log_start);
      partition->set_end_offset(offsets.end);
    }
  }
  return info;
}

std::vector<v1::TopicInfo> TopicRegistry::List() const {
  std::vector<v1::TopicInfo> result;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, record] : topics_) result.push_back(ToInfo(record));
  return result;
}

absl::StatusOr<int32_t> TopicRegistry::Route(const v1::Message& message,
                                             const std::string& fallback_key) {
  int32_t partitions = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = topics_.find(message.topic());
    if (it != topics_.end()) partitions = it->second.partitions();
  }
  if (partitions == 0) {
    if (auto_create_partitions_ <= 0) {
      return absl::NotFoundError(absl::StrCat(
          "topic '", message.topic(),
          "' does not exist; create it with `twopcctl topic create` (or run "
          "the coordinator with --auto_create_partitions)"));
    }
    v1::CreateTopicRequest create;
    create.set_name(message.topic());
    create.set_partitions(auto_create_partitions_);
    ASSIGN_OR_RETURN(v1::TopicInfo info, Create(create));
    partitions = info.partitions();
  }
  if (message.has_partition()) {
    if (message.partition() < 0 || message.partition() >= partitions) {
      return absl::InvalidArgumentError(absl::StrCat(
          "topic ", message.topic(), " has partitions 0..", partitions - 1,
          "; partition ", message.partition(), " does not exist"));
    }
    return message.partition();
  }
  return storage::PartitionForKey(
      message.key().empty() ? fallback_key : message.key(), partitions);
}

}  // namespace twopc::coordinator
