// CompletionQueueLoop: one thread draining one gRPC completion queue, shared
// by the objects that drive asynchronous operations on it, so their events
// are handled without a thread switch between them.
//
// Every tag posted to queue() must be a Handler; its OnEvent runs on the
// loop's thread. A handler may also be run soon from the loop's own thread
// without going through the queue (RunSoon), e.g. to write what a callback
// of another handler queued for it.
//
// One wake-up serves every event that is ready (up to kEventsPerBatch): a
// WakeupBatch (common/wakeup_batch.h) spans them, so what they hand to
// other threads (requests for links, records for the log writer) wakes
// each consumer once. Bounded, so a steady stream of events cannot hold the
// first event's hand-overs back. Once those events are handled, before the
// loop waits again, it runs its `before_waiting` handler, if it has one:
// e.g. to write to disk, in one go and on this thread, what all of them
// queued.
//
// Lifetime: the destructor shuts the queue down, handles what is still on
// it and joins the thread. So a handler must stay valid until its tags have
// come back (e.g. an object that deletes itself on its last event), and
// nothing may be posted once the destructor started (each user stops
// first).
//
// Thread-safety: queue() and InLoopThread() from any thread; RunSoon from
// the loop's thread only.
#ifndef TWOPC_COMMON_COMPLETION_QUEUE_LOOP_H_
#define TWOPC_COMMON_COMPLETION_QUEUE_LOOP_H_

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/completion_queue.h>

namespace twopc {

class CompletionQueueLoop {
 public:
  class Handler {
   public:
    // `ok` as CompletionQueue::Next reports it (always true for RunSoon).
    virtual void OnEvent(bool ok) = 0;

   protected:
    ~Handler() = default;
  };

  // The tags of an object with several kinds of event on the loop, one per
  // value of `Event` (an enum counting from 0 up to kCount): Tag(event) is
  // a Handler whose OnEvent calls (owner->*handle)(event, ok).
  template <typename Owner, typename Event, int kCount>
  class EventTags {
   public:
    EventTags(Owner* owner, void (Owner::*handle)(Event, bool)) {
      for (int i = 0; i < kCount; ++i) {
        tags_[i].owner = owner;
        tags_[i].handle = handle;
        tags_[i].event = static_cast<Event>(i);
      }
    }
    Handler* Tag(Event event) { return &tags_[static_cast<int>(event)]; }

   private:
    struct OneTag final : Handler {
      void OnEvent(bool ok) override { (owner->*handle)(event, ok); }
      Owner* owner = nullptr;
      void (Owner::*handle)(Event, bool) = nullptr;
      Event event{};
    };
    OneTag tags_[kCount];
  };

  // Drains a queue of its own, or `queue` (e.g. a server's completion queue
  // for asynchronous methods). `before_waiting` (optional) runs after each
  // round of ready events, inside their WakeupBatch; what it asks to
  // RunSoon runs right after it.
  CompletionQueueLoop();
  explicit CompletionQueueLoop(std::unique_ptr<grpc::CompletionQueue> queue,
                               std::function<void()> before_waiting = nullptr);
  ~CompletionQueueLoop();

  CompletionQueueLoop(const CompletionQueueLoop&) = delete;
  CompletionQueueLoop& operator=(const CompletionQueueLoop&) = delete;

  grpc::CompletionQueue* queue() { return queue_.get(); }
  bool InLoopThread() const {
    return std::this_thread::get_id() == thread_.get_id();
  }

  // Runs `handler` (once, however often asked) after the event being
  // handled, before the loop waits again.
  // REQUIRES: InLoopThread().
  void RunSoon(Handler* handler);

 private:
  static constexpr int kEventsPerBatch = 64;

  void Run();
  void RunSoonHandlers();

  const std::unique_ptr<grpc::CompletionQueue> queue_;
  const std::function<void()> before_waiting_;
  std::vector<Handler*> soon_;  // the loop's thread only
  std::thread thread_;          // last: starts once everything above is ready
};

}  // namespace twopc

#endif  // TWOPC_COMMON_COMPLETION_QUEUE_LOOP_H_
