// GroupCommitWriter: one writer thread that turns concurrent durable writes
// into one synced RocksDB WriteBatch per round ("group commit").
//
// Callers Submit a `fill` function and a `done` callback. The writer thread
// takes everything queued, calls each `fill` in submission order to build one
// WriteBatch, writes it with sync=true, then calls every `done` with the
// result. So one fsync carries many records, and the order in which `fill`
// functions run is the order of the records in the log: a caller can assign
// sequence numbers (e.g. queue offsets) inside `fill` and they follow
// durability order.
//
// Durability: `done(OK)` is called only after the batch containing the
// record is synced to disk. A submission without `done` asks for no
// durability of its own: a round in which nobody waits is written without
// an fsync, and becomes durable with the next synced round (the WAL is
// ordered), or is lost in a crash before it. After a failed write the writer is failed for
// good: that and every later submission get the same error, so nothing is
// ever acknowledged that is not durable. (RocksDB also stops accepting writes
// after such an error; the process must be restarted, and recovery reads
// what did reach the disk.)
//
// Failure points (common/failpoint.h): storage.before_sync and
// storage.after_sync around each round's synced write; storage.sync_error
// and storage.disk_full make that write fail as a failed fsync or a full disk
// would (nothing written, the writer failed for good).
//
// Batching: Submit wakes the writer thread at once unless a WakeupBatch
// (common/wakeup_batch.h) is open on the calling thread; then the writer
// wakes when the batch closes and finds every record submitted meanwhile
// (unless WriteQueuedHere wrote them first: then it is not woken at all).
// The writer opens one around each round's `done` callbacks.
//
// Writing on the caller's thread: a thread that has just submitted many
// records and would otherwise wait for the writer thread's answers (the
// sidecar's link loop) can run the round itself with WriteQueuedHere,
// saving two thread switches. Rounds never overlap, whichever thread runs
// them, so records stay in submission order.
//
// Thread-safety: Submit, Write, WriteQueuedHere and stats may be called from
// any thread. `fill` and `done` run on the thread running the round (the
// writer thread, or WriteQueuedHere's caller), without the writer's lock
// held; they must be quick and must not call Write or WriteQueuedHere (that
// would deadlock).
#ifndef TWOPC_STORAGE_GROUP_COMMIT_WRITER_H_
#define TWOPC_STORAGE_GROUP_COMMIT_WRITER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/wakeup_batch.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace twopc::storage {

class GroupCommitWriter {
 public:
  using Fill = std::function<void(rocksdb::WriteBatch& batch)>;
  using Done = std::function<void(const absl::Status& status)>;

  struct Options {
    // A round stops taking queued submissions once it has this many...
    int max_records_per_sync = 4096;
    // ...or its batch has grown past this many bytes.
    size_t max_bytes_per_sync = 16 << 20;
    // Called on the writer thread after every successful sync, before the
    // round's `done` callbacks (e.g. to make appended queue offsets
    // visible). Optional.
    std::function<void()> after_sync;
  };

  struct Stats {
    // Synced writes done (rounds with a waiter), and records written.
    uint64_t syncs = 0;
    uint64_t records = 0;
    // Largest number of records in one sync.
    uint64_t max_records_per_sync = 0;
    // Records someone waited for (submitted with a `done`), e.g. forced
    // decisions, and the syncs that carried at least one of them.
    // awaited_records / awaited_syncs is "decisions per sync".
    uint64_t awaited_records = 0;
    uint64_t awaited_syncs = 0;
  };

  // `db` is not owned and must outlive the writer.
  GroupCommitWriter(rocksdb::DB* db, Options options);
  explicit GroupCommitWriter(rocksdb::DB* db)
      : GroupCommitWriter(db, Options()) {}

  // Writes everything queued (calling its `done`), then stops the thread.
  // REQUIRES: no Submit or Write call is running or will be made.
  ~GroupCommitWriter();

  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Queues one record. `done` is called exactly once: OK after the record is
  // synced, or the error that kept it from being synced (then the record may
  // or may not be on disk; a later recovery decides). An empty `done` means
  // nobody waits: the record rides along with the next sync.
  void Submit(Fill fill, Done done) ABSL_LOCKS_EXCLUDED(mu_);

  // Submit and wait for the result. Must not be called from `fill`/`done`.
  absl::Status Write(Fill fill) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs a round on the calling thread now, after any round already
  // running on the writer thread: writes what is queued (synced if anyone
  // waits; past a round's limits the writer thread writes the rest) and
  // calls its `done` callbacks here. Returns at once when nothing is queued.
  // REQUIRES: the caller holds no lock that a `done` callback takes.
  void WriteQueuedHere() ABSL_LOCKS_EXCLUDED(mu_, round_mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    Fill fill;
    Done done;
  };

  // Wakes the writer thread unless nothing is queued any more (a
  // WriteQueuedHere may have written it since the wake-up was deferred).
  // Shared with WakeupBatch, which may hold it past the writer's end.
  class Wakeup final : public Waker {
   public:
    void Wake() override {
      if (queued.load(std::memory_order_acquire) > 0) cv.Signal();
    }
    absl::CondVar cv;
    // The length of queue_, set under mu_.
    std::atomic<size_t> queued{0};
  };

  void Run();
  // Takes what is queued (up to a round's limits), writes it and calls its
  // callbacks. Returns at once when nothing is queued.
  void RunRound() ABSL_EXCLUSIVE_LOCKS_REQUIRED(round_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // One synced write of `batch` (or the failure a failure point injects in
  // its place). Errors name the data directory.
  absl::Status SyncedWrite(rocksdb::WriteBatch& batch);

  rocksdb::DB* const db_;
  const Options options_;

  // Held for a whole round, by whichever thread runs it; before mu_.
  absl::Mutex round_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  // Signalled when something is queued or stopping_ is set.
  const std::shared_ptr<Wakeup> wakeup_ = std::make_shared<Wakeup>();
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by the first failed write; returned to everything after it.
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;  // last: starts after everything above is ready
};

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_GROUP_COMMIT_WRITER_H_
