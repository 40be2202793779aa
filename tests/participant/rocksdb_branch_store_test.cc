#include "participant/rocksdb_branch_store.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/branch_manager.h"
#include "participant/kv_resource.h"
#include "tests/participant/kv_builders.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::participant {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;
using namespace ::twopc::participant::testing;  // NOLINT

absl::Status WriteAndWait(BranchStore& store, StoreBatch batch) {
  absl::Notification done;
  absl::Status result;
  store.Write(std::move(batch), [&](const absl::Status& status) {
    result = status;
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

TEST(RocksDbBranchStoreTest, RecordsKvAndEpochSurviveReopen) {
  TempDir dir;
  {
    auto store = RocksDbBranchStore::Open(dir.path());
    ASSERT_THAT(store, IsOk());
    StoreBatch batch;
    BranchRecord record;
    record.set_state(BranchRecord::PREPARED);
    record.add_locked_keys("a");
    batch.records.emplace_back("t1", record);
    KvWrite put;
    put.set_key("a/1");
    put.set_value("x");
    batch.kv.push_back(put);
    put.set_key("a/2");
    batch.kv.push_back(put);
    batch.highest_epoch = 9;
    ASSERT_THAT(WriteAndWait(**store, std::move(batch)), IsOk());
    StoreBatch del;
    KvWrite remove;
    remove.set_key("a/2");
    del.kv.push_back(remove);
    ASSERT_THAT(WriteAndWait(**store, std::move(del)), IsOk());
  }
  auto store = RocksDbBranchStore::Open(dir.path());
  ASSERT_THAT(store, IsOk());
  auto state = (*store)->Recover();
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->highest_epoch, 9u);
  ASSERT_EQ(state->records.size(), 1u);
  EXPECT_EQ(state->records[0].first, "t1");
  EXPECT_EQ(state->records[0].second.state(), BranchRecord::PREPARED);
  EXPECT_EQ(**(*store)->Get("a/1"), "x");
  EXPECT_FALSE((*(*store)->Get("a/2")).has_value());
  bool more = true;
  auto entries = (*store)->Scan("a/", "", 10, &more);
  ASSERT_THAT(entries, IsOk());
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_FALSE(more);
}

TEST(RocksDbBranchStoreTest, StoredEpochNeverGoesBackwards) {
  TempDir dir;
  {
    auto store = RocksDbBranchStore::Open(dir.path());
    ASSERT_THAT(store, IsOk());
    ASSERT_THAT((*store)->Recover(), IsOk());
    // Epoch 7 is noted before an ordinary batch: that batch persists it.
    (*store)->NoteEpoch(7);
    StoreBatch unrelated;
    unrelated.forget.push_back("nothing");
    ASSERT_THAT(WriteAndWait(**store, std::move(unrelated)), IsOk());
    // An older epoch written late (threads racing) does not lower it.
    StoreBatch late;
    late.highest_epoch = 3;
    ASSERT_THAT(WriteAndWait(**store, std::move(late)), IsOk());
  }
  auto store = RocksDbBranchStore::Open(dir.path());
  ASSERT_THAT(store, IsOk());
  auto state = (*store)->Recover();
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->highest_epoch, 7u);
}

TEST(RocksDbBranchStoreTest, ScanPagesFromStartAfter) {
  TempDir dir;
  auto store = RocksDbBranchStore::Open(dir.path());
  ASSERT_THAT(store, IsOk());
  StoreBatch batch;
  for (const char* key : {"a", "b/1", "b/2", "b/3", "c"}) {
    KvWrite put;
    put.set_key(key);
    put.set_value(key);
    batch.kv.push_back(put);
  }
  ASSERT_THAT(WriteAndWait(**store, std::move(batch)), IsOk());
  bool more = false;
  auto page = (*store)->Scan("b/", "", 2, &more);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_TRUE(more);
  page = (*store)->Scan("b/", "b/2", 2, &more);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].key, "b/3");
  EXPECT_FALSE(more);
  page = (*store)->Scan("", "", 100, &more);
  EXPECT_EQ(page->size(), 5u);
}

TEST(RocksDbBranchStoreTest, RefusesADataDirectoryOfAnotherRole) {
  TempDir dir;
  ASSERT_THAT(storage::Store::Open(dir.path(), {.role = "coordinator",
                                                .column_families = {}}),
              IsOk());
  EXPECT_THAT(RocksDbBranchStore::Open(dir.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("belongs to a twopc coordinator")));
}

// Concurrent prepares through the real store share syncs, and a restarted
// manager finds them PREPARED with their locks.
BranchManagerOptions ManagerOptions() {
  return {.participant_id = "p1",
          .in_doubt_after = absl::Seconds(10),
          .query_backoff_initial = absl::Seconds(1),
          .query_backoff_max = absl::Seconds(4),
          .finished_retention = absl::Minutes(1),
          .finished_retention_without_deadline = absl::Minutes(10),
          .on_fatal = nullptr};
}

TEST(RocksDbBranchStoreTest, ConcurrentPreparesShareSyncsAndRecover) {
  TempDir dir;
  SimulatedClock clock;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  {
    auto store = RocksDbBranchStore::Open(dir.path());
    ASSERT_THAT(store, IsOk());
    KvResource kv(store->get());
    auto manager = BranchManager::Create(ManagerOptions(),
                                         store->get(), &kv, &clock);
    ASSERT_THAT(manager, IsOk());
    std::atomic<int> yes{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const std::string txid = absl::StrCat("t", t, "-", i);
          absl::Notification done;
          (*manager)->Handle(1, PrepareRequest(i, txid, KvBranch({Put(txid, "v")})),
                             [&](v1::BranchReply reply) {
                               if (reply.vote() == v1::VOTE_YES) ++yes;
                               done.Notify();
                             });
          done.WaitForNotification();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(yes.load(), kThreads * kPerThread);
    const auto stats = (*store)->writer_stats();
    EXPECT_EQ(stats.records, static_cast<uint64_t>(kThreads * kPerThread + 1));
    // Group commit: with 8 concurrent writers, rounds carry several records.
    EXPECT_LT(stats.syncs, stats.records);
    manager->reset();
  }
  auto store = RocksDbBranchStore::Open(dir.path());
  ASSERT_THAT(store, IsOk());
  KvResource kv(store->get());
  auto manager = BranchManager::Create(ManagerOptions(),
                                       store->get(), &kv, &clock);
  ASSERT_THAT(manager, IsOk());
  EXPECT_EQ((*manager)->prepared_branches(),
            static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(kv.LockHolder("t3-7"), "t3-7");
  EXPECT_EQ((*manager)->highest_epoch(), 1u);
}

}  // namespace
}  // namespace twopc::participant
