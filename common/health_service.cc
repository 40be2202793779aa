#include "common/health_service.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace twopc {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

grpc::Status HealthService::Check(grpc::ServerContext*,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  if (!request->service().empty()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service; ask for the whole server with an "
                        "empty service name");
  }
  response->set_status(HealthCheckResponse::SERVING);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(
    grpc::ServerContext* context, const HealthCheckRequest* request,
    grpc::ServerWriter<HealthCheckResponse>* writer) {
  HealthCheckResponse response;
  response.set_status(request->service().empty()
                          ? HealthCheckResponse::SERVING
                          : HealthCheckResponse::SERVICE_UNKNOWN);
  if (!writer->Write(response)) return grpc::Status::CANCELLED;
  // The status never changes while the server runs: hold the call until the
  // client goes away or the server shuts down (which cancels it).
  while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(100));
  return grpc::Status::CANCELLED;
}

}  // namespace twopc
