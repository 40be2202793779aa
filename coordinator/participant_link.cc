#include "coordinator/participant_link.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"

namespace twopc::coordinator {

ParticipantLink::ParticipantLink(CompletionQueueLoop* loop,
                                 std::string participant_id,
                                 std::string endpoint, uint64_t epoch,
                                 Callbacks callbacks, Options options)
    : participant_id_(std::move(participant_id)),
      endpoint_(std::move(endpoint)),
      epoch_(epoch),
      callbacks_(std::move(callbacks)),
      options_(options),
      loop_(loop),
      waker_(
          std::make_shared<CompletionQueueWaker>(loop->queue(), Tag(kWoken))),
      delay_(options_.min_reconnect_delay),
      rng_(std::hash<std::string>()(participant_id_)) {
  // Keepalive pings detect a participant that is frozen or gone without a
  // TCP reset, so its stream breaks and what was in flight fails over.
  grpc::ChannelArguments args =
      KeepaliveChannelArguments(absl::Seconds(2), absl::Seconds(2));
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  stub_ = v1::ParticipantService::NewStub(grpc::CreateCustomChannel(
      endpoint_, grpc::InsecureChannelCredentials(), args));
  // The first connection attempt is made on the loop's thread.
  waker_->Wake();
}

void ParticipantLink::Stop(std::string reason) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  stopping_ = true;
  stop_reason_ = std::move(reason);
  if (context_ != nullptr) context_->TryCancel();
  waker_->Wake();
}

ParticipantLink::~ParticipantLink() {
  // Only the loop's thread could let the wait below end.
  assert(!loop_->InLoopThread());
  Stop("coordinator shutting down");
  std::map<uint64_t, std::string> leftovers;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&quiesced_));
    // The waker stayed open for requests sent after Stop (the loop fails
    // them when woken): a wake-up still on its way must come back first.
    wake_pending_ = waker_->Close();
    mu_.Await(absl::Condition(
        +[](bool* pending) { return !*pending; }, &wake_pending_));
    reason = stop_reason_;
    leftovers.swap(in_flight_);
    for (const v1::BranchRequest& request : queue_) {
      leftovers.emplace(request.request_id(), request.transaction_id());
    }
    queue_.clear();
  }
  FailAll(std::move(leftovers), reason);
}

void ParticipantLink::Send(v1::BranchRequest request) {
  absl::MutexLock lock(&mu_);
  request.set_request_id(next_request_id_++);
  queue_.push_back(std::move(request));
  // Once stopping, the loop fails what is queued when woken (the waker
  // keeps the link until its tag is back), or, once it is closed, the
  // destructor does; a RunSoon flush could outlive the link.
  if (loop_->InLoopThread() && !stopping_) {
    loop_->RunSoon(Tag(kFlush));
  } else if (!WakeupBatch::Defer(waker_)) {
    waker_->Wake();
  }
}

bool ParticipantLink::connected() const {
  absl::MutexLock lock(&mu_);
  return state_ == State::kConnected;
}

size_t ParticipantLink::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_.size();
}

std::string ParticipantLink::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

void ParticipantLink::FailAll(std::map<uint64_t, std::string> requests,
                              const std::string& error) {
  for (const auto& [request_id, transaction_id] : requests) {
    callbacks_.on_failure(participant_id_, transaction_id, error);
  }
}

void ParticipantLink::Handle(Event event, bool ok) {
  switch (event) {
    case kWoken:
      waker_->OnWoken();
      if (!started_) {
        started_ = true;
        StartConnection();
      }
      WriteQueued();
      break;
    case kFlush:
      WriteQueued();
      break;
    case kEvents:
      break;
    case kRetryDue:
      retry_pending_ = false;
      StartConnection();
      break;
    case kStarted:
      --outstanding_;
      if (ok) {
        OnStarted();
      } else {
        OnBroken(/*call_ended=*/false);
      }
      break;
    case kWritten:
      --outstanding_;
      writing_ = false;
      if (ok) {
        WriteQueued();
      } else {
        OnBroken(/*call_ended=*/false);
      }
      break;
    case kRead:
      --outstanding_;
      if (!ok) {
        OnBroken(/*call_ended=*/true);
      } else if (finishing_) {
        // Closing: what arrives now is dropped.
      } else if (!hello_done_) {
        OnHello();
      } else {
        OnReplies();
      }
      break;
    case kFinished:
      --outstanding_;
      finished_ = true;
      break;
  }
  MaybeClosed();
  MaybeQuiesce(/*woken=*/event == kWoken);
}

void ParticipantLink::StartConnection() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    state_ = State::kConnecting;
    // In context_ from the start, so Stop can cancel an attempt that hangs
    // (e.g. a frozen participant).
    context_ = std::make_unique<grpc::ClientContext>();
    stream_ = stub_->PrepareAsyncLink(context_.get(), loop_->queue());
  }
  hello_done_ = finishing_ = finished_ = false;
  refusal_.clear();
  stream_->StartCall(Tag(kStarted));
  outstanding_ = 1;
}

void ParticipantLink::StartOutgoing() {
  outgoing_.Clear();
  outgoing_.set_coordinator_epoch(epoch_);
  outgoing_.set_expected_participant_id(participant_id_);
}

void ParticipantLink::OnStarted() {
  StartOutgoing();  // the hello: no requests
  stream_->Write(outgoing_, Tag(kWritten));
  stream_->Read(&incoming_, Tag(kRead));
  outstanding_ += 2;
  writing_ = true;
}

void ParticipantLink::OnHello() {
  if (incoming_.hello().participant_id() != participant_id_) {
    refusal_ = absl::StrCat("endpoint ", endpoint_, " is participant '",
                            incoming_.hello().participant_id(), "', expected '",
                            participant_id_, "'");
    OnBroken(/*call_ended=*/false);
    return;
  }
  hello_done_ = true;
  connected_at_ = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    state_ = State::kConnected;
    last_error_.clear();
  }
  stream_->Read(&incoming_, Tag(kRead));
  ++outstanding_;
  // Requests queued while connecting go out now.
  WriteQueued();
}

void ParticipantLink::OnReplies() {
  v1::ParticipantBatch batch;
  batch.Swap(&incoming_);
  // Read on while this batch is handled.
  stream_->Read(&incoming_, Tag(kRead));
  ++outstanding_;
  std::vector<v1::BranchReply> replies;
  replies.reserve(batch.replies_size());
  {
    absl::MutexLock lock(&mu_);
    for (v1::BranchReply& reply : *batch.mutable_replies()) {
      auto it = in_flight_.find(reply.request_id());
      if (it == in_flight_.end()) continue;  // duplicate or unknown
      // Trust our own record of which transaction this answers.
      reply.set_transaction_id(std::move(it->second));
      in_flight_.erase(it);
      replies.push_back(std::move(reply));
    }
  }
  // What the callbacks hand to other threads (log writes) goes out when
  // the loop's WakeupBatch closes; what they send to links, after this
  // event (RunSoon).
  if (!replies.empty()) callbacks_.on_replies(participant_id_, replies);
}

void ParticipantLink::WriteQueued() {
  std::map<uint64_t, std::string> failed;
  std::string failure;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return;
    if (stopping_ || state_ == State::kDown) {
      // Nothing is buffered for a participant that is down: fail fast so
      // prepares abort and phase 2 waits for its retry timer.
      for (const v1::BranchRequest& request : queue_) {
        failed.emplace(request.request_id(), request.transaction_id());
      }
      queue_.clear();
      failure = stopping_
                    ? stop_reason_
                    : absl::StrCat("UNAVAILABLE: participant ", participant_id_,
                                   " at ", endpoint_, " is not connected (",
                                   last_error_, ")");
    } else {
      if (state_ != State::kConnected || writing_ || finishing_) return;
      StartOutgoing();
      size_t bytes = 0;
      while (!queue_.empty() &&
             outgoing_.requests_size() < options_.max_batch) {
        v1::BranchRequest& request = queue_.front();
        // Stay well under the sidecar's receive limit (at least one).
        const size_t size = request.ByteSizeLong();
        if (outgoing_.requests_size() > 0 &&
            bytes + size > options_.max_batch_bytes) {
          break;
        }
        bytes += size;
        in_flight_.emplace(request.request_id(), request.transaction_id());
        *outgoing_.add_requests() = std::move(request);
        queue_.pop_front();
      }
    }
  }
  if (!failed.empty()) {
    FailAll(std::move(failed), failure);
    return;
  }
  // A failed write breaks the stream, which fails everything in flight,
  // this batch included.
  stream_->Write(outgoing_, Tag(kWritten));
  ++outstanding_;
  writing_ = true;
}

void ParticipantLink::OnBroken(bool call_ended) {
  if (finishing_) return;
  finishing_ = true;
  if (!call_ended) {
    // Whatever else is outstanding (a write stalled by flow control, a
    // read) comes back at once.
    absl::MutexLock lock(&mu_);
    context_->TryCancel();
  }
  stream_->Finish(&status_, Tag(kFinished));
  ++outstanding_;
}

void ParticipantLink::MaybeClosed() {
  if (stream_ == nullptr || !finished_ || outstanding_ > 0) return;
  std::string error = refusal_;
  if (error.empty() && hello_done_) {
    error = absl::StrCat("stream closed: ", status_.error_message());
  } else if (error.empty()) {
    error = absl::StrCat(status_.error_code() == grpc::StatusCode::UNAVAILABLE
                             ? "unreachable: "
                             : "stream refused: ",
                         status_.error_message());
  }
  std::map<uint64_t, std::string> failed;
  bool stopping = false;
  std::string failure;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    state_ = State::kDown;
    last_error_ = stopping ? "stopping" : error;
    failed.swap(in_flight_);
    stream_.reset();
    context_.reset();
    failure = stopping ? stop_reason_
                       : absl::StrCat("UNAVAILABLE: link to ", participant_id_,
                                      " broke: ", error);
  }
  FailAll(std::move(failed), failure);
  // Requests queued while the attempt was under way fail now.
  WriteQueued();
  if (stopping) return;
  absl::Duration wait = delay_;
  if (!hello_done_) {
    // Spread the attempts of many links over the interval.
    wait *= std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
  } else if (absl::Now() - connected_at_ >= absl::Seconds(1)) {
    // A stream that lived is retried at once; one that closes right after
    // opening (e.g. the participant refuses our epoch) must not spin.
    delay_ = options_.min_reconnect_delay;
    StartConnection();
    return;
  }
  delay_ = std::min(delay_ * 2, options_.max_reconnect_delay);
  retry_pending_ = true;
  retry_timer_.Set(
      loop_->queue(),
      std::chrono::system_clock::now() + absl::ToChronoMicroseconds(wait),
      Tag(kRetryDue));
}

void ParticipantLink::MaybeQuiesce(bool woken) {
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_ && !quiesced_;
  }
  bool idle = false;
  if (stopping && retry_pending_) {
    // Its tag comes back (not ok) and lands here again.
    if (!retry_cancelled_) retry_timer_.Cancel();
    retry_cancelled_ = true;
  } else if (stopping) {
    idle = stream_ == nullptr;
  }
  if (!idle && !woken) return;
  // The last thing an event does: once either is set, the destructor may
  // go on.
  absl::MutexLock lock(&mu_);
  if (idle) quiesced_ = true;
  if (woken) wake_pending_ = false;
}

}  // namespace twopc::coordinator
