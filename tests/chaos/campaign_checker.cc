#include "tests/chaos/campaign_checker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace twopc::chaos {
namespace {

constexpr size_t kExamplesPerKind = 5;

using TransferIndex = std::map<std::string, const TransferRecord*>;
// Transfer name (message value) -> every position it was found at.
using Publications = std::map<std::string, std::vector<MessagePosition>>;

TransferIndex IndexByName(const std::vector<TransferRecord>& transfers) {
  TransferIndex index;
  for (const TransferRecord& t : transfers) index[t.name] = &t;
  return index;
}

Publications FindPublications(const ClusterObservation& observed) {
  Publications publications;
  for (size_t p = 0; p < observed.partitions.size(); ++p) {
    for (const QueuedMessage& m : observed.partitions[p].messages) {
      publications[m.value].push_back(
          {.partition = static_cast<int32_t>(p), .offset = m.offset});
    }
  }
  return publications;
}

std::string Describe(const MessagePosition& position) {
  return absl::StrCat("partition ", position.partition, " offset ",
                      position.offset);
}

void CheckBalance(int64_t opening_total, const ClusterObservation& observed,
                  CheckResult& result) {
  if (observed.total_balance != opening_total) {
    result.Add(Violation::kBalanceChanged,
               absl::StrCat("total ", observed.total_balance, ", opened with ",
                            opening_total));
  }
}

void CheckNothingUnfinished(const ClusterObservation& observed,
                            CheckResult& result) {
  if (observed.unfinished > 0) {
    result.Add(Violation::kUnfinishedAtEnd,
               absl::StrCat(observed.unfinished,
                            " transactions or branches still open"),
               observed.unfinished);
  }
}

// Markers against outcomes: all branches or none, and the right one.
void CheckBranches(const std::vector<TransferRecord>& transfers,
                   const ClusterObservation& observed, CheckResult& result) {
  for (const TransferRecord& t : transfers) {
    size_t applied = 0;
    for (const std::string& sidecar : t.participants) {
      auto it = observed.markers.find(sidecar);
      applied += it != observed.markers.end() && it->second.contains(t.name);
    }
    const std::string figures =
        absl::StrCat(t.name, ": applied on ", applied, " of ",
                     t.participants.size(), " branches");
    if (t.outcome == Outcome::kUnknown) {
      result.Add(Violation::kOutcomeUnknown, figures);
    }
    if (applied > 0 && applied < t.participants.size()) {
      result.Add(Violation::kPartlyApplied, figures);
    } else if (t.outcome == Outcome::kCommitted && applied == 0) {
      result.Add(Violation::kCommittedNotApplied, figures);
    } else if (t.outcome == Outcome::kAborted && applied > 0) {
      result.Add(Violation::kAbortedButApplied, figures);
    }
  }
}

// A marker of no transfer, or on a sidecar the transfer had no branch on.
void CheckStrayMarkers(const TransferIndex& index,
                       const ClusterObservation& observed,
                       CheckResult& result) {
  for (const auto& [sidecar, names] : observed.markers) {
    for (const std::string& name : names) {
      auto it = index.find(name);
      if (it == index.end() ||
          std::find(it->second->participants.begin(),
                    it->second->participants.end(),
                    sidecar) == it->second->participants.end()) {
        result.Add(Violation::kStrayMarker,
                   absl::StrCat("marker of ", name, " on ", sidecar));
      }
    }
  }
}

// Offsets run from 0 to the end offset without a hole.
void CheckOffsets(const ClusterObservation& observed, CheckResult& result) {
  for (size_t p = 0; p < observed.partitions.size(); ++p) {
    const PartitionContents& partition = observed.partitions[p];
    int64_t expected = 0;
    if (partition.log_start_offset != 0) {
      result.Add(Violation::kOffsetGap,
                 absl::StrCat("partition ", p, " starts at ",
                              partition.log_start_offset));
      expected = partition.log_start_offset;
    }
    for (const QueuedMessage& m : partition.messages) {
      if (m.offset != expected) {
        result.Add(Violation::kOffsetGap,
                   absl::StrCat("partition ", p, ": offset ", m.offset,
                                " follows ", expected - 1));
      }
      expected = m.offset + 1;
    }
    if (expected != partition.end_offset) {
      result.Add(Violation::kOffsetGap,
                 absl::StrCat("partition ", p, ": read up to ", expected,
                              ", end offset ", partition.end_offset));
    }
  }
}

// Each committed transfer's message once (where the client was told), and
// nothing else.
void CheckPublications(const TransferIndex& index,
                       const Publications& publications, CheckResult& result) {
  for (const auto& [name, positions] : publications) {
    auto it = index.find(name);
    if (it == index.end() || it->second->outcome != Outcome::kCommitted) {
      result.Add(Violation::kMessageOfUncommitted,
                 absl::StrCat("'", name, "' at ", Describe(positions[0])),
                 positions.size());
    } else if (positions.size() > 1) {
      result.Add(Violation::kDuplicateMessage,
                 absl::StrCat(name, " at ", Describe(positions[0]), " and ",
                              Describe(positions[1])),
                 positions.size() - 1);
    }
  }
  for (const auto& [name, transfer] : index) {
    if (transfer->outcome != Outcome::kCommitted) continue;
    auto it = publications.find(name);
    if (it == publications.end()) {
      result.Add(Violation::kMissingMessage, name);
    } else if (transfer->told_position.has_value() &&
               std::find(it->second.begin(), it->second.end(),
                         *transfer->told_position) == it->second.end()) {
      result.Add(
          Violation::kWrongPosition,
          absl::StrCat(name, ": told ", Describe(*transfer->told_position),
                       ", found at ", Describe(it->second[0])));
    }
  }
}

// Within a partition, no transfer B sits below a transfer A whose
// COMMITTED reply came before B was sent. Walks each partition from its
// highest offset down, remembering the earliest such reply seen above.
void CheckCommitOrder(const TransferIndex& index,
                      const ClusterObservation& observed, CheckResult& result) {
  for (size_t p = 0; p < observed.partitions.size(); ++p) {
    const std::vector<QueuedMessage>& messages =
        observed.partitions[p].messages;
    const TransferRecord* earliest_reply_above = nullptr;
    for (auto m = messages.rbegin(); m != messages.rend(); ++m) {
      auto it = index.find(m->value);
      if (it == index.end() || it->second->outcome != Outcome::kCommitted) {
        continue;  // counted by CheckPublications
      }
      const TransferRecord& below = *it->second;
      if (earliest_reply_above != nullptr &&
          earliest_reply_above->replied < below.sent) {
        result.Add(
            Violation::kCommitOrder,
            absl::StrCat(earliest_reply_above->name,
                         " was told COMMITTED before ", below.name,
                         " was sent, but sits above it in partition ", p));
      }
      if (below.reply == Reply::kCommitted &&
          (earliest_reply_above == nullptr ||
           below.replied < earliest_reply_above->replied)) {
        earliest_reply_above = &below;
      }
    }
  }
}

}  // namespace

const std::vector<Violation>& AllViolations() {
  static const auto* const kAll = new std::vector<Violation>{
      Violation::kBalanceChanged,       Violation::kPartlyApplied,
      Violation::kCommittedNotApplied,  Violation::kAbortedButApplied,
      Violation::kStrayMarker,          Violation::kOutcomeUnknown,
      Violation::kUnfinishedAtEnd,      Violation::kOffsetGap,
      Violation::kDuplicateMessage,     Violation::kMissingMessage,
      Violation::kMessageOfUncommitted, Violation::kWrongPosition,
      Violation::kCommitOrder};
  return *kAll;
}

const char* ViolationName(Violation violation) {
  switch (violation) {
    case Violation::kBalanceChanged:
      return "total balance changed";
    case Violation::kPartlyApplied:
      return "partly applied";
    case Violation::kCommittedNotApplied:
      return "committed but not applied";
    case Violation::kAbortedButApplied:
      return "aborted but applied";
    case Violation::kStrayMarker:
      return "marker of no such branch";
    case Violation::kOutcomeUnknown:
      return "outcome unknown after faults";
    case Violation::kUnfinishedAtEnd:
      return "unfinished after faults";
    case Violation::kOffsetGap:
      return "offset gap";
    case Violation::kDuplicateMessage:
      return "duplicate message";
    case Violation::kMissingMessage:
      return "committed message missing";
    case Violation::kMessageOfUncommitted:
      return "message of uncommitted transfer";
    case Violation::kWrongPosition:
      return "message not where the client was told";
    case Violation::kCommitOrder:
      return "message out of commit order";
  }
  return "?";
}

void CheckResult::Add(Violation kind, const std::string& example,
                      int64_t count) {
  counts_[kind] += count;
  std::vector<std::string>& examples = examples_[kind];
  if (examples.size() < kExamplesPerKind) examples.push_back(example);
}

int64_t CheckResult::count(Violation kind) const {
  auto it = counts_.find(kind);
  return it == counts_.end() ? 0 : it->second;
}

int64_t CheckResult::total() const {
  int64_t total = 0;
  for (const auto& [kind, count] : counts_) total += count;
  return total;
}

std::string CheckResult::ToString() const {
  std::string text = absl::StrCat("violations: ", total(), " (must be 0)\n");
  for (Violation kind : AllViolations()) {
    absl::StrAppendFormat(&text, "  %-40s %d\n", ViolationName(kind),
                          count(kind));
  }
  for (const auto& [kind, examples] : examples_) {
    for (const std::string& example : examples) {
      absl::StrAppend(&text, "  ! ", ViolationName(kind), ": ", example, "\n");
    }
  }
  return text;
}

CheckResult CheckCampaign(int64_t opening_total,
                          const std::vector<TransferRecord>& transfers,
                          const ClusterObservation& observed) {
  const TransferIndex index = IndexByName(transfers);
  CheckResult result;
  CheckBalance(opening_total, observed, result);
  CheckNothingUnfinished(observed, result);
  CheckBranches(transfers, observed, result);
  CheckStrayMarkers(index, observed, result);
  CheckOffsets(observed, result);
  CheckPublications(index, FindPublications(observed), result);
  CheckCommitOrder(index, observed, result);
  return result;
}

TransferTally Tally(const std::vector<TransferRecord>& transfers) {
  TransferTally tally;
  for (const TransferRecord& t : transfers) {
    ++tally.attempted;
    tally.committed += t.outcome == Outcome::kCommitted;
    tally.aborted += t.outcome == Outcome::kAborted;
    tally.unknown += t.outcome == Outcome::kUnknown;
    tally.rejected += t.reply == Reply::kRejected;
    if (t.reply == Reply::kAmbiguous) {
      ++tally.ambiguous;
      tally.ambiguous_committed += t.outcome == Outcome::kCommitted;
      tally.ambiguous_aborted += t.outcome == Outcome::kAborted;
    }
  }
  return tally;
}

}  // namespace twopc::chaos
