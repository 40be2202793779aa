// PartitionLogs: the per-partition ordered message logs of the queues.
//
// A partition is a sequence of messages at offsets [log_start, end): offsets
// are gap-free and assigned in the order appends are made. Appends happen
// inside a GroupCommitWriter `fill` (one writer thread), in the same
// WriteBatch as the COMMIT record of the transaction that publishes them, so
// offset order is commit order and a message exists iff its transaction's
// commit is durable. Readers only see offsets below the *published* end,
// which advances after the batch is synced.
//
// Key layout (column family kFamily):
//   topic '\0' partition(4 bytes BE) offset(8 bytes BE) -> QueueMessage
// (topic, partition and offset are not repeated in the value). The log start
// of each partition is kept in kMetaFamily under topic '\0' partition.
//
// Thread-safety: Append and MarkSynced must be called from one thread at a
// time (the writer thread); everything else may be called concurrently.
#ifndef TWOPC_STORAGE_PARTITION_LOG_H_
#define TWOPC_STORAGE_PARTITION_LOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/write_batch.h"
#include "storage/store.h"
#include "twopc/v1/common.pb.h"
#include "twopc/v1/queue.pb.h"

namespace twopc::storage {

class PartitionLogs {
 public:
  static constexpr char kFamily[] = "partition_log";
  static constexpr char kMetaFamily[] = "partition_meta";

  struct PartitionKey {
    std::string topic;
    int32_t partition = 0;
    bool operator<(const PartitionKey& o) const {
      return std::tie(topic, partition) < std::tie(o.topic, o.partition);
    }
  };

  struct Offsets {
    int64_t log_start = 0;
    // Offset the next published message takes.
    int64_t end = 0;
  };

  struct ReadResult {
    std::vector<v1::QueueMessage> messages;
    Offsets offsets;
  };

  // `store` must outlive this and be opened with kFamily and kMetaFamily.
  explicit PartitionLogs(Store* store);

  // Makes `partitions` partitions of `topic` known, reading their offsets
  // from disk. Idempotent.
  absl::Status AddTopic(const std::string& topic, int32_t partitions)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Writer thread only. Puts `message` at the next offset of its partition
  // into `batch` and returns the offset. REQUIRES: the partition was added.
  // Failure point: storage.queue_append.
  int64_t Append(rocksdb::WriteBatch& batch, const std::string& topic,
                 int32_t partition, const v1::QueueMessage& message)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Writer thread only, after the batch holding the last Append calls was
  // synced: readers may now see them. After a failed write, do not call it:
  // the appended offsets are void (recovery re-reads the disk).
  void MarkSynced() ABSL_LOCKS_EXCLUDED(mu_);

  // Up to `max_messages` (and about `max_bytes`, at least one message)
  // published messages from `offset`. OUT_OF_RANGE below the log start
  // (ErrorInfo.log_start_offset set); NOT_FOUND for an unknown partition.
  absl::StatusOr<ReadResult> Read(const std::string& topic, int32_t partition,
                                  int64_t offset, int max_messages,
                                  size_t max_bytes) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Published offsets of a partition. NOT_FOUND for an unknown partition.
  absl::StatusOr<Offsets> GetOffsets(const std::string& topic,
                                     int32_t partition) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until the partition's published end is beyond `offset`, or
  // `deadline`, or EndWaits. Returns the end offset.
  int64_t WaitForEnd(const std::string& topic, int32_t partition,
                     int64_t offset, absl::Time deadline) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Wakes every WaitForEnd, and later ones return at once: at shutdown, so
  // that long polls and subscriptions end instead of holding the server's
  // shutdown for its grace period.
  void EndWaits() ABSL_LOCKS_EXCLUDED(mu_);
  bool waits_ended() const ABSL_LOCKS_EXCLUDED(mu_);

  // Retention: removes messages below `new_start` (clamped to the published
  // end) and records the new log start. Returns messages removed.
  absl::StatusOr<int64_t> TruncateBefore(const std::string& topic,
                                         int32_t partition, int64_t new_start)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Partition {
    int64_t log_start = 0;
    int64_t published_end = 0;
    // Next offset to assign (>= published_end; writer thread).
    int64_t next = 0;
  };

  Store* const store_;
  rocksdb::ColumnFamilyHandle* const log_;
  rocksdb::ColumnFamilyHandle* const meta_;

  mutable absl::Mutex mu_;
  bool waits_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::map<PartitionKey, Partition> partitions_ ABSL_GUARDED_BY(mu_);
};

// The documented partitioner: fnv1a_64(key) mod partitions.
int32_t PartitionForKey(absl::string_view key, int32_t partitions);

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_PARTITION_LOG_H_
