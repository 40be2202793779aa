#include "coordinator/participant_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/completion_queue_loop.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/eventually.h"

namespace twopc::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::twopc::testing::Eventually;

constexpr absl::Duration kWait = absl::Seconds(20);

// A participant sidecar's Link as far as the link cares: it answers the
// hello as `id`, then (unless `hold`) answers each request with a YES vote
// that names a wrong transaction (the link must trust its own record).
class FakeParticipant final : public v1::ParticipantService::Service {
 public:
  explicit FakeParticipant(std::string id) : id_(std::move(id)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeParticipant() override { Stop(); }

  std::string endpoint() const { return absl::StrCat("127.0.0.1:", port_); }
  // Requests are read but never answered from now on.
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  int requests_seen() {
    absl::MutexLock lock(&mu_);
    return requests_seen_;
  }
  // Ends every stream (the link sees it break) and stops serving.
  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  grpc::Status Link(
      grpc::ServerContext* /*context*/,
      grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
          stream) override {
    v1::CoordinatorBatch batch;
    if (!stream->Read(&batch)) return grpc::Status::OK;
    v1::ParticipantBatch hello;
    hello.mutable_hello()->set_participant_id(id_);
    if (!stream->Write(hello)) return grpc::Status::OK;
    while (stream->Read(&batch)) {
      v1::ParticipantBatch replies;
      {
        absl::MutexLock lock(&mu_);
        requests_seen_ += batch.requests_size();
        if (hold_) continue;
      }
      for (const v1::BranchRequest& request : batch.requests()) {
        v1::BranchReply* reply = replies.add_replies();
        reply->set_request_id(request.request_id());
        reply->set_transaction_id("not-" + request.transaction_id());
        reply->set_vote(v1::VOTE_YES);
      }
      if (!stream->Write(replies)) break;
    }
    return grpc::Status::OK;
  }

 private:
  const std::string id_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  int requests_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a link's callbacks reported, by transaction id.
class Answers {
 public:
  ParticipantLink::Callbacks callbacks() {
    return {
        .on_replies =
            [this](const std::string& participant,
                   absl::Span<const v1::BranchReply> replies) {
              absl::MutexLock lock(&mu_);
              for (const v1::BranchReply& reply : replies) {
                answers_[reply.transaction_id()].push_back(
                    absl::StrCat(participant, " replied"));
              }
            },
        .on_failure =
            [this](const std::string& participant,
                   const std::string& transaction, const std::string& error) {
              absl::MutexLock lock(&mu_);
              answers_[transaction].push_back(
                  absl::StrCat(participant, " failed: ", error));
            }};
  }

  // Waits until `transaction` has an answer; returns them all.
  std::vector<std::string> Await(const std::string& transaction) {
    absl::MutexLock lock(&mu_);
    auto answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return answers_.count(transaction) > 0;
    };
    mu_.AwaitWithTimeout(absl::Condition(&answered), kWait);
    return answers_[transaction];
  }

  std::map<std::string, std::vector<std::string>> All() {
    absl::MutexLock lock(&mu_);
    return answers_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> answers_ ABSL_GUARDED_BY(mu_);
};

v1::BranchRequest Prepare(const std::string& transaction) {
  v1::BranchRequest request;
  request.set_transaction_id(transaction);
  request.mutable_prepare();
  return request;
}

ParticipantLink::Options FastRetries() {
  ParticipantLink::Options options;
  options.min_reconnect_delay = absl::Milliseconds(10);
  options.max_reconnect_delay = absl::Milliseconds(50);
  return options;
}

TEST(ParticipantLinkTest, RepliesReachTheCallbackUnderTheLinksOwnRecord) {
  FakeParticipant participant("p1");
  CompletionQueueLoop loop;
  Answers answers;
  ParticipantLink link(&loop, "p1", participant.endpoint(), 1,
                       answers.callbacks());
  // Sent before the link is connected: they wait for the connection.
  for (int i = 0; i < 50; ++i) link.Send(Prepare(absl::StrCat("1-", i)));
  for (int i = 0; i < 50; ++i) {
    EXPECT_THAT(answers.Await(absl::StrCat("1-", i)),
                ::testing::ElementsAre("p1 replied"));
  }
  EXPECT_TRUE(link.connected());
  EXPECT_EQ(link.in_flight(), 0u);
  EXPECT_THAT(answers.All(), SizeIs(50));  // nothing under the fake's ids
}

TEST(ParticipantLinkTest, AnEndpointServingAnotherParticipantIsRefused) {
  FakeParticipant participant("p2");
  CompletionQueueLoop loop;
  Answers answers;
  ParticipantLink link(&loop, "p1", participant.endpoint(), 1,
                       answers.callbacks(), FastRetries());
  ASSERT_TRUE(Eventually([&] {
    return link.last_error().find("is participant 'p2', expected 'p1'") !=
           std::string::npos;
  })) << link.last_error();
  link.Send(Prepare("1-1"));
  EXPECT_THAT(answers.Await("1-1"),
              ::testing::ElementsAre(HasSubstr("p1 failed: UNAVAILABLE")));
  EXPECT_EQ(participant.requests_seen(), 0);
}

TEST(ParticipantLinkTest, AnUnreachableParticipantFailsRequestsAtOnce) {
  CompletionQueueLoop loop;
  Answers answers;
  // A port that is bound but not listening refuses connections, and no
  // other process can take it while the test holds it.
  const int held = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(held, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(held, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(getsockname(held, reinterpret_cast<sockaddr*>(&address), &length),
            0);
  const std::string endpoint =
      absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  auto link = std::make_unique<ParticipantLink>(
      &loop, "p1", endpoint, 1, answers.callbacks(), FastRetries());
  ASSERT_TRUE(Eventually([&] {
    return link->last_error().find("unreachable") != std::string::npos;
  })) << link->last_error();
  link->Send(Prepare("1-1"));
  EXPECT_THAT(answers.Await("1-1"),
              ::testing::ElementsAre(HasSubstr("is not connected")));
  // Destroyed while a reconnect is scheduled: returns, and the loop goes on
  // serving the other links.
  link.reset();
  FakeParticipant participant("p2");
  ParticipantLink other(&loop, "p2", participant.endpoint(), 1,
                        answers.callbacks());
  other.Send(Prepare("1-2"));
  EXPECT_THAT(answers.Await("1-2"), ::testing::ElementsAre("p2 replied"));
  close(held);
}

TEST(ParticipantLinkTest, EveryRequestInFlightFailsOnceWhenTheStreamBreaks) {
  auto participant = std::make_unique<FakeParticipant>("p1");
  participant->Hold();
  CompletionQueueLoop loop;
  Answers answers;
  ParticipantLink link(&loop, "p1", participant->endpoint(), 1,
                       answers.callbacks(), FastRetries());
  for (int i = 0; i < 10; ++i) link.Send(Prepare(absl::StrCat("1-", i)));
  ASSERT_TRUE(Eventually([&] { return participant->requests_seen() == 10; }));
  EXPECT_EQ(link.in_flight(), 10u);
  participant->Stop();
  for (int i = 0; i < 10; ++i) {
    EXPECT_THAT(answers.Await(absl::StrCat("1-", i)),
                ::testing::ElementsAre(HasSubstr("link to p1 broke")));
  }
  EXPECT_EQ(link.in_flight(), 0u);
}

TEST(ParticipantLinkTest, DestroyingALinkFailsWhatItHeldExactlyOnce) {
  FakeParticipant participant("p1");
  participant.Hold();
  CompletionQueueLoop loop;
  Answers answers;
  {
    ParticipantLink link(&loop, "p1", participant.endpoint(), 1,
                         answers.callbacks());
    link.Send(Prepare("1-1"));
    ASSERT_TRUE(Eventually([&] { return participant.requests_seen() == 1; }));
    link.Send(Prepare("1-2"));  // may be written or still queued
  }
  for (const char* transaction : {"1-1", "1-2"}) {
    EXPECT_THAT(answers.Await(transaction),
                ::testing::ElementsAre(HasSubstr("coordinator shutting down")));
  }
}

TEST(ParticipantLinkTest, RequestsSentFromACallbackGoOutOnEveryLink) {
  // The coordinator's hot path: a vote read on one link makes the manager
  // send on this and other links, from the loop's own thread.
  FakeParticipant p1("p1");
  FakeParticipant p2("p2");
  CompletionQueueLoop loop;
  Answers answers;
  std::unique_ptr<ParticipantLink> links[2];
  ParticipantLink::Callbacks callbacks = answers.callbacks();
  auto record = callbacks.on_replies;
  callbacks.on_replies = [&](const std::string& participant,
                             absl::Span<const v1::BranchReply> replies) {
    record(participant, replies);
    for (const v1::BranchReply& reply : replies) {
      if (reply.transaction_id().rfind("prepare-", 0) != 0) continue;
      const std::string id = reply.transaction_id().substr(8);
      for (auto& link : links) {
        link->Send(
            Prepare(absl::StrCat("commit-", id, "-", link->participant_id())));
      }
    }
  };
  links[0] = std::make_unique<ParticipantLink>(&loop, "p1", p1.endpoint(), 1,
                                               callbacks);
  links[1] = std::make_unique<ParticipantLink>(&loop, "p2", p2.endpoint(), 1,
                                               callbacks);
  for (int i = 0; i < 20; ++i) {
    links[i % 2]->Send(Prepare(absl::StrCat("prepare-", i)));
  }
  for (int i = 0; i < 20; ++i) {
    for (const char* participant : {"p1", "p2"}) {
      EXPECT_THAT(
          answers.Await(absl::StrCat("commit-", i, "-", participant)),
          ::testing::ElementsAre(absl::StrCat(participant, " replied")));
    }
  }
  for (auto& link : links) link.reset();
  // Exactly one answer each, also after the links are gone.
  const auto all = answers.All();
  EXPECT_THAT(all, SizeIs(60));
  for (const auto& [transaction, answered] : all) {
    EXPECT_THAT(answered, SizeIs(1)) << transaction;
  }
}

TEST(ParticipantLinkTest, AStoppedLinkFailsWhatItHoldsAndIsSentWithTheReason) {
  FakeParticipant participant("p1");
  participant.Hold();
  CompletionQueueLoop loop;
  Answers answers;
  ParticipantLink link(&loop, "p1", participant.endpoint(), 1,
                       answers.callbacks());
  link.Send(Prepare("1-1"));
  ASSERT_TRUE(Eventually([&] { return participant.requests_seen() == 1; }));
  link.Stop("participant p1 re-registered");
  link.Send(Prepare("1-2"));
  // Answered while the link still exists, not only when it is destroyed.
  for (const char* transaction : {"1-1", "1-2"}) {
    EXPECT_THAT(
        answers.Await(transaction),
        ::testing::ElementsAre("p1 failed: participant p1 re-registered"))
        << transaction;
  }
}

}  // namespace
}  // namespace twopc::coordinator
