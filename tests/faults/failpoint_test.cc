// Failure point registry: parsing specs, validation, hit counting and the
// actions (crash in a death test).
#include "common/failpoint.h"

#include <signal.h>
#include <stdlib.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace twopc::failpoint {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;

constexpr char kCrashPoint[] = "storage.before_sync";
constexpr char kOtherCrashPoint[] = "storage.after_sync";
constexpr char kErrorPoint[] = "storage.sync_error";

class FailpointTest : public ::testing::Test {
 protected:
  void TearDown() override {
    DisarmAll();
    unsetenv("TWOPC_FAILPOINTS");
  }

  // Evaluates `name` `hits` times; what each evaluation returned.
  static std::vector<bool> Evaluate(const char* name, int hits) {
    std::vector<bool> results;
    for (int i = 0; i < hits; ++i) results.push_back(TWOPC_FAILPOINT(name));
    return results;
  }
};

TEST_F(FailpointTest, ParsesActionsHitsAndOnce) {
  auto triggers = ParseSpec(
      " storage.before_sync=crash@3 ;; participant.after_prepare_synced="
      "delay:500;storage.sync_error=error@2,once;storage.after_sync=crash:"
      "250");
  ASSERT_THAT(triggers, IsOk());
  ASSERT_EQ(triggers->size(), 4u);

  const Trigger& crash = triggers->at("storage.before_sync");
  EXPECT_EQ(crash.action, Action::kCrash);
  EXPECT_EQ(crash.delay, absl::ZeroDuration());
  EXPECT_EQ(crash.from_hit, 3);
  EXPECT_FALSE(crash.once);

  const Trigger& stall_and_crash = triggers->at("storage.after_sync");
  EXPECT_EQ(stall_and_crash.action, Action::kCrash);
  EXPECT_EQ(stall_and_crash.delay, absl::Milliseconds(250));

  const Trigger& delay = triggers->at("participant.after_prepare_synced");
  EXPECT_EQ(delay.action, Action::kDelay);
  EXPECT_EQ(delay.delay, absl::Milliseconds(500));
  EXPECT_EQ(delay.from_hit, 1);

  const Trigger& error = triggers->at("storage.sync_error");
  EXPECT_EQ(error.action, Action::kError);
  EXPECT_EQ(error.from_hit, 2);
  EXPECT_TRUE(error.once);
}

TEST_F(FailpointTest, ThePointNamedLastWins) {
  auto triggers =
      ParseSpec("storage.before_sync=crash;storage.before_sync=delay:7");
  ASSERT_THAT(triggers, IsOk());
  EXPECT_EQ(triggers->at("storage.before_sync").action, Action::kDelay);
  EXPECT_THAT(ParseSpec(""), IsOk());
}

TEST_F(FailpointTest, RejectsBadEntriesNamingThem) {
  for (const char* bad :
       {"storage.before_sync", "=crash", "storage.before_sync=explode",
        "storage.before_sync=crash@0", "storage.before_sync=crash@x",
        "storage.before_sync=crash@",
        "storage.before_sync=delay:", "storage.before_sync=delay:-5",
        "storage.before_sync=crash:", "storage.before_sync=crash:x",
        "storage.before_sync=error:5", "storage.before_sync=crash,twice"}) {
    EXPECT_THAT(ParseSpec(absl::StrCat("storage.after_sync=crash;", bad)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(absl::StrCat("'", bad, "'")),
                               HasSubstr("NAME=ACTION[@N][,once]"))))
        << bad;
  }
}

TEST_F(FailpointTest, RejectsUnknownPointsListingTheKnownOnes) {
  EXPECT_THAT(ParseSpec("storage.before_synk=crash"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown failure point "
                                       "'storage.before_synk'"),
                             HasSubstr("storage.before_sync, "))));
  EXPECT_THAT(Arm("nowhere", Trigger()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(FailpointTest, RejectsActionsAPointDoesNotAccept) {
  EXPECT_THAT(ParseSpec("storage.before_sync=error"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot inject an error")));
  EXPECT_THAT(ParseSpec("storage.sync_error=crash"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("accepts only the action 'error'")));
  EXPECT_THAT(Arm(kCrashPoint, {.action = Action::kCrash,
                                .delay = absl::ZeroDuration(),
                                .from_hit = 0,
                                .once = false}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(FailpointTest, EveryKnownPointIsDocumentedAndArmable) {
  std::set<std::string> names;
  for (const PointInfo& point : KnownPoints()) {
    SCOPED_TRACE(point.name);
    EXPECT_TRUE(names.insert(point.name).second) << "listed twice";
    EXPECT_GT(std::string(point.where).size(), 10u);
    EXPECT_GT(std::string(point.checks).size(), 10u);
    EXPECT_THAT(ArmFromSpec(absl::StrCat(
                    point.name, point.error_point ? "=error" : "=crash")),
                IsOk());
  }
}

TEST_F(FailpointTest, NothingArmedNothingCounted) {
  EXPECT_EQ(Evaluate(kCrashPoint, 3), std::vector<bool>(3, false));
  EXPECT_EQ(Hits(kCrashPoint), 0);
}

TEST_F(FailpointTest, AnErrorFiresFromTheNthHitOn) {
  ASSERT_THAT(ArmFromSpec("storage.sync_error=error@3"), IsOk());
  EXPECT_EQ(Evaluate(kErrorPoint, 5),
            (std::vector<bool>{false, false, true, true, true}));
  EXPECT_EQ(Hits(kErrorPoint), 5);
  // Other points are not counted, and do not fire.
  EXPECT_FALSE(TWOPC_FAILPOINT("storage.disk_full"));
  EXPECT_EQ(Hits("storage.disk_full"), 0);
}

TEST_F(FailpointTest, OnceFiresOnlyOnce) {
  ASSERT_THAT(ArmFromSpec("storage.sync_error=error@2,once"), IsOk());
  EXPECT_EQ(Evaluate(kErrorPoint, 4),
            (std::vector<bool>{false, true, false, false}));
}

TEST_F(FailpointTest, ArmingAgainRestartsTheCount) {
  ASSERT_THAT(ArmFromSpec("storage.sync_error=error@2"), IsOk());
  EXPECT_EQ(Evaluate(kErrorPoint, 1), std::vector<bool>{false});
  ASSERT_THAT(ArmFromSpec("storage.sync_error=error@2"), IsOk());
  EXPECT_EQ(Evaluate(kErrorPoint, 2), (std::vector<bool>{false, true}));
}

TEST_F(FailpointTest, ADelayReturnsFalseAndCounts) {
  ASSERT_THAT(ArmFromSpec("storage.before_sync=delay:1"), IsOk());
  EXPECT_EQ(Evaluate(kCrashPoint, 2), (std::vector<bool>{false, false}));
  EXPECT_EQ(Hits(kCrashPoint), 2);
}

TEST_F(FailpointTest, DisarmingStopsFiringAndCounting) {
  ASSERT_THAT(ArmFromSpec("storage.sync_error=error;storage.disk_full=error"),
              IsOk());
  Disarm(kErrorPoint);
  EXPECT_EQ(Evaluate(kErrorPoint, 1), std::vector<bool>{false});
  EXPECT_EQ(Hits(kErrorPoint), 0);
  EXPECT_TRUE(TWOPC_FAILPOINT("storage.disk_full"));
  DisarmAll();
  EXPECT_FALSE(internal::any_armed.load());
  EXPECT_FALSE(TWOPC_FAILPOINT("storage.disk_full"));
}

TEST_F(FailpointTest, AFailedSpecArmsNothing) {
  EXPECT_THAT(ArmFromSpec("storage.sync_error=error;bogus=crash"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(internal::any_armed.load());
  EXPECT_FALSE(TWOPC_FAILPOINT(kErrorPoint));
}

TEST_F(FailpointTest, CrashKillsTheProcessLikeKillMinus9) {
  ASSERT_THAT(ArmFromSpec("storage.before_sync=crash@2"), IsOk());
  EXPECT_EXIT(
      {
        TWOPC_FAILPOINT(kCrashPoint);
        TWOPC_FAILPOINT(kCrashPoint);
        std::_Exit(0);  // not reached
      },
      ::testing::KilledBySignal(SIGKILL),
      "twopc: failure point storage.before_sync: crash \\(hit 2\\)");
}

TEST_F(FailpointTest, ACrashAfterAStallKillsTheProcessToo) {
  ASSERT_THAT(ArmFromSpec("storage.before_sync=crash:1"), IsOk());
  EXPECT_EXIT(
      {
        TWOPC_FAILPOINT(kCrashPoint);
        std::_Exit(0);  // not reached
      },
      ::testing::KilledBySignal(SIGKILL),
      "failure point storage.before_sync: crash \\(hit 1\\)");
}

TEST_F(FailpointTest, AnUnknownNameAtACallSiteAbortsOnceAnythingIsArmed) {
  EXPECT_FALSE(TWOPC_FAILPOINT("storage.no_such_point"));  // nothing armed
  ASSERT_THAT(ArmFromSpec("storage.after_sync=delay:1"), IsOk());
  EXPECT_DEATH(TWOPC_FAILPOINT("storage.no_such_point"),
               "'storage.no_such_point' is not in the list of known points");
}

TEST_F(FailpointTest, StartupReadsTheEnvironmentThenTheFlagWhichWins) {
  setenv("TWOPC_FAILPOINTS",
         "storage.before_sync=delay:1;storage.after_sync=delay:1", 1);
  EXPECT_EXIT(
      {
        if (!ArmAtStartup("storage.after_sync=crash").ok()) std::_Exit(1);
        if (TWOPC_FAILPOINT(kCrashPoint) || Hits(kCrashPoint) != 1) {
          std::_Exit(2);
        }
        TWOPC_FAILPOINT(kOtherCrashPoint);  // the flag's crash
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGKILL),
      "failure points armed: TWOPC_FAILPOINTS='storage.before_sync=delay:1;"
      "storage.after_sync=delay:1' --failpoints='storage.after_sync=crash'");
}

TEST_F(FailpointTest, StartupErrorsSayWhichSourceIsBad) {
  setenv("TWOPC_FAILPOINTS", "storage.before_sync=boom", 1);
  EXPECT_THAT(ArmAtStartup(""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("$TWOPC_FAILPOINTS: bad failure point")));
  unsetenv("TWOPC_FAILPOINTS");
  EXPECT_THAT(ArmAtStartup("storage.before_sync=error"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("--failpoints: failure point")));
  EXPECT_FALSE(internal::any_armed.load());
  EXPECT_THAT(ArmAtStartup(""), IsOk());
  EXPECT_FALSE(internal::any_armed.load());
}

}  // namespace
}  // namespace twopc::failpoint
