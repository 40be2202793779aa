#include "tools/bench/txn_bench.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tools/bench/child_process.h"
#include "tools/bench/echo.h"
#include "tools/bench/interrupt.h"
#include "tools/bench/process_cpu.h"
#include "tools/bench/report.h"
#include "tools/bench/sync_ceiling.h"
#include "tools/bench/target.h"
#include "tools/bench/txn_workload.h"
#include "twopc/v1/admin.grpc.pb.h"

namespace twopc::bench {
namespace {

constexpr absl::Duration kProgressInterval = absl::Seconds(1);
constexpr absl::Duration kEchoWarmup = absl::Milliseconds(500);
constexpr absl::Duration kServerStartTimeout = absl::Seconds(30);
constexpr absl::Duration kRpcTimeout = absl::Seconds(5);

// What the servers had done at one edge of a window.
struct Snapshot {
  std::optional<v1::Stats> stats;
  // Per watched process, then the bench itself.
  std::vector<std::optional<absl::Duration>> cpu;
};

// Waits through the phases of a run, and prints a progress line once a
// second on stderr when enabled: rates since the last line and the window's
// p99 so far. On a terminal the line is rewritten in place.
class Progress {
 public:
  // Prints when stderr is a terminal, or always with `always`.
  Progress(bool always, std::string label)
      : tty_(isatty(STDERR_FILENO)),
        enabled_(always || tty_),
        label_(std::move(label)) {}
  ~Progress() {
    if (enabled_ && tty_ && printed_) std::fputs("\n", stderr);
  }

  // Waits `duration`; false when interrupted.
  bool Wait(const LoadGenerator& generator, absl::Duration duration,
            const char* phase) {
    const absl::Time end = absl::Now() + duration;
    for (absl::Time now = absl::Now(); now < end; now = absl::Now()) {
      if (!SleepUnlessInterrupted(std::min(kProgressInterval, end - now))) {
        return false;
      }
      if (enabled_) Print(generator, phase);
    }
    return true;
  }

 private:
  void Print(const LoadGenerator& generator, const char* phase) {
    const absl::Time now = absl::Now();
    const LoadCounters totals = generator.Totals();
    const double seconds = absl::ToDoubleSeconds(now - last_time_);
    std::fprintf(stderr,
                 "%s[%s] %-7s committed %8.0f/s  aborted %7.0f/s  "
                 "p99 %7.3f ms%s",
                 tty_ ? "\r\033[K" : "", label_.c_str(), phase,
                 (totals.committed - last_.committed) / seconds,
                 (totals.aborted() - last_.aborted()) / seconds,
                 absl::ToDoubleMilliseconds(generator.WindowP99()),
                 tty_ ? "" : "\n");
    std::fflush(stderr);
    last_ = totals;
    last_time_ = now;
    printed_ = true;
  }

  const bool tty_;
  const bool enabled_;
  const std::string label_;
  LoadCounters last_;
  absl::Time last_time_ = absl::Now();
  bool printed_ = false;
};

// "txn 64 clients", "echo 500/s", ...
std::string RunLabel(const char* what, const LoadOptions& load) {
  return load.rate > 0 ? absl::StrCat(what, " ", load.rate, "/s")
                       : absl::StrCat(what, " ", load.clients, " clients");
}

// Runs `workload` for `warmup`, then measures a window of `duration`.
// `at_open` runs right before the window opens and `at_close` right after
// it closes. CANCELLED when interrupted.
absl::StatusOr<LoadWindow> MeasureWindow(
    Workload& workload, const LoadOptions& load, absl::Duration warmup,
    absl::Duration duration, Progress& progress,
    const std::function<void()>& at_open,
    const std::function<void()>& at_close) {
  LoadGenerator generator(&workload, load);
  if (!progress.Wait(generator, warmup, "warm-up")) {
    return absl::CancelledError("interrupted");
  }
  at_open();
  generator.OpenWindow();
  const bool completed = progress.Wait(generator, duration, "measure");
  LoadWindow window = generator.CloseWindow();
  at_close();
  generator.Stop(completed ? LoadGenerator::StopMode::kDrain
                           : LoadGenerator::StopMode::kCancel);
  if (!completed) return absl::CancelledError("interrupted");
  return window;
}

Snapshot TakeSnapshot(v1::AdminService::Stub& admin,
                      const std::vector<WatchedProcess>& processes) {
  Snapshot snapshot;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcTimeout));
  v1::Stats stats;
  if (admin.GetStats(&context, v1::GetStatsRequest(), &stats).ok()) {
    snapshot.stats = std::move(stats);
  }
  auto cpu_of = [](std::optional<pid_t> pid) -> std::optional<absl::Duration> {
    if (!pid.has_value()) return std::nullopt;
    absl::StatusOr<absl::Duration> cpu = ProcessCpuTime(*pid);
    if (!cpu.ok()) return std::nullopt;
    return *cpu;
  };
  for (const WatchedProcess& process : processes) {
    snapshot.cpu.push_back(cpu_of(process.pid));
  }
  snapshot.cpu.push_back(cpu_of(getpid()));
  return snapshot;
}

// Fills the server-side figures of `run` from the window's edges.
void AddServerFigures(const Snapshot& before, const Snapshot& after,
                      const std::vector<WatchedProcess>& processes,
                      RunResult& run) {
  if (before.stats.has_value() && after.stats.has_value()) {
    run.log_syncs = after.stats->log_syncs() - before.stats->log_syncs();
    run.decisions_synced =
        after.stats->decisions_synced() - before.stats->decisions_synced();
  }
  const uint64_t completed = run.window.counters.completed();
  for (size_t i = 0; i < before.cpu.size(); ++i) {
    CpuShare share{.name = i < processes.size() ? processes[i].name : "bench",
                   .per_transaction = std::nullopt};
    if (before.cpu[i].has_value() && after.cpu[i].has_value() &&
        completed > 0) {
      share.per_transaction = (*after.cpu[i] - *before.cpu[i]) / completed;
    }
    run.cpu.push_back(std::move(share));
  }
}

absl::StatusOr<RunResult> MeasureTransactions(TxnWorkload& workload,
                                              const Target& target,
                                              v1::AdminService::Stub& admin,
                                              const TxnBenchOptions& options,
                                              int clients) {
  LoadOptions load = options.load;
  load.clients = clients;
  Progress progress(options.progress, RunLabel("txn", load));
  Snapshot before, after;
  RunResult run;
  run.clients = clients;
  ASSIGN_OR_RETURN(
      run.window,
      MeasureWindow(
          workload, load, options.warmup, options.duration, progress,
          [&] { before = TakeSnapshot(admin, target.processes); },
          [&] { after = TakeSnapshot(admin, target.processes); }));
  AddServerFigures(before, after, target.processes, run);
  return run;
}

absl::StatusOr<EchoCeiling> MeasureEcho(EchoWorkload& workload,
                                        const TxnBenchOptions& options,
                                        int clients) {
  LoadOptions load = options.load;
  load.clients = clients;
  Progress progress(options.progress, RunLabel("echo", load));
  ASSIGN_OR_RETURN(const LoadWindow window,
                   MeasureWindow(
                       workload, load, kEchoWarmup, options.ceiling_duration,
                       progress, [] {}, [] {}));
  return EchoCeiling{.calls_per_second = window.counters.committed /
                                         absl::ToDoubleSeconds(window.elapsed),
                     .p50 = window.latency.Percentile(0.5),
                     .p99 = window.latency.Percentile(0.99)};
}

absl::Status CreateTopic(v1::AdminService::Stub& admin, const std::string& name,
                         int partitions) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcTimeout));
  v1::CreateTopicRequest request;
  request.set_name(name);
  request.set_partitions(partitions);
  v1::TopicInfo info;
  grpc::Status status = admin.CreateTopic(&context, request, &info);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("creating topic ", name, ": ", StatusText(status)));
  }
  return absl::OkStatus();
}

void WarnAboutUnknownProcesses(const Target& target) {
  for (const WatchedProcess& process : target.processes) {
    if (process.pid.has_value()) continue;
    std::fprintf(stderr,
                 "twopc-bench: cannot find the process of %s (none or "
                 "several match); its CPU time is not reported: pass "
                 "--pids %s=PID\n",
                 process.name.c_str(), process.name.c_str());
  }
}

absl::Status RunOrError(const TxnBenchOptions& options) {
  std::unique_ptr<LocalTwopcCluster> local;
  Target target;
  if (options.local) {
    ASSIGN_OR_RETURN(
        local, LocalTwopcCluster::Start(
                   std::filesystem::path(OwnExecutablePath()).parent_path(),
                   options.participants));
    target = local->target();
  } else {
    ASSIGN_OR_RETURN(target,
                     ConnectToCluster(options.coordinator, options.participants,
                                      options.pids));
  }
  WarnAboutUnknownProcesses(target);
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch, ScratchDir::Create());
  auto admin = v1::AdminService::NewStub(grpc::CreateChannel(
      target.coordinator, grpc::InsecureChannelCredentials()));
  const std::string run_id =
      absl::StrCat(getpid(), "-", absl::ToUnixMillis(absl::Now()));
  const std::string topic = absl::StrCat("bench-", run_id);
  if (options.messages > 0) {
    RETURN_IF_ERROR(CreateTopic(*admin, topic, options.partitions));
  }
  TxnWorkload transactions(
      MakeChannels(target.coordinator, options.channels),
      TxnShape{.participant_ids = target.participant_ids,
               .payload_bytes = options.payload_bytes,
               .messages = options.messages,
               .topic = topic,
               .abort_ratio = options.abort_ratio,
               .idempotency_keys = options.idempotency_keys,
               .run_id = run_id,
               .stream = options.stream,
               .deadline = options.deadline});

  std::unique_ptr<ChildProcess> echo_server;
  std::unique_ptr<EchoWorkload> echo;
  if (options.ceilings) {
    ASSIGN_OR_RETURN(
        echo_server,
        ChildProcess::StartServer(
            {OwnExecutablePath(), "echo-server", "--listen=127.0.0.1:0"},
            scratch->Sub("echo-server.log"), kServerStartTimeout));
    echo = std::make_unique<EchoWorkload>(
        MakeChannels(echo_server->address(), options.channels),
        transactions.RequestBytes());
  }

  std::vector<RunResult> runs;
  for (int clients : options.client_counts) {
    ASSIGN_OR_RETURN(
        RunResult run,
        MeasureTransactions(transactions, target, *admin, options, clients));
    if (echo != nullptr) {
      ASSIGN_OR_RETURN(run.echo, MeasureEcho(*echo, options, clients));
    }
    runs.push_back(std::move(run));
  }
  std::optional<double> synced_writes_per_second;
  if (options.ceilings) {
    ASSIGN_OR_RETURN(synced_writes_per_second,
                     MeasureSyncedWritesPerSecond(scratch->Sub("rocksdb"),
                                                  options.ceiling_duration));
  }
  if (Interrupted()) return absl::CancelledError("interrupted");
  PrintReport(options, target, runs, synced_writes_per_second);
  return absl::OkStatus();
}

}  // namespace

double RunResult::committed_per_second() const {
  return window.counters.committed / absl::ToDoubleSeconds(window.elapsed);
}

double RunResult::aborted_per_second() const {
  return window.counters.aborted() / absl::ToDoubleSeconds(window.elapsed);
}

std::optional<double> RunResult::decisions_per_sync() const {
  if (!log_syncs.has_value() || *log_syncs == 0) return std::nullopt;
  return static_cast<double>(*decisions_synced) / *log_syncs;
}

std::optional<absl::Duration> RunResult::total_cpu_per_transaction() const {
  absl::Duration total;
  for (const CpuShare& share : cpu) {
    if (!share.per_transaction.has_value()) return std::nullopt;
    total += *share.per_transaction;
  }
  return total;
}

std::optional<double> RunResult::ratio_to_echo() const {
  if (!echo.has_value() || echo->calls_per_second == 0) return std::nullopt;
  return committed_per_second() / echo->calls_per_second;
}

int RunTxnBench(const TxnBenchOptions& options) {
  const absl::Status status = RunOrError(options);
  if (status.ok()) return EXIT_SUCCESS;
  if (absl::IsCancelled(status)) {
    std::fprintf(stderr, "twopc-bench: interrupted\n");
    return 130;
  }
  std::fprintf(stderr, "twopc-bench: %s\n", status.ToString().c_str());
  return EXIT_FAILURE;
}

}  // namespace twopc::bench
