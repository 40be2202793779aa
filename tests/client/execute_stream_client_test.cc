// ExecuteStreamClient against a real CoordinatorServer (coordinator_fixture.h)
// for what the coordinator answers, and against a scripted TransactionService
// for how the client handles a stream that ends, hangs or cannot be opened.
#include "client/execute_stream_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/coordinator_channel.h"
#include "common/execute_stream_metadata.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/error_info_matchers.h"
#include "tests/testing/eventually.h"
#include "tests/testing/tcp_proxy.h"

namespace twopc::client {
namespace {

using ::twopc::testing::Eventually;
using ::twopc::testing::HasErrorInfo;

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::twopc::coordinator::CoordinatorServerTest;
using ::twopc::coordinator::FakeParticipant;
using ::twopc::coordinator::kWait;

// A result as the test keeps it.
struct Result {
  grpc::Status status;
  v1::ExecuteResponse response;
};

// Collects the results of ExecuteAsync calls; waits for them.
class Results {
 public:
  ExecuteStreamClient::Done Slot(int index) {
    return [this, index](grpc::Status status, v1::ExecuteResponse response) {
      absl::MutexLock lock(&mu_);
      EXPECT_EQ(results_.count(index), 0u) << "two results for " << index;
      results_[index] = Result{std::move(status), std::move(response)};
    };
  }
  // The results once `count` have come; fails the test after kWait.
  std::map<int, Result> WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return results_.size() >= count;
    };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), kWait))
        << results_.size() << " of " << count << " results";
    return results_;
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return results_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::map<int, Result> results_ ABSL_GUARDED_BY(mu_);
};

// The port of "host:port".
int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port))
      << address;
  return port;
}

ExecuteStreamClient::Options Resending() {
  ExecuteStreamClient::Options options;
  options.resend_not_started = true;
  return options;
}

// A completion queue the test drives on a thread of its own, from Start()
// on. Declare it before the client: the client must be destroyed while its
// queue is still driven.
class DrivenQueue {
 public:
  ~DrivenQueue() {
    queue_.Shutdown();
    if (driver_.joinable()) {
      driver_.join();
    } else {
      Drain();
    }
  }
  grpc::CompletionQueue* get() { return &queue_; }
  void Start() {
    driver_ = std::thread([this] { Drain(); });
  }

 private:
  void Drain() {
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      static_cast<CompletionQueueLoop::Handler*>(tag)->OnEvent(ok);
    }
  }

  grpc::CompletionQueue queue_;
  std::thread driver_;
};

// --- against the real coordinator -----------------------------------------

class ExecuteStreamClientTest : public CoordinatorServerTest {
 protected:
  std::shared_ptr<grpc::Channel> Channel() {
    return grpc::CreateChannel(coordinator_->address(),
                               grpc::InsecureChannelCredentials());
  }
  // A resending client that reaches the coordinator through proxy_ (which
  // can then stand for a coordinator that is down, or has moved).
  std::unique_ptr<ExecuteStreamClient> ResendingClientBehindAProxy() {
    auto proxy = testing::TcpProxy::Start(PortOf(coordinator_->address()));
    EXPECT_TRUE(proxy.ok()) << proxy.status();
    if (!proxy.ok()) return nullptr;
    proxy_ = std::move(*proxy);
    return std::make_unique<ExecuteStreamClient>(
        CreateCoordinatorChannel(proxy_->address(),
                                 grpc::InsecureChannelCredentials()),
        Resending());
  }

  std::unique_ptr<testing::TcpProxy> proxy_;
};

TEST_F(ExecuteStreamClientTest, RequestsSubmittedTogetherShareOneMessage) {
  // The test drives the client's queue itself, and only once everything is
  // submitted: the stream cannot start before, so all 300 requests wait
  // for one message.
  DrivenQueue queue;
  Results results;
  ExecuteStreamClient client(Channel(), queue.get(), {});
  for (int i = 0; i < 300; ++i) {
    client.ExecuteAsync(TwoBranches(), results.Slot(i));
  }
  queue.Start();
  std::map<int, Result> answered = results.WaitFor(300);
  std::set<std::string> ids;
  for (const auto& [index, result] : answered) {
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.response.transaction().outcome(), v1::OUTCOME_COMMITTED);
    ids.insert(result.response.transaction().transaction_id());
  }
  EXPECT_EQ(ids.size(), 300u) << "each request is a transaction of its own";
  const ExecuteStreamClient::Counts counts = client.counts();
  EXPECT_EQ(counts.streams_opened, 1u);
  EXPECT_EQ(counts.messages_written, 1u);
  EXPECT_EQ(counts.requests_written, 300u);
  client.Close();
  EXPECT_TRUE(Eventually([&] { return client.Closed(); }));
}

TEST_F(ExecuteStreamClientTest, ManyThreadsShareTheClient) {
  ExecuteStreamClient client(Channel(), {});
  std::vector<std::thread> callers;
  std::atomic<int> committed{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        v1::ExecuteResponse response;
        grpc::Status status = client.Execute(TwoBranches(), &response);
        EXPECT_TRUE(status.ok()) << status.error_message();
        if (response.transaction().outcome() == v1::OUTCOME_COMMITTED)
          ++committed;
      }
    });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(committed.load(), 100);
  EXPECT_EQ(client.counts().streams_opened, 1u);
}

TEST_F(ExecuteStreamClientTest,
       AFailedTransactionGetsTheErrorExecuteWouldGive) {
  ExecuteStreamClient client(Channel(), {});
  v1::ExecuteRequest unknown;
  *unknown.add_branches() = KvBranch("nobody");
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(unknown, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("nobody"));
  EXPECT_THAT(status, HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE,
                                   "PARTICIPANT_UNKNOWN"));

  a_->set_on_prepare(FakeParticipant::OnPrepare::kNo);
  status = client.Execute(TwoBranches(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("balance would be -5"));
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "VOTED_NO"));
}

TEST_F(ExecuteStreamClientTest,
       ACoordinatorShutdownEndsTheStreamAndTheNextOneIsNew) {
  ExecuteStreamClient client(Channel(), {});
  v1::ExecuteResponse response;
  ASSERT_TRUE(client.Execute(TwoBranches(), &response).ok());
  // The stream ends with the coordinator; the next request opens a new
  // stream, which reaches no coordinator, so it fails as not sent.
  coordinator_->Shutdown(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return client.counts().streams_ended == 1; }));
  grpc::Status status = client.Execute(TwoBranches(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
  EXPECT_EQ(client.counts().streams_opened, 2u);
  StartCoordinator();  // for TearDown symmetry
}

TEST_F(ExecuteStreamClientTest,
       ResendingCarriesRequestsAcrossACoordinatorRestart) {
  std::unique_ptr<ExecuteStreamClient> client = ResendingClientBehindAProxy();
  ASSERT_NE(client, nullptr);
  v1::ExecuteResponse response;
  ASSERT_TRUE(client->Execute(TwoBranches(), &response).ok());

  // The coordinator goes down; requests sent meanwhile wait for it.
  proxy_->SetTargetPort(0);
  coordinator_->Shutdown(absl::Seconds(1));
  coordinator_.reset();
  ASSERT_TRUE(Eventually([&] { return client->counts().streams_ended == 1; }));
  Results results;
  constexpr int kRequests = 5;
  for (int i = 0; i < kRequests; ++i) {
    client->ExecuteAsync(TwoBranches(), results.Slot(i));
  }
  const int attempts = proxy_->connections_accepted();
  ASSERT_TRUE(Eventually(
      [&] { return proxy_->connections_accepted() >= attempts + 2; }));
  EXPECT_EQ(results.size(), 0u);

  // Back up (same data, a new port behind the same address): they commit.
  StartCoordinator();
  proxy_->SetTargetPort(PortOf(coordinator_->address()));
  for (const auto& [index, result] : results.WaitFor(kRequests)) {
    EXPECT_TRUE(result.status.ok())
        << index << ": " << result.status.error_message();
    EXPECT_EQ(result.response.transaction().outcome(), v1::OUTCOME_COMMITTED);
  }
}

// A rolling restart: the coordinator drains (deciding what it started,
// refusing the rest as not started), stops, and a new one comes up behind
// the same address. The started transaction gets its outcome, and the ones
// sent during the drain are put back and sent to the new coordinator: none
// ends ambiguous (a stream opened as the old coordinator goes is not written
// to before that coordinator said it serves it).
TEST_F(ExecuteStreamClientTest, ResendingCarriesRequestsAcrossADrain) {
  std::unique_ptr<ExecuteStreamClient> client = ResendingClientBehindAProxy();
  ASSERT_NE(client, nullptr);
  Results results;
  // Started before the drain, and decided during it (at its deadline).
  b_->set_on_prepare(FakeParticipant::OnPrepare::kSilent);
  v1::ExecuteRequest started = TwoBranches();
  started.mutable_timeout()->set_seconds(2);
  client->ExecuteAsync(started, results.Slot(0));
  ASSERT_TRUE(b_->WaitFor("prepare:1-1"));
  b_->set_on_prepare(FakeParticipant::OnPrepare::kYes);

  std::thread shutdown([&] { coordinator_->Shutdown(kWait); });
  v1::ExecuteRequest probe;
  *probe.add_branches() = KvBranch("a");
  ASSERT_TRUE(Eventually([&] { return !Execute(probe).ok(); }));  // draining
  constexpr int kLater = 3;
  for (int i = 1; i <= kLater; ++i) {
    client->ExecuteAsync(TwoBranches(absl::StrCat("later-", i)),
                         results.Slot(i));
  }
  ASSERT_TRUE(
      Eventually([&] { return client->counts().requests_requeued >= kLater; }));
  Result first = results.WaitFor(1)[0];
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::ABORTED)
      << first.status.error_message();
  shutdown.join();

  StartCoordinator();
  proxy_->SetTargetPort(PortOf(coordinator_->address()));
  for (const auto& [index, result] : results.WaitFor(1 + kLater)) {
    if (index == 0) continue;
    EXPECT_TRUE(result.status.ok())
        << index << ": " << result.status.error_message();
    EXPECT_EQ(result.response.transaction().outcome(), v1::OUTCOME_COMMITTED);
  }
}

// --- against a scripted TransactionService ---------------------------------

// Serves ExecuteStream as the test scripts it; records what it reads.
class ScriptedTransactions final : public v1::TransactionService::Service {
 public:
  enum class Mode {
    kAnswer,  // answers each message, results in reverse order, plus an
              // unknown tag
    kSilent,  // reads and never answers
    kEnd,     // ends the stream with `end` after reading a message
    kEndOnceThenAnswer,  // as kEnd for the first message read, then kAnswer
    // Answers the first message read as a draining coordinator does (each
    // request refused UNAVAILABLE, DEFINITE, SHUTTING_DOWN), then kAnswer.
    kRefuseOnceThenAnswer,
    kStallThenAnswer,  // reads nothing until Release(), then answers
    // As kStallThenAnswer, writing an empty message every 50 ms meanwhile
    // (so the client does not take the stream for dead).
    kStallWithHeartbeatsThenAnswer,
    // Ends the first stream with `end` before serving it (no initial
    // metadata, nothing read), as gRPC cancels a stream a stopping server
    // had not taken yet; then kAnswer.
    kEndUnservedOnceThenAnswer,
    // As kAnswer, but the stream's initial metadata lacks the serving key
    // (a server that never says it serves a stream).
    kAnswerWithoutServingKey,
  };

  ScriptedTransactions() {
    auto server = StartGrpcServer("127.0.0.1:0", {this}, 8 << 20);
    EXPECT_THAT(server, coordinator::IsOk());
    server_ = std::move(*server);
  }
  ~ScriptedTransactions() override {
    Release();
    server_.server->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel(server_.address,
                               grpc::InsecureChannelCredentials());
  }
  int port() const { return PortOf(server_.address); }
  void Script(Mode mode, grpc::Status end = grpc::Status::OK) {
    absl::MutexLock lock(&mu_);
    mode_ = mode;
    end_ = std::move(end);
  }
  int streams() const {
    absl::MutexLock lock(&mu_);
    return streams_;
  }
  int half_closed() const {
    absl::MutexLock lock(&mu_);
    return half_closed_;
  }
  int cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // The idempotency keys of the requests read, in order.
  std::vector<std::string> keys_read() const {
    absl::MutexLock lock(&mu_);
    return keys_read_;
  }

  grpc::Status ExecuteStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ExecuteStreamResponse,
                               v1::ExecuteStreamRequest>* stream) override {
    {
      absl::MutexLock lock(&mu_);
      ++streams_;
      if (mode_ == Mode::kEndUnservedOnceThenAnswer) {
        mode_ = Mode::kAnswer;
        return end_;
      }
    }
    // Served, as the coordinator says it (common/execute_stream_metadata.h).
    bool say_served;
    {
      absl::MutexLock lock(&mu_);
      say_served = mode_ != Mode::kAnswerWithoutServingKey;
    }
    if (say_served) {
      context->AddInitialMetadata(kExecuteStreamServingKey, "1");
    }
    stream->SendInitialMetadata();
    {
      absl::MutexLock lock(&mu_);
      if (mode_ == Mode::kStallThenAnswer) {
        mu_.Await(absl::Condition(&released_));
        mode_ = Mode::kAnswer;
      }
      while (mode_ == Mode::kStallWithHeartbeatsThenAnswer &&
             !mu_.AwaitWithTimeout(absl::Condition(&released_),
                                   absl::Milliseconds(50))) {
        mu_.Unlock();
        stream->Write(v1::ExecuteStreamResponse());
        mu_.Lock();
      }
      if (released_) mode_ = Mode::kAnswer;
    }
    v1::ExecuteStreamRequest message;
    while (stream->Read(&message)) {
      Mode mode;
      grpc::Status end;
      {
        absl::MutexLock lock(&mu_);
        mode = mode_;
        end = end_;
        for (const auto& item : message.items()) {
          keys_read_.push_back(item.request().idempotency_key());
        }
        if (mode_ == Mode::kEndOnceThenAnswer ||
            mode_ == Mode::kRefuseOnceThenAnswer) {
          mode = mode_ == Mode::kEndOnceThenAnswer
                     ? Mode::kEnd
                     : Mode::kRefuseOnceThenAnswer;
          mode_ = Mode::kAnswer;
        }
      }
      if (mode == Mode::kEnd) return end;
      if (mode == Mode::kSilent) continue;
      if (mode == Mode::kRefuseOnceThenAnswer) {
        v1::ExecuteStreamResponse refusals;
        for (const auto& item : message.items()) {
          auto* result = refusals.add_results();
          result->set_tag(item.tag());
          *result->mutable_status() = ToRpcStatus(WithErrorInfo(
              absl::UnavailableError("draining"),
              v1::ErrorInfo::CERTAINTY_DEFINITE, "SHUTTING_DOWN"));
        }
        stream->Write(refusals);
        continue;
      }
      v1::ExecuteStreamResponse response;
      response.add_results()->set_tag(uint64_t{1} << 40);  // nobody's
      for (int i = message.items_size() - 1; i >= 0; --i) {
        auto* result = response.add_results();
        result->set_tag(message.items(i).tag());
        // "t-" and the key's first 64 bytes (a result stays small, as the
        // coordinator's do, whatever the request's size).
        result->mutable_transaction()->set_transaction_id(absl::StrCat(
            "t-", message.items(i).request().idempotency_key().substr(0, 64)));
        result->mutable_transaction()->set_outcome(v1::OUTCOME_COMMITTED);
      }
      stream->Write(response);
    }
    absl::MutexLock lock(&mu_);
    ++(context->IsCancelled() ? cancelled_ : half_closed_);
    return grpc::Status::OK;
  }

 private:
  RunningServer server_;
  mutable absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kAnswer;
  grpc::Status end_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  int half_closed_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> keys_read_ ABSL_GUARDED_BY(mu_);
};

v1::ExecuteRequest Keyed(const std::string& key) {
  v1::ExecuteRequest request;
  request.set_idempotency_key(key);
  return request;
}

TEST(ExecuteStreamClientScriptedTest, ResultsFindTheirRequestsInAnyOrder) {
  ScriptedTransactions server;
  DrivenQueue queue;
  Results results;
  ExecuteStreamClient client(server.Channel(), queue.get(), {});
  for (int i = 0; i < 5; ++i) {
    client.ExecuteAsync(Keyed(absl::StrCat("k", i)), results.Slot(i));
  }
  queue.Start();
  for (const auto& [index, result] : results.WaitFor(5)) {
    EXPECT_TRUE(result.status.ok());
    EXPECT_EQ(result.response.transaction().transaction_id(),
              absl::StrCat("t-k", index));
  }
  client.Close();
  EXPECT_TRUE(Eventually([&] { return client.Closed(); }));
  EXPECT_TRUE(Eventually([&] { return server.half_closed() == 1; }));
  // Closed: a later request is not sent.
  client.ExecuteAsync(Keyed("late"), results.Slot(5));
  Result late = results.WaitFor(6)[5];
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(late.status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
}

TEST(ExecuteStreamClientScriptedTest, ADefiniteEndIsPassedOn) {
  ScriptedTransactions server;
  v1::ErrorInfo info;
  info.set_certainty(v1::ErrorInfo::CERTAINTY_DEFINITE);
  info.set_reason("SHUTTING_DOWN");
  server.Script(
      ScriptedTransactions::Mode::kEnd,
      ToGrpcStatus(WithErrorInfo(absl::UnavailableError("not started"), info)));
  ExecuteStreamClient client(server.Channel(), {});
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "not started");
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "SHUTTING_DOWN"));
}

TEST(ExecuteStreamClientScriptedTest, AnAmbiguousEndSaysTheOutcomeIsUnknown) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kEnd,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection lost"));
  ExecuteStreamClient client(server.Channel(), {});
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("connection lost"));
  EXPECT_THAT(status.error_message(), HasSubstr("TransactionService.Get"));
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED"));

  // A stream that ends OK without the result is no better.
  server.Script(ScriptedTransactions::Mode::kEnd);
  status = client.Execute(Keyed("b"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED"));
  EXPECT_EQ(server.streams(), 2);
}

TEST(ExecuteStreamClientScriptedTest,
     NoResultInTimeFailsAndADeadStreamIsCancelled) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kSilent);
  ExecuteStreamClient::Options options;
  // Room for the second request under sanitizers.
  options.deadline = absl::Seconds(1);
  ExecuteStreamClient client(server.Channel(), options);
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status, HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS,
                                   "DEADLINE_PASSED"));
  // Nothing came on the stream for a whole deadline while a request waited:
  // the client gives it up, and the next request goes on a new one.
  EXPECT_TRUE(Eventually([&] { return server.cancelled() == 1; }));
  ASSERT_TRUE(Eventually([&] { return client.counts().streams_ended == 1; }));
  server.Script(ScriptedTransactions::Mode::kAnswer);
  status = client.Execute(Keyed("b"), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.transaction().transaction_id(), "t-b");
  EXPECT_EQ(server.streams(), 2);
}

TEST(ExecuteStreamClientScriptedTest,
     KeepaliveFindsAConnectionGoneSilentBeforeTheDeadline) {
  ScriptedTransactions server;
  auto proxy = testing::TcpProxy::Start(server.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  std::shared_ptr<grpc::Channel> channel =
      CreateCoordinatorChannel((*proxy)->address(),
                               grpc::InsecureChannelCredentials(),
                               {.keepalive_time = absl::Seconds(1),
                                .keepalive_timeout = absl::Seconds(1)});
  ExecuteStreamClient client(channel, {});  // the default deadline: a minute
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // The coordinator's host goes silent: no reset, nothing arrives. The
  // unanswered ping ends the stream long before the request's deadline
  // (which would fail it DEADLINE_EXCEEDED, DEADLINE_PASSED).
  (*proxy)->BlackHoleOpenConnections();
  status = client.Execute(Keyed("b"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED"));

  // The next request goes over a new connection. (Sent before the channel
  // has noticed that the old one is gone, it could still be put on it and
  // fail with it: gRPC's race, which a resending client is spared.)
  ASSERT_TRUE(Eventually([&] {
    return channel->GetState(false) != GRPC_CHANNEL_READY ||
           (*proxy)->connections_accepted() >= 2;
  }));
  status = client.Execute(Keyed("c"), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.transaction().transaction_id(), "t-c");
  EXPECT_GE((*proxy)->connections_accepted(), 2);
  EXPECT_EQ(server.streams(), 2);
}

// --- resend_not_started -----------------------------------------------------

// Sends "a" through `client` (resending): the server reads it twice, the
// second time on a new stream, and answers it.
void ExpectSentAgainAndAnswered(const ScriptedTransactions& server,
                                ExecuteStreamClient& client) {
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.transaction().transaction_id(), "t-a");
  EXPECT_THAT(server.keys_read(), ElementsAre("a", "a"));
  EXPECT_EQ(server.streams(), 2);
  EXPECT_EQ(client.counts().requests_requeued, 1u);
}

TEST(ExecuteStreamClientScriptedTest, ResendsWhatTheCoordinatorDidNotStart) {
  for (const char* reason : {"SHUTTING_DOWN", "LIMIT_EXCEEDED"}) {
    SCOPED_TRACE(reason);
    ScriptedTransactions server;
    server.Script(
        ScriptedTransactions::Mode::kEndOnceThenAnswer,
        ToGrpcStatus(WithErrorInfo(absl::UnavailableError("not started"),
                                   v1::ErrorInfo::CERTAINTY_DEFINITE, reason)));
    ExecuteStreamClient client(server.Channel(), Resending());
    ExpectSentAgainAndAnswered(server, client);
  }
}

TEST(ExecuteStreamClientScriptedTest,
     ARequestRefusedByADrainingCoordinatorGoesToTheNextStream) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kRefuseOnceThenAnswer);
  ExecuteStreamClient client(server.Channel(), Resending());
  ExpectSentAgainAndAnswered(server, client);
  // The first stream was half-closed (what it carried could still be
  // answered), not cancelled.
  EXPECT_TRUE(Eventually([&] { return server.half_closed() == 1; }));
  EXPECT_EQ(server.cancelled(), 0);
}

// A stream that ends ambiguously before the coordinator served it had
// nothing written to it: its requests go to the next stream.
TEST(ExecuteStreamClientScriptedTest,
     NothingIsWrittenBeforeTheCoordinatorServesTheStream) {
  ScriptedTransactions server;
  server.Script(
      ScriptedTransactions::Mode::kEndUnservedOnceThenAnswer,
      grpc::Status(grpc::StatusCode::CANCELLED, "server shutting down"));
  ExecuteStreamClient client(server.Channel(), Resending());
  Results results;
  client.ExecuteAsync(Keyed("a"), results.Slot(0));
  client.ExecuteAsync(Keyed("b"), results.Slot(1));
  for (const auto& [index, result] : results.WaitFor(2)) {
    EXPECT_TRUE(result.status.ok()) << index << result.status.error_message();
  }
  EXPECT_THAT(server.keys_read(), ElementsAre("a", "b"));
  EXPECT_EQ(server.streams(), 2);
  EXPECT_EQ(client.counts().requests_requeued, 0u);
}

// A stream that is not said to be served is given up (nothing was written
// on it), so requests fail at their deadline as never sent and the client
// closes instead of waiting on that stream for good.
TEST(ExecuteStreamClientScriptedTest,
     AStreamNeverSaidToBeServedIsGivenUpUnwritten) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kAnswerWithoutServingKey);
  ExecuteStreamClient::Options options = Resending();
  options.deadline = absl::Seconds(1);
  ExecuteStreamClient client(server.Channel(), options);
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
  EXPECT_THAT(server.keys_read(), ::testing::IsEmpty());
  client.Close();
  EXPECT_TRUE(Eventually([&] { return client.Closed(); }));
}

TEST(ExecuteStreamClientScriptedTest, WhatMayHaveStartedIsNotResent) {
  ScriptedTransactions server;
  // A refused message would be refused again; a lost connection may have
  // started the request.
  for (const grpc::Status& end :
       {ToGrpcStatus(WithErrorInfo(absl::InvalidArgumentError("refused"),
                                   v1::ErrorInfo::CERTAINTY_DEFINITE,
                                   "MESSAGE_REFUSED")),
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection lost")}) {
    server.Script(ScriptedTransactions::Mode::kEndOnceThenAnswer, end);
    ExecuteStreamClient client(server.Channel(), Resending());
    v1::ExecuteResponse response;
    grpc::Status status = client.Execute(Keyed("a"), &response);
    EXPECT_EQ(status.error_code(), end.error_code());
    EXPECT_EQ(client.counts().requests_requeued, 0u);
  }
  EXPECT_THAT(server.keys_read(), ElementsAre("a", "a"));
}

TEST(ExecuteStreamClientScriptedTest,
     ResendingWaitsForAnUnreachableCoordinator) {
  ScriptedTransactions server;
  auto proxy = testing::TcpProxy::Start(0);  // the coordinator is down
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ExecuteStreamClient client(
      CreateCoordinatorChannel((*proxy)->address(),
                               grpc::InsecureChannelCredentials()),
      Resending());
  Results results;
  client.ExecuteAsync(Keyed("a"), results.Slot(0));
  // The client keeps trying, and the request keeps waiting...
  ASSERT_TRUE(
      Eventually([&] { return (*proxy)->connections_accepted() >= 3; }));
  EXPECT_EQ(results.size(), 0u);
  // ...until the coordinator is up.
  (*proxy)->SetTargetPort(server.port());
  Result a = results.WaitFor(1)[0];
  EXPECT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_THAT(server.keys_read(), ElementsAre("a"));
}

TEST(ExecuteStreamClientScriptedTest, ResendingGivesUpAtTheDeadlineAsNotSent) {
  auto proxy = testing::TcpProxy::Start(0);  // the coordinator is down
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ExecuteStreamClient::Options options = Resending();
  options.deadline = absl::Seconds(1);
  ExecuteStreamClient client(
      CreateCoordinatorChannel((*proxy)->address(),
                               grpc::InsecureChannelCredentials()),
      options);
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
  client.Close();
  EXPECT_TRUE(Eventually([&] { return client.Closed(); }));
}

TEST(ExecuteStreamClientScriptedTest, DestroyingTheClientFailsWhatWaits) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kSilent);
  Results results;
  {
    ExecuteStreamClient client(server.Channel(), {});
    client.ExecuteAsync(Keyed("a"), results.Slot(0));
    ASSERT_TRUE(
        Eventually([&] { return client.counts().requests_written == 1; }));
  }
  ASSERT_EQ(results.size(), 1u) << "every result is in before the end";
  Result result = results.WaitFor(1)[0];
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(result.status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED"));
}

TEST(ExecuteStreamClientScriptedTest, NoCoordinatorFailsAtOnceAsNotSent) {
  // Port 1: nothing listens there, the connection is refused.
  auto channel =
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ExecuteStreamClient client(channel, {});
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
}

TEST(ExecuteStreamClientScriptedTest, ARequestTooLargeForAMessageFailsAtOnce) {
  ScriptedTransactions server;
  ExecuteStreamClient::Options options;
  options.max_request_bytes = 100;
  ExecuteStreamClient client(server.Channel(), options);
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed(std::string(200, 'k')), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("at most 100"));
  EXPECT_EQ(server.streams(), 0);
  EXPECT_TRUE(client.Execute(Keyed("small"), &response).ok());
}

TEST(ExecuteStreamClientScriptedTest, MessagesAreBoundedInRequestsAndBytes) {
  ScriptedTransactions server;
  DrivenQueue queue;
  Results results;
  ExecuteStreamClient::Options options;
  options.max_requests_per_message = 4;
  options.max_message_bytes = 50;
  ExecuteStreamClient client(server.Channel(), queue.get(), options);
  // 10 requests of 3 bytes: messages of 4, 4 and 2 requests. Then 2 of 47
  // bytes: a message each (with the 6 bytes before, or with each other,
  // they would pass 50).
  for (int i = 0; i < 10; ++i) client.ExecuteAsync(Keyed("k"), results.Slot(i));
  for (int i = 10; i < 12; ++i) {
    client.ExecuteAsync(Keyed(std::string(45, 'k')), results.Slot(i));
  }
  queue.Start();
  for (const auto& [index, result] : results.WaitFor(12)) {
    EXPECT_TRUE(result.status.ok()) << index;
  }
  EXPECT_EQ(client.counts().messages_written, 5u);
  client.Close();
  EXPECT_TRUE(Eventually([&] { return client.Closed(); }));
}

// Sends a first request (slot 0) in a message larger than the connection's
// flow-control window, which stays in its Write while the server does not
// read, and then "b" (slot 1), which therefore waits in the queue.
void SendBehindAStuckWrite(ExecuteStreamClient& client, Results& results) {
  client.ExecuteAsync(Keyed(std::string(6 << 20, 'a')), results.Slot(0));
  ASSERT_TRUE(
      Eventually([&] { return client.counts().messages_written == 1; }));
  client.ExecuteAsync(Keyed("b"), results.Slot(1));
}

// A request that passes its deadline before it could be written fails
// definite (NOT_SENT) and is never written; one that was written fails
// ambiguous.
TEST(ExecuteStreamClientScriptedTest,
     ARequestPastItsDeadlineWhileQueuedIsNeverSent) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kStallThenAnswer);
  ExecuteStreamClient::Options options;
  // Room for the last request under sanitizers.
  options.deadline = absl::Seconds(1);
  ExecuteStreamClient client(server.Channel(), options);
  Results results;
  SendBehindAStuckWrite(client, results);
  std::map<int, Result> failed = results.WaitFor(2);
  EXPECT_EQ(failed[0].status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(failed[0].status, HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS,
                                             "DEADLINE_PASSED"));
  EXPECT_EQ(failed[1].status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(failed[1].status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
  // b is never written (the first stream, silent for a whole deadline, is
  // given up too); a new request goes through on a new stream.
  server.Release();
  ASSERT_TRUE(Eventually([&] { return client.counts().streams_ended == 1; }));
  client.ExecuteAsync(Keyed("c"), results.Slot(2));
  Result c = results.WaitFor(3)[2];
  EXPECT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.response.transaction().transaction_id(), "t-c");
  EXPECT_THAT(server.keys_read(), AllOf(Not(Contains("b")), Contains("c")));
}

// The same on a stream that stays alive: once the first message is written,
// the expired request is dropped from the queue, not written after it.
TEST(ExecuteStreamClientScriptedTest,
     ARequestPastItsDeadlineWhileQueuedIsDroppedFromALiveStream) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kStallWithHeartbeatsThenAnswer);
  ExecuteStreamClient::Options options;
  options.deadline = absl::Seconds(1);
  ExecuteStreamClient client(server.Channel(), options);
  Results results;
  SendBehindAStuckWrite(client, results);
  std::map<int, Result> failed = results.WaitFor(2);
  EXPECT_THAT(failed[1].status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"));
  server.Release();
  client.ExecuteAsync(Keyed("c"), results.Slot(2));
  Result c = results.WaitFor(3)[2];
  EXPECT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_THAT(server.keys_read(), ElementsAre(std::string(6 << 20, 'a'), "c"));
  EXPECT_EQ(client.counts().streams_opened, 1u);
  EXPECT_EQ(client.counts().requests_written, 2u);
}

// `done` may send the next request: it runs outside the client's lock.
TEST(ExecuteStreamClientScriptedTest, ACallbackMaySendTheNextRequest) {
  ScriptedTransactions server;
  ExecuteStreamClient client(server.Channel(), {});
  Results results;
  std::function<void(int)> send = [&](int i) {
    client.ExecuteAsync(
        Keyed(absl::StrCat("k", i)),
        [&, i](grpc::Status status, v1::ExecuteResponse response) {
          if (i < 19) send(i + 1);
          results.Slot(i)(std::move(status), std::move(response));
        });
  };
  send(0);
  for (const auto& [index, result] : results.WaitFor(20)) {
    EXPECT_TRUE(result.status.ok()) << index;
    EXPECT_EQ(result.response.transaction().transaction_id(),
              absl::StrCat("t-k", index));
  }
  EXPECT_EQ(client.counts().streams_opened, 1u);
}

// A status code alone does not make a stream's end definite: only the
// coordinator's ErrorInfo does.
TEST(ExecuteStreamClientScriptedTest,
     AnEndWithoutTheCoordinatorsWordIsAmbiguous) {
  ScriptedTransactions server;
  server.Script(ScriptedTransactions::Mode::kEnd,
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                             "message larger than max"));
  ExecuteStreamClient client(server.Channel(), {});
  v1::ExecuteResponse response;
  grpc::Status status = client.Execute(Keyed("a"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status,
              HasErrorInfo(v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED"));
}

}  // namespace
}  // namespace twopc::client
