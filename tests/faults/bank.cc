#include "tests/faults/bank.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "tests/faults/waits.h"

namespace twopc::testing {
namespace {

constexpr char kAccountKey[] = "balance/acct";
constexpr char kTopic[] = "transfers";
// How long a wait for recovery (restarts, in-doubt resolution, retries) may
// take before it counts as a failure.
constexpr absl::Duration kRecoveryWait = absl::Seconds(45);
// Each transfer's timeout: a sidecar that died mid-prepare aborts it then.
constexpr absl::Duration kTransferTimeout = absl::Seconds(5);
constexpr absl::Duration kCallTimeout = absl::Seconds(30);

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
  return context;
}

std::string Other(const std::string& sidecar) {
  return sidecar == Bank::kP1 ? Bank::kP2 : Bank::kP1;
}

bool IsFinal(v1::TransactionState state) {
  return state == v1::TRANSACTION_STATE_COMMITTED ||
         state == v1::TRANSACTION_STATE_ABORTED;
}

}  // namespace

absl::Status Bank::Open() {
  RETURN_IF_ERROR(cluster_->StartCoordinator());
  for (const char* sidecar : {kP1, kP2}) RETURN_IF_ERROR(Launch(sidecar, {}));
  RETURN_IF_ERROR(cluster_->WaitForParticipants({kP1, kP2}, kRecoveryWait));
  v1::ExecuteRequest seed;
  for (const char* sidecar : {kP1, kP2}) {
    v1::Branch* branch = seed.add_branches();
    branch->set_participant_id(sidecar);
    auto* put = branch->mutable_kv()->add_operations()->mutable_put();
    put->set_key(kAccountKey);
    put->set_value(absl::StrCat(kOpening));
  }
  seed.set_wait_for_completion(true);
  v1::ExecuteResponse seeded;
  RETURN_IF_ERROR(FromGrpcStatus(
      cluster_->Transactions()->Execute(Context().get(), seed, &seeded)));
  v1::CreateTopicRequest topic;
  topic.set_name(kTopic);
  topic.set_partitions(1);
  v1::TopicInfo created;
  return FromGrpcStatus(
      cluster_->Admin()->CreateTopic(Context().get(), topic, &created));
}

absl::Status Bank::Start(const std::string& name,
                         const std::vector<std::string>& extra_flags) {
  RETURN_IF_ERROR(Launch(name, extra_flags));
  return cluster_->WaitForParticipants({kP1, kP2}, kRecoveryWait);
}

absl::Status Bank::Launch(const std::string& name,
                          const std::vector<std::string>& extra_flags) {
  if (name == LocalCluster::kCoordinator) {
    return cluster_->StartCoordinator(extra_flags);
  }
  // Prepared branches orphaned by a crash are resolved within the test.
  std::vector<std::string> flags = {"--in_doubt_after=1"};
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  return cluster_->StartParticipant(name, flags);
}

Bank::Receipt Bank::Transfer(const std::string& from, int64_t amount) {
  Entry& entry = transfers_.emplace_back();
  entry.from = from;
  entry.to = Other(from);
  entry.amount = amount;
  entry.receipt.key = absl::StrCat("transfer-", transfers_.size());

  v1::ExecuteRequest request;
  request.set_idempotency_key(entry.receipt.key);
  request.mutable_timeout()->set_seconds(
      absl::ToInt64Seconds(kTransferTimeout));
  v1::Branch* debit = request.add_branches();
  debit->set_participant_id(entry.from);
  auto* sub = debit->mutable_kv()->add_operations()->mutable_add();
  sub->set_key(kAccountKey);
  sub->set_delta(-amount);
  sub->set_min(0);
  v1::Branch* credit = request.add_branches();
  credit->set_participant_id(entry.to);
  auto* add = credit->mutable_kv()->add_operations()->mutable_add();
  add->set_key(kAccountKey);
  add->set_delta(amount);
  v1::Message* message = request.add_messages();
  message->set_topic(kTopic);
  message->set_key(entry.receipt.key);
  v1::ExecuteResponse response;
  entry.receipt.told = FromGrpcStatus(
      cluster_->Transactions()->Execute(Context().get(), request, &response));
  return entry.receipt;
}

absl::StatusOr<v1::Transaction> Bank::Lookup(const std::string& key) const {
  v1::GetRequest request;
  request.mutable_ref()->set_idempotency_key(key);
  v1::GetResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      cluster_->Transactions()->Get(Context().get(), request, &response)));
  return response.transaction();
}

absl::optional<bool> Bank::Outcome(const std::string& key) const {
  absl::StatusOr<v1::Transaction> transaction = Lookup(key);
  if (absl::IsNotFound(transaction.status())) return false;
  if (!transaction.ok() || !IsFinal(transaction->state())) return absl::nullopt;
  return transaction->state() == v1::TRANSACTION_STATE_COMMITTED;
}

absl::StatusOr<bool> Bank::Committed(const std::string& key) const {
  absl::optional<bool> outcome;
  RETURN_IF_ERROR(PollUntil(
      [&] {
        outcome = Outcome(key);
        return outcome.has_value();
      },
      kRecoveryWait, absl::StrCat(key, " becoming final")));
  return *outcome;
}

absl::Status Bank::WaitUntilNoBranchIsPrepared() {
  return PollUntil([&] { return Transfer(kP1, 1).told.ok(); }, kRecoveryWait,
                   "a transfer committing (every account lock free)");
}

absl::StatusOr<int64_t> Bank::Balance(const std::string& sidecar) const {
  v1::KvGetRequest request;
  request.set_key(kAccountKey);
  v1::KvGetResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      cluster_->Kv(sidecar)->Get(Context().get(), request, &response)));
  int64_t balance = 0;
  if (!absl::SimpleAtoi(response.value(), &balance)) {
    return absl::DataLossError(
        absl::StrCat(sidecar, " holds balance '", response.value(), "'"));
  }
  return balance;
}

absl::StatusOr<std::vector<std::string>> Bank::PublishedKeys() const {
  v1::FetchRequest request;
  request.set_topic(kTopic);
  request.set_max_messages(10'000);
  v1::FetchResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      cluster_->Queues()->Fetch(Context().get(), request, &response)));
  std::vector<std::string> keys;
  for (const v1::QueueMessage& message : response.messages()) {
    if (message.offset() != static_cast<int64_t>(keys.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("offset ", message.offset(), " follows offset ",
                       static_cast<int64_t>(keys.size()) - 1, ": a gap"));
    }
    keys.push_back(message.key());
  }
  return keys;
}

absl::Status Bank::Verify() {
  RETURN_IF_ERROR(WaitUntilNoBranchIsPrepared());
  std::map<std::string, int64_t> expected = {{kP1, kOpening}, {kP2, kOpening}};
  std::vector<std::string> committed_keys;
  for (const Entry& entry : transfers_) {
    const Receipt& receipt = entry.receipt;
    ASSIGN_OR_RETURN(const bool committed, Committed(receipt.key));
    const bool told_committed = receipt.told.ok();
    const bool told_aborted =
        !receipt.told.ok() && !IsAmbiguous(receipt.told.code());
    if ((told_committed && !committed) || (told_aborted && committed)) {
      return absl::FailedPreconditionError(absl::StrCat(
          receipt.key, " ended ", committed ? "committed" : "aborted",
          " but its client was told: ", receipt.told.ToString()));
    }
    if (!committed) continue;
    expected[entry.from] -= entry.amount;
    expected[entry.to] += entry.amount;
    committed_keys.push_back(receipt.key);
  }
  for (const auto& [sidecar, balance] : expected) {
    ASSIGN_OR_RETURN(const int64_t actual, Balance(sidecar));
    if (actual != balance) {
      return absl::FailedPreconditionError(absl::StrCat(
          sidecar, " holds ", actual, " but its committed transfers make ",
          balance, ": a branch disagrees with its transaction's outcome"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> published, PublishedKeys());
  std::sort(published.begin(), published.end());
  std::sort(committed_keys.begin(), committed_keys.end());
  if (published != committed_keys) {
    return absl::FailedPreconditionError(
        absl::StrCat("published messages [", absl::StrJoin(published, ","),
                     "] are not those of the committed transfers [",
                     absl::StrJoin(committed_keys, ","), "], each once"));
  }
  return absl::OkStatus();
}

}  // namespace twopc::testing
