// ParticipantServer: the twopc-participant sidecar process minus flag parsing.
//
// Owns the sidecar's data directory (branch store and the built-in key-value
// resource) and its gRPC server.
//
// Thread-safety: Start and Shutdown are called from one thread; accessors are
// safe from any thread after Start returned OK.
#ifndef TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_
#define TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_server.h"
#include "storage/store.h"

namespace twopc::participant {

struct ParticipantOptions {
  // This sidecar's participant id, [A-Za-z0-9._-]{1,64}. Required.
  std::string id;
  // "host:port" to serve ParticipantService / KvService on; port 0 = any.
  std::string listen = "127.0.0.1:7401";
  // The coordinator's address, for registration and outcome queries.
  std::string coordinator = "127.0.0.1:7400";
  // RocksDB data directory; empty means var/<id>.
  std::string data_dir;
  // Application callback address; empty runs the built-in key-value resource.
  std::string callback;
  int max_message_bytes = 8 << 20;
};

class ParticipantServer {
 public:
  // Validates options, opens the data directory and starts serving.
  // OK; INVALID_ARGUMENT (bad id); FAILED_PRECONDITION / DATA_LOSS for an
  // unusable data directory; UNAVAILABLE when `listen` cannot be bound.
  static absl::StatusOr<std::unique_ptr<ParticipantServer>> Start(
      ParticipantOptions options);

  // Stops serving (waiting at most `grace` for calls in flight) and closes
  // the data directory.
  void Shutdown(absl::Duration grace);

  ~ParticipantServer();

  const std::string& address() const { return server_.address; }
  const ParticipantOptions& options() const { return options_; }

 private:
  explicit ParticipantServer(ParticipantOptions options)
      : options_(std::move(options)) {}

  ParticipantOptions options_;
  std::unique_ptr<storage::Store> store_;
  RunningServer server_;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_PARTICIPANT_SERVER_H_
