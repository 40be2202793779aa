// Damage to the files of a RocksDB data directory, as a failing disk or a
// careless hand would do it, for tests that check a damaged directory is
// refused rather than served.
#ifndef TWOPC_TESTS_FAULTS_FILE_DAMAGE_H_
#define TWOPC_TESTS_FAULTS_FILE_DAMAGE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace twopc::testing {

enum class Damage {
  kCurrentOverwritten,    // CURRENT names a MANIFEST that does not exist
  kCurrentEmptied,        // CURRENT truncated to 0 bytes
  kCurrentRemoved,        // CURRENT deleted (tables and logs remain)
  kManifestHalved,        // the MANIFEST cut to half its size
  kManifestLastEditLost,  // the MANIFEST loses its last record, as when a
                          // disk drops its last write: damage when that
                          // record is a flush's edit (its data is then only
                          // in a table the MANIFEST no longer lists); other
                          // edits can be lost harmlessly
  kManifestOverwritten,   // bytes in the middle of the MANIFEST replaced
  kTableTruncated,        // the largest table (.sst) cut to half its size
  kTableOverwritten,      // bytes in the first data block of the largest
                          // table replaced (found only by reading it)
  kLogRecordDamaged,      // one byte of the first record of the largest
                          // non-empty write-ahead log changed (bit rot),
                          // with synced records after it
};

// Every kind above, for tests that loop over them.
std::vector<Damage> AllDamage();
// "kManifestTruncated" -> "ManifestTruncated", for test output.
std::string DamageName(Damage damage);

// Applies `damage` to the data directory `dir`. FAILED_PRECONDITION when
// `dir` has no file of the kind to damage (e.g. no table yet).
absl::Status ApplyDamage(const std::string& dir, Damage damage);

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_FAULTS_FILE_DAMAGE_H_
