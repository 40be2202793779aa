// Starting a twopc gRPC server: listening port, health checking, reflection.
#ifndef TWOPC_COMMON_GRPC_SERVER_H_
#define TWOPC_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/completion_queue.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/status/statusor.h"
#include "common/health_service.h"

namespace twopc {

struct RunningServer {
  // Declared before the server, so it is destroyed after it.
  std::unique_ptr<HealthService> health;
  std::unique_ptr<grpc::Server> server;
  // "host:port" actually bound (the real port when `listen` asked for 0).
  std::string address;
};

// A twopc server being set up: on `listen` ("host:port", port 0 = any free
// port), serving the standard gRPC health service (reporting SERVING) and
// server reflection besides the services given to Start. `max_message_bytes`
// bounds received messages. A request to a synchronous unary or
// server-streaming method that does not parse is answered INVALID_ARGUMENT
// naming the method and the message type (common/unparseable_request.h).
//
// Thread-safety: none; one thread sets a server up.
class GrpcServerBuilder {
 public:
  GrpcServerBuilder(std::string listen, int max_message_bytes);

  GrpcServerBuilder(const GrpcServerBuilder&) = delete;
  GrpcServerBuilder& operator=(const GrpcServerBuilder&) = delete;

  // The completion queue for the services' asynchronous methods (which must
  // parse their own requests: raw methods). It exists from now on, so the
  // thread that will drain it may start now and use it for other
  // asynchronous work too (e.g. client calls), before the server starts.
  // With it, the server is hybrid: that thread polls every connection, and
  // the synchronous methods' calls are handed to threads of their own. Shut
  // the queue down only after the server. REQUIRES: before Start; once.
  std::unique_ptr<grpc::ServerCompletionQueue> AddAsyncQueue();

  // Registers `services` (not owned; they must outlive the server) and
  // starts serving. OK; UNAVAILABLE when the address cannot be bound.
  // REQUIRES: once.
  absl::StatusOr<RunningServer> Start(
      const std::vector<grpc::Service*>& services);

 private:
  const std::string listen_;
  grpc::ServerBuilder builder_;
  int port_ = 0;
};

// A server of synchronous `services`: GrpcServerBuilder(listen,
// max_message_bytes).Start(services).
absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services,
    int max_message_bytes);

}  // namespace twopc

#endif  // TWOPC_COMMON_GRPC_SERVER_H_
