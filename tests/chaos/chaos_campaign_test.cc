// The process-level fault campaign: a coordinator and three kv sidecars on
// loopback, concurrent clients running bank transfers that each publish a
// message, while a nemesis kills (-9) and restarts, freezes and thaws, and
// (as root, with iptables) cuts off random processes. Then the faults stop,
// everything heals, every ambiguous reply is resolved with Get, and the
// checker (campaign_checker.h) must find no broken promise.
//
// Environment (defaults: the short run inside `make test`):
//   TWOPC_CHAOS_SECONDS  seconds of faults and transfers (50)
//   TWOPC_CHAOS_CLIENTS  concurrent clients (4)
//   TWOPC_CHAOS_SEED     seed of the nemesis schedule and the transfers (1)
// The long run (`make chaos`):
//   TWOPC_CHAOS_SECONDS=600 build/tests/chaos/chaos_campaign_test
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/chaos/bank.h"
#include "tests/chaos/campaign_checker.h"
#include "tests/chaos/cluster_observer.h"
#include "tests/chaos/nemesis.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::chaos {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::TempDir;

constexpr absl::Duration kHealTimeout = absl::Seconds(60);
constexpr absl::Duration kResolveTimeout = absl::Seconds(30);
// A safety bound on each client's transfers, far above what a second of
// this machine allows.
constexpr int kMaxTransfersPerClientPerSecond = 1000;
constexpr size_t kLogTailBytes = 6000;

// Sidecars ask for the outcome of a branch prepared for 1 s, and keep
// asking at least every 2 s, so branches orphaned by a fault resolve soon.
const std::vector<std::string> kSidecarFlags = {
    "--in_doubt_after=1", "--outcome_query_backoff_max=2"};

struct CampaignConfig {
  int64_t seconds = 50;
  int64_t clients = 4;
  uint64_t seed = 1;
};

// `variable` as a number of at least `minimum`, `fallback` when unset; an
// error when malformed.
template <typename Number>
absl::StatusOr<Number> NumberFromEnvironment(const char* variable,
                                             Number fallback, Number minimum) {
  const char* text = std::getenv(variable);
  if (text == nullptr || *text == '\0') return fallback;
  Number value;
  if (!absl::SimpleAtoi(text, &value) || value < minimum) {
    return absl::InvalidArgumentError(absl::StrCat(
        variable, "='", text, "' is not a number of at least ", minimum));
  }
  return value;
}

absl::StatusOr<CampaignConfig> ConfigFromEnvironment() {
  CampaignConfig config;
  ASSIGN_OR_RETURN(
      config.seconds,
      NumberFromEnvironment<int64_t>("TWOPC_CHAOS_SECONDS", config.seconds, 1));
  ASSIGN_OR_RETURN(
      config.clients,
      NumberFromEnvironment<int64_t>("TWOPC_CHAOS_CLIENTS", config.clients, 1));
  ASSIGN_OR_RETURN(config.seed, NumberFromEnvironment<uint64_t>(
                                    "TWOPC_CHAOS_SEED", config.seed, 0));
  return config;
}

std::string Summary(const CampaignConfig& config, absl::Duration faulted_for,
                    const std::vector<TransferRecord>& transfers,
                    const std::map<FaultKind, int64_t>& faults,
                    const std::string& cuts_unavailable,
                    const CheckResult& result) {
  const TransferTally tally = Tally(transfers);
  std::string text = absl::StrFormat(
      "===== chaos campaign: seed %d, %d clients, %s of faults =====\n"
      "transfers: %d attempted, %d committed, %d aborted (%d of them "
      "rejected), %d ambiguous (resolved: %d committed, %d aborted, %d "
      "unknown)\n",
      config.seed, config.clients, absl::FormatDuration(faulted_for),
      tally.attempted, tally.committed, tally.aborted, tally.rejected,
      tally.ambiguous, tally.ambiguous_committed, tally.ambiguous_aborted,
      tally.unknown);
  absl::StrAppend(&text, "faults:\n");
  for (const auto& [kind, count] : faults) {
    absl::StrAppendFormat(&text, "  %-40s %d\n", FaultName(kind), count);
  }
  if (!cuts_unavailable.empty()) {
    absl::StrAppend(&text, "  (no iptables cuts: ", cuts_unavailable, ")\n");
  }
  for (const TransferRecord& t : transfers) {
    if (t.reply == Reply::kRejected) {
      absl::StrAppend(&text, "first rejection: ", t.name, ": ", t.error, "\n");
      break;
    }
  }
  absl::StrAppend(&text, result.ToString());
  return text;
}

class ChaosCampaignTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) return;
    for (const std::string& name : ProcessNames()) {
      const std::string log = cluster_.Log(name);
      std::fprintf(
          stderr, "----- %s log (last %zu bytes) -----\n%s\n", name.c_str(),
          kLogTailBytes,
          log.substr(log.size() > kLogTailBytes ? log.size() - kLogTailBytes
                                                : 0)
              .c_str());
    }
  }

  std::vector<std::string> ProcessNames() const {
    std::vector<std::string> names = {LocalCluster::kCoordinator};
    names.insert(names.end(), bank_.sidecars.begin(), bank_.sidecars.end());
    return names;
  }

  absl::Status StartCluster() {
    RETURN_IF_ERROR(cluster_.StartCoordinator());
    for (const std::string& sidecar : bank_.sidecars) {
      RETURN_IF_ERROR(cluster_.StartParticipant(sidecar, kSidecarFlags));
    }
    RETURN_IF_ERROR(cluster_.WaitForParticipants(bank_.sidecars, kHealTimeout));
    return OpenBank(cluster_.coordinator_address(), bank_);
  }

  NemesisOptions NemesisFor(const CampaignConfig& config) const {
    NemesisOptions options;
    options.seed = config.seed;
    options.sidecars = bank_.sidecars;
    options.sidecar_flags = kSidecarFlags;
    options.log_dir = dir_.path();
    options.cut_tag = absl::StrCat("twopc-chaos-", getpid());
    return options;
  }

  TransferLoad LoadFor(const CampaignConfig& config) const {
    TransferLoad load;
    load.clients = static_cast<int>(config.clients);
    load.transfers_per_client =
        static_cast<int>(kMaxTransfersPerClientPerSecond * config.seconds);
    load.run_for = absl::Seconds(config.seconds);
    load.seed = config.seed;
    return load;
  }

  const BankLayout bank_{.sidecars = {"p1", "p2", "p3"},
                         .accounts_per_sidecar = 8,
                         .opening_balance = 1000,
                         .topic = "transfers",
                         .partitions = 4};
  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
};

TEST_F(ChaosCampaignTest, BankTransfersKeepEveryPromiseUnderProcessFaults) {
  absl::StatusOr<CampaignConfig> config = ConfigFromEnvironment();
  ASSERT_THAT(config, IsOk());
  std::fprintf(stderr, "chaos campaign: seed %llu (TWOPC_CHAOS_SEED)\n",
               static_cast<unsigned long long>(config->seed));
  ASSERT_THAT(StartCluster(), IsOk());

  // The nemesis outlives every use of the cluster: processes it restarted
  // die with it.
  Nemesis nemesis(&cluster_, NemesisFor(*config));
  const absl::Time start = absl::Now();
  std::vector<TransferRecord> transfers =
      RunTransfers(cluster_.coordinator_address(), bank_, LoadFor(*config));
  ASSERT_THAT(nemesis.Stop(), IsOk());
  const absl::Duration faulted_for = absl::Now() - start;

  // Heal: everything runs again; wait for open work to finish, then settle
  // the ambiguous replies and read the cluster.
  ASSERT_THAT(cluster_.WaitForParticipants(bank_.sidecars, kHealTimeout),
              IsOk());
  EXPECT_THAT(WaitUntilQuiescent(cluster_, bank_, kHealTimeout), IsOk());
  ResolveAmbiguous(cluster_.coordinator_address(), kResolveTimeout, transfers);
  absl::StatusOr<ClusterObservation> observed = ObserveCluster(cluster_, bank_);
  ASSERT_THAT(observed, IsOk());

  const CheckResult result =
      CheckCampaign(bank_.OpeningTotal(), transfers, *observed);
  const std::map<FaultKind, int64_t> faults = nemesis.Counts();
  const std::string summary =
      Summary(*config, faulted_for, transfers, faults,
              nemesis.cuts_unavailable_reason(), result);
  std::fprintf(stderr, "%s", summary.c_str());
  EXPECT_EQ(result.total(), 0) << "broken promises: see the summary above";

  // The campaign must have exercised something to prove anything.
  int64_t injected = 0;
  for (const auto& [kind, count] : faults) injected += count;
  EXPECT_GT(injected, 0);
  EXPECT_GT(Tally(transfers).committed, 0);
}

}  // namespace
}  // namespace twopc::chaos
