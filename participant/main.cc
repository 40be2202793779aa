// twopc-participant: the participant sidecar process.
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "common/shutdown.h"
#include "participant/participant_server.h"

int main(int argc, char** argv) {
  twopc::BlockShutdownSignals();
  twopc::participant::ParticipantOptions options;
  CLI::App app{
      "twopc-participant: participant sidecar. Runs next to a service, votes\n"
      "in two-phase commit for it, and applies committed branches to the\n"
      "built-in key-value resource or to the application's callback service.\n"
      "Stops cleanly on SIGINT or SIGTERM."};
  app.add_option("--id", options.id, "participant id, [A-Za-z0-9._-]{1,64}")
      ->required();
  app.add_option("--listen", options.listen,
                 "host:port to serve on (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--coordinator", options.coordinator,
                 "coordinator address (registration, outcome queries)")
      ->capture_default_str();
  app.add_option("--data_dir", options.data_dir,
                 "RocksDB data directory (default var/<id>)");
  app.add_option("--callback", options.callback,
                 "application callback service address; empty = built-in "
                 "key-value resource");
  CLI11_PARSE(app, argc, argv);

  auto server = twopc::participant::ParticipantServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "twopc-participant: %s\n",
                 server.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  const auto& opts = (*server)->options();
  std::printf("twopc-participant %s listening on %s (coordinator %s, data %s)\n",
              opts.id.c_str(), (*server)->address().c_str(),
              opts.coordinator.c_str(), opts.data_dir.c_str());
  std::fflush(stdout);

  const int signal = twopc::WaitForShutdownSignal();
  std::printf("twopc-participant %s: signal %d, shutting down\n",
              opts.id.c_str(), signal);
  (*server)->Shutdown(absl::Seconds(5));
  std::printf("twopc-participant %s: stopped\n", opts.id.c_str());
  return EXIT_SUCCESS;
}
