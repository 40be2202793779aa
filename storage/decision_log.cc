#include "storage/decision_log.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/transaction_id.h"
#include "google/protobuf/util/time_util.h"
#include "storage/coding.h"

namespace twopc::storage {
namespace {

// 16 bytes: epoch and sequence, big-endian, so keys sort in creation order.
std::string RecordKey(const TransactionId& id) {
  std::string key;
  PutFixed64BE(&key, id.epoch);
  PutFixed64BE(&key, id.sequence);
  return key;
}

absl::optional<std::string> RecordKey(const std::string& transaction_id) {
  absl::optional<TransactionId> id = TransactionId::Parse(transaction_id);
  if (!id.has_value()) return absl::nullopt;
  return RecordKey(*id);
}

bool IsFinal(v1::TransactionState state) {
  return state == v1::TRANSACTION_STATE_COMMITTED ||
         state == v1::TRANSACTION_STATE_ABORTED;
}

}  // namespace

DecisionLog::DecisionLog(Store* store, GroupCommitWriter* writer,
                         PartitionLogs* queues)
    : store_(store),
      writer_(writer),
      queues_(queues),
      records_(store->family(kRecordsFamily)),
      keys_(store->family(kKeysFamily)) {}

void DecisionLog::Append(const internal::TransactionRecord& record,
                         bool index_key, GroupCommitWriter::Done done) {
  // Serialise now, on the caller's thread, so the record written is the one
  // the caller had at this moment.
  auto key = RecordKey(record.transaction_id());
  auto value = std::make_shared<std::string>(record.SerializeAsString());
  std::string idempotency_key = index_key ? record.idempotency_key() : "";
  std::string id = record.transaction_id();
  writer_->Submit(
      [this, key = *key, value, idempotency_key = std::move(idempotency_key),
       id = std::move(id)](rocksdb::WriteBatch& batch) {
        batch.Put(records_, key, *value);
        if (!idempotency_key.empty()) batch.Put(keys_, idempotency_key, id);
      },
      std::move(done));
}

void DecisionLog::AppendCommit(const internal::TransactionRecord& record,
                               bool index_key, CommitDone done) {
  auto key = RecordKey(record.transaction_id());
  auto pending = std::make_shared<internal::TransactionRecord>(record);
  writer_->Submit(
      [this, key = *key, pending, index_key](rocksdb::WriteBatch& batch) {
        // On the writer thread, in durability order: offsets taken here
        // follow commit order.
        pending->clear_message_positions();
        for (const v1::Message& message : pending->messages()) {
          v1::QueueMessage queued;
          queued.set_key(message.key());
          queued.set_value(message.value());
          *queued.mutable_headers() = message.headers();
          queued.set_transaction_id(pending->transaction_id());
          *queued.mutable_commit_time() =
              google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
                  pending->decide_time_us());
          v1::MessagePosition* position = pending->add_message_positions();
          position->set_topic(message.topic());
          position->set_partition(message.partition());
          position->set_offset(queues_->Append(batch, message.topic(),
                                               message.partition(), queued));
        }
        pending->clear_messages();
        batch.Put(records_, key, pending->SerializeAsString());
        if (index_key && !pending->idempotency_key().empty()) {
          batch.Put(keys_, pending->idempotency_key(),
                    pending->transaction_id());
        }
      },
      [pending, done = std::move(done)](const absl::Status& status) {
        std::vector<v1::MessagePosition> positions(
            pending->message_positions().begin(),
            pending->message_positions().end());
        done(status, positions);
      });
}

absl::StatusOr<absl::optional<internal::TransactionRecord>> DecisionLog::Read(
    const std::string& transaction_id) const {
  absl::optional<std::string> key = RecordKey(transaction_id);
  if (!key.has_value()) return absl::nullopt;
  std::string value;
  rocksdb::Status s =
      store_->db()->Get(rocksdb::ReadOptions(), records_, *key, &value);
  if (s.IsNotFound()) return absl::nullopt;
  if (!s.ok()) return FromRocksDb(s, "reading transaction record");
  internal::TransactionRecord record;
  if (!record.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("transaction record ", transaction_id, " is corrupt"));
  }
  return record;
}

absl::StatusOr<absl::optional<std::string>> DecisionLog::FindByIdempotencyKey(
    const std::string& key) const {
  std::string id;
  rocksdb::Status s = store_->db()->Get(rocksdb::ReadOptions(), keys_, key, &id);
  if (s.IsNotFound()) return absl::nullopt;
  if (!s.ok()) return FromRocksDb(s, "reading idempotency key");
  return id;
}

absl::Status DecisionLog::ForEach(
    const std::function<void(internal::TransactionRecord)>& visit) const {
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), records_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    internal::TransactionRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "decision log in ", store_->dir(),
          " holds a corrupt transaction record; refusing to guess its outcome"));
    }
    visit(std::move(record));
  }
  return FromRocksDb(it->status(), "scanning the decision log");
}

absl::Status DecisionLog::ForEachNewestFirst(
    const std::string& before_id,
    const std::function<bool(internal::TransactionRecord)>& visit) const {
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), records_));
  if (before_id.empty()) {
    it->SeekToLast();
  } else {
    absl::optional<std::string> key = RecordKey(before_id);
    if (!key) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", before_id, "' is not a transaction id"));
    }
    it->SeekForPrev(*key);
    if (it->Valid() && it->key() == *key) it->Prev();
  }
  for (; it->Valid(); it->Prev()) {
    internal::TransactionRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "decision log in ", store_->dir(), " holds a corrupt record at ",
          it->key().ToString(true)));
    }
    if (!visit(std::move(record))) break;
  }
  return FromRocksDb(it->status(), "scanning the decision log");
}

absl::StatusOr<int> DecisionLog::Compact(
    absl::Time cutoff,
    const std::function<absl::Status(const std::string& newest_id)>&
        before_delete) {
  const int64_t cutoff_us = absl::ToUnixMicros(cutoff);
  std::unique_ptr<rocksdb::Iterator> it(
      store_->db()->NewIterator(rocksdb::ReadOptions(), records_));
  std::vector<rocksdb::WriteBatch> writes;
  int in_last_write = kMaxDeletedPerWrite;
  int deleted = 0;
  std::string newest;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    internal::TransactionRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      continue;  // leave it for an operator; ForEach reports it
    }
    // Records are in creation order: nothing created after the cutoff can
    // have finished before it.
    if (record.create_time_us() >= cutoff_us) break;
    if (!IsFinal(record.state()) || record.finish_time_us() >= cutoff_us) {
      continue;
    }
    if (in_last_write == kMaxDeletedPerWrite) {
      writes.emplace_back();
      in_last_write = 0;
    }
    writes.back().Delete(records_, it->key());
    if (!record.idempotency_key().empty()) {
      writes.back().Delete(keys_, record.idempotency_key());
    }
    newest = record.transaction_id();
    ++in_last_write;
    ++deleted;
  }
  if (!it->status().ok()) return FromRocksDb(it->status(), "compacting");
  if (deleted == 0) return 0;
  RETURN_IF_ERROR(before_delete(newest));
  for (rocksdb::WriteBatch& write : writes) {
    RETURN_IF_ERROR(
        FromRocksDb(store_->db()->Write(rocksdb::WriteOptions(), &write),
                    "compacting the decision log"));
  }
  return deleted;
}

}  // namespace twopc::storage
