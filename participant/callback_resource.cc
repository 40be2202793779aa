#include "participant/callback_resource.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

namespace twopc::participant {
CallbackResource::CallbackResource(CallbackResourceOptions options,
                                   Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      stub_(v1::ApplicationCallbackService::NewStub(grpc::CreateChannel(
          options_.address, grpc::InsecureChannelCredentials()))),
      retry_backoff_({.initial = options_.retry_initial,
                      .max = options_.retry_max,
                      .jitter = 0.2},
                     RandomSeed()) {
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    workers_.emplace_back([this] { RunWorker(); });
  }
}

void CallbackResource::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

void CallbackResource::Schedule(absl::Time at, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.emplace(at, std::move(task));
  changed_.Signal();
}

void CallbackResource::RunWorker() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        if (tasks_.empty()) {
          changed_.Wait(&mu_);
          continue;
        }
        const absl::Duration wait = tasks_.begin()->first - clock_->Now();
        if (wait <= absl::ZeroDuration()) {
          task = std::move(tasks_.begin()->second);
          tasks_.erase(tasks_.begin());
          break;
        }
        changed_.WaitWithTimeout(&mu_, wait);
      }
    }
    task();
  }
}

void CallbackResource::Prepare(const std::string& transaction_id,
                               const v1::Branch& branch, absl::Time deadline,
                               PrepareDone done) {
  if (branch.work_case() != v1::Branch::kPayload) {
    done(PrepareResult::No(branch.work_case() == v1::Branch::kKv
                ? "this participant forwards to an application callback; the "
                  "branch carries kv operations instead of a payload"
                : "branch has no work: set a payload"));
    return;
  }
  if (branch.payload().size() > options_.max_payload_bytes) {
    done(PrepareResult::No(absl::StrCat("payload is ", branch.payload().size(),
                         " bytes; the limit is ", options_.max_payload_bytes)));
    return;
  }
  Schedule(absl::InfinitePast(), [this, transaction_id,
                                  payload = branch.payload(), deadline,
                                  done = std::move(done)] {
    v1::PrepareCallbackRequest request;
    request.set_transaction_id(transaction_id);
    request.set_payload(payload);
    if (deadline != absl::InfiniteFuture()) {
      const int64_t micros = absl::ToUnixMicros(deadline);
      request.mutable_deadline()->set_seconds(micros / 1'000'000);
      request.mutable_deadline()->set_nanos(
          static_cast<int32_t>(micros % 1'000'000) * 1000);
    }
    v1::PrepareCallbackResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(
        std::min(deadline, clock_->Now() + options_.prepare_timeout)));
    const grpc::Status status = stub_->Prepare(&context, request, &response);
    if (!status.ok()) {
      PrepareResult no =
          PrepareResult::No(absl::StrCat("application callback Prepare failed: ",
                          status.error_message(), " (code ",
                          static_cast<int>(status.error_code()), ")"));
      // The application may have staged the branch before the failure
      // (e.g. its answer came too late): it must hear the abort.
      no.may_hold_state = true;
      done(std::move(no));
      return;
    }
    PrepareResult result;
    result.vote = response.vote();
    result.reason = response.reason();
    result.may_hold_state = result.vote != v1::VOTE_YES &&
                            result.vote != v1::VOTE_NO &&
                            result.vote != v1::VOTE_READ_ONLY;
    if (result.vote == v1::VOTE_NO && result.reason.empty()) {
      result.reason = "the application voted NO";
    }
    done(std::move(result));
  });
}

void CallbackResource::ApplyOutcome(const std::string& transaction_id,
                                    const BranchRecord& /*record*/,
                                    bool committed, ApplyDone done,
                                    ApplyDelayed delayed) {
  Schedule(absl::InfinitePast(), [this, transaction_id, committed,
                                  done = std::move(done),
                                  delayed = std::move(delayed)]() mutable {
    Deliver(transaction_id, committed, 0, std::move(done), std::move(delayed));
  });
}

void CallbackResource::Deliver(std::string transaction_id, bool committed,
                               int attempt, ApplyDone done,
                               ApplyDelayed delayed) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(clock_->Now() + options_.rpc_timeout));
  grpc::Status status;
  if (committed) {
    v1::CommitCallbackRequest request;
    request.set_transaction_id(transaction_id);
    v1::CommitCallbackResponse response;
    status = stub_->Commit(&context, request, &response);
  } else {
    v1::AbortCallbackRequest request;
    request.set_transaction_id(transaction_id);
    v1::AbortCallbackResponse response;
    status = stub_->Abort(&context, request, &response);
  }
  if (status.ok()) {
    done();
    return;
  }
  if (delayed) {
    delayed(absl::UnavailableError(absl::StrCat(
        "application ", options_.address, " did not acknowledge the ",
        committed ? "commit" : "abort", " (attempt ", attempt + 1, "): ",
        status.error_message(), " (code ",
        static_cast<int>(status.error_code()), ")")));
  }
  if (attempt == 0) {
    std::fprintf(stderr,
                 "twopc-participant: %s of %s to application %s failed (%s); "
                 "retrying until it succeeds\n",
                 committed ? "commit" : "abort", transaction_id.c_str(),
                 options_.address.c_str(), status.error_message().c_str());
  }
  absl::Duration backoff;
  {
    absl::MutexLock lock(&mu_);
    backoff = retry_backoff_.Delay(attempt);
  }
  Schedule(clock_->Now() + backoff,
           [this, transaction_id = std::move(transaction_id), committed,
            attempt, done = std::move(done),
            delayed = std::move(delayed)]() mutable {
             Deliver(std::move(transaction_id), committed, attempt + 1,
                     std::move(done), std::move(delayed));
           });
}

}  // namespace twopc::participant
