// Bad input from a hostile coordinator: a kv sidecar, in this process and
// with no coordinator of its own (so fencing it with a huge epoch harms no
// one else), gets episodes of CoordinatorBatches on its Link stream: stale,
// zero and huge epochs, hostile transaction ids, commit and abort before
// prepare, duplicate (same request_id) and reordered requests, huge
// batches, deadlines in the past, one-phase prepares, and reflection edits
// of any of it; then raw, malformed encodings of batches.
//
// Oracles (see the barrier and fencing rules in participant/branch_manager.h):
//  * every request gets exactly one reply, while the stream lives, and the
//    stream ends only when the batch says so (wrong participant id:
//    FAILED_PRECONDITION; over the 8 MiB limit: RESOURCE_EXHAUSTED);
//  * errors are FAILED_PRECONDITION or INVALID_ARGUMENT with a message;
//    every request of a stale-epoch batch is refused with STALE_EPOCH;
//  * the answers agree with the outcome: once a branch voted YES, every
//    later acknowledgement names the branch's final outcome;
//  * no partial state: after aborting everything, no branch is left
//    PREPARED, and only keys of branches that ended COMMITTED changed.
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "participant/kv_resource.h"
#include "participant/participant_server.h"
#include "tests/fuzz/fuzz_world.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/oracle.h"
#include "tests/fuzz/raw_call.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::fuzz {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;

constexpr char kSidecar[] = "s1";
constexpr size_t kDefaultEpisodes = 150;
constexpr size_t kDefaultRawBatches = 400;
// The sidecar's receive limit (ParticipantOptions::max_message_bytes).
constexpr size_t kMaxBatchBytes = 8 << 20;
// Backstop for a stream whose replies never come.
constexpr absl::Duration kStreamTimeout = absl::Seconds(30);
// Transaction ids the sidecar accepts (BranchManager: 1..256 bytes).
constexpr size_t kMaxTransactionIdBytes = 256;

// What was sent about each transaction and answered, for the final checks.
class Ledger {
 public:
  void Sent(const v1::CoordinatorBatch& batch) {
    for (const v1::BranchRequest& request : batch.requests()) {
      Entry& entry = entries_[request.transaction_id()];
      if (request.has_prepare()) {
        for (const v1::KvOperation& op :
             request.prepare().branch().kv().operations()) {
          entry.keys.insert(participant::KeyOf(op));
        }
      }
    }
  }

  // Records the replies of step `step` (batches are answered in full
  // before the next is sent, so steps order them).
  void Answered(const std::vector<v1::BranchReply>& replies, size_t step) {
    for (const v1::BranchReply& reply : replies) {
      Entry& entry = entries_[reply.transaction_id()];
      if (reply.has_vote() && reply.vote() == v1::VOTE_YES &&
          entry.yes_step > step) {
        entry.yes_step = step;
      }
      entry.replies.emplace_back(step, reply);
    }
  }

  // Ids the sidecar accepts, to abort them all at the end.
  std::vector<std::string> AcceptedIds() const {
    std::vector<std::string> ids;
    for (const auto& [id, entry] : entries_) {
      if (!id.empty() && id.size() <= kMaxTransactionIdBytes) ids.push_back(id);
    }
    return ids;
  }

  // How many of the transactions ended COMMITTED.
  size_t Committed(const participant::BranchManager& manager) const {
    size_t n = 0;
    for (const auto& [id, entry] : entries_) {
      n += manager.StateOf(id) == "COMMITTED" ? 1 : 0;
    }
    return n;
  }

  // After the cleanup aborts: answers agree with the final states, nothing
  // is left PREPARED, and only keys of committed branches changed.
  absl::Status Check(const participant::BranchManager& manager,
                     const std::map<std::string, size_t>& kv_before,
                     const std::map<std::string, size_t>& kv_after) const {
    std::set<std::string> committed_keys;
    for (const auto& [id, entry] : entries_) {
      const std::string state = manager.StateOf(id);
      RETURN_IF_ERROR(CheckOutcome(id, entry, state));
      if (state == "COMMITTED") {
        committed_keys.insert(entry.keys.begin(), entry.keys.end());
      }
    }
    return CheckOnlyCommittedKeysChanged(committed_keys, kv_before, kv_after);
  }

 private:
  struct Entry {
    // The keys named by the prepares sent.
    std::set<std::string> keys;
    // The first step that answered VOTE_YES.
    size_t yes_step = SIZE_MAX;
    std::vector<std::pair<size_t, v1::BranchReply>> replies;
  };

  // `id` is not left prepared, and every acknowledgement after its YES vote
  // names its final `state`.
  static absl::Status CheckOutcome(const std::string& id, const Entry& entry,
                                   const std::string& state) {
    if (state == "PREPARED" || state == "PREPARING") {
      return absl::FailedPreconditionError(
          absl::StrCat("transaction ", Abbreviate(id), " is still ", state,
                       " after it was aborted"));
    }
    for (const auto& [step, reply] : entry.replies) {
      if (step <= entry.yes_step || !reply.has_ack()) continue;
      const bool says_committed = reply.ack() == v1::BranchReply::ACK_COMMITTED;
      if (says_committed != (state == "COMMITTED")) {
        return absl::FailedPreconditionError(
            absl::StrCat("transaction ", Abbreviate(id), " voted YES in step ",
                         entry.yes_step, ", was acknowledged ",
                         v1::BranchReply::Ack_Name(reply.ack()), " in step ",
                         step, ", and ended ", state));
      }
    }
    return absl::OkStatus();
  }

  static absl::Status CheckOnlyCommittedKeysChanged(
      const std::set<std::string>& committed_keys,
      const std::map<std::string, size_t>& kv_before,
      const std::map<std::string, size_t>& kv_after) {
    for (const auto& [key, hash] : kv_after) {
      auto before = kv_before.find(key);
      const bool changed = before == kv_before.end() || before->second != hash;
      if (changed && committed_keys.count(key) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("key ", Abbreviate(key),
                         " changed but no branch naming it committed"));
      }
    }
    for (const auto& [key, hash] : kv_before) {
      if (kv_after.count(key) == 0 && committed_keys.count(key) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("key ", Abbreviate(key),
                         " vanished but no branch naming it committed"));
      }
    }
    return absl::OkStatus();
  }

  std::map<std::string, Entry> entries_;
};

// One Link stream, driven batch by batch.
class LinkSession {
 public:
  explicit LinkSession(v1::ParticipantService::Stub& stub) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kStreamTimeout));
    stream_ = stub.Link(&context_);
  }

  // Sends `batch` and reads until every request has its reply (hello
  // batches skipped). False when the stream ended first.
  bool Exchange(const v1::CoordinatorBatch& batch,
                std::vector<v1::BranchReply>* replies) {
    replies->clear();
    if (!stream_->Write(batch)) return false;
    v1::ParticipantBatch in;
    while (replies->size() < static_cast<size_t>(batch.requests_size())) {
      if (!stream_->Read(&in)) return false;
      for (v1::BranchReply& reply : *in.mutable_replies()) {
        replies->push_back(std::move(reply));
      }
    }
    return true;
  }

  // Half-closes and returns the stream's status; an extra reply is an
  // error.
  grpc::Status Finish() {
    stream_->WritesDone();
    v1::ParticipantBatch extra;
    while (stream_->Read(&extra)) {
      if (extra.replies_size() > 0) {
        (void)stream_->Finish();
        return grpc::Status(
            grpc::StatusCode::INTERNAL,
            "replies nobody asked for: " + extra.ShortDebugString());
      }
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::CoordinatorBatch, v1::ParticipantBatch>>
      stream_;
};

// Every request answered once; errors clean; a stale batch refused whole.
absl::Status CheckReplies(const v1::CoordinatorBatch& batch, bool stale,
                          const std::vector<v1::BranchReply>& replies) {
  std::map<uint64_t, int> expected;
  for (const v1::BranchRequest& request : batch.requests()) {
    ++expected[request.request_id()];
  }
  for (const v1::BranchReply& reply : replies) {
    if (--expected[reply.request_id()] < 0) {
      return absl::InternalError(absl::StrCat(
          "request ", reply.request_id(), " answered more often than asked"));
    }
    if (reply.result_case() == v1::BranchReply::RESULT_NOT_SET ||
        (reply.has_ack() && reply.ack() == v1::BranchReply::ACK_UNSPECIFIED) ||
        (reply.has_vote() && reply.vote() == v1::VOTE_UNSPECIFIED)) {
      return absl::InternalError("a reply without a result: " +
                                 reply.ShortDebugString());
    }
    if (stale) {
      const absl::Status status = FromGrpcStatus(grpc::Status(
          static_cast<grpc::StatusCode>(reply.error().code()),
          reply.error().message(), reply.error().SerializeAsString()));
      std::optional<v1::ErrorInfo> info = GetErrorInfo(status);
      if (!reply.has_error() || !absl::IsFailedPrecondition(status) ||
          !info.has_value() || info->reason() != "STALE_EPOCH") {
        return absl::InternalError(
            "a request of a stale epoch was not refused with STALE_EPOCH: " +
            reply.ShortDebugString());
      }
    }
    if (!reply.has_error()) continue;
    const auto code = static_cast<grpc::StatusCode>(reply.error().code());
    if ((code != grpc::StatusCode::FAILED_PRECONDITION &&
         code != grpc::StatusCode::INVALID_ARGUMENT) ||
        reply.error().message().empty()) {
      return absl::InternalError("not a clean error reply: " +
                                 reply.ShortDebugString());
    }
  }
  for (const auto& [request_id, missing] : expected) {
    if (missing > 0) {
      return absl::InternalError(
          absl::StrCat("request ", request_id, " was not answered"));
    }
  }
  return absl::OkStatus();
}

class LinkFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    participant::ParticipantOptions options;
    options.id = kSidecar;
    options.listen = "127.0.0.1:0";
    options.coordinator = "";  // none: this test is its only coordinator
    options.data_dir = dir_.Sub(kSidecar);
    auto started = participant::ParticipantServer::Start(options);
    ASSERT_THAT(started, IsOk());
    sidecar_ = std::move(*started);
    Reconnect();
  }

  // A new channel (and connection) to the sidecar.
  void Reconnect() {
    channel_ = UnlimitedChannel(sidecar_->address());
    link_ = v1::ParticipantService::NewStub(channel_);
    kv_ = v1::KvService::NewStub(channel_);
  }

  void TearDown() override {
    if (sidecar_ != nullptr) sidecar_->Shutdown(absl::Seconds(1));
  }

  uint64_t highest_epoch() const {
    return sidecar_->manager()->highest_epoch();
  }

  // A well-formed prepare of `id`: puts under link/<id>/.
  static v1::BranchRequest Prepare(const std::string& id, absl::Time deadline,
                                   bool one_phase) {
    v1::BranchRequest request;
    request.set_transaction_id(id);
    v1::PrepareBranch* prepare = request.mutable_prepare();
    prepare->mutable_branch()->set_participant_id(kSidecar);
    for (const char* name : {"a", "b"}) {
      auto* put = prepare->mutable_branch()
                      ->mutable_kv()
                      ->add_operations()
                      ->mutable_put();
      put->set_key(absl::StrCat("link/", id, "/", name));
      put->set_value(id);
    }
    if (deadline != absl::InfiniteFuture()) {
      *prepare->mutable_deadline() =
          google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
              absl::ToUnixMicros(deadline));
    }
    prepare->set_one_phase(one_phase);
    return request;
  }

  // An epoch for the next batch: mostly the current one, sometimes stale,
  // zero, the next, or (rarely, it fences every later epoch) huge.
  uint64_t PickEpoch(Mutator& mutator) const {
    const uint64_t highest = highest_epoch();
    switch (mutator.Below(20)) {
      case 0:
        return highest == 0 ? 0 : highest - 1;
      case 1:
        return 0;
      case 2:
        return highest + 1;
      case 3:
        return mutator.OneIn(4) ? UINT64_MAX : highest + 1000;
      default:
        return highest;
    }
  }

  // A batch of requests about `ids`, in any order, with duplicates of
  // earlier requests of the episode and now and then a huge batch.
  v1::CoordinatorBatch PlanBatch(Mutator& mutator,
                                 const std::vector<std::string>& ids,
                                 std::vector<v1::BranchRequest>* history,
                                 uint64_t* next_request_id) {
    v1::CoordinatorBatch batch;
    batch.set_coordinator_epoch(PickEpoch(mutator));
    batch.set_expected_participant_id(mutator.OneIn(3) ? "" : kSidecar);
    const size_t count =
        mutator.OneIn(15) ? 1000 + mutator.Below(2000) : 1 + mutator.Below(4);
    for (size_t i = 0; i < count; ++i) {
      if (!history->empty() && mutator.OneIn(5)) {
        // A duplicate: same request_id, same content.
        *batch.add_requests() = (*history)[mutator.Below(history->size())];
        continue;
      }
      const std::string& id = ids[mutator.Below(ids.size())];
      v1::BranchRequest request;
      switch (mutator.Below(4)) {
        case 0:
        case 1: {
          const absl::Time deadlines[] = {absl::Now() + absl::Seconds(30),
                                          absl::InfiniteFuture(),
                                          absl::Now() - absl::Seconds(1)};
          request = Prepare(id, deadlines[mutator.Below(3)], mutator.OneIn(5));
          break;
        }
        case 2:
          request.set_transaction_id(id);
          request.mutable_commit();
          break;
        default:
          request.set_transaction_id(id);
          request.mutable_abort()->set_reason("fuzz abort");
          break;
      }
      request.set_request_id((*next_request_id)++);
      history->push_back(request);
      *batch.add_requests() = std::move(request);
    }
    return batch;
  }

  // What the episodes exercised, for the summary.
  struct Coverage {
    size_t batches = 0;
    size_t stale = 0;
    size_t stream_ends = 0;
    size_t committed = 0;
  };

  // The status with which the sidecar ends the stream on receiving
  // `encoded` (the encoding of `batch`), or nullopt when it answers it.
  static std::optional<grpc::StatusCode> EndsStream(
      const v1::CoordinatorBatch& batch, const std::string& encoded) {
    v1::CoordinatorBatch received;
    if (encoded.size() > kMaxBatchBytes) {
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    }
    if (!received.ParseFromString(encoded)) {
      return grpc::StatusCode::INVALID_ARGUMENT;
    }
    if (!batch.expected_participant_id().empty() &&
        batch.expected_participant_id() != kSidecar) {
      return grpc::StatusCode::FAILED_PRECONDITION;
    }
    return std::nullopt;
  }

  // One episode: a stream of one to five planned (and maybe edited)
  // batches about two fresh transactions, every answer checked; then
  // everything aborted and the ledger checked.
  void RunEpisode(size_t episode, const std::string& budget, Mutator& mutator,
                  Coverage* coverage) {
    const std::vector<std::string> ids = {absl::StrCat("ep", episode, "-t0"),
                                          absl::StrCat("ep", episode, "-t1")};
    mutator.set_dictionary({kSidecar, ids[0], ids[1], "",
                            std::string(kMaxTransactionIdBytes + 1, 'x')});
    absl::StatusOr<std::map<std::string, size_t>> kv_before = KvDigest(*kv_);
    ASSERT_THAT(kv_before, IsOk());
    Ledger ledger;
    std::vector<v1::BranchRequest> history;
    uint64_t next_request_id = 1;
    std::string replay;
    LinkSession session(*link_);
    grpc::StatusCode expected_end = grpc::StatusCode::OK;
    const size_t steps = 1 + mutator.Below(5);
    for (size_t step = 0; step < steps; ++step) {
      v1::CoordinatorBatch batch =
          PlanBatch(mutator, ids, &history, &next_request_id);
      std::vector<std::string> edits;
      if (mutator.OneIn(3)) mutator.MutateMessage(&batch, &edits);
      replay = absl::StrCat(budget, ", episode ", episode, ", step ", step,
                            ", edits: ", absl::StrJoin(edits, "; "));
      const std::string encoded = batch.SerializePartialAsString();
      if (std::optional<grpc::StatusCode> end = EndsStream(batch, encoded)) {
        expected_end = *end;
        std::vector<v1::BranchReply> ignored;
        (void)session.Exchange(batch, &ignored);
        ++coverage->stream_ends;
        break;
      }
      const bool stale = batch.coordinator_epoch() < highest_epoch();
      ledger.Sent(batch);
      std::vector<v1::BranchReply> replies;
      ASSERT_TRUE(session.Exchange(batch, &replies))
          << "the stream ended on a valid batch; " << replay;
      ASSERT_THAT(CheckReplies(batch, stale, replies), IsOk()) << replay;
      ledger.Answered(replies, step);
      ++coverage->batches;
      coverage->stale += stale ? 1 : 0;
    }
    const grpc::Status end = session.Finish();
    ASSERT_EQ(end.error_code(), expected_end)
        << end.error_message() << "; " << replay;
    ASSERT_TRUE(end.ok() || !end.error_message().empty()) << replay;

    ASSERT_THAT(AbortAll(ledger.AcceptedIds()), IsOk()) << replay;
    absl::StatusOr<std::map<std::string, size_t>> kv_after = KvDigest(*kv_);
    ASSERT_THAT(kv_after, IsOk());
    ASSERT_THAT(ledger.Check(*sidecar_->manager(), *kv_before, *kv_after),
                IsOk())
        << replay;
    ASSERT_EQ(sidecar_->manager()->prepared_branches(), 0u) << replay;
    ASSERT_TRUE(IsServing(channel_, absl::Seconds(5))) << replay;
    coverage->committed += ledger.Committed(*sidecar_->manager());
  }

  // Aborts every id on a fresh stream of the current epoch; every answer
  // must be an acknowledgement.
  absl::Status AbortAll(const std::vector<std::string>& ids) {
    LinkSession session(*link_);
    v1::CoordinatorBatch batch;
    batch.set_coordinator_epoch(highest_epoch());
    uint64_t request_id = 1;
    for (const std::string& id : ids) {
      v1::BranchRequest* request = batch.add_requests();
      request->set_request_id(request_id++);
      request->set_transaction_id(id);
      request->mutable_abort()->set_reason("cleanup");
    }
    std::vector<v1::BranchReply> replies;
    if (!session.Exchange(batch, &replies)) {
      return FromGrpcStatus(session.Finish());
    }
    for (const v1::BranchReply& reply : replies) {
      if (!reply.has_ack()) {
        return absl::InternalError("cleanup abort not acknowledged: " +
                                   reply.ShortDebugString());
      }
    }
    return FromGrpcStatus(session.Finish());
  }

  testing::TempDir dir_;
  std::unique_ptr<participant::ParticipantServer> sidecar_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ParticipantService::Stub> link_;
  std::unique_ptr<v1::KvService::Stub> kv_;
};

TEST_F(LinkFuzzTest,
       HostileCoordinatorGetsCleanAnswersAndCannotBreakTheBarrier) {
  google::protobuf::LogSilencer quiet;
  const FuzzBudget budget(kDefaultEpisodes);
  Mutator mutator(budget.seed(), {});
  Coverage coverage;
  size_t episode = 0;
  for (; budget.Continue(episode); ++episode) {
    RunEpisode(episode, budget.Describe(), mutator, &coverage);
    ASSERT_FALSE(HasFatalFailure());
  }
  std::printf(
      "link fuzz: %zu episodes (%s): %zu batches answered (%zu stale), %zu "
      "streams ended by a batch, %zu transactions committed\n",
      episode, budget.Describe().c_str(), coverage.batches, coverage.stale,
      coverage.stream_ends, coverage.committed);
}

TEST_F(LinkFuzzTest, MalformedBatchesGetCleanAnswersAndLeaveNothingPrepared) {
  google::protobuf::LogSilencer quiet;
  const FuzzBudget budget(kDefaultRawBatches);
  Mutator mutator(budget.seed(), {kSidecar});
  absl::StatusOr<std::map<std::string, size_t>> kv_before = KvDigest(*kv_);
  ASSERT_THAT(kv_before, IsOk());
  Ledger ledger;
  size_t i = 0;
  size_t unparseable = 0;
  for (; budget.Continue(i); ++i) {
    v1::CoordinatorBatch seed;
    seed.set_coordinator_epoch(highest_epoch());
    seed.set_expected_participant_id(kSidecar);
    *seed.add_requests() = Prepare(absl::StrCat("raw-", i),
                                   absl::Now() + absl::Seconds(30), false);
    seed.mutable_requests(0)->set_request_id(1);
    std::vector<std::string> edits;
    const std::string bytes =
        mutator.MutateBytes(seed.SerializeAsString(), &edits);
    v1::CoordinatorBatch parsed;
    const bool parses = parsed.ParseFromString(bytes);
    const bool stale = parses && parsed.coordinator_epoch() < highest_epoch();
    if (parses) ledger.Sent(parsed);
    const RawResult result =
        RawCall(channel_, "/twopc.v1.ParticipantService/Link", bytes,
                absl::Seconds(10), /*max_responses=*/SIZE_MAX);
    const std::string replay =
        absl::StrCat(budget.Describe(), ", batch ", i,
                     ", edits: ", absl::StrJoin(edits, "; "));
    const Verdict verdict = Judge(
        {.response_type = &v1::ParticipantBatch::default_instance()}, result);
    ASSERT_TRUE(verdict.clean()) << verdict.finding << "; " << replay;
    if (!parses && bytes.size() <= kMaxBatchBytes) {
      // Refused as such, not taken for the end of the stream.
      ++unparseable;
      ASSERT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << result.status.error_message() << "; " << replay;
      ASSERT_THAT(result.status.error_message(),
                  HasSubstr("not a valid twopc.v1.CoordinatorBatch"))
          << replay;
    }
    std::vector<v1::BranchReply> replies;
    for (const std::string& response : result.responses) {
      v1::ParticipantBatch batch;
      ASSERT_TRUE(batch.ParseFromString(response)) << replay;
      replies.insert(replies.end(), batch.replies().begin(),
                     batch.replies().end());
    }
    if (parses && result.status.ok()) {
      ASSERT_THAT(CheckReplies(parsed, stale, replies), IsOk()) << replay;
      ledger.Answered(replies, i);
    }
  }
  ASSERT_THAT(AbortAll(ledger.AcceptedIds()), IsOk());
  absl::StatusOr<std::map<std::string, size_t>> kv_after = KvDigest(*kv_);
  ASSERT_THAT(kv_after, IsOk());
  EXPECT_THAT(ledger.Check(*sidecar_->manager(), *kv_before, *kv_after),
              IsOk());
  EXPECT_EQ(sidecar_->manager()->prepared_branches(), 0u);
  EXPECT_TRUE(IsServing(channel_, absl::Seconds(5)));
  EXPECT_GT(unparseable, 0u) << "no batch that does not parse was tried";
  std::printf("raw link fuzz: %zu batches, %zu not parseable (%s)\n", i,
              unparseable, budget.Describe().c_str());
}

}  // namespace
}  // namespace twopc::fuzz
