#include "storage/store.h"

#include <filesystem>

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
