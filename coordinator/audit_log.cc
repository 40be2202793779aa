#include "coordinator/audit_log.h"

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "storage/coding.h"

namespace twopc::coordinator {
namespace {

constexpr uint32_t kDefaultPageSize = 50;
constexpr uint32_t kMaxPageSize = 1000;

std::string Key(uint64_t sequence) {
  std::string key;
  storage::PutFixed64BE(&key, sequence);
  return key;
}

absl::Status Corrupt(const storage::Store& store) {
  return absl::DataLossError(absl::StrCat("the audit log in ", store.dir(),
                                          " holds an unreadable record"));
}

}  // namespace

AuditLog::AuditLog(storage::Store* store, uint64_t next_sequence)
    : store_(store),
      family_(store->family(kFamily)),
      next_sequence_(next_sequence) {}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    storage::Store* store) {
  std::unique_ptr<rocksdb::Iterator> it(store->db()->NewIterator(
      rocksdb::ReadOptions(), store->family(kFamily)));
  it->SeekToLast();
  uint64_t next = 1;
  if (it->Valid()) {
    if (it->key().size() != 8) return Corrupt(*store);
    next = storage::DecodeFixed64BE(
               absl::string_view(it->key().data(), it->key().size())) +
           1;
  }
  if (!it->status().ok()) {
    return storage::FromRocksDb(it->status(), "reading the audit log");
  }
  return std::unique_ptr<AuditLog>(new AuditLog(store, next));
}

absl::Status AuditLog::Append(const v1::AuditRecord& record) {
  rocksdb::WriteBatch batch;
  Add(record, batch);
  rocksdb::WriteOptions options;
  options.sync = true;
  return storage::FromRocksDb(store_->db()->Write(options, &batch),
                              "writing the audit log");
}

void AuditLog::Add(const v1::AuditRecord& record, rocksdb::WriteBatch& batch) {
  uint64_t sequence = 0;
  {
    absl::MutexLock lock(&mu_);
    sequence = next_sequence_++;
  }
  batch.Put(family_, Key(sequence), record.SerializeAsString())
      .PermitUncheckedError();
}

absl::StatusOr<v1::ListAuditRecordsResponse> AuditLog::List(
    const v1::ListAuditRecordsRequest& request) const {
  if (request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is at most ", kMaxPageSize));
  }
  const uint32_t limit =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  uint64_t before = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &before)) {
    return absl::InvalidArgumentError(
        "page_token must come from a previous ListAuditRecords response");
  }
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), family_));
  if (before == 0) {
    it->SeekToLast();
  } else {
    it->SeekForPrev(Key(before - 1));
  }
  v1::ListAuditRecordsResponse response;
  for (; it->Valid(); it->Prev()) {
    if (response.records_size() == static_cast<int>(limit)) {
      response.set_next_page_token(absl::StrCat(storage::DecodeFixed64BE(
          absl::string_view(it->key().data(), it->key().size())) + 1));
      break;
    }
    if (!response.add_records()->ParseFromArray(
            it->value().data(), static_cast<int>(it->value().size()))) {
      return Corrupt(*store_);
    }
  }
  if (!it->status().ok()) {
    return storage::FromRocksDb(it->status(), "reading the audit log");
  }
  return response;
}

absl::StatusOr<std::vector<v1::AuditRecord>> AuditLog::ForTarget(
    const std::string& target) const {
  std::vector<v1::AuditRecord> result;
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), family_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    v1::AuditRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return Corrupt(*store_);
    }
    if (record.target() == target) result.push_back(std::move(record));
  }
  if (!it->status().ok()) {
    return storage::FromRocksDb(it->status(), "reading the audit log");
  }
  return result;
}

}  // namespace twopc::coordinator
