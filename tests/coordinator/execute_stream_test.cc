// TransactionService.ExecuteStream against a real CoordinatorServer and
// scripted participants (coordinator_fixture.h): each request is an Execute,
// answered by a tagged result; the stream's own end and its flow control.
#include "coordinator/execute_streams.h"

#include <map>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/status_matchers.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::coordinator {
namespace {

using ::testing::HasSubstr;
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
  ASSERT_TRUE(a_->WaitFor("abort:1-1"));
  EXPECT_EQ(a_->received().size(), 2u);  // the prepare and abort of 1-1
}

// With kMaxUnanswered requests waiting for results the stream is not read:
// the next request reaches the manager only once results went out, so at
// that many in flight it is not refused RESOURCE_EXHAUSTED.
TEST_F(ExecuteStreamTest, ReadingPausesWhileTooManyRequestsWaitForResults) {
  coordinator_->Shutdown(absl::ZeroDuration());
  options_.manager.limits.max_inflight = ExecuteStreams::kMaxUnanswered;
  StartCoordinator();
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);

  grpc::ClientContext context;
  std::unique_ptr<Stream> stream = Open(&context);
  v1::ExecuteRequest stalled = TwoBranches();
  stalled.mutable_timeout()->set_seconds(2);
  for (int sent = 0; sent < ExecuteStreams::kMaxUnanswered;) {
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

  auto results = ReadResults(stream.get(), ExecuteStreams::kMaxUnanswered + 1);
  ASSERT_EQ(results.size(), ExecuteStreams::kMaxUnanswered + 1u);
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
  if (results.count(5) == 1) {
    EXPECT_TRUE(IsAmbiguous(results.at(5).status().code()))
        << results.at(5).status();
  }
  EXPECT_FALSE(stream->Finish().ok());
  StartCoordinator();  // for TearDown symmetry
}

}  // namespace
}  // namespace twopc::coordinator
