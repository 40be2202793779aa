// Every documented limit (README "Limits", coordinator/limits.h, the
// comments in proto/twopc/v1), probed at its boundary: a request exactly at
// the limit is accepted, one just past it is refused with INVALID_ARGUMENT
// (or RESOURCE_EXHAUSTED for the in-flight limit) and a message that names
// the limit.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/limits.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "participant/kv_resource.h"
#include "tests/fuzz/fuzz_world.h"
#include "tests/fuzz/scripted_participant.h"
#include "tests/testing/status_matchers.h"

namespace twopc::fuzz {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;

constexpr absl::Duration kCallTimeout = absl::Seconds(20);
// Participants served by one agreeable ScriptedParticipant: one more than
// the branch limit.
constexpr int kAgreeable = 17;

std::string Agreeable(int i) { return absl::StrCat("yes-", i); }

// The servers and an agreeable participant registered kAgreeable times.
class Limits {
 public:
  static absl::StatusOr<std::unique_ptr<Limits>> Start() {
    std::unique_ptr<Limits> limits(new Limits());
    ASSIGN_OR_RETURN(limits->world_, FuzzWorld::Start(WorldOptions()));
    ASSIGN_OR_RETURN(limits->agreeable_, ScriptedParticipant::Start());
    for (int i = 0; i < kAgreeable; ++i) {
      RETURN_IF_ERROR(limits->world_->Register(Agreeable(i),
                                               limits->agreeable_->address()));
    }
    return limits;
  }

  const FuzzWorld& world() const { return *world_; }
  const Refs& refs() const { return world_->refs(); }

  absl::Status Execute(const v1::ExecuteRequest& request) const {
    return world_->Execute(request, kCallTimeout).status();
  }

  // An Execute with one small put on p1 (`key` unique per call).
  v1::ExecuteRequest OnP1(const std::string& key) const {
    v1::ExecuteRequest request;
    v1::Branch* branch = request.add_branches();
    branch->set_participant_id(refs().participant);
    auto* put = branch->mutable_kv()->add_operations()->mutable_put();
    put->set_key(key);
    put->set_value("v");
    return request;
  }

  v1::Message Message(const std::string& key) const {
    v1::Message message;
    message.set_topic(refs().topic);
    message.set_key(key);
    message.set_value("v");
    return message;
  }

 private:
  Limits() = default;
  std::unique_ptr<FuzzWorld> world_;
  std::unique_ptr<ScriptedParticipant> agreeable_;
};

// One documented limit.
struct Limit {
  std::string name;
  // Sends a request exactly at the limit (`past` false) or one past it.
  std::function<absl::Status(const Limits&, bool past)> probe;
  absl::StatusCode refusal = absl::StatusCode::kInvalidArgument;
  // The refusal's message names the limit with this.
  std::string named;
};

// `at`, or `at + 1` when past.
size_t Size(size_t at, bool past) { return past ? at + 1 : at; }

template <typename Stub, typename Request, typename Response>
absl::Status Call(Stub& stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*,
                                               const Request&, Response*),
                  const Request& request) {
  Response response;
  return CallUnary(stub, method, request, &response, kCallTimeout);
}

absl::Status KvCall(const FuzzWorld& world, const v1::KvGetRequest& request) {
  auto stub = v1::KvService::NewStub(world.sidecar_channel());
  return Call(*stub, &v1::KvService::Stub::Get, request);
}

absl::Status KvCall(const FuzzWorld& world, const v1::KvScanRequest& request) {
  auto stub = v1::KvService::NewStub(world.sidecar_channel());
  return Call(*stub, &v1::KvService::Stub::Scan, request);
}

absl::Status Register(const FuzzWorld& world, const std::string& id,
                      const std::string& endpoint) {
  auto stub = v1::CoordinatorService::NewStub(world.coordinator_channel());
  v1::RegisterRequest request;
  request.set_participant_id(id);
  request.set_endpoint(endpoint);
  request.set_resource("kv");
  return Call(*stub, &v1::CoordinatorService::Stub::Register, request);
}

// An Execute of payload branches on agreeable participants whose encoding
// is exactly `bytes` long.
v1::ExecuteRequest ExecuteOfSize(size_t bytes) {
  v1::ExecuteRequest request;
  constexpr int kBranches = 5;
  for (int i = 0; i < kBranches; ++i) {
    v1::Branch* branch = request.add_branches();
    branch->set_participant_id(Agreeable(i));
    branch->set_payload(std::string(bytes / kBranches - 32, 'x'));
  }
  // Length prefixes are varints: converge in a few steps.
  for (int step = 0; step < 8 && request.ByteSizeLong() != bytes; ++step) {
    std::string* last =
        request.mutable_branches(kBranches - 1)->mutable_payload();
    last->resize(last->size() + bytes - request.ByteSizeLong());
  }
  return request;
}

const std::vector<Limit>& AllLimits() {
  static const auto* const limits = new std::vector<Limit>{
      {"branches per transaction (16)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request;
         for (size_t i = 0; i < Size(16, past); ++i) {
           v1::Branch* branch = request.add_branches();
           branch->set_participant_id(Agreeable(static_cast<int>(i)));
           branch->set_payload("x");
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 16"},
      {"messages per transaction (1,000)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/messages");
         for (size_t i = 0; i < Size(1000, past); ++i) {
           *request.add_messages() = l.Message(absl::StrCat(i));
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1000"},
      {"kv operations per branch (1,000)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/ops");
         auto* ops =
             request.mutable_branches(0)->mutable_kv()->mutable_operations();
         for (size_t i = 1; i < Size(1000, past); ++i) {
           auto* put = ops->Add()->mutable_put();
           put->set_key(absl::StrCat("limits/ops/", i));
           put->set_value("v");
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1000"},
      {"kv key (1 KiB)",
       [](const Limits& l, bool past) {
         return l.Execute(l.OnP1(std::string(Size(1024, past), 'k')));
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1024 bytes"},
      // Below the branch limit, so that a put of the largest value fits in a
      // branch.
      {"kv value (1 MiB - 4 KiB)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/value");
         request.mutable_branches(0)
             ->mutable_kv()
             ->mutable_operations(0)
             ->mutable_put()
             ->set_value(std::string(Size((1 << 20) - (4 << 10), past), 'v'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1044480 bytes"},
      {"kv expected value (1 MiB - 4 KiB)",
       [](const Limits& l, bool past) {
         const std::string key = "limits/expected-value";
         const std::string value((1 << 20) - (4 << 10), 'v');
         v1::ExecuteRequest put = l.OnP1(key);
         put.mutable_branches(0)
             ->mutable_kv()
             ->mutable_operations(0)
             ->mutable_put()
             ->set_value(value);
         // Until p1 has applied it, the key stays locked.
         put.set_wait_for_completion(true);
         RETURN_IF_ERROR(l.Execute(put));
         // Read-only: expects what the put wrote (and one byte more past
         // the limit).
         v1::ExecuteRequest expect;
         v1::Branch* branch = expect.add_branches();
         branch->set_participant_id(l.refs().participant);
         auto* op = branch->mutable_kv()->add_operations()->mutable_expect();
         op->set_key(key);
         op->set_value(past ? value + "v" : value);
         return l.Execute(expect);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1044480 bytes"},
      {"kv branch (1 MiB)",
       [](const Limits& l, bool past) {
         // Puts of small values and one that fills the branch to its size.
         v1::ExecuteRequest request = l.OnP1("limits/kv-branch/0");
         v1::KvBranch* kv = request.mutable_branches(0)->mutable_kv();
         for (int i = 1; i < 4; ++i) {
           auto* put = kv->add_operations()->mutable_put();
           put->set_key(absl::StrCat("limits/kv-branch/", i));
           put->set_value(std::string(300 << 10, 'v'));
         }
         std::string* last =
             kv->mutable_operations(3)->mutable_put()->mutable_value();
         for (int step = 0;
              step < 8 && kv->ByteSizeLong() != Size(1 << 20, past); ++step) {
           last->resize(last->size() + Size(1 << 20, past) -
                        kv->ByteSizeLong());
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1048576 bytes"},
      {"branch payload (1 MiB)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request;
         v1::Branch* branch = request.add_branches();
         branch->set_participant_id(Agreeable(0));
         branch->set_payload(std::string(Size(1 << 20, past), 'p'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1048576 bytes"},
      {"whole transaction (4 MiB)",
       [](const Limits& l, bool past) {
         return l.Execute(ExecuteOfSize(Size(4 << 20, past)));
       },
       absl::StatusCode::kInvalidArgument, "the limit is 4194304"},
      {"timeout (5 min)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/timeout");
         request.mutable_timeout()->set_seconds(300);
         if (past) request.mutable_timeout()->set_nanos(1);
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "at most 5m"},
      {"idempotency_key (128 bytes)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/key");
         request.set_idempotency_key(std::string(Size(128, past), 'i'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 128 bytes"},
      {"labels (16)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/labels");
         for (size_t i = 0; i < Size(16, past); ++i) {
           (*request.mutable_labels())[absl::StrCat("l", i)] = "v";
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 16"},
      {"label key (64 bytes)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/label-key");
         (*request.mutable_labels())[std::string(Size(64, past), 'l')] = "v";
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "1 to 64 characters"},
      {"abort reason (1 KiB)",
       [](const Limits& l, bool past) {
         v1::BeginResponse begun;
         RETURN_IF_ERROR(CallUnary(l.world().transactions(),
                                   &v1::TransactionService::Stub::Begin,
                                   v1::BeginRequest(), &begun));
         v1::AbortRequest abort;
         abort.set_transaction_id(begun.transaction_id());
         abort.set_reason(std::string(Size(1024, past), 'r'));
         return Call(l.world().transactions(),
                     &v1::TransactionService::Stub::Abort, abort);
       },
       absl::StatusCode::kInvalidArgument, "1 KiB"},
      {"message key (1 KiB)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/message-key");
         *request.add_messages() =
             l.Message(std::string(Size(1024, past), 'k'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1024 bytes"},
      {"message value (1 MiB)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/message-value");
         v1::Message* message = request.add_messages();
         *message = l.Message("k");
         message->set_value(std::string(Size(1 << 20, past), 'v'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 1048576 bytes"},
      {"headers per message (64)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/headers");
         v1::Message* message = request.add_messages();
         *message = l.Message("k");
         for (size_t i = 0; i < Size(64, past); ++i) {
           message->add_headers()->set_key(absl::StrCat("h", i));
         }
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 64"},
      {"header key (256 bytes)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/header-key");
         v1::Message* message = request.add_messages();
         *message = l.Message("k");
         message->add_headers()->set_key(std::string(Size(256, past), 'h'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "1..256 bytes"},
      {"header value (64 KiB)",
       [](const Limits& l, bool past) {
         v1::ExecuteRequest request = l.OnP1("limits/header-value");
         v1::Message* message = request.add_messages();
         *message = l.Message("k");
         v1::Header* header = message->add_headers();
         header->set_key("h");
         header->set_value(std::string(Size(64 << 10, past), 'v'));
         return l.Execute(request);
       },
       absl::StatusCode::kInvalidArgument, "the limit is 65536 bytes"},
      {"QueryOutcomes ids (1,000)",
       [](const Limits& l, bool past) {
         auto stub =
             v1::CoordinatorService::NewStub(l.world().coordinator_channel());
         v1::QueryOutcomesRequest request;
         request.set_participant_id(l.refs().participant);
         for (size_t i = 0; i < Size(1000, past); ++i) {
           request.add_transaction_ids(l.refs().committed_transaction);
         }
         return Call(*stub, &v1::CoordinatorService::Stub::QueryOutcomes,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "1,000"},
      {"Fetch max_messages (10,000)",
       [](const Limits& l, bool past) {
         v1::FetchRequest request;
         request.set_topic(l.refs().topic);
         request.set_max_messages(static_cast<uint32_t>(Size(10000, past)));
         return Call(l.world().queues(), &v1::QueueService::Stub::Fetch,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "at most 10000"},
      {"Fetch max_bytes (4 MiB)",
       [](const Limits& l, bool past) {
         v1::FetchRequest request;
         request.set_topic(l.refs().topic);
         request.set_max_bytes(static_cast<uint32_t>(Size(4 << 20, past)));
         return Call(l.world().queues(), &v1::QueueService::Stub::Fetch,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "at most 4194304"},
      {"Fetch max_wait (30 s)",
       [](const Limits& l, bool past) {
         // Partition 0 holds a message at offset 0: no wait at the limit.
         v1::FetchRequest request;
         request.set_topic(l.refs().topic);
         request.mutable_max_wait()->set_seconds(30);
         if (past) request.mutable_max_wait()->set_nanos(1000);
         return Call(l.world().queues(), &v1::QueueService::Stub::Fetch,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "between 0 and 30s"},
      {"JoinGroup session_timeout (5 min)",
       [](const Limits& l, bool past) {
         v1::JoinGroupRequest request;
         request.set_group_id("limits-group");
         request.add_topics(l.refs().topic);
         request.mutable_session_timeout()->set_seconds(300);
         if (past) request.mutable_session_timeout()->set_nanos(1000);
         return Call(l.world().queues(), &v1::QueueService::Stub::JoinGroup,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "between 1s and 5m"},
      {"JoinGroup session_timeout (at least 1 s)",
       [](const Limits& l, bool past) {
         v1::JoinGroupRequest request;
         request.set_group_id("limits-group");
         request.add_topics(l.refs().topic);
         *request.mutable_session_timeout() =
             TimeUtil::MicrosecondsToDuration(past ? 999'999 : 1'000'000);
         return Call(l.world().queues(), &v1::QueueService::Stub::JoinGroup,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "between 1s and 5m"},
      {"topic partitions (1,024)",
       [](const Limits& l, bool past) {
         v1::CreateTopicRequest request;
         request.set_name("limits-partitions");
         request.set_partitions(static_cast<int32_t>(Size(1024, past)));
         return Call(l.world().admin(), &v1::AdminService::Stub::CreateTopic,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "1..1024"},
      {"topic name (128 bytes)",
       [](const Limits& l, bool past) {
         v1::CreateTopicRequest request;
         request.set_name(std::string(Size(128, past), 't'));
         request.set_partitions(1);
         return Call(l.world().admin(), &v1::AdminService::Stub::CreateTopic,
                     request);
       },
       absl::StatusCode::kInvalidArgument, "1 to 128 characters"},
      {"ListTransactions page_size (1,000)",
       [](const Limits& l, bool past) {
         v1::ListTransactionsRequest request;
         request.set_page_size(static_cast<uint32_t>(Size(1000, past)));
         return Call(l.world().admin(),
                     &v1::AdminService::Stub::ListTransactions, request);
       },
       absl::StatusCode::kInvalidArgument, "at most 1000"},
      {"KvService.Get key (1 KiB)",
       [](const Limits& l, bool past) {
         v1::KvGetRequest request;
         request.set_key(std::string(Size(1024, past), 'k'));
         return KvCall(l.world(), request);
       },
       absl::StatusCode::kInvalidArgument, "1..1024 bytes"},
      {"KvService.Scan limit (10,000)",
       [](const Limits& l, bool past) {
         v1::KvScanRequest request;
         request.set_limit(static_cast<uint32_t>(Size(10000, past)));
         return KvCall(l.world(), request);
       },
       absl::StatusCode::kInvalidArgument, "1..10000"},
      {"participant id (64 bytes)",
       [](const Limits& l, bool past) {
         return Register(l.world(), std::string(Size(64, past), 'p'),
                         "127.0.0.1:1");
       },
       absl::StatusCode::kInvalidArgument, "1 to 64 characters"},
      {"participant endpoint (256 bytes)",
       [](const Limits& l, bool past) {
         return Register(l.world(), "limits-endpoint",
                         std::string(Size(256, past) - 2, 'h') + ":1");
       },
       absl::StatusCode::kInvalidArgument, "the limit is 256 bytes"},
  };
  return *limits;
}

// Probes `limit` and returns what is wrong, if anything.
std::string Probe(const Limits& limits, const Limit& limit) {
  std::string problems;
  const absl::Status at = limit.probe(limits, /*past=*/false);
  if (!at.ok()) {
    absl::StrAppend(&problems, "\n  at the limit: refused: ", at.ToString());
  }
  const absl::Status past = limit.probe(limits, /*past=*/true);
  if (past.code() != limit.refusal ||
      !absl::StrContains(past.message(), limit.named)) {
    absl::StrAppend(&problems, "\n  one past the limit: ", past.ToString(),
                    "; expected ", absl::StatusCodeToString(limit.refusal),
                    " naming \"", limit.named, "\"");
  }
  return problems;
}

// The coordinator checks kv branches before they reach a sidecar, and the
// sidecar checks them again: the two sets of limits must be the same, or a
// branch the coordinator accepted would be voted NO.
TEST(LimitsTest, CoordinatorAndSidecarAgreeOnKvLimits) {
  const coordinator::Limits coordinator;
  const participant::KvLimits sidecar;
  EXPECT_EQ(coordinator.max_kv_operations,
            static_cast<int>(sidecar.max_operations));
  EXPECT_EQ(coordinator.max_kv_key_bytes, sidecar.max_key_bytes);
  EXPECT_EQ(coordinator.max_kv_value_bytes, sidecar.max_value_bytes);
  EXPECT_EQ(coordinator.max_branch_bytes, sidecar.max_branch_bytes);
}

TEST(LimitsTest, EveryDocumentedLimitIsEnforcedAtItsBoundary) {
  absl::StatusOr<std::unique_ptr<Limits>> limits = Limits::Start();
  ASSERT_THAT(limits, IsOk());
  for (const Limit& limit : AllLimits()) {
    EXPECT_EQ(Probe(**limits, limit), "") << limit.name;
  }
}

TEST(LimitsTest, InFlightLimitRefusesTheNextTransactionWithResourceExhausted) {
  WorldOptions options;
  // The world keeps one interactive transaction open.
  options.limits.max_inflight = 3;
  absl::StatusOr<std::unique_ptr<FuzzWorld>> world = FuzzWorld::Start(options);
  ASSERT_THAT(world, IsOk());
  v1::BeginResponse begun;
  for (int i = 0; i < 2; ++i) {
    ASSERT_THAT(CallUnary((*world)->transactions(),
                          &v1::TransactionService::Stub::Begin,
                          v1::BeginRequest(), &begun),
                IsOk());
  }
  EXPECT_THAT(
      CallUnary((*world)->transactions(), &v1::TransactionService::Stub::Begin,
                v1::BeginRequest(), &begun),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit 3")));
  v1::ExecuteRequest execute;
  v1::Branch* branch = execute.add_branches();
  branch->set_participant_id((*world)->refs().participant);
  branch->mutable_kv()->add_operations()->mutable_delete_()->set_key("k");
  EXPECT_THAT(
      (*world)->Execute(execute, kCallTimeout),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("limit 3")));
}

}  // namespace
}  // namespace twopc::fuzz
