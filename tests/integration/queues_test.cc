// Exactly-once, ordered publication with real processes: concurrent clients
// run transactions that publish messages to several partitions (some of the
// transactions abort), while the coordinator is killed with -9 and
// restarted. Afterwards every partition, read from offset 0, holds exactly
// the messages of the committed transactions, each once, gap-free, and in
// each client's commit order.
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc {
namespace {

using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::TempDir;

constexpr int kClients = 3;
constexpr int kTransactionsPerClient = 100;
constexpr int kPartitions = 3;
constexpr absl::Duration kWait = absl::Seconds(30);

class QueuesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
    for (const char* id : {"p1", "p2"}) {
      ASSERT_THAT(cluster_.StartParticipant(id, {"--in_doubt_after=1"}),
                  IsOk());
    }
    ASSERT_THAT(cluster_.WaitForParticipants({"p1", "p2"}, kWait), IsOk());
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name("events");
    create.set_partitions(kPartitions);
    v1::TopicInfo info;
    ASSERT_TRUE(cluster_.Admin()->CreateTopic(&context, create, &info).ok());
  }

  // One transaction of client `c`, number `i`: a put on each sidecar and two
  // messages. Every fifth one carries a failing precondition and aborts.
  static v1::ExecuteRequest Request(int c, int i) {
    v1::ExecuteRequest request;
    const std::string name = absl::StrCat("c", c, "-", i);
    request.set_idempotency_key(name);
    request.set_wait_for_completion(true);
    for (const char* p : {"p1", "p2"}) {
      v1::Branch* branch = request.add_branches();
      branch->set_participant_id(p);
      auto* put = branch->mutable_kv()->add_operations()->mutable_put();
      put->set_key(absl::StrCat("client/", c));  // one writer per key
      put->set_value(name);
      if (i % 5 == 4 && std::string(p) == "p2") {
        auto* expect = branch->mutable_kv()->add_operations()->mutable_expect();
        expect->set_key("never-written");
        expect->set_value("x");
      }
    }
    for (int m = 0; m < 2; ++m) {
      v1::Message* message = request.add_messages();
      message->set_topic("events");
      message->set_key(absl::StrCat(name, "/", m));
      message->set_value(absl::StrCat(name, "/", m));
    }
    return request;
  }

  // Runs the transaction until its outcome is definite (retrying with the
  // same idempotency key through coordinator restarts). Returns true when
  // committed.
  bool RunToOutcome(const v1::ExecuteRequest& request) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      v1::ExecuteResponse response;
      grpc::Status status =
          cluster_.Transactions()->Execute(&context, request, &response);
      if (status.ok()) return true;
      if (status.error_code() == grpc::StatusCode::ABORTED) return false;
      if (!IsAmbiguous(FromGrpcStatus(status).code())) {
        ADD_FAILURE() << request.idempotency_key() << ": "
                      << status.error_message();
        return false;
      }
      absl::SleepFor(absl::Milliseconds(50));  // coordinator restarting
    }
    ADD_FAILURE() << request.idempotency_key() << ": no outcome in 60s";
    return false;
  }

  TempDir dir_;
  LocalCluster cluster_{TWOPC_BIN_DIR, dir_.path()};
};

TEST_F(QueuesTest, ExactlyOnceInCommitOrderAcrossCoordinatorCrashes) {
  absl::Mutex mu;
  std::set<std::string> committed;  // idempotency keys
  std::atomic<int> outcomes{0};
  std::vector<std::jthread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kTransactionsPerClient; ++i) {
        if (RunToOutcome(Request(c, i))) {
          absl::MutexLock lock(&mu);
          committed.insert(absl::StrCat("c", c, "-", i));
        }
        ++outcomes;
      }
    });
  }
  // Kill and restart the coordinator at a third and at two thirds of the run.
  constexpr int kTotal = kClients * kTransactionsPerClient;
  for (int round = 1; round <= 2; ++round) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (outcomes.load() < kTotal * round / 3 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    cluster_.Kill(LocalCluster::kCoordinator);
    ASSERT_THAT(cluster_.StartCoordinator(), IsOk());
  }
  for (auto& client : clients) client.join();

  // Read every partition from 0.
  std::map<std::string, int> seen;  // message value -> count
  std::map<int, std::vector<std::pair<int, int>>> order;  // client -> (i, p)
  for (int p = 0; p < kPartitions; ++p) {
    int64_t next = 0;
    while (true) {
      grpc::ClientContext context;
      v1::FetchRequest fetch;
      fetch.set_topic("events");
      fetch.set_partition(p);
      fetch.set_offset(next);
      v1::FetchResponse response;
      ASSERT_TRUE(cluster_.Queues()->Fetch(&context, fetch, &response).ok());
      if (response.messages().empty()) {
        EXPECT_EQ(next, response.end_offset());
        break;
      }
      for (const v1::QueueMessage& m : response.messages()) {
        ASSERT_EQ(m.offset(), next) << "gap in partition " << p;
        ++next;
        ++seen[m.value()];
        // "c<client>-<i>/<m>": within a partition, one client's messages
        // follow its (sequential) commit order.
        std::vector<std::string> parts = absl::StrSplit(m.value(), '/');
        std::vector<std::string> ci = absl::StrSplit(parts[0].substr(1), '-');
        order[std::stoi(ci[0])].push_back({std::stoi(ci[1]), p});
      }
    }
  }
  for (const auto& [value, count] : seen) {
    EXPECT_EQ(count, 1) << value << " appears " << count << " times";
    const std::string key = value.substr(0, value.find('/'));
    EXPECT_TRUE(committed.count(key)) << value << " of an aborted transaction";
  }
  for (const std::string& key : committed) {
    for (int m = 0; m < 2; ++m) {
      EXPECT_EQ(seen.count(absl::StrCat(key, "/", m)), 1u)
          << key << "/" << m << " is missing";
    }
  }
  for (const auto& [client, entries] : order) {
    std::map<int, int> last_in_partition;
    for (const auto& [i, p] : entries) {
      auto it = last_in_partition.find(p);
      // (Both messages of one transaction may share a partition: only
      // different transactions are ordered against each other.)
      if (it != last_in_partition.end() && it->second != i) {
        EXPECT_LT(it->second, i) << "client " << client << " partition " << p;
      }
      last_in_partition[p] = i;
    }
  }
  std::printf("committed %zu of %d\n", committed.size(), kClients * kTransactionsPerClient);
  // Sanity: the run did commit and abort things. (How many abort depends on
  // the machine's load while the coordinator is down: only a floor.)
  EXPECT_GT(committed.size(), size_t{kClients * kTransactionsPerClient / 10});
  EXPECT_LT(committed.size(), size_t{kClients * kTransactionsPerClient});
}

}  // namespace
}  // namespace twopc
