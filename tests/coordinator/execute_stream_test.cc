// TransactionService.ExecuteStream against a real CoordinatorServer and
// scripted participants (coordinator_fixture.h): each request is an Execute,
// answered by a tagged result; the stream's own end and its flow control.
#include "coordinator/execute_streams.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/execute_stream_metadata.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/error_info_matchers.h"
#include "tests/testing/status_matchers.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::coordinator {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::HasErrorInfo;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using Stream = grpc::ClientReaderWriter<v1::ExecuteStreamRequest,
                                        v1::ExecuteStreamResponse>;

class ExecuteStreamTest : public CoordinatorServerTest {
 protected:
  std::unique_ptr<Stream> Open(grpc::ClientContext* context) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    return transactions_->ExecuteStream(context);
  }

  // Reads until `count` results arrived (or the stream ended): tag ->
  // result as the client sees it.
  static std::map<uint64_t, absl::StatusOr<v1::Transaction>> ReadResults(
      Stream* stream, size_t count) {
    std::map<uint64_t, absl::StatusOr<v1::Transaction>> results;
    v1::ExecuteStreamResponse response;
    while (results.size() < count && stream->Read(&response)) {
      for (const auto& result : response.results()) {
        absl::Status status = FromRpcStatus(result.status());
        if (status.ok()) {
          results.emplace(result.tag(), result.transaction());
        } else {
          results.emplace(result.tag(), status);
        }
      }
    }
    return results;
  }

  static void Add(v1::ExecuteStreamRequest* message, uint64_t tag,
                  v1::ExecuteRequest request) {
    auto* item = message->add_items();
    item->set_tag(tag);
    *item->mutable_request() = std::move(request);
  }
};

TEST_F(ExecuteStreamTest, EachRequestGetsTheResultExecuteWouldGive) {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest first;
  Add(&first, 10, TwoBranches());
  Add(&first, 11, v1::ExecuteRequest());  // no branch
  Add(&first, 12, TwoBranches("order-1"));
  ASSERT_TRUE(stream->Write(first));
  v1::ExecuteStreamRequest second;
  v1::ExecuteRequest unknown;
  *unknown.add_branches() = KvBranch("nobody");
  Add(&second, 13, unknown);
  Add(&second, 14, TwoBranches());
  ASSERT_TRUE(stream->Write(second));

  auto results = ReadResults(stream.get(), 5);
  ASSERT_EQ(results.size(), 5u);
  for (uint64_t tag : {10, 12, 14}) {
    ASSERT_THAT(results.at(tag), IsOk()) << tag;
    EXPECT_EQ(results.at(tag)->outcome(), v1::OUTCOME_COMMITTED);
    EXPECT_TRUE(a_->WaitFor("commit:" + results.at(tag)->transaction_id()));
  }
  EXPECT_NE(results.at(10)->transaction_id(), results.at(14)->transaction_id());
  EXPECT_THAT(results.at(11), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("no branch")));
  EXPECT_THAT(results.at(13), StatusIs(absl::StatusCode::kNotFound,
                                       HasSubstr("not registered")));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(results.at(13).status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->certainty(), v1::ErrorInfo::CERTAINTY_DEFINITE);

  // The idempotency key is the same key as Execute's.
  absl::StatusOr<v1::Transaction> again = Execute(TwoBranches("order-1"));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->transaction_id(), results.at(12)->transaction_id());

  ASSERT_TRUE(stream->WritesDone());
  v1::ExecuteStreamResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  EXPECT_TRUE(stream->Finish().ok());
}

// Results that become ready together go out together: 200 requests refused
// at once (no branch) are answered in one event of the coordinator's loop,
// so in at most two messages (one written at once, the rest while it is
// out), not one message per result.
TEST_F(ExecuteStreamTest, ResultsReadyTogetherShareAMessage) {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest message;
  for (int tag = 0; tag < 200; ++tag) Add(&message, tag, v1::ExecuteRequest());
  ASSERT_TRUE(stream->Write(message));
  int messages = 0;
  int results = 0;
  v1::ExecuteStreamResponse response;
  while (results < 200 && stream->Read(&response)) {
    ++messages;
    results += response.results_size();
  }
  EXPECT_EQ(results, 200);
  EXPECT_LE(messages, 2);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ExecuteStreamTest, AnAbortCarriesItsReasonAndErrorInfo) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kNo);
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest message;
  Add(&message, 7, TwoBranches());
  ASSERT_TRUE(stream->Write(message));
  auto results = ReadResults(stream.get(), 1);
  ASSERT_EQ(results.count(7), 1u);
  EXPECT_THAT(results.at(7), StatusIs(absl::StatusCode::kAborted,
                                      HasSubstr("balance would be -5")));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(results.at(7).status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "VOTED_NO");
  EXPECT_EQ(info->participant_id(), "b");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// The results of requests already started still come; then the stream ends
// with the refusal, and nothing of the refused message was started.
TEST_F(ExecuteStreamTest, AMessageOverTheLimitEndsTheStreamAfterEarlierResults) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest first;
  v1::ExecuteRequest slow = TwoBranches();
  slow.mutable_timeout()->set_nanos(300'000'000);
  Add(&first, 1, slow);
  ASSERT_TRUE(stream->Write(first));
  ASSERT_TRUE(a_->WaitFor("prepare:1-1"));
  v1::ExecuteStreamRequest too_many;
  for (int i = 0; i <= ExecuteStreams::kMaxRequestsPerMessage; ++i) {
    Add(&too_many, 100 + i, TwoBranches());
  }
  stream->Write(too_many);  // may fail once the server refused it

  auto results = ReadResults(stream.get(), 2);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_THAT(results.at(1), StatusIs(absl::StatusCode::kAborted,
                                      HasSubstr("no vote from b")));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("at most ",
                                     ExecuteStreams::kMaxRequestsPerMessage)));
  EXPECT_THAT(status, HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE,
                                   "MESSAGE_REFUSED"));
  ASSERT_TRUE(a_->WaitFor("abort:1-1"));
  EXPECT_EQ(a_->received().size(), 2u);  // the prepare and abort of 1-1
}

// With kMaxUnanswered requests waiting for results the stream is not read:
// the next request reaches the manager only once results went out, so at
// that many in flight it is not refused RESOURCE_EXHAUSTED.
TEST_F(ExecuteStreamTest, ReadingPausesWhileTooManyRequestsWaitForResults) {
  coordinator_->Shutdown(absl::ZeroDuration());
  options_.manager.limits.max_inflight = ExecuteStreams::kMaxUnsent;
  StartCoordinator();
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);

  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteRequest stalled = TwoBranches();
  stalled.mutable_timeout()->set_seconds(2);
  for (int sent = 0; sent < ExecuteStreams::kMaxUnsent;) {
    v1::ExecuteStreamRequest message;
    for (int i = 0; i < ExecuteStreams::kMaxRequestsPerMessage; ++i, ++sent) {
      Add(&message, sent, stalled);
    }
    ASSERT_TRUE(stream->Write(message));
  }
  v1::ExecuteStreamRequest last;
  v1::ExecuteRequest a_only;
  *a_only.add_branches() = KvBranch("a");
  Add(&last, 99'999, a_only);
  ASSERT_TRUE(stream->Write(last));
  ASSERT_TRUE(stream->WritesDone());

  auto results = ReadResults(stream.get(), ExecuteStreams::kMaxUnsent + 1);
  ASSERT_EQ(results.size(), ExecuteStreams::kMaxUnsent + 1u);
  EXPECT_THAT(results.at(0), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(results.at(99'999), IsOk());
  EXPECT_TRUE(stream->Finish().ok());
}

// A client that goes away loses its results, not its transactions; the
// coordinator serves on.
TEST_F(ExecuteStreamTest, AClientThatGoesAwayDoesNotStopItsTransactions) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  {
    grpc::ClientContext context;
    std::unique_ptr<Stream> stream = Open(&context);
    v1::ExecuteStreamRequest message;
    v1::ExecuteRequest request = TwoBranches("left-behind");
    request.mutable_timeout()->set_nanos(300'000'000);
    Add(&message, 1, request);
    ASSERT_TRUE(stream->Write(message));
    ASSERT_TRUE(a_->WaitFor("prepare:1-1"));
    context.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  v1::ExecuteRequest again = TwoBranches("left-behind");
  again.mutable_timeout()->set_nanos(300'000'000);
  EXPECT_THAT(Execute(again), StatusIs(absl::StatusCode::kAborted,
                                       HasSubstr("no vote from b")));
  b_->set_on_prepare(FakeParticipant::OnPrepare::kYes);
  EXPECT_THAT(Execute(TwoBranches()), IsOk());
}

// Shutdown answers what waits (ambiguously) and ends the stream.
TEST_F(ExecuteStreamTest, ShutdownAnswersWaitingRequests) {
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest message;
  Add(&message, 5, TwoBranches());
  ASSERT_TRUE(stream->Write(message));
  ASSERT_TRUE(a_->WaitFor("prepare:1-1"));
  coordinator_->Shutdown(absl::Milliseconds(200));
  auto results = ReadResults(stream.get(), 1);
  ASSERT_EQ(results.count(5), 1u);
  EXPECT_TRUE(IsAmbiguous(results.at(5).status().code()))
      << results.at(5).status();
  const grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE)
      << end.error_message();
  StartCoordinator();  // for TearDown symmetry
}

// A shutdown does not wait for a client that keeps its stream open (its
// grace here is as long as the test's patience): the stream ends
// UNAVAILABLE, saying that its requests without a result were not started.
TEST_F(ExecuteStreamTest, ShutdownEndsAStreamTheClientKeepsOpen) {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteStreamRequest message;
  Add(&message, 1, TwoBranches());
  ASSERT_TRUE(stream->Write(message));
  auto results = ReadResults(stream.get(), 1);
  ASSERT_EQ(results.count(1), 1u);
  ASSERT_THAT(results.at(1).status(), IsOk());
  coordinator_->Shutdown(kWait);
  v1::ExecuteStreamResponse response;
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE)
      << end.error_message();
  EXPECT_THAT(end.error_message(), HasSubstr("were not started"));
  // Definite, unlike a transport's UNAVAILABLE: a client may send again.
  EXPECT_THAT(end, HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE,
                                "SHUTTING_DOWN"));
  StartCoordinator();  // for TearDown symmetry
}

// Streams beyond --max_execute_streams end at once RESOURCE_EXHAUSTED,
// nothing of them started; once a stream ends, another may open.
TEST_F(ExecuteStreamTest, StreamsBeyondTheLimitAreRefused) {
  options_.manager.limits.max_execute_streams = 2;
  coordinator_->Shutdown(absl::Seconds(1));
  StartCoordinator();
  // Runs one transaction on a new stream; its result, or the stream's end.
  struct Opened {
    std::unique_ptr<grpc::ClientContext> context =
        std::make_unique<grpc::ClientContext>();
    std::unique_ptr<Stream> stream;
  };
  auto open = [&](const std::string& key, absl::Status* result) {
    Opened opened;
    opened.stream = Open(opened.context.get());
    v1::ExecuteStreamRequest message;
    Add(&message, 1, TwoBranches(key));
    opened.stream->Write(message);  // may fail once the server refused it
    auto results = ReadResults(opened.stream.get(), 1);
    *result = results.count(1) == 1 ? results.at(1).status()
                                    : FromGrpcStatus(opened.stream->Finish());
    return opened;
  };
  absl::Status result;
  Opened first = open("first", &result);
  ASSERT_THAT(result, IsOk());
  Opened second = open("second", &result);
  ASSERT_THAT(result, IsOk());
  open("third", &result);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("--max_execute_streams")));
  EXPECT_THAT(result, HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE,
                                   "LIMIT_EXCEEDED"));
  grpc::ClientContext get_context;
  v1::GetRequest get;
  get.mutable_ref()->set_idempotency_key("third");
  v1::GetResponse got;
  EXPECT_EQ(transactions_->Get(&get_context, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);  // nothing of it started

  first.stream->WritesDone();
  ASSERT_TRUE(first.stream->Finish().ok());
  // The server counts the stream closed once its end went out: soon.
  const absl::Time deadline = absl::Now() + kWait;
  do {
    open("fourth", &result);
  } while (!result.ok() && absl::Now() < deadline);
  EXPECT_THAT(result, IsOk());
}

// A stream the coordinator serves says so in its initial metadata before
// the client writes anything (so a client knows that a stream ending before
// it started nothing); a refused one ends without it.
TEST_F(ExecuteStreamTest, AServedStreamSaysSoBeforeAnythingIsWritten) {
  options_.manager.limits.max_execute_streams = 1;
  coordinator_->Shutdown(absl::Seconds(1));
  StartCoordinator();
  grpc::ClientContext served_context;
  std::unique_ptr<Stream> served = Open(&served_context);
  served->WaitForInitialMetadata();
  const auto& metadata = served_context.GetServerInitialMetadata();
  auto key = metadata.find(kExecuteStreamServingKey);
  ASSERT_NE(key, metadata.end());
  EXPECT_EQ(key->second, "1");

  grpc::ClientContext refused_context;
  std::unique_ptr<Stream> refused = Open(&refused_context);
  refused->WaitForInitialMetadata();
  EXPECT_EQ(refused_context.GetServerInitialMetadata().count(
                kExecuteStreamServingKey),
            0u);
  EXPECT_EQ(refused->Finish().error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  served->WritesDone();
  EXPECT_TRUE(served->Finish().ok());
}

// Results the client does not read count against kMaxUnsent as much as
// requests without an answer: the coordinator stops reading, so memory
// stays bounded. Once the client reads, everything is served.
TEST_F(ExecuteStreamTest, AClientThatDoesNotReadIsNotReadEither) {
  // The client's transport takes results into its own buffers up to its
  // flow-control window even when nobody reads; keep that window small
  // (no BDP probing, which would grow it to megabytes).
  constexpr int kClientWindowBytes = 16 << 10;
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  arguments.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kClientWindowBytes);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto client = v1::TransactionService::NewStub(grpc::CreateCustomChannel(
      coordinator_->address(), grpc::InsecureChannelCredentials(), arguments));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
  std::unique_ptr<Stream> stream = client->ExecuteStream(&context);
  constexpr int kMessages = 8;
  constexpr int kRequests = kMessages * ExecuteStreams::kMaxRequestsPerMessage;
  std::thread writer([&] {  // its writes block once the coordinator stops
    for (int m = 0; m < kMessages; ++m) {
      v1::ExecuteStreamRequest message;
      for (int i = 0; i < ExecuteStreams::kMaxRequestsPerMessage; ++i) {
        Add(&message, m * ExecuteStreams::kMaxRequestsPerMessage + i,
            TwoBranches());
      }
      ASSERT_TRUE(stream->Write(message));
    }
    stream->WritesDone();
  });
  auto prepares = [this] {
    int n = 0;
    for (const std::string& event : a_->received()) {
      n += event.rfind("prepare:", 0) == 0;
    }
    return n;
  };
  const absl::Time deadline = absl::Now() + kWait;
  while (prepares() < ExecuteStreams::kMaxUnsent && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(prepares(), ExecuteStreams::kMaxUnsent);
  // Bound: kMaxUnsent, plus the rest of the last message read, plus the
  // results the client's window took (well under 1,024 at 16 KiB). A
  // coordinator that kept reading would pass it within moments (it starts
  // thousands of these per second); one that pauses never does.
  const int bound =
      ExecuteStreams::kMaxUnsent + 2 * ExecuteStreams::kMaxRequestsPerMessage;
  const absl::Time until = absl::Now() + absl::Seconds(1);
  while (prepares() <= bound && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_LE(prepares(), bound);

  auto results = ReadResults(stream.get(), kRequests);
  writer.join();
  EXPECT_EQ(results.size(), static_cast<size_t>(kRequests));
  for (const auto& [tag, result] : results) {
    ASSERT_THAT(result, IsOk()) << tag;
  }
  EXPECT_TRUE(stream->Finish().ok());
}

// The server does not wait for asynchronous calls at shutdown: streams whose
// last events are still on the loop must end before the loop does (this
// aborted in gRPC, or used a freed ExecuteStreams, before OpenCalls).
TEST(ExecuteStreamShutdownTest, OpenStreamsEndBeforeTheLoop) {
  for (int round = 0; round < 40; ++round) {
    TempDir dir;
    CoordinatorOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir.Sub("coordinator");
    auto server = CoordinatorServer::Start(options);
    ASSERT_THAT(server, IsOk());
    auto stub = v1::TransactionService::NewStub(grpc::CreateChannel(
        (*server)->address(), grpc::InsecureChannelCredentials()));
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<Stream>> streams;
    for (int i = 0; i < 8; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      streams.push_back(stub->ExecuteStream(contexts.back().get()));
      v1::ExecuteStreamRequest message;
      auto* item = message.add_items();
      item->set_tag(i);
      v1::Branch* branch = item->mutable_request()->add_branches();
      branch->set_participant_id("nobody");
      branch->mutable_kv()->add_operations()->mutable_put()->set_key("k");
      streams.back()->Write(message);
    }
    (*server)->Shutdown(absl::ZeroDuration());
    for (size_t i = 0; i < streams.size(); ++i) {
      contexts[i]->TryCancel();  // results may be left unread
      streams[i]->Finish();
    }
  }
}

}  // namespace
}  // namespace twopc::coordinator
