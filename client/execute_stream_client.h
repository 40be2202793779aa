// ExecuteStreamClient: a client library for TransactionService.ExecuteStream.
// Many callers' transactions share one stream, so that the coordinator can
// answer all the decisions of one log sync in one message (README, "Many
// transactions over one stream").
//
// Each Execute is one ExecuteRequest and gets exactly one result: what a
// unary Execute would have answered (OK with the committed transaction, or
// the error with its twopc.v1.ErrorInfo in the status details), or a failure
// of the client's own, whose ErrorInfo says whether it is definite:
//
//   * DEADLINE_EXCEEDED: no result within `Options::deadline` (a monotonic
//     clock). Written: reason DEADLINE_PASSED, ambiguous (it may still
//     commit: look it up with TransactionService.Get by id or idempotency
//     key; a late result is dropped). Still queued: reason NOT_SENT,
//     definite (it is never written).
//   * The stream ended before the request's result. Never written: the
//     stream's code, reason NOT_SENT, definite. Written: the coordinator's
//     end status when the coordinator marked it definite (UNAVAILABLE reason
//     SHUTTING_DOWN, INVALID_ARGUMENT reason MESSAGE_REFUSED,
//     RESOURCE_EXHAUSTED reason LIMIT_EXCEEDED: none of them was started);
//     otherwise the stream's code (UNKNOWN if it ended OK), reason
//     STREAM_ENDED, ambiguous.
//   * At once: INVALID_ARGUMENT reason LIMIT_EXCEEDED when the request is
//     larger than `max_request_bytes`; RESOURCE_EXHAUSTED reason NOT_SENT
//     when `max_queued_requests` wait to be written; CANCELLED reason
//     NOT_SENT after Close or Cancel. All definite.
// By default nothing is retried: a request is written at most once. With
// `Options::resend_not_started`, a request the coordinator certainly did not
// start is sent again on a new stream instead of failing: one not written
// when its stream ended or could not be opened (the coordinator
// unreachable), and one written on a stream the coordinator ended
// SHUTTING_DOWN or LIMIT_EXCEEDED, or whose own result says SHUTTING_DOWN
// (a draining coordinator: the stream is then no longer written to, and
// still answers what it carries). With this option a new stream is written
// to only once the coordinator said it serves it (its initial metadata,
// common/execute_stream_metadata.h), so a stream that ends before that,
// even ambiguously (gRPC cancels the streams a stopping server had not yet
// taken), started nothing; a stream that is not said to be served is given
// up unwritten (a server that never says so sees its requests fail at
// their deadline, NOT_SENT). New streams are opened after a backoff
// (20 ms, doubling up to 1 s, reset once the coordinator answers), until
// the request's deadline: then it fails DEADLINE_EXCEEDED, NOT_SENT. No
// request is ever started twice by this. Send requests with an idempotency
// key to make repeating them after an ambiguous answer safe too.
//
// Streams: one at a time, opened by the first request (gRPC fail-fast: with
// the coordinator unreachable the requests fail at once, UNAVAILABLE and
// NOT_SENT). One message is written at a time; the requests submitted
// meanwhile go together in the next message, at most
// `max_requests_per_message` requests and about `max_message_bytes` bytes.
// When a stream ends, the next request (or one still queued) opens a new
// one, unless the stream ended without the coordinator ever answering (then
// the queued requests fail too). A stream on which written requests wait
// (answered or failed on their deadline or not) but nothing came for a whole
// `deadline` is cancelled as dead, failing its unanswered requests
// (ambiguous): keep `deadline` above the transactions' own timeout. Create
// the channel with CreateCoordinatorChannel (client/coordinator_channel.h):
// its keepalive pings find a dead connection within seconds.
//
// Threading: the client drives its calls on a completion queue: a loop of
// its own, or the caller's (every tag the client posts there is a
// CompletionQueueLoop::Handler whose OnEvent the queue's thread must call).
// `done` runs on that queue's thread, or on the thread calling
// ExecuteAsync/Cancel/the destructor when the request fails there; it must
// not block, and may call ExecuteAsync, but must not destroy the client.
// Thread-safe otherwise.
#ifndef TWOPC_CLIENT_EXECUTE_STREAM_CLIENT_H_
#define TWOPC_CLIENT_EXECUTE_STREAM_CLIENT_H_

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/completion_queue_loop.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::client {

class ExecuteStreamClient {
 public:
  // Out-of-range values are brought into range (e.g. more than 1,024
  // requests per message become 1,024).
  struct Options {
    // A request without a result this long after ExecuteAsync fails
    // DEADLINE_EXCEEDED (ambiguous).
    absl::Duration deadline = absl::Seconds(60);
    // Packing. The coordinator takes at most 1,024 requests per message.
    int max_requests_per_message = 1024;
    // A message is closed once it holds this many bytes; a larger request
    // goes in a message of its own. Keep it well below the coordinator's
    // 8 MiB message limit.
    size_t max_message_bytes = 1 << 20;
    // Larger requests fail at once: the coordinator's gRPC message limit
    // (8 MiB) less room for the message's framing. The coordinator itself
    // refuses a transaction over --max_transaction_bytes (4 MiB by default).
    size_t max_request_bytes = (8 << 20) - 1024;
    // Requests waiting to be written (the coordinator reads a stream no
    // faster than it answers it): one more fails at once
    // RESOURCE_EXHAUSTED, NOT_SENT.
    int max_queued_requests = 65536;
    // Send requests that were certainly not started again (above), e.g.
    // across a coordinator's restart, instead of failing them.
    bool resend_not_started = false;
  };

  // The result: OK with `response.transaction()`, or the error.
  using Done =
      std::function<void(grpc::Status status, v1::ExecuteResponse response)>;

  // Drives its streams on a completion queue loop of its own.
  ExecuteStreamClient(std::shared_ptr<grpc::ChannelInterface> channel,
                      Options options);
  // Drives them on `queue`, whose thread must run every tag's OnEvent (see
  // above) until Closed().
  ExecuteStreamClient(std::shared_ptr<grpc::ChannelInterface> channel,
                      grpc::CompletionQueue* queue, Options options);

  // Cancels what is still pending (Cancel) and waits until nothing of the
  // client is left on its queue. With the caller's queue, that queue's
  // thread must still run and must not be the one destroying the client
  // unless Closed() is true.
  ~ExecuteStreamClient();

  ExecuteStreamClient(const ExecuteStreamClient&) = delete;
  ExecuteStreamClient& operator=(const ExecuteStreamClient&) = delete;

  // Sends `request` and calls `done` once with its result.
  void ExecuteAsync(v1::ExecuteRequest request, Done done);

  // Blocking ExecuteAsync. REQUIRES: not on the client's queue thread.
  grpc::Status Execute(v1::ExecuteRequest request,
                       v1::ExecuteResponse* response);

  // Graceful end: later requests fail at once (CANCELLED, NOT_SENT); the
  // requests already submitted are written, the stream is half-closed and
  // their results still come.
  void Close();
  // Abrupt end: Close, and every stream is cancelled; what is still
  // pending fails (CANCELLED; ambiguous for what was written).
  void Cancel();
  // True once closed and nothing of the client is left on its queue.
  bool Closed() const;

  // What the client has done so far (for tests and diagnostics).
  struct Counts {
    uint64_t messages_written = 0;
    uint64_t requests_written = 0;
    uint64_t streams_opened = 0;
    uint64_t streams_ended = 0;  // their end handled
    // Written requests put back in the queue (resend_not_started).
    uint64_t requests_requeued = 0;
  };
  Counts counts() const;

 private:
  static constexpr absl::Duration kFirstReopenBackoff = absl::Milliseconds(20);
  static constexpr absl::Duration kMaxReopenBackoff = absl::Seconds(1);

  enum class Event {
    kStarted,
    kServed,  // the coordinator's initial metadata (resend_not_started)
    kWritten,
    kWritesDone,
    kRead,
    kFinished
  };
  static constexpr int kEventCount = 6;
  struct Call;
  // A request without a result yet.
  using SteadyClock = std::chrono::steady_clock;
  using SteadyTime = SteadyClock::time_point;
  struct Pending {
    Done done;
    SteadyTime deadline;
    Call* written_on = nullptr;  // null while queued
    // Failed on its deadline (`done` ran) after it was written; kept until
    // its call answers or ends, to find a dead call.
    bool expired = false;
    // With resend_not_started, the request once written (to send it again
    // should its call end without starting it).
    v1::ExecuteRequest written;
  };
  // A message not written yet.
  struct Queued {
    v1::ExecuteStreamRequest message;
    size_t bytes = 0;
  };
  // A result to hand to its `done` once mu_ is released.
  struct Finished {
    Done done;
    grpc::Status status;
    v1::ExecuteResponse response;
  };
  // An alarm's tag: calls (owner->*on_event)(ok).
  class AlarmTag final : public CompletionQueueLoop::Handler {
   public:
    AlarmTag(ExecuteStreamClient* owner,
             void (ExecuteStreamClient::*on_event)(bool))
        : owner_(owner), on_event_(on_event) {}
    void OnEvent(bool ok) override { (owner_->*on_event_)(ok); }

   private:
    ExecuteStreamClient* const owner_;
    void (ExecuteStreamClient::*const on_event_)(bool);
  };

  void Open() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The call may be written: starts reading it and writes what is queued.
  void Serve(Call* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the queued requests that failed on their deadline (NOT_SENT).
  void DropExpiredQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Handle(Call* call, Event event, bool ok);
  void OnRead(Call* call, std::vector<Finished>* finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnFinished(Call* call, std::vector<Finished>* finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void End(Call* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails every queued request with `status` (made NOT_SENT).
  void FailQueued(const grpc::Status& status, std::vector<Finished>* finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `request` (`bytes` serialised) to the last of `messages`, or to a
  // new one when that is full.
  void Append(uint64_t tag, v1::ExecuteRequest request, size_t bytes,
              std::deque<Queued>* messages) const;
  // Puts these written, pending requests (tags in ascending order) back at
  // the head of the queue (resend_not_started).
  void Requeue(const std::vector<uint64_t>& tags)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes nothing more on `call` (no longer current) and half-closes it,
  // so that what it carries is still answered.
  void Retire(Call* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HalfClose(Call* call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens a new call after the backoff (resend_not_started).
  void ReopenLater() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnReopen(bool ok);
  void ArmWatchdog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once closing and nothing is pending, the watchdog is no longer needed.
  void StopWatchdogIfIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ClosedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWatchdog(bool ok);
  // Runs the `done` of each, outside mu_. REQUIRES: delivering_ was raised
  // for a non-empty `finished` before mu_ was released.
  void Deliver(std::vector<Finished>* finished) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  const std::chrono::microseconds deadline_{
      absl::ToInt64Microseconds(options_.deadline)};
  const std::unique_ptr<v1::TransactionService::Stub> stub_;
  // Set when the client runs its own loop. The destructor waits until none
  // of the client's tags is left on the queue, then stops the loop.
  std::unique_ptr<CompletionQueueLoop> own_loop_;
  grpc::CompletionQueue* const queue_;

  mutable absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;  // nothing is resent then
  std::list<std::unique_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  Call* current_ ABSL_GUARDED_BY(mu_) = nullptr;  // accepts writes; may be null
  std::deque<Queued> queued_ ABSL_GUARDED_BY(mu_);
  int queued_requests_ ABSL_GUARDED_BY(mu_) = 0;  // in queued_
  // Of those, failed on their deadline (no longer in pending_).
  int expired_while_queued_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);  // tag order
  uint64_t next_tag_ ABSL_GUARDED_BY(mu_) = 1;
  AlarmTag watchdog_tag_{this, &ExecuteStreamClient::OnWatchdog};
  grpc::Alarm watchdog_ ABSL_GUARDED_BY(mu_);
  bool watchdog_armed_ ABSL_GUARDED_BY(mu_) = false;
  // resend_not_started: the next call is opened when this alarm fires.
  AlarmTag reopen_tag_{this, &ExecuteStreamClient::OnReopen};
  grpc::Alarm reopen_ ABSL_GUARDED_BY(mu_);
  bool reopen_armed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration reopen_backoff_ ABSL_GUARDED_BY(mu_) = kFirstReopenBackoff;
  // Batches of results being handed to their `done` right now.
  int delivering_ ABSL_GUARDED_BY(mu_) = 0;
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace twopc::client

#endif  // TWOPC_CLIENT_EXECUTE_STREAM_CLIENT_H_
