#include "client/execute_stream_client.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/execute_stream_metadata.h"
#include "common/grpc_status.h"

namespace twopc::client {
namespace {

grpc::Status WithInfo(grpc::StatusCode code, std::string message,
                      v1::ErrorInfo::Certainty certainty,
                      const std::string& reason) {
  return ToGrpcStatus(
      WithErrorInfo(absl::Status(static_cast<absl::StatusCode>(code), message),
                    certainty, reason));
}

// A request that was never written: definite, send it again.
grpc::Status NotSent(const grpc::Status& cause) {
  const grpc::StatusCode code =
      cause.ok() ? grpc::StatusCode::UNAVAILABLE : cause.error_code();
  return WithInfo(code, absl::StrCat("not sent: ", cause.error_message()),
                  v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT");
}

// A written request whose stream ended with `end` before its result. Only
// an end the coordinator marked definite is (a code alone is not: gRPC or a
// proxy may end a stream RESOURCE_EXHAUSTED or INVALID_ARGUMENT after the
// coordinator started some of its requests).
grpc::Status EndedBeforeResult(const grpc::Status& end) {
  const std::optional<v1::ErrorInfo> info = GetErrorInfo(FromGrpcStatus(end));
  if (!end.ok() && info.has_value() &&
      info->certainty() == v1::ErrorInfo::CERTAINTY_DEFINITE) {
    return end;  // the coordinator says none of them was started
  }
  return WithInfo(
      end.ok() ? grpc::StatusCode::UNKNOWN : end.error_code(),
      absl::StrCat("ExecuteStream ended before this request's result (",
                   end.ok() ? "OK without a result" : end.error_message(),
                   "): its outcome is unknown; look it up with "
                   "TransactionService.Get by id or idempotency key"),
      v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "STREAM_ENDED");
}

// A stream's end or a request's result by which the coordinator says it
// did not start the request(s), and sending them again may succeed (unlike
// a refused message): it is shutting down, or has too many streams.
bool NotStarted(const grpc::Status& end) {
  const std::optional<v1::ErrorInfo> info = GetErrorInfo(FromGrpcStatus(end));
  return !end.ok() && info.has_value() &&
         info->certainty() == v1::ErrorInfo::CERTAINTY_DEFINITE &&
         (info->reason() == "SHUTTING_DOWN" ||
          info->reason() == "LIMIT_EXCEEDED");
}

ExecuteStreamClient::Options Checked(ExecuteStreamClient::Options options) {
  options.deadline = std::max(options.deadline, absl::Milliseconds(1));
  options.max_requests_per_message =
      std::clamp(options.max_requests_per_message, 1, 1024);
  options.max_request_bytes =
      std::min(options.max_request_bytes, size_t{(8 << 20) - 1024});
  options.max_message_bytes =
      std::min(options.max_message_bytes, options.max_request_bytes);
  options.max_queued_requests = std::max(options.max_queued_requests, 1);
  return options;
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
  CompletionQueueLoop::EventTags<Call, Event, kEventCount> tags{this,
                                                                &Call::OnEvent};
  grpc::ClientContext context;  // outlives `stream` (declared before it)
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecuteStreamRequest,
                                                v1::ExecuteStreamResponse>>
      stream;
  int outstanding = 0;  // operations on the queue
  // Writes may go out: the call started (with resend_not_started: and the
  // coordinator said it serves it).
  bool started = false;
  bool writing = false;
  bool broken = false;  // a Write failed: the read will fail too
  bool half_closed = false;
  bool ended = false;      // Finish asked for
  bool heard = false;      // a message came from the coordinator
  bool timed_out = false;  // cancelled by the watchdog as dead
  // Requests written on this call without a result (those that failed on
  // their deadline too), and when it last showed life.
  int64_t unanswered = 0;
  SteadyTime last_heard;
  v1::ExecuteStreamResponse incoming;
  grpc::Status status;
};

ExecuteStreamClient::ExecuteStreamClient(
    std::shared_ptr<grpc::ChannelInterface> channel, Options options)
    : options_(Checked(options)),
      stub_(v1::TransactionService::NewStub(channel)),
      own_loop_(std::make_unique<CompletionQueueLoop>()),
      queue_(own_loop_->queue()) {}

ExecuteStreamClient::ExecuteStreamClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    grpc::CompletionQueue* queue, Options options)
    : options_(Checked(options)),
      stub_(v1::TransactionService::NewStub(channel)),
      queue_(queue) {}

ExecuteStreamClient::~ExecuteStreamClient() {
  Cancel();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ExecuteStreamClient* client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
             client->mu_) { return client->ClosedLocked(); },
        this));
  }
  own_loop_.reset();
}

void ExecuteStreamClient::ExecuteAsync(v1::ExecuteRequest request, Done done) {
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
                    absl::StrCat("the request is ", bytes, " bytes; at most ",
                                 options_.max_request_bytes,
                                 " fit in an ExecuteStream message (the "
                                 "coordinator's transaction limit is "
                                 "--max_transaction_bytes, 4 MiB by default)"),
                    v1::ErrorInfo::CERTAINTY_DEFINITE, "LIMIT_EXCEEDED"),
           {}});
    } else if (queued_requests_ >= options_.max_queued_requests) {
      finished.push_back(
          {std::move(done),
           NotSent(grpc::Status(
               grpc::StatusCode::RESOURCE_EXHAUSTED,
               absl::StrCat(options_.max_queued_requests,
                            " requests already wait to be written (the "
                            "coordinator is not reading them as fast): retry "
                            "with backoff"))),
           {}});
    } else {
      const uint64_t tag = next_tag_++;
      Pending& pending = pending_[tag];
      pending.done = std::move(done);
      pending.deadline = SteadyClock::now() + deadline_;
      Append(tag, std::move(request), bytes, &queued_);
      ++queued_requests_;
      ArmWatchdog();
      if (current_ == nullptr) {
        if (!reopen_armed_) Open();
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
    cancelled_ = true;
    FailQueued(
        grpc::Status(grpc::StatusCode::CANCELLED, "the client was cancelled"),
        &finished);
    for (const auto& call : calls_) {
      if (!call->ended) call->context.TryCancel();
    }
    if (watchdog_armed_) watchdog_.Cancel();
    if (reopen_armed_) reopen_.Cancel();
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
         !reopen_armed_ && delivering_ == 0;
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

void ExecuteStreamClient::Serve(Call* call) {
  call->started = true;
  call->stream->Read(&call->incoming, call->Tag(Event::kRead));
  WriteQueued();
}

void ExecuteStreamClient::DropExpiredQueued() {
  // Requests that passed their deadline while queued were failed NOT_SENT
  // and are never written. Every request has the same deadline, so they are
  // the oldest queued ones: they lead the queue.
  while (expired_while_queued_ > 0 && !queued_.empty()) {
    auto* items = queued_.front().message.mutable_items();
    const int before = items->size();
    items->erase(std::remove_if(items->begin(), items->end(),
                                [this](const auto& item) {
                                  return pending_.count(item.tag()) == 0;
                                }),
                 items->end());
    expired_while_queued_ -= before - items->size();
    queued_requests_ -= before - items->size();
    if (!items->empty()) break;
    queued_.pop_front();
  }
}

void ExecuteStreamClient::WriteQueued() {
  Call* call = current_;
  if (call == nullptr || !call->started || call->writing || call->broken ||
      call->half_closed || call->ended) {
    return;
  }
  DropExpiredQueued();
  if (!queued_.empty()) {
    v1::ExecuteStreamRequest& message = queued_.front().message;
    for (const auto& item : message.items()) {
      pending_.find(item.tag())->second.written_on = call;
    }
    if (call->unanswered == 0) call->last_heard = SteadyClock::now();
    call->unanswered += message.items_size();
    ++counts_.messages_written;
    counts_.requests_written += message.items_size();
    queued_requests_ -= message.items_size();
    call->writing = true;
    call->stream->Write(message, call->Tag(Event::kWritten));
    if (options_.resend_not_started) {
      // Write has serialised the message: keep each request, should its
      // call end without starting it.
      for (auto& item : *message.mutable_items()) {
        pending_.find(item.tag())->second.written =
            std::move(*item.mutable_request());
      }
    }
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
        call->last_heard = SteadyClock::now();
        if (options_.resend_not_started) {
          // Nothing is written before the coordinator says it serves the
          // stream: should it end before that, it started nothing.
          call->stream->ReadInitialMetadata(call->Tag(Event::kServed));
        } else {
          Serve(call);
        }
        break;
      case Event::kServed:
        if (!ok) {
          End(call);
        } else if (call->context.GetServerInitialMetadata().count(
                       kExecuteStreamServingKey) == 0) {
          // Not served: ended already (refused, or cancelled before the
          // coordinator took it), or a server that never says so. Nothing
          // was written on it: give it up; its end says why.
          call->context.TryCancel();
          call->stream->Read(&call->incoming, call->Tag(Event::kRead));
        } else {
          Serve(call);
        }
        break;
      case Event::kWritten:
        call->writing = false;
        if (!ok) {
          call->broken = true;  // what is queued waits for the next call
        } else if (call == current_) {
          WriteQueued();
        } else {
          HalfClose(call);  // retired while writing
        }
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
  call->last_heard = SteadyClock::now();
  reopen_backoff_ = kFirstReopenBackoff;
  std::vector<uint64_t> put_back;  // refused as not started: sent again
  for (auto& result : *call->incoming.mutable_results()) {
    auto it = pending_.find(result.tag());
    if (it == pending_.end() || it->second.written_on != call) continue;
    --call->unanswered;
    if (it->second.expired) {  // failed on its deadline already
      pending_.erase(it);
      continue;
    }
    Finished done{{}, {}, {}};
    if (result.status().code() != 0) {
      done.status = ToGrpcStatus(FromRpcStatus(result.status()));
      if (options_.resend_not_started && !cancelled_ &&
          NotStarted(done.status)) {
        put_back.push_back(it->first);
        continue;
      }
    } else {
      *done.response.mutable_transaction() =
          std::move(*result.mutable_transaction());
    }
    done.done = std::move(it->second.done);
    pending_.erase(it);
    finished->push_back(std::move(done));
  }
  if (!put_back.empty()) {
    // The coordinator is draining: it answers what it started on this
    // stream but starts nothing more. Send the rest to the next one.
    Requeue(put_back);
    Retire(call);
    ReopenLater();
  }
}

void ExecuteStreamClient::OnFinished(Call* call,
                                     std::vector<Finished>* finished) {
  ++counts_.streams_ended;
  grpc::Status end = call->status;
  if (call->timed_out) {
    end =
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                     absl::StrCat("nothing came on the stream for ",
                                  absl::FormatDuration(options_.deadline),
                                  " while requests waited: cancelled as dead"));
  }
  const bool resend =
      options_.resend_not_started && !cancelled_ && NotStarted(end);
  if (resend) {
    std::vector<uint64_t> tags;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.written_on != call) {
        ++it;
      } else if (it->second.expired) {  // failed already
        it = pending_.erase(it);
      } else {
        tags.push_back(it->first);
        ++it;
      }
    }
    Requeue(tags);
  } else {
    const grpc::Status unanswered = EndedBeforeResult(end);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.written_on != call) {
        ++it;
        continue;
      }
      if (!it->second.expired) {
        finished->push_back({std::move(it->second.done), unanswered, {}});
      }
      it = pending_.erase(it);
    }
  }
  if (queued_.empty()) return;
  if (current_ != nullptr) {
    // A newer call, opened while this one was ending, takes them.
    WriteQueued();
    return;
  }
  // Requests submitted while this call was ending (or put back): a new call
  // for them, unless this one never got through to the coordinator or the
  // coordinator turned it away; then they fail, or wait for a call opened
  // after the backoff.
  if (call->heard && !resend) {
    Open();
  } else if (options_.resend_not_started) {
    ReopenLater();
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
  queued_requests_ = 0;
  expired_while_queued_ = 0;
}

void ExecuteStreamClient::Append(uint64_t tag, v1::ExecuteRequest request,
                                 size_t bytes,
                                 std::deque<Queued>* messages) const {
  if (messages->empty() ||
      messages->back().message.items_size() >=
          options_.max_requests_per_message ||
      (messages->back().message.items_size() > 0 &&
       messages->back().bytes + bytes > options_.max_message_bytes)) {
    messages->emplace_back();
  }
  Queued& message = messages->back();
  v1::ExecuteStreamRequest::Item* item = message.message.add_items();
  item->set_tag(tag);
  *item->mutable_request() = std::move(request);
  message.bytes += bytes;
}

void ExecuteStreamClient::Requeue(const std::vector<uint64_t>& tags) {
  std::deque<Queued> again;
  for (uint64_t tag : tags) {
    Pending& request = pending_.find(tag)->second;
    const size_t bytes = request.written.ByteSizeLong();
    Append(tag, std::move(request.written), bytes, &again);
    request.written_on = nullptr;
    ++queued_requests_;
    ++counts_.requests_requeued;
  }
  // Older than anything queued, so they go first (and the deadline scan in
  // DropExpiredQueued still finds the expired ones at the head).
  queued_.insert(queued_.begin(), std::make_move_iterator(again.begin()),
                 std::make_move_iterator(again.end()));
}

void ExecuteStreamClient::Retire(Call* call) {
  if (current_ == call) current_ = nullptr;
  HalfClose(call);
}

void ExecuteStreamClient::HalfClose(Call* call) {
  if (!call->started || call->writing || call->half_closed || call->ended ||
      call->broken) {
    return;  // a write in flight half-closes it when done
  }
  call->half_closed = true;
  call->stream->WritesDone(call->Tag(Event::kWritesDone));
}

void ExecuteStreamClient::ReopenLater() {
  if (reopen_armed_) return;
  reopen_armed_ = true;
  reopen_.Set(queue_,
              gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                           gpr_time_from_micros(
                               absl::ToInt64Microseconds(reopen_backoff_),
                               GPR_TIMESPAN)),
              &reopen_tag_);
  reopen_backoff_ = std::min(reopen_backoff_ * 2, kMaxReopenBackoff);
}

void ExecuteStreamClient::OnReopen(bool ok) {
  absl::MutexLock lock(&mu_);
  reopen_armed_ = false;
  if (!ok) return;  // cancelled
  if (current_ == nullptr && !queued_.empty()) Open();
}

void ExecuteStreamClient::ArmWatchdog() {
  if (watchdog_armed_) return;
  watchdog_armed_ = true;
  const absl::Duration interval = std::clamp(
      options_.deadline / 4, absl::Milliseconds(1), absl::Seconds(1));
  watchdog_.Set(
      queue_,
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_micros(absl::ToInt64Microseconds(interval),
                                        GPR_TIMESPAN)),
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
    const SteadyTime now = SteadyClock::now();
    // Tags grow with time and every request has the same deadline. A request
    // still queued fails definite (it will not be written); one written
    // stays pending, expired, until its call answers or ends, so that a
    // dead call is still found below.
    for (auto it = pending_.begin();
         it != pending_.end() && it->second.deadline <= now;) {
      Pending& request = it->second;
      if (request.expired) {
        ++it;
        continue;
      }
      const std::string what = absl::StrCat(
          "no result within ", absl::FormatDuration(options_.deadline));
      if (request.written_on == nullptr) {
        finished.push_back(
            {std::move(request.done),
             WithInfo(grpc::StatusCode::DEADLINE_EXCEEDED,
                      absl::StrCat(what,
                                   "; not sent: it was still waiting "
                                   "to be written"),
                      v1::ErrorInfo::CERTAINTY_DEFINITE, "NOT_SENT"),
             {}});
        it = pending_.erase(it);  // WriteQueued drops its item
        ++expired_while_queued_;
        continue;
      }
      finished.push_back(
          {std::move(request.done),
           WithInfo(grpc::StatusCode::DEADLINE_EXCEEDED,
                    absl::StrCat(what,
                                 "; its outcome is unknown: look it up with "
                                 "TransactionService.Get by id or "
                                 "idempotency key"),
                    v1::ErrorInfo::CERTAINTY_AMBIGUOUS, "DEADLINE_PASSED"),
           {}});
      request.expired = true;
      ++it;
    }
    for (const auto& call : calls_) {
      if (!call->ended && call->started && call->unanswered > 0 &&
          now - call->last_heard > deadline_) {
        call->timed_out = true;
        call->context.TryCancel();  // the read fails, which ends the call
      }
    }
    DropExpiredQueued();
    WriteQueued();  // e.g. the half-close, if closing and nothing is left
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
