// twopc-example-ledger: an example application for a twopc-participant
// sidecar in callback mode (twopc-participant --callback=ADDR). See ledger.h
// for the payload format and semantics.
//
//   twopc-example-ledger --listen 127.0.0.1:7501 --journal var/ledger.journal
//   twopc-participant --id ledger --callback 127.0.0.1:7501 ...
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "common/grpc_server.h"
#include "common/shutdown.h"
#include "examples/callback_app/ledger.h"

int main(int argc, char** argv) {
  twopc::BlockShutdownSignals();
  std::string listen = "127.0.0.1:7501";
  std::string journal = "var/ledger.journal";
  CLI::App app{
      "twopc-example-ledger: example ApplicationCallbackService, a ledger of\n"
      "account balances. Branch payload: lines 'ACCOUNT DELTA'; balances\n"
      "never go below zero. Stops cleanly on SIGINT or SIGTERM."};
  app.add_option("--listen", listen, "host:port to serve on (0 = any port)")
      ->capture_default_str();
  app.add_option("--journal", journal, "journal file (created when missing)")
      ->capture_default_str();
  double prepare_reply_delay_ms = 0;
  app.add_option("--prepare_reply_delay_ms", prepare_reply_delay_ms,
                 "answer every Prepare this much later (failure injection "
                 "for tests)");
  CLI11_PARSE(app, argc, argv);

  auto ledger = twopc::examples::Ledger::Open(journal);
  if (!ledger.ok()) {
    std::fprintf(stderr, "twopc-example-ledger: %s\n",
                 ledger.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  twopc::examples::LedgerService service(
      ledger->get(), absl::Milliseconds(prepare_reply_delay_ms));
  auto server = twopc::StartGrpcServer(listen, {&service}, 4 << 20);
  if (!server.ok()) {
    std::fprintf(stderr, "twopc-example-ledger: %s\n",
                 server.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  std::printf("twopc-example-ledger listening on %s (balances: %s)\n",
              server->address.c_str(), (*ledger)->Balances().c_str());
  std::fflush(stdout);
  twopc::WaitForShutdownSignal();
  server->server->Shutdown(
      absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  server->server->Wait();
  std::printf("twopc-example-ledger: stopped\n");
  return EXIT_SUCCESS;
}
