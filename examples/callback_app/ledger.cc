#include "examples/callback_app/ledger.h"

#include <unistd.h>

#include <fstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"

namespace twopc::examples {

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path) {
  std::vector<std::string> lines;
  {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
  }
  std::FILE* journal = std::fopen(path.c_str(), "a");
  if (journal == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open journal ", path));
  }
  std::unique_ptr<Ledger> ledger(new Ledger(journal));
  absl::MutexLock lock(&ledger->mu_);
  for (const std::string& line : lines) ledger->Replay(line);
  return ledger;
}

Ledger::~Ledger() { std::fclose(journal_); }

absl::Status Ledger::Append(const std::string& line) {
  if (std::fputs((line + "\n").c_str(), journal_) < 0 ||
      std::fflush(journal_) != 0 || fsync(fileno(journal_)) != 0) {
    return absl::InternalError("cannot write the ledger journal");
  }
  return absl::OkStatus();
}

void Ledger::Replay(const std::string& line) {
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() < 2) return;
  const std::string txid = absl::HexStringToBytes(parts[1]);
  const std::string arg = parts.size() > 2 ? absl::HexStringToBytes(parts[2]) : "";
  if (parts[0] == "S") {
    Deltas deltas;
    Evaluate(txid, arg, &deltas);
    for (const auto& [account, delta] : deltas) staged_[account] = txid;
    transactions_[txid] = {Outcome::kStaged, std::move(deltas), ""};
  } else if (parts[0] == "R") {
    transactions_[txid] = {Outcome::kRefused, {}, arg};
  } else if (parts[0] == "C") {
    auto it = transactions_.find(txid);
    if (it != transactions_.end() && it->second.outcome == Outcome::kStaged) {
      ApplyCommit(it->second);
    }
  } else if (parts[0] == "A") {
    auto it = transactions_.find(txid);
    if (it != transactions_.end() && it->second.outcome == Outcome::kStaged) {
      for (const auto& [account, delta] : it->second.deltas) staged_.erase(account);
      it->second.outcome = Outcome::kAborted;
    }
  }
}

Ledger::Vote Ledger::Evaluate(const std::string& txid,
                              const std::string& payload,
                              Deltas* deltas) const {
  std::map<std::string, int64_t> after;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(payload, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t delta = 0;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[1], &delta)) {
      return {false, absl::StrCat("payload line ", line_number,
                                  " is not 'ACCOUNT DELTA'")};
    }
    const std::string account(fields[0]);
    auto staged = staged_.find(account);
    if (staged != staged_.end() && staged->second != txid) {
      return {false, absl::StrCat("account ", account,
                                  " has a pending change by ", staged->second)};
    }
    if (!after.contains(account)) {
      auto it = balances_.find(account);
      after[account] = it == balances_.end() ? 0 : it->second;
    }
    if (__builtin_add_overflow(after[account], delta, &after[account])) {
      return {false, absl::StrCat("balance of ", account, " would overflow")};
    }
    deltas->emplace_back(account, delta);
  }
  if (deltas->empty()) return {false, "payload has no 'ACCOUNT DELTA' lines"};
  for (const auto& [account, balance] : after) {
    if (balance < 0) {
      return {false, absl::StrCat("insufficient funds: ", account,
                                  " would have ", balance)};
    }
  }
  return {true, ""};
}

void Ledger::ApplyCommit(Tx& tx) {
  for (const auto& [account, delta] : tx.deltas) {
    balances_[account] += delta;
    staged_.erase(account);
  }
  tx.outcome = Outcome::kCommitted;
}

absl::StatusOr<Ledger::Vote> Ledger::Prepare(const std::string& txid,
                                             const std::string& payload) {
  absl::MutexLock lock(&mu_);
  auto it = transactions_.find(txid);
  if (it != transactions_.end()) {
    // Same question, same answer.
    switch (it->second.outcome) {
      case Outcome::kStaged:
      case Outcome::kCommitted:
        return Vote{true, ""};
      case Outcome::kRefused:
        return Vote{false, it->second.reason};
      case Outcome::kAborted:
        return Vote{false, "transaction already aborted"};
    }
  }
  Deltas deltas;
  Vote vote = Evaluate(txid, payload, &deltas);
  if (!vote.yes) {
    if (absl::Status s = Append(absl::StrCat("R ", absl::BytesToHexString(txid),
                                             " ",
                                             absl::BytesToHexString(vote.reason)));
        !s.ok()) {
      return s;
    }
    transactions_[txid] = {Outcome::kRefused, {}, vote.reason};
    return vote;
  }
  if (absl::Status s = Append(absl::StrCat("S ", absl::BytesToHexString(txid),
                                           " ", absl::BytesToHexString(payload)));
      !s.ok()) {
    return s;
  }
  for (const auto& [account, delta] : deltas) staged_[account] = txid;
  transactions_[txid] = {Outcome::kStaged, std::move(deltas), ""};
  return vote;
}

absl::Status Ledger::Commit(const std::string& txid) {
  absl::MutexLock lock(&mu_);
  auto it = transactions_.find(txid);
  if (it == transactions_.end() || it->second.outcome != Outcome::kStaged) {
    return absl::OkStatus();  // finished or unknown: nothing to do
  }
  if (absl::Status s = Append(absl::StrCat("C ", absl::BytesToHexString(txid)));
      !s.ok()) {
    return s;
  }
  ApplyCommit(it->second);
  return absl::OkStatus();
}

absl::Status Ledger::Abort(const std::string& txid) {
  absl::MutexLock lock(&mu_);
  auto it = transactions_.find(txid);
  if (it == transactions_.end() || it->second.outcome != Outcome::kStaged) {
    return absl::OkStatus();
  }
  if (absl::Status s = Append(absl::StrCat("A ", absl::BytesToHexString(txid)));
      !s.ok()) {
    return s;
  }
  for (const auto& [account, delta] : it->second.deltas) staged_.erase(account);
  it->second.outcome = Outcome::kAborted;
  return absl::OkStatus();
}

std::string Ledger::Balances() const {
  absl::MutexLock lock(&mu_);
  return absl::StrJoin(balances_, " ", absl::PairFormatter("="));
}

grpc::Status LedgerService::Prepare(grpc::ServerContext*,
                                    const v1::PrepareCallbackRequest* request,
                                    v1::PrepareCallbackResponse* response) {
  absl::StatusOr<Ledger::Vote> vote =
      ledger_->Prepare(request->transaction_id(), request->payload());
  if (!vote.ok()) return ToGrpcStatus(vote.status());
  response->set_vote(vote->yes ? v1::VOTE_YES : v1::VOTE_NO);
  response->set_reason(vote->reason);
  std::printf("ledger: prepared %s: %s\n", request->transaction_id().c_str(),
              vote->yes ? "YES" : ("NO (" + vote->reason + ")").c_str());
  std::fflush(stdout);
  if (prepare_reply_delay_ > absl::ZeroDuration()) {
    absl::SleepFor(prepare_reply_delay_);
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::Commit(grpc::ServerContext*,
                                   const v1::CommitCallbackRequest* request,
                                   v1::CommitCallbackResponse*) {
  absl::Status status = ledger_->Commit(request->transaction_id());
  if (!status.ok()) return ToGrpcStatus(status);
  std::printf("ledger: committed %s: %s\n", request->transaction_id().c_str(),
              ledger_->Balances().c_str());
  std::fflush(stdout);
  return grpc::Status::OK;
}

grpc::Status LedgerService::Abort(grpc::ServerContext*,
                                  const v1::AbortCallbackRequest* request,
                                  v1::AbortCallbackResponse*) {
  absl::Status status = ledger_->Abort(request->transaction_id());
  if (!status.ok()) return ToGrpcStatus(status);
  std::printf("ledger: aborted %s: %s\n", request->transaction_id().c_str(),
              ledger_->Balances().c_str());
  std::fflush(stdout);
  return grpc::Status::OK;
}

}  // namespace twopc::examples
