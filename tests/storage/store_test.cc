#include "storage/store.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

Store::Options Coordinator(std::vector<std::string> families = {}) {
  return {.role = "coordinator", .column_families = std::move(families)};
}

TEST(StoreTest, CountersAreDurableAndGrow) {
  TempDir dir;
  {
    auto store = Store::Open(dir.path(), Coordinator());
    ASSERT_THAT(store, IsOk());
    EXPECT_EQ(*(*store)->IncrementCounter("epoch"), 1u);
    EXPECT_EQ(*(*store)->IncrementCounter("epoch"), 2u);
    EXPECT_EQ(*(*store)->IncrementCounter("other"), 1u);
  }
  auto reopened = Store::Open(dir.path(), Coordinator());
  ASSERT_THAT(reopened, IsOk());
  EXPECT_EQ(*(*reopened)->IncrementCounter("epoch"), 3u);
}

TEST(StoreTest, RefusesADirectoryOfAnotherRole) {
  TempDir dir;
  ASSERT_THAT(Store::Open(dir.path(), Coordinator()), IsOk());
  EXPECT_THAT(
      Store::Open(dir.path(), {.role = "participant", .column_families = {}}),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("belongs to a twopc coordinator")));
}

TEST(StoreTest, RefusesUnknownColumnFamilies) {
  TempDir dir;
  ASSERT_THAT(Store::Open(dir.path(), Coordinator({"log", "queues"})), IsOk());
  EXPECT_THAT(Store::Open(dir.path(), Coordinator({"log"})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("'queues'")));
}

TEST(StoreTest, NamedFamiliesAreAvailable) {
  TempDir dir;
  auto store = Store::Open(dir.path(), Coordinator({"log"}));
  ASSERT_THAT(store, IsOk());
  rocksdb::ColumnFamilyHandle* log = (*store)->family("log");
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE((*store)->db()->Put(rocksdb::WriteOptions(), log, "k", "v").ok());
  std::string value;
  ASSERT_TRUE((*store)->db()->Get(rocksdb::ReadOptions(), log, "k", &value).ok());
  EXPECT_EQ(value, "v");
  EXPECT_EQ((*store)->family("absent"), nullptr);
}

// The vector memtable of a scan-only family must still give back, in key
// order and with deletes applied, what was written: from the memtable, from
// a flushed table, and from the write-ahead log after a reopen.
TEST(StoreTest, ScanOnlyFamiliesIterateInOrderWithDeletesApplied) {
  TempDir dir;
  const Store::Options options = {.role = "participant",
                                  .column_families = {"records", "kv"},
                                  .scan_only_families = {"records"}};
  auto scan = [](Store& store) {
    std::vector<std::string> seen;
    std::unique_ptr<rocksdb::Iterator> it(store.db()->NewIterator(
        rocksdb::ReadOptions(), store.family("records")));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      seen.push_back(it->key().ToString() + "=" + it->value().ToString());
    }
    EXPECT_TRUE(it->status().ok());
    return seen;
  };
  const std::vector<std::string> expected = {"a=2", "c=1", "d=1"};
  {
    auto store = Store::Open(dir.path(), options);
    ASSERT_THAT(store, IsOk());
    rocksdb::DB* db = (*store)->db();
    rocksdb::ColumnFamilyHandle* records = (*store)->family("records");
    rocksdb::WriteOptions sync;
    sync.sync = true;
    for (const char* key : {"d", "b", "a", "c"}) {
      ASSERT_TRUE(db->Put(sync, records, key, "1").ok());
    }
    ASSERT_TRUE(db->Delete(sync, records, "b").ok());
    ASSERT_TRUE(db->Put(sync, records, "a", "2").ok());
    EXPECT_EQ(scan(**store), expected);  // from the memtable
    ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), records).ok());
    EXPECT_EQ(scan(**store), expected);  // from a table
    ASSERT_TRUE(db->Put(sync, records, "e", "1").ok());
    ASSERT_TRUE(db->Delete(sync, records, "e").ok());
  }
  auto reopened = Store::Open(dir.path(), options);  // replays the log
  ASSERT_THAT(reopened, IsOk());
  EXPECT_EQ(scan(**reopened), expected);
}

TEST(StoreTest, DetectsACorruptDirectory) {
  TempDir dir;
  ASSERT_THAT(Store::Open(dir.path(), Coordinator()), IsOk());
  // Truncate the MANIFEST: RocksDB must refuse rather than serve.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().filename().string().rfind("MANIFEST", 0) == 0) {
      std::filesystem::resize_file(entry.path(), 10);
    }
  }
  auto store = Store::Open(dir.path(), Coordinator());
  EXPECT_FALSE(store.ok());
}

}  // namespace
}  // namespace twopc::storage
