// ParticipantLink: the coordinator's one long-lived ParticipantService.Link
// stream to one participant sidecar.
//
// Send() never blocks: requests are queued, and a writer thread packs
// everything queued into one CoordinatorBatch per write, so concurrent
// transactions share messages. A reader thread matches replies to requests.
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
// Callbacks run on the link's threads, never inside Send, so the caller may
// hold its own lock while calling Send and take it again in a callback.
//
// Batching: Send wakes the writer at once, unless a WakeupBatch
// (common/wakeup_batch.h) is open on the calling thread: then the writer is
// woken when the batch closes and packs everything sent meanwhile into one
// write. The link opens one itself around the replies of each received
// batch, so the requests its callbacks send go out together.
//
// Thread-safety: Send, connected and in_flight may be called from any thread.
#ifndef TWOPC_COORDINATOR_PARTICIPANT_LINK_H_
#define TWOPC_COORDINATOR_PARTICIPANT_LINK_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/wakeup_batch.h"
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

  // Starts connecting to `endpoint` at once.
  ParticipantLink(std::string participant_id, std::string endpoint,
                  uint64_t epoch, Callbacks callbacks, Options options);
  ParticipantLink(std::string participant_id, std::string endpoint,
                  uint64_t epoch, Callbacks callbacks)
      : ParticipantLink(std::move(participant_id), std::move(endpoint), epoch,
                        std::move(callbacks), Options()) {}

  // Closes the stream and joins the threads. Requests still queued or in
  // flight get on_failure.
  ~ParticipantLink();

  ParticipantLink(const ParticipantLink&) = delete;
  ParticipantLink& operator=(const ParticipantLink&) = delete;

  // Queues `request` (request_id is assigned here). Never blocks.
  void Send(v1::BranchRequest request) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts closing the link without waiting: no more connection attempts;
  // the destructor joins the threads. Never blocks.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& participant_id() const { return participant_id_; }
  const std::string& endpoint() const { return endpoint_; }
  bool connected() const ABSL_LOCKS_EXCLUDED(mu_);
  // Requests written and not answered yet.
  size_t in_flight() const ABSL_LOCKS_EXCLUDED(mu_);
  // The last connection error, empty while connected.
  std::string last_error() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Stream =
      grpc::ClientReaderWriter<v1::CoordinatorBatch, v1::ParticipantBatch>;

  void ReaderLoop();
  void WriterLoop();
  // Opens a stream and waits for the participant's hello. On success the
  // link is connected.
  bool Connect() ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes the writer to look at the queue and state again.
  void WakeWriterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writer_wakeup_->cv.Signal();
  }
  // Marks the stream broken and fails every in-flight request.
  void Disconnect(const std::string& error) ABSL_LOCKS_EXCLUDED(mu_);
  void FailAll(std::map<uint64_t, std::string> requests,
               const std::string& error);

  const std::string participant_id_;
  const std::string endpoint_;
  const uint64_t epoch_;
  const Callbacks callbacks_;
  const Options options_;
  std::unique_ptr<v1::ParticipantService::Stub> stub_;

  mutable absl::Mutex mu_;
  // Signalled (with or without mu_) whenever the writer may have work:
  // requests queued, a state change, stopping. Shared with WakeupBatch,
  // which may hold it past the link's end (waking it then is harmless).
  const std::shared_ptr<CondVarWaker> writer_wakeup_ =
      std::make_shared<CondVarWaker>();
  enum class State { kConnecting, kConnected, kDown };
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  State state_ ABSL_GUARDED_BY(mu_) = State::kConnecting;
  std::string last_error_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<v1::BranchRequest> queue_ ABSL_GUARDED_BY(mu_);
  // request_id -> transaction_id of requests written, not yet answered.
  std::map<uint64_t, std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  // The current stream; the writer holds `writing_` while it uses it.
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;

  std::thread reader_;
  std::thread writer_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_PARTICIPANT_LINK_H_
