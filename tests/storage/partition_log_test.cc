#include "storage/partition_log.h"

#include <memory>
#include <string>
#include <thread>

#include "common/grpc_status.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

class PartitionLogsTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    logs_.reset();
    store_.reset();
    auto store = Store::Open(
        dir_.path(), {.role = "coordinator",
                      .column_families = {PartitionLogs::kFamily,
                                          PartitionLogs::kMetaFamily}});
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
    logs_ = std::make_unique<PartitionLogs>(store_.get());
    ASSERT_THAT(logs_->AddTopic("orders", 2), IsOk());
  }

  // Appends values to orders/`partition` in one synced batch.
  void AppendSynced(int32_t partition, const std::vector<std::string>& values) {
    rocksdb::WriteBatch batch;
    for (const std::string& value : values) {
      v1::QueueMessage message;
      message.set_value(value);
      message.set_transaction_id("1-1");
      logs_->Append(batch, "orders", partition, message);
    }
    rocksdb::WriteOptions sync;
    sync.sync = true;
    ASSERT_TRUE(store_->db()->Write(sync, &batch).ok());
    logs_->MarkSynced();
  }

  std::vector<std::string> Values(int32_t partition, int64_t from) {
    auto read = logs_->Read("orders", partition, from, 1000, 1 << 20);
    EXPECT_THAT(read, IsOk());
    std::vector<std::string> values;
    int64_t expected = from;
    for (const auto& m : read->messages) {
      EXPECT_EQ(m.offset(), expected++);
      EXPECT_EQ(m.topic(), "orders");
      EXPECT_EQ(m.partition(), partition);
      values.push_back(m.value());
    }
    return values;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PartitionLogs> logs_;
};

TEST_F(PartitionLogsTest, OffsetsAreGapFreePerPartitionAndSurviveReopen) {
  AppendSynced(0, {"a", "b"});
  AppendSynced(1, {"x"});
  AppendSynced(0, {"c"});
  EXPECT_EQ(Values(0, 0), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Values(1, 0), (std::vector<std::string>{"x"}));
  EXPECT_EQ(Values(0, 2), (std::vector<std::string>{"c"}));
  Open();
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->end, 3);
  AppendSynced(0, {"d"});
  EXPECT_EQ(Values(0, 0), (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST_F(PartitionLogsTest, UnsyncedAppendsAreInvisible) {
  rocksdb::WriteBatch batch;
  v1::QueueMessage message;
  message.set_value("pending");
  EXPECT_EQ(logs_->Append(batch, "orders", 0, message), 0);
  ASSERT_TRUE(store_->db()->Write(rocksdb::WriteOptions(), &batch).ok());
  EXPECT_TRUE(Values(0, 0).empty());
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->end, 0);
  logs_->MarkSynced();
  EXPECT_EQ(Values(0, 0), (std::vector<std::string>{"pending"}));
}

TEST_F(PartitionLogsTest, ReadLimitsByCountAndBytesButReturnsAtLeastOne) {
  AppendSynced(0, {std::string(100, 'a'), std::string(100, 'b'),
                   std::string(100, 'c')});
  auto two = logs_->Read("orders", 0, 0, 2, 1 << 20);
  ASSERT_THAT(two, IsOk());
  EXPECT_EQ(two->messages.size(), 2u);
  auto small = logs_->Read("orders", 0, 0, 100, 10);
  ASSERT_THAT(small, IsOk());
  EXPECT_EQ(small->messages.size(), 1u);
  auto past_end = logs_->Read("orders", 0, 50, 100, 1 << 20);
  ASSERT_THAT(past_end, IsOk());
  EXPECT_TRUE(past_end->messages.empty());
  EXPECT_THAT(logs_->Read("orders", 7, 0, 1, 1),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PartitionLogsTest, RetentionMovesTheStartAndOldOffsetsAreOutOfRange) {
  AppendSynced(0, {"a", "b", "c", "d"});
  auto removed = logs_->TruncateBefore("orders", 0, 2);
  ASSERT_THAT(removed, IsOk());
  EXPECT_EQ(*removed, 2);
  EXPECT_EQ(Values(0, 2), (std::vector<std::string>{"c", "d"}));
  auto below = logs_->Read("orders", 0, 1, 10, 1 << 20);
  EXPECT_THAT(below, StatusIs(absl::StatusCode::kOutOfRange));
  ASSERT_TRUE(GetErrorInfo(below.status()).has_value());
  EXPECT_EQ(GetErrorInfo(below.status())->log_start_offset(), 2);
  Open();
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->log_start, 2);
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->end, 4);
  // Truncating everything keeps the end: offsets are never reused.
  ASSERT_THAT(logs_->TruncateBefore("orders", 0, 100), IsOk());
  Open();
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->log_start, 4);
  EXPECT_EQ(logs_->GetOffsets("orders", 0)->end, 4);
  AppendSynced(0, {"e"});
  EXPECT_EQ(Values(0, 4), (std::vector<std::string>{"e"}));
}

// EndWaits (at shutdown) wakes a wait that nothing else would end, and
// later waits return at once: without it this test hangs.
TEST_F(PartitionLogsTest, EndWaitsEndsEveryWait) {
  EXPECT_FALSE(logs_->waits_ended());
  std::thread waiter([this] {
    EXPECT_EQ(logs_->WaitForEnd("orders", 0, 0, absl::InfiniteFuture()), 0);
  });
  logs_->EndWaits();
  waiter.join();
  EXPECT_TRUE(logs_->waits_ended());
  EXPECT_EQ(logs_->WaitForEnd("orders", 1, 0, absl::InfiniteFuture()), 0);
}

TEST(PartitionForKeyTest, IsTheDocumentedFnv1a64) {
  // FNV-1a 64 test vectors: "" -> cbf29ce484222325, "a" -> af63dc4c8601ec8c.
  EXPECT_EQ(PartitionForKey("", 1000), 0xcbf29ce484222325ull % 1000);
  EXPECT_EQ(PartitionForKey("a", 7), 0xaf63dc4c8601ec8cull % 7);
  EXPECT_EQ(PartitionForKey("order-17", 1), 0);
}

}  // namespace
}  // namespace twopc::storage
