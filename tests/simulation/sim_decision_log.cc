#include "tests/simulation/sim_decision_log.h"

#include <utility>

namespace twopc::simulation {

void SimDecisionLog::Append(const internal::TransactionRecord& record,
                            Synced on_synced) {
  queued_.push_back({record, std::move(on_synced)});
}

void SimDecisionLog::Sync() {
  std::vector<Write> round;
  round.swap(queued_);
  for (const Write& write : round) {
    const std::string& id = write.record.transaction_id();
    durable_[id] = write.record;
    if (write.record.outcome() == v1::OUTCOME_COMMITTED) {
      ever_committed_.insert(id);
    }
  }
  // Callbacks may queue more records: those belong to the next round.
  for (Write& write : round) {
    if (write.on_synced) write.on_synced();
  }
}

const internal::TransactionRecord* SimDecisionLog::Read(
    const std::string& transaction_id) const {
  auto it = durable_.find(transaction_id);
  return it == durable_.end() ? nullptr : &it->second;
}

}  // namespace twopc::simulation
