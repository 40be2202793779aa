#include "participant/rocksdb_branch_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "common/status_macros.h"
#include "storage/coding.h"

namespace twopc::participant {
namespace {

constexpr char kBranchesFamily[] = "branches";
constexpr char kKvFamily[] = "kv";
constexpr char kEpochKey[] = "highest_coordinator_epoch";

// A Put or Delete prepared outside the writer thread, so `fill` only copies.
struct Op {
  rocksdb::ColumnFamilyHandle* family;
  std::string key;
  std::optional<std::string> value;  // nullopt = delete
};

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbBranchStore>> RocksDbBranchStore::Open(
    const std::string& dir) {
  ASSIGN_OR_RETURN(
      auto store,
      storage::Store::Open(dir, {.role = "participant",
                                 .column_families = {kBranchesFamily, kKvFamily},
                                 // Branch records are only read by Recover.
                                 .scan_only_families = {kBranchesFamily}}));
  return std::unique_ptr<RocksDbBranchStore>(
      new RocksDbBranchStore(std::move(store)));
}

RocksDbBranchStore::RocksDbBranchStore(std::unique_ptr<storage::Store> store)
    : store_(std::move(store)),
      branches_(store_->family(kBranchesFamily)),
      kv_(store_->family(kKvFamily)),
      writer_(new storage::GroupCommitWriter(store_->db())) {}

RocksDbBranchStore::~RocksDbBranchStore() {
  delete writer_;  // writes everything queued first
  store_.reset();
}

void RocksDbBranchStore::Write(StoreBatch batch, Done done) {
  auto ops = std::make_shared<std::vector<Op>>();
  ops->reserve(batch.records.size() + batch.forget.size() + batch.kv.size() + 1);
  if (batch.highest_epoch.has_value()) NoteEpoch(*batch.highest_epoch);
  for (auto& [transaction_id, record] : batch.records) {
    ops->push_back({branches_, transaction_id, record.SerializeAsString()});
  }
  for (std::string& transaction_id : batch.forget) {
    ops->push_back({branches_, std::move(transaction_id), std::nullopt});
  }
  for (KvWrite& write : batch.kv) {
    ops->push_back({kv_, std::move(*write.mutable_key()),
                    write.has_value()
                        ? std::optional<std::string>(std::move(*write.mutable_value()))
                        : std::nullopt});
  }
  writer_->Submit(
      [this, ops](rocksdb::WriteBatch& wb) {
        // On the writer thread, in submission order: the stored epoch only
        // grows, and every batch carries the highest noted so far.
        const uint64_t noted = noted_epoch_.load();
        if (noted > written_epoch_) {
          std::string encoded;
          storage::PutFixed64BE(&encoded, noted);
          wb.Put(store_->family(rocksdb::kDefaultColumnFamilyName), kEpochKey,
                 encoded)
              .PermitUncheckedError();
          written_epoch_ = noted;
        }
        for (const Op& op : *ops) {
          if (op.value.has_value()) {
            wb.Put(op.family, op.key, *op.value).PermitUncheckedError();
          } else {
            wb.Delete(op.family, op.key).PermitUncheckedError();
          }
        }
      },
      std::move(done));
}

void RocksDbBranchStore::NoteEpoch(uint64_t epoch) {
  uint64_t current = noted_epoch_.load();
  while (epoch > current && !noted_epoch_.compare_exchange_weak(current, epoch)) {
  }
}

absl::StatusOr<RecoveredState> RocksDbBranchStore::Recover() {
  RecoveredState state;
  std::string epoch;
  rocksdb::Status s =
      store_->db()->Get(rocksdb::ReadOptions(),
                        store_->family(rocksdb::kDefaultColumnFamilyName),
                        kEpochKey, &epoch);
  if (s.ok()) {
    if (epoch.size() != 8) {
      return absl::DataLossError(
          absl::StrCat("corrupt epoch record in ", store_->dir()));
    }
    state.highest_epoch = storage::DecodeFixed64BE(epoch);
    written_epoch_ = state.highest_epoch;
    NoteEpoch(state.highest_epoch);
  } else if (!s.IsNotFound()) {
    return storage::FromRocksDb(s, "reading highest epoch");
  }
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), branches_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    BranchRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("corrupt branch record '",
                                              it->key().ToString(), "' in ",
                                              store_->dir()));
    }
    state.records.emplace_back(it->key().ToString(), std::move(record));
  }
  RETURN_IF_ERROR(storage::FromRocksDb(it->status(), "reading branch records"));
  return state;
}

absl::StatusOr<std::optional<std::string>> RocksDbBranchStore::Get(
    absl::string_view key) {
  std::string value;
  rocksdb::Status s = store_->db()->Get(
      rocksdb::ReadOptions(), kv_, rocksdb::Slice(key.data(), key.size()),
      &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_IF_ERROR(storage::FromRocksDb(s, "reading key"));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<std::vector<KvEntry>> RocksDbBranchStore::Scan(
    absl::string_view prefix, absl::string_view start_after, size_t limit,
    bool* more) {
  // A page also stops at this many bytes (at least one entry), so a scan of
  // large values cannot build a huge response.
  constexpr size_t kMaxPageBytes = 4 << 20;
  std::vector<KvEntry> entries;
  size_t bytes = 0;
  *more = false;
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), kv_));
  if (!start_after.empty() && start_after > prefix) {
    it->Seek(rocksdb::Slice(start_after.data(), start_after.size()));
    if (it->Valid() && it->key() == rocksdb::Slice(start_after.data(),
                                                   start_after.size())) {
      it->Next();
    }
  } else {
    it->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
  }
  for (; it->Valid(); it->Next()) {
    absl::string_view key(it->key().data(), it->key().size());
    if (!absl::StartsWith(key, prefix)) break;
    if (entries.size() == limit ||
        (!entries.empty() && bytes + key.size() + it->value().size() >
                                 kMaxPageBytes)) {
      *more = true;
      break;
    }
    bytes += key.size() + it->value().size();
    entries.push_back({std::string(key), it->value().ToString()});
  }
  RETURN_IF_ERROR(storage::FromRocksDb(it->status(), "scanning keys"));
  return entries;
}

}  // namespace twopc::participant
