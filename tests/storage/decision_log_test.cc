#include "storage/decision_log.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

class DecisionLogTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    log_.reset();
    writer_.reset();
    queues_.reset();
    store_.reset();
    auto store = Store::Open(
        dir_.path(),
        {.role = "coordinator",
         .column_families = {DecisionLog::kRecordsFamily,
                             DecisionLog::kKeysFamily, PartitionLogs::kFamily,
                             PartitionLogs::kMetaFamily}});
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
    queues_ = std::make_unique<PartitionLogs>(store_.get());
    ASSERT_THAT(queues_->AddTopic("orders", 2), IsOk());
    GroupCommitWriter::Options options;
    options.after_sync = [this] { queues_->MarkSynced(); };
    writer_ = std::make_unique<GroupCommitWriter>(store_->db(), options);
    log_ = std::make_unique<DecisionLog>(store_.get(), writer_.get(),
                                         queues_.get());
  }

  static internal::TransactionRecord Record(const std::string& id,
                                            v1::TransactionState state,
                                            int64_t created_us,
                                            int64_t finished_us,
                                            const std::string& key = "") {
    internal::TransactionRecord record;
    record.set_transaction_id(id);
    record.set_state(state);
    record.set_create_time_us(created_us);
    record.set_finish_time_us(finished_us);
    record.set_idempotency_key(key);
    return record;
  }

  absl::Status AppendSynced(const internal::TransactionRecord& record,
                            bool index_key = true) {
    absl::Notification done;
    absl::Status result;
    log_->Append(record, index_key, [&](const absl::Status& s) {
      result = s;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  std::vector<std::string> Ids() {
    std::vector<std::string> ids;
    EXPECT_THAT(log_->ForEach([&](internal::TransactionRecord r) {
      ids.push_back(r.transaction_id());
    }),
                IsOk());
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PartitionLogs> queues_;
  std::unique_ptr<GroupCommitWriter> writer_;
  std::unique_ptr<DecisionLog> log_;
};

TEST_F(DecisionLogTest, RecordsAndKeysSurviveAReopen) {
  ASSERT_THAT(AppendSynced(Record("2-7", v1::TRANSACTION_STATE_COMMITTING, 1,
                                  0, "order-1")),
              IsOk());
  Open();
  auto record = log_->Read("2-7");
  ASSERT_THAT(record, IsOk());
  ASSERT_TRUE(record->has_value());
  EXPECT_EQ((*record)->state(), v1::TRANSACTION_STATE_COMMITTING);
  auto id = log_->FindByIdempotencyKey("order-1");
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(id->value_or(""), "2-7");
  EXPECT_FALSE(log_->Read("2-8")->has_value());
  EXPECT_FALSE(log_->Read("not-an-id")->has_value());
  EXPECT_FALSE(log_->FindByIdempotencyKey("nope")->has_value());
}

TEST_F(DecisionLogTest, OnlyAnIndexingAppendWritesTheKey) {
  // A transaction's later records leave the key's index entry as the first
  // one wrote it: here a record that (unlike any real one) names the key
  // for another id does not move it.
  ASSERT_THAT(AppendSynced(Record("1-1", v1::TRANSACTION_STATE_PREPARING, 1, 0,
                                  "order-1")),
              IsOk());
  ASSERT_THAT(AppendSynced(Record("1-2", v1::TRANSACTION_STATE_COMMITTED, 1, 2,
                                  "order-1"),
                           /*index_key=*/false),
              IsOk());
  ASSERT_THAT(AppendSynced(Record("1-3", v1::TRANSACTION_STATE_COMMITTED, 1, 2,
                                  "order-3"),
                           /*index_key=*/false),
              IsOk());
  EXPECT_EQ(log_->FindByIdempotencyKey("order-1")->value_or(""), "1-1");
  EXPECT_FALSE(log_->FindByIdempotencyKey("order-3")->has_value());
  // The record itself keeps its key.
  EXPECT_EQ((*log_->Read("1-3"))->idempotency_key(), "order-3");
}

TEST_F(DecisionLogTest, LaterAppendsOverwriteAndScanIsInCreationOrder) {
  // Epochs and sequences compare numerically, not as strings.
  for (const char* id : {"10-1", "2-30", "2-4", "9-100"}) {
    ASSERT_THAT(AppendSynced(Record(id, v1::TRANSACTION_STATE_PREPARING, 1, 0)),
                IsOk());
  }
  ASSERT_THAT(AppendSynced(Record("2-4", v1::TRANSACTION_STATE_ABORTED, 1, 2)),
              IsOk());
  EXPECT_EQ(Ids(), (std::vector<std::string>{"2-4", "2-30", "9-100", "10-1"}));
  EXPECT_EQ((*log_->Read("2-4"))->state(), v1::TRANSACTION_STATE_ABORTED);
}

TEST_F(DecisionLogTest, CompactionRemovesOnlyOldFinishedRecords) {
  ASSERT_THAT(AppendSynced(Record("1-1", v1::TRANSACTION_STATE_COMMITTED, 10,
                                  20, "old")),
              IsOk());
  // Old but unfinished (e.g. parked): never deleted.
  ASSERT_THAT(
      AppendSynced(Record("1-2", v1::TRANSACTION_STATE_COMMITTING, 11, 0)),
      IsOk());
  // Finished after the cutoff.
  ASSERT_THAT(
      AppendSynced(Record("1-3", v1::TRANSACTION_STATE_ABORTED, 12, 500)),
      IsOk());
  ASSERT_THAT(
      AppendSynced(Record("1-4", v1::TRANSACTION_STATE_COMMITTED, 300, 310)),
      IsOk());
  std::string watermark;
  auto deleted = log_->Compact(absl::FromUnixMicros(100),
                               [&](const std::string& newest) {
                                 watermark = newest;
                                 return absl::OkStatus();
                               });
  ASSERT_THAT(deleted, IsOk());
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(watermark, "1-1");
  EXPECT_EQ(Ids(), (std::vector<std::string>{"1-2", "1-3", "1-4"}));
  EXPECT_FALSE(log_->FindByIdempotencyKey("old")->has_value());
}

TEST_F(DecisionLogTest, CompactionStopsWhenTheWatermarkCannotBeStored) {
  ASSERT_THAT(
      AppendSynced(Record("1-1", v1::TRANSACTION_STATE_COMMITTED, 10, 20)),
      IsOk());
  EXPECT_THAT(log_->Compact(absl::FromUnixMicros(100),
                            [](const std::string&) {
                              return absl::InternalError("disk full");
                            }),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(Ids(), (std::vector<std::string>{"1-1"}));
}

// A compaction larger than one write is announced once, with its newest
// id, before anything is deleted, and then deletes every record of it.
TEST_F(DecisionLogTest, ALargeCompactionIsAnnouncedOnceBeforeItsWrites) {
  constexpr int kRecords = 2 * DecisionLog::kMaxDeletedPerWrite + 5;
  for (int i = 1; i <= kRecords; ++i) {
    // Unforced, like a real final record; the last write syncs them all.
    log_->Append(Record(absl::StrCat("1-", i), v1::TRANSACTION_STATE_COMMITTED,
                        i, i, absl::StrCat("key-", i)),
                 /*index_key=*/true, nullptr);
  }
  ASSERT_THAT(AppendSynced(Record("1-999999", v1::TRANSACTION_STATE_COMMITTED,
                                  1'000'000, 1'000'000)),
              IsOk());
  std::vector<std::string> announced;
  std::vector<size_t> left_when_announced;
  auto deleted = log_->Compact(absl::FromUnixMicros(kRecords + 1),
                               [&](const std::string& newest) {
                                 announced.push_back(newest);
                                 left_when_announced.push_back(Ids().size());
                                 return absl::OkStatus();
                               });
  ASSERT_THAT(deleted, IsOk());
  EXPECT_EQ(*deleted, kRecords);
  EXPECT_EQ(announced,
            (std::vector<std::string>{absl::StrCat("1-", kRecords)}));
  EXPECT_EQ(left_when_announced, (std::vector<size_t>{kRecords + 1}));
  EXPECT_EQ(Ids(), (std::vector<std::string>{"1-999999"}));
  EXPECT_FALSE(log_->FindByIdempotencyKey("key-1")->has_value());
  EXPECT_FALSE(
      log_->FindByIdempotencyKey(absl::StrCat("key-", kRecords))->has_value());
}

TEST_F(DecisionLogTest, CommitRecordAndItsMessagesAreOneAtomicWrite) {
  std::vector<std::vector<v1::MessagePosition>> results;
  for (int t = 0; t < 3; ++t) {
    internal::TransactionRecord record = Record(
        absl::StrCat("1-", t + 1), v1::TRANSACTION_STATE_COMMITTING, 1, 0);
    for (int m = 0; m < 2; ++m) {
      v1::Message* message = record.add_messages();
      message->set_topic("orders");
      message->set_partition(m);
      message->set_value(absl::StrCat("t", t, "m", m));
    }
    absl::Notification done;
    log_->AppendCommit(record, /*index_key=*/true,
                       [&](const absl::Status& status,
                           const std::vector<v1::MessagePosition>& p) {
                         EXPECT_THAT(status, IsOk());
                         results.push_back(p);
                         done.Notify();
                       });
    done.WaitForNotification();
  }
  // Commit order is offset order, per partition, with no gaps.
  for (int t = 0; t < 3; ++t) {
    ASSERT_EQ(results[t].size(), 2u);
    EXPECT_EQ(results[t][0].partition(), 0);
    EXPECT_EQ(results[t][0].offset(), t);
    EXPECT_EQ(results[t][1].partition(), 1);
    EXPECT_EQ(results[t][1].offset(), t);
  }
  auto read = queues_->Read("orders", 1, 0, 10, 1 << 20);
  ASSERT_THAT(read, IsOk());
  ASSERT_EQ(read->messages.size(), 3u);
  EXPECT_EQ(read->messages[2].value(), "t2m1");
  EXPECT_EQ(read->messages[2].transaction_id(), "1-3");
  // The stored record points at the messages instead of holding them.
  auto stored = log_->Read("1-2");
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ((*stored)->messages_size(), 0);
  EXPECT_EQ((*stored)->message_positions_size(), 2);
}

TEST_F(DecisionLogTest, ACorruptRecordIsDataLossNotAGuess) {
  std::string key(16, '\0');
  key[7] = 1;
  key[15] = 9;
  ASSERT_TRUE(store_->db()
                  ->Put(rocksdb::WriteOptions(),
                        store_->family(DecisionLog::kRecordsFamily), key,
                        "\xff\xff\xff garbage")
                  .ok());
  EXPECT_THAT(log_->ForEach([](internal::TransactionRecord) {}),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace twopc::storage
