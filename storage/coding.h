// Order-preserving encodings for RocksDB keys and values.
#ifndef TWOPC_STORAGE_CODING_H_
#define TWOPC_STORAGE_CODING_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

namespace twopc::storage {

// Appends `value` as 8 big-endian bytes, so encoded keys sort numerically.
inline void PutFixed64BE(std::string* dst, uint64_t value) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  dst->append(buf, sizeof(buf));
}

// Decodes 8 big-endian bytes. REQUIRES: src.size() >= 8.
inline uint64_t DecodeFixed64BE(absl::string_view src) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) {
    value = (value << 8) | static_cast<unsigned char>(src[i]);
  }
  return value;
}

}  // namespace twopc::storage

#endif  // TWOPC_STORAGE_CODING_H_
