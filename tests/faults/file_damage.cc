#include "tests/faults/file_damage.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace twopc::testing {
namespace {

namespace fs = std::filesystem;

// The largest non-empty file in `dir` whose name starts with `prefix` and
// ends with `suffix`; empty when there is none.
fs::path LargestFile(const std::string& dir, const std::string& prefix,
                     const std::string& suffix) {
  fs::path largest;
  uintmax_t largest_size = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, suffix)) {
      continue;
    }
    if (entry.file_size() > largest_size) {
      largest = entry.path();
      largest_size = entry.file_size();
    }
  }
  return largest;
}

void Overwrite(const fs::path& path, uintmax_t offset,
               const std::string& bytes) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// RocksDB log files (write-ahead logs, MANIFEST) are records in 32 KiB
// blocks, each record a 7-byte header (checksum, length, type) and payload.
constexpr uintmax_t kLogBlockBytes = 32 * 1024;
constexpr uintmax_t kRecordHeaderBytes = 7;
constexpr int kFullRecord = 1;
constexpr int kFirstFragment = 2;

// Where the last record (or the first fragment of the last record) of the
// RocksDB log file `path` starts.
uintmax_t LastRecordStart(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)),
                          std::istreambuf_iterator<char>());
  uintmax_t last = 0;
  uintmax_t offset = 0;
  while (offset + kRecordHeaderBytes <= bytes.size()) {
    const uintmax_t left_in_block = kLogBlockBytes - offset % kLogBlockBytes;
    if (left_in_block < kRecordHeaderBytes) {  // block trailer padding
      offset += left_in_block;
      continue;
    }
    const auto length = static_cast<uintmax_t>(
        static_cast<unsigned char>(bytes[offset + 4]) |
        static_cast<unsigned char>(bytes[offset + 5]) << 8);
    const int type = static_cast<unsigned char>(bytes[offset + 6]);
    if (type == kFullRecord || type == kFirstFragment) last = offset;
    offset += kRecordHeaderBytes + length;
  }
  return last;
}

// A table starts with its first data block, whose checksum is only read
// with the block.
constexpr uintmax_t kInsideFirstDataBlock = 8;

// 16 bytes no RocksDB file holds by chance.
const std::string& Garbage() {
  static const std::string* const garbage = new std::string(16, '\xa5');
  return *garbage;
}

}  // namespace

std::vector<Damage> AllDamage() {
  return {Damage::kCurrentOverwritten,   Damage::kCurrentEmptied,
          Damage::kCurrentRemoved,       Damage::kManifestHalved,
          Damage::kManifestLastEditLost, Damage::kManifestOverwritten,
          Damage::kTableTruncated,       Damage::kTableOverwritten,
          Damage::kLogRecordDamaged};
}

std::string DamageName(Damage damage) {
  switch (damage) {
    case Damage::kCurrentOverwritten:
      return "CurrentOverwritten";
    case Damage::kCurrentEmptied:
      return "CurrentEmptied";
    case Damage::kCurrentRemoved:
      return "CurrentRemoved";
    case Damage::kManifestHalved:
      return "ManifestHalved";
    case Damage::kManifestLastEditLost:
      return "ManifestLastEditLost";
    case Damage::kManifestOverwritten:
      return "ManifestOverwritten";
    case Damage::kTableTruncated:
      return "TableTruncated";
    case Damage::kTableOverwritten:
      return "TableOverwritten";
    case Damage::kLogRecordDamaged:
      return "LogRecordDamaged";
  }
  return "unknown";
}

absl::Status ApplyDamage(const std::string& dir, Damage damage) {
  const bool current = damage == Damage::kCurrentOverwritten ||
                       damage == Damage::kCurrentEmptied ||
                       damage == Damage::kCurrentRemoved;
  const bool manifest = damage == Damage::kManifestHalved ||
                        damage == Damage::kManifestLastEditLost ||
                        damage == Damage::kManifestOverwritten;
  const bool table =
      damage == Damage::kTableTruncated || damage == Damage::kTableOverwritten;
  const fs::path file = current    ? LargestFile(dir, "CURRENT", "")
                        : manifest ? LargestFile(dir, "MANIFEST-", "")
                        : table    ? LargestFile(dir, "", ".sst")
                                   : LargestFile(dir, "", ".log");
  if (file.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " has no file to damage for ", DamageName(damage)));
  }
  const uintmax_t size = fs::file_size(file);
  switch (damage) {
    case Damage::kCurrentOverwritten:
      std::ofstream(file, std::ios::trunc) << "MANIFEST-999999\n";
      break;
    case Damage::kCurrentEmptied:
      fs::resize_file(file, 0);
      break;
    case Damage::kCurrentRemoved:
      fs::remove(file);
      break;
    case Damage::kManifestHalved:
    case Damage::kTableTruncated:
      fs::resize_file(file, size / 2);
      break;
    case Damage::kManifestLastEditLost:
      fs::resize_file(file, LastRecordStart(file));
      break;
    case Damage::kManifestOverwritten:
      Overwrite(file, size / 2, Garbage());
      break;
    case Damage::kTableOverwritten:
      Overwrite(file, kInsideFirstDataBlock, Garbage());
      break;
    case Damage::kLogRecordDamaged: {
      // Past the record header and the batch header (sequence and count,
      // 12 bytes): the first entry's tag.
      constexpr uintmax_t kFirstEntry = kRecordHeaderBytes + 12;
      std::fstream log(file, std::ios::in | std::ios::out | std::ios::binary);
      log.seekg(kFirstEntry);
      const char tag = static_cast<char>(log.get() ^ 0xff);
      Overwrite(file, kFirstEntry, std::string(1, tag));
      break;
    }
  }
  return absl::OkStatus();
}

}  // namespace twopc::testing
