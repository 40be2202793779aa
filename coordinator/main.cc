// twopc-coordinator: the transaction coordinator process.
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "common/shutdown.h"
#include "coordinator/coordinator_server.h"

int main(int argc, char** argv) {
  twopc::BlockShutdownSignals();
  twopc::coordinator::CoordinatorOptions options;
  CLI::App app{
      "twopc-coordinator: two-phase-commit transaction coordinator.\n"
      "Serves TransactionService, QueueService, AdminService and\n"
      "CoordinatorService (for participant sidecars) on one gRPC port.\n"
      "Stops cleanly on SIGINT or SIGTERM."};
  app.add_option("--listen", options.listen,
                 "host:port to serve on (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--data_dir", options.data_dir,
                 "RocksDB data directory (created when missing)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

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
  (*server)->Shutdown(absl::Seconds(5));
  std::printf("twopc-coordinator: stopped\n");
  return EXIT_SUCCESS;
}
