// LinkService in process: a real branch store, kv resource and manager
// behind a gRPC server on port 0; the test plays the coordinator.
#include "participant/link_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/branch_manager.h"
#include "participant/kv_resource.h"
#include "participant/rocksdb_branch_store.h"
#include "tests/participant/kv_builders.h"
#include "tests/participant/process_harness.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace twopc::participant {
namespace {

using ::testing::HasSubstr;
using ::twopc::testing::IsOk;
using ::twopc::testing::StatusIs;
using ::twopc::testing::TempDir;
using namespace ::twopc::participant::testing;  // NOLINT

constexpr uint64_t kEpoch = 3;

class LinkServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = RocksDbBranchStore::Open(dir_.path());
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
    kv_ = std::make_unique<KvResource>(store_.get());
    BranchManagerOptions options;
    options.participant_id = "p1";
    auto manager = BranchManager::Create(std::move(options), store_.get(),
                                         kv_.get(), Clock::Real());
    ASSERT_THAT(manager, IsOk());
    manager_ = std::move(*manager);
    service_ =
        std::make_unique<LinkService>("p1", manager_.get(), store_.get());
    GrpcServerBuilder builder("127.0.0.1:0", 8 << 20);
    std::unique_ptr<grpc::ServerCompletionQueue> queue =
        builder.AddAsyncQueue();
    auto server = builder.Start({service_.get()});
    ASSERT_THAT(server, IsOk());
    server_ = std::move(*server);
    service_->Start(std::move(queue));
  }

  void TearDown() override {
    if (server_.server != nullptr) {
      service_->CancelAll();
      server_.server->Shutdown();
      server_.server->Wait();
      service_->Stop();
      server_.server.reset();
    }
  }

  TempDir dir_;
  std::unique_ptr<RocksDbBranchStore> store_;
  std::unique_ptr<KvResource> kv_;
  std::unique_ptr<BranchManager> manager_;
  std::unique_ptr<LinkService> service_;
  RunningServer server_;
};

std::vector<v1::BranchRequest> Prepares(int count, uint64_t first_id) {
  std::vector<v1::BranchRequest> requests;
  for (int i = 0; i < count; ++i) {
    const std::string txid = absl::StrCat("t", first_id + i);
    requests.push_back(PrepareRequest(first_id + i, txid,
                                      KvBranch({Put(txid, "v")})));
  }
  return requests;
}

TEST_F(LinkServiceTest, TheHelloReportsTheSidecarAndTheEpoch) {
  LinkClient link(server_.address, kEpoch, "p1");
  auto hello = link.Open();
  ASSERT_THAT(hello, IsOk());
  EXPECT_EQ(hello->participant_id(), "p1");
  EXPECT_EQ(hello->highest_epoch(), kEpoch);
  EXPECT_EQ(hello->resource(), "kv");
  EXPECT_TRUE(link.Finish().ok());
}

// The loop writes what a received batch queued in the store itself, once
// every ready event is handled: the prepares of one batch share one sync.
TEST_F(LinkServiceTest, ThePreparesOfOneBatchShareOneSync) {
  LinkClient link(server_.address, kEpoch, "p1");
  ASSERT_THAT(link.Open(), IsOk());
  const uint64_t syncs_before = store_->writer_stats().awaited_syncs;
  ASSERT_TRUE(link.Send(Prepares(100, 1)));
  for (uint64_t id = 1; id <= 100; ++id) {
    auto reply = link.Await(id);
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->vote(), v1::VOTE_YES) << id;
  }
  EXPECT_EQ(store_->writer_stats().awaited_syncs - syncs_before, 1);
  EXPECT_EQ(manager_->prepared_branches(), 100u);
  EXPECT_TRUE(link.Finish().ok());
}

// Replies still due when the coordinator half-closes are written before the
// stream ends with OK.
TEST_F(LinkServiceTest, AHalfClosedStreamWritesTheRepliesDueBeforeItEnds) {
  LinkClient link(server_.address, kEpoch, "p1");
  ASSERT_THAT(link.Open(), IsOk());
  ASSERT_TRUE(link.Send(Prepares(50, 1)));
  EXPECT_TRUE(link.Finish().ok());  // half-closes at once
  for (uint64_t id = 1; id <= 50; ++id) {
    auto reply = link.Await(id, absl::ZeroDuration());
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->vote(), v1::VOTE_YES) << id;
  }
}

TEST_F(LinkServiceTest, AnotherParticipantsStreamIsRefused) {
  LinkClient link(server_.address, kEpoch, "p2");
  EXPECT_THAT(link.Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("not the expected 'p2'")));
}

TEST_F(LinkServiceTest, CancelAllEndsOpenStreamsAndRefusesNewOnes) {
  LinkClient open(server_.address, kEpoch, "p1");
  ASSERT_THAT(open.Open(), IsOk());
  service_->CancelAll();
  EXPECT_EQ(open.Finish().error_code(), grpc::StatusCode::CANCELLED);

  LinkClient late(server_.address, kEpoch, "p1");
  EXPECT_THAT(late.Open(), StatusIs(absl::StatusCode::kUnavailable,
                                    HasSubstr("shutting down")));
}

// A stream that breaks drops what is due; the next stream is served, and
// the barrier answers the requests sent again.
TEST_F(LinkServiceTest, ANewStreamIsServedAfterOneBreaks) {
  {
    LinkClient first(server_.address, kEpoch, "p1");
    ASSERT_THAT(first.Open(), IsOk());
    ASSERT_TRUE(first.Send(Prepares(10, 1)));
  }  // cancelled with replies maybe in flight
  LinkClient second(server_.address, kEpoch, "p1");
  ASSERT_THAT(second.Open(Prepares(10, 1)), IsOk());
  for (uint64_t id = 1; id <= 10; ++id) {
    auto reply = second.Await(id);
    ASSERT_THAT(reply, IsOk());
    EXPECT_EQ(reply->vote(), v1::VOTE_YES) << id;
  }
  EXPECT_TRUE(second.Finish().ok());
}

}  // namespace
}  // namespace twopc::participant
