#include "storage/group_commit_writer.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/failpoint.h"
#include "storage/store.h"

namespace twopc::storage {

GroupCommitWriter::GroupCommitWriter(rocksdb::DB* db, Options options)
    : db_(db), options_(options), thread_([this] { Run(); }) {}

GroupCommitWriter::~GroupCommitWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wakeup_->cv.Signal();
  }
  thread_.join();
}

void GroupCommitWriter::Submit(Fill fill, Done done) {
  // Always queued, even after a failure: `done` must never run on the
  // caller's thread, which may hold locks that `done` takes.
  absl::MutexLock lock(&mu_);
  queue_.push_back({std::move(fill), std::move(done)});
  wakeup_->queued.store(queue_.size(), std::memory_order_release);
  if (!WakeupBatch::Defer(wakeup_)) wakeup_->cv.Signal();
}

absl::Status GroupCommitWriter::Write(Fill fill) {
  absl::Notification written;
  absl::Status result;
  {
    // Not deferred to an open WakeupBatch: this thread waits right here.
    absl::MutexLock lock(&mu_);
    queue_.push_back({std::move(fill), [&](const absl::Status& status) {
                        result = status;
                        written.Notify();
                      }});
    wakeup_->queued.store(queue_.size(), std::memory_order_release);
    wakeup_->cv.Signal();
  }
  written.WaitForNotification();
  return result;
}

GroupCommitWriter::Stats GroupCommitWriter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status GroupCommitWriter::SyncedWrite(rocksdb::WriteBatch& batch) {
  rocksdb::Status status;
  if (TWOPC_FAILPOINT("storage.sync_error")) {
    status = rocksdb::Status::IOError(
        "While fsync of the write-ahead log (injected by failure point "
        "storage.sync_error)",
        "Input/output error");
  } else if (TWOPC_FAILPOINT("storage.disk_full")) {
    status = rocksdb::Status::NoSpace(
        "While appending to the write-ahead log (injected by failure point "
        "storage.disk_full)");
  } else {
    rocksdb::WriteOptions sync;
    sync.sync = true;
    status = db_->Write(sync, &batch);
  }
  return FromRocksDb(
      status, absl::StrCat("synced write to data directory ", db_->GetName()));
}

void GroupCommitWriter::WriteQueuedHere() {
  absl::MutexLock round(&round_mu_);
  RunRound();
}

void GroupCommitWriter::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      while (!ready()) wakeup_->cv.Wait(&mu_);
      if (queue_.empty()) return;  // stopping, and everything is written
    }
    absl::MutexLock round(&round_mu_);
    RunRound();
  }
}

void GroupCommitWriter::RunRound() {
  // Take the round in one go (submitters contend for the lock), and build
  // the batch outside the lock, so submitters are never blocked by a sync.
  std::vector<Pending> round;
  absl::Status failure;
  {
    absl::MutexLock lock(&mu_);
    failure = failure_;
    // Failed for good: nothing more is written, everything fails.
    const size_t limit =
        failure.ok() ? static_cast<size_t>(options_.max_records_per_sync)
                     : queue_.size();
    while (!queue_.empty() && round.size() < limit) {
      round.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    wakeup_->queued.store(queue_.size(), std::memory_order_release);
  }
  if (round.empty()) return;
  if (!failure.ok()) {
    WakeupBatch wakeups;
    for (Pending& pending : round) {
      if (pending.done) pending.done(failure);
    }
    return;
  }
  rocksdb::WriteBatch batch;
  size_t filled = 0;
  while (filled < round.size() &&
         (filled == 0 || batch.GetDataSize() < options_.max_bytes_per_sync)) {
    round[filled++].fill(batch);
  }
  if (filled < round.size()) {
    // The batch is full: the rest goes back to the front, in order, for the
    // next round. Rounds never overlap, so the front is stable.
    absl::MutexLock lock(&mu_);
    for (size_t i = round.size(); i-- > filled;) {
      queue_.push_front(std::move(round[i]));
    }
    round.resize(filled);
    wakeup_->queued.store(queue_.size(), std::memory_order_release);
    wakeup_->cv.Signal();  // the writer thread writes the rest
  }

  // Nobody waits for a round without callbacks, so it needs no fsync of its
  // own: the WAL is ordered, and the next synced round makes it durable too.
  const uint64_t awaited =
      std::count_if(round.begin(), round.end(),
                    [](const Pending& pending) { return bool(pending.done); });
  absl::Status status;
  if (awaited == 0) {
    status = FromRocksDb(
        db_->Write(rocksdb::WriteOptions(), &batch),
        absl::StrCat("write to data directory ", db_->GetName()));
  } else {
    TWOPC_FAILPOINT("storage.before_sync");
    status = SyncedWrite(batch);
    if (status.ok()) {
      TWOPC_FAILPOINT("storage.after_sync");
      if (options_.after_sync) options_.after_sync();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      stats_.syncs += awaited > 0;
      stats_.records += round.size();
      stats_.max_records_per_sync =
          std::max<uint64_t>(stats_.max_records_per_sync, round.size());
      stats_.awaited_records += awaited;
      stats_.awaited_syncs += awaited > 0;
    } else if (failure_.ok()) {
      failure_ = status;
    }
    // Everything queued behind a failure fails with it.
    if (!failure_.ok()) {
      while (!queue_.empty()) {
        round.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      wakeup_->queued.store(0, std::memory_order_release);
      status = failure_;
    }
  }
  // What the callbacks hand to other threads (e.g. commit requests for the
  // participant links) is handed over once, for the whole round.
  WakeupBatch wakeups;
  for (Pending& pending : round) {
    if (pending.done) pending.done(status);
  }
}

}  // namespace twopc::storage
