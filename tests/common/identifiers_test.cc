#include "common/identifiers.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace twopc {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;

TEST(IdentifiersTest, AcceptsTheDocumentedAlphabet) {
  EXPECT_THAT(ValidateIdentifier("id", "inventory-1.eu_west"), IsOk());
  EXPECT_THAT(ValidateIdentifier("id", std::string(64, 'a')), IsOk());
}

TEST(IdentifiersTest, RejectsEmptyTooLongAndOtherCharacters) {
  EXPECT_THAT(ValidateIdentifier("participant id", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("participant id")));
  EXPECT_THAT(ValidateIdentifier("id", std::string(65, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateIdentifier("id", std::string(65, 'a'), 128), IsOk());
  for (const char* bad : {"a b", "a/b", "ü", "a:b", "a\nb"}) {
    EXPECT_THAT(ValidateIdentifier("id", bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

}  // namespace
}  // namespace twopc
