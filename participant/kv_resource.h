// KvResource: the built-in transactional key-value store (Resource 1).
//
// A branch (v1::KvBranch) is a list of put / delete / add / expect
// operations applied in order. Prepare validates every operation against
// committed state and takes an exclusive in-memory lock on every key the
// branch names; a key already locked by another branch makes the vote NO at
// once (no waiting, hence no deadlock). Because a locked key cannot change,
// Prepare computes the final values then and stores them in the PREPARED
// record; commit writes them in the same synced batch as the COMMITTED
// record. Locks are released only once the decision is durable (so a later
// prepare always reads the state that decision left), and re-taken from the
// PREPARED records after a restart.
//
// A branch of only `expect` operations that hold votes READ_ONLY and keeps
// no lock.
//
// Limits (VOTE_NO with a reason, nothing reserved): 1..1000 operations; keys
// 1..1024 bytes; values <= 1 MiB - 4 KiB; whole branch <= 1 MiB; every
// operation must have its kind set (and an expect its condition). The
// coordinator enforces the same limits (coordinator/limits.h) before a
// branch gets here.
//
// Thread-safety: all methods may be called concurrently. Prepare reads the
// store without holding the lock table's mutex.
#ifndef TWOPC_PARTICIPANT_KV_RESOURCE_H_
#define TWOPC_PARTICIPANT_KV_RESOURCE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "participant/resource.h"

namespace twopc::participant {

// The key `op` acts on; empty when no operation is set.
const std::string& KeyOf(const v1::KvOperation& op);

struct KvLimits {
  size_t max_operations = 1000;
  size_t max_key_bytes = 1024;
  // Below max_branch_bytes by more than the longest key and the encoding,
  // so that a put of the largest value fits in a branch.
  size_t max_value_bytes = (1 << 20) - (4 << 10);
  size_t max_branch_bytes = 1 << 20;
};

class KvResource : public Resource {
 public:
  // `store` is not owned and must outlive the resource.
  explicit KvResource(BranchStore* store, KvLimits limits = KvLimits())
      : store_(store), limits_(limits) {}

  std::string kind() const override { return "kv"; }
  bool applies_in_batch() const override { return true; }
  bool applies_unknown_aborts() const override { return false; }

  // Calls `done` inline.
  void Prepare(const std::string& transaction_id, const v1::Branch& branch,
               absl::Time deadline, PrepareDone done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void AddCommitEffects(const BranchRecord& prepared,
                        StoreBatch* batch) override;
  // Releases the branch's locks; calls `done` inline (never `delayed`).
  void ApplyOutcome(const std::string& transaction_id,
                    const BranchRecord& record, bool committed,
                    ApplyDone done, ApplyDelayed delayed) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Restore(const std::string& transaction_id,
               const BranchRecord& prepared) override ABSL_LOCKS_EXCLUDED(mu_);

  // The branch holding the lock on `key`, or "" when unlocked.
  std::string LockHolder(const std::string& key) const ABSL_LOCKS_EXCLUDED(mu_);
  size_t locked_keys() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Validation of the request alone; "" when fine, else the NO reason.
  std::string CheckLimits(const v1::KvBranch& branch) const;
  PrepareResult Evaluate(const v1::KvBranch& branch,
                         const std::vector<std::string>& keys);
  void Unlock(const std::string& transaction_id,
              const std::vector<std::string>& keys) ABSL_LOCKS_EXCLUDED(mu_);

  BranchStore* const store_;
  const KvLimits limits_;
  mutable absl::Mutex mu_;
  // key -> transaction holding it.
  absl::flat_hash_map<std::string, std::string> locks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_KV_RESOURCE_H_
