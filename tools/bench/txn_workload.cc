#include "tools/bench/txn_workload.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <grpcpp/alarm.h>

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

// How a transaction's answer counts.
CallOutcome OutcomeOf(const grpc::Status& status, bool meant_to_abort) {
  if (status.ok()) {
    return meant_to_abort ? CallOutcome::kCommittedUnexpectedly
                          : CallOutcome::kCommitted;
  }
  if (status.error_code() != grpc::StatusCode::ABORTED) {
    return CallOutcome::kFailed;
  }
  if (meant_to_abort) return CallOutcome::kAbortedAsIntended;
  return absl::StrContains(status.error_message(), kLockConflict)
             ? CallOutcome::kConflict
             : CallOutcome::kAbortedUnexpectedly;
}

std::string ErrorOf(const grpc::Status& status) {
  return status.ok() ? "OK: committed although meant to abort"
                     : StatusText(status);
}

class ExecuteCall final : public PendingCall {
 public:
  ExecuteCall(v1::TransactionService::Stub* stub,
              const v1::ExecuteRequest& request, bool meant_to_abort,
              absl::Duration deadline, grpc::CompletionQueue* cq,
              QueueEvent* done)
      : meant_to_abort_(meant_to_abort) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    reader_ = stub->AsyncExecute(&context_, request, cq);
    reader_->Finish(&response_, &status_, done);
  }

  CallOutcome Outcome() const override {
    return OutcomeOf(status_, meant_to_abort_);
  }
  std::string Error() const override { return ErrorOf(status_); }
  void Cancel() override { context_.TryCancel(); }

 private:
  const bool meant_to_abort_;
  grpc::ClientContext context_;
  v1::ExecuteResponse response_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::ExecuteResponse>> reader_;
};

}  // namespace

// One request on the ExecuteStreamClient of its thread and channel.
class TxnWorkload::StreamedExecute final : public PendingCall {
 public:
  StreamedExecute(client::ExecuteStreamClient* client, bool meant_to_abort,
                  grpc::CompletionQueue* cq, QueueEvent* done)
      : client_(client),
        meant_to_abort_(meant_to_abort),
        cq_(cq),
        done_(done) {}

  // Sends `request`; its end is reported through `done`, never from here.
  void Start(v1::ExecuteRequest request) {
    starting_ = true;
    client_->ExecuteAsync(std::move(request),
                          [this](grpc::Status status, v1::ExecuteResponse) {
                            Complete(std::move(status));
                          });
    starting_ = false;
  }

  CallOutcome Outcome() const override {
    return OutcomeOf(status_, meant_to_abort_);
  }
  std::string Error() const override { return ErrorOf(status_); }
  void Cancel() override { client_->Cancel(); }

 private:
  // Records the answer and reports the end (the call may be gone after).
  // An answer given within Start (a request the client refuses at once)
  // is reported through the queue instead.
  void Complete(grpc::Status status) {
    status_ = std::move(status);
    if (starting_) {
      refused_.Set(cq_, gpr_time_0(GPR_CLOCK_MONOTONIC), done_);
    } else {
      done_->OnEvent(true);
    }
  }

  client::ExecuteStreamClient* const client_;
  const bool meant_to_abort_;
  grpc::CompletionQueue* const cq_;
  QueueEvent* const done_;
  bool starting_ = false;
  grpc::Alarm refused_;
  grpc::Status status_;
};

TxnWorkload::TxnWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
                         TxnShape shape)
    : shape_(std::move(shape)),
      payload_(shape_.payload_bytes, 'x'),
      channels_(std::move(channels)) {
  for (const auto& channel : channels_) {
    stubs_.push_back(v1::TransactionService::NewStub(channel));
  }
}

TxnWorkload::~TxnWorkload() = default;

std::unique_ptr<PendingCall> TxnWorkload::Start(int client, uint64_t sequence,
                                                grpc::CompletionQueue* cq,
                                                QueueEvent* done) {
  const bool meant_to_abort = MeantToAbort(sequence);
  const size_t channel = client % stubs_.size();
  if (!shape_.stream) {
    return std::make_unique<ExecuteCall>(
        stubs_[channel].get(), Build(client, sequence, meant_to_abort),
        meant_to_abort, shape_.deadline, cq, done);
  }
  auto call = std::make_unique<StreamedExecute>(StreamOf(cq, channel),
                                                meant_to_abort, cq, done);
  call->Start(Build(client, sequence, meant_to_abort));
  return call;
}

client::ExecuteStreamClient* TxnWorkload::StreamOf(grpc::CompletionQueue* cq,
                                                   size_t index) {
  absl::MutexLock lock(&mu_);
  std::vector<std::unique_ptr<client::ExecuteStreamClient>>& streams =
      streams_[cq];
  if (streams.empty()) {
    client::ExecuteStreamClient::Options options;
    options.deadline = shape_.deadline;
    for (const auto& channel : channels_) {
      streams.push_back(
          std::make_unique<client::ExecuteStreamClient>(channel, cq, options));
    }
  }
  return streams[index].get();
}

bool TxnWorkload::Release(grpc::CompletionQueue* cq) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cq);
  if (it == streams_.end()) return true;
  bool over = true;
  for (auto& stream : it->second) {
    stream->Close();
    over = stream->Closed() && over;
  }
  // The queue goes away with its thread; a later thread may get its address.
  if (over) streams_.erase(it);
  return over;
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
