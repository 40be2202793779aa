#include "common/completion_queue_loop.h"

#include <algorithm>

namespace twopc {

CompletionQueueLoop::CompletionQueueLoop() {
  thread_ = std::thread([this] { Run(); });
}

CompletionQueueLoop::~CompletionQueueLoop() {
  queue_.Shutdown();
  thread_.join();
}

void CompletionQueueLoop::RunSoon(Handler* handler) {
  // Few distinct handlers are due at once (one per link): a scan beats a set.
  if (std::find(soon_.begin(), soon_.end(), handler) == soon_.end()) {
    soon_.push_back(handler);
  }
}

void CompletionQueueLoop::Run() {
  void* tag = nullptr;
  bool ok = false;
  std::vector<Handler*> due;
  while (queue_.Next(&tag, &ok)) {
    static_cast<Handler*>(tag)->OnEvent(ok);
    while (!soon_.empty()) {
      due.swap(soon_);
      for (Handler* handler : due) handler->OnEvent(true);
      due.clear();
    }
  }
}

}  // namespace twopc
