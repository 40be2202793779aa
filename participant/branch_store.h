// BranchStore: the sidecar's durable state, i.e. branch records, the built-in
// key-value resource's committed data, and the highest coordinator epoch.
//
// Everything the sidecar promises rests on one rule: a StoreBatch is applied
// atomically, and its `done(OK)` runs only after it is synced to disk. Until
// then the batch is invisible to readers (Get/Scan) and may be lost by a
// crash; after a failed write nothing is assumed about it (recovery reads
// what reached the disk). Batches become durable in submission order, so a
// batch that is durable implies every batch submitted before it is durable.
//
// Implementations: RocksDbBranchStore (group commit, one sync per round of
// concurrent batches) and, in tests, a fake that can lose unsynced batches.
//
// Thread-safety: all methods may be called concurrently. `done` callbacks may
// run on an internal thread; they must be quick and must not block on
// another Write.
#ifndef TWOPC_PARTICIPANT_BRANCH_STORE_H_
#define TWOPC_PARTICIPANT_BRANCH_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "participant/branch_record.pb.h"

namespace twopc::participant {

using BranchRecord = internal::BranchRecord;
using KvWrite = internal::KvWrite;

// One atomic, durable change.
struct StoreBatch {
  // Upserts of branch records, keyed by transaction id.
  std::vector<std::pair<std::string, BranchRecord>> records;
  // Branch records to delete (finished branches being forgotten).
  std::vector<std::string> forget;
  // Changes to the key-value resource's committed data.
  std::vector<KvWrite> kv;
  // When set, the new highest coordinator epoch.
  std::optional<uint64_t> highest_epoch;
};

// What a store holds at start-up.
struct RecoveredState {
  std::vector<std::pair<std::string, BranchRecord>> records;
  uint64_t highest_epoch = 0;
};

struct KvEntry {
  std::string key;
  std::string value;
};

class BranchStore {
 public:
  using Done = std::function<void(const absl::Status& status)>;

  virtual ~BranchStore() = default;

  // Queues `batch`; `done` is called exactly once: OK after the batch is
  // synced, or the error that kept it from being synced (outcome unknown;
  // the store is then failed for good and the process should restart).
  // Without `done` the batch asks for no sync of its own: it becomes durable
  // with the next batch someone waits for (or is lost in a crash before
  // it), and a failure to write it shows as that batch's error.
  virtual void Write(StoreBatch batch, Done done) = 0;

  // Writes the batches queued so far on the calling thread instead of the
  // store's own writer, and calls their `done` here: for a thread that has
  // just queued many batches and would otherwise wait for the answers from
  // another thread (the sidecar's link loop). Stores that write as soon as
  // asked do nothing.
  // REQUIRES: the caller holds no lock that a `done` callback takes.
  virtual void WriteQueuedHere() {}

  // Notes a new highest coordinator epoch, synchronously (call it before
  // acting on any request of that epoch). Every batch written afterwards
  // makes it durable too, and the stored epoch never goes backwards, so a
  // reply sent after its batch synced is never "from the future" after a
  // restart. Never blocks.
  virtual void NoteEpoch(uint64_t epoch) { (void)epoch; }

  // Every branch record and the highest epoch, as on disk. Call at start-up,
  // before any Write.
  virtual absl::StatusOr<RecoveredState> Recover() = 0;

  // Committed value of `key`; nullopt when absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) = 0;

  // Up to `limit` committed entries with `prefix`, keys > `start_after`
  // (empty = from the start), in byte order. `more` is set when further
  // entries match.
  virtual absl::StatusOr<std::vector<KvEntry>> Scan(absl::string_view prefix,
                                                    absl::string_view start_after,
                                                    size_t limit,
                                                    bool* more) = 0;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_BRANCH_STORE_H_
