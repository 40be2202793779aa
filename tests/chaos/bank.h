// The workload of the fault campaign: a bank whose accounts are spread over
// kv sidecars, and clients moving money between accounts on two different
// sidecars. Each transfer
//   * adds -amount (never below 0, so an overdraft votes NO) to one account
//     and +amount to another, on two different sidecars,
//   * puts its marker key "tx/<name>" on both branches, so the checker can
//     tell per branch whether it was applied, and
//   * publishes one message (key and value = its name) to the bank's topic,
//     so transfers spread over the partitions by key hash.
// The name ("c<client>-<n>") is also the transfer's idempotency key.
#ifndef TWOPC_TESTS_CHAOS_BANK_H_
#define TWOPC_TESTS_CHAOS_BANK_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/chaos/campaign_checker.h"

namespace twopc::chaos {

inline constexpr char kAccountPrefix[] = "acct/";
inline constexpr char kMarkerPrefix[] = "tx/";

struct BankLayout {
  // kv sidecars; each holds accounts 0..accounts_per_sidecar-1.
  std::vector<std::string> sidecars;
  int accounts_per_sidecar = 8;
  int64_t opening_balance = 1000;
  std::string topic = "transfers";
  int partitions = 4;

  int64_t OpeningTotal() const {
    return opening_balance * accounts_per_sidecar *
           static_cast<int64_t>(sidecars.size());
  }
};

// A channel to `address` that reconnects within a second after its server
// comes back (gRPC's default reconnect backoff grows to two minutes).
std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& address);

// Creates the topic and sets every account to the opening balance, in one
// transaction. REQUIRES: every sidecar registered, no fault running.
absl::Status OpenBank(const std::string& coordinator, const BankLayout& bank);

struct TransferLoad {
  int clients = 4;
  // Each client stops after this many transfers or after `run_for`,
  // whichever comes first.
  int transfers_per_client = 10'000;
  absl::Duration run_for = absl::Seconds(50);
  // The transaction's timeout (until every branch voted), and the client's
  // deadline for the whole Execute call.
  absl::Duration transaction_timeout = absl::Milliseconds(1500);
  absl::Duration request_deadline = absl::Seconds(3);
  // Transfers move 1..max_amount.
  int64_t max_amount = 500;
  uint64_t seed = 1;
};

// Runs `load.clients` client threads against `coordinator`, one Execute per
// transfer (never retried), and returns every transfer with its reply.
// Definite replies settle the outcome; ambiguous ones leave it kUnknown for
// ResolveAmbiguous. Blocks until every client is done (bounded by the
// transfer count and by run_for plus one request deadline).
std::vector<TransferRecord> RunTransfers(const std::string& coordinator,
                                         const BankLayout& bank,
                                         const TransferLoad& load);

// Settles each ambiguous transfer by asking the coordinator (Get by
// idempotency key): a decided outcome is taken as is; NOT_FOUND means the
// key never reached a decision, so the transfer had no effect (aborted).
// Undecided or unreachable ones are asked again until `timeout`, then left
// kUnknown. Call only after the faults stopped and the cluster is quiescent,
// so no request of the campaign is still on its way.
void ResolveAmbiguous(const std::string& coordinator, absl::Duration timeout,
                      std::vector<TransferRecord>& transfers);

}  // namespace twopc::chaos

#endif  // TWOPC_TESTS_CHAOS_BANK_H_
