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

// The longest max_age accepted: 100 years (protobuf's Duration allows
// ~10,000, which overflows microseconds and fails its own checks).
constexpr int64_t kMaxRetentionSeconds = int64_t{100} * 366 * 24 * 3600;

absl::StatusOr<std::pair<int64_t, int64_t>> ValidateRetention(
    const v1::Retention& retention) {
  const google::protobuf::Duration& age = retention.max_age();
  if (age.seconds() < 0 || age.seconds() > kMaxRetentionSeconds ||
      age.nanos() < 0 || age.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retention max_age must be between 0 (unlimited) and ",
        kMaxRetentionSeconds, " seconds (100 years)"));
  }
  const int64_t age_us = TimeUtil::DurationToMicroseconds(age);
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
    return absl::NotFoundError(absl::StrCat(
        "topic ", QuoteField(request.name()), " does not exist"));
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
          "topic ", QuoteField(name),
          " does not exist; create it with `twopcctl topic create`"));
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

int32_t TopicRegistry::PartitionsOf(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  return it == topics_.end() ? 0 : it->second.partitions();
}

absl::Status TopicRegistry::CheckFits(const v1::Message& message,
                                      int32_t partitions) const {
  if (partitions == 0 && auto_create_partitions_ <= 0) {
    return absl::NotFoundError(absl::StrCat(
        "topic ", QuoteField(message.topic()),
        " does not exist; create it with `twopcctl topic create` (or run "
        "the coordinator with --auto_create_partitions)"));
  }
  if (partitions == 0) partitions = auto_create_partitions_;
  if (message.has_partition() &&
      (message.partition() < 0 || message.partition() >= partitions)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "topic ", QuoteField(message.topic()), " has partitions 0..",
        partitions - 1, "; partition ", message.partition(),
        " does not exist"));
  }
  return absl::OkStatus();
}

absl::Status TopicRegistry::CheckRoute(const v1::Message& message) const {
  return CheckFits(message, PartitionsOf(message.topic()));
}

absl::StatusOr<int32_t> TopicRegistry::Route(const v1::Message& message,
                                             const std::string& fallback_key) {
  int32_t partitions = PartitionsOf(message.topic());
  // Before creating anything: a refused message must not create its topic.
  RETURN_IF_ERROR(CheckFits(message, partitions));
  if (partitions == 0) {
    v1::CreateTopicRequest create;
    create.set_name(message.topic());
    create.set_partitions(auto_create_partitions_);
    ASSIGN_OR_RETURN(v1::TopicInfo info, Create(create));
    partitions = info.partitions();
  }
  if (message.has_partition()) return message.partition();
  return storage::PartitionForKey(
      message.key().empty() ? fallback_key : message.key(), partitions);
}

TopicRegistry::~TopicRegistry() { StopRetention(); }

absl::StatusOr<int64_t> TopicRegistry::RetainedStart(
    const internal::TopicRecord& topic, int32_t partition,
    absl::Time now) const {
  ASSIGN_OR_RETURN(storage::PartitionLogs::Offsets offsets,
                   logs_->GetOffsets(topic.name(), partition));
  constexpr int kChunk = 1000;
  const int64_t cutoff_us =
      topic.retention_max_age_us() > 0
          ? absl::ToUnixMicros(now) - topic.retention_max_age_us()
          : INT64_MIN;
  // Pass 1: the first message young enough (messages are in commit order).
  int64_t start = offsets.log_start;
  int64_t total_bytes = 0;
  std::vector<std::pair<int64_t, int64_t>> sizes;  // (offset, bytes) kept
  for (int64_t at = offsets.log_start; at < offsets.end;) {
    ASSIGN_OR_RETURN(storage::PartitionLogs::ReadResult chunk,
                     logs_->Read(topic.name(), partition, at, kChunk, 64 << 20));
    if (chunk.messages.empty()) break;
    for (const v1::QueueMessage& m : chunk.messages) {
      if (TimeUtil::TimestampToMicroseconds(m.commit_time()) < cutoff_us) {
        start = m.offset() + 1;
        continue;
      }
      if (topic.retention_max_bytes() <= 0) return start;
      const int64_t bytes = static_cast<int64_t>(m.value().size());
      sizes.emplace_back(m.offset(), bytes);
      total_bytes += bytes;
    }
    at = chunk.messages.back().offset() + 1;
  }
  // Pass 2: drop the oldest kept messages until the size fits.
  for (const auto& [offset, bytes] : sizes) {
    if (total_bytes <= topic.retention_max_bytes()) break;
    total_bytes -= bytes;
    start = offset + 1;
  }
  return start;
}

absl::StatusOr<int64_t> TopicRegistry::ApplyRetention(absl::Time now) {
  std::vector<internal::TopicRecord> topics;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, record] : topics_) {
      if (record.retention_max_age_us() > 0 ||
          record.retention_max_bytes() > 0) {
        topics.push_back(record);
      }
    }
  }
  int64_t removed = 0;
  for (const internal::TopicRecord& topic : topics) {
    for (int32_t p = 0; p < topic.partitions(); ++p) {
      ASSIGN_OR_RETURN(int64_t start, RetainedStart(topic, p, now));
      ASSIGN_OR_RETURN(int64_t n, logs_->TruncateBefore(topic.name(), p, start));
      removed += n;
    }
  }
  return removed;
}

void TopicRegistry::StartRetention(absl::Duration interval) {
  retention_thread_ = std::thread([this, interval] {
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return retention_stopping_;
    };
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), interval)) {
      mu_.Unlock();
      ApplyRetention(clock_->Now()).IgnoreError();
      mu_.Lock();
    }
  });
}

void TopicRegistry::StopRetention() {
  {
    absl::MutexLock lock(&mu_);
    retention_stopping_ = true;
  }
  if (retention_thread_.joinable()) retention_thread_.join();
}

}  // namespace twopc::coordinator
