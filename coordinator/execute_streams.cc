#include "coordinator/execute_streams.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/strings/str_cat.h"
#include "common/execute_stream_metadata.h"
#include "common/grpc_status.h"
#include "common/unparseable_request.h"

namespace twopc::coordinator {
namespace {

// A stream's end that leaves no doubt about its requests without a result:
// none of them was started. A client may send them again.
absl::Status Definite(absl::Status status, const std::string& reason) {
  return WithErrorInfo(std::move(status), v1::ErrorInfo::CERTAINTY_DEFINITE,
                       reason);
}

// Streams waiting for a client at any time.
constexpr int kWaitingStreams = 4;

// Whether the serialised ExecuteStreamRequest in `bytes` holds more than
// `limit` requests, counted without parsing them: so a message of millions
// of tiny requests (8 MiB of two-byte items) is refused before they are
// allocated. Bytes that are not a message count as far as they go (the
// parse then refuses them). Leaves `bytes` as it was. A request takes at
// least two bytes (tag and length), so a smaller message is not scanned:
// the usual message is read once, by the parse.
bool HoldsMoreRequestsThan(grpc::ByteBuffer& bytes, int limit) {
  if (bytes.Length() < 2 * (static_cast<size_t>(limit) + 1)) return false;
  using google::protobuf::internal::WireFormatLite;
  constexpr uint32_t kItemsTag = WireFormatLite::MakeTag(
      v1::ExecuteStreamRequest::kItemsFieldNumber,
      WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  grpc::ProtoBufferReader reader(&bytes);
  google::protobuf::io::CodedInputStream input(&reader);
  int items = 0;
  for (uint32_t tag = input.ReadTag(); tag != 0; tag = input.ReadTag()) {
    if (tag == kItemsTag && ++items > limit) return true;
    if (!WireFormatLite::SkipField(&input, tag)) break;
  }
  return false;
}

}  // namespace

// One ExecuteStream call, from the stream gRPC matched to it until its
// Finish came back and the manager answered every request it handed over.
// At most one Read and one Write are outstanding; the results that became
// ready while a Write was out go in the next one.
class ExecuteStreams::Stream {
 public:
  explicit Stream(ExecuteStreams* owner)
      : owner_(owner),
        manager_(owner->manager_),
        loop_(owner->loop_),
        open_calls_(owner->open_calls_),
        stream_(&context_) {}

  void Request() {
    owner_->service_->RequestExecuteStream(&context_, &stream_, owner_->queue_,
                                           owner_->queue_, Tag(kStarted));
  }

  // Reads no more; the stream ends with `status` once every request it
  // started has its result written (a Read still out is cut short).
  void End(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (input_done_) return;  // ends on its own already
    EndEarlyLocked(std::move(status));
  }

 private:
  // kFlush is run from the loop's own thread (RunSoon); the rest come
  // through the queue.
  enum Event { kStarted, kRead, kWritten, kFinished, kFlush, kEvents };

  CompletionQueueLoop::Handler* Tag(Event event) { return tags_.Tag(event); }

  void Handle(Event event, bool ok) {
    bool last = false;
    switch (event) {
      case kStarted:
        if (!ok) {  // the server is shutting down
          Close();
          return;
        }
        owner_->Request();  // the next stream
        if (owner_->Opened(this)) {
          absl::MutexLock lock(&mu_);
          // Tells the client that this stream is served: what it writes
          // from now on is read (common/execute_stream_metadata.h). Results
          // wait for it as for a Write.
          context_.AddInitialMetadata(kExecuteStreamServingKey, "1");
          writing_ = true;
          stream_.SendInitialMetadata(Tag(kWritten));
          StartReadLocked();
        }  // else Opened ended this stream
        return;
      case kRead:
        OnRead(ok);
        return;
      case kWritten: {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        unsent_ -= in_write_;
        in_write_ = 0;
        if (!ok) OnBrokenLocked();
        FlushLocked();
        return;
      }
      case kFlush: {
        absl::MutexLock lock(&mu_);
        flush_pending_ = false;
        FlushLocked();
        last = OverLocked();
        break;
      }
      case kFinished: {
        absl::MutexLock lock(&mu_);
        finished_ = true;
        last = OverLocked();
        break;
      }
      case kEvents:
        break;
    }
    if (last) Close();
  }

  // Nothing of the stream is left on the queue or to come from it.
  bool OverLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ && !flush_pending_ && !reading_;
  }

  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    owner_->Closed(this);
    OpenCalls* open_calls = open_calls_;
    delete this;
    open_calls->Closed();
  }

  // Reads no more, and ends the stream with `status` once every request it
  // started has its result written, without waiting for the client's
  // input.
  void EndEarlyLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    input_done_ = true;
    ending_early_ = true;
    if (end_status_.ok()) end_status_ = std::move(status);
    FlushLocked();
  }

  void OnRead(bool ok) {
    bool input_ended = false;
    bool over = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      // Half-closed by the client, or the call is over; or the stream was
      // ended early while this Read was out (a message it brought is not
      // started: the end status says so).
      input_ended = !ok || input_done_;
      if (input_ended) {
        input_done_ = true;
        FlushLocked();
        over = OverLocked();
      }
    }
    if (input_ended) {
      if (over) Close();
      return;
    }
    v1::ExecuteStreamRequest message;
    absl::Status parsed;
    if (HoldsMoreRequestsThan(incoming_, kMaxRequestsPerMessage)) {
      parsed = absl::InvalidArgumentError(absl::StrCat(
          "an ExecuteStreamRequest holds more than ", kMaxRequestsPerMessage,
          " requests; at most ", kMaxRequestsPerMessage,
          " are allowed per message (send the rest in further messages)"));
    } else {
      parsed = ParseOwnRequest(incoming_,
                               v1::TransactionService::service_full_name(),
                               "ExecuteStream", &message);
    }
    if (!parsed.ok()) {
      absl::MutexLock lock(&mu_);
      input_done_ = true;
      // Definite: neither this message nor any later one was started.
      end_status_ = Definite(parsed, "MESSAGE_REFUSED");
      FlushLocked();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      unanswered_ += message.items_size();
      unsent_ += message.items_size();
    }
    // Not under mu_: the manager may answer at once, on this thread.
    for (v1::ExecuteStreamRequest::Item& item : *message.mutable_items()) {
      const uint64_t tag = item.tag();
      manager_->Execute(std::move(*item.mutable_request()),
                        [this, tag](absl::StatusOr<v1::Transaction> result) {
                          OnResult(tag, std::move(result));
                        });
    }
    absl::MutexLock lock(&mu_);
    if (!input_done_) StartReadLocked();
  }

  // The manager's answer to one request, on any thread.
  void OnResult(uint64_t tag, absl::StatusOr<v1::Transaction> result)
      ABSL_LOCKS_EXCLUDED(mu_) {
    v1::ExecuteStreamResponse::Result item;
    item.set_tag(tag);
    if (result.ok()) {
      item.mutable_status();  // code 0: OK
      *item.mutable_transaction() = std::move(*result);
    } else {
      *item.mutable_status() = ToRpcStatus(result.status());
    }
    absl::MutexLock lock(&mu_);
    --unanswered_;
    if (broken_) {
      --unsent_;
    } else {
      ready_.push_back(std::move(item));
    }
    if (loop_->InLoopThread()) {
      // Everything answered in this round of the loop goes in one write.
      if (!flush_pending_) {
        flush_pending_ = true;
        loop_->RunSoon(Tag(kFlush));
      }
    } else {
      FlushLocked();
    }
  }

  // Reads the next message unless too many results are not written yet.
  void StartReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (unsent_ >= kMaxUnsent) {
      read_paused_ = true;
      return;
    }
    read_paused_ = false;
    reading_ = true;
    stream_.Read(&incoming_, Tag(kRead));
  }

  // A write failed: the client is gone. Results are dropped from now on.
  void OnBrokenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    broken_ = true;
    unsent_ -= ready_.size();
    ready_.clear();
    if (read_paused_) {  // no read will come back to end the input
      read_paused_ = false;
      input_done_ = true;
    }
  }

  // Writes the ready results if no write is out, resumes a paused read, and
  // finishes once nothing is left to read, answer or write.
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finishing_) return;
    if (!ready_.empty()) {
      WriteReadyLocked();
      return;
    }
    if (read_paused_ && !input_done_) StartReadLocked();
    if (input_done_ && unanswered_ == 0 && (!reading_ || ending_early_)) {
      finishing_ = true;
      stream_.Finish(ToGrpcStatus(end_status_), Tag(kFinished));
    }
  }

  void WriteReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::ExecuteStreamResponse response;
    size_t bytes = 0;
    size_t taken = 0;
    for (; taken < ready_.size(); ++taken) {
      const size_t size = ready_[taken].ByteSizeLong();
      if (taken > 0 && bytes + size > kMaxResponseBytes) break;
      bytes += size;
      *response.add_results() = std::move(ready_[taken]);
    }
    ready_.erase(ready_.begin(), ready_.begin() + taken);
    grpc::ByteBuffer buffer;
    bool own_buffer = false;
    if (!grpc::SerializationTraits<v1::ExecuteStreamResponse>::Serialize(
             response, &buffer, &own_buffer)
             .ok()) {
      // Cannot happen for a message we built; treat as a broken stream.
      unsent_ -= taken;
      OnBrokenLocked();
      EndEarlyLocked(absl::InternalError("could not serialise results"));
      return;
    }
    writing_ = true;
    in_write_ = taken;
    stream_.Write(buffer, Tag(kWritten));
    if (read_paused_ && !input_done_) StartReadLocked();
  }

  ExecuteStreams* const owner_;  // for the kStarted event only
  TransactionManager* const manager_;
  CompletionQueueLoop* const loop_;
  OpenCalls* const open_calls_;
  CompletionQueueLoop::EventTags<Stream, Event, kEvents> tags_{
      this, &Stream::Handle};
  SelfParsingContext context_;  // no unparseable-request interceptor
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_;
  grpc::ByteBuffer incoming_;  // the read path only (one Read at a time)

  absl::Mutex mu_;
  // Requests handed to the manager without an answer yet.
  int unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  // Requests read whose results are not written yet (unanswered, ready or
  // in the Write that is out); reading pauses at kMaxUnsent.
  int unsent_ ABSL_GUARDED_BY(mu_) = 0;
  int in_write_ ABSL_GUARDED_BY(mu_) = 0;  // results in the Write that is out
  // Results not written yet, in the order they became ready.
  std::vector<v1::ExecuteStreamResponse::Result> ready_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;      // a Read is out
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;  // kMaxUnsent reached
  // No more reads: half-closed, the call is over, or a message refused.
  bool input_done_ ABSL_GUARDED_BY(mu_) = false;
  // Ends without waiting for the client's input: a Read may still be out
  // when Finish is asked for (Stop, or a result that cannot be written).
  bool ending_early_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);  // the stream's final status
  bool writing_ ABSL_GUARDED_BY(mu_) = false;      // a Write is out
  bool flush_pending_ ABSL_GUARDED_BY(mu_) = false;  // kFlush asked to run
  bool broken_ ABSL_GUARDED_BY(mu_) = false;       // a Write failed
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;    // Finish is out
  bool finished_ ABSL_GUARDED_BY(mu_) = false;     // ... and came back
};

ExecuteStreams::ExecuteStreams(TransactionServiceImpl* service,
                               TransactionManager* manager,
                               grpc::ServerCompletionQueue* queue,
                               CompletionQueueLoop* loop, OpenCalls* open_calls,
                               int max_streams)
    : service_(service),
      manager_(manager),
      queue_(queue),
      loop_(loop),
      open_calls_(open_calls),
      max_streams_(max_streams) {
  for (int i = 0; i < kWaitingStreams; ++i) Request();
}

namespace {

// Definite (ErrorInfo reason SHUTTING_DOWN), unlike a transport's
// UNAVAILABLE: a client library may send these requests again.
absl::Status ShuttingDown() {
  return Definite(
      absl::UnavailableError(
          "the coordinator is shutting down: the requests of this stream "
          "without a result were not started; send them again to a running "
          "coordinator (with the same idempotency key)"),
      "SHUTTING_DOWN");
}

}  // namespace

void ExecuteStreams::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
}

void ExecuteStreams::Stop() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  stopped_ = true;
  for (Stream* stream : open_) stream->End(ShuttingDown());
}

bool ExecuteStreams::Opened(Stream* stream) {
  absl::MutexLock lock(&mu_);
  if (!accepting_) {
    stream->End(ShuttingDown());
    return false;
  }
  if (static_cast<int>(open_.size()) >= max_streams_) {
    stream->End(Definite(
        absl::ResourceExhaustedError(absl::StrCat(
            "too many ExecuteStream calls open at once (limit ", max_streams_,
            ", flag --max_execute_streams): nothing of this stream was "
            "started; carry more requests on the streams already open, or "
            "retry with backoff")),
        "LIMIT_EXCEEDED"));
    return false;
  }
  open_.insert(stream);
  return true;
}

void ExecuteStreams::Closed(Stream* stream) {
  absl::MutexLock lock(&mu_);
  open_.erase(stream);
}

void ExecuteStreams::Request() {
  // Closed once shutting down: no new request may reach the queue then.
  if (!open_calls_->TryOpen()) return;
  (new Stream(this))->Request();
}

}  // namespace twopc::coordinator
