// twopcctl: the operator CLI over AdminService and QueueService.
//
// Exit codes (documented in README.md):
//   0 success, 1 server error or coordinator unreachable, 2 usage error,
//   3 not found.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitServerError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotFound = 3;

struct GlobalFlags {
  std::string coordinator = "127.0.0.1:7400";
  std::string output = "table";
  double timeout_seconds = 5;
};

std::shared_ptr<grpc::Channel> Dial(const GlobalFlags& flags) {
  return grpc::CreateChannel(flags.coordinator,
                             grpc::InsecureChannelCredentials());
}

void SetDeadline(const GlobalFlags& flags, grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(flags.timeout_seconds)));
}

// Prints one line saying what went wrong and what to do; returns the exit
// code for `status`.
int ReportRpcError(const GlobalFlags& flags, const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::fprintf(stderr,
                   "twopcctl: coordinator %s unreachable (%s); is it running? "
                   "set --coordinator or TWOPC_COORDINATOR\n",
                   flags.coordinator.c_str(), status.error_message().c_str());
      return kExitServerError;
    case grpc::StatusCode::NOT_FOUND:
      std::fprintf(stderr, "twopcctl: %s\n", status.error_message().c_str());
      return kExitNotFound;
    default:
      std::fprintf(stderr, "twopcctl: %s\n", status.error_message().c_str());
      return kExitServerError;
  }
}

int RunHealth(const GlobalFlags& flags) {
  auto stub = grpc::health::v1::Health::NewStub(Dial(flags));
  grpc::ClientContext context;
  SetDeadline(flags, &context);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return ReportRpcError(flags, status);
  const std::string serving =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
          response.status());
  if (flags.output == "json") {
    std::printf("{\"coordinator\": \"%s\", \"status\": \"%s\"}\n",
                flags.coordinator.c_str(), serving.c_str());
  } else {
    std::printf("%-16s %s\n%-16s %s\n", "COORDINATOR", "STATUS",
                flags.coordinator.c_str(), serving.c_str());
  }
  return response.status() ==
                 grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitServerError;
}

}  // namespace

int main(int argc, char** argv) {
  GlobalFlags flags;
  CLI::App app{"twopcctl: inspect and repair twopc transactions, participants "
               "and queues.\nExit codes: 0 ok, 1 server error or unreachable, "
               "2 usage error, 3 not found."};
  app.require_subcommand(1);
  app.add_option("--coordinator", flags.coordinator, "coordinator host:port")
      ->envname("TWOPC_COORDINATOR")
      ->capture_default_str();
  app.add_option("-o,--output", flags.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout_seconds, "RPC timeout in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  int exit_code = kExitOk;
  app.add_subcommand("health", "check that the coordinator is serving")
      ->callback([&] { exit_code = RunHealth(flags); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // prints help, exit 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}
