#include "tools/bench/load_generator.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tools/bench/precise_alarm.h"

namespace twopc::bench {
namespace {

using Clock = std::chrono::steady_clock;

// How often a closed-loop thread wakes up to see whether it should stop.
constexpr Clock::duration kStopCheckInterval = std::chrono::milliseconds(20);

}  // namespace

void LoadCounters::Count(CallOutcome outcome, const PendingCall& call) {
  switch (outcome) {
    case CallOutcome::kCommitted:
      ++committed;
      return;
    case CallOutcome::kAbortedAsIntended:
      ++aborted_as_intended;
      return;
    case CallOutcome::kConflict:
      ++conflicts;
      break;
    case CallOutcome::kAbortedUnexpectedly:
      ++aborted_unexpectedly;
      break;
    case CallOutcome::kCommittedUnexpectedly:
      ++committed_unexpectedly;
      break;
    case CallOutcome::kFailed:
      ++failed;
      break;
  }
  if (first_error.empty()) first_error = call.Error();
}

void LoadCounters::Add(const LoadCounters& other) {
  committed += other.committed;
  aborted_as_intended += other.aborted_as_intended;
  conflicts += other.conflicts;
  aborted_unexpectedly += other.aborted_unexpectedly;
  committed_unexpectedly += other.committed_unexpectedly;
  failed += other.failed;
  skipped += other.skipped;
  if (first_error.empty()) first_error = other.first_error;
}

// One thread with its completion queue, its share of the clients and, in
// open loop, its share of the rate. The loop state (slots, clients, the
// tick alarm) is touched only by the thread; the counters are shared with
// the generator under mu_.
class LoadGenerator::ClientThread {
 public:
  ClientThread(Workload* workload, const LoadOptions& options, int index,
               const std::atomic<RunState>* run_state);
  ~ClientThread() { Join(); }

  // Returns once the thread has shut its queue down (after the run state
  // left kRunning and every call in flight ended).
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  void OpenWindow() ABSL_LOCKS_EXCLUDED(mu_);
  void MoveWindowInto(LoadWindow* window) ABSL_LOCKS_EXCLUDED(mu_);
  void AddTotalsTo(LoadCounters* totals) const ABSL_LOCKS_EXCLUDED(mu_);
  void AddWindowLatencyTo(LatencyHistogram* latency) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Client {
    int id = 0;
    uint64_t next_sequence = 0;
  };
  // A call in flight (closed loop: one per client, for good); the call's
  // `done` event.
  struct Slot final : QueueEvent {
    void OnEvent(bool) override { thread->Complete(this); }
    ClientThread* thread = nullptr;
    Client* client = nullptr;
    std::unique_ptr<PendingCall> call;
    Clock::time_point start;
  };
  struct Tick final : QueueEvent {
    void OnEvent(bool) override { thread->OnTick(); }
    ClientThread* thread = nullptr;
  };

  bool open_loop() const { return interval_ != Clock::duration::zero(); }
  void Run();
  void Send(Slot* slot, Client* client, Clock::time_point start);
  void Complete(Slot* slot);
  void OnTick();
  void SendDueCalls();
  // When stopping (after every event): cancels (once) if asked, and shuts
  // the queue down once nothing is in flight, the workload released the
  // queue and no tick is pending.
  void WindDown();
  void ArmTick(Clock::time_point at);
  void Record(CallOutcome outcome, const PendingCall& call,
              Clock::duration latency) ABSL_LOCKS_EXCLUDED(mu_);
  // Open loop, once per tick: the calls sent late and the skipped ones.
  void RecordSends(const std::vector<Clock::duration>& send_delays,
                   uint64_t skipped) ABSL_LOCKS_EXCLUDED(mu_);

  Workload* const workload_;
  const std::atomic<RunState>* const run_state_;
  // Zero in closed loop.
  const Clock::duration interval_;

  grpc::CompletionQueue cq_;
  // Open loop: sends fall due on it, so it must fire on time.
  PreciseAlarm tick_;
  Tick tick_event_;
  bool tick_pending_ = false;
  bool cancelled_ = false;
  bool shut_down_ = false;
  std::vector<Client> clients_;
  std::vector<Slot> slots_;
  std::vector<Slot*> free_slots_;  // open loop
  size_t next_client_ = 0;         // open loop, round robin
  Clock::time_point next_due_;     // open loop
  // Open loop: SendDueCalls' scratch, kept to reuse its memory.
  std::vector<Clock::duration> send_delays_;
  int in_flight_ = 0;

  mutable absl::Mutex mu_;
  LoadCounters totals_ ABSL_GUARDED_BY(mu_);
  bool window_open_ ABSL_GUARDED_BY(mu_) = false;
  LoadCounters window_ ABSL_GUARDED_BY(mu_);
  LatencyHistogram window_latency_ ABSL_GUARDED_BY(mu_);
  LatencyHistogram window_send_delay_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;  // last: starts once everything above is ready
};

LoadGenerator::ClientThread::ClientThread(
    Workload* workload, const LoadOptions& options, int index,
    const std::atomic<RunState>* run_state)
    : workload_(workload),
      run_state_(run_state),
      interval_(options.rate > 0 ? std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(
                                           options.threads / options.rate))
                                 : Clock::duration::zero()) {
  tick_event_.thread = this;
  for (int id = index; id < options.clients; id += options.threads) {
    clients_.push_back(Client{.id = id, .next_sequence = 0});
  }
  if (open_loop()) {
    slots_.resize(std::max(1, options.max_outstanding / options.threads));
    for (Slot& slot : slots_) free_slots_.push_back(&slot);
  } else {
    slots_.resize(clients_.size());
    for (size_t i = 0; i < clients_.size(); ++i) {
      slots_[i].client = &clients_[i];
    }
  }
  for (Slot& slot : slots_) slot.thread = this;
  thread_ = std::thread([this] { Run(); });
}

void LoadGenerator::ClientThread::Run() {
  const Clock::time_point now = Clock::now();
  if (open_loop()) {
    next_due_ = now;
    SendDueCalls();
  } else {
    for (Slot& slot : slots_) Send(&slot, slot.client, now);
    ArmTick(now + kStopCheckInterval);
  }
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
    static_cast<QueueEvent*>(tag)->OnEvent(ok);
    if (run_state_->load() != RunState::kRunning) WindDown();
  }
}

void LoadGenerator::ClientThread::Send(Slot* slot, Client* client,
                                       Clock::time_point start) {
  slot->client = client;
  slot->start = start;
  slot->call =
      workload_->Start(client->id, client->next_sequence++, &cq_, slot);
  ++in_flight_;
}

void LoadGenerator::ClientThread::Complete(Slot* slot) {
  const Clock::time_point now = Clock::now();
  Record(slot->call->Outcome(), *slot->call, now - slot->start);
  slot->call.reset();
  --in_flight_;
  if (run_state_->load() != RunState::kRunning) {
    return;  // the loop winds down
  } else if (open_loop()) {
    free_slots_.push_back(slot);
  } else {
    Send(slot, slot->client, now);
  }
}

void LoadGenerator::ClientThread::OnTick() {
  tick_pending_ = false;
  if (run_state_->load() != RunState::kRunning) {
    return;  // the loop winds down
  } else if (open_loop()) {
    SendDueCalls();
  } else {
    ArmTick(Clock::now() + kStopCheckInterval);
  }
}

void LoadGenerator::ClientThread::SendDueCalls() {
  uint64_t skipped = 0;
  send_delays_.clear();
  for (const Clock::time_point now = Clock::now(); next_due_ <= now;
       next_due_ += interval_) {
    if (free_slots_.empty()) {
      ++skipped;
      continue;
    }
    Slot* slot = free_slots_.back();
    free_slots_.pop_back();
    send_delays_.push_back(now - next_due_);
    Send(slot, &clients_[next_client_], next_due_);
    next_client_ = (next_client_ + 1) % clients_.size();
  }
  RecordSends(send_delays_, skipped);
  ArmTick(next_due_);
}

void LoadGenerator::ClientThread::RecordSends(
    const std::vector<Clock::duration>& send_delays, uint64_t skipped) {
  absl::MutexLock lock(&mu_);
  totals_.skipped += skipped;
  if (!window_open_) return;
  window_.skipped += skipped;
  for (Clock::duration delay : send_delays) {
    window_send_delay_.Record(absl::FromChrono(delay));
  }
}

void LoadGenerator::ClientThread::WindDown() {
  if (shut_down_) return;
  if (run_state_->load() == RunState::kCancelling && !cancelled_) {
    cancelled_ = true;
    for (Slot& slot : slots_) {
      if (slot.call != nullptr) slot.call->Cancel();
    }
  }
  if (in_flight_ > 0) {
    if (!tick_pending_) ArmTick(Clock::now() + kStopCheckInterval);
  } else if (!workload_->Release(&cq_)) {
    // Its events come out of the queue and land here again.
  } else if (tick_pending_) {
    tick_.Cancel();  // its tag comes back at once and lands here again
  } else {
    shut_down_ = true;
    cq_.Shutdown();
  }
}

void LoadGenerator::ClientThread::ArmTick(Clock::time_point at) {
  tick_pending_ = true;
  tick_.Set(&cq_, at, static_cast<QueueEvent*>(&tick_event_));
}

void LoadGenerator::ClientThread::Record(CallOutcome outcome,
                                         const PendingCall& call,
                                         Clock::duration latency) {
  absl::MutexLock lock(&mu_);
  totals_.Count(outcome, call);
  if (!window_open_) return;
  window_.Count(outcome, call);
  if (outcome == CallOutcome::kCommitted) {
    window_latency_.Record(absl::FromChrono(latency));
  }
}

void LoadGenerator::ClientThread::OpenWindow() {
  absl::MutexLock lock(&mu_);
  window_open_ = true;
  window_ = LoadCounters();
  window_latency_ = LatencyHistogram();
  window_send_delay_ = LatencyHistogram();
}

void LoadGenerator::ClientThread::MoveWindowInto(LoadWindow* window) {
  absl::MutexLock lock(&mu_);
  window_open_ = false;
  window->counters.Add(window_);
  window->latency.Merge(window_latency_);
  window->send_delay.Merge(window_send_delay_);
}

void LoadGenerator::ClientThread::AddTotalsTo(LoadCounters* totals) const {
  absl::MutexLock lock(&mu_);
  totals->Add(totals_);
}

void LoadGenerator::ClientThread::AddWindowLatencyTo(
    LatencyHistogram* latency) const {
  absl::MutexLock lock(&mu_);
  if (window_open_) latency->Merge(window_latency_);
}

LoadGenerator::LoadGenerator(Workload* workload, const LoadOptions& options) {
  // A thread without a client would have nothing to send.
  LoadOptions adjusted = options;
  adjusted.threads = std::min(options.threads, options.clients);
  for (int i = 0; i < adjusted.threads; ++i) {
    threads_.push_back(
        std::make_unique<ClientThread>(workload, adjusted, i, &run_state_));
  }
}

LoadGenerator::~LoadGenerator() { Stop(StopMode::kCancel); }

void LoadGenerator::OpenWindow() {
  window_start_ = absl::Now();
  for (auto& thread : threads_) thread->OpenWindow();
}

LoadWindow LoadGenerator::CloseWindow() {
  LoadWindow window;
  for (auto& thread : threads_) thread->MoveWindowInto(&window);
  window.elapsed = absl::Now() - window_start_;
  return window;
}

LoadCounters LoadGenerator::Totals() const {
  LoadCounters totals;
  for (const auto& thread : threads_) thread->AddTotalsTo(&totals);
  return totals;
}

absl::Duration LoadGenerator::WindowP99() const {
  LatencyHistogram latency;
  for (const auto& thread : threads_) thread->AddWindowLatencyTo(&latency);
  return latency.Percentile(0.99);
}

void LoadGenerator::Stop(StopMode mode) {
  if (stopped_) return;
  stopped_ = true;
  run_state_.store(mode == StopMode::kDrain ? RunState::kDraining
                                            : RunState::kCancelling);
  for (auto& thread : threads_) thread->Join();
}

}  // namespace twopc::bench
