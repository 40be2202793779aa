// Resource: what a sidecar applies branches to. BranchManager puts the
// barrier (dedup, abort-before-prepare, unknown branches, epochs) and the
// durable branch records in front of it, so a Resource only sees:
//   * Prepare at most once per branch while the sidecar keeps a record of
//     it: again only after a restart that found no vote recorded (a
//     resource that applies_unknown_aborts() is told to abort such a branch
//     instead: see BranchManager's intent record), or for a late duplicate
//     of a branch that voted READ_ONLY or was forgotten;
//   * ApplyOutcome only after the decision is durably recorded, possibly
//     again after a restart when the record says "not yet applied";
//   * Restore at start-up for every branch recorded PREPARED.
//
// Thread-safety: implementations must accept calls from any thread.
#ifndef TWOPC_PARTICIPANT_RESOURCE_H_
#define TWOPC_PARTICIPANT_RESOURCE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "participant/branch_store.h"
#include "twopc/v1/common.pb.h"

namespace twopc::participant {

struct PrepareResult {
  // VOTE_YES, VOTE_NO or VOTE_READ_ONLY.
  v1::Vote vote = v1::VOTE_NO;
  // For VOTE_NO: why, for a person.
  std::string reason;
  // For VOTE_NO: the resource may have staged something anyway (e.g. an
  // application's Prepare whose answer was lost), so it must be told to
  // abort, retried until it acknowledges.
  bool may_hold_state = false;
  // For VOTE_YES: resource state to keep in the PREPARED record (e.g. the kv
  // writes and locked keys). The resource must be able to commit from it
  // alone after a restart.
  BranchRecord prepared;

  // A NO vote with `reason`.
  static PrepareResult No(std::string reason) {
    PrepareResult result;
    result.vote = v1::VOTE_NO;
    result.reason = std::move(reason);
    return result;
  }
};

class Resource {
 public:
  using PrepareDone = std::function<void(PrepareResult result)>;
  using ApplyDone = std::function<void()>;
  // A delivery attempt failed with this error; it is retried.
  using ApplyDelayed = std::function<void(const absl::Status& error)>;

  virtual ~Resource() = default;

  // "kv" or "callback" (ParticipantHello.resource, RegisterRequest.resource).
  virtual std::string kind() const = 0;

  // True when committing is fully described by the StoreBatch that
  // AddCommitEffects fills (the record is then written applied=true and
  // ApplyOutcome only releases in-memory state). False when the outcome has
  // to be delivered elsewhere after it is recorded.
  virtual bool applies_in_batch() const = 0;

  // Validates and reserves `branch`. `done` is called exactly once, inline
  // or later, from any thread. VOTE_YES reserves (e.g. locks) until
  // ApplyOutcome; NO and READ_ONLY reserve nothing.
  virtual void Prepare(const std::string& transaction_id,
                       const v1::Branch& branch, absl::Time deadline,
                       PrepareDone done) = 0;

  // Adds the durable effects of committing the branch prepared as
  // `prepared` to `batch`.
  virtual void AddCommitEffects(const BranchRecord& prepared,
                                StoreBatch* batch) = 0;

  // Called once the decision (`committed` or not) is durable. Releases what
  // Prepare reserved and delivers the outcome; `done` runs once it has been
  // delivered (for a callback application: acknowledged; retried until
  // then). Before that, `delayed` runs after each failed attempt (never for
  // a resource that applies in batch). Also called for branches the
  // resource never prepared in this process (after a restart, or an abort
  // of an unknown branch) and must be harmless then.
  virtual void ApplyOutcome(const std::string& transaction_id,
                            const BranchRecord& record, bool committed,
                            ApplyDone done, ApplyDelayed delayed) = 0;

  // Whether the resource may hold staged state the sidecar has no record of
  // (a callback application that staged a branch whose vote was lost in a
  // crash): an abort of a branch unknown to the sidecar is then still
  // delivered with ApplyOutcome, and BranchManager syncs an intent record
  // before each Prepare so that a crash before the vote ends in an abort.
  virtual bool applies_unknown_aborts() const = 0;

  // At start-up, for each branch recorded PREPARED: re-take what Prepare
  // reserved.
  virtual void Restore(const std::string& transaction_id,
                       const BranchRecord& prepared) = 0;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_RESOURCE_H_
