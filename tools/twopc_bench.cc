// twopc-bench: load generator and benchmark.
//
//   twopc-bench txn          transactions per second, latency, decisions per
//                            sync and CPU per transaction, against a running
//                            cluster or one it starts (--local), with the
//                            machine's gRPC and fsync ceilings
//   twopc-bench ceilings     synced RocksDB writes/s from one thread: the
//                            bound on decisions/s without group commit
//   twopc-bench queue        queue read throughput (Fetch and Subscribe) and
//                            commit-to-subscriber latency against a running
//                            coordinator with one kv sidecar
//   twopc-bench echo-server  the gRPC echo server `txn` measures its ceiling
//                            against (started by `txn` itself)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/process_tuning.h"
#include "common/shutdown.h"
#include "coordinator/limits.h"
#include "tools/bench/echo.h"
#include "tools/bench/interrupt.h"
#include "tools/bench/queue_bench.h"
#include "tools/bench/sync_ceiling.h"
#include "tools/bench/txn_bench.h"

namespace {

using ::twopc::bench::TxnBenchOptions;

// An option taking a positive duration: "10s", "500ms", "1m30s", or a plain
// number of seconds.
CLI::Option* AddDurationOption(CLI::App* app, const std::string& name,
                               absl::Duration* target,
                               const std::string& help) {
  return app
      ->add_option_function<std::string>(
          name,
          [name, target](const std::string& text) {
            double seconds = 0;
            absl::Duration duration;
            if (absl::SimpleAtod(text, &seconds)) {
              duration = absl::Seconds(seconds);
            } else if (!absl::ParseDuration(text, &duration)) {
              throw CLI::ValidationError(name,
                                         "'" + text +
                                             "' is not a duration such as 10s, "
                                             "500ms or 2.5");
            }
            if (duration <= absl::ZeroDuration()) {
              throw CLI::ValidationError(name, "must be positive");
            }
            *target = duration;
          },
          help)
      ->default_str(absl::FormatDuration(*target));
}

void AddTxnOptions(CLI::App* txn, TxnBenchOptions& o, bool& json) {
  auto* coordinator =
      txn->add_option("--coordinator", o.coordinator,
                      "a running coordinator (ignored with --local)")
          ->capture_default_str();
  txn->add_flag("--local", o.local,
                "start a coordinator and --participants kv sidecars on "
                "loopback from the binaries next to this one (temporary data "
                "dirs, fsync on), and stop them at the end")
      ->excludes(coordinator);
  txn->add_option("--participants", o.participants,
                  "branches per transaction, one per kv sidecar")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  txn->add_option("--pids", o.pids,
                  "NAME=PID of a running cluster's processes for CPU time "
                  "(default: found in /proc by binary and port)")
      ->delimiter(',');
  auto* clients = txn->add_option_function<int>(
                         "--clients", [&o](int n) { o.client_counts = {n}; },
                         "closed loop: concurrent clients, one transaction "
                         "outstanding each; open loop: clients the calls are "
                         "spread over")
                      ->check(CLI::Range(1, 100'000))
                      ->default_str("64");
  auto* sweep = txn->add_option("--sweep", o.client_counts,
                                "measure each of these client counts, e.g. "
                                "1,16,64,256,1024, and print a table")
                    ->delimiter(',')
                    ->check(CLI::Range(1, 100'000))
                    ->excludes(clients);
  txn->add_option("--rate", o.load.rate,
                  "open loop: transactions per second, sent whatever the "
                  "latency (0 = closed loop)")
      ->check(CLI::NonNegativeNumber)
      ->excludes(sweep)
      ->capture_default_str();
  txn->add_option("--max_outstanding", o.load.max_outstanding,
                  "open loop: transactions in flight before due ones are "
                  "skipped")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  txn->add_option("--channels", o.channels,
                  "gRPC channels (connections) the clients are spread over")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  txn->add_flag("--stream", o.stream,
                "send the transactions over TransactionService.ExecuteStream "
                "(the clients of a channel share one stream; results come "
                "back many per message) instead of one Execute call each");
  txn->add_option("--client_threads", o.load.threads,
                  "threads driving the clients' asynchronous calls")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  txn->add_option("--payload", o.payload_bytes,
                  "bytes of each kv put and of each message value")
      ->check(CLI::Range(0, static_cast<int>(
                                twopc::coordinator::Limits().max_kv_value_bytes)))
      ->capture_default_str();
  txn->add_option("--messages", o.messages, "messages per transaction")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  txn->add_option("--partitions", o.partitions,
                  "partitions of the topic the bench creates for messages")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  txn->add_option("--abort_ratio", o.abort_ratio,
                  "share of transactions made to abort (a failing kv expect "
                  "on the first branch)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  txn->add_flag("--idempotency_keys", o.idempotency_keys,
                "give every transaction an idempotency key");
  AddDurationOption(txn, "--duration", &o.duration,
                    "measured window per client count");
  AddDurationOption(txn, "--deadline", &o.deadline,
                    "a transaction not answered this long after it started "
                    "fails DEADLINE_EXCEEDED (with --stream, a stream on "
                    "which nothing came for this long is cancelled too)");
  AddDurationOption(txn, "--warmup", &o.warmup,
                    "load before each measured window, not counted");
  txn->add_flag("!--no_ceilings", o.ceilings,
                "skip the echo and RocksDB ceilings");
  AddDurationOption(txn, "--ceiling_duration", &o.ceiling_duration,
                    "measured window of each ceiling");
  txn->add_flag("--json", json, "print results as one JSON object");
  txn->add_flag("--progress", o.progress,
                "progress line on stderr each second even when stderr is not "
                "a terminal");
}

int RunCeilings(absl::Duration duration, const std::string& dir, bool json) {
  absl::StatusOr<double> rate =
      twopc::bench::MeasureSyncedWritesPerSecond(dir, duration);
  if (!rate.ok()) {
    std::fprintf(stderr, "twopc-bench: %s\n", rate.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  if (json) {
    std::printf("{\"rocksdb_synced_writes_per_second\": %.1f}\n", *rate);
  } else {
    std::printf("rocksdb synced writes, 1 thread: %.0f/s\n", *rate);
  }
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  // The same gRPC engine as the servers, also for the echo ceiling.
  twopc::TuneProcess();
  CLI::App app{"twopc-bench: load generator and benchmark for twopc."};
  absl::Duration ceiling_duration = absl::Seconds(2);
  std::string dir = (std::filesystem::temp_directory_path() /
                     absl::StrCat("twopc-bench-", getpid()))
                        .string();
  bool json = false;
  AddDurationOption(&app, "--duration", &ceiling_duration,
                    "how long `ceilings` measures");
  app.add_option("--scratch_dir", dir, "scratch directory for storage tests")
      ->capture_default_str();
  app.add_flag("--json", json, "print results as JSON");

  TxnBenchOptions txn_options;
  CLI::App* txn = app.add_subcommand(
      "txn",
      "transaction throughput, latency, decisions per sync and CPU per "
      "transaction, with the machine's gRPC echo and fsync ceilings");
  AddTxnOptions(txn, txn_options, json);
  app.add_subcommand(
      "ceilings", "synced RocksDB writes per second from one thread (default)");
  twopc::bench::QueueFlags queue;
  CLI::App* queue_cmd = app.add_subcommand(
      "queue",
      "queue read throughput and commit-to-subscriber latency against a "
      "running coordinator (e.g. `make run`)");
  queue_cmd->add_option("--coordinator", queue.coordinator, "coordinator")
      ->capture_default_str();
  queue_cmd
      ->add_option("--participant", queue.participant,
                   "a registered kv sidecar to run the publishing "
                   "transactions on")
      ->capture_default_str();
  queue_cmd->add_option("--messages", queue.messages, "messages to read")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  queue_cmd->add_option("--value_bytes", queue.value_bytes, "message size")
      ->capture_default_str();
  queue_cmd
      ->add_option("--latency_samples", queue.latency_samples,
                   "single-message commits timed to the subscriber")
      ->capture_default_str();
  std::string echo_listen = "127.0.0.1:0";
  CLI::App* echo_cmd = app.add_subcommand(
      "echo-server", "serve the gRPC echo ceiling until SIGINT/SIGTERM");
  echo_cmd->add_option("--listen", echo_listen, "host:port (0 = any port)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (echo_cmd->parsed()) {
    twopc::BlockShutdownSignals();
    return twopc::bench::RunEchoServer(echo_listen);
  }
  twopc::bench::InstallInterruptHandler();
  txn_options.json = json;
  if (txn->parsed()) return twopc::bench::RunTxnBench(txn_options);
  if (queue_cmd->parsed()) return twopc::bench::RunQueueBench(queue, json);
  return RunCeilings(ceiling_duration, dir, json);
}
