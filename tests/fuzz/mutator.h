// Mutator: seeded hostile edits of protobuf requests, for the bad-input
// tests (issue 7, item 5).
//
// Two kinds of edit:
//  * MutateMessage: structure-aware, through protobuf reflection. It picks a
//    field anywhere in the message (set or not, nested, repeated, map or
//    oneof member; setting a oneof member switches the case) and gives it a
//    hostile value: empty; sizes at and one past every documented limit;
//    invalid UTF-8 and control characters in strings; names of things that
//    exist (the dictionary: participants, topics, transaction ids, ...);
//    extreme and off-by-one numbers (which also makes Durations and
//    Timestamps zero, negative, huge or denormalised); unknown enum values;
//    thousands of repeated elements; duplicated or cleared elements.
//  * MutateBytes: wire-level edits of an encoding: truncation, bit flips,
//    random bytes, unknown or mistyped fields, a length prefix that lies,
//    concatenation. The result may or may not parse.
//
// Every edit appends a one-line description to the caller's log, so a
// failure can be reproduced by hand. The same seed and the same sequence of
// calls give the same edits.
//
// Thread-compatible.
#ifndef TWOPC_TESTS_FUZZ_MUTATOR_H_
#define TWOPC_TESTS_FUZZ_MUTATOR_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "google/protobuf/message.h"

namespace twopc::fuzz {

class Mutator {
 public:
  // `dictionary`: identifiers worth trying (they name existing things).
  Mutator(uint64_t seed, std::vector<std::string> dictionary);

  void set_dictionary(std::vector<std::string> dictionary) {
    dictionary_ = std::move(dictionary);
  }

  // Applies one to three structure-aware edits to `message`.
  void MutateMessage(google::protobuf::Message* message,
                     std::vector<std::string>* log);

  // Returns an edited copy of the encoding `bytes`.
  std::string MutateBytes(const std::string& bytes,
                          std::vector<std::string>* log);

  // Uniform in [0, n); REQUIRES: n > 0.
  size_t Below(size_t n);
  // True with probability 1/n.
  bool OneIn(size_t n) { return Below(n) == 0; }

 private:
  void MutateSomewhere(google::protobuf::Message* message,
                       const std::string& path, int depth,
                       std::vector<std::string>* log);
  void MutateField(google::protobuf::Message* message,
                   const google::protobuf::FieldDescriptor* field,
                   const std::string& path, std::vector<std::string>* log);
  void MutateRepeated(google::protobuf::Message* message,
                      const google::protobuf::FieldDescriptor* field,
                      const std::string& path, std::vector<std::string>* log);
  // Appends a copy of element `index` of repeated `field`.
  void AppendCopy(google::protobuf::Message* message,
                  const google::protobuf::FieldDescriptor* field, int index);
  // Sets (or, for a repeated field, appends) one hostile scalar value.
  void SetHostileScalar(google::protobuf::Message* message,
                        const google::protobuf::FieldDescriptor* field,
                        const std::string& path, std::vector<std::string>* log);
  std::string HostileString(bool is_bytes);
  int64_t HostileInt64(int64_t min, int64_t max);
  uint64_t HostileUint64(uint64_t max);
  int HostileEnum(const google::protobuf::FieldDescriptor* field);

  std::mt19937_64 rng_;
  std::vector<std::string> dictionary_;
};

// `value` shortened and escaped for a log line.
std::string Abbreviate(const std::string& value);

}  // namespace twopc::fuzz

#endif  // TWOPC_TESTS_FUZZ_MUTATOR_H_
