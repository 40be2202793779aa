// SimDecisionLog: the coordinator's decision log (RocksDB behind the
// group-commit writer) as it looks across crashes.
//
// Append queues a transaction's latest record; the latest record of a
// transaction replaces earlier ones once written. Sync is one group-commit
// round: every queued record becomes durable, in submission order (so an
// unforced record queued before a forced one is durable once the forced one
// is), and only then do the forced records' callbacks run. Crash loses every
// queued record without running anything. Reads see durable records only: the
// writer has not written the queued ones yet.
//
// It also keeps the coordinator's durable epoch counter, and, for the
// invariant checker, which transactions have ever had a COMMITTED record on
// disk.
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_DECISION_LOG_H_
#define TWOPC_TESTS_SIMULATION_SIM_DECISION_LOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "twopc/internal/decision_log.pb.h"

namespace twopc::simulation {

class SimDecisionLog {
 public:
  using Synced = std::function<void()>;

  // Queues `record`. `on_synced` (may be empty: an unforced write) runs after
  // the Sync that makes it durable; never if a crash comes first.
  void Append(const internal::TransactionRecord& record, Synced on_synced);
  bool has_unsynced() const { return !queued_.empty(); }
  // One group-commit round over everything queued now.
  void Sync();
  // Power cut: queued records are lost, their callbacks never run.
  void Crash() { queued_.clear(); }

  // The durable record of `transaction_id`; nullptr if none.
  const internal::TransactionRecord* Read(
      const std::string& transaction_id) const;
  const std::map<std::string, internal::TransactionRecord>& durable() const {
    return durable_;
  }
  // Whether a record with outcome COMMITTED was ever durable for it.
  bool CommitWasDurable(const std::string& transaction_id) const {
    return ever_committed_.contains(transaction_id);
  }

  // A coordinator start: the next epoch, durable before it is used.
  uint64_t TakeNextEpoch() { return ++epoch_; }

 private:
  struct Write {
    internal::TransactionRecord record;
    Synced on_synced;
  };

  std::vector<Write> queued_;
  std::map<std::string, internal::TransactionRecord> durable_;
  std::set<std::string> ever_committed_;
  uint64_t epoch_ = 0;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_DECISION_LOG_H_
