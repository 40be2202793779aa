#include "participant/link_service.h"

#include <deque>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/identifiers.h"
#include "common/wakeup_batch.h"

namespace twopc::participant {
namespace {

// Most replies packed into one ParticipantBatch.
constexpr size_t kMaxRepliesPerBatch = 4096;

// Replies waiting to be written on one stream. Shared with the reply
// callbacks, which may outlive the stream. A Push made while a WakeupBatch
// is open wakes the writer when the batch closes.
class Outbox final {
 public:
  // A request was handed over; its reply will be Pushed.
  void Expect() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++outstanding_;
  }

  void Push(v1::BranchReply reply) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --outstanding_;
    if (closed_) return;
    queue_.push_back(std::move(reply));
    if (!WakeupBatch::Defer(ready_)) ready_->cv.Signal();
  }

  // Waits up to `timeout` until every expected reply has been written (or
  // the outbox closed); true when so.
  bool WaitDrained(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || (outstanding_ == 0 && queue_.empty() && !writing_);
    };
    return mu_.AwaitWithTimeout(absl::Condition(&drained), timeout);
  }

  void WriteDone() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
  }

  // Blocks until replies are ready (true, `batch` filled) or the outbox is
  // closed (false).
  bool Take(v1::ParticipantBatch* batch) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (!closed_ && queue_.empty()) ready_->cv.Wait(&mu_);
    if (closed_) return false;
    writing_ = true;
    while (!queue_.empty() &&
           static_cast<size_t>(batch->replies_size()) < kMaxRepliesPerBatch) {
      *batch->add_replies() = std::move(queue_.front());
      queue_.pop_front();
    }
    return true;
  }

  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    queue_.clear();
    ready_->cv.Signal();
  }

 private:
  absl::Mutex mu_;
  // Signalled when a reply is queued or the outbox closes; shared with
  // WakeupBatch.
  const std::shared_ptr<CondVarWaker> ready_ =
      std::make_shared<CondVarWaker>();
  std::deque<v1::BranchReply> queue_ ABSL_GUARDED_BY(mu_);
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void LinkService::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (grpc::ServerContext* context : open_) context->TryCancel();
}

grpc::Status LinkService::Link(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ParticipantBatch, v1::CoordinatorBatch>*
        stream) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "participant is shutting down");
    }
    open_.insert(context);
  }
  struct Unregister {
    LinkService* service;
    grpc::ServerContext* context;
    ~Unregister() {
      absl::MutexLock lock(&service->mu_);
      service->open_.erase(context);
    }
  } unregister{this, context};
  auto mismatch = [this](const v1::CoordinatorBatch& batch) {
    return !batch.expected_participant_id().empty() &&
           batch.expected_participant_id() != participant_id_;
  };
  auto mismatch_status = [this](const v1::CoordinatorBatch& batch) {
    return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
        "this is participant ", QuoteField(participant_id_),
        ", not the expected ", QuoteField(batch.expected_participant_id()),
        "; check the registered endpoint")));
  };

  v1::CoordinatorBatch batch;
  if (!stream->Read(&batch)) return grpc::Status::OK;
  if (mismatch(batch)) return mismatch_status(batch);
  // The epoch counts before the hello reports it; a stale one is reported
  // per request below.
  manager_->ObserveEpoch(batch.coordinator_epoch()).IgnoreError();
  {
    v1::ParticipantBatch hello;
    hello.mutable_hello()->set_participant_id(participant_id_);
    hello.mutable_hello()->set_highest_epoch(manager_->highest_epoch());
    hello.mutable_hello()->set_resource(manager_->resource_kind());
    if (!stream->Write(hello)) return grpc::Status::OK;
  }

  auto outbox = std::make_shared<Outbox>();
  std::thread writer([stream, outbox] {
    while (true) {
      v1::ParticipantBatch replies;
      if (!outbox->Take(&replies)) return;
      if (!stream->Write(replies)) {
        outbox->Close();
        return;
      }
      outbox->WriteDone();
    }
  });

  grpc::Status status = grpc::Status::OK;
  while (true) {
    {
      // What handling this batch queues (replies ready at once, records for
      // the store's writer) is handed over once, before the next Read.
      WakeupBatch wakeups;
      for (const v1::BranchRequest& request : batch.requests()) {
        outbox->Expect();
        manager_->Handle(batch.coordinator_epoch(), request,
                         [outbox](v1::BranchReply reply) {
                           outbox->Push(std::move(reply));
                         });
      }
    }
    batch.Clear();
    if (!stream->Read(&batch)) {
      // Half-closed by the coordinator: deliver the replies still due while
      // it keeps listening.
      while (!context->IsCancelled() &&
             !outbox->WaitDrained(absl::Milliseconds(100))) {
      }
      break;
    }
    if (mismatch(batch)) {
      status = mismatch_status(batch);
      break;
    }
  }
  outbox->Close();
  writer.join();
  return status;
}

}  // namespace twopc::participant
