#include "tools/bench/sync_ceiling.h"

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rocksdb/db.h"
#include "tools/bench/interrupt.h"

namespace twopc::bench {

absl::StatusOr<double> MeasureSyncedWritesPerSecond(const std::string& dir,
                                                    absl::Duration duration) {
  std::filesystem::remove_all(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    return absl::InternalError(
        absl::StrCat("opening ", dir, ": ", s.ToString()));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  const std::string value(100, 'v');
  int64_t writes = 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  while (absl::Now() < end && !Interrupted()) {
    s = db->Put(sync, absl::StrCat("k", writes), value);
    if (!s.ok()) {
      return absl::InternalError(absl::StrCat("synced write: ", s.ToString()));
    }
    ++writes;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  db.reset();
  std::filesystem::remove_all(dir);
  return writes / seconds;
}

}  // namespace twopc::bench
