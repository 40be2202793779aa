// DecisionLog: the coordinator's durable transaction records.
//
// One TransactionRecord per transaction (keyed by id, in creation order) plus
// an index from idempotency key to transaction id. Writes go through the
// GroupCommitWriter, so they reach the disk in the order Append was called
// and forced records share syncs. Whether the caller waits for a write's sync
// is its choice (presumed abort forces only COMMIT records).
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_STORAGE_DECISION_LOG_H_
#define TWOPC_STORAGE_DECISION_LOG_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "storage/group_commit_writer.h"
#include "storage/partition_log.h"
#include "storage/store.h"
#include "twopc/internal/decision_log.pb.h"

namespace twopc::storage {

class DecisionLog {
 public:
  // Column families the Store must be opened with.
  static constexpr char kRecordsFamily[] = "transactions";
  static constexpr char kKeysFamily[] = "idempotency_keys";
  // Compact's largest write.
  static constexpr int kMaxDeletedPerWrite = 1024;

  // Called with the outcome of AppendCommit and, when OK, where each of the
  // record's messages was published (in the order of record.messages()).
  using CommitDone = std::function<void(
      const absl::Status& status,
      const std::vector<v1::MessagePosition>& positions)>;

  // `store`, `writer` and `queues` are not owned and must outlive the log.
  // REQUIRES: store was opened with kRecordsFamily and kKeysFamily; the
  // writer calls queues->MarkSynced() after each sync.
  DecisionLog(Store* store, GroupCommitWriter* writer, PartitionLogs* queues);

  // Queues a write of `record`, and with `index_key` the index entry of its
  // idempotency key (if it has one). Index the key with a transaction's
  // first record only: records are written in order to one write-ahead log,
  // so a later record of the transaction is never durable without the first.
  // `done` runs after the write is synced (OK) or failed; see
  // GroupCommitWriter for the threading rules.
  // REQUIRES: record.transaction_id() parses as a TransactionId.
  void Append(const internal::TransactionRecord& record, bool index_key,
              GroupCommitWriter::Done done);

  // Queues the COMMIT record of `record` together with its messages: in the
  // same WriteBatch, each message is appended to its partition (whose
  // offset it takes then, so offset order is commit order), and the record
  // is stored with message_positions set and the messages themselves
  // dropped (they live in the partitions). `done` runs after the sync.
  // `index_key` as for Append.
  // REQUIRES: every message has its partition set, in a known topic.
  void AppendCommit(const internal::TransactionRecord& record, bool index_key,
                    CommitDone done);

  // The stored record; nullopt when there is none.
  absl::StatusOr<absl::optional<internal::TransactionRecord>> Read(
      const std::string& transaction_id) const;

  // The transaction id stored for an idempotency key; nullopt when none.
  absl::StatusOr<absl::optional<std::string>> FindByIdempotencyKey(
      const std::string& key) const;

  // Calls `visit` for every record in creation order. Stops at and returns
  // the first error (DATA_LOSS for an unreadable record).
  absl::Status ForEach(
      const std::function<void(internal::TransactionRecord)>& visit) const;

  // Calls `visit` for records newest first, starting just before
  // `before_id` (all records when empty), until `visit` returns false.
  // INVALID_ARGUMENT for a `before_id` that is not a transaction id;
  // DATA_LOSS for an unreadable record.
  absl::Status ForEachNewestFirst(
      const std::string& before_id,
      const std::function<bool(internal::TransactionRecord)>& visit) const;

  // Deletes final (COMMITTED/ABORTED) records that finished before `cutoff`,
  // with their idempotency keys. Unfinished records are never deleted.
  // `before_delete` is called once, with the id of the newest record to be
  // deleted, before anything is; an error from it cancels the compaction.
  // The deletes then go in writes of at most kMaxDeletedPerWrite records,
  // oldest first: one write of a minute's records (~900,000 at 15,000 tx/s)
  // would hold up every decision write queued behind it. Returns how many
  // were deleted. Not synced: a crash may bring some back (a failed write
  // stops there).
  absl::StatusOr<int> Compact(
      absl::Time cutoff,
      const std::function<absl::Status(const std::string& newest_id)>&
          before_delete);

 private:
  Store* const store_;
  GroupCommitWriter* const writer_;
  PartitionLogs* const queues_;
  rocksdb::ColumnFamilyHandle* const records_;
  rocksdb::ColumnFamilyHandle* const keys_;
};

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_DECISION_LOG_H_
