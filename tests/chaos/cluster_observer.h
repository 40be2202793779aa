// Reads a healed LocalCluster running the bank (bank.h) into the checker's
// ClusterObservation, and waits for it to settle first.
//
// Use from one thread, and only while nothing else drives the cluster.
#ifndef TWOPC_TESTS_CHAOS_CLUSTER_OBSERVER_H_
#define TWOPC_TESTS_CHAOS_CLUSTER_OBSERVER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/chaos/bank.h"
#include "tests/chaos/campaign_checker.h"
#include "tests/testing/cluster.h"

namespace twopc::chaos {

// Waits until the coordinator has no transaction in doubt or with phase 2
// pending, and every sidecar of `bank` is linked and reports no prepared
// branch, continuously for a few heartbeats (sidecars report their prepared
// branches with their heartbeats). OK; DEADLINE_EXCEEDED after `timeout`,
// saying what is still open.
absl::Status WaitUntilQuiescent(const testing::LocalCluster& cluster,
                                const BankLayout& bank, absl::Duration timeout);

// Reads every account and marker of every sidecar, every partition of the
// bank's topic from offset 0, and the open work. An error when a read fails.
absl::StatusOr<ClusterObservation> ObserveCluster(
    const testing::LocalCluster& cluster, const BankLayout& bank);

}  // namespace twopc::chaos

#endif  // TWOPC_TESTS_CHAOS_CLUSTER_OBSERVER_H_
