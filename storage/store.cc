#include "storage/store.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "rocksdb/memtablerep.h"
#include "storage/coding.h"

namespace twopc::storage {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kFormatKey[] = "format";
constexpr char kRoleKey[] = "role";
// The column families created so far, comma-separated.
constexpr char kFamiliesKey[] = "families";
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
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  // Every write that must survive a crash is synced before it is
  // acknowledged, so a crash can only tear the record being written at the
  // end of the write-ahead log, which nobody was told about: losing it is
  // expected. A record damaged anywhere else is synced data, and opening must
  // fail. (The default, kPointInTimeRecovery, silently stops replaying at
  // the first bad record and drops every synced record after it.)
  options.wal_recovery_mode =
      rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  // The MANIFEST records each closed log and its deletion, so a MANIFEST
  // that lost its latest edits (e.g. truncated) no longer matches the logs
  // on disk and opening fails, instead of silently forgetting flushed data.
  options.track_and_verify_wals_in_manifest = true;
  // Small machine: two background threads, bounded memory.
  options.IncreaseParallelism(2);
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  return options;
}

// The one-line error for a directory that must not be served as it is.
absl::Status Damaged(const std::string& dir, absl::string_view problem) {
  return absl::DataLossError(absl::StrCat(
      "data directory ", dir, " is damaged (", problem,
      "); refusing to serve it. Keep a copy of it and restore it from a "
      "backup; starting with an empty directory instead would forget "
      "everything it holds"));
}

// Errors of RocksDB on an existing directory: damage says so.
absl::Status OpenError(const std::string& dir, const rocksdb::Status& status) {
  if (status.IsCorruption() || status.IsPathNotFound()) {
    return Damaged(dir, status.ToString());
  }
  return FromRocksDb(status, absl::StrCat("opening data directory ", dir));
}

// What the files of a data directory say before RocksDB opens it.
struct DirectoryState {
  // It has a CURRENT file: RocksDB opens what is there.
  bool has_database = false;
  // A table or a non-empty write-ahead log, the only files that hold data;
  // empty when there is none (nothing can be lost, e.g. after a crash while
  // the directory was being created).
  std::string data_file;
};

absl::StatusOr<DirectoryState> Inspect(const std::string& dir) {
  DirectoryState state;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::filesystem::path& path = entry.path();
    if (path.filename() == "CURRENT") state.has_database = true;
    if (path.extension() == ".sst" ||
        (path.extension() == ".log" && entry.file_size(ec) > 0)) {
      state.data_file = path.filename().string();
    }
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read data directory ", dir, ": ", ec.message()));
  }
  // RocksDB would create an empty database over the data.
  if (!state.has_database && !state.data_file.empty()) {
    return Damaged(dir, absl::StrCat("its CURRENT file is missing but it "
                                     "holds data, e.g. ",
                                     state.data_file));
  }
  return state;
}

// Lists the column families on disk into `on_disk`. One this binary does
// not know means another binary wrote the directory: opening would drop it.
absl::Status CheckFamiliesOnDisk(const std::string& dir,
                                 const DirectoryState& state,
                                 const std::vector<std::string>& wanted,
                                 std::vector<std::string>* on_disk) {
  if (!state.has_database) return absl::OkStatus();
  rocksdb::Status listed =
      rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, on_disk);
  if (!listed.ok()) return OpenError(dir, listed);
  for (const std::string& name : *on_disk) {
    if (std::find(wanted.begin(), wanted.end(), name) == wanted.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", dir, " holds column family '", name,
          "' that this binary does not know; was it written by a newer "
          "twopc or another tool?"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(CodeOf(status),
                      absl::StrCat(context, ": ", status.ToString()));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir,
                                                   const Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data directory ", dir, ": ", ec.message()));
  }
  ASSIGN_OR_RETURN(const DirectoryState state, Inspect(dir));
  std::vector<std::string> wanted = {rocksdb::kDefaultColumnFamilyName,
                                     kMetaFamily};
  wanted.insert(wanted.end(), options.column_families.begin(),
                options.column_families.end());
  std::vector<std::string> on_disk;
  RETURN_IF_ERROR(CheckFamiliesOnDisk(dir, state, wanted, &on_disk));

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : wanted) {
    rocksdb::ColumnFamilyOptions family_options;
    if (std::find(options.scan_only_families.begin(),
                  options.scan_only_families.end(),
                  name) != options.scan_only_families.end()) {
      family_options.memtable_factory =
          std::make_shared<rocksdb::VectorRepFactory>();
    }
    families.emplace_back(name, family_options);
  }
  rocksdb::Options db_options = BaseOptions();
  // The vector memtable takes one writer at a time.
  if (!options.scan_only_families.empty()) {
    db_options.allow_concurrent_memtable_write = false;
  }
  db_options.create_if_missing = !state.has_database;
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status opened =
      rocksdb::DB::Open(db_options, dir, families, &handles, &raw);
  if (!opened.ok()) return OpenError(dir, opened);
  std::unique_ptr<Store> store(
      new Store(dir, std::unique_ptr<rocksdb::DB>(raw), std::move(handles)));
  // Damage in a table would otherwise only show when a read reaches it.
  if (rocksdb::Status verified = raw->VerifyChecksum(); !verified.ok()) {
    return OpenError(dir, verified);
  }
  if (state.data_file.empty()) {
    RETURN_IF_ERROR(store->Initialize(options.role, wanted));
  } else {
    RETURN_IF_ERROR(store->CheckMetadata(options.role, wanted, on_disk));
  }
  return store;
}

absl::Status Store::Initialize(const std::string& role,
                               const std::vector<std::string>& families) {
  rocksdb::ColumnFamilyHandle* meta = family(kMetaFamily);
  rocksdb::WriteBatch batch;
  batch.Put(meta, kFormatKey, kFormat);
  batch.Put(meta, kRoleKey, role);
  batch.Put(meta, kFamiliesKey, absl::StrJoin(families, ","));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocksDb(db_->Write(sync, &batch),
                     absl::StrCat("initializing data directory ", dir_));
}

absl::Status Store::CheckMetadata(const std::string& role,
                                  const std::vector<std::string>& families,
                                  const std::vector<std::string>& on_disk) {
  rocksdb::ColumnFamilyHandle* meta = family(kMetaFamily);
  std::string format, stored_role, recorded;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta, kFormatKey, &format);
  if (s.IsNotFound()) {
    return Damaged(dir_, "it holds data but no format record");
  }
  RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("reading format of ", dir_)));
  if (format != kFormat) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir_, " has format '", absl::CHexEscape(format),
        "', this binary reads '", kFormat,
        "': use the twopc version that wrote it, or restore the directory "
        "from a backup if it is damaged"));
  }
  RETURN_IF_ERROR(FromRocksDb(
      db_->Get(rocksdb::ReadOptions(), meta, kRoleKey, &stored_role),
      absl::StrCat("reading role of ", dir_)));
  if (stored_role != role) {
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", dir_, " belongs to a twopc ",
                     absl::CHexEscape(stored_role), ", not a twopc ", role,
                     "; use a separate --data_dir"));
  }
  // Every family created before must still be there; new ones are added.
  s = db_->Get(rocksdb::ReadOptions(), meta, kFamiliesKey, &recorded);
  if (!s.IsNotFound()) {
    RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("reading families of ", dir_)));
  }
  for (absl::string_view name :
       absl::StrSplit(recorded, ',', absl::SkipEmpty())) {
    if (std::find(on_disk.begin(), on_disk.end(), name) == on_disk.end()) {
      return Damaged(dir_, absl::StrCat("its MANIFEST lost the column family '",
                                        name, "'"));
    }
  }
  const std::string current = absl::StrJoin(families, ",");
  if (recorded == current) return absl::OkStatus();
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocksDb(db_->Put(sync, meta, kFamiliesKey, current),
                     absl::StrCat("recording the families of ", dir_));
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
