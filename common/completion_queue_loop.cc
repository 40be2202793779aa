#include "common/completion_queue_loop.h"

#include <algorithm>
#include <utility>

#include "common/wakeup_batch.h"

namespace twopc {

CompletionQueueLoop::CompletionQueueLoop()
    : CompletionQueueLoop(std::make_unique<grpc::CompletionQueue>()) {}

CompletionQueueLoop::CompletionQueueLoop(
    std::unique_ptr<grpc::CompletionQueue> queue)
    : queue_(std::move(queue)) {
  thread_ = std::thread([this] { Run(); });
}

CompletionQueueLoop::~CompletionQueueLoop() {
  queue_->Shutdown();
  thread_.join();
}

namespace {

// Adds `handler` to `handlers` unless it is there already. Few distinct
// handlers are due at once (one per link or stream): a scan beats a set.
void AddOnce(std::vector<CompletionQueueLoop::Handler*>& handlers,
             CompletionQueueLoop::Handler* handler) {
  if (std::find(handlers.begin(), handlers.end(), handler) == handlers.end()) {
    handlers.push_back(handler);
  }
}

}  // namespace

void CompletionQueueLoop::RunSoon(Handler* handler) { AddOnce(soon_, handler); }

void CompletionQueueLoop::RunBeforeWaiting(Handler* handler) {
  AddOnce(before_waiting_, handler);
}

void CompletionQueueLoop::Dispatch(Handler* handler, bool ok) {
  handler->OnEvent(ok);
  std::vector<Handler*> due;
  while (!soon_.empty()) {
    due.swap(soon_);
    for (Handler* soon : due) soon->OnEvent(true);
    due.clear();
  }
}

void CompletionQueueLoop::RunBeforeWaitingHandlers() {
  std::vector<Handler*> due;
  while (!before_waiting_.empty()) {
    due.swap(before_waiting_);
    for (Handler* handler : due) Dispatch(handler, true);
    due.clear();
  }
}

void CompletionQueueLoop::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (queue_->Next(&tag, &ok)) {
    WakeupBatch wakeups;
    Dispatch(static_cast<Handler*>(tag), ok);
    for (int handled = 1;
         handled < kEventsPerBatch &&
         queue_->AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) ==
             grpc::CompletionQueue::GOT_EVENT;
         ++handled) {
      Dispatch(static_cast<Handler*>(tag), ok);
    }
    RunBeforeWaitingHandlers();
  }
}

}  // namespace twopc
