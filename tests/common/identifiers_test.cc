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

TEST(IdentifiersTest, QuotesTheRejectedValueShortened) {
  const absl::Status status = ValidateIdentifier("id", std::string(1000, 'a'));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("(1000 bytes) is invalid")));
  EXPECT_LT(status.message().size(), 200u);
}

TEST(QuoteFieldTest, QuotesShortValuesWhole) {
  EXPECT_EQ(QuoteField("inventory"), "'inventory'");
  EXPECT_EQ(QuoteField(""), "''");
  EXPECT_EQ(QuoteField(std::string(kMaxQuotedBytes, 'x')),
            "'" + std::string(kMaxQuotedBytes, 'x') + "'");
}

TEST(QuoteFieldTest, CutsLongValuesAndGivesTheirLength) {
  EXPECT_EQ(QuoteField(std::string(1 << 20, 'm')),
            "'" + std::string(kMaxQuotedBytes, 'm') + "...' (1048576 bytes)");
  EXPECT_EQ(QuoteField("abcdef", 3), "'abc...' (6 bytes)");
}

TEST(QuoteFieldTest, EscapesQuotesControlAndNonAsciiBytes) {
  EXPECT_EQ(QuoteField("it's"), "'it\\'s'");
  EXPECT_EQ(QuoteField("a\nb"), "'a\\nb'");
  EXPECT_EQ(QuoteField(std::string("\xff\0", 2)), "'\\xff\\x00'");
}

}  // namespace
}  // namespace twopc
