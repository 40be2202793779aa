// TransactionId: coordinator-assigned transaction ids, "<epoch>-<sequence>"
// in decimal (e.g. "3-1042"). Unique across restarts because the epoch grows
// on every coordinator start; ordered by creation within a coordinator.
#ifndef TWOPC_COMMON_TRANSACTION_ID_H_
#define TWOPC_COMMON_TRANSACTION_ID_H_

#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace twopc {

struct TransactionId {
  uint64_t epoch = 0;
  uint64_t sequence = 0;

  std::string ToString() const { return absl::StrCat(epoch, "-", sequence); }

  // Parses ToString()'s form; nullopt for anything else.
  static absl::optional<TransactionId> Parse(absl::string_view text) {
    const size_t dash = text.find('-');
    TransactionId id;
    if (dash == absl::string_view::npos ||
        !absl::SimpleAtoi(text.substr(0, dash), &id.epoch) ||
        !absl::SimpleAtoi(text.substr(dash + 1), &id.sequence) ||
        id.ToString() != text) {
      return absl::nullopt;
    }
    return id;
  }

  friend bool operator==(const TransactionId& a, const TransactionId& b) {
    return a.epoch == b.epoch && a.sequence == b.sequence;
  }
};

}  // namespace twopc

#endif  // TWOPC_COMMON_TRANSACTION_ID_H_
