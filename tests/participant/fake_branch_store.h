// FakeBranchStore: an in-memory BranchStore for unit tests that can lose
// unsynced writes, like a power cut.
//
// Writes queue up as "unsynced" (invisible to Get/Scan/Recover) until Sync()
// makes them durable, in order, and runs their `done` callbacks. DropUnsynced
// forgets the queue without calling anything, as a crash would. With
// set_auto_sync(true) every Write is synced at once (done runs inline).
// FailNextSync makes the next Sync fail every queued write, and every later
// write (the store is then failed for good, like the real one).
//
// Thread-safe; callbacks run without the fake's lock held.
#ifndef TWOPC_TESTS_PARTICIPANT_FAKE_BRANCH_STORE_H_
#define TWOPC_TESTS_PARTICIPANT_FAKE_BRANCH_STORE_H_

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "participant/branch_store.h"

namespace twopc::participant {

class FakeBranchStore : public BranchStore {
 public:
  void Write(StoreBatch batch, Done done) override {
    if (on_write_) {
      // Once: the hook may write itself.
      std::function<void(const StoreBatch&)> hook = std::move(on_write_);
      on_write_ = nullptr;
      hook(batch);
    }
    bool sync_now = false;
    absl::Status failed;
    {
      absl::MutexLock lock(&mu_);
      ++writes_;
      if (!failure_.ok()) {
        failed = failure_;
      } else {
        pending_.push_back({std::move(batch), std::move(done)});
        sync_now = auto_sync_;
      }
    }
    if (!failed.ok()) {
      if (done) done(failed);
      return;
    }
    if (sync_now) Sync();
  }

  absl::StatusOr<RecoveredState> Recover() override {
    absl::MutexLock lock(&mu_);
    RecoveredState state;
    state.highest_epoch = epoch_;
    for (const auto& [txid, record] : records_) {
      state.records.emplace_back(txid, record);
    }
    return state;
  }

  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) override {
    absl::MutexLock lock(&mu_);
    ++gets_;
    auto it = kv_.find(std::string(key));
    if (it == kv_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }

  absl::StatusOr<std::vector<KvEntry>> Scan(absl::string_view prefix,
                                            absl::string_view start_after,
                                            size_t limit, bool* more) override {
    absl::MutexLock lock(&mu_);
    std::vector<KvEntry> entries;
    *more = false;
    for (auto it = kv_.lower_bound(std::string(prefix)); it != kv_.end();
         ++it) {
      if (!absl::StartsWith(it->first, prefix)) break;
      if (!start_after.empty() && it->first <= start_after) continue;
      if (entries.size() == limit) {
        *more = true;
        break;
      }
      entries.push_back({it->first, it->second});
    }
    return entries;
  }

  // Makes every queued write durable, in order, and runs its callback.
  // Returns how many were synced.
  int Sync() {
    std::deque<Pending> round;
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      round.swap(pending_);
      if (fail_next_sync_) {
        fail_next_sync_ = false;
        failure_ = absl::InternalError("injected sync failure");
      }
      status = failure_;
      if (status.ok()) {
        for (Pending& p : round) Apply(p.batch);
        ++syncs_;
      }
    }
    for (Pending& p : round) {
      if (p.done) p.done(status);
    }
    return static_cast<int>(round.size());
  }

  // Power cut: queued writes are lost and their callbacks never run.
  void DropUnsynced() {
    absl::MutexLock lock(&mu_);
    pending_.clear();
  }

  // Runs `hook` once, at the start of the next Write (before the batch is
  // queued), with that batch: for tests of what another thread may do
  // meanwhile. Not thread-safe: set it while nothing writes.
  void set_on_write(std::function<void(const StoreBatch&)> hook) {
    on_write_ = std::move(hook);
  }

  void set_auto_sync(bool auto_sync) {
    absl::MutexLock lock(&mu_);
    auto_sync_ = auto_sync;
  }
  void FailNextSync() {
    absl::MutexLock lock(&mu_);
    fail_next_sync_ = true;
  }
  // Test set-up: a committed key-value pair, as if synced long ago.
  void SetKv(const std::string& key, const std::string& value) {
    absl::MutexLock lock(&mu_);
    kv_[key] = value;
  }
  size_t unsynced() const {
    absl::MutexLock lock(&mu_);
    return pending_.size();
  }
  int syncs() const {
    absl::MutexLock lock(&mu_);
    return syncs_;
  }
  int writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  std::optional<BranchRecord> DurableRecord(const std::string& txid) const {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(txid);
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  uint64_t durable_epoch() const {
    absl::MutexLock lock(&mu_);
    return epoch_;
  }
  // Point reads of kv keys so far.
  int gets() const {
    absl::MutexLock lock(&mu_);
    return gets_;
  }

 private:
  struct Pending {
    StoreBatch batch;
    Done done;
  };

  void Apply(const StoreBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (batch.highest_epoch.has_value()) epoch_ = *batch.highest_epoch;
    for (const auto& [txid, record] : batch.records) records_[txid] = record;
    for (const std::string& txid : batch.forget) records_.erase(txid);
    for (const KvWrite& write : batch.kv) {
      if (write.has_value()) {
        kv_[write.key()] = write.value();
      } else {
        kv_.erase(write.key());
      }
    }
  }

  // See set_on_write.
  std::function<void(const StoreBatch&)> on_write_;
  mutable absl::Mutex mu_;
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, BranchRecord> records_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> kv_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool auto_sync_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_next_sync_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  int syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  int gets_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace twopc::participant

#endif  // TWOPC_TESTS_PARTICIPANT_FAKE_BRANCH_STORE_H_
