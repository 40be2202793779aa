#include "tests/fuzz/fuzz_world.h"

#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "tests/fuzz/raw_call.h"

namespace twopc::fuzz {
namespace {

constexpr absl::Duration kSetupTimeout = absl::Seconds(20);
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

// `key` quoted, escaped and shortened.
std::string Quote(const std::string& key) {
  return absl::StrCat("'", absl::CHexEscape(key.substr(0, 64)),
                      key.size() > 64 ? "...'" : "'");
}

// The first difference between two maps keyed by strings, for an error
// message; empty if none.
template <typename Map>
std::string FirstDifference(const Map& before, const Map& after) {
  for (const auto& [key, value] : after) {
    auto it = before.find(key);
    if (it == before.end()) return absl::StrCat("added ", Quote(key));
    if (it->second != value) return absl::StrCat("changed ", Quote(key));
  }
  for (const auto& [key, value] : before) {
    if (after.count(key) == 0) return absl::StrCat("removed ", Quote(key));
  }
  return "";
}

// An element of `after` that is not in `before`; empty if none.
std::string FirstAdded(const std::set<std::string>& before,
                       const std::set<std::string>& after) {
  for (const std::string& item : after) {
    if (before.count(item) == 0) return item;
  }
  return "";
}

}  // namespace

absl::Status WaitUntil(const std::function<absl::Status()>& done,
                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status status = done();
  while (!status.ok() && absl::Now() < deadline) {
    absl::SleepFor(kPollInterval);
    status = done();
  }
  return status;
}

absl::Status CheckNothingLeftBehind(const State& before, const State& after) {
  std::vector<std::string> problems;
  if (std::string added =
          FirstAdded(before.live_transactions, after.live_transactions);
      !added.empty()) {
    problems.push_back(absl::StrCat("a transaction was left behind: ", added));
  }
  if (after.committed_total != before.committed_total) {
    problems.push_back(absl::StrCat("committed_total went from ",
                                    before.committed_total, " to ",
                                    after.committed_total));
  }
  if (std::string d = FirstDifference(before.topics, after.topics);
      !d.empty()) {
    problems.push_back("topics: " + d);
  }
  if (std::string d = FirstDifference(before.participants, after.participants);
      !d.empty()) {
    problems.push_back("participants: " + d);
  }
  if (std::string added = FirstAdded(before.group_members, after.group_members);
      !added.empty()) {
    problems.push_back("a group member was left behind: " + added);
  }
  if (std::string d =
          FirstDifference(before.group_offsets, after.group_offsets);
      !d.empty()) {
    problems.push_back("committed offsets: " + d);
  }
  if (std::string d = FirstDifference(before.kv, after.kv); !d.empty()) {
    problems.push_back("p1 kv state: " + d);
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(problems, "; "));
}

absl::StatusOr<std::unique_ptr<FuzzWorld>> FuzzWorld::Start(
    const WorldOptions& options) {
  std::unique_ptr<FuzzWorld> world(new FuzzWorld());
  coordinator::CoordinatorOptions coordinator_options;
  coordinator_options.listen = "127.0.0.1:0";
  coordinator_options.data_dir = world->dir_.Sub("coordinator");
  coordinator_options.auto_create_partitions = options.auto_create_partitions;
  coordinator_options.manager.limits = options.limits;
  coordinator_options.manager.retry.initial_backoff = absl::Milliseconds(20);
  ASSIGN_OR_RETURN(world->coordinator_,
                   coordinator::CoordinatorServer::Start(coordinator_options));

  participant::ParticipantOptions sidecar_options;
  sidecar_options.id = world->refs_.participant;
  sidecar_options.listen = "127.0.0.1:0";
  sidecar_options.coordinator = world->coordinator_->address();
  sidecar_options.data_dir = world->dir_.Sub(world->refs_.participant);
  ASSIGN_OR_RETURN(world->sidecar_,
                   participant::ParticipantServer::Start(sidecar_options));

  world->Reconnect();

  RETURN_IF_ERROR(world->WaitForParticipant(world->refs_.participant));
  RETURN_IF_ERROR(world->SeedQueueAndLog());
  RETURN_IF_ERROR(world->Refresh());
  return world;
}

FuzzWorld::~FuzzWorld() {
  // The sidecar first: its coordinator client would otherwise retry.
  if (sidecar_ != nullptr) sidecar_->Shutdown(absl::Seconds(1));
  if (coordinator_ != nullptr) coordinator_->Shutdown(absl::Seconds(1));
}

void FuzzWorld::Reconnect() {
  coordinator_channel_ = UnlimitedChannel(coordinator_->address());
  sidecar_channel_ = UnlimitedChannel(sidecar_->address());
  transactions_ = v1::TransactionService::NewStub(coordinator_channel_);
  admin_ = v1::AdminService::NewStub(coordinator_channel_);
  queues_ = v1::QueueService::NewStub(coordinator_channel_);
  gateway_ = v1::CoordinatorService::NewStub(coordinator_channel_);
  kv_ = v1::KvService::NewStub(sidecar_channel_);
}

absl::Status FuzzWorld::WaitForParticipant(const std::string& id) const {
  return WaitUntil(
      [&]() -> absl::Status {
        v1::ListParticipantsResponse response;
        RETURN_IF_ERROR(CallUnary(*admin_,
                                  &v1::AdminService::Stub::ListParticipants,
                                  v1::ListParticipantsRequest(), &response));
        for (const v1::ParticipantInfo& info : response.participants()) {
          if (info.participant_id() == id && info.link_connected()) {
            return absl::OkStatus();
          }
        }
        return absl::UnavailableError(
            absl::StrCat("participant ", id, " is not connected yet"));
      },
      kSetupTimeout);
}

absl::Status FuzzWorld::SeedQueueAndLog() {
  v1::CreateTopicRequest create;
  create.set_name(refs_.topic);
  create.set_partitions(refs_.partitions);
  v1::TopicInfo topic;
  RETURN_IF_ERROR(
      CallUnary(*admin_, &v1::AdminService::Stub::CreateTopic, create, &topic));
  // One committed transaction that put a key on p1 and a message in every
  // partition, so Get, Fetch and Subscribe have something to return.
  v1::ExecuteRequest execute;
  execute.set_idempotency_key(refs_.committed_key);
  v1::Branch* branch = execute.add_branches();
  branch->set_participant_id(refs_.participant);
  v1::KvOperation::Put* put =
      branch->mutable_kv()->add_operations()->mutable_put();
  put->set_key("fuzz/seed");
  put->set_value("1");
  for (int32_t p = 0; p < refs_.partitions; ++p) {
    v1::Message* message = execute.add_messages();
    message->set_topic(refs_.topic);
    message->set_partition(p);
    message->set_key(absl::StrCat("key-", p));
    message->set_value("value");
  }
  ASSIGN_OR_RETURN(v1::Transaction committed, Execute(execute, kSetupTimeout));
  refs_.committed_transaction = committed.transaction_id();
  return Quiesce();
}

absl::Status FuzzWorld::Refresh() {
  absl::StatusOr<v1::TransactionState> open =
      refs_.open_transaction.empty() ? absl::NotFoundError("none yet")
                                     : StateOf(refs_.open_transaction);
  if (!open.ok() || *open != v1::TRANSACTION_STATE_ACTIVE) {
    v1::BeginRequest begin;
    begin.mutable_timeout()->set_seconds(300);
    v1::BeginResponse begun;
    RETURN_IF_ERROR(CallUnary(
        *transactions_, &v1::TransactionService::Stub::Begin, begin, &begun));
    refs_.open_transaction = begun.transaction_id();
  }

  v1::GroupHeartbeatRequest heartbeat;
  heartbeat.set_group_id(refs_.group);
  heartbeat.set_member_id(refs_.member);
  v1::GroupHeartbeatResponse alive;
  if (!refs_.member.empty() &&
      CallUnary(*queues_, &v1::QueueService::Stub::GroupHeartbeat, heartbeat,
                &alive)
          .ok()) {
    refs_.generation = alive.generation();
    return absl::OkStatus();
  }
  v1::JoinGroupRequest join;
  join.set_group_id(refs_.group);
  join.add_topics(refs_.topic);
  join.mutable_session_timeout()->set_seconds(60);
  v1::JoinGroupResponse joined;
  RETURN_IF_ERROR(
      CallUnary(*queues_, &v1::QueueService::Stub::JoinGroup, join, &joined));
  refs_.member = joined.member_id();
  refs_.generation = joined.generation();
  return absl::OkStatus();
}

std::vector<std::string> FuzzWorld::Dictionary(bool with_participants) const {
  std::vector<std::string> words = {refs_.topic,
                                    refs_.open_transaction,
                                    refs_.committed_transaction,
                                    refs_.committed_key,
                                    refs_.group,
                                    refs_.member};
  if (with_participants) words.push_back(refs_.participant);
  return words;
}

absl::StatusOr<State> FuzzWorld::Snapshot() const {
  State state;
  // Unfinished transactions only: finished ones may show up in the listing
  // late (their final record is written unforced).
  v1::ListTransactionsRequest list;
  for (v1::TransactionState unfinished :
       {v1::TRANSACTION_STATE_ACTIVE, v1::TRANSACTION_STATE_PREPARING,
        v1::TRANSACTION_STATE_COMMITTING, v1::TRANSACTION_STATE_ABORTING}) {
    list.add_states(unfinished);
  }
  list.set_page_size(1000);
  v1::ListTransactionsResponse transactions;
  RETURN_IF_ERROR(CallUnary(*admin_, &v1::AdminService::Stub::ListTransactions,
                            list, &transactions));
  for (const v1::Transaction& t : transactions.transactions()) {
    state.live_transactions.insert(t.transaction_id());
  }
  v1::Stats stats;
  RETURN_IF_ERROR(CallUnary(*admin_, &v1::AdminService::Stub::GetStats,
                            v1::GetStatsRequest(), &stats));
  state.committed_total = stats.committed_total();

  v1::ListTopicsResponse topics;
  RETURN_IF_ERROR(CallUnary(*admin_, &v1::AdminService::Stub::ListTopics,
                            v1::ListTopicsRequest(), &topics));
  for (const v1::TopicInfo& topic : topics.topics()) {
    state.topics[topic.name()] = absl::StrCat(
        topic.partitions(), " ", topic.retention().ShortDebugString());
  }
  v1::ListParticipantsResponse participants;
  RETURN_IF_ERROR(CallUnary(*admin_, &v1::AdminService::Stub::ListParticipants,
                            v1::ListParticipantsRequest(), &participants));
  for (const v1::ParticipantInfo& p : participants.participants()) {
    state.participants[p.participant_id()] =
        absl::StrCat(p.endpoint(), " ", p.resource());
  }
  v1::ListGroupsResponse groups;
  RETURN_IF_ERROR(CallUnary(*admin_, &v1::AdminService::Stub::ListGroups,
                            v1::ListGroupsRequest(), &groups));
  for (const v1::GroupInfo& group : groups.groups()) {
    for (const v1::GroupMember& member : group.members()) {
      state.group_members.insert(
          absl::StrCat(group.group_id(), "/", member.member_id()));
    }
  }
  v1::FetchOffsetsRequest fetch;
  fetch.set_group_id(refs_.group);
  v1::FetchOffsetsResponse offsets;
  RETURN_IF_ERROR(CallUnary(*queues_, &v1::QueueService::Stub::FetchOffsets,
                            fetch, &offsets));
  for (const v1::PartitionOffset& offset : offsets.offsets()) {
    state.group_offsets[absl::StrCat(offset.topic(), "/", offset.partition())] =
        offset.offset();
  }
  ASSIGN_OR_RETURN(state.kv, KvDigest(*kv_));
  return state;
}

absl::StatusOr<v1::TransactionState> FuzzWorld::StateOf(
    const std::string& transaction_id) const {
  v1::GetRequest get;
  get.mutable_ref()->set_transaction_id(transaction_id);
  v1::GetResponse got;
  RETURN_IF_ERROR(
      CallUnary(*transactions_, &v1::TransactionService::Stub::Get, get, &got));
  return got.transaction().state();
}

absl::StatusOr<std::map<std::string, size_t>> KvDigest(
    v1::KvService::Stub& kv_stub) {
  std::map<std::string, size_t> kv;
  v1::KvScanRequest scan;
  scan.set_limit(1000);
  while (true) {
    v1::KvScanResponse page;
    RETURN_IF_ERROR(
        CallUnary(kv_stub, &v1::KvService::Stub::Scan, scan, &page));
    for (const auto& entry : page.entries()) {
      kv[entry.key()] = std::hash<std::string>()(entry.value());
    }
    if (!page.more() || page.entries().empty()) return kv;
    scan.set_start_after(page.entries().rbegin()->key());
  }
}

absl::Status FuzzWorld::Quiesce() const {
  return WaitUntil(
      [&]() -> absl::Status {
        v1::ListTransactionsRequest list;
        list.add_states(v1::TRANSACTION_STATE_PREPARING);
        list.add_states(v1::TRANSACTION_STATE_COMMITTING);
        list.set_page_size(1);
        v1::ListTransactionsResponse busy;
        RETURN_IF_ERROR(CallUnary(
            *admin_, &v1::AdminService::Stub::ListTransactions, list, &busy));
        if (busy.transactions().empty()) return absl::OkStatus();
        return absl::DeadlineExceededError(
            absl::StrCat("transaction still in progress: ",
                         busy.transactions(0).ShortDebugString()));
      },
      kSetupTimeout);
}

absl::Status FuzzWorld::CheckServing() const {
  if (!IsServing(coordinator_channel_, absl::Seconds(5))) {
    return absl::UnavailableError("the coordinator stopped answering health");
  }
  if (!IsServing(sidecar_channel_, absl::Seconds(5))) {
    return absl::UnavailableError("sidecar p1 stopped answering health");
  }
  return absl::OkStatus();
}

absl::Status FuzzWorld::Register(const std::string& id,
                                 const std::string& endpoint) const {
  v1::RegisterRequest request;
  request.set_participant_id(id);
  request.set_endpoint(endpoint);
  request.set_resource("kv");
  v1::RegisterResponse response;
  RETURN_IF_ERROR(CallUnary(*gateway_, &v1::CoordinatorService::Stub::Register,
                            request, &response));
  return WaitForParticipant(id);
}

absl::StatusOr<v1::Transaction> FuzzWorld::Execute(
    const v1::ExecuteRequest& request, absl::Duration timeout) const {
  v1::ExecuteResponse response;
  RETURN_IF_ERROR(CallUnary(*transactions_,
                            &v1::TransactionService::Stub::Execute, request,
                            &response, timeout));
  return response.transaction();
}

std::string FuzzWorld::SidecarBranchState(
    const std::string& transaction_id) const {
  return sidecar_->manager()->StateOf(transaction_id);
}

absl::StatusOr<std::optional<std::string>> FuzzWorld::KvGet(
    const std::string& key) const {
  v1::KvGetRequest request;
  request.set_key(key);
  v1::KvGetResponse response;
  RETURN_IF_ERROR(
      CallUnary(*kv_, &v1::KvService::Stub::Get, request, &response));
  if (!response.found()) return std::nullopt;
  return response.value();
}

FuzzBudget::FuzzBudget(size_t default_iterations)
    : iterations_(default_iterations) {
  auto number = [](const char* name, uint64_t* out) {
    const char* text = std::getenv(name);
    return text != nullptr && absl::SimpleAtoi(text, out);
  };
  uint64_t value = 0;
  if (number("TWOPC_FUZZ_SEED", &value)) seed_ = value;
  if (number("TWOPC_FUZZ_ITERATIONS", &value)) iterations_ = value;
  if (number("TWOPC_FUZZ_SECONDS", &value)) {
    end_ = absl::Now() + absl::Seconds(static_cast<int64_t>(value));
  }
}

bool FuzzBudget::Continue(size_t i) const {
  if (end_ != absl::InfinitePast()) return absl::Now() < end_;
  return i < iterations_;
}

std::string FuzzBudget::Describe() const {
  return absl::StrCat(
      "TWOPC_FUZZ_SEED=", seed_, " ",
      end_ != absl::InfinitePast()
          ? "(time-bounded by TWOPC_FUZZ_SECONDS)"
          : absl::StrCat("TWOPC_FUZZ_ITERATIONS=", iterations_));
}

}  // namespace twopc::fuzz
