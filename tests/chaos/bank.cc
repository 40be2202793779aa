#include "tests/chaos/bank.h"

#include <random>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "google/protobuf/util/time_util.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::chaos {
namespace {

constexpr absl::Duration kSetupDeadline = absl::Seconds(30);
constexpr absl::Duration kGetDeadline = absl::Seconds(2);
constexpr absl::Duration kResolveRetryPause = absl::Milliseconds(100);

std::string AccountKey(int account) {
  return absl::StrCat(kAccountPrefix, account);
}

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// One transfer's choices.
struct TransferPlan {
  std::string name;
  int from_sidecar = 0;
  int to_sidecar = 0;
  int from_account = 0;
  int to_account = 0;
  int64_t amount = 0;
};

// Draws transfers for one client from its own seeded generator.
class TransferPlanner {
 public:
  TransferPlanner(const BankLayout& bank, const TransferLoad& load, int client)
      : bank_(bank),
        client_(client),
        max_amount_(load.max_amount),
        random_(load.seed ^ (kSeedSpread * static_cast<uint64_t>(client + 1))) {
  }

  TransferPlan Next(int n) {
    const int sidecars = static_cast<int>(bank_.sidecars.size());
    TransferPlan plan;
    plan.name = absl::StrCat("c", client_, "-", n);
    plan.from_sidecar = Uniform(0, sidecars - 1);
    // Any other sidecar: shift by 1..sidecars-1.
    plan.to_sidecar = (plan.from_sidecar + Uniform(1, sidecars - 1)) % sidecars;
    plan.from_account = Uniform(0, bank_.accounts_per_sidecar - 1);
    plan.to_account = Uniform(0, bank_.accounts_per_sidecar - 1);
    plan.amount = Uniform(1, max_amount_);
    return plan;
  }

 private:
  // Spreads the clients' seeds apart (the 64-bit golden ratio).
  static constexpr uint64_t kSeedSpread = 0x9E3779B97F4A7C15;

  int64_t Uniform(int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random_);
  }

  const BankLayout& bank_;
  const int client_;
  const int64_t max_amount_;
  std::mt19937_64 random_;
};

void AddBranch(v1::ExecuteRequest& request, const std::string& sidecar,
               const std::string& account, int64_t delta,
               const std::string& name) {
  v1::Branch* branch = request.add_branches();
  branch->set_participant_id(sidecar);
  v1::KvOperation::Add* add =
      branch->mutable_kv()->add_operations()->mutable_add();
  add->set_key(account);
  add->set_delta(delta);
  if (delta < 0) add->set_min(0);
  v1::KvOperation::Put* marker =
      branch->mutable_kv()->add_operations()->mutable_put();
  marker->set_key(absl::StrCat(kMarkerPrefix, name));
  marker->set_value(name);
}

v1::ExecuteRequest TransferRequest(const BankLayout& bank,
                                   const TransferLoad& load,
                                   const TransferPlan& plan) {
  v1::ExecuteRequest request;
  request.set_idempotency_key(plan.name);
  *request.mutable_timeout() =
      google::protobuf::util::TimeUtil::MillisecondsToDuration(
          absl::ToInt64Milliseconds(load.transaction_timeout));
  AddBranch(request, bank.sidecars[plan.from_sidecar],
            AccountKey(plan.from_account), -plan.amount, plan.name);
  AddBranch(request, bank.sidecars[plan.to_sidecar],
            AccountKey(plan.to_account), plan.amount, plan.name);
  v1::Message* message = request.add_messages();
  message->set_topic(bank.topic);
  message->set_key(plan.name);
  message->set_value(plan.name);
  return request;
}

// Records the reply to one Execute in `record`.
void RecordReply(const grpc::Status& status,
                 const v1::ExecuteResponse& response, TransferRecord& record) {
  if (status.ok()) {
    record.reply = Reply::kCommitted;
    record.outcome = Outcome::kCommitted;
    if (response.transaction().message_positions_size() == 1) {
      const v1::MessagePosition& told =
          response.transaction().message_positions(0);
      record.told_position = {.partition = told.partition(),
                              .offset = told.offset()};
    }
    return;
  }
  const absl::Status error = FromGrpcStatus(status);
  record.error = absl::StrCat(absl::StatusCodeToString(error.code()), ": ",
                              error.message());
  if (error.code() == absl::StatusCode::kAborted) {
    record.reply = Reply::kAborted;
    record.outcome = Outcome::kAborted;
  } else if (IsAmbiguous(error.code())) {
    record.reply = Reply::kAmbiguous;
    record.outcome = Outcome::kUnknown;
  } else {
    record.reply = Reply::kRejected;
    record.outcome = Outcome::kAborted;
  }
}

// One client's loop: sequential transfers until its count or `end`.
std::vector<TransferRecord> RunClient(const std::string& coordinator,
                                      const BankLayout& bank,
                                      const TransferLoad& load, int client,
                                      absl::Time end) {
  auto stub =
      v1::TransactionService::NewStub(FastReconnectChannel(coordinator));
  TransferPlanner planner(bank, load, client);
  std::vector<TransferRecord> records;
  for (int n = 0; n < load.transfers_per_client && absl::Now() < end; ++n) {
    const TransferPlan plan = planner.Next(n);
    TransferRecord& record = records.emplace_back();
    record.name = plan.name;
    record.participants = {bank.sidecars[plan.from_sidecar],
                           bank.sidecars[plan.to_sidecar]};
    grpc::ClientContext context;
    SetDeadline(context, load.request_deadline);
    // Wait for a restarting coordinator instead of failing at once.
    context.set_wait_for_ready(true);
    v1::ExecuteResponse response;
    record.sent = std::chrono::steady_clock::now();
    const grpc::Status status =
        stub->Execute(&context, TransferRequest(bank, load, plan), &response);
    record.replied = std::chrono::steady_clock::now();
    RecordReply(status, response, record);
  }
  return records;
}

// The outcome of the transfer with idempotency key `name`: kUnknown while
// undecided or unreachable.
Outcome AskOutcome(v1::TransactionService::Stub& stub,
                   const std::string& name) {
  grpc::ClientContext context;
  SetDeadline(context, kGetDeadline);
  context.set_wait_for_ready(true);
  v1::GetRequest request;
  request.mutable_ref()->set_idempotency_key(name);
  v1::GetResponse response;
  const grpc::Status status = stub.Get(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return Outcome::kAborted;
  }
  if (!status.ok()) return Outcome::kUnknown;
  switch (response.transaction().outcome()) {
    case v1::OUTCOME_COMMITTED:
      return Outcome::kCommitted;
    case v1::OUTCOME_ABORTED:
      return Outcome::kAborted;
    default:
      return Outcome::kUnknown;
  }
}

}  // namespace

std::shared_ptr<grpc::Channel> FastReconnectChannel(
    const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status OpenBank(const std::string& coordinator, const BankLayout& bank) {
  auto channel = FastReconnectChannel(coordinator);
  {
    grpc::ClientContext context;
    SetDeadline(context, kSetupDeadline);
    v1::CreateTopicRequest request;
    request.set_name(bank.topic);
    request.set_partitions(bank.partitions);
    v1::TopicInfo info;
    const grpc::Status status = v1::AdminService::NewStub(channel)->CreateTopic(
        &context, request, &info);
    if (!status.ok()) return FromGrpcStatus(status);
  }
  v1::ExecuteRequest request;
  request.set_wait_for_completion(true);
  for (const std::string& sidecar : bank.sidecars) {
    v1::Branch* branch = request.add_branches();
    branch->set_participant_id(sidecar);
    for (int account = 0; account < bank.accounts_per_sidecar; ++account) {
      v1::KvOperation::Put* put =
          branch->mutable_kv()->add_operations()->mutable_put();
      put->set_key(AccountKey(account));
      put->set_value(absl::StrCat(bank.opening_balance));
    }
  }
  grpc::ClientContext context;
  SetDeadline(context, kSetupDeadline);
  v1::ExecuteResponse response;
  return FromGrpcStatus(v1::TransactionService::NewStub(channel)->Execute(
      &context, request, &response));
}

std::vector<TransferRecord> RunTransfers(const std::string& coordinator,
                                         const BankLayout& bank,
                                         const TransferLoad& load) {
  const absl::Time end = absl::Now() + load.run_for;
  std::vector<std::vector<TransferRecord>> per_client(load.clients);
  {
    std::vector<std::jthread> clients;
    for (int c = 0; c < load.clients; ++c) {
      clients.emplace_back([&, c] {
        per_client[c] = RunClient(coordinator, bank, load, c, end);
      });
    }
  }
  std::vector<TransferRecord> all;
  for (std::vector<TransferRecord>& records : per_client) {
    all.insert(all.end(), std::make_move_iterator(records.begin()),
               std::make_move_iterator(records.end()));
  }
  return all;
}

void ResolveAmbiguous(const std::string& coordinator, absl::Duration timeout,
                      std::vector<TransferRecord>& transfers) {
  auto stub =
      v1::TransactionService::NewStub(FastReconnectChannel(coordinator));
  const absl::Time deadline = absl::Now() + timeout;
  for (TransferRecord& t : transfers) {
    if (t.reply != Reply::kAmbiguous) continue;
    while (absl::Now() < deadline) {
      t.outcome = AskOutcome(*stub, t.name);
      if (t.outcome != Outcome::kUnknown) break;
      absl::SleepFor(kResolveRetryPause);
    }
  }
}

}  // namespace twopc::chaos
