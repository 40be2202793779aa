// RocksDbBranchStore: BranchStore on a twopc data directory (role
// "participant"), with group commit: concurrent Writes share one synced
// RocksDB WriteBatch (storage::GroupCommitWriter).
//
// On-disk layout:
//   column family "branches": transaction id -> BranchRecord (protobuf)
//   column family "kv":       user key -> committed value
//   column family "default":  "highest_coordinator_epoch" -> 8 bytes BE
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_PARTICIPANT_ROCKSDB_BRANCH_STORE_H_
#define TWOPC_PARTICIPANT_ROCKSDB_BRANCH_STORE_H_

#include <atomic>
#include <memory>
#include <string>

#include "participant/branch_store.h"
#include "storage/group_commit_writer.h"
#include "storage/store.h"

namespace twopc::participant {

class RocksDbBranchStore : public BranchStore {
 public:
  // Opens (creating when missing) the data directory `dir`.
  // OK; FAILED_PRECONDITION / DATA_LOSS for an unusable directory.
  static absl::StatusOr<std::unique_ptr<RocksDbBranchStore>> Open(
      const std::string& dir);

  // Writes everything queued, then closes the directory.
  ~RocksDbBranchStore() override;

  void Write(StoreBatch batch, Done done) override;
  void WriteQueuedHere() override { writer_->WriteQueuedHere(); }
  absl::StatusOr<RecoveredState> Recover() override;
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key) override;
  absl::StatusOr<std::vector<KvEntry>> Scan(absl::string_view prefix,
                                            absl::string_view start_after,
                                            size_t limit, bool* more) override;

  storage::GroupCommitWriter::Stats writer_stats() const {
    return writer_->stats();
  }

  RocksDbBranchStore(const RocksDbBranchStore&) = delete;
  RocksDbBranchStore& operator=(const RocksDbBranchStore&) = delete;

  void NoteEpoch(uint64_t epoch) override;

 private:
  explicit RocksDbBranchStore(std::unique_ptr<storage::Store> store);

  std::unique_ptr<storage::Store> store_;
  rocksdb::ColumnFamilyHandle* branches_;
  rocksdb::ColumnFamilyHandle* kv_;
  // Owned. A raw pointer so that `done` callbacks running while the
  // destructor drains the writer may still Write (the writer thread takes
  // those too before it stops).
  storage::GroupCommitWriter* writer_;
  // Highest epoch noted (any thread) and highest written (in `fill`, on
  // whichever thread runs the round; rounds never overlap).
  std::atomic<uint64_t> noted_epoch_{0};
  uint64_t written_epoch_ = 0;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_ROCKSDB_BRANCH_STORE_H_
