// AuditLog: the durable record of what operators did through AdminService
// (forced decisions, retries, parking, participant removals), refused
// attempts included.
//
// Append syncs before it returns, so the caller writes the record first and
// acts only once it is durable: nothing an operator forces happens
// unrecorded. An action that is itself one write to the same store puts its
// record into that write instead (Add), so the two are durable together.
// Records are few and kept forever; they are keyed by a sequence number, so
// listing newest first is a reverse scan.
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_COORDINATOR_AUDIT_LOG_H_
#define TWOPC_COORDINATOR_AUDIT_LOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/write_batch.h"
#include "storage/store.h"
#include "twopc/v1/admin.pb.h"

namespace twopc::coordinator {

class AuditLog {
 public:
  // The column family the Store must be opened with.
  static constexpr char kFamily[] = "audit";

  // Reads the highest sequence number in `store` (not owned; must outlive
  // the log). REQUIRES: store was opened with kFamily.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(storage::Store* store);

  // Writes `record` and syncs it.
  absl::Status Append(const v1::AuditRecord& record) ABSL_LOCKS_EXCLUDED(mu_);

  // Puts `record` into `batch` under the next sequence number; the caller
  // writes the batch (synced). If that write fails, the number stays unused.
  void Add(const v1::AuditRecord& record, rocksdb::WriteBatch& batch)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Records newest first, `page_size` (default 50, at most 1,000) at a time,
  // continuing from `page_token` (from a previous response; empty = newest).
  // INVALID_ARGUMENT for a bad token or page size.
  absl::StatusOr<v1::ListAuditRecordsResponse> List(
      const v1::ListAuditRecordsRequest& request) const;

  // Every record whose target is `target`, oldest first.
  absl::StatusOr<std::vector<v1::AuditRecord>> ForTarget(
      const std::string& target) const;

 private:
  AuditLog(storage::Store* store, uint64_t next_sequence);

  storage::Store* const store_;
  rocksdb::ColumnFamilyHandle* const family_;
  absl::Mutex mu_;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_AUDIT_LOG_H_
