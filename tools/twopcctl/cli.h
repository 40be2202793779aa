// Shared plumbing of twopcctl's commands: global flags, exit codes, RPC
// calls that report failures in one line, and table/JSON output.
#ifndef TWOPC_TOOLS_TWOPCCTL_CLI_H_
#define TWOPC_TOOLS_TWOPCCTL_CLI_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "google/protobuf/duration.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace twopc::ctl {

// Exit codes (documented in README.md and in --help).
inline constexpr int kExitOk = 0;
inline constexpr int kExitServerError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotFound = 3;
inline constexpr int kExitAborted = 4;
// The coordinator refused the action in the transaction's current state
// (e.g. forcing a decided transaction the other way).
inline constexpr int kExitRefused = 5;

struct GlobalFlags {
  // The coordinator of `make run` unless --coordinator / TWOPC_COORDINATOR.
  std::string coordinator = "127.0.0.1:7400";
  std::string output = "table";
  double timeout_seconds = 5;
  bool json() const { return output == "json"; }
};

std::shared_ptr<grpc::Channel> Dial(const std::string& address);
void SetDeadline(const GlobalFlags& flags, grpc::ClientContext* context);

// Prints one line saying what went wrong and what to do; returns the exit
// code for `status`. `target` names the server that was called.
int ReportRpcError(const std::string& target, const grpc::Status& status);

// Calls the unary RPC `method` on the server at `address` (named `target`
// in errors) with the global deadline. Returns kExitOk, or prints one line
// about the failure and returns its exit code.
template <typename Stub, typename Request, typename Response>
int Call(const GlobalFlags& flags, const std::string& target,
         const std::string& address,
         grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                      Response*),
         const Request& request, Response* response) {
  Stub stub(Dial(address));
  grpc::ClientContext context;
  SetDeadline(flags, &context);
  grpc::Status status = (stub.*method)(&context, request, response);
  return status.ok() ? kExitOk : ReportRpcError(target, status);
}

// Call on the coordinator.
template <typename Stub, typename Request, typename Response>
int CallCoordinator(const GlobalFlags& flags,
                    grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Request&, Response*),
                    const Request& request, Response* response) {
  return Call(flags, "coordinator " + flags.coordinator, flags.coordinator,
              method, request, response);
}

void PrintJson(const google::protobuf::Message& message);
// Prints rows as aligned columns; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// `enum_name` without `prefix` ("TRANSACTION_STATE_COMMITTED" -> "COMMITTED").
std::string Short(const std::string& enum_name, const std::string& prefix);
// UTC, millisecond precision; "-" when unset.
std::string FormatTime(const google::protobuf::Timestamp& t);
std::string FormatDuration(const google::protobuf::Duration& d);

}  // namespace twopc::ctl

#endif  // TWOPC_TOOLS_TWOPCCTL_CLI_H_
