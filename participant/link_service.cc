#include "participant/link_service.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/completion_queue_waker.h"
#include "common/grpc_status.h"
#include "common/identifiers.h"
#include "common/unparseable_request.h"
#include "common/wakeup_batch.h"

namespace twopc::participant {
namespace {

// Most replies packed into one ParticipantBatch.
constexpr size_t kMaxRepliesPerBatch = 4096;

// Replies waiting to be written on one stream. Shared with the reply
// callbacks, which may outlive the stream. A Push has the stream write:
// on the loop's thread after the event being handled (RunSoon), from any
// other thread through `waker`.
class Outbox final {
 public:
  Outbox(CompletionQueueLoop* loop, CompletionQueueLoop::Handler* write,
         std::shared_ptr<CompletionQueueWaker> waker)
      : loop_(loop), write_(write), waker_(std::move(waker)) {}

  // A request was handed over; its reply will be Pushed.
  void Expect() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++outstanding_;
  }

  void Push(v1::BranchReply reply) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      --outstanding_;
      if (closed_) return;
      queue_.push_back(std::move(reply));
    }
    // The stream closes the outbox on the loop's thread before it goes, so
    // a Push there that found it open schedules a live stream.
    if (loop_->InLoopThread()) {
      loop_->RunSoon(write_);
    } else if (!WakeupBatch::Defer(waker_)) {
      waker_->Wake();
    }
  }

  // Moves the ready replies (at most kMaxRepliesPerBatch) into `batch`;
  // false when there are none.
  bool Take(v1::ParticipantBatch* batch) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return false;
    while (!queue_.empty() &&
           static_cast<size_t>(batch->replies_size()) < kMaxRepliesPerBatch) {
      *batch->add_replies() = std::move(queue_.front());
      queue_.pop_front();
    }
    return true;
  }

  // Every expected reply was pushed and taken.
  bool Drained() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return outstanding_ == 0 && queue_.empty();
  }

  // Later replies are dropped.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    queue_.clear();
  }

 private:
  CompletionQueueLoop* const loop_;
  CompletionQueueLoop::Handler* const write_;
  const std::shared_ptr<CompletionQueueWaker> waker_;
  absl::Mutex mu_;
  std::deque<v1::BranchReply> queue_ ABSL_GUARDED_BY(mu_);
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

// One Link call, from the request gRPC matched to it until every operation
// on it has come back. Lives on the loop's thread; deletes itself.
class LinkService::Stream final {
 public:
  explicit Stream(LinkService* service)
      : service_(service),
        waker_(std::make_shared<CompletionQueueWaker>(service->queue_,
                                                      Tag(kWoken))),
        outbox_(std::make_shared<Outbox>(service->loop_.get(), Tag(kWrite),
                                         waker_)) {}

  // Asks gRPC for the next Link call.
  void Request() {
    // The done tag only comes back for a call that was accepted.
    context_.AsyncNotifyWhenDone(Tag(kDone));
    service_->RequestLink(&context_, &stream_, service_->queue_,
                          service_->queue_, Tag(kAccepted));
  }

  // Thread-safe.
  void Cancel() { context_.TryCancel(); }

 private:
  // What an event of the stream's stands for: kWrite is run from the loop's
  // thread itself (RunSoon), the others come through the queue. Each stream
  // operation has at most one outstanding.
  enum Event { kAccepted, kRead, kWritten, kFinished, kDone, kWoken, kWrite,
               kEvents };

  CompletionQueueLoop::Handler* Tag(Event event) { return tags_.Tag(event); }

  void Handle(Event event, bool ok) {
    switch (event) {
      case kAccepted:
        if (!ok) {  // shutting down: no call, and no done tag to wait for
          delete this;
          return;
        }
        OnAccepted();
        break;
      case kRead:
        --outstanding_;
        if (ok) {
          OnRead();
        } else {
          read_closed_ = true;  // half-closed by the coordinator, or broken
        }
        break;
      case kWritten:
        --outstanding_;
        writing_ = false;
        if (ok) {
          WriteReplies();
        } else {
          Break();
        }
        break;
      case kWoken:
        waker_->OnWoken();
        WriteReplies();
        break;
      case kWrite:
        WriteReplies();
        break;
      case kFinished:
        --outstanding_;
        break;
      case kDone:
        --outstanding_;
        done_ = true;
        // Cancelled, or the connection went: nothing more can be written.
        if (!finishing_) Break();
        break;
      case kEvents:
        break;
    }
    MaybeFinish();
    MaybeDelete();
  }

  void OnAccepted() {
    accepted_ = true;
    ++outstanding_;  // the done tag
    service_->RequestStream();
    if (!service_->Opened(this)) {
      Refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "participant is shutting down"));
      return;
    }
    StartRead();
  }

  void StartRead() {
    stream_.Read(&incoming_bytes_, Tag(kRead));
    ++outstanding_;
  }

  void OnRead() {
    // The method is raw so that a batch that does not parse can be told
    // from the end of the stream (gRPC reports both alike).
    absl::Status parsed =
        ParseOwnRequest(incoming_bytes_,
                        v1::ParticipantService::service_full_name(), "Link",
                        &incoming_);
    if (!parsed.ok()) {
      Refuse(ToGrpcStatus(parsed));
      return;
    }
    const std::string& expected = incoming_.expected_participant_id();
    if (!expected.empty() && expected != service_->participant_id_) {
      Refuse(ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "this is participant ", QuoteField(service_->participant_id_),
          ", not the expected ", QuoteField(expected),
          "; check the registered endpoint"))));
      return;
    }
    BranchManager* manager = service_->manager_;
    const uint64_t epoch = incoming_.coordinator_epoch();
    if (!hello_sent_) {
      // The epoch counts before the hello reports it; a stale one is
      // reported per request below.
      manager->ObserveEpoch(epoch).IgnoreError();
      outgoing_.Clear();
      v1::ParticipantHello* hello = outgoing_.mutable_hello();
      hello->set_participant_id(service_->participant_id_);
      hello->set_highest_epoch(manager->highest_epoch());
      hello->set_resource(manager->resource_kind());
      hello_sent_ = true;
      Write();
    }
    for (const v1::BranchRequest& request : incoming_.requests()) {
      outbox_->Expect();
      manager->Handle(epoch, request,
                      [outbox = outbox_](v1::BranchReply reply) {
                        outbox->Push(std::move(reply));
                      });
    }
    incoming_.Clear();
    StartRead();
  }

  // Writes the replies ready, if the stream can write now.
  void WriteReplies() {
    if (!hello_sent_ || writing_ || finishing_ || broken_) return;
    outgoing_.Clear();
    if (outbox_->Take(&outgoing_)) Write();
  }

  // Writes outgoing_. A failed write breaks the stream.
  void Write() {
    bool own_buffer = false;
    // Write has taken its own reference to the last batch's bytes.
    outgoing_bytes_.Clear();
    // Fails only for a batch past protobuf's 2 GiB: the replies in it are
    // lost with the stream, and the coordinator resends on its next one.
    if (!grpc::SerializationTraits<v1::ParticipantBatch>::Serialize(
             outgoing_, &outgoing_bytes_, &own_buffer)
             .ok()) {
      Break();
      return;
    }
    stream_.Write(outgoing_bytes_, Tag(kWritten));
    ++outstanding_;
    writing_ = true;
  }

  // Ends the call with `status` (once no write is outstanding).
  void Refuse(grpc::Status status) { refusal_ = std::move(status); }

  // The call cannot go on (a write failed, or it ended without our Finish):
  // what is outstanding comes back, replies due are dropped.
  void Break() {
    if (broken_) return;
    broken_ = true;
    outbox_->Close();
    context_.TryCancel();
  }

  // Finishes the call once it is refused, or half-closed with every reply
  // due written.
  void MaybeFinish() {
    if (!accepted_ || finishing_ || broken_ || writing_) return;
    if (!refusal_.has_value() && !(read_closed_ && outbox_->Drained())) {
      return;
    }
    finishing_ = true;
    outbox_->Close();
    stream_.Finish(refusal_.value_or(grpc::Status::OK), Tag(kFinished));
    ++outstanding_;
  }

  // Once the call is done and nothing of the stream's is outstanding.
  void MaybeDelete() {
    if (!done_ || outstanding_ > 0) return;
    outbox_->Close();
    if (waker_->Close()) return;  // its tag comes back, and lands here again
    service_->Closed(this);
    delete this;
  }

  LinkService* const service_;
  SelfParsingContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_{
      &context_};
  // Before the members whose construction uses Tag().
  CompletionQueueLoop::EventTags<Stream, Event, kEvents> tags_{this,
                                                               &Stream::Handle};
  // Wakes the loop for replies pushed on other threads. Shared with
  // WakeupBatch and the outbox, which may hold it past the stream's end (it
  // is closed then).
  const std::shared_ptr<CompletionQueueWaker> waker_;
  const std::shared_ptr<Outbox> outbox_;
  grpc::ByteBuffer incoming_bytes_;
  v1::CoordinatorBatch incoming_;
  v1::ParticipantBatch outgoing_;
  grpc::ByteBuffer outgoing_bytes_;
  int outstanding_ = 0;  // operations not yet come back, the done tag too
  bool accepted_ = false;
  bool hello_sent_ = false;
  bool read_closed_ = false;
  bool writing_ = false;
  std::optional<grpc::Status> refusal_;  // set: end the call with it
  bool finishing_ = false;
  bool broken_ = false;
  bool done_ = false;
};

LinkService::LinkService(std::string participant_id, BranchManager* manager,
                         BranchStore* store)
    : participant_id_(std::move(participant_id)),
      manager_(manager),
      store_(store) {}

LinkService::~LinkService() = default;

void LinkService::Start(std::unique_ptr<grpc::ServerCompletionQueue> queue) {
  queue_ = queue.get();
  // What the requests of a round of events queued in the store is written
  // on this thread, in one synced write, before the loop waits again.
  loop_ = std::make_unique<CompletionQueueLoop>(
      std::move(queue), [store = store_] { store->WriteQueuedHere(); });
  RequestStream();
}

void LinkService::RequestStream() {
  // No new request may reach a queue being shut down.
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  (new Stream(this))->Request();
}

bool LinkService::Opened(Stream* stream) {
  absl::MutexLock lock(&mu_);
  open_.insert(stream);
  return !cancelled_;
}

void LinkService::Closed(Stream* stream) {
  absl::MutexLock lock(&mu_);
  open_.erase(stream);
}

void LinkService::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  // A stream leaves open_ (under mu_) before it is deleted.
  for (Stream* stream : open_) stream->Cancel();
}

void LinkService::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  loop_.reset();  // shuts the queue down and drains it
}

}  // namespace twopc::participant
