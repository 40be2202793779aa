#include "coordinator/participant_link.h"

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace twopc::coordinator {

ParticipantLink::ParticipantLink(std::string participant_id,
                                 std::string endpoint, uint64_t epoch,
                                 Callbacks callbacks, Options options)
    : participant_id_(std::move(participant_id)),
      endpoint_(std::move(endpoint)),
      epoch_(epoch),
      callbacks_(std::move(callbacks)),
      options_(options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // Keepalive pings detect a participant that is frozen or gone without a
  // TCP reset, so its stream breaks and what was in flight fails over.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  stub_ = v1::ParticipantService::NewStub(grpc::CreateCustomChannel(
      endpoint_, grpc::InsecureChannelCredentials(), args));
  reader_ = std::thread([this] { ReaderLoop(); });
  writer_ = std::thread([this] { WriterLoop(); });
}

void ParticipantLink::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  WakeWriterLocked();
  if (context_ != nullptr) context_->TryCancel();
}

ParticipantLink::~ParticipantLink() {
  Stop();
  writer_.join();
  reader_.join();
  std::map<uint64_t, std::string> leftovers;
  {
    absl::MutexLock lock(&mu_);
    leftovers.swap(in_flight_);
    for (const v1::BranchRequest& request : queue_) {
      leftovers.emplace(request.request_id(), request.transaction_id());
    }
    queue_.clear();
  }
  FailAll(std::move(leftovers), "coordinator shutting down");
}

void ParticipantLink::Send(v1::BranchRequest request) {
  absl::MutexLock lock(&mu_);
  request.set_request_id(next_request_id_++);
  queue_.push_back(std::move(request));
  if (!WakeupBatch::Defer(writer_wakeup_)) WakeWriterLocked();
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

void ParticipantLink::WriterLoop() {
  while (true) {
    v1::CoordinatorBatch batch;
    std::map<uint64_t, std::string> failed;
    std::string failure;
    Stream* stream = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return (!queue_.empty() && state_ != State::kConnecting) || stopping_;
      };
      while (!ready()) writer_wakeup_->cv.Wait(&mu_);
      if (stopping_) return;
      if (state_ == State::kDown) {
        // Nothing is buffered for a participant that is down: fail fast so
        // prepares abort and phase 2 waits for its retry timer.
        for (const v1::BranchRequest& request : queue_) {
          failed.emplace(request.request_id(), request.transaction_id());
        }
        queue_.clear();
        failure = absl::StrCat("UNAVAILABLE: participant ", participant_id_,
                               " at ", endpoint_, " is not connected (",
                               last_error_, ")");
      } else {
        batch.set_coordinator_epoch(epoch_);
        batch.set_expected_participant_id(participant_id_);
        size_t bytes = 0;
        while (!queue_.empty() && batch.requests_size() < options_.max_batch) {
          v1::BranchRequest& request = queue_.front();
          // Stay well under the sidecar's receive limit (at least one).
          const size_t size = request.ByteSizeLong();
          if (batch.requests_size() > 0 && bytes + size > options_.max_batch_bytes) {
            break;
          }
          bytes += size;
          in_flight_.emplace(request.request_id(), request.transaction_id());
          *batch.add_requests() = std::move(request);
          queue_.pop_front();
        }
        stream = stream_.get();
        writing_ = true;
      }
    }
    if (!failed.empty()) {
      FailAll(std::move(failed), failure);
      continue;
    }
    const bool ok = stream->Write(batch);
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    // A failed write shows up as a failed Read in the reader, which
    // disconnects and fails everything in flight, this batch included.
    (void)ok;
  }
}

bool ParticipantLink::Connect() {
  grpc::ClientContext* context = nullptr;
  {
    // The context lives in context_ from the start, so the destructor can
    // cancel a connection attempt that hangs (e.g. a frozen participant).
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    context_ = std::make_unique<grpc::ClientContext>();
    context = context_.get();
  }
  std::unique_ptr<Stream> stream = stub_->Link(context);
  v1::CoordinatorBatch hello;
  hello.set_coordinator_epoch(epoch_);
  hello.set_expected_participant_id(participant_id_);
  v1::ParticipantBatch answer;
  std::string error;
  if (!stream->Write(hello) || !stream->Read(&answer)) {
    const grpc::Status status = stream->Finish();
    error = absl::StrCat(status.error_code() == grpc::StatusCode::UNAVAILABLE
                             ? "unreachable: "
                             : "stream refused: ",
                         status.error_message());
  } else if (answer.hello().participant_id() != participant_id_) {
    error = absl::StrCat("endpoint ", endpoint_, " is participant '",
                         answer.hello().participant_id(), "', expected '",
                         participant_id_, "'");
    context->TryCancel();
    (void)stream->Finish();
  }
  absl::MutexLock lock(&mu_);
  // Requests queued while connecting are written, or failed, now.
  WakeWriterLocked();
  if (!error.empty() || stopping_) {
    last_error_ = error.empty() ? "stopping" : error;
    context_.reset();
    state_ = State::kDown;
    return false;
  }
  stream_ = std::move(stream);
  state_ = State::kConnected;
  last_error_.clear();
  return true;
}

void ParticipantLink::Disconnect(const std::string& error) {
  std::map<uint64_t, std::string> failed;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<Stream> stream;
  {
    absl::MutexLock lock(&mu_);
    state_ = State::kDown;
    last_error_ = error;
    WakeWriterLocked();
    if (context_ != nullptr) context_->TryCancel();
    // Wait for the writer to leave the stream before destroying it.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !writing_;
    };
    mu_.Await(absl::Condition(&idle));
    failed.swap(in_flight_);
    context = std::move(context_);
    stream = std::move(stream_);
  }
  if (stream != nullptr) (void)stream->Finish();
  FailAll(std::move(failed), absl::StrCat("UNAVAILABLE: link to ",
                                          participant_id_, " broke: ", error));
}

void ParticipantLink::ReaderLoop() {
  std::mt19937_64 rng(std::hash<std::string>()(participant_id_));
  absl::Duration delay = options_.min_reconnect_delay;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (!Connect()) {
      // Wait `delay` (with jitter) or until stopping.
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), delay * jitter(rng));
      delay = std::min(delay * 2, options_.max_reconnect_delay);
      state_ = State::kConnecting;
      continue;
    }
    Stream* stream = nullptr;
    {
      absl::MutexLock lock(&mu_);
      stream = stream_.get();
    }
    v1::ParticipantBatch batch;
    const absl::Time connected_at = absl::Now();
    while (stream->Read(&batch)) {
      // What the callbacks send in answer to this batch goes out together.
      WakeupBatch wakeups;
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
      if (!replies.empty()) callbacks_.on_replies(participant_id_, replies);
    }
    Disconnect("stream closed");
    // A stream that closes right after opening (e.g. the participant
    // refuses our epoch) must not make the loop spin.
    if (absl::Now() - connected_at < absl::Seconds(1)) {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), delay);
      delay = std::min(delay * 2, options_.max_reconnect_delay);
    } else {
      delay = options_.min_reconnect_delay;
    }
    absl::MutexLock lock(&mu_);
    state_ = State::kConnecting;
  }
}

}  // namespace twopc::coordinator
