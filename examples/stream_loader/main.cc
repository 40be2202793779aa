// twopc-example-loader: loads key/value pairs into kv sidecars, one
// transaction per pair, from several threads sharing one ExecuteStreamClient
// (client/execute_stream_client.h). It shows how to use the client library,
// and how to settle what the library reports as ambiguous: every
// transaction carries an idempotency key, and an ambiguous result is settled
// by asking TransactionService.Get for that key until it is decided.
//
//   twopc-example-loader --coordinator 127.0.0.1:7400 --participants p1,p2
//       --transactions 1000 --threads 4 --prefix load/run-1/
//
// Transaction i puts "<prefix><i>" = "value-<i>" on every participant, with
// idempotency key "<prefix><i>": running the same command again commits
// nothing new (each key names its first transaction). Prints a count per
// outcome and exits 0 when every transaction committed, 1 otherwise.
// Transactions the coordinator certainly did not start (unreachable, or
// shutting down) are sent again until --wait_seconds have passed.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/coordinator_channel.h"
#include "client/execute_stream_client.h"
#include "common/grpc_status.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace {

using twopc::client::CreateCoordinatorChannel;
using twopc::client::ExecuteStreamClient;

// How one transaction ended, as the loader reports it.
enum class Ending {
  kCommitted,
  kAborted,           // definite
  kNotStarted,        // definite failure: nothing happened
  kSettledCommitted,  // ambiguous, then found committed
  kSettledAborted,    // ambiguous, then found aborted or never started
  kUnsettled,         // ambiguous, and still undecided when we gave up
};

const char* NameOf(Ending ending) {
  switch (ending) {
    case Ending::kCommitted:
      return "committed";
    case Ending::kAborted:
      return "aborted";
    case Ending::kNotStarted:
      return "failed, not started";
    case Ending::kSettledCommitted:
      return "ambiguous, then found committed";
    case Ending::kSettledAborted:
      return "ambiguous, then found not committed";
    case Ending::kUnsettled:
      return "ambiguous, still undecided";
  }
  return "?";
}

bool IsDefinite(const grpc::Status& status) {
  const std::optional<twopc::v1::ErrorInfo> info =
      twopc::GetErrorInfo(twopc::FromGrpcStatus(status));
  return info.has_value()
             ? info->certainty() == twopc::v1::ErrorInfo::CERTAINTY_DEFINITE
             : !twopc::IsAmbiguous(
                   static_cast<absl::StatusCode>(status.error_code()));
}

// Asks Get for the transaction of idempotency key `key` until it is decided
// or `patience` passes. An unknown key never started: nothing to undo.
Ending Settle(twopc::v1::TransactionService::Stub* stub, const std::string& key,
              absl::Duration patience) {
  const absl::Time give_up = absl::Now() + patience;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    twopc::v1::GetRequest request;
    request.mutable_ref()->set_idempotency_key(key);
    twopc::v1::GetResponse response;
    const grpc::Status status = stub->Get(&context, request, &response);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return Ending::kSettledAborted;
    }
    if (status.ok()) {
      switch (response.transaction().outcome()) {
        case twopc::v1::OUTCOME_COMMITTED:
          return Ending::kSettledCommitted;
        case twopc::v1::OUTCOME_ABORTED:
          return Ending::kSettledAborted;
        default:
          break;  // not decided yet
      }
    }
    if (absl::Now() > give_up) return Ending::kUnsettled;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "loads key/value pairs into kv sidecars through ExecuteStreamClient, "
      "one transaction per pair"};
  std::string coordinator = "127.0.0.1:7400";
  std::string participants = "p1,p2";
  int transactions = 1000;
  int threads = 4;
  std::string prefix = "load/";
  int settle_seconds = 60;
  int wait_seconds = 30;
  app.add_option("--coordinator", coordinator, "the coordinator's address")
      ->capture_default_str();
  app.add_option("--participants", participants,
                 "kv sidecars, comma-separated: a put on each")
      ->capture_default_str();
  app.add_option("--transactions", transactions, "how many pairs")
      ->check(CLI::Range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--threads", threads, "threads sharing the client")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--prefix", prefix, "of every key and idempotency key")
      ->capture_default_str();
  app.add_option("--settle_seconds", settle_seconds,
                 "how long to ask after an ambiguous result")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  app.add_option("--wait_seconds", wait_seconds,
                 "how long a transaction may take, waiting for an unreachable "
                 "or restarting coordinator included (the client's deadline)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::vector<std::string> ids =
      absl::StrSplit(participants, ',', absl::SkipEmpty());
  // Keepalive pings: a coordinator gone silent ends the stream within
  // seconds, not after a request's whole deadline.
  auto channel =
      CreateCoordinatorChannel(coordinator, grpc::InsecureChannelCredentials());
  auto stub = twopc::v1::TransactionService::NewStub(channel);
  // What the coordinator certainly did not start (it was unreachable or
  // shutting down) is sent again until the deadline, so a coordinator
  // restart during the load costs time, not failures.
  ExecuteStreamClient::Options options;
  options.deadline = absl::Seconds(wait_seconds);
  options.resend_not_started = true;
  ExecuteStreamClient client(channel, options);

  absl::Mutex mu;
  std::map<Ending, int> counts;
  std::string first_error;
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < transactions; i = next++) {
        const std::string key = absl::StrCat(prefix, i);
        twopc::v1::ExecuteRequest request;
        request.set_idempotency_key(key);
        for (const std::string& id : ids) {
          twopc::v1::Branch* branch = request.add_branches();
          branch->set_participant_id(id);
          auto* put = branch->mutable_kv()->add_operations()->mutable_put();
          put->set_key(key);
          put->set_value(absl::StrCat("value-", i));
        }
        twopc::v1::ExecuteResponse response;
        const grpc::Status status = client.Execute(request, &response);
        Ending ending;
        if (status.ok()) {
          ending = Ending::kCommitted;
        } else if (!IsDefinite(status)) {
          ending = Settle(stub.get(), key, absl::Seconds(settle_seconds));
        } else if (status.error_code() == grpc::StatusCode::ABORTED) {
          ending = Ending::kAborted;
        } else {
          ending = Ending::kNotStarted;
        }
        absl::MutexLock lock(&mu);
        ++counts[ending];
        if (!status.ok() && first_error.empty()) {
          first_error = absl::StrCat(key, ": ", status.error_message());
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();

  int committed = 0;
  for (const auto& [ending, count] : counts) {
    std::printf("%-36s %d\n", NameOf(ending), count);
    if (ending == Ending::kCommitted || ending == Ending::kSettledCommitted) {
      committed += count;
    }
  }
  if (!first_error.empty()) {
    std::printf("first error: %s\n", first_error.c_str());
  }
  return committed == transactions ? 0 : 1;
}
