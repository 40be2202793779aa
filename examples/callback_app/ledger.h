// Ledger: a tiny file-backed ledger of integer account balances, the example
// application behind a twopc-participant in callback mode.
//
// A branch payload is text, one "ACCOUNT DELTA" pair per line, e.g.
//   alice -30
//   bob 30
// Prepare stages the branch if no balance would go below zero and no
// account is staged by another transaction (else it votes NO, with the
// reason); Commit applies the staged deltas; Abort drops them. All three are
// idempotent by transaction id, as callback.proto requires: a repeated
// Prepare gets the same vote, Commit/Abort of a finished or unknown
// transaction is OK.
//
// Durability: every change is appended to a journal file and fsync'd before
// the call returns; the journal is replayed at start-up.
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_EXAMPLES_CALLBACK_APP_LEDGER_H_
#define TWOPC_EXAMPLES_CALLBACK_APP_LEDGER_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "twopc/v1/callback.grpc.pb.h"

namespace twopc::examples {

class Ledger {
 public:
  struct Vote {
    bool yes = false;
    std::string reason;
  };

  // Opens (creating) the journal at `path` and replays it.
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(const std::string& path);
  ~Ledger();

  absl::StatusOr<Vote> Prepare(const std::string& txid,
                               const std::string& payload)
      ABSL_LOCKS_EXCLUDED(mu_);
  // OK; the journal write error otherwise.
  absl::Status Commit(const std::string& txid) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Abort(const std::string& txid) ABSL_LOCKS_EXCLUDED(mu_);

  // "alice=70 bob=80" (sorted by account).
  std::string Balances() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Deltas = std::vector<std::pair<std::string, int64_t>>;
  enum class Outcome { kStaged, kCommitted, kAborted, kRefused };
  struct Tx {
    Outcome outcome;
    Deltas deltas;
    std::string reason;
  };

  explicit Ledger(std::FILE* journal) : journal_(journal) {}
  absl::Status Append(const std::string& line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replays one journal line.
  void Replay(const std::string& line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Vote Evaluate(const std::string& txid, const std::string& payload,
                Deltas* deltas) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyCommit(Tx& tx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::FILE* const journal_;
  std::map<std::string, int64_t> balances_ ABSL_GUARDED_BY(mu_);
  // Account -> transaction that staged a change to it.
  std::map<std::string, std::string> staged_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Tx> transactions_ ABSL_GUARDED_BY(mu_);
};

// ApplicationCallbackService over a Ledger. Prints one line per outcome.
class LedgerService final : public v1::ApplicationCallbackService::Service {
 public:
  // `prepare_reply_delay` delays every Prepare answer after the work is
  // done (a failure-injection hook for tests: the answer arrives too late).
  explicit LedgerService(Ledger* ledger,
                         absl::Duration prepare_reply_delay = absl::ZeroDuration())
      : ledger_(ledger), prepare_reply_delay_(prepare_reply_delay) {}
  grpc::Status Prepare(grpc::ServerContext*, const v1::PrepareCallbackRequest*,
                       v1::PrepareCallbackResponse*) override;
  grpc::Status Commit(grpc::ServerContext*, const v1::CommitCallbackRequest*,
                      v1::CommitCallbackResponse*) override;
  grpc::Status Abort(grpc::ServerContext*, const v1::AbortCallbackRequest*,
                     v1::AbortCallbackResponse*) override;

 private:
  Ledger* const ledger_;
  const absl::Duration prepare_reply_delay_;
};

}  // namespace twopc::examples

#endif  // TWOPC_EXAMPLES_CALLBACK_APP_LEDGER_H_
