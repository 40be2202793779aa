#include "participant/kv_resource.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/participant/fake_branch_store.h"
#include "tests/participant/kv_builders.h"

namespace twopc::participant {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace ::twopc::participant::testing;  // NOLINT

class KvResourceTest : public ::testing::Test {
 protected:
  KvResourceTest() : kv_(&store_) { store_.set_auto_sync(true); }

  PrepareResult Prepare(const std::string& txid, const v1::Branch& branch) {
    PrepareResult out;
    bool called = false;
    kv_.Prepare(txid, branch, absl::InfiniteFuture(), [&](PrepareResult r) {
      out = std::move(r);
      called = true;
    });
    EXPECT_TRUE(called);
    return out;
  }

  // Commits a prepared result as BranchManager would: effects synced, then
  // ApplyOutcome.
  void Commit(const std::string& txid, const PrepareResult& prepared) {
    StoreBatch batch;
    kv_.AddCommitEffects(prepared.prepared, &batch);
    store_.Write(std::move(batch), [](const absl::Status&) {});
    kv_.ApplyOutcome(txid, prepared.prepared, true, [] {}, nullptr);
  }
  void Abort(const std::string& txid, const PrepareResult& prepared) {
    kv_.ApplyOutcome(txid, prepared.prepared, false, [] {}, nullptr);
  }

  std::optional<std::string> Value(const std::string& key) {
    return *store_.Get(key);
  }

  FakeBranchStore store_;
  KvResource kv_;
};

TEST_F(KvResourceTest, PutDeleteAndAddApplyInOrderAtCommit) {
  store_.SetKv("gone", "x");
  PrepareResult r = Prepare(
      "t1", KvBranch({Put("a", "1"), Add("n", 5), Add("n", -2), Delete("gone"),
                      Put("a", "2")}));
  ASSERT_EQ(r.vote, v1::VOTE_YES) << r.reason;
  // Nothing visible before commit.
  EXPECT_EQ(Value("a"), std::nullopt);
  EXPECT_EQ(Value("gone"), "x");
  Commit("t1", r);
  EXPECT_EQ(Value("a"), "2");
  EXPECT_EQ(Value("n"), "3");
  EXPECT_EQ(Value("gone"), std::nullopt);
  EXPECT_EQ(kv_.locked_keys(), 0u);
}

// A committed value is read only when an add or an expect depends on it:
// puts and deletes overwrite whatever was there, and an operation after a
// put or delete of its key in the same branch sees the branch's own value.
TEST_F(KvResourceTest, CommittedValuesAreReadOnlyWhenAnOperationDependsOnThem) {
  store_.SetKv("a", "old");
  store_.SetKv("n", "10");
  PrepareResult puts =
      Prepare("t1", KvBranch({Put("a", "1"), Delete("b"), Put("c", "3")}));
  ASSERT_EQ(puts.vote, v1::VOTE_YES) << puts.reason;
  EXPECT_EQ(store_.gets(), 0);
  Abort("t1", puts);

  PrepareResult own = Prepare(
      "t2", KvBranch({Put("a", "7"), ExpectValue("a", "7"), Delete("n"),
                      Add("n", 2)}));
  ASSERT_EQ(own.vote, v1::VOTE_YES) << own.reason;
  EXPECT_EQ(store_.gets(), 0);
  Commit("t2", own);
  EXPECT_EQ(Value("a"), "7");
  EXPECT_EQ(Value("n"), "2");  // added to the deleted (absent) value

  const int before = store_.gets();  // Value() reads too
  PrepareResult reads =
      Prepare("t3", KvBranch({Add("n", 5), ExpectValue("a", "7"), Add("n", 1)}));
  ASSERT_EQ(reads.vote, v1::VOTE_YES) << reads.reason;
  EXPECT_EQ(store_.gets() - before, 2);  // n and a, once each
  Commit("t3", reads);
  EXPECT_EQ(Value("n"), "8");
}

TEST_F(KvResourceTest, ConflictingPrepareVotesNoAtOnceUntilRelease) {
  PrepareResult first = Prepare("t1", KvBranch({Put("k", "1")}));
  ASSERT_EQ(first.vote, v1::VOTE_YES);
  EXPECT_EQ(kv_.LockHolder("k"), "t1");
  PrepareResult second = Prepare("t2", KvBranch({Add("k", 1), Put("z", "")}));
  EXPECT_EQ(second.vote, v1::VOTE_NO);
  EXPECT_THAT(second.reason, HasSubstr("locked by prepared transaction t1"));
  // A refused prepare holds nothing.
  EXPECT_EQ(kv_.LockHolder("z"), "");
  Abort("t1", first);
  EXPECT_EQ(kv_.LockHolder("k"), "");
  EXPECT_EQ(Prepare("t2", KvBranch({Put("k", "2")})).vote, v1::VOTE_YES);
}

TEST_F(KvResourceTest, ExpectOnlyBranchIsReadOnlyAndKeepsNoLock) {
  store_.SetKv("k", "v");
  PrepareResult r =
      Prepare("t1", KvBranch({ExpectValue("k", "v"), ExpectAbsent("other")}));
  EXPECT_EQ(r.vote, v1::VOTE_READ_ONLY);
  EXPECT_EQ(kv_.locked_keys(), 0u);
}

TEST_F(KvResourceTest, ExpectLocksItsKeyInAWritingBranch) {
  store_.SetKv("k", "v");
  PrepareResult r = Prepare("t1", KvBranch({ExpectValue("k", "v"), Put("w", "1")}));
  ASSERT_EQ(r.vote, v1::VOTE_YES);
  EXPECT_EQ(kv_.LockHolder("k"), "t1");
  EXPECT_EQ(Prepare("t2", KvBranch({Put("k", "x")})).vote, v1::VOTE_NO);
}

TEST_F(KvResourceTest, FailedPreconditionsVoteNoWithAReason) {
  store_.SetKv("k", "v");
  PrepareResult wrong = Prepare("t1", KvBranch({ExpectValue("k", "other"), Put("a", "1")}));
  EXPECT_EQ(wrong.vote, v1::VOTE_NO);
  EXPECT_THAT(wrong.reason, HasSubstr("does not hold the expected value"));
  PrepareResult unknown =
      Prepare("t2", KvBranch({ExpectValue("missing", "x"), Put("a", "1")}));
  EXPECT_EQ(unknown.vote, v1::VOTE_NO);
  EXPECT_THAT(unknown.reason, HasSubstr("absent"));
  PrepareResult present = Prepare("t3", KvBranch({ExpectAbsent("k")}));
  EXPECT_EQ(present.vote, v1::VOTE_NO);
  // Expect sees earlier operations of the same branch.
  EXPECT_EQ(Prepare("t4", KvBranch({Put("new", "1"), ExpectValue("new", "1")}))
                .vote,
            v1::VOTE_YES);
  EXPECT_EQ(kv_.locked_keys(), 1u);  // only t4's key
}

TEST_F(KvResourceTest, AddRespectsBoundsAndIntegerFormat) {
  store_.SetKv("balance", "10");
  store_.SetKv("text", "ten");
  PrepareResult negative = Prepare("t1", KvBranch({Add("balance", -11, 0)}));
  EXPECT_EQ(negative.vote, v1::VOTE_NO);
  EXPECT_THAT(negative.reason, HasSubstr("below the minimum 0"));
  PrepareResult over = Prepare("t2", KvBranch({Add("balance", 5, std::nullopt, 12)}));
  EXPECT_EQ(over.vote, v1::VOTE_NO);
  EXPECT_THAT(over.reason, HasSubstr("above the maximum 12"));
  PrepareResult text = Prepare("t3", KvBranch({Add("text", 1)}));
  EXPECT_EQ(text.vote, v1::VOTE_NO);
  EXPECT_THAT(text.reason, HasSubstr("decimal integer"));
  store_.SetKv("big", "9223372036854775807");
  PrepareResult overflow = Prepare("t4", KvBranch({Add("big", 1)}));
  EXPECT_EQ(overflow.vote, v1::VOTE_NO);
  EXPECT_THAT(overflow.reason, HasSubstr("overflows"));
  PrepareResult exact = Prepare("t5", KvBranch({Add("balance", -10, 0)}));
  ASSERT_EQ(exact.vote, v1::VOTE_YES);
  Commit("t5", exact);
  EXPECT_EQ(Value("balance"), "0");
  EXPECT_EQ(kv_.locked_keys(), 0u);
}

TEST_F(KvResourceTest, MalformedAndOversizedBranchesVoteNoAndWriteNothing) {
  v1::Branch empty_op = KvBranch({Put("a", "1")});
  empty_op.mutable_kv()->add_operations();  // no kind set
  EXPECT_THAT(Prepare("t1", empty_op).reason, HasSubstr("malformed"));
  EXPECT_THAT(Prepare("t2", KvBranch({Put("", "v")})).reason,
              HasSubstr("keys must be 1..1024 bytes"));
  EXPECT_THAT(Prepare("t3", KvBranch({Put(std::string(1025, 'k'), "v")})).reason,
              HasSubstr("keys must be 1..1024 bytes"));
  EXPECT_THAT(
      Prepare("t4", KvBranch({Put("k", std::string((1 << 20) + 1, 'v'))})).reason,
      HasSubstr("limit is 1048576"));
  std::vector<v1::KvOperation> many(1001, Put("k", "v"));
  EXPECT_THAT(Prepare("t5", KvBranch(many)).reason,
              HasSubstr("1001 operations; the limit is 1000"));
  v1::Branch bad_expect = KvBranch({Put("a", "1")});
  bad_expect.mutable_kv()->add_operations()->mutable_expect()->set_key("x");
  EXPECT_THAT(Prepare("t6", bad_expect).reason, HasSubstr("set a value or absent"));
  v1::Branch payload;
  payload.set_payload("bytes");
  EXPECT_THAT(Prepare("t7", payload).reason, HasSubstr("callback payload"));
  EXPECT_THAT(Prepare("t8", v1::Branch()).reason, HasSubstr("no work"));
  // Large total: 2 values of 600 KiB.
  EXPECT_THAT(Prepare("t9", KvBranch({Put("a", std::string(600 << 10, 'x')),
                                      Put("b", std::string(600 << 10, 'x'))}))
                  .reason,
              HasSubstr("bytes; the limit is 1048576"));
  EXPECT_EQ(kv_.locked_keys(), 0u);
  EXPECT_EQ(store_.writes(), 0);
}

TEST_F(KvResourceTest, RestoreRetakesLocksOfPreparedRecords) {
  PrepareResult r = Prepare("t1", KvBranch({Put("a", "1"), ExpectAbsent("b")}));
  ASSERT_EQ(r.vote, v1::VOTE_YES);
  KvResource restarted(&store_);
  restarted.Restore("t1", r.prepared);
  EXPECT_EQ(restarted.LockHolder("a"), "t1");
  EXPECT_EQ(restarted.LockHolder("b"), "t1");
  PrepareResult refused;
  restarted.Prepare("t2", KvBranch({Put("b", "x")}), absl::InfiniteFuture(),
                    [&](PrepareResult x) { refused = std::move(x); });
  EXPECT_EQ(refused.vote, v1::VOTE_NO);
}

TEST_F(KvResourceTest, ScanReturnsCommittedEntriesByPrefixInPages) {
  for (const char* key : {"a/1", "a/2", "a/3", "b/1"}) store_.SetKv(key, key);
  bool more = false;
  auto page = store_.Scan("a/", "", 2, &more);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_TRUE(more);
  auto rest = store_.Scan("a/", (*page)[1].key, 2, &more);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].key, "a/3");
  EXPECT_FALSE(more);
  EXPECT_THAT(*store_.Scan("c/", "", 10, &more), IsEmpty());
}

}  // namespace
}  // namespace twopc::participant
