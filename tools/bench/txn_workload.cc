#include "tools/bench/txn_workload.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <list>
#include <map>
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

// One request on an ExecuteStream; the stream completes it.
class TxnWorkload::StreamedExecute final : public PendingCall {
 public:
  StreamedExecute(ExecuteStream* stream, bool meant_to_abort,
                  QueueEvent* done)
      : stream_(stream),
        meant_to_abort_(meant_to_abort),
        done_(done),
        started_(absl::Now()) {}

  absl::Time started() const { return started_; }

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
  const absl::Time started_;
  grpc::Status status_;
};

// The ExecuteStream of one client thread on one channel, driven on that
// thread's queue. One Write at a time: the requests queued meanwhile go in
// the next message (at most kMaxRequestsPerMessage requests and about
// kMaxMessageBytes each). Opened by the first request. When a stream call
// ends, the requests written on it and still waiting fail, and the next
// request opens a new call; an ended call is freed once none of its
// operations is left on the queue. A watchdog alarm per call cancels it
// once the oldest request waiting on it is past the deadline.
class TxnWorkload::ExecuteStream {
 public:
  ExecuteStream(v1::TransactionService::Stub* stub, grpc::CompletionQueue* cq,
                absl::Duration deadline)
      : stub_(stub),
        cq_(cq),
        deadline_(deadline),
        watch_interval_(std::min(absl::Seconds(1), deadline / 4)) {}

  void Submit(v1::ExecuteRequest request, StreamedExecute* call) {
    if (current_ == nullptr) Open();
    const uint64_t tag = next_tag_++;
    const size_t bytes = request.ByteSizeLong();
    if (queued_.empty() ||
        queued_.back().message.items_size() >= kMaxRequestsPerMessage ||
        queued_.back().bytes + bytes > kMaxMessageBytes) {
      queued_.emplace_back();
    }
    Queued& message = queued_.back();
    auto* item = message.message.add_items();
    item->set_tag(tag);
    *item->mutable_request() = std::move(request);
    message.bytes += bytes;
    message.calls.emplace(tag, call);
    WriteQueued();
  }

  void Cancel() {
    for (auto& call : calls_) call->context.TryCancel();
  }

  // Half-closes the current call once nothing is queued or being written.
  // True once no call has anything left on the queue.
  bool Release() {
    closing_ = true;
    WriteQueued();
    return calls_.empty();
  }

 private:
  static constexpr int kMaxRequestsPerMessage = 1024;
  // Below the coordinator's 8 MiB message limit with room to spare.
  static constexpr size_t kMaxMessageBytes = 1 << 20;
  enum Event {
    kStarted,
    kWritten,
    kWritesDone,
    kRead,
    kFinished,
    kWatch,
    kEvents
  };

  struct Call;
  struct Tag final : QueueEvent {
    void OnEvent(bool ok) override { call->owner->Handle(call, event, ok); }
    Call* call = nullptr;
    Event event = kStarted;
  };
  // One stream call and everything of it on the queue.
  struct Call {
    ExecuteStream* owner = nullptr;
    grpc::ClientContext context;  // outlives `stream` (declared before it)
    std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecuteStreamRequest,
                                                  v1::ExecuteStreamResponse>>
        stream;
    Tag tags[kEvents];
    grpc::Alarm watchdog;
    int outstanding = 0;  // operations on the queue
    bool started = false;
    bool writing = false;
    bool half_closed = false;
    bool ended = false;      // Finish asked for
    bool timed_out = false;  // cancelled by the watchdog
    v1::ExecuteStreamResponse incoming;
    grpc::Status status;
    std::map<uint64_t, StreamedExecute*> waiting;  // written, tag -> call

    QueueEvent* TagOf(Event event) {
      ++outstanding;
      return &tags[event];
    }
  };
  // A message not written yet and the calls of its requests.
  struct Queued {
    v1::ExecuteStreamRequest message;
    size_t bytes = 0;
    std::map<uint64_t, StreamedExecute*> calls;
  };

  void Open() {
    calls_.push_back(std::make_unique<Call>());
    current_ = calls_.back().get();
    current_->owner = this;
    for (int e = 0; e < kEvents; ++e) {
      current_->tags[e].call = current_;
      current_->tags[e].event = static_cast<Event>(e);
    }
    current_->stream =
        stub_->PrepareAsyncExecuteStream(&current_->context, cq_);
    current_->stream->StartCall(current_->TagOf(kStarted));
    Watch(current_);
  }

  void Watch(Call* call) {
    call->watchdog.Set(cq_, absl::ToChronoTime(absl::Now() + watch_interval_),
                       call->TagOf(kWatch));
  }

  // The watchdog's tick: cancels the call once its oldest waiting request
  // (the smallest tag: written first) is past the deadline.
  void OnWatch(Call* call) {
    if (call->ended) return;
    if (!call->waiting.empty() &&
        absl::Now() - call->waiting.begin()->second->started() > deadline_) {
      call->timed_out = true;
      call->context.TryCancel();  // the read fails, which ends the call
      return;
    }
    Watch(call);
  }

  void WriteQueued() {
    Call* call = current_;
    if (call == nullptr || !call->started || call->writing ||
        call->half_closed || call->ended) {
      return;
    }
    if (!queued_.empty()) {
      call->writing = true;
      call->stream->Write(queued_.front().message, call->TagOf(kWritten));
      call->waiting.merge(queued_.front().calls);
      queued_.pop_front();  // Write has serialised it
    } else if (closing_) {
      call->half_closed = true;
      call->stream->WritesDone(call->TagOf(kWritesDone));
    }
  }

  // Ends `call` (once): asks for its status, which fails what waits on it.
  void End(Call* call) {
    if (call->ended) return;
    call->ended = true;
    call->watchdog.Cancel();
    if (current_ == call) current_ = nullptr;
    call->stream->Finish(&call->status, call->TagOf(kFinished));
  }

  void Handle(Call* call, Event event, bool ok) {
    --call->outstanding;
    switch (event) {
      case kStarted:
        if (!ok) {
          End(call);
          break;
        }
        call->started = true;
        call->stream->Read(&call->incoming, call->TagOf(kRead));
        WriteQueued();
        break;
      case kWritten:
        call->writing = false;
        if (ok) WriteQueued();  // else the read ends the call
        break;
      case kWritesDone:
        break;
      case kRead:
        if (!ok) {
          End(call);
          break;
        }
        for (const auto& result : call->incoming.results()) {
          auto it = call->waiting.find(result.tag());
          if (it == call->waiting.end()) continue;
          StreamedExecute* done = it->second;
          call->waiting.erase(it);
          done->Complete(grpc::Status(
              static_cast<grpc::StatusCode>(result.status().code()),
              result.status().message()));
        }
        call->stream->Read(&call->incoming, call->TagOf(kRead));
        break;
      case kFinished:
        OnFinished(call);
        break;
      case kWatch:
        if (ok) OnWatch(call);  // else cancelled: the call ended
        break;
      case kEvents:
        break;
    }
    if (call->ended && call->outstanding == 0) {
      calls_.remove_if([call](const std::unique_ptr<Call>& c) {
        return c.get() == call;
      });
    }
  }

  // The call is over: what was written on it and still waits fails (a
  // request may submit the next one, which opens a new call).
  void OnFinished(Call* call) {
    std::map<uint64_t, StreamedExecute*> failed;
    failed.swap(call->waiting);
    grpc::Status status = call->status;
    if (call->timed_out) {
      status = grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("no answer within ", absl::FormatDuration(deadline_),
                       " on ExecuteStream; the stream was cancelled"));
    } else if (status.ok()) {
      status = grpc::Status(grpc::StatusCode::UNKNOWN,
                            "ExecuteStream ended without a result");
    }
    for (auto& [tag, done] : failed) done->Complete(status);
    if (current_ == nullptr && !queued_.empty()) Open();  // queued meanwhile
  }

  v1::TransactionService::Stub* const stub_;
  grpc::CompletionQueue* const cq_;
  const absl::Duration deadline_;
  const absl::Duration watch_interval_;
  std::list<std::unique_ptr<Call>> calls_;  // the current one and ended ones
  Call* current_ = nullptr;                 // accepts writes; may be null
  bool closing_ = false;                    // Release asked for the end
  std::deque<Queued> queued_;
  uint64_t next_tag_ = 0;
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
        meant_to_abort, shape_.deadline, cq, done);
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
      streams.push_back(
          std::make_unique<ExecuteStream>(stub.get(), cq, shape_.deadline));
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
