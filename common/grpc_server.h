// Starting a twopc gRPC server: listening port, health checking, reflection.
#ifndef TWOPC_COMMON_GRPC_SERVER_H_
#define TWOPC_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/completion_queue.h>
#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "common/health_service.h"

namespace twopc {

struct RunningServer {
  // Declared before the server, so they are destroyed after it.
  std::unique_ptr<HealthService> health;
  // The queue for the services' asynchronous methods, when asked for.
  std::unique_ptr<grpc::ServerCompletionQueue> async_queue;
  std::unique_ptr<grpc::Server> server;
  // "host:port" actually bound (the real port when `listen` asked for 0).
  std::string address;
};

// Builds and starts a server on `listen` ("host:port", port 0 = any free
// port) serving `services` (not owned; must outlive the server) plus the
// standard gRPC health service (reporting SERVING) and server reflection.
// `max_message_bytes` bounds received messages. A request to a synchronous
// unary or server-streaming method that does not parse is answered
// INVALID_ARGUMENT naming the method and the message type
// (common/unparseable_request.h).
// With `async_queue`, the server gets a completion queue for the services'
// asynchronous methods (RunningServer::async_queue); those methods must
// parse their own requests (raw methods).
// OK; UNAVAILABLE when the address cannot be bound.
absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services,
    int max_message_bytes, bool async_queue = false);

}  // namespace twopc

#endif  // TWOPC_COMMON_GRPC_SERVER_H_
