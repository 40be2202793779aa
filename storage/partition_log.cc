#include "storage/partition_log.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "storage/coding.h"

namespace twopc::storage {
namespace {

std::string PartitionPrefix(const std::string& topic, int32_t partition) {
  std::string key = topic;
  key.push_back('\0');
  const auto p = static_cast<uint32_t>(partition);
  for (int shift = 24; shift >= 0; shift -= 8) {
    key.push_back(static_cast<char>((p >> shift) & 0xff));
  }
  return key;
}

std::string MessageKey(const std::string& topic, int32_t partition,
                       int64_t offset) {
  std::string key = PartitionPrefix(topic, partition);
  PutFixed64BE(&key, static_cast<uint64_t>(offset));
  return key;
}

absl::Status UnknownPartition(const std::string& topic, int32_t partition) {
  return absl::NotFoundError(
      absl::StrCat("topic '", topic, "' has no partition ", partition));
}

}  // namespace

int32_t PartitionForKey(absl::string_view key, int32_t partitions) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return static_cast<int32_t>(hash % static_cast<uint64_t>(partitions));
}

PartitionLogs::PartitionLogs(Store* store)
    : store_(store),
      log_(store->family(kFamily)),
      meta_(store->family(kMetaFamily)) {}

absl::Status PartitionLogs::AddTopic(const std::string& topic,
                                     int32_t partitions) {
  for (int32_t p = 0; p < partitions; ++p) {
    {
      absl::MutexLock lock(&mu_);
      if (partitions_.count({topic, p}) > 0) continue;
    }
    const std::string prefix = PartitionPrefix(topic, p);
    Partition partition;
    std::string start;
    rocksdb::Status s =
        store_->db()->Get(rocksdb::ReadOptions(), meta_, prefix, &start);
    if (s.ok() && start.size() == 8) {
      partition.log_start = static_cast<int64_t>(DecodeFixed64BE(start));
    } else if (!s.IsNotFound()) {
      RETURN_IF_ERROR(FromRocksDb(s, "reading partition start"));
    }
    // The end is one past the last stored offset.
    std::unique_ptr<rocksdb::Iterator> it(
        store_->db()->NewIterator(rocksdb::ReadOptions(), log_));
    it->SeekForPrev(MessageKey(topic, p, INT64_MAX));
    if (it->Valid() && it->key().starts_with(prefix)) {
      partition.published_end =
          static_cast<int64_t>(DecodeFixed64BE(
              absl::string_view(it->key().data() + prefix.size(), 8))) +
          1;
    } else {
      partition.published_end = partition.log_start;
    }
    RETURN_IF_ERROR(FromRocksDb(it->status(), "reading partition end"));
    partition.next = partition.published_end;
    absl::MutexLock lock(&mu_);
    partitions_.emplace(PartitionKey{topic, p}, partition);
  }
  return absl::OkStatus();
}

int64_t PartitionLogs::Append(rocksdb::WriteBatch& batch,
                              const std::string& topic, int32_t partition,
                              const v1::QueueMessage& message) {
  TWOPC_FAILPOINT("storage.queue_append");
  int64_t offset = 0;
  {
    absl::MutexLock lock(&mu_);
    offset = partitions_[{topic, partition}].next++;
  }
  v1::QueueMessage stored = message;
  stored.clear_topic();
  stored.clear_partition();
  stored.clear_offset();
  batch.Put(log_, MessageKey(topic, partition, offset),
            stored.SerializeAsString());
  return offset;
}

void PartitionLogs::MarkSynced() {
  absl::MutexLock lock(&mu_);
  for (auto& [key, partition] : partitions_) {
    partition.published_end = partition.next;
  }
}

absl::StatusOr<PartitionLogs::Offsets> PartitionLogs::GetOffsets(
    const std::string& topic, int32_t partition) const {
  absl::MutexLock lock(&mu_);
  auto it = partitions_.find({topic, partition});
  if (it == partitions_.end()) return UnknownPartition(topic, partition);
  return Offsets{.log_start = it->second.log_start,
                 .end = it->second.published_end};
}

absl::StatusOr<PartitionLogs::ReadResult> PartitionLogs::Read(
    const std::string& topic, int32_t partition, int64_t offset,
    int max_messages, size_t max_bytes) const {
  ReadResult result;
  ASSIGN_OR_RETURN(result.offsets, GetOffsets(topic, partition));
  if (offset < result.offsets.log_start) {
    v1::ErrorInfo info;
    info.set_reason("BELOW_LOG_START");
    info.set_log_start_offset(result.offsets.log_start);
    return WithErrorInfo(
        absl::OutOfRangeError(absl::StrCat(
            "offset ", offset, " of ", topic, "/", partition,
            " was removed by retention; the log now starts at ",
            result.offsets.log_start)),
        info);
  }
  const std::string prefix = PartitionPrefix(topic, partition);
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), log_));
  size_t bytes = 0;
  for (it->Seek(MessageKey(topic, partition, offset));
       it->Valid() && it->key().starts_with(prefix) &&
       static_cast<int>(result.messages.size()) < max_messages;
       it->Next()) {
    const auto at = static_cast<int64_t>(DecodeFixed64BE(
        absl::string_view(it->key().data() + prefix.size(), 8)));
    if (at >= result.offsets.end) break;  // not synced yet
    if (!result.messages.empty() && bytes + it->value().size() > max_bytes) {
      break;
    }
    v1::QueueMessage& message = result.messages.emplace_back();
    if (!message.ParseFromArray(it->value().data(),
                                static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "message ", topic, "/", partition, "@", at, " is corrupt"));
    }
    message.set_topic(topic);
    message.set_partition(partition);
    message.set_offset(at);
    bytes += it->value().size();
  }
  RETURN_IF_ERROR(FromRocksDb(it->status(), "reading a partition"));
  return result;
}

int64_t PartitionLogs::WaitForEnd(const std::string& topic, int32_t partition,
                                  int64_t offset, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto it = partitions_.find({topic, partition});
  if (it == partitions_.end()) return 0;
  const Partition& p = it->second;
  auto beyond = [this, &p, offset]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return p.published_end > offset || waits_ended_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&beyond), deadline);
  return p.published_end;
}

void PartitionLogs::EndWaits() {
  absl::MutexLock lock(&mu_);
  waits_ended_ = true;
}

bool PartitionLogs::waits_ended() const {
  absl::MutexLock lock(&mu_);
  return waits_ended_;
}

absl::StatusOr<int64_t> PartitionLogs::TruncateBefore(const std::string& topic,
                                                      int32_t partition,
                                                      int64_t new_start) {
  ASSIGN_OR_RETURN(Offsets offsets, GetOffsets(topic, partition));
  new_start = std::min(new_start, offsets.end);
  if (new_start <= offsets.log_start) return 0;
  rocksdb::WriteBatch batch;
  batch.DeleteRange(log_, MessageKey(topic, partition, offsets.log_start),
                    MessageKey(topic, partition, new_start));
  std::string start;
  PutFixed64BE(&start, static_cast<uint64_t>(new_start));
  batch.Put(meta_, PartitionPrefix(topic, partition), start);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(FromRocksDb(store_->db()->Write(sync, &batch),
                              "truncating a partition"));
  absl::MutexLock lock(&mu_);
  partitions_[{topic, partition}].log_start = new_start;
  return new_start - offsets.log_start;
}

}  // namespace twopc::storage
