// Store: a twopc data directory, i.e. one RocksDB database opened with
// twopc's options and a fixed set of column families.
//
// Every data directory records its format version and its role (the binary
// that owns it). Opening a directory written by another role or format fails
// instead of serving it, as does a damaged directory: a corrupt or missing
// MANIFEST/CURRENT/table file, a table whose checksums do not match (every
// table is read once at open to verify them), a write-ahead log damaged
// anywhere but in its last record (a record torn by a crash was never
// acknowledged, since every write that matters is synced; losing it is
// expected), or a database that lost its format record or one of its column
// families.
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_STORAGE_STORE_H_
#define TWOPC_STORAGE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "rocksdb/db.h"

namespace twopc::storage {

// Converts a RocksDB status; `context` prefixes the message.
absl::Status FromRocksDb(const rocksdb::Status& status,
                         absl::string_view context);

class Store {
 public:
  struct Options {
    // Who owns the directory, e.g. "coordinator" or "participant".
    std::string role;
    // Column families besides "default" and the reserved "meta".
    std::vector<std::string> column_families;
    // Those of column_families that are written while running but read only
    // by iterating when opening (e.g. the sidecar's branch records). They get
    // RocksDB's vector memtable: an insert is an append, where a skip-list
    // insert cost ~2 us of cache misses (~10% of a sidecar's CPU per
    // transaction, `twopc-bench txn`), and the memtable is sorted once, when
    // it is flushed or iterated. A point read of such a family scans its
    // whole memtable: do not Get from it.
    std::vector<std::string> scan_only_families = {};
  };

  // Opens the store in `dir`, creating it when `dir` is missing or holds no
  // database yet. Reads every table file (start-up time grows with the
  // data).
  // OK; FAILED_PRECONDITION: `dir` belongs to another role or format;
  // DATA_LOSS: the directory is damaged (the one-line message names it and
  // says what to do); other codes: I/O errors.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir,
                                                     const Options& options);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  const std::string& dir() const { return dir_; }

  // The handle of a column family named in Options (or "default").
  // REQUIRES: `name` was named in Options. Owned by the Store.
  rocksdb::ColumnFamilyHandle* family(absl::string_view name) const;

  // Adds one to the durable counter `name` and returns the new value (1 on
  // first use). The increment is synced to disk before this returns.
  absl::StatusOr<uint64_t> IncrementCounter(absl::string_view name);

  // Small named values kept with the store's metadata. Put is synced.
  // Get returns nullopt when `name` was never put.
  absl::Status PutMeta(absl::string_view name, absl::string_view value);
  absl::StatusOr<absl::optional<std::string>> GetMeta(absl::string_view name);

 private:
  Store(std::string dir, std::unique_ptr<rocksdb::DB> db,
        std::vector<rocksdb::ColumnFamilyHandle*> handles);

  // Writes the format, role and column-family records of a store that
  // holds no data yet.
  absl::Status Initialize(const std::string& role,
                          const std::vector<std::string>& families);
  // Checks those records of a store that holds data: `families` are the
  // column families open now, `on_disk` those that existed before.
  absl::Status CheckMetadata(const std::string& role,
                             const std::vector<std::string>& families,
                             const std::vector<std::string>& on_disk);

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // owned; closed in dtor
};

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_STORE_H_
