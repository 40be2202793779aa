#include "tests/fuzz/mutator.h"

#include <algorithm>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace twopc::fuzz {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Sizes at and one past the documented limits (identifiers 64/128, header
// keys 256, keys 1 KiB, header values 64 KiB, values and payloads 1 MiB,
// transactions 4 MiB, the 8 MiB gRPC message limit).
constexpr size_t kSizes[] = {1,       63,      64,     65,    127,     128,
                             129,     255,     256,    257,   1023,    1024,
                             1025,    65535,   65536,  65537, 1048575, 1048576,
                             1048577, 4194305, 8388609};

// Counts for repeated fields: at and past the limits (16 branches and
// labels, 64 headers, 1,000 messages/operations/ids, 1,024 partitions).
constexpr size_t kCounts[] = {2, 16, 17, 64, 65, 1000, 1001, 1025, 5000};

// The most a replicated field may add to a request (past the 8 MiB limit,
// but not by so much that a single call gets slow).
constexpr size_t kMaxGrowthBytes = 9 << 20;

// Strings that break naive parsing, escaping or validation.
const char* const kSpecialStrings[] = {
    " ",
    "\t\n",
    "a b",
    "../../etc/passwd",
    "%s%n%x",
    "-",
    ".",
    "..",
    "0",
    "-1",
    "1-1",
    "0-0",
    "1-0",
    "18446744073709551615-1",
    "1-18446744073709551615",
    "99999999999999999999-1",
    "\xc3\xa9",          // é, valid UTF-8 but not an identifier character
    "\xf0\x9f\x92\xa5",  // an emoji
    "\xff\xfe\xfd",      // invalid UTF-8
    "\xc0\xaf",          // overlong encoding
    "\xed\xa0\x80",      // a UTF-16 surrogate
};

const int64_t kInt64s[] = {0,
                           1,
                           -1,
                           2,
                           15,
                           16,
                           17,
                           30,
                           31,
                           63,
                           64,
                           65,
                           299,
                           300,
                           301,
                           999,
                           1000,
                           1001,
                           1023,
                           1024,
                           1025,
                           9999,
                           10000,
                           10001,
                           999999999,
                           1000000000,
                           1048576,
                           1048577,
                           4194304,
                           4194305,
                           315576000000,  // the largest valid Duration
                           315576000001,
                           253402300799,  // the largest valid Timestamp
                           std::numeric_limits<int32_t>::min(),
                           std::numeric_limits<int32_t>::max(),
                           int64_t{std::numeric_limits<uint32_t>::max()},
                           std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::min() + 1,
                           std::numeric_limits<int64_t>::max(),
                           std::numeric_limits<int64_t>::max() - 1};

std::string Join(const std::string& path, const FieldDescriptor* field) {
  return path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
}

}  // namespace

std::string Abbreviate(const std::string& value) {
  if (value.size() <= 48)
    return absl::StrCat("\"", absl::CHexEscape(value), "\"");
  return absl::StrCat("<", value.size(), " bytes: \"",
                      absl::CHexEscape(value.substr(0, 24)), "\"...>");
}

Mutator::Mutator(uint64_t seed, std::vector<std::string> dictionary)
    : rng_(seed), dictionary_(std::move(dictionary)) {}

size_t Mutator::Below(size_t n) {
  return std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
}

void Mutator::MutateMessage(Message* message, std::vector<std::string>* log) {
  const size_t edits = 1 + Below(3);
  for (size_t i = 0; i < edits; ++i) MutateSomewhere(message, "", 0, log);
}

void Mutator::MutateSomewhere(Message* message, const std::string& path,
                              int depth, std::vector<std::string>* log) {
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  if (descriptor->field_count() == 0) {
    log->push_back(
        absl::StrCat(path.empty() ? "(message)" : path, ": no fields to edit"));
    return;
  }
  const FieldDescriptor* field = descriptor->field(
      static_cast<int>(Below(static_cast<size_t>(descriptor->field_count()))));
  const Reflection* reflection = message->GetReflection();
  const std::string where = Join(path, field);
  // Half of the time, edit inside a sub-message rather than the field itself.
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 6 &&
      OneIn(2)) {
    if (!field->is_repeated()) {
      MutateSomewhere(reflection->MutableMessage(message, field), where,
                      depth + 1, log);
      return;
    }
    const int size = reflection->FieldSize(*message, field);
    if (size > 0) {
      const int index = static_cast<int>(Below(static_cast<size_t>(size)));
      MutateSomewhere(reflection->MutableRepeatedMessage(message, field, index),
                      absl::StrCat(where, "[", index, "]"), depth + 1, log);
      return;
    }
  }
  MutateField(message, field, where, log);
}

void Mutator::MutateField(Message* message, const FieldDescriptor* field,
                          const std::string& path,
                          std::vector<std::string>* log) {
  const Reflection* reflection = message->GetReflection();
  if (field->is_repeated()) {
    MutateRepeated(message, field, path, log);
  } else if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
    SetHostileScalar(message, field, path, log);
  } else if (OneIn(2)) {
    reflection->ClearField(message, field);
    log->push_back(absl::StrCat(path, ": cleared"));
  } else {
    reflection->MutableMessage(message, field)->Clear();
    log->push_back(absl::StrCat(path, ": set, empty"));
  }
}

void Mutator::MutateRepeated(Message* message, const FieldDescriptor* field,
                             const std::string& path,
                             std::vector<std::string>* log) {
  const Reflection* reflection = message->GetReflection();
  const int size = reflection->FieldSize(*message, field);
  const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
  switch (Below(4)) {
    case 0:
      reflection->ClearField(message, field);
      log->push_back(absl::StrCat(path, ": cleared"));
      return;
    case 1: {
      if (size == 0) break;
      // Copies of existing elements: duplicate ids, keys, branches, ...
      const size_t wanted = kCounts[Below(std::size(kCounts))];
      const size_t element_bytes = std::max<size_t>(
          1, message->ByteSizeLong() / static_cast<size_t>(size));
      const size_t count = std::min(
          wanted, std::max<size_t>(1, kMaxGrowthBytes / element_bytes));
      for (size_t i = 0; i < count; ++i) {
        AppendCopy(message, field,
                   static_cast<int>(i % static_cast<size_t>(size)));
      }
      log->push_back(
          absl::StrCat(path, ": ", count, " copies of its elements"));
      return;
    }
    case 2:
      if (size < 2) break;
      reflection->SwapElements(message, field, 0, size - 1);
      log->push_back(absl::StrCat(path, ": first and last swapped"));
      return;
    default:
      break;
  }
  // Append one new element: a hostile scalar, or an empty or edited message.
  if (!is_message) {
    SetHostileScalar(message, field, path, log);
    return;
  }
  Message* added = reflection->AddMessage(message, field);
  const std::string where = absl::StrCat(path, "[", size, "]");
  log->push_back(absl::StrCat(where, ": appended"));
  if (OneIn(2)) MutateSomewhere(added, where, 1, log);
}

void Mutator::AppendCopy(Message* message, const FieldDescriptor* field,
                         int index) {
  const Reflection* r = message->GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE:
      // Elements are heap objects: `index` stays valid while adding.
      r->AddMessage(message, field)
          ->CopyFrom(r->GetRepeatedMessage(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      r->AddString(message, field,
                   r->GetRepeatedString(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->AddEnumValue(message, field,
                      r->GetRepeatedEnumValue(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      r->AddInt32(message, field, r->GetRepeatedInt32(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->AddInt64(message, field, r->GetRepeatedInt64(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      r->AddUInt32(message, field,
                   r->GetRepeatedUInt32(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->AddUInt64(message, field,
                   r->GetRepeatedUInt64(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->AddBool(message, field, r->GetRepeatedBool(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->AddDouble(message, field,
                   r->GetRepeatedDouble(*message, field, index));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->AddFloat(message, field, r->GetRepeatedFloat(*message, field, index));
      break;
  }
}

void Mutator::SetHostileScalar(Message* message, const FieldDescriptor* field,
                               const std::string& path,
                               std::vector<std::string>* log) {
  const Reflection* reflection = message->GetReflection();
  const bool add = field->is_repeated();
  std::string shown;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string value =
          HostileString(field->type() == FieldDescriptor::TYPE_BYTES);
      shown = Abbreviate(value);
      add ? reflection->AddString(message, field, std::move(value))
          : reflection->SetString(message, field, std::move(value));
      break;
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      const auto value = static_cast<int32_t>(
          HostileInt64(std::numeric_limits<int32_t>::min(),
                       std::numeric_limits<int32_t>::max()));
      shown = absl::StrCat(value);
      add ? reflection->AddInt32(message, field, value)
          : reflection->SetInt32(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      const int64_t value = HostileInt64(std::numeric_limits<int64_t>::min(),
                                         std::numeric_limits<int64_t>::max());
      shown = absl::StrCat(value);
      add ? reflection->AddInt64(message, field, value)
          : reflection->SetInt64(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      const auto value = static_cast<uint32_t>(
          HostileUint64(std::numeric_limits<uint32_t>::max()));
      shown = absl::StrCat(value);
      add ? reflection->AddUInt32(message, field, value)
          : reflection->SetUInt32(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t value =
          HostileUint64(std::numeric_limits<uint64_t>::max());
      shown = absl::StrCat(value);
      add ? reflection->AddUInt64(message, field, value)
          : reflection->SetUInt64(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const bool value = !add && !reflection->GetBool(*message, field);
      shown = value ? "true" : "false";
      add ? reflection->AddBool(message, field, value)
          : reflection->SetBool(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int value = HostileEnum(field);
      shown = absl::StrCat(value);
      add ? reflection->AddEnumValue(message, field, value)
          : reflection->SetEnumValue(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      const double values[] = {0.0, -1.0,
                               std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity()};
      const double value = values[Below(std::size(values))];
      shown = absl::StrCat(value);
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        add ? reflection->AddFloat(message, field, static_cast<float>(value))
            : reflection->SetFloat(message, field, static_cast<float>(value));
      } else {
        add ? reflection->AddDouble(message, field, value)
            : reflection->SetDouble(message, field, value);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return;  // not a scalar
  }
  log->push_back(absl::StrCat(path, add ? " += " : " = ", shown));
}

std::string Mutator::HostileString(bool is_bytes) {
  switch (Below(6)) {
    case 0:
      return "";
    case 1:
      if (!dictionary_.empty()) return dictionary_[Below(dictionary_.size())];
      return "a";
    case 2: {
      // An existing name, slightly off.
      std::string word =
          dictionary_.empty() ? "a" : dictionary_[Below(dictionary_.size())];
      const std::string suffixes[] = {" ", std::string(1, '\0'), "\xff", "-",
                                      "X"};
      return word + suffixes[Below(std::size(suffixes))];
    }
    case 3:
      return kSpecialStrings[Below(std::size(kSpecialStrings))];
    case 4: {
      // The largest sizes are rare: they cost time on every layer.
      size_t size = kSizes[Below(std::size(kSizes))];
      if (size > (1 << 20) + 1 && !OneIn(4)) size = 1025;
      if (!is_bytes) return std::string(size, 'a');
      std::string value(size, '\0');
      for (char& c : value) c = static_cast<char>(rng_());
      return value;
    }
    default: {
      std::string value(Below(80), ' ');
      for (char& c : value) c = static_cast<char>(0x20 + Below(0x5f));
      return value;
    }
  }
}

int64_t Mutator::HostileInt64(int64_t min, int64_t max) {
  if (OneIn(8)) {
    return std::uniform_int_distribution<int64_t>(min, max)(rng_);
  }
  int64_t value = kInt64s[Below(std::size(kInt64s))];
  return std::clamp(value, min, max);
}

uint64_t Mutator::HostileUint64(uint64_t max) {
  if (OneIn(8)) return std::uniform_int_distribution<uint64_t>(0, max)(rng_);
  const int64_t value = kInt64s[Below(std::size(kInt64s))];
  if (value < 0) return max;  // negative numbers wrap to the largest
  return std::min(static_cast<uint64_t>(value), max);
}

int Mutator::HostileEnum(const FieldDescriptor* field) {
  const google::protobuf::EnumDescriptor* type = field->enum_type();
  if (OneIn(2)) {
    return type
        ->value(
            static_cast<int>(Below(static_cast<size_t>(type->value_count()))))
        ->number();
  }
  const int unknown[] = {-1, 99, std::numeric_limits<int32_t>::max(),
                         std::numeric_limits<int32_t>::min()};
  return unknown[Below(std::size(unknown))];
}

std::string Mutator::MutateBytes(const std::string& bytes,
                                 std::vector<std::string>* log) {
  std::string out = bytes;
  auto random_bytes = [this](size_t n) {
    std::string r(n, '\0');
    for (char& c : r) c = static_cast<char>(rng_());
    return r;
  };
  switch (Below(8)) {
    case 0:
      out.resize(out.empty() ? 0 : Below(out.size()));
      log->push_back(absl::StrCat("bytes: truncated to ", out.size()));
      break;
    case 1: {
      const size_t flips = 1 + Below(8);
      for (size_t i = 0; i < flips && !out.empty(); ++i) {
        out[Below(out.size())] ^= static_cast<char>(1 << Below(8));
      }
      log->push_back(absl::StrCat("bytes: ", flips, " bit flips"));
      break;
    }
    case 2: {
      const size_t n = std::min<size_t>(out.size(), 1 + Below(8));
      for (size_t i = 0; i < n; ++i) {
        out[Below(out.size())] = static_cast<char>(rng_());
      }
      log->push_back(absl::StrCat("bytes: ", n, " bytes overwritten"));
      break;
    }
    case 3: {
      const size_t at = Below(out.size() + 1);
      out.insert(at, random_bytes(1 + Below(16)));
      log->push_back(absl::StrCat("bytes: random bytes inserted at ", at));
      break;
    }
    case 4:
      out = random_bytes(Below(65));
      log->push_back(
          absl::StrCat("bytes: replaced by ", out.size(), " random bytes"));
      break;
    case 5: {
      // Field 1 as a varint (usually a string: wrong wire type), or an
      // unknown field number, appended.
      const std::string extras[] = {std::string("\x08\x01", 2),
                                    std::string("\xb8\x3e\x05", 3),
                                    std::string("\xc2\x3e\x03xyz", 6),
                                    std::string("\x0d\x01\x02\x03\x04", 5)};
      out += extras[Below(std::size(extras))];
      log->push_back("bytes: unknown or mistyped field appended");
      break;
    }
    case 6:
      // A length-delimited field 1 that claims 2 GiB.
      out = std::string("\x0a\xff\xff\xff\xff\x07", 6) + out;
      log->push_back("bytes: lying length prefix prepended");
      break;
    default:
      out += bytes;
      log->push_back("bytes: encoding concatenated with itself (merge)");
      break;
  }
  return out;
}

}  // namespace twopc::fuzz
