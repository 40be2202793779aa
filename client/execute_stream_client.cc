#include "client/execute_stream_client.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace twopc::client {
namespace {

grpc::Status WithInfo(grpc::StatusCode code, std::string message,
                      v1::ErrorInfo::Certainty certainty,
                      const std::string& reason) {
  v1::ErrorInfo info;
  info.set_certainty(certainty);
  info.set_reason(reason);
  return ToGrpcStatus(WithErrorInfo(
      absl::Status(static_cast<absl::StatusCode>(code), message),
      std::move(info)));
}

// A request that was never written: definite, send it again.
grpc::Status NotSent(const grpc::Status& cause) {
  const grpc::StatusCode code = cause.ok() ? grpc::StatusCode::UNAVAILABLE
                                           : cause.error_code();
  return WithInfo(code,
                  absl::StrCat("not sent: ", cause.error_message()),
                  v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT");
}

// A written request whose stream ended with `end` before its result.
grpc::Status EndedBeforeResult(const grpc::Status& end) {
  const absl::Status status = FromGrpcStatus(end);
  const std::optional<v1::ErrorInfo> info = GetErrorInfo(status);
  const bool definite =
      info.has_value()
          ? info->certainty() == v1::ErrorInfo::CERTAINTY_DEFINITE
          : !status.ok() && !IsAmbiguous(status.code());
  if (definite) return end;  // the coordinator says what became of it
  return WithInfo(
      end.ok() ? grpc::StatusCode::UNKNOWN : end.error_code(),
      absl::StrCat("ExecuteStream ended before this request's result (",
                   end.ok() ? "OK without a result" : end.error_message(),
                   "): its outcome is unknown; look it up with "
                   "TransactionService.Get by id or idempotency key"),
      v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED");
}

}  // namespace

// One ExecuteStream call and everything of it on the queue.
struct ExecuteStreamClient::Call {
  explicit Call(ExecuteStreamClient* owner) : client(owner) {}

  void OnEvent(Event event, bool ok) { client->Handle(this, event, ok); }
  CompletionQueueLoop::Handler* Tag(Event event) {
    ++outstanding;
    return tags.Tag(event);
  }

  ExecuteStreamClient* const client;
  CompletionQueueLoop::EventTags<Call, Event, kEventCount> tags{
      this, &Call::OnEvent};
  grpc::ClientContext context;  // outlives `stream` (declared before it)
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecuteStreamRequest,
                                                v1::ExecuteStreamResponse>>
      stream;
  int outstanding = 0;  // operations on the queue
  bool started = false;
  bool writing = false;
  bool half_closed = false;
  bool ended = false;      // Finish asked for
  bool heard = false;      // a message came from the coordinator
  bool timed_out = false;  // cancelled by the watchdog as dead
  // Requests written on this call without a result (those that failed on
  // their deadline too), and when it last showed life.
  int64_t unanswered = 0;
  absl::Time last_heard;
  v1::ExecuteStreamResponse incoming;
  grpc::Status status;
};

ExecuteStreamClient::ExecuteStreamClient(
    std::shared_ptr<grpc::ChannelInterface> channel, Options options)
    : options_(options),
      stub_(v1::TransactionService::NewStub(channel)),
      own_loop_(std::make_unique<CompletionQueueLoop>()),
      queue_(own_loop_->queue()) {}

ExecuteStreamClient::ExecuteStreamClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    grpc::CompletionQueue* queue, Options options)
    : options_(options),
      stub_(v1::TransactionService::NewStub(channel)),
      queue_(queue) {}

ExecuteStreamClient::~ExecuteStreamClient() {
  Cancel();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ExecuteStreamClient* client)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(client->mu_) {
               return client->ClosedLocked();
             },
        this));
  }
  own_loop_.reset();
}

void ExecuteStreamClient::ExecuteAsync(v1::ExecuteRequest request,
                                       Done done) {
  const size_t bytes = request.ByteSizeLong();
  std::vector<Finished> finished;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      finished.push_back({std::move(done),
                          NotSent(grpc::Status(grpc::StatusCode::CANCELLED,
                                               "the client is closed")),
                          {}});
    } else if (bytes > options_.max_request_bytes) {
      finished.push_back(
          {std::move(done),
           WithInfo(grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("the request is ", bytes,
                                 " bytes; at most ", options_.max_request_bytes,
                                 " fit in an ExecuteStream message (the "
                                 "coordinator's transaction limit is "
                                 "--max_transaction_bytes, 4 MiB by default)"),
                    v1::ErrorInfo::CERTAINTY_DEFINITE, "LIMIT_EXCEEDED"),
           {}});
    } else {
      const uint64_t tag = next_tag_++;
      pending_.emplace(tag,
                       Pending{std::move(done), absl::Now() + options_.deadline});
      if (queued_.empty() ||
          queued_.back().message.items_size() >=
              options_.max_requests_per_message ||
          (queued_.back().message.items_size() > 0 &&
           queued_.back().bytes + bytes > options_.max_message_bytes)) {
        queued_.emplace_back();
      }
      Queued& message = queued_.back();
      v1::ExecuteStreamRequest::Item* item = message.message.add_items();
      item->set_tag(tag);
      *item->mutable_request() = std::move(request);
      message.bytes += bytes;
      ArmWatchdog();
      if (current_ == nullptr) {
        Open();
      } else {
        WriteQueued();
      }
    }
    if (!finished.empty()) ++delivering_;
  }
  Deliver(&finished);
}

grpc::Status ExecuteStreamClient::Execute(v1::ExecuteRequest request,
                                          v1::ExecuteResponse* response) {
  absl::Notification answered;
  grpc::Status result;
  ExecuteAsync(std::move(request),
               [&](grpc::Status status, v1::ExecuteResponse answer) {
                 result = std::move(status);
                 *response = std::move(answer);
                 answered.Notify();
               });
  answered.WaitForNotification();
  return result;
}

void ExecuteStreamClient::Close() {
  absl::MutexLock lock(&mu_);
  closing_ = true;
  WriteQueued();
  StopWatchdogIfIdle();
}

void ExecuteStreamClient::Cancel() {
  std::vector<Finished> finished;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    FailQueued(grpc::Status(grpc::StatusCode::CANCELLED,
                            "the client was cancelled"),
               &finished);
    for (const auto& call : calls_) {
      if (!call->ended) call->context.TryCancel();
    }
    if (watchdog_armed_) watchdog_.Cancel();
    if (!finished.empty()) ++delivering_;
  }
  Deliver(&finished);
}

bool ExecuteStreamClient::Closed() const {
  absl::MutexLock lock(&mu_);
  return ClosedLocked();
}

bool ExecuteStreamClient::ClosedLocked() const {
  return closing_ && calls_.empty() && queued_.empty() && !watchdog_armed_ &&
         delivering_ == 0;
}

ExecuteStreamClient::Counts ExecuteStreamClient::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

void ExecuteStreamClient::Open() {
  calls_.push_back(std::make_unique<Call>(this));
  Call* call = calls_.back().get();
  current_ = call;
  ++counts_.streams_opened;
  call->stream = stub_->PrepareAsyncExecuteStream(&call->context, queue_);
  call->stream->StartCall(call->Tag(Event::kStarted));
}

void ExecuteStreamClient::WriteQueued() {
  Call* call = current_;
  if (call == nullptr || !call->started || call->writing ||
      call->half_closed || call->ended) {
    return;
  }
  if (!queued_.empty()) {
    const v1::ExecuteStreamRequest& message = queued_.front().message;
    for (const auto& item : message.items()) {
      auto it = pending_.find(item.tag());
      if (it != pending_.end()) it->second.written_on = call;
    }
    if (call->unanswered == 0) call->last_heard = absl::Now();
    call->unanswered += message.items_size();
    ++counts_.messages_written;
    counts_.requests_written += message.items_size();
    call->writing = true;
    call->stream->Write(message, call->Tag(Event::kWritten));
    queued_.pop_front();  // Write has serialised it
  } else if (closing_) {
    call->half_closed = true;
    call->stream->WritesDone(call->Tag(Event::kWritesDone));
  }
}

void ExecuteStreamClient::End(Call* call) {
  if (call->ended) return;
  call->ended = true;
  if (current_ == call) current_ = nullptr;
  call->stream->Finish(&call->status, call->Tag(Event::kFinished));
}

void ExecuteStreamClient::Handle(Call* call, Event event, bool ok) {
  std::vector<Finished> finished;
  {
    absl::MutexLock lock(&mu_);
    --call->outstanding;
    switch (event) {
      case Event::kStarted:
        if (!ok) {
          End(call);
          break;
        }
        call->started = true;
        call->last_heard = absl::Now();
        call->stream->Read(&call->incoming, call->Tag(Event::kRead));
        WriteQueued();
        break;
      case Event::kWritten:
        call->writing = false;
        if (ok) WriteQueued();  // else the read fails too and ends the call
        break;
      case Event::kWritesDone:
        break;
      case Event::kRead:
        if (!ok) {
          End(call);
          break;
        }
        OnRead(call, &finished);
        call->stream->Read(&call->incoming, call->Tag(Event::kRead));
        break;
      case Event::kFinished:
        OnFinished(call, &finished);
        break;
    }
    if (call->ended && call->outstanding == 0) {
      calls_.remove_if(
          [call](const std::unique_ptr<Call>& c) { return c.get() == call; });
    }
    StopWatchdogIfIdle();
    if (!finished.empty()) ++delivering_;
  }
  Deliver(&finished);
}

void ExecuteStreamClient::OnRead(Call* call, std::vector<Finished>* finished) {
  call->heard = true;
  call->last_heard = absl::Now();
  for (auto& result : *call->incoming.mutable_results()) {
    --call->unanswered;
    auto it = pending_.find(result.tag());
    if (it == pending_.end() || it->second.written_on != call) continue;
    Finished& done = finished->emplace_back();
    done.done = std::move(it->second.done);
    pending_.erase(it);
    if (result.status().code() != 0) {
      done.status = ToGrpcStatus(FromRpcStatus(result.status()));
    } else {
      *done.response.mutable_transaction() =
          std::move(*result.mutable_transaction());
    }
  }
}

void ExecuteStreamClient::OnFinished(Call* call,
                                     std::vector<Finished>* finished) {
  ++counts_.streams_ended;
  grpc::Status end = call->status;
  if (call->timed_out) {
    end = grpc::Status(
        grpc::StatusCode::DEADLINE_EXCEEDED,
        absl::StrCat("nothing came on the stream for ",
                     absl::FormatDuration(options_.deadline),
                     " while requests waited: cancelled as dead"));
  }
  const grpc::Status unanswered = EndedBeforeResult(end);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.written_on != call) {
      ++it;
      continue;
    }
    finished->push_back({std::move(it->second.done), unanswered, {}});
    it = pending_.erase(it);
  }
  if (current_ != nullptr || queued_.empty()) return;
  // Requests submitted while this call was ending: a new call for them,
  // unless this one never got through to the coordinator.
  if (call->heard) {
    Open();
  } else {
    FailQueued(end.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "the stream ended at once")
                        : end,
               finished);
  }
}

void ExecuteStreamClient::FailQueued(const grpc::Status& cause,
                                     std::vector<Finished>* finished) {
  const grpc::Status status = NotSent(cause);
  for (const Queued& queued : queued_) {
    for (const auto& item : queued.message.items()) {
      auto it = pending_.find(item.tag());
      if (it == pending_.end()) continue;
      finished->push_back({std::move(it->second.done), status, {}});
      pending_.erase(it);
    }
  }
  queued_.clear();
}

void ExecuteStreamClient::ArmWatchdog() {
  if (watchdog_armed_) return;
  watchdog_armed_ = true;
  const absl::Duration interval =
      std::clamp(options_.deadline / 4, absl::Milliseconds(1), absl::Seconds(1));
  watchdog_.Set(queue_, absl::ToChronoTime(absl::Now() + interval),
                &watchdog_tag_);
}

void ExecuteStreamClient::StopWatchdogIfIdle() {
  if (closing_ && pending_.empty() && watchdog_armed_) watchdog_.Cancel();
}

void ExecuteStreamClient::OnWatchdog(bool ok) {
  std::vector<Finished> finished;
  {
    absl::MutexLock lock(&mu_);
    watchdog_armed_ = false;
    if (!ok) return;  // cancelled
    const absl::Time now = absl::Now();
    // Tags grow with time and every request has the same deadline.
    for (auto it = pending_.begin();
         it != pending_.end() && it->second.deadline <= now;) {
      finished.push_back(
          {std::move(it->second.done),
           WithInfo(grpc::StatusCode::DEADLINE_EXCEEDED,
                    absl::StrCat("no result within ",
                                 absl::FormatDuration(options_.deadline),
                                 "; its outcome is unknown: look it up with "
                                 "TransactionService.Get by id or "
                                 "idempotency key"),
                    v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "DEADLINE_PASSED"),
           {}});
      it = pending_.erase(it);
    }
    for (const auto& call : calls_) {
      if (!call->ended && call->started && call->unanswered > 0 &&
          now - call->last_heard > options_.deadline) {
        call->timed_out = true;
        call->context.TryCancel();  // the read fails, which ends the call
      }
    }
    if (!pending_.empty()) ArmWatchdog();
    if (!finished.empty()) ++delivering_;
  }
  Deliver(&finished);
}

void ExecuteStreamClient::Deliver(std::vector<Finished>* finished) {
  if (finished->empty()) return;
  for (Finished& f : *finished) {
    f.done(std::move(f.status), std::move(f.response));
  }
  absl::MutexLock lock(&mu_);
  --delivering_;
}

}  // namespace twopc::client
