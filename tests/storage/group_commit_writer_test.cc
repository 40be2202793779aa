#include "storage/group_commit_writer.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/wakeup_batch.h"
#include "gtest/gtest.h"
#include "storage/store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

class GroupCommitWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(dir_.path(), {.role = "test", .column_families = {}});
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  std::string Get(const std::string& key) {
    std::string value;
    rocksdb::Status s = store_->db()->Get(rocksdb::ReadOptions(), key, &value);
    return s.ok() ? value : "<" + s.ToString() + ">";
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(GroupCommitWriterTest, WriteIsVisibleWhenItReturns) {
  GroupCommitWriter writer(store_->db());
  ASSERT_THAT(writer.Write([](rocksdb::WriteBatch& b) { b.Put("k", "v"); }),
              IsOk());
  EXPECT_EQ(Get("k"), "v");
  EXPECT_EQ(writer.stats().syncs, 1u);
  EXPECT_EQ(writer.stats().records, 1u);
}

// Submit inside a WakeupBatch wakes the writer only when the batch closes;
// Write waits for its own round, so it must wake the writer at once (a
// deferred wake-up would never come: this thread is the one waiting).
TEST_F(GroupCommitWriterTest, WriteInsideAWakeupBatchDoesNotWaitForItsEnd) {
  GroupCommitWriter writer(store_->db());
  absl::Notification submitted_done;
  {
    WakeupBatch batch;
    writer.Submit([](rocksdb::WriteBatch& b) { b.Put("a", "1"); },
                  [&](const absl::Status&) { submitted_done.Notify(); });
    ASSERT_THAT(writer.Write([](rocksdb::WriteBatch& b) { b.Put("b", "2"); }),
                IsOk());
  }
  // The deferred submission was ahead of Write in the queue, so the round
  // Write woke the writer for carried it too.
  submitted_done.WaitForNotification();
  EXPECT_EQ(Get("a"), "1");
  EXPECT_EQ(Get("b"), "2");
}

// A thread that queued many records writes them itself: one synced round,
// every callback on that thread before WriteQueuedHere returns.
TEST_F(GroupCommitWriterTest, WriteQueuedHereWritesOnTheCallingThread) {
  GroupCommitWriter writer(store_->db());
  const uint64_t syncs_before = writer.stats().syncs;
  const std::thread::id caller = std::this_thread::get_id();
  int done_here = 0;
  {
    // The writer thread is not woken for these before the batch closes.
    WakeupBatch batch;
    for (int i = 0; i < 10; ++i) {
      writer.Submit(
          [i](rocksdb::WriteBatch& b) { b.Put(absl::StrCat("k", i), "v"); },
          [&](const absl::Status& status) {
            EXPECT_THAT(status, IsOk());
            done_here += std::this_thread::get_id() == caller;
          });
    }
    writer.WriteQueuedHere();
    EXPECT_EQ(done_here, 10);
  }
  EXPECT_EQ(writer.stats().syncs - syncs_before, 1u);
  EXPECT_EQ(Get("k9"), "v");
  writer.WriteQueuedHere();  // nothing queued: returns at once
  EXPECT_EQ(writer.stats().syncs - syncs_before, 1u);
}

// Rounds never overlap: WriteQueuedHere waits for the writer thread's round
// and runs after it, so records stay in submission order.
TEST_F(GroupCommitWriterTest, WriteQueuedHereRunsAfterTheWritersRound) {
  GroupCommitWriter writer(store_->db());
  absl::Notification filling, release;
  std::vector<std::string> order;
  writer.Submit(
      [&](rocksdb::WriteBatch& b) {
        filling.Notify();
        release.WaitForNotification();
        b.Put("first", "1");
      },
      [&](const absl::Status&) { order.push_back("first"); });
  filling.WaitForNotification();  // the writer thread is inside its round
  writer.Submit([](rocksdb::WriteBatch& b) { b.Put("second", "2"); },
                [&](const absl::Status&) { order.push_back("second"); });
  std::thread here([&] { writer.WriteQueuedHere(); });
  release.Notify();
  here.join();
  // WriteQueuedHere returned after its own round, so both are done.
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(Get("second"), "2");
}

TEST_F(GroupCommitWriterTest, RoundsNobodyWaitsForAreWrittenWithoutASync) {
  GroupCommitWriter writer(store_->db());
  // Submissions without a callback: written in order, but no fsync.
  for (int i = 0; i < 3; ++i) {
    writer.Submit(
        [i](rocksdb::WriteBatch& b) { b.Put(absl::StrCat("k", i), "v"); },
        nullptr);
  }
  // Write's round comes after them (rounds are in submission order), so it
  // is the first and only sync, and it makes all four durable.
  ASSERT_THAT(writer.Write([](rocksdb::WriteBatch& b) { b.Put("k3", "v"); }),
              IsOk());
  EXPECT_EQ(writer.stats().syncs, 1u);
  EXPECT_EQ(writer.stats().records, 4u);
  EXPECT_EQ(writer.stats().awaited_records, 1u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Get(absl::StrCat("k", i)), "v");
}

TEST_F(GroupCommitWriterTest, ConcurrentWritersShareSyncsAndFillRunsInOrder) {
  GroupCommitWriter writer(store_->db());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  // `fill` runs on the writer thread in submission order: a counter bumped
  // inside it gives each record a gap-free sequence number.
  std::atomic<int> sequence{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status status = writer.Write([&, t, i](rocksdb::WriteBatch& b) {
          b.Put(absl::StrCat("seq/", sequence.fetch_add(1)),
                absl::StrCat(t, "/", i));
        });
        ASSERT_THAT(status, IsOk());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const GroupCommitWriter::Stats stats = writer.stats();
  EXPECT_EQ(stats.records, uint64_t{kThreads * kPerThread});
  EXPECT_LE(stats.syncs, stats.records);
  for (int n = 0; n < kThreads * kPerThread; ++n) {
    ASSERT_NE(Get(absl::StrCat("seq/", n))[0], '<') << n;
  }
}

TEST_F(GroupCommitWriterTest, ManyQueuedRecordsGoOutInFewSyncs) {
  // Queue while the writer is busy on a first, blocked record: everything
  // queued behind it must share the next sync.
  GroupCommitWriter writer(store_->db());
  absl::Notification release, first_filling;
  writer.Submit(
      [&](rocksdb::WriteBatch& b) {
        first_filling.Notify();
        release.WaitForNotification();
        b.Put("first", "1");
      },
      [](const absl::Status&) {});
  first_filling.WaitForNotification();
  std::atomic<int> ok{0};
  for (int i = 0; i < 100; ++i) {
    writer.Submit(
        [i](rocksdb::WriteBatch& b) { b.Put(absl::StrCat("k", i), "v"); },
        [&](const absl::Status& s) { ok += s.ok(); });
  }
  release.Notify();
  ASSERT_THAT(writer.Write([](rocksdb::WriteBatch&) {}), IsOk());
  EXPECT_EQ(ok.load(), 100);
  // The first record may sync alone or with some of the queue; the 100
  // queued records and the final Write need at most two more syncs.
  EXPECT_LE(writer.stats().syncs, 3u);
  EXPECT_GE(writer.stats().max_records_per_sync, 50u);
}

// A round stops at max_records_per_sync records or once its batch reaches
// max_bytes_per_sync; what it leaves goes out in later rounds, in order.
TEST_F(GroupCommitWriterTest, RoundsRespectTheirLimitsAndKeepTheOrder) {
  for (const bool by_bytes : {false, true}) {
    SCOPED_TRACE(by_bytes ? "bytes" : "records");
    GroupCommitWriter::Options options;
    if (by_bytes) {
      // Each record is ~110 bytes: the third one takes a round past 250.
      options.max_bytes_per_sync = 250;
    } else {
      options.max_records_per_sync = 3;
    }
    GroupCommitWriter writer(store_->db(), options);
    std::vector<int> filled;  // fills run on the writer thread, one at a time
    std::atomic<int> done{0};
    {
      WakeupBatch queued_together;  // the writer wakes to all 10 at once
      for (int i = 0; i < 10; ++i) {
        writer.Submit(
            [i, &filled](rocksdb::WriteBatch& b) {
              filled.push_back(i);
              b.Put(absl::StrCat("k", i), std::string(100, 'v'));
            },
            [&done](const absl::Status& status) {
              EXPECT_THAT(status, IsOk());
              ++done;
            });
      }
    }
    ASSERT_THAT(writer.Write([](rocksdb::WriteBatch&) {}), IsOk());
    EXPECT_EQ(done.load(), 10);
    EXPECT_EQ(filled, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(writer.stats().max_records_per_sync, 3u);
    EXPECT_GE(writer.stats().syncs, 4u);
  }
}

TEST_F(GroupCommitWriterTest, DestructorFlushesTheQueue) {
  std::atomic<int> done{0};
  {
    GroupCommitWriter writer(store_->db());
    for (int i = 0; i < 50; ++i) {
      writer.Submit(
          [i](rocksdb::WriteBatch& b) { b.Put(absl::StrCat("d", i), "v"); },
          [&](const absl::Status& s) { done += s.ok(); });
    }
  }
  EXPECT_EQ(done.load(), 50);
  EXPECT_EQ(Get("d49"), "v");
}

TEST_F(GroupCommitWriterTest, AFailedWriteFailsEverythingAfterIt) {
  GroupCommitWriter writer(store_->db());
  // A Put into a column family handle of a dropped family fails the write.
  rocksdb::ColumnFamilyHandle* doomed = nullptr;
  ASSERT_TRUE(store_->db()
                  ->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "doomed",
                                       &doomed)
                  .ok());
  ASSERT_TRUE(store_->db()->DropColumnFamily(doomed).ok());
  EXPECT_FALSE(
      writer.Write([&](rocksdb::WriteBatch& b) { b.Put(doomed, "k", "v"); })
          .ok());
  EXPECT_FALSE(
      writer.Write([](rocksdb::WriteBatch& b) { b.Put("later", "v"); }).ok());
  EXPECT_EQ(Get("later")[0], '<');
  store_->db()->DestroyColumnFamilyHandle(doomed);
}

}  // namespace
}  // namespace twopc::storage
