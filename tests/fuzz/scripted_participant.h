// ScriptedParticipant: a ParticipantService on port 0 that answers like a
// sidecar that agrees to everything (hello with the id the coordinator
// expects, so one server can stand for many registered participants; YES to
// prepares, ACK_COMMITTED to commits and one-phase prepares, ACK_ABORTED to
// aborts), and lets a test tamper with every ParticipantBatch before it is
// written: a hostile participant.
//
// Thread-safety: set_tamper may be called from any thread; the tamper
// function runs on gRPC threads, one call at a time.
#ifndef TWOPC_TESTS_FUZZ_SCRIPTED_PARTICIPANT_H_
#define TWOPC_TESTS_FUZZ_SCRIPTED_PARTICIPANT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_server.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::fuzz {

class ScriptedParticipant final : public v1::ParticipantService::Service {
 public:
  // Edits a batch about to be written (replies, hello or anything else).
  using Tamper = std::function<void(v1::ParticipantBatch* batch)>;

  static absl::StatusOr<std::unique_ptr<ScriptedParticipant>> Start();
  ~ScriptedParticipant() override;

  const std::string& address() const { return server_.address; }
  void set_tamper(Tamper tamper) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status Link(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
          stream) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ScriptedParticipant() = default;

  RunningServer server_;
  absl::Mutex mu_;
  Tamper tamper_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::fuzz

#endif  // TWOPC_TESTS_FUZZ_SCRIPTED_PARTICIPANT_H_
