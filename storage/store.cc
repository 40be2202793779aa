#include "storage/store.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/coding.h"

namespace twopc::storage {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kFormatKey[] = "format";
constexpr char kRoleKey[] = "role";
constexpr char kCounterPrefix[] = "counter/";
constexpr char kValuePrefix[] = "value/";
constexpr char kFormat[] = "twopc-store-1";

absl::StatusCode CodeOf(const rocksdb::Status& status) {
  switch (status.code()) {
    case rocksdb::Status::kOk:
      return absl::StatusCode::kOk;
    case rocksdb::Status::kNotFound:
      return absl::StatusCode::kNotFound;
    case rocksdb::Status::kCorruption:
      return absl::StatusCode::kDataLoss;
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kTimedOut:
      return absl::StatusCode::kUnavailable;
    case rocksdb::Status::kIOError:
      return status.IsNoSpace() ? absl::StatusCode::kResourceExhausted
                                : absl::StatusCode::kInternal;
    default:
      return absl::StatusCode::kInternal;
  }
}

rocksdb::Options BaseOptions() {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  // Small machine: two background threads, bounded memory.
  options.IncreaseParallelism(2);
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  return options;
}

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status), absl::StrCat(context, ": ", status.ToString()));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir,
                                                   const Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create data directory ", dir, ": ", ec.message()));
  }

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName,
                        rocksdb::ColumnFamilyOptions());
  families.emplace_back(kMetaFamily, rocksdb::ColumnFamilyOptions());
  for (const std::string& name : options.column_families) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }

  // Refuse to silently drop column families that exist on disk but are not
  // named: that would mean a newer or different binary wrote this directory.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &existing)
          .ok()) {
    for (const std::string& name : existing) {
      bool known = false;
      for (const auto& family : families) known |= family.name == name;
      if (!known) {
        return absl::FailedPreconditionError(absl::StrCat(
            "data directory ", dir, " holds column family '", name,
            "' that this binary does not know; was it written by a newer "
            "twopc or another tool?"));
      }
    }
  }

  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  RETURN_IF_ERROR(FromRocksDb(
      rocksdb::DB::Open(BaseOptions(), dir, families, &handles, &raw),
      absl::StrCat("opening data directory ", dir)));
  std::unique_ptr<Store> store(
      new Store(dir, std::unique_ptr<rocksdb::DB>(raw), std::move(handles)));

  // Check (or, on first open, record) format and role.
  rocksdb::ColumnFamilyHandle* meta = store->family(kMetaFamily);
  std::string format, role;
  rocksdb::Status s = raw->Get(rocksdb::ReadOptions(), meta, kFormatKey, &format);
  if (s.IsNotFound()) {
    rocksdb::WriteBatch batch;
    batch.Put(meta, kFormatKey, kFormat);
    batch.Put(meta, kRoleKey, options.role);
    rocksdb::WriteOptions sync;
    sync.sync = true;
    RETURN_IF_ERROR(FromRocksDb(raw->Write(sync, &batch),
                                absl::StrCat("initializing ", dir)));
    return store;
  }
  RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("reading format of ", dir)));
  if (format != kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", dir, " has format '", format,
                     "', this binary reads '", kFormat, "'"));
  }
  RETURN_IF_ERROR(FromRocksDb(
      raw->Get(rocksdb::ReadOptions(), meta, kRoleKey, &role),
      absl::StrCat("reading role of ", dir)));
  if (role != options.role) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir, " belongs to a twopc ", role,
        ", not a twopc ", options.role, "; use a separate --data_dir"));
  }
  return store;
}

Store::Store(std::string dir, std::unique_ptr<rocksdb::DB> db,
             std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : dir_(std::move(dir)), db_(std::move(db)), handles_(std::move(handles)) {}

Store::~Store() {
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle);
  }
  db_->Close().PermitUncheckedError();
}

rocksdb::ColumnFamilyHandle* Store::family(absl::string_view name) const {
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    if (handle->GetName() == name) return handle;
  }
  return nullptr;
}

absl::StatusOr<uint64_t> Store::IncrementCounter(absl::string_view name) {
  // Counters are rare (one per process start); a plain read-modify-write is
  // enough because each counter has a single owner process.
  rocksdb::ColumnFamilyHandle* meta = family(kMetaFamily);
  const std::string key = absl::StrCat(kCounterPrefix, name);
  std::string value;
  uint64_t current = 0;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta, key, &value);
  if (s.ok()) {
    if (value.size() != sizeof(uint64_t)) {
      return absl::DataLossError(
          absl::StrCat("counter ", name, " in ", dir_, " is corrupt"));
    }
    current = DecodeFixed64BE(value);
  } else if (!s.IsNotFound()) {
    return FromRocksDb(s, absl::StrCat("reading counter ", name));
  }
  std::string encoded;
  PutFixed64BE(&encoded, current + 1);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(FromRocksDb(db_->Put(sync, meta, key, encoded),
      absl::StrCat("writing counter ", name)));
  return current + 1;
}

absl::Status Store::PutMeta(absl::string_view name, absl::string_view value) {
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocksDb(
      db_->Put(sync, family(kMetaFamily), absl::StrCat(kValuePrefix, name),
               rocksdb::Slice(value.data(), value.size())),
      absl::StrCat("writing ", name));
}

absl::StatusOr<absl::optional<std::string>> Store::GetMeta(
    absl::string_view name) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), family(kMetaFamily),
                               absl::StrCat(kValuePrefix, name), &value);
  if (s.IsNotFound()) return absl::nullopt;
  RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("reading ", name)));
  return value;
}

}  // namespace twopc::storage
