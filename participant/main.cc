// twopc-participant: the participant sidecar process.
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "common/failpoint.h"
#include "common/process_tuning.h"
#include "common/shutdown.h"
#include "participant/participant_server.h"

namespace {

absl::Duration Seconds(double seconds) {
  return absl::Milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

int main(int argc, char** argv) {
  twopc::BlockShutdownSignals();
  twopc::TuneProcess();
  twopc::participant::ParticipantOptions options;
  double in_doubt_after = 10, heartbeat = 2, query_backoff_max = 30;
  double retention = 60, retention_without_deadline = 600;
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
                 "coordinator address (registration, heartbeats, outcome "
                 "queries); 'none' = run without one")
      ->capture_default_str();
  app.add_option("--advertise", options.advertise,
                 "host:port the coordinator should dial (default: the "
                 "address bound by --listen)");
  app.add_option("--data_dir", options.data_dir,
                 "RocksDB data directory (default var/<id>)");
  app.add_option("--callback", options.callback,
                 "application callback service address; empty = built-in "
                 "key-value resource");
  app.add_option("--in_doubt_after", in_doubt_after,
                 "seconds a branch may stay PREPARED before the sidecar asks "
                 "the coordinator for its outcome")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--heartbeat", heartbeat,
                 "heartbeat period in seconds, unless the coordinator sets one")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--outcome_query_backoff_max", query_backoff_max,
                 "cap in seconds of the backoff between outcome queries of "
                 "one in-doubt branch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--finished_retention", retention,
                 "seconds a finished branch is remembered (for duplicate "
                 "requests) after the later of its end and its deadline")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--finished_retention_without_deadline",
                 retention_without_deadline,
                 "seconds a finished branch whose prepare had no deadline is "
                 "remembered after its end")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  std::string failpoints;
  app.add_option("--failpoints", failpoints,
                 "testing only: failure points to arm, e.g. "
                 "'storage.before_sync=crash@3' (see common/failpoint.h; "
                 "also read from $TWOPC_FAILPOINTS)");
  CLI11_PARSE(app, argc, argv);
  if (absl::Status armed = twopc::failpoint::ArmAtStartup(failpoints);
      !armed.ok()) {
    std::fprintf(stderr, "twopc-participant: %s\n", armed.ToString().c_str());
    return 2;
  }
  if (options.coordinator == "none") options.coordinator.clear();
  options.finished_retention = Seconds(retention);
  options.finished_retention_without_deadline =
      Seconds(retention_without_deadline);
  options.in_doubt_after = Seconds(in_doubt_after);
  options.heartbeat = Seconds(heartbeat);
  options.outcome_query_backoff_max = Seconds(query_backoff_max);

  auto server = twopc::participant::ParticipantServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "twopc-participant: %s\n",
                 server.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  const auto& opts = (*server)->options();
  std::printf(
      "twopc-participant %s listening on %s (resource %s, coordinator %s, "
      "data %s, %zu prepared branches recovered)\n",
      opts.id.c_str(), (*server)->address().c_str(),
      (*server)->manager()->resource_kind().c_str(),
      opts.coordinator.empty() ? "none" : opts.coordinator.c_str(),
      opts.data_dir.c_str(), (*server)->manager()->prepared_branches());
  std::fflush(stdout);

  const int signal = twopc::WaitForShutdownSignal();
  std::printf("twopc-participant %s: signal %d, shutting down\n",
              opts.id.c_str(), signal);
  std::fflush(stdout);
  (*server)->Shutdown(absl::Seconds(5));
  std::printf("twopc-participant %s: stopped\n", opts.id.c_str());
  return EXIT_SUCCESS;
}
