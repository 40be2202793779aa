#include "tools/bench/txn_workload.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace twopc::bench {
namespace {

constexpr uint64_t kKeysPerClient = 1 << 16;
// A value the benchmark never writes: an `expect` of it votes NO.
constexpr char kNeverWritten[] = "twopc-bench: never written";
// Part of the NO-vote reason of a kv sidecar whose key is locked.
constexpr char kLockConflict[] = "is locked by";
// Generous: a call only takes this long when the system is stuck.
constexpr absl::Duration kCallDeadline = absl::Seconds(60);

class ExecuteCall final : public PendingCall {
 public:
  ExecuteCall(v1::TransactionService::Stub* stub,
              const v1::ExecuteRequest& request, bool meant_to_abort,
              grpc::CompletionQueue* cq, void* tag)
      : meant_to_abort_(meant_to_abort) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
    reader_ = stub->AsyncExecute(&context_, request, cq);
    reader_->Finish(&response_, &status_, tag);
  }

  CallOutcome Outcome() const override {
    if (status_.ok()) {
      return meant_to_abort_ ? CallOutcome::kCommittedUnexpectedly
                             : CallOutcome::kCommitted;
    }
    if (status_.error_code() != grpc::StatusCode::ABORTED) {
      return CallOutcome::kFailed;
    }
    if (meant_to_abort_) return CallOutcome::kAbortedAsIntended;
    return absl::StrContains(status_.error_message(), kLockConflict)
               ? CallOutcome::kConflict
               : CallOutcome::kAbortedUnexpectedly;
  }

  std::string Error() const override {
    return status_.ok() ? "OK: committed although meant to abort"
                        : StatusText(status_);
  }

  void Cancel() override { context_.TryCancel(); }

 private:
  const bool meant_to_abort_;
  grpc::ClientContext context_;
  v1::ExecuteResponse response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::ExecuteResponse>> reader_;
};

}  // namespace

TxnWorkload::TxnWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
                         TxnShape shape)
    : shape_(std::move(shape)), payload_(shape_.payload_bytes, 'x') {
  for (const auto& channel : channels) {
    stubs_.push_back(v1::TransactionService::NewStub(channel));
  }
}

std::unique_ptr<PendingCall> TxnWorkload::Start(int client, uint64_t sequence,
                                                grpc::CompletionQueue* cq,
                                                void* tag) {
  const bool meant_to_abort = MeantToAbort(sequence);
  return std::make_unique<ExecuteCall>(stubs_[client % stubs_.size()].get(),
                                       Build(client, sequence, meant_to_abort),
                                       meant_to_abort, cq, tag);
}

size_t TxnWorkload::RequestBytes() const {
  return Build(0, 0, /*meant_to_abort=*/false).ByteSizeLong();
}

// Call s aborts when floor((s + 1) * ratio) > floor(s * ratio): exactly
// `ratio` of every client's calls, evenly spread.
bool TxnWorkload::MeantToAbort(uint64_t sequence) const {
  return std::floor((sequence + 1) * shape_.abort_ratio) >
         std::floor(sequence * shape_.abort_ratio);
}

v1::ExecuteRequest TxnWorkload::Build(int client, uint64_t sequence,
                                      bool meant_to_abort) const {
  v1::ExecuteRequest request;
  if (shape_.idempotency_keys) {
    request.set_idempotency_key(
        absl::StrCat("bench-", shape_.run_id, "-", client, "-", sequence));
  }
  const std::string key = absl::StrCat("bench/", shape_.run_id, "/", client,
                                       "/", sequence % kKeysPerClient);
  for (const std::string& participant : shape_.participant_ids) {
    v1::Branch* branch = request.add_branches();
    branch->set_participant_id(participant);
    v1::KvBranch* kv = branch->mutable_kv();
    auto* put = kv->add_operations()->mutable_put();
    put->set_key(key);
    put->set_value(payload_);
    if (meant_to_abort && request.branches_size() == 1) {
      auto* expect = kv->add_operations()->mutable_expect();
      expect->set_key(key);
      expect->set_value(kNeverWritten);
    }
  }
  const std::string message_key = absl::StrCat(client);
  for (int i = 0; i < shape_.messages; ++i) {
    v1::Message* message = request.add_messages();
    message->set_topic(shape_.topic);
    message->set_key(message_key);
    message->set_value(payload_);
  }
  return request;
}

}  // namespace twopc::bench
