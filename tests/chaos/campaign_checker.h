// The checker of a fault campaign: given what the clients were told about
// each bank transfer and what the healed cluster holds, it counts every
// broken promise of DESIGN.md section 2:
//
//   * the total balance over all accounts is unchanged;
//   * a transfer's marker key is on all of its branches or on none
//     (atomicity), on all of them when it committed (including every
//     transfer a client was told COMMITTED) and on none when it aborted;
//   * no transfer is left with an unknown outcome, and neither the
//     coordinator nor a sidecar reports unfinished work once faults stop;
//   * every partition of the topic is gap-free from offset 0, holds each
//     committed transfer's message exactly once (at the position the client
//     was told, if it was told one), no message of a transfer that did not
//     commit, and follows commit order: when A's COMMITTED reply came before
//     B was sent and both landed in one partition, A's offset < B's offset.
//
// The checker is pure (no I/O), so it is unit-tested with synthetic inputs
// (campaign_checker_test.cc); the campaign gathers the inputs from real
// processes (cluster_observer.h).
#ifndef TWOPC_TESTS_CHAOS_CAMPAIGN_CHECKER_H_
#define TWOPC_TESTS_CHAOS_CAMPAIGN_CHECKER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace twopc::chaos {

using SteadyTime = std::chrono::steady_clock::time_point;

// What the client was told when its Execute call returned.
enum class Reply {
  kCommitted,  // OK
  kAborted,    // ABORTED: definitely aborted
  kRejected,   // another definite error (e.g. NOT_FOUND): no effect
  kAmbiguous,  // UNAVAILABLE, DEADLINE_EXCEEDED, ...: outcome unknown
};

// The outcome the campaign settled on: the definite reply itself, or for an
// ambiguous reply the coordinator's answer to Get after the faults stopped.
enum class Outcome { kCommitted, kAborted, kUnknown };

struct MessagePosition {
  int32_t partition = 0;
  int64_t offset = 0;
  friend bool operator==(const MessagePosition&,
                         const MessagePosition&) = default;
};

// One bank transfer: its name is its idempotency key, the suffix of its
// marker key on every branch, and the value of its one message.
struct TransferRecord {
  std::string name;
  // The sidecars it has a branch on.
  std::vector<std::string> participants;
  Reply reply = Reply::kAmbiguous;
  // The status of a non-OK reply ("CODE: message"), for reports.
  std::string error;
  Outcome outcome = Outcome::kUnknown;
  // Where the COMMITTED reply said the message was published.
  std::optional<MessagePosition> told_position;
  // When the request was sent and when the reply came.
  SteadyTime sent;
  SteadyTime replied;
};

struct QueuedMessage {
  int64_t offset = 0;
  std::string value;
};

// One partition as read with Fetch from its log start to its end.
struct PartitionContents {
  int64_t log_start_offset = 0;
  int64_t end_offset = 0;
  // In the order fetched.
  std::vector<QueuedMessage> messages;
};

// The healed cluster's state.
struct ClusterObservation {
  // Sum of every account balance on every sidecar.
  int64_t total_balance = 0;
  // Sidecar id -> names of the transfers whose marker it holds.
  std::map<std::string, std::set<std::string>> markers;
  // Indexed by partition number.
  std::vector<PartitionContents> partitions;
  // Work still open: transactions in doubt or with phase 2 pending at the
  // coordinator, plus branches still prepared at the sidecars.
  int64_t unfinished = 0;
};

enum class Violation {
  kBalanceChanged,
  kPartlyApplied,
  kCommittedNotApplied,
  kAbortedButApplied,
  kStrayMarker,
  kOutcomeUnknown,
  kUnfinishedAtEnd,
  kOffsetGap,
  kDuplicateMessage,
  kMissingMessage,
  kMessageOfUncommitted,
  kWrongPosition,
  kCommitOrder,
};

// Every Violation, in declaration order.
const std::vector<Violation>& AllViolations();
// A short lower-case description, e.g. "partly applied".
const char* ViolationName(Violation violation);

// Violation counts plus a few examples of each. Thread-compatible.
class CheckResult {
 public:
  // Counts `count` violations of `kind`, keeping `example` (at most a few
  // per kind) to show.
  void Add(Violation kind, const std::string& example, int64_t count = 1);

  int64_t count(Violation kind) const;
  int64_t total() const;
  // One line per kind with its count, then the kept examples.
  std::string ToString() const;

 private:
  std::map<Violation, int64_t> counts_;
  std::map<Violation, std::vector<std::string>> examples_;
};

// Checks `transfers` against `observed`. `opening_total` is the total
// balance before the first transfer. Transfer names must be unique.
CheckResult CheckCampaign(int64_t opening_total,
                          const std::vector<TransferRecord>& transfers,
                          const ClusterObservation& observed);

// Transfers by reply and by settled outcome, for the summary.
struct TransferTally {
  int64_t attempted = 0;
  int64_t committed = 0;  // settled outcome
  int64_t aborted = 0;    // settled outcome (aborted or rejected)
  int64_t rejected = 0;   // definite errors other than ABORTED
  int64_t ambiguous = 0;  // replies; resolved as below
  int64_t ambiguous_committed = 0;
  int64_t ambiguous_aborted = 0;
  int64_t unknown = 0;
};
TransferTally Tally(const std::vector<TransferRecord>& transfers);

}  // namespace twopc::chaos

#endif  // TWOPC_TESTS_CHAOS_CAMPAIGN_CHECKER_H_
