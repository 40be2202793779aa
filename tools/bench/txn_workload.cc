#include "tools/bench/txn_workload.h"

#include <cmath>
#include <deque>
#include <map>
#include <utility>

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
              grpc::CompletionQueue* cq, QueueEvent* done)
      : meant_to_abort_(meant_to_abort) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
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

// One request on an ExecuteStream; the stream completes it.
class TxnWorkload::StreamedExecute final : public PendingCall {
 public:
  StreamedExecute(ExecuteStream* stream, bool meant_to_abort,
                  QueueEvent* done)
      : stream_(stream), meant_to_abort_(meant_to_abort), done_(done) {}

  CallOutcome Outcome() const override {
    return OutcomeOf(status_, meant_to_abort_);
  }
  std::string Error() const override { return ErrorOf(status_); }
  void Cancel() override;

  // Records the answer and reports the end (the call may be gone after).
  void Complete(grpc::Status status) {
    status_ = std::move(status);
    done_->OnEvent(true);
  }

 private:
  ExecuteStream* const stream_;
  const bool meant_to_abort_;
  QueueEvent* const done_;
  grpc::Status status_;
};

// One ExecuteStream of one client thread on one channel, driven on that
// thread's queue. One Write at a time: the requests queued meanwhile go in
// the next message (at most kMaxRequestsPerMessage each). Opened by the
// first request; when it ends, the requests waiting fail and the next
// request opens a new one.
class TxnWorkload::ExecuteStream {
 public:
  ExecuteStream(v1::TransactionService::Stub* stub, grpc::CompletionQueue* cq)
      : stub_(stub), cq_(cq) {}

  void Submit(v1::ExecuteRequest request, StreamedExecute* call) {
    if (!open_) Open();
    const uint64_t tag = next_tag_++;
    waiting_.emplace(tag, call);
    if (queued_.empty() ||
        queued_.back().items_size() >= kMaxRequestsPerMessage) {
      queued_.emplace_back();
    }
    auto* item = queued_.back().add_items();
    item->set_tag(tag);
    *item->mutable_request() = std::move(request);
    WriteQueued();
  }

  void Cancel() {
    if (open_) context_->TryCancel();
  }

  // Half-closes once nothing is queued or being written. True once the
  // stream is over (or was never opened).
  bool Release() {
    if (!open_) return true;
    closing_ = true;
    WriteQueued();
    return false;
  }

 private:
  static constexpr int kMaxRequestsPerMessage = 1024;
  enum Event { kStarted, kWritten, kWritesDone, kRead, kFinished, kEvents };
  struct Tag final : QueueEvent {
    void OnEvent(bool ok) override { stream->Handle(event, ok); }
    ExecuteStream* stream = nullptr;
    Event event = kStarted;
  };

  QueueEvent* TagOf(Event event) {
    Tag& tag = tags_[event];
    tag.stream = this;
    tag.event = event;
    return &tag;
  }

  void Open() {
    open_ = true;
    started_ = writing_ = half_closed_ = false;
    context_ = std::make_unique<grpc::ClientContext>();
    stream_ = stub_->PrepareAsyncExecuteStream(context_.get(), cq_);
    stream_->StartCall(TagOf(kStarted));
  }

  void WriteQueued() {
    if (!started_ || writing_ || half_closed_) return;
    if (!queued_.empty()) {
      writing_ = true;
      stream_->Write(queued_.front(), TagOf(kWritten));
      queued_.pop_front();  // Write has serialised it
    } else if (closing_) {
      half_closed_ = true;
      stream_->WritesDone(TagOf(kWritesDone));
    }
  }

  void Handle(Event event, bool ok) {
    switch (event) {
      case kStarted:
        if (!ok) {
          stream_->Finish(&status_, TagOf(kFinished));
          return;
        }
        started_ = true;
        stream_->Read(&incoming_, TagOf(kRead));
        WriteQueued();
        return;
      case kWritten:
        writing_ = false;
        if (ok) WriteQueued();  // else the read ends the stream
        return;
      case kWritesDone:
        return;
      case kRead:
        if (!ok) {
          stream_->Finish(&status_, TagOf(kFinished));
          return;
        }
        for (const auto& result : incoming_.results()) {
          auto it = waiting_.find(result.tag());
          if (it == waiting_.end()) continue;
          StreamedExecute* call = it->second;
          waiting_.erase(it);
          call->Complete(grpc::Status(
              static_cast<grpc::StatusCode>(result.status().code()),
              result.status().message()));
        }
        stream_->Read(&incoming_, TagOf(kRead));
        return;
      case kFinished:
        OnFinished();
        return;
      case kEvents:
        return;
    }
  }

  // The stream is over: what still waits fails, and a later request opens
  // a new stream.
  void OnFinished() {
    open_ = false;
    std::map<uint64_t, StreamedExecute*> failed;
    failed.swap(waiting_);
    queued_.clear();
    const grpc::Status status =
        status_.ok() ? grpc::Status(grpc::StatusCode::UNKNOWN,
                                    "ExecuteStream ended without a result")
                     : status_;
    for (auto& [tag, call] : failed) call->Complete(status);
  }

  v1::TransactionService::Stub* const stub_;
  grpc::CompletionQueue* const cq_;
  Tag tags_[kEvents];
  bool open_ = false;
  bool started_ = false;
  bool writing_ = false;
  bool closing_ = false;      // Release asked for the end
  bool half_closed_ = false;  // WritesDone was sent
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecuteStreamRequest,
                                                v1::ExecuteStreamResponse>>
      stream_;
  std::deque<v1::ExecuteStreamRequest> queued_;
  v1::ExecuteStreamResponse incoming_;
  grpc::Status status_;
  uint64_t next_tag_ = 0;
  std::map<uint64_t, StreamedExecute*> waiting_;  // tag -> call
};

void TxnWorkload::StreamedExecute::Cancel() { stream_->Cancel(); }

TxnWorkload::TxnWorkload(std::vector<std::shared_ptr<grpc::Channel>> channels,
                         TxnShape shape)
    : shape_(std::move(shape)), payload_(shape_.payload_bytes, 'x') {
  for (const auto& channel : channels) {
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
        meant_to_abort, cq, done);
  }
  ExecuteStream* stream = StreamOf(cq, channel);
  auto call = std::make_unique<StreamedExecute>(stream, meant_to_abort, done);
  stream->Submit(Build(client, sequence, meant_to_abort), call.get());
  return call;
}

TxnWorkload::ExecuteStream* TxnWorkload::StreamOf(grpc::CompletionQueue* cq,
                                                  size_t index) {
  absl::MutexLock lock(&mu_);
  std::vector<std::unique_ptr<ExecuteStream>>& streams = streams_[cq];
  if (streams.empty()) {
    for (const auto& stub : stubs_) {
      streams.push_back(std::make_unique<ExecuteStream>(stub.get(), cq));
    }
  }
  return streams[index].get();
}

bool TxnWorkload::Release(grpc::CompletionQueue* cq) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(cq);
  if (it == streams_.end()) return true;
  bool over = true;
  for (auto& stream : it->second) over = stream->Release() && over;
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
