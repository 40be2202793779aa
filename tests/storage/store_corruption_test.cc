// Store::Open on damaged data directories. Every kind of damage is refused
// with DATA_LOSS and one line naming the directory and what to do; what a
// crash can leave behind (a torn last log record, a creation cut short) is
// not damage and opens.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/store.h"
#include "tests/faults/file_damage.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::storage {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::twopc::testing::AllDamage;
using ::twopc::testing::ApplyDamage;
using ::twopc::testing::Damage;
using ::twopc::testing::DamageName;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;

constexpr char kFamily[] = "records";
constexpr int kTableRecords = 100;
constexpr int kLogRecords = 3;
constexpr int kRecords = 2 * kTableRecords + kLogRecords;

const Store::Options& Options() {
  static const Store::Options* const options =
      new Store::Options{.role = "coordinator", .column_families = {kFamily}};
  return *options;
}

std::string Key(int i) { return absl::StrCat("record/", 1000 + i); }

// Writes `value` under `key` in `family` (created when missing) with plain
// RocksDB, without twopc's checks, as another tool or a bug might.
void PutRaw(const std::string& dir, const std::string& family,
            const std::string& key, const std::string& value) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(options, dir, &names).ok()) {
    names = {rocksdb::kDefaultColumnFamilyName};
  }
  if (std::find(names.begin(), names.end(), family) == names.end()) {
    names.push_back(family);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) families.emplace_back(name, options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir, families, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    if (handle->GetName() == family) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handle, key, value).ok());
    }
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
  }
}

class StoreCorruptionTest : public ::testing::Test {
 protected:
  // A closed store holding, each synced, 2 * kTableRecords records in two
  // tables (flushed in two runs: the MANIFEST's last edit is a flush), then
  // kLogRecords more in the write-ahead log only.
  void SetUp() override {
    int next = 0;
    for (int run = 0; run < 2; ++run) {
      auto store = Store::Open(dir_.path(), Options());
      ASSERT_THAT(store, IsOk());
      auto put = [&] {
        return (*store)
            ->db()
            ->Put(Synced(), (*store)->family(kFamily), Key(next++), "value")
            .ok();
      };
      for (int i = 0; i < kTableRecords; ++i) ASSERT_TRUE(put());
      ASSERT_TRUE((*store)->db()->Flush({}, (*store)->family(kFamily)).ok());
      if (run == 1) {
        for (int i = 0; i < kLogRecords; ++i) ASSERT_TRUE(put());
      }
    }
  }

  static rocksdb::WriteOptions Synced() {
    rocksdb::WriteOptions options;
    options.sync = true;
    return options;
  }

  // Whether `store` holds record `i`.
  static bool Holds(Store& store, int i) {
    std::string value;
    return store.db()
        ->Get(rocksdb::ReadOptions(), store.family(kFamily), Key(i), &value)
        .ok();
  }

  TempDir dir_;
};

TEST_F(StoreCorruptionTest, EveryDamageIsRefusedWithOneLineSayingWhatToDo) {
  for (Damage damage : AllDamage()) {
    SCOPED_TRACE(DamageName(damage));
    TempDir copy;
    fs::copy(dir_.path(), copy.path(), fs::copy_options::recursive);
    ASSERT_THAT(ApplyDamage(copy.path(), damage), IsOk());
    EXPECT_THAT(
        Store::Open(copy.path(), Options()),
        StatusIs(absl::StatusCode::kDataLoss,
                 AllOf(HasSubstr(absl::StrCat("data directory ", copy.path(),
                                              " is damaged")),
                       HasSubstr("refusing to serve it"),
                       HasSubstr("restore it from a backup"),
                       Not(HasSubstr("\n")))));
  }
}

TEST_F(StoreCorruptionTest, ALogRecordTornByACrashIsLostAndTheRestKept) {
  // A crash in the middle of the last write leaves a partial record: that
  // write was never acknowledged, so losing it is expected.
  fs::path log;
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    if (entry.path().extension() == ".log" && entry.file_size() > 0) {
      log = entry.path();
    }
  }
  ASSERT_FALSE(log.empty());
  fs::resize_file(log, fs::file_size(log) - 5);

  auto store = Store::Open(dir_.path(), Options());
  ASSERT_THAT(store, IsOk());
  for (int i = 0; i < kRecords - 1; ++i) {
    ASSERT_TRUE(Holds(**store, i)) << i;
  }
  EXPECT_FALSE(Holds(**store, kRecords - 1));
}

TEST(StoreCreationTest, ACreationCutShortIsCompletedOnTheNextOpen) {
  // RocksDB had written some files but not CURRENT when the process died.
  TempDir without_current;
  std::ofstream(without_current.Sub("IDENTITY")) << "f00dfeed\n";
  std::ofstream(without_current.Sub("MANIFEST-000001"));
  EXPECT_THAT(Store::Open(without_current.path(), Options()), IsOk());

  // The database was created, its records not written yet.
  TempDir without_records;
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, without_records.path(), &raw).ok());
    delete raw;
  }
  EXPECT_THAT(Store::Open(without_records.path(), Options()), IsOk());
}

TEST(StoreCreationTest, ADatabaseHoldingDataWithoutItsRecordsIsRefused) {
  TempDir without_meta;
  PutRaw(without_meta.path(), rocksdb::kDefaultColumnFamilyName, "k", "v");
  EXPECT_THAT(Store::Open(without_meta.path(), Options()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("holds data but no format record")));

  TempDir without_format;
  PutRaw(without_format.path(), "meta", "k", "v");
  EXPECT_THAT(Store::Open(without_format.path(), Options()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("holds data but no format record")));
}

TEST_F(StoreCorruptionTest, AFamilyLostSinceTheLastOpenIsRefused) {
  // As if the MANIFEST had lost the family: drop it behind twopc's back.
  PutRaw(dir_.path(), "meta", "unrelated", "x");
  {
    rocksdb::Options options;
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(options, dir_.path(), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const std::string& name : names) families.emplace_back(name, options);
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(options, dir_.path(), families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      if (handle->GetName() == kFamily) {
        ASSERT_TRUE(db->DropColumnFamily(handle).ok());
      }
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
    }
  }
  EXPECT_THAT(Store::Open(dir_.path(), Options()),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("lost the column family 'records'")));
}

TEST_F(StoreCorruptionTest, AnOverwrittenFormatOrRoleRecordIsRefused) {
  PutRaw(dir_.path(), "meta", "format", "twopc-store-\xff");
  EXPECT_THAT(Store::Open(dir_.path(), Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(dir_.path()),
                             HasSubstr("has format 'twopc-store-\\xff'"))));

  PutRaw(dir_.path(), "meta", "format", "twopc-store-1");
  PutRaw(dir_.path(), "meta", "role", "coordinatox");
  EXPECT_THAT(Store::Open(dir_.path(), Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("belongs to a twopc coordinatox")));
}

}  // namespace
}  // namespace twopc::storage
