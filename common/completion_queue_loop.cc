#include "common/completion_queue_loop.h"

#include <algorithm>
#include <utility>

#include "common/wakeup_batch.h"

namespace twopc {

CompletionQueueLoop::CompletionQueueLoop()
    : CompletionQueueLoop(std::make_unique<grpc::CompletionQueue>()) {}

CompletionQueueLoop::CompletionQueueLoop(
    std::unique_ptr<grpc::CompletionQueue> queue,
    std::function<void()> before_waiting)
    : queue_(std::move(queue)), before_waiting_(std::move(before_waiting)) {
  thread_ = std::thread([this] { Run(); });
}

CompletionQueueLoop::~CompletionQueueLoop() {
  queue_->Shutdown();
  thread_.join();
}

void CompletionQueueLoop::RunSoon(Handler* handler) {
  // Few distinct handlers are due at once (one per link or stream): a scan
  // beats a set.
  if (std::find(soon_.begin(), soon_.end(), handler) == soon_.end()) {
    soon_.push_back(handler);
  }
}

void CompletionQueueLoop::RunSoonHandlers() {
  std::vector<Handler*> due;
  while (!soon_.empty()) {
    due.swap(soon_);
    for (Handler* handler : due) handler->OnEvent(true);
    due.clear();
  }
}

void CompletionQueueLoop::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (queue_->Next(&tag, &ok)) {
    WakeupBatch wakeups;
    static_cast<Handler*>(tag)->OnEvent(ok);
    RunSoonHandlers();
    for (int handled = 1;
         handled < kEventsPerBatch &&
         queue_->AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) ==
             grpc::CompletionQueue::GOT_EVENT;
         ++handled) {
      static_cast<Handler*>(tag)->OnEvent(ok);
      RunSoonHandlers();
    }
    if (before_waiting_) {
      before_waiting_();
      RunSoonHandlers();
    }
  }
}

}  // namespace twopc
