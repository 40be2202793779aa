// twopc-coordinator: the transaction coordinator process.
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "common/failpoint.h"
#include "common/process_tuning.h"
#include "common/shutdown.h"
#include "coordinator/coordinator_server.h"

int main(int argc, char** argv) {
  twopc::BlockShutdownSignals();
  twopc::TuneProcess();
  twopc::coordinator::CoordinatorOptions options;
  CLI::App app{
      "twopc-coordinator: two-phase-commit transaction coordinator.\n"
      "Serves TransactionService (clients), QueueService (consumers),\n"
      "CoordinatorService (participant sidecars) and AdminService\n"
      "(operators) on one gRPC port.\n"
      "Stops cleanly on SIGINT or SIGTERM."};
  app.add_option("--listen", options.listen,
                 "host:port to serve on (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--data_dir", options.data_dir,
                 "RocksDB data directory (created when missing)")
      ->capture_default_str();
  twopc::coordinator::Limits& limits = options.manager.limits;
  twopc::coordinator::RetryPolicy& retry = options.manager.retry;
  double heartbeat_seconds =
      absl::ToDoubleSeconds(options.heartbeat_interval);
  double retention_hours = absl::ToDoubleHours(options.manager.retention);
  double default_timeout_seconds =
      absl::ToDoubleSeconds(limits.default_timeout);
  app.add_option("--heartbeat_interval", heartbeat_seconds,
                 "seconds between participant heartbeats")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--retention", retention_hours,
                 "hours finished transactions stay inspectable")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  double shutdown_grace_seconds = 5;
  app.add_option("--shutdown_grace", shutdown_grace_seconds,
                 "seconds a graceful stop (SIGINT, SIGTERM) waits: it starts "
                 "no new transaction and lets the started ones be decided, "
                 "then ends the calls still open")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--default_timeout", default_timeout_seconds,
                 "seconds a transaction may take to prepare, when the "
                 "client sets no timeout")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max_branches", limits.max_branches,
                 "branches per transaction")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max_messages", limits.max_messages,
                 "messages per transaction")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--max_transaction_bytes", limits.max_transaction_bytes,
                 "bytes per transaction request")
      ->capture_default_str();
  app.add_option("--max_inflight", limits.max_inflight,
                 "unfinished transactions before new ones get "
                 "RESOURCE_EXHAUSTED")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max_execute_streams", limits.max_execute_streams,
                 "ExecuteStream calls open at once; one more ends at once "
                 "RESOURCE_EXHAUSTED")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--auto_create_partitions", options.auto_create_partitions,
                 "partitions of a topic created on first publish; 0 = "
                 "publishing to an unknown topic is NOT_FOUND")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--park_after_attempts", retry.park_after_attempts,
                 "phase-2 attempts per branch before a transaction is parked")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  std::string failpoints;
  app.add_option("--failpoints", failpoints,
                 "testing only: failure points to arm, e.g. "
                 "'storage.before_sync=crash@3' (see common/failpoint.h; "
                 "also read from $TWOPC_FAILPOINTS)");
  CLI11_PARSE(app, argc, argv);
  if (absl::Status armed = twopc::failpoint::ArmAtStartup(failpoints);
      !armed.ok()) {
    std::fprintf(stderr, "twopc-coordinator: %s\n", armed.ToString().c_str());
    return 2;
  }
  options.heartbeat_interval = absl::Seconds(heartbeat_seconds);
  options.manager.retention = absl::Hours(retention_hours);
  limits.default_timeout = absl::Seconds(default_timeout_seconds);

  auto server = twopc::coordinator::CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "twopc-coordinator: %s\n",
                 server.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  std::printf("twopc-coordinator listening on %s (epoch %llu, data %s)\n",
              (*server)->address().c_str(),
              static_cast<unsigned long long>((*server)->epoch()),
              options.data_dir.c_str());
  std::fflush(stdout);

  const int signal = twopc::WaitForShutdownSignal();
  std::printf("twopc-coordinator: signal %d, shutting down\n", signal);
  (*server)->Shutdown(absl::Seconds(shutdown_grace_seconds));
  std::printf("twopc-coordinator: stopped\n");
  return EXIT_SUCCESS;
}
