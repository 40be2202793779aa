// HealthService: the standard gRPC health service (grpc.health.v1.Health),
// synchronous. Like gRPC's default one, it knows only the whole server
// (service ""), which is SERVING while the server runs: Check answers
// NOT_FOUND for any other name, and Watch reports it SERVICE_UNKNOWN.
//
// gRPC's default health service is not used: it runs on the callback API,
// whose completion queue brings polling threads of its own that took a
// share of the server's connections and handed every call read there to
// another thread.
//
// Watch sends the status once and then holds its call open until the client
// cancels or the server shuts down (it checks every 100 ms), as the protocol
// expects; each open Watch holds one server thread.
//
// Thread-safe.
#ifndef TWOPC_COMMON_HEALTH_SERVICE_H_
#define TWOPC_COMMON_HEALTH_SERVICE_H_

#include "grpc/health/v1/health.grpc.pb.h"

namespace twopc {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>*
                         writer) override;
};

}  // namespace twopc

#endif  // TWOPC_COMMON_HEALTH_SERVICE_H_
