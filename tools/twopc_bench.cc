// twopc-bench: load generator and benchmark.
//
// Today it measures the machine's storage ceiling: synced RocksDB writes per
// second from one thread, the bound on decisions/s without group commit.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"

namespace {

struct SyncCeiling {
  long writes = 0;
  double seconds = 0;
};

// Synced 100-byte puts from one thread for `duration`.
int MeasureSyncCeiling(const std::string& dir, absl::Duration duration,
                       SyncCeiling* result) {
  std::filesystem::remove_all(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    std::fprintf(stderr, "twopc-bench: opening %s: %s\n", dir.c_str(),
                 s.ToString().c_str());
    return EXIT_FAILURE;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  const std::string value(100, 'v');
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  while (absl::Now() < end) {
    s = db->Put(sync, absl::StrCat("k", result->writes), value);
    if (!s.ok()) {
      std::fprintf(stderr, "twopc-bench: write: %s\n", s.ToString().c_str());
      return EXIT_FAILURE;
    }
    ++result->writes;
  }
  result->seconds = absl::ToDoubleSeconds(absl::Now() - start);
  db.reset();
  std::filesystem::remove_all(dir);
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"twopc-bench: load generator and benchmark for twopc."};
  double seconds = 2;
  std::string dir = (std::filesystem::temp_directory_path() /
                     absl::StrCat("twopc-bench-", getpid()))
                        .string();
  bool json = false;
  app.add_option("--duration", seconds, "seconds to measure")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--scratch_dir", dir, "scratch directory for storage tests")
      ->capture_default_str();
  app.add_flag("--json", json, "print results as JSON");
  CLI11_PARSE(app, argc, argv);

  SyncCeiling ceiling;
  if (int rc = MeasureSyncCeiling(dir, absl::Seconds(seconds), &ceiling)) {
    return rc;
  }
  const double rate = ceiling.writes / ceiling.seconds;
  if (json) {
    std::printf("{\"rocksdb_synced_writes_per_second\": %.1f}\n", rate);
  } else {
    std::printf("rocksdb synced writes, 1 thread: %.0f/s (%ld in %.2fs)\n",
                rate, ceiling.writes, ceiling.seconds);
  }
  return EXIT_SUCCESS;
}
