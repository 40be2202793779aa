// ParticipantLink: the coordinator's one long-lived ParticipantService.Link
// stream to one participant sidecar.
//
// Send() never blocks: requests are queued, and the loop's thread packs
// everything queued into one CoordinatorBatch per write, so concurrent
// transactions share messages. The stream is driven with gRPC's
// asynchronous API from a CompletionQueueLoop (common/) that every link of
// the coordinator shares: its one thread connects, writes batches (one at a
// time per link, the next packed from what queued meanwhile), reads replies
// and matches them to requests, and waits out the reconnect backoff, with no
// thread switch between reading one link's replies and writing the requests
// they cause on any link.
//
// Failure contract: every request gets exactly one answer: its reply in an
// `on_replies` call, or `on_failure` when the reply cannot come: the link is
// down (its last connection attempt failed) when the request is due to be
// written, or the stream breaks before the reply. Requests sent while a
// connection attempt is under way wait for its result. A failed request may
// or may not have reached the participant; the protocol makes that safe
// (prepares abort, phase 2 is retried, and the participant's barrier absorbs
// duplicates). The link reconnects with capped exponential backoff for as
// long as it exists.
//
// Callbacks run on the loop's thread, never inside Send, so the caller may
// hold its own lock while calling Send and take it again in a callback.
//
// Batching: Send from another thread wakes the loop at once, unless a
// WakeupBatch (common/wakeup_batch.h) is open on the calling thread: then
// it is woken when the batch closes and the link packs everything sent
// meanwhile into one write. Send from the loop's thread (a callback) is
// written after the event being handled, with everything else it sent.
//
// Thread-safety: Send, connected and in_flight may be called from any thread.
#ifndef TWOPC_COORDINATOR_PARTICIPANT_LINK_H_
#define TWOPC_COORDINATOR_PARTICIPANT_LINK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/completion_queue_loop.h"
#include "common/completion_queue_waker.h"
#include "twopc/v1/participant.grpc.pb.h"

namespace twopc::coordinator {

class ParticipantLink {
 public:
  struct Callbacks {
    // The replies of one received batch that answer requests in flight, in
    // order, each with the transaction id the link recorded for it.
    std::function<void(const std::string& participant_id,
                       absl::Span<const v1::BranchReply> replies)>
        on_replies;
    std::function<void(const std::string& participant_id,
                       const std::string& transaction_id,
                       const std::string& error)>
        on_failure;
  };

  struct Options {
    absl::Duration min_reconnect_delay = absl::Milliseconds(50);
    absl::Duration max_reconnect_delay = absl::Seconds(2);
    // Requests per CoordinatorBatch at most, and bytes (a single larger
    // request still goes alone); sidecars accept 8 MiB messages.
    int max_batch = 512;
    size_t max_batch_bytes = 4 << 20;
  };

  // Starts connecting to `endpoint` at once, on `loop` (not owned; it must
  // outlive the link).
  ParticipantLink(CompletionQueueLoop* loop, std::string participant_id,
                  std::string endpoint, uint64_t epoch, Callbacks callbacks,
                  Options options);
  ParticipantLink(CompletionQueueLoop* loop, std::string participant_id,
                  std::string endpoint, uint64_t epoch, Callbacks callbacks)
      : ParticipantLink(loop, std::move(participant_id), std::move(endpoint),
                        epoch, std::move(callbacks), Options()) {}

  // Closes the stream and waits until nothing of the link's is left on the
  // loop. Requests still queued or in flight get on_failure.
  // REQUIRES: not on the loop's thread.
  ~ParticipantLink();

  ParticipantLink(const ParticipantLink&) = delete;
  ParticipantLink& operator=(const ParticipantLink&) = delete;

  // Queues `request` (request_id is assigned here). Never blocks.
  void Send(v1::BranchRequest request) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts closing the link without waiting: no more connection attempts,
  // and every request queued, in flight or sent later fails with `reason`
  // (e.g. "participant p1 re-registered"); the destructor waits for the
  // rest. Never blocks. Only the first call's reason counts.
  void Stop(std::string reason) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& participant_id() const { return participant_id_; }
  const std::string& endpoint() const { return endpoint_; }
  bool connected() const ABSL_LOCKS_EXCLUDED(mu_);
  // Requests written and not answered yet.
  size_t in_flight() const ABSL_LOCKS_EXCLUDED(mu_);
  // The last connection error, empty while connected.
  std::string last_error() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Stream =
      grpc::ClientAsyncReaderWriter<v1::CoordinatorBatch, v1::ParticipantBatch>;
  // What an event of the link's on the loop stands for: kFlush is run from
  // the loop's thread itself (RunSoon), the others come through the queue.
  // Each stream operation has at most one outstanding.
  enum Event {
    kWoken,
    kFlush,
    kRetryDue,
    kStarted,
    kWritten,
    kRead,
    kFinished,
    kEvents
  };
  void Handle(Event event, bool ok);
  CompletionQueueLoop::Handler* Tag(Event event) { return tags_.Tag(event); }

  // Opens a stream; once started it sends the hello, and the participant's
  // answer (kRead) makes the link connected.
  void StartConnection() ABSL_LOCKS_EXCLUDED(mu_);
  void OnStarted();
  // Clears outgoing_ to a batch with this link's header and no requests.
  void StartOutgoing();
  void OnHello() ABSL_LOCKS_EXCLUDED(mu_);
  void OnReplies() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes what is queued when the stream is ready for it, or fails it when
  // the link is down.
  void WriteQueued() ABSL_LOCKS_EXCLUDED(mu_);
  // A stream operation failed: asks for the stream's status (once).
  // `call_ended`: a read failed, so the call is over and its status is the
  // peer's (or the transport's); otherwise the call is cancelled first, so
  // that whatever else is outstanding comes back.
  void OnBroken(bool call_ended) ABSL_LOCKS_EXCLUDED(mu_);
  // Once the status is in and no operation is outstanding: the link is
  // down, what was in flight fails, and the next attempt is scheduled.
  void MaybeClosed() ABSL_LOCKS_EXCLUDED(mu_);
  // Once stopping and no stream or timer of the link's is left on the
  // loop, lets the destructor go on; `woken`: the event was a wake-up (one
  // the destructor may wait for). The last thing an event does.
  void MaybeQuiesce(bool woken) ABSL_LOCKS_EXCLUDED(mu_);
  void FailAll(std::map<uint64_t, std::string> requests,
               const std::string& error);

  const std::string participant_id_;
  const std::string endpoint_;
  const uint64_t epoch_;
  const Callbacks callbacks_;
  const Options options_;
  std::unique_ptr<v1::ParticipantService::Stub> stub_;
  CompletionQueueLoop* const loop_;
  CompletionQueueLoop::EventTags<ParticipantLink, Event, kEvents> tags_{
      this, &ParticipantLink::Handle};
  // Wakes the loop for requests queued and for Stop. Shared with
  // WakeupBatch, which may hold it past the link's end (it is closed then).
  const std::shared_ptr<CompletionQueueWaker> waker_;

  mutable absl::Mutex mu_;
  enum class State { kConnecting, kConnected, kDown };
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_) = State::kConnecting;
  std::string last_error_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<v1::BranchRequest> queue_ ABSL_GUARDED_BY(mu_);  // to write
  // request_id -> transaction_id of requests written, not yet answered.
  std::map<uint64_t, std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  // The current stream's context (Stop cancels it from any thread).
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  // No stream or timer of the link's is left on the loop (after Stop). Its
  // waker stays open until the destructor closes it.
  bool quiesced_ ABSL_GUARDED_BY(mu_) = false;
  // The destructor closed the waker while a wake-up was on its way.
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;

  // The loop's thread only: the current stream and its operations.
  bool started_ = false;  // the first connection attempt was made
  std::unique_ptr<Stream> stream_;
  int outstanding_ = 0;      // stream operations not yet come back
  bool writing_ = false;     // a Write is outstanding
  bool hello_done_ = false;  // the participant answered the hello
  bool finishing_ = false;   // Finish was asked for
  bool finished_ = false;    // ... and came back with status_
  grpc::Status status_;
  std::string refusal_;  // why we closed the stream ourselves, if we did
  v1::CoordinatorBatch outgoing_;
  v1::ParticipantBatch incoming_;
  absl::Time connected_at_;
  // Reconnect backoff: the next delay, and the timer waiting it out.
  absl::Duration delay_;
  std::mt19937_64 rng_;
  grpc::Alarm retry_timer_;
  bool retry_pending_ = false;
  bool retry_cancelled_ = false;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_PARTICIPANT_LINK_H_
