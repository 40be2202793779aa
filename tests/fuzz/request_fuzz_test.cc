// Bad input, client and participant side: every request handler of the
// coordinator (TransactionService, AdminService, QueueService,
// CoordinatorService) and of the kv sidecar (KvService) gets seeded, mutated
// requests: valid seeds edited through reflection (hostile values) or at
// the byte level (malformed encodings), sent as raw bytes.
//
// Oracles, after every call: the answer is clean (oracle.h); a rejected
// request left nothing behind (CheckNothingLeftBehind, for the methods that
// can change state); and after every batch both servers still answer
// health. A failure prints the seed, the iteration, the edits and the
// request, which is enough to replay it.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_world.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/oracle.h"
#include "tests/fuzz/raw_call.h"
#include "tests/testing/status_matchers.h"

namespace twopc::fuzz {
namespace {

using google::protobuf::Message;
using ::twopc::testing::IsOk;

constexpr size_t kDefaultIterations = 3000;
// Refresh the references and check health this often.
constexpr size_t kBatch = 25;
// A call that does not document waiting must answer within this.
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
// How long a documented wait (long-poll, stream) may run before this side
// ends it.
constexpr absl::Duration kWaitingCallTimeout = absl::Milliseconds(300);

enum class Server { kCoordinator, kSidecar };

// Fills a valid request from the current references; `serial` makes names
// unique per call.
using SeedFn = std::function<void(const Refs&, size_t serial, Message*)>;

template <typename Request>
SeedFn Seed(void (*fill)(const Refs&, size_t, Request*)) {
  return [fill](const Refs& refs, size_t serial, Message* message) {
    fill(refs, serial, static_cast<Request*>(message));
  };
}

struct Target {
  // Full method name, e.g. "twopc.v1.TransactionService.Execute".
  std::string method;
  Server server;
  // The method may create or change state: a rejected call is checked for
  // leftovers.
  bool changes_state;
  // The method documents waiting (long-poll or an open-ended stream).
  bool may_wait;
  // Hostile requests may name existing participants (see
  // FuzzWorld::Dictionary).
  bool may_name_participants;
  SeedFn seed;
};

v1::Branch KvPut(const std::string& participant, const std::string& key,
                 const std::string& value) {
  v1::Branch branch;
  branch.set_participant_id(participant);
  auto* put = branch.mutable_kv()->add_operations()->mutable_put();
  put->set_key(key);
  put->set_value(value);
  return branch;
}

v1::Message QueueMessage(const Refs& refs, size_t serial) {
  v1::Message message;
  message.set_topic(refs.topic);
  message.set_key(absl::StrCat("key-", serial));
  message.set_value("value");
  v1::Header* header = message.add_headers();
  header->set_key("h");
  header->set_value("v");
  return message;
}

// The one table of targets.
const std::vector<Target>& Targets() {
  static const auto* const targets = new std::vector<Target>{
      // --- TransactionService ---
      {.method = "twopc.v1.TransactionService.Execute",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ExecuteRequest>([](const Refs& refs, size_t serial,
                                           v1::ExecuteRequest* r) {
         r->set_idempotency_key(absl::StrCat("fuzz-execute-", serial));
         v1::Branch* branch = r->add_branches();
         *branch = KvPut(refs.participant, absl::StrCat("fuzz/k", serial % 8),
                         absl::StrCat(serial));
         auto* add = branch->mutable_kv()->add_operations()->mutable_add();
         add->set_key("fuzz/counter");
         add->set_delta(1);
         add->set_min(0);
         auto* expect =
             branch->mutable_kv()->add_operations()->mutable_expect();
         expect->set_key("fuzz/seed");
         expect->set_value("1");
         *r->add_messages() = QueueMessage(refs, serial);
         r->mutable_timeout()->set_seconds(10);
         (*r->mutable_labels())["source"] = "fuzz";
       })},
      {.method = "twopc.v1.TransactionService.Begin",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::BeginRequest>(
           [](const Refs&, size_t serial, v1::BeginRequest* r) {
             r->set_idempotency_key(absl::StrCat("fuzz-begin-", serial));
             r->mutable_timeout()->set_seconds(30);
             (*r->mutable_labels())["source"] = "fuzz";
           })},
      {.method = "twopc.v1.TransactionService.AddBranch",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::AddBranchRequest>(
           [](const Refs& refs, size_t serial, v1::AddBranchRequest* r) {
             r->set_transaction_id(refs.open_transaction);
             *r->mutable_branch() = KvPut(
                 refs.participant, absl::StrCat("fuzz/open", serial % 8), "v");
           })},
      {.method = "twopc.v1.TransactionService.AddMessages",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::AddMessagesRequest>(
           [](const Refs& refs, size_t serial, v1::AddMessagesRequest* r) {
             r->set_transaction_id(refs.open_transaction);
             *r->add_messages() = QueueMessage(refs, serial);
           })},
      {.method = "twopc.v1.TransactionService.Commit",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::CommitRequest>(
           [](const Refs& refs, size_t, v1::CommitRequest* r) {
             r->set_transaction_id(refs.open_transaction);
           })},
      {.method = "twopc.v1.TransactionService.Abort",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::AbortRequest>(
           [](const Refs& refs, size_t, v1::AbortRequest* r) {
             r->set_transaction_id(refs.open_transaction);
             r->set_reason("fuzz");
           })},
      {.method = "twopc.v1.TransactionService.Get",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::GetRequest>(
           [](const Refs& refs, size_t, v1::GetRequest* r) {
             r->mutable_ref()->set_transaction_id(refs.committed_transaction);
           })},
      {.method = "twopc.v1.TransactionService.Watch",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = true,
       .may_name_participants = true,
       .seed = Seed<v1::WatchRequest>(
           [](const Refs& refs, size_t, v1::WatchRequest* r) {
             r->mutable_ref()->set_idempotency_key(refs.committed_key);
           })},
      // --- CoordinatorService (participant input) ---
      {.method = "twopc.v1.CoordinatorService.Register",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = false,
       .seed = Seed<v1::RegisterRequest>(
           [](const Refs&, size_t serial, v1::RegisterRequest* r) {
             // A small pool of ids: every changed registration starts a link.
             r->set_participant_id(absl::StrCat("fuzz-reg-", serial % 3));
             r->set_endpoint("127.0.0.1:1");
             r->set_resource("kv");
           })},
      {.method = "twopc.v1.CoordinatorService.Heartbeat",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::HeartbeatRequest>(
           [](const Refs& refs, size_t, v1::HeartbeatRequest* r) {
             r->set_participant_id(refs.participant);
           })},
      {.method = "twopc.v1.CoordinatorService.QueryOutcomes",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::QueryOutcomesRequest>(
           [](const Refs& refs, size_t, v1::QueryOutcomesRequest* r) {
             r->set_participant_id(refs.participant);
             r->add_transaction_ids(refs.committed_transaction);
             r->add_transaction_ids(refs.open_transaction);
           })},
      // --- AdminService (read-only calls, and topic create/update) ---
      {.method = "twopc.v1.AdminService.ListTransactions",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListTransactionsRequest>(
           [](const Refs& refs, size_t, v1::ListTransactionsRequest* r) {
             r->add_states(v1::TRANSACTION_STATE_ACTIVE);
             r->set_participant_id(refs.participant);
             r->set_page_size(10);
           })},
      {.method = "twopc.v1.AdminService.DescribeTransaction",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::DescribeTransactionRequest>(
           [](const Refs& refs, size_t, v1::DescribeTransactionRequest* r) {
             r->mutable_ref()->set_transaction_id(refs.committed_transaction);
           })},
      {.method = "twopc.v1.AdminService.ListStuckTransactions",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListStuckTransactionsRequest>(
           [](const Refs&, size_t, v1::ListStuckTransactionsRequest* r) {
             r->mutable_older_than()->set_seconds(30);
           })},
      {.method = "twopc.v1.AdminService.ListAuditRecords",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListAuditRecordsRequest>(
           [](const Refs&, size_t, v1::ListAuditRecordsRequest* r) {
             r->set_page_size(10);
           })},
      {.method = "twopc.v1.AdminService.ListParticipants",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListParticipantsRequest>(
           [](const Refs&, size_t, v1::ListParticipantsRequest*) {})},
      {.method = "twopc.v1.AdminService.GetStats",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::GetStatsRequest>(
           [](const Refs&, size_t, v1::GetStatsRequest*) {})},
      {.method = "twopc.v1.AdminService.CreateTopic",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::CreateTopicRequest>(
           [](const Refs&, size_t serial, v1::CreateTopicRequest* r) {
             r->set_name(absl::StrCat("fuzz-created-", serial % 4));
             r->set_partitions(2);
             r->mutable_retention()->mutable_max_age()->set_seconds(3600);
           })},
      {.method = "twopc.v1.AdminService.UpdateTopic",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::UpdateTopicRequest>(
           [](const Refs& refs, size_t, v1::UpdateTopicRequest* r) {
             r->set_name(refs.topic);
             r->mutable_retention()->set_max_bytes(int64_t{1} << 30);
           })},
      {.method = "twopc.v1.AdminService.ListTopics",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListTopicsRequest>(
           [](const Refs&, size_t, v1::ListTopicsRequest*) {})},
      {.method = "twopc.v1.AdminService.DescribeTopic",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::DescribeTopicRequest>(
           [](const Refs& refs, size_t, v1::DescribeTopicRequest* r) {
             r->set_name(refs.topic);
           })},
      {.method = "twopc.v1.AdminService.ListGroups",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::ListGroupsRequest>(
           [](const Refs&, size_t, v1::ListGroupsRequest*) {})},
      {.method = "twopc.v1.AdminService.DescribeGroup",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::DescribeGroupRequest>(
           [](const Refs& refs, size_t, v1::DescribeGroupRequest* r) {
             r->set_group_id(refs.group);
           })},
      // --- QueueService ---
      {.method = "twopc.v1.QueueService.Fetch",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = true,
       .may_name_participants = true,
       .seed = Seed<v1::FetchRequest>(
           [](const Refs& refs, size_t serial, v1::FetchRequest* r) {
             r->set_topic(refs.topic);
             r->set_partition(static_cast<int32_t>(serial) % refs.partitions);
             r->set_max_messages(10);
             r->set_max_bytes(1 << 20);
           })},
      {.method = "twopc.v1.QueueService.Subscribe",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = true,
       .may_name_participants = true,
       .seed = Seed<v1::SubscribeRequest>(
           [](const Refs& refs, size_t serial, v1::SubscribeRequest* r) {
             r->set_topic(refs.topic);
             r->set_partition(static_cast<int32_t>(serial) % refs.partitions);
             r->set_max_batch_messages(10);
           })},
      {.method = "twopc.v1.QueueService.JoinGroup",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::JoinGroupRequest>(
           [](const Refs& refs, size_t, v1::JoinGroupRequest* r) {
             r->set_group_id(refs.group);
             r->set_member_id(refs.member);
             r->add_topics(refs.topic);
             r->mutable_session_timeout()->set_seconds(60);
           })},
      {.method = "twopc.v1.QueueService.GroupHeartbeat",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::GroupHeartbeatRequest>(
           [](const Refs& refs, size_t, v1::GroupHeartbeatRequest* r) {
             r->set_group_id(refs.group);
             r->set_member_id(refs.member);
           })},
      {.method = "twopc.v1.QueueService.LeaveGroup",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::LeaveGroupRequest>(
           [](const Refs& refs, size_t, v1::LeaveGroupRequest* r) {
             r->set_group_id(refs.group);
             r->set_member_id(refs.member);
           })},
      {.method = "twopc.v1.QueueService.CommitOffsets",
       .server = Server::kCoordinator,
       .changes_state = true,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::CommitOffsetsRequest>(
           [](const Refs& refs, size_t serial, v1::CommitOffsetsRequest* r) {
             r->set_group_id(refs.group);
             r->set_member_id(refs.member);
             r->set_generation(refs.generation);
             v1::PartitionOffset* offset = r->add_offsets();
             offset->set_topic(refs.topic);
             offset->set_partition(static_cast<int32_t>(serial) %
                                   refs.partitions);
             offset->set_offset(1);
           })},
      {.method = "twopc.v1.QueueService.FetchOffsets",
       .server = Server::kCoordinator,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::FetchOffsetsRequest>(
           [](const Refs& refs, size_t, v1::FetchOffsetsRequest* r) {
             r->set_group_id(refs.group);
             r->add_topics(refs.topic);
           })},
      // --- KvService (sidecar) ---
      {.method = "twopc.v1.KvService.Get",
       .server = Server::kSidecar,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed =
           Seed<v1::KvGetRequest>([](const Refs&, size_t, v1::KvGetRequest* r) {
             r->set_key("fuzz/seed");
           })},
      {.method = "twopc.v1.KvService.Scan",
       .server = Server::kSidecar,
       .changes_state = false,
       .may_wait = false,
       .may_name_participants = true,
       .seed = Seed<v1::KvScanRequest>(
           [](const Refs&, size_t, v1::KvScanRequest* r) {
             r->set_prefix("fuzz/");
             r->set_limit(10);
           })},
  };
  return *targets;
}

// One hostile request for a target, and how it was made.
struct Case {
  const Target* target = nullptr;
  const google::protobuf::MethodDescriptor* method = nullptr;
  std::string request;
  bool parses = true;
  std::vector<std::string> edits;
};

const google::protobuf::MethodDescriptor* FindMethod(const std::string& name) {
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      name);
}

const Message* Prototype(const google::protobuf::Descriptor* type) {
  return google::protobuf::MessageFactory::generated_factory()->GetPrototype(
      type);
}

// A seed for `target`, edited: through reflection, at the byte level, both,
// or (one time in ten) not at all.
Case MakeCase(const Target& target, const Refs& refs, size_t serial,
              Mutator& mutator) {
  Case c;
  c.target = &target;
  c.method = FindMethod(target.method);
  const Message* prototype = Prototype(c.method->input_type());
  std::unique_ptr<Message> request(prototype->New());
  target.seed(refs, serial, request.get());
  const size_t choice = mutator.Below(10);
  if (choice < 7) mutator.MutateMessage(request.get(), &c.edits);
  c.request = request->SerializePartialAsString();
  if (choice >= 6 && choice < 9) {
    c.request = mutator.MutateBytes(c.request, &c.edits);
  }
  std::unique_ptr<Message> parsed(prototype->New());
  c.parses = parsed->ParseFromString(c.request);
  return c;
}

std::string Describe(const Case& c, const RawResult& result,
                     const FuzzBudget& budget, size_t iteration) {
  std::string shown;
  std::unique_ptr<Message> parsed(Prototype(c.method->input_type())->New());
  if (parsed->ParseFromString(c.request)) {
    shown = parsed->ShortDebugString();
  } else {
    shown = absl::StrCat("(does not parse) hex ",
                         absl::BytesToHexString(c.request.substr(0, 256)));
  }
  if (shown.size() > 2000) shown = shown.substr(0, 2000) + "...";
  return absl::StrCat("\n  replay: ", budget.Describe(), ", iteration ",
                      iteration, "\n  method: ", c.target->method,
                      "\n  edits: ", absl::StrJoin(c.edits, "; "),
                      "\n  request (", c.request.size(), " bytes): ", shown,
                      "\n  answer: code ", result.status.error_code(), " \"",
                      result.status.error_message().substr(0, 300), "\", ",
                      result.responses.size(), " responses");
}

// Sends `c` to its server.
RawResult Send(const FuzzWorld& world, const Case& c) {
  const Target& target = *c.target;
  return RawCall(
      target.server == Server::kCoordinator ? world.coordinator_channel()
                                            : world.sidecar_channel(),
      absl::StrCat("/", c.method->service()->full_name(), "/",
                   c.method->name()),
      c.request, target.may_wait ? kWaitingCallTimeout : kCallTimeout,
      /*max_responses=*/c.method->server_streaming() ? 1 : SIZE_MAX);
}

// What the answers were, for the summary a run prints.
class Tally {
 public:
  void Count(const RawResult& result) {
    ++codes_[result.status.error_code()];
  }

  void Print(size_t calls, const FuzzBudget& budget) const {
    std::printf("request fuzz: %zu calls (%s); answers by code:", calls,
                budget.Describe().c_str());
    for (const auto& [code, count] : codes_) {
      std::printf(" %d: %zu", code, count);
    }
    std::printf("\n");
  }

 private:
  std::map<grpc::StatusCode, size_t> codes_;
};

TEST(RequestFuzzTest,
     EveryHandlerAnswersBadInputCleanlyAndLeavesNothingBehind) {
  // Invalid UTF-8 makes protobuf log on every serialisation and parse.
  google::protobuf::LogSilencer quiet;
  const FuzzBudget budget(kDefaultIterations);
  absl::StatusOr<std::unique_ptr<FuzzWorld>> started =
      FuzzWorld::Start(WorldOptions());
  ASSERT_THAT(started, IsOk());
  FuzzWorld& world = **started;
  for (const Target& target : Targets()) {
    ASSERT_NE(FindMethod(target.method), nullptr) << target.method;
  }
  Mutator mutator(budget.seed(), world.Dictionary(true));
  Tally tally;

  size_t i = 0;
  for (; budget.Continue(i); ++i) {
    if (i % kBatch == 0) {
      ASSERT_THAT(world.CheckServing(), IsOk()) << "before iteration " << i;
      ASSERT_THAT(world.Refresh(), IsOk());
    }
    const Target& target = Targets()[mutator.Below(Targets().size())];
    mutator.set_dictionary(world.Dictionary(target.may_name_participants));
    const Case c = MakeCase(target, world.refs(), i, mutator);

    absl::StatusOr<State> before;
    if (target.changes_state) {
      ASSERT_THAT(world.Quiesce(), IsOk());
      before = world.Snapshot();
      ASSERT_THAT(before.status(), IsOk());
    }
    const RawResult result = Send(world, c);
    const Verdict verdict =
        Judge({.request_parses = c.parses,
               .may_wait = target.may_wait,
               .response_type = Prototype(c.method->output_type())},
              result);
    tally.Count(result);
    ASSERT_TRUE(verdict.clean())
        << verdict.finding << Describe(c, result, budget, i);
    // Bytes that are not a request never reach a handler: INVALID_ARGUMENT
    // (common/unparseable_request.h), or RESOURCE_EXHAUSTED when too large.
    if (!c.parses) {
      ASSERT_TRUE(
          result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
          result.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
          << "a request that does not parse" << Describe(c, result, budget, i);
    }

    if (target.changes_state && IsRejection(result.status.error_code())) {
      absl::StatusOr<State> after = world.Snapshot();
      ASSERT_THAT(after.status(), IsOk()) << Describe(c, result, budget, i);
      ASSERT_THAT(CheckNothingLeftBehind(*before, *after), IsOk())
          << Describe(c, result, budget, i);
    }
  }
  EXPECT_THAT(world.CheckServing(), IsOk()) << "after " << i << " iterations";
  tally.Print(i, budget);
}

}  // namespace
}  // namespace twopc::fuzz
