// twopc-bench txn end to end: it starts its own cluster (--local) or uses a
// running one, runs short windows, and reports. Figures are not asserted
// (no timing assertions): the report must parse, transactions must commit,
// intended aborts must abort and nothing else may fail, and the bench must
// leave no process or scratch directory behind, also when interrupted.
// Also the latency histogram's precision contract.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "common/grpc_server.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/load_generator.h"
#include "tools/bench/txn_workload.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::twopc::bench::LatencyHistogram;
using ::twopc::testing::IsOk;
using ::twopc::testing::LocalCluster;
using ::twopc::testing::Subprocess;
using ::twopc::testing::TempDir;

constexpr absl::Duration kBenchTimeout = absl::Seconds(120);

// Flags that keep a run short; figures are not asserted.
const std::vector<std::string> kShortRun = {
    "--duration=2s", "--warmup=0.5s", "--ceiling_duration=0.5s", "--clients=8"};

using BenchRun = ::twopc::testing::ProcessResult;

// Runs twopc-bench with `args`, its $TMPDIR pointing at `tmp` so the test
// can see what it leaves there.
class BenchTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directory(tmp_); }

  std::vector<std::string> BenchArgv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "/usr/bin/env", "TMPDIR=" + tmp_,
        std::string(TWOPC_BIN_DIR) + "/twopc-bench"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  absl::StatusOr<std::unique_ptr<Subprocess>> StartBench(
      const std::vector<std::string>& args) {
    return Subprocess::Start(
        BenchArgv(args), dir_.Sub(absl::StrCat("bench-", ++runs_, ".out")));
  }

  BenchRun RunBench(const std::vector<std::string>& args) {
    auto run = Subprocess::Run(BenchArgv(args),
                               dir_.Sub(absl::StrCat("bench-", ++runs_, ".out")),
                               kBenchTimeout);
    EXPECT_THAT(run, IsOk());
    return run.ok() ? *run : BenchRun();
  }

  // Everything the bench left in its $TMPDIR.
  std::vector<std::string> LeftInTmp() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(tmp_)) {
      names.push_back(entry.path().filename());
    }
    return names;
  }

  // Processes whose command line mentions the bench's $TMPDIR (the servers
  // it starts keep their data there).
  std::vector<std::string> ProcessesUsingTmp() const {
    std::vector<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::ifstream in(entry.path() / "cmdline", std::ios::binary);
      std::stringstream cmdline;
      cmdline << in.rdbuf();
      if (cmdline.str().find(tmp_) != std::string::npos) {
        found.push_back(entry.path().filename());
      }
    }
    return found;
  }

  // Interrupts a long run over `api` once it measures; the bench must exit
  // 130 and leave no process or file behind.
  void InterruptAndCheckTheCleanUp(const std::string& api);

  TempDir dir_;
  const std::string tmp_ = dir_.Sub("tmp");
  int runs_ = 0;  // each run's output goes to a file of its own
};

// The one JSON line of `output`, parsed.
absl::StatusOr<Struct> ParseJsonReport(const std::string& output) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (!absl::StartsWith(line, "{")) continue;
    Struct report;
    auto status =
        google::protobuf::util::JsonStringToMessage(std::string(line), &report);
    if (!status.ok()) return absl::InvalidArgumentError(status.ToString());
    return report;
  }
  return absl::NotFoundError("no JSON line in:\n" + output);
}

const Value& Field(const Struct& object, const std::string& name) {
  static const Value* const kMissing = new Value();
  auto it = object.fields().find(name);
  return it == object.fields().end() ? *kMissing : it->second;
}

// The first run of the JSON report of `run`, which must have exited 0.
absl::StatusOr<Struct> FirstRun(const BenchRun& run) {
  if (run.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("exit code ", run.exit_code, ":\n", run.output));
  }
  absl::StatusOr<Struct> report = ParseJsonReport(run.output);
  if (!report.ok()) return report.status();
  const auto& runs = Field(*report, "runs").list_value().values();
  if (runs.empty()) return absl::NotFoundError("no run in:\n" + run.output);
  return runs[0].struct_value();
}

double Number(const Struct& object, const std::string& name) {
  return Field(object, name).number_value();
}

// A run with intended aborts: some commit, some abort as intended, and
// since every client writes its own keys, nothing else aborts or fails.
void ExpectOutcomesAsIntended(const Struct& result, const std::string& output) {
  EXPECT_GT(Number(result, "committed"), 0) << output;
  EXPECT_GT(Number(result, "aborted_as_intended"), 0) << output;
  for (const char* other : {"conflicts", "aborted_unexpectedly",
                            "committed_unexpectedly", "failed"}) {
    EXPECT_EQ(Number(result, other), 0) << other << output;
  }
}

TEST_F(BenchTest, LocalRunReportsCommitsIntendedAbortsAndCeilingsAsJson) {
  std::vector<std::string> args = {"txn", "--local", "--json",
                                   "--abort_ratio=0.25", "--messages=1"};
  args.insert(args.end(), kShortRun.begin(), kShortRun.end());
  const BenchRun run = RunBench(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  absl::StatusOr<Struct> report = ParseJsonReport(run.output);
  ASSERT_THAT(report, IsOk());

  const auto& runs = Field(*report, "runs").list_value().values();
  ASSERT_EQ(runs.size(), 1) << run.output;
  const Struct& result = runs[0].struct_value();
  EXPECT_EQ(Number(result, "clients"), 8);
  ExpectOutcomesAsIntended(result, run.output);
  EXPECT_GT(Number(result, "decisions_synced"), 0) << run.output;
  EXPECT_GT(Number(result, "log_syncs"), 0) << run.output;
  const Struct& latency = Field(result, "latency_us").struct_value();
  EXPECT_GT(Number(latency, "max"), 0) << run.output;
  EXPECT_LE(Number(latency, "p50"), Number(latency, "max")) << run.output;
  const Struct& cpu = Field(result, "cpu_us_per_transaction").struct_value();
  for (const char* process : {"coordinator", "p1", "p2", "bench", "total"}) {
    EXPECT_TRUE(cpu.fields().contains(process)) << process << run.output;
  }
  EXPECT_GT(Number(result, "echo_calls_per_second"), 0) << run.output;
  EXPECT_TRUE(result.fields().contains("ratio_to_echo")) << run.output;
  EXPECT_GT(Number(*report, "rocksdb_synced_writes_per_second"), 0)
      << run.output;

  EXPECT_THAT(LeftInTmp(), IsEmpty());
  EXPECT_THAT(ProcessesUsingTmp(), IsEmpty());
}

// Over ExecuteStream every transaction is counted as over Execute calls:
// each request's own result decides its outcome.
TEST_F(BenchTest, StreamRunCountsEachTransactionByItsOwnResult) {
  std::vector<std::string> args = {"txn",          "--local",
                                   "--json",       "--stream",
                                   "--no_ceilings", "--abort_ratio=0.25",
                                   "--messages=1", "--idempotency_keys"};
  args.insert(args.end(), kShortRun.begin(), kShortRun.end());
  const BenchRun run = RunBench(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  absl::StatusOr<Struct> report = ParseJsonReport(run.output);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(Number(Field(*report, "config").struct_value(), "stream"), 1)
      << run.output;
  const auto& runs = Field(*report, "runs").list_value().values();
  ASSERT_EQ(runs.size(), 1) << run.output;
  ExpectOutcomesAsIntended(runs[0].struct_value(), run.output);
  EXPECT_THAT(LeftInTmp(), IsEmpty());
  EXPECT_THAT(ProcessesUsingTmp(), IsEmpty());
}

// Open loop: calls go out at the rate whatever the latency, and the report
// says how late the generator itself sent them (part of the latency it
// reports); a closed loop has no such figure.
TEST_F(BenchTest, OpenLoopSendsAtItsRateAndReportsItsOwnDelay) {
  const BenchRun run =
      RunBench({"txn", "--local", "--json", "--no_ceilings", "--rate=200",
                "--clients=4", "--duration=1s", "--warmup=0.2s"});
  absl::StatusOr<Struct> open_loop = FirstRun(run);
  ASSERT_THAT(open_loop, IsOk());
  const Struct& result = *open_loop;
  EXPECT_GT(Number(result, "committed"), 0) << run.output;
  // 200 fall due in the window (plus the few sent before it and answered
  // in it); none may be sent twice or ahead of time.
  EXPECT_LE(Number(result, "committed"), 210) << run.output;
  EXPECT_EQ(Number(result, "skipped"), 0) << run.output;
  EXPECT_EQ(Number(result, "failed"), 0) << run.output;
  const Struct& delay = Field(result, "send_delay_us").struct_value();
  EXPECT_GE(Number(delay, "p50"), 0) << run.output;
  EXPECT_LE(Number(delay, "p50"), Number(delay, "max")) << run.output;

  absl::StatusOr<Struct> closed_loop =
      FirstRun(RunBench({"txn", "--local", "--json", "--no_ceilings",
                         "--clients=2", "--duration=0.5s", "--warmup=0.1s"}));
  ASSERT_THAT(closed_loop, IsOk());
  EXPECT_FALSE(closed_loop->fields().contains("send_delay_us"));
}

TEST_F(BenchTest, SweepPrintsOneTableRowPerClientCount) {
  const BenchRun run =
      RunBench({"txn", "--local", "--sweep=1,3", "--no_ceilings",
                "--duration=1s", "--warmup=0.2s"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("| clients | committed/s |"));
  EXPECT_THAT(run.output, HasSubstr("\n| 1 | "));
  EXPECT_THAT(run.output, HasSubstr("\n| 3 | "));
}

TEST_F(BenchTest, InterruptStopsTheLocalClusterAndRemovesItsData) {
  for (const char* api : {"--channels=2", "--stream"}) {
    SCOPED_TRACE(api);
    InterruptAndCheckTheCleanUp(api);
  }
}

void BenchTest::InterruptAndCheckTheCleanUp(const std::string& api) {
  auto bench = StartBench({"txn", "--local", "--progress", "--duration=5m",
                           "--clients=4", "--no_ceilings", api});
  ASSERT_THAT(bench, IsOk());
  ASSERT_THAT((*bench)->WaitForLine("measure", kBenchTimeout), IsOk());
  EXPECT_THAT(ProcessesUsingTmp(), Not(IsEmpty()));  // the cluster is up
  (*bench)->Signal(SIGINT);
  auto status = (*bench)->Wait(kBenchTimeout);
  ASSERT_THAT(status, IsOk());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 130)
      << (*bench)->Output();
  EXPECT_THAT(LeftInTmp(), IsEmpty());
  EXPECT_THAT(ProcessesUsingTmp(), IsEmpty());
}

// Against a cluster it did not start, the bench finds the servers' processes
// in /proc (by binary and listening port) to report their CPU time.
TEST_F(BenchTest, RunningClusterServersAreFoundForCpuTime) {
  LocalCluster cluster(TWOPC_BIN_DIR, dir_.path());
  ASSERT_THAT(cluster.StartCoordinator(), IsOk());
  for (const char* id : {"p1", "p2"}) {
    ASSERT_THAT(cluster.StartParticipant(id), IsOk());
  }
  ASSERT_THAT(cluster.WaitForParticipants({"p1", "p2"}, absl::Seconds(30)),
              IsOk());
  std::vector<std::string> args = {
      "txn", "--coordinator=" + cluster.coordinator_address(), "--json",
      "--no_ceilings"};
  args.insert(args.end(), kShortRun.begin(), kShortRun.end());
  absl::StatusOr<Struct> result = FirstRun(RunBench(args));
  ASSERT_THAT(result, IsOk());
  EXPECT_GT(Number(*result, "committed"), 0);
  const Struct& cpu = Field(*result, "cpu_us_per_transaction").struct_value();
  for (const char* process : {"coordinator", "p1", "p2"}) {
    EXPECT_TRUE(cpu.fields().contains(process)) << process;
  }
}

// One branch per transaction, over ExecuteStream, against a stand-in.
bench::TxnShape StreamShape() {
  bench::TxnShape shape;
  shape.participant_ids = {"p1"};
  shape.run_id = "test";
  shape.stream = true;
  return shape;
}

// A coordinator stand-in whose ExecuteStream answers every request of the
// first `messages_per_stream` messages (OK), then ends the stream
// UNAVAILABLE: the requests written after that must fail, and the client
// must open a new stream for the next ones.
class StreamEndingService final : public v1::TransactionService::Service {
 public:
  static constexpr int kMessagesPerStream = 2;

  grpc::Status ExecuteStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ExecuteStreamResponse,
                               v1::ExecuteStreamRequest>* stream) override {
    v1::ExecuteStreamRequest request;
    for (int m = 0; m < kMessagesPerStream && stream->Read(&request); ++m) {
      v1::ExecuteStreamResponse response;
      for (const auto& item : request.items()) {
        auto* result = response.add_results();
        result->set_tag(item.tag());
        result->mutable_status();  // OK
      }
      if (!stream->Write(response)) break;
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream limit");
  }
};

// Streams that end mid-run: every call ends exactly once (committed or
// failed), new streams take over, and stopping releases them all.
TEST(TxnWorkloadTest, StreamsThatEndAreReplacedAndFailOnlyTheirOwnRequests) {
  StreamEndingService service;
  auto server = StartGrpcServer("127.0.0.1:0", {&service}, 8 << 20);
  ASSERT_THAT(server, IsOk());
  bench::TxnWorkload workload(bench::MakeChannels(server->address, 2),
                              StreamShape());
  bench::LoadOptions options;
  options.clients = 16;
  options.threads = 2;
  bench::LoadGenerator load(&workload, options);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (load.Totals().completed() < 20000 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  load.Stop(bench::LoadGenerator::StopMode::kDrain);
  const bench::LoadCounters totals = load.Totals();
  EXPECT_GE(totals.completed(), 20000u);
  EXPECT_GT(totals.committed, 0u);
  EXPECT_GT(totals.failed, 0u);
  EXPECT_THAT(totals.first_error, HasSubstr("stream limit"));
  server->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

// A coordinator stand-in whose ExecuteStream reads every request and never
// answers, until the client cancels the stream.
class SilentStreamService final : public v1::TransactionService::Service {
 public:
  grpc::Status ExecuteStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ExecuteStreamResponse,
                               v1::ExecuteStreamRequest>* stream) override {
    v1::ExecuteStreamRequest request;
    while (stream->Read(&request)) {
      requests_ += request.items_size();
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone");
  }
  int requests() const { return requests_.load(); }

 private:
  std::atomic<int> requests_{0};
};

// A stream that never answers fails its requests at the deadline
// (DEADLINE_EXCEEDED, as a unary call would), and new streams take over; a
// drain against it ends instead of waiting forever.
TEST(TxnWorkloadTest, AStreamWithoutAnswersFailsItsRequestsAtTheDeadline) {
  SilentStreamService service;
  auto server = StartGrpcServer("127.0.0.1:0", {&service}, 8 << 20);
  ASSERT_THAT(server, IsOk());
  bench::TxnShape shape = StreamShape();
  shape.deadline = absl::Milliseconds(200);
  bench::TxnWorkload workload(bench::MakeChannels(server->address, 1), shape);
  bench::LoadOptions options;
  options.clients = 4;
  options.threads = 1;
  bench::LoadGenerator load(&workload, options);
  // Each round of 4 requests fails after 200 ms, then 4 more are sent.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (load.Totals().failed < 8 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  load.Stop(bench::LoadGenerator::StopMode::kDrain);
  const bench::LoadCounters totals = load.Totals();
  EXPECT_GE(totals.failed, 8u);
  EXPECT_EQ(totals.committed, 0u);
  EXPECT_EQ(totals.completed(), totals.failed);
  EXPECT_THAT(totals.first_error,
              AllOf(HasSubstr("DEADLINE_EXCEEDED"), HasSubstr("200ms")));
  EXPECT_GE(service.requests(), 8);
  server->server->Shutdown(absl::ToChronoTime(absl::Now()));
}

TEST(LatencyHistogramTest, PercentilesAreWithinOneBucketOfTheTruth) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.Percentile(0.5), absl::ZeroDuration());
  for (int us = 1; us <= 10'000; ++us) {
    histogram.Record(absl::Microseconds(us));
  }
  EXPECT_EQ(histogram.count(), 10'000u);
  EXPECT_EQ(histogram.Max(), absl::Microseconds(10'000));
  // Value v us is the (v / 10,000)-quantile. Every percent, and p99.9.
  std::vector<double> quantiles = {0.999};
  for (int percent = 1; percent < 100; ++percent) {
    quantiles.push_back(percent / 100.0);
  }
  for (const double quantile : quantiles) {
    const double truth = quantile * 10'000;
    const double got =
        absl::ToDoubleMicroseconds(histogram.Percentile(quantile));
    EXPECT_NEAR(got, truth, truth / 64) << quantile;
  }
  EXPECT_EQ(histogram.Percentile(1.0), histogram.Max());
}

TEST(LatencyHistogramTest, SmallValuesAreExactAndMergeAddsCounts) {
  LatencyHistogram a, b;
  a.Record(absl::Nanoseconds(3));
  b.Record(absl::Nanoseconds(40));
  b.Record(absl::Nanoseconds(-5));  // counts as zero
  a.Merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.Percentile(0.0), absl::ZeroDuration());
  EXPECT_EQ(a.Percentile(0.5), absl::Nanoseconds(3));
  EXPECT_EQ(a.Percentile(1.0), absl::Nanoseconds(40));
}

}  // namespace
}  // namespace twopc
