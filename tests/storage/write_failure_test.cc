// The storage layer's failure points, in process: an injected failed sync or
// full disk fails the synced write exactly as RocksDB's error would, names
// the data directory, writes nothing and fails every later write; the crash
// points are reached where documented.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/failpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/group_commit_writer.h"
#include "storage/partition_log.h"
#include "storage/store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

class WriteFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(dir_.path(),
                             {.role = "coordinator",
                              .column_families = {PartitionLogs::kFamily,
                                                  PartitionLogs::kMetaFamily}});
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  void TearDown() override { failpoint::DisarmAll(); }

  static GroupCommitWriter::Fill Put(const std::string& key) {
    return [key](rocksdb::WriteBatch& batch) { batch.Put(key, "v"); };
  }

  bool Stored(const std::string& key) {
    std::string value;
    return store_->db()->Get(rocksdb::ReadOptions(), key, &value).ok();
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(WriteFailureTest, AFailedSyncFailsThisAndEveryLaterWrite) {
  GroupCommitWriter writer(store_->db());
  ASSERT_THAT(writer.Write(Put("before")), IsOk());
  // Once: the writer itself must stay failed afterwards.
  ASSERT_THAT(failpoint::ArmFromSpec("storage.sync_error=error,once"), IsOk());
  EXPECT_THAT(
      writer.Write(Put("failed")),
      StatusIs(absl::StatusCode::kInternal,
               AllOf(HasSubstr(absl::StrCat("synced write to data directory ",
                                            dir_.path())),
                     HasSubstr("Input/output error"))));
  absl::Status later;
  absl::Notification done;
  writer.Submit(Put("later"), [&](const absl::Status& status) {
    later = status;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_THAT(later, StatusIs(absl::StatusCode::kInternal,
                              HasSubstr("Input/output error")));
  EXPECT_EQ(failpoint::Hits("storage.sync_error"), 1);
  EXPECT_TRUE(Stored("before"));
  EXPECT_FALSE(Stored("failed"));
  EXPECT_FALSE(Stored("later"));
}

TEST_F(WriteFailureTest, AFullDiskSaysSo) {
  GroupCommitWriter writer(store_->db());
  ASSERT_THAT(failpoint::ArmFromSpec("storage.disk_full=error"), IsOk());
  EXPECT_THAT(writer.Write(Put("k")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr(dir_.path()),
                             HasSubstr("No space left on device"))));
  EXPECT_FALSE(Stored("k"));
}

TEST_F(WriteFailureTest, TheSyncPointsAreReachedOncePerRoundAroundTheSync) {
  int after_sync_hits_seen_by_hook = -1;
  GroupCommitWriter::Options options;
  options.after_sync = [&] {
    after_sync_hits_seen_by_hook =
        static_cast<int>(failpoint::Hits("storage.after_sync"));
  };
  GroupCommitWriter writer(store_->db(), options);
  ASSERT_THAT(failpoint::ArmFromSpec(
                  "storage.before_sync=delay:0;storage.after_sync=delay:0"),
              IsOk());
  ASSERT_THAT(writer.Write(Put("a")), IsOk());
  ASSERT_THAT(writer.Write(Put("b")), IsOk());
  EXPECT_EQ(failpoint::Hits("storage.before_sync"), 2);
  EXPECT_EQ(failpoint::Hits("storage.after_sync"), 2);
  // The after-sync point comes before the round's hook and callbacks.
  EXPECT_EQ(after_sync_hits_seen_by_hook, 2);
}

TEST_F(WriteFailureTest, TheQueueAppendPointIsReachedPerMessage) {
  PartitionLogs logs(store_.get());
  ASSERT_THAT(logs.AddTopic("orders", 1), IsOk());
  ASSERT_THAT(failpoint::ArmFromSpec("storage.queue_append=delay:0"), IsOk());
  rocksdb::WriteBatch batch;
  logs.Append(batch, "orders", 0, v1::QueueMessage());
  logs.Append(batch, "orders", 0, v1::QueueMessage());
  EXPECT_EQ(failpoint::Hits("storage.queue_append"), 2);
}

}  // namespace
}  // namespace twopc::storage
