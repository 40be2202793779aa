// Bank: a two-account bank on a LocalCluster, for fault tests.
//
// A coordinator and two kv sidecars, "p1" and "p2", each holding one account
// that opens with kOpening, and a one-partition topic "transfers". Each
// transfer moves money from one account to the other (a 2-branch
// transaction) and publishes one message; the bank remembers what its client
// was told. After faults and restarts, Verify checks the promises:
//   * atomicity: every transfer ended committed on both branches or aborted
//     on both (the balances are exactly those of the committed transfers,
//     and no branch is left prepared holding its account's lock);
//   * no client was told COMMITTED for a transfer that did not commit (nor a
//     definite ABORTED for one that did);
//   * exactly-once publication: the topic holds the message of each
//     committed transfer once, of no other, at gap-free offsets.
//
// Thread-compatible.
#ifndef TWOPC_TESTS_FAULTS_BANK_H_
#define TWOPC_TESTS_FAULTS_BANK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/optional.h"
#include "tests/testing/cluster.h"
#include "twopc/v1/common.pb.h"

namespace twopc::testing {

class Bank {
 public:
  static constexpr int64_t kOpening = 100;
  static constexpr char kP1[] = "p1";
  static constexpr char kP2[] = "p2";

  // What a transfer's client was told.
  struct Receipt {
    // The transfer's idempotency key.
    std::string key;
    // Execute's result: OK means the client was told COMMITTED.
    absl::Status told;
  };

  // `cluster` is not owned and must outlive the bank.
  explicit Bank(LocalCluster* cluster) : cluster_(cluster) {}

  // Starts the coordinator and both sidecars, opens the accounts and creates
  // the topic.
  absl::Status Open();

  // Starts process `name` (LocalCluster::kCoordinator, kP1 or kP2) with the
  // bank's flags plus `extra_flags` (a process still running is killed
  // first), and waits until both sidecars are connected.
  absl::Status Start(const std::string& name,
                     const std::vector<std::string>& extra_flags = {});

  // Moves `amount` from `from` (kP1 or kP2) to the other account.
  Receipt Transfer(const std::string& from, int64_t amount);

  // The coordinator's record of a transfer (votes, state), by its key.
  absl::StatusOr<v1::Transaction> Lookup(const std::string& key) const;

  // A transfer's outcome once final: true when it committed (every branch
  // acknowledged, so its account locks are free), false when it aborted (a
  // key the coordinator does not know was never decided: aborted); nullopt
  // while it is not final or the coordinator does not answer.
  absl::optional<bool> Outcome(const std::string& key) const;

  // Waits until the transfer is final and returns its Outcome.
  // DEADLINE_EXCEEDED when it is not final in time.
  absl::StatusOr<bool> Committed(const std::string& key) const;

  // Waits (bounded) until no branch is left prepared and every transfer is
  // final, then checks the promises above. OK, or the first violation
  // (FAILED_PRECONDITION) or wait that ran out (DEADLINE_EXCEEDED).
  absl::Status Verify();

 private:
  struct Entry {
    std::string from;
    std::string to;
    int64_t amount = 0;
    Receipt receipt;
  };

  // Starts process `name` with the bank's flags plus `extra_flags`, and
  // waits until it serves.
  absl::Status Launch(const std::string& name,
                      const std::vector<std::string>& extra_flags);
  // Transfers (recorded like any other) until one commits: then no branch
  // holds an account's lock, i.e. none is left prepared.
  absl::Status WaitUntilNoBranchIsPrepared();
  absl::StatusOr<int64_t> Balance(const std::string& sidecar) const;
  // Keys of the topic's messages, in offset order; checks offsets are
  // gap-free from 0.
  absl::StatusOr<std::vector<std::string>> PublishedKeys() const;

  LocalCluster* const cluster_;
  std::vector<Entry> transfers_;
};

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_FAULTS_BANK_H_
