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
#include "storage/store.h"
#include "twopc/internal/decision_log.pb.h"

namespace twopc::storage {

class DecisionLog {
 public:
  // Column families the Store must be opened with.
  static constexpr char kRecordsFamily[] = "transactions";
  static constexpr char kKeysFamily[] = "idempotency_keys";

  // `store` and `writer` are not owned and must outlive the log.
  // REQUIRES: store was opened with kRecordsFamily and kKeysFamily.
  DecisionLog(Store* store, GroupCommitWriter* writer);

  // Queues a write of `record` (and of its idempotency key, if any).
  // `done` runs after the write is synced (OK) or failed; see
  // GroupCommitWriter for the threading rules.
  // REQUIRES: record.transaction_id() parses as a TransactionId.
  void Append(const internal::TransactionRecord& record,
              GroupCommitWriter::Done done);

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

  // Deletes final (COMMITTED/ABORTED) records that finished before `cutoff`,
  // with their idempotency keys. Unfinished records are never deleted.
  // `before_delete` is called with the id of the newest record to be
  // deleted before anything is; an error from it cancels the compaction.
  // Returns how many were deleted. Not synced: a crash may bring some back.
  absl::StatusOr<int> Compact(
      absl::Time cutoff,
      const std::function<absl::Status(const std::string& newest_id)>&
          before_delete);

 private:
  Store* const store_;
  GroupCommitWriter* const writer_;
  rocksdb::ColumnFamilyHandle* const records_;
  rocksdb::ColumnFamilyHandle* const keys_;
};

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_DECISION_LOG_H_
