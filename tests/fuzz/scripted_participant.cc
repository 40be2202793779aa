#include "tests/fuzz/scripted_participant.h"

#include <utility>

#include "common/status_macros.h"

namespace twopc::fuzz {
namespace {

v1::BranchReply Agree(const v1::BranchRequest& request) {
  v1::BranchReply reply;
  reply.set_request_id(request.request_id());
  reply.set_transaction_id(request.transaction_id());
  if (request.has_prepare() && !request.prepare().one_phase()) {
    reply.set_vote(v1::VOTE_YES);
  } else if (request.has_abort()) {
    reply.set_ack(v1::BranchReply::ACK_ABORTED);
  } else {
    reply.set_ack(v1::BranchReply::ACK_COMMITTED);
  }
  return reply;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ScriptedParticipant>>
ScriptedParticipant::Start() {
  std::unique_ptr<ScriptedParticipant> participant(new ScriptedParticipant());
  ASSIGN_OR_RETURN(
      participant->server_,
      StartGrpcServer("127.0.0.1:0", {participant.get()}, 8 << 20));
  return participant;
}

ScriptedParticipant::~ScriptedParticipant() {
  server_.server->Shutdown(absl::ToChronoTime(absl::Now()));
  server_.server->Wait();
}

void ScriptedParticipant::set_tamper(Tamper tamper) {
  absl::MutexLock lock(&mu_);
  tamper_ = std::move(tamper);
}

grpc::Status ScriptedParticipant::Link(
    grpc::ServerContext*,
    grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
        stream) {
  v1::CoordinatorBatch in;
  bool first = true;
  while (stream->Read(&in)) {
    v1::ParticipantBatch out;
    if (first) {
      out.mutable_hello()->set_participant_id(in.expected_participant_id());
      out.mutable_hello()->set_highest_epoch(in.coordinator_epoch());
      out.mutable_hello()->set_resource("kv");
      first = false;
    }
    for (const v1::BranchRequest& request : in.requests()) {
      *out.add_replies() = Agree(request);
    }
    {
      absl::MutexLock lock(&mu_);
      if (tamper_) tamper_(&out);
    }
    if (!stream->Write(out)) break;
  }
  return grpc::Status::OK;
}

}  // namespace twopc::fuzz
