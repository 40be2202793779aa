// The messages between the simulated coordinator and participants, and the
// network that carries them: it loses, duplicates, delays and reorders
// messages, all decided by the schedule's one random generator.
//
// Connections belong to incarnations: when a node crashes, everything on its
// way to it is lost, and an answer addressed to an incarnation that has
// crashed since is lost too (its stream is gone). Like the real participant
// link, a branch request or reply that is lost may be reported to the
// coordinator as a delivery failure ("the request may or may not have been
// processed"), or not at all (a frozen peer: only deadlines and retries
// help).
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_NETWORK_H_
#define TWOPC_TESTS_SIMULATION_SIM_NETWORK_H_

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "tests/simulation/sim_trace.h"
#include "twopc/v1/participant.pb.h"

namespace twopc::simulation {

// A node of the simulation: the coordinator or participant 0..N-1.
using NodeId = int;
inline constexpr NodeId kCoordinator = -1;

// "coordinator", "p0", "p1", ...
std::string NodeName(NodeId node);
// The participant id the protocol uses for participant `node` ("p0", ...).
std::string ParticipantId(NodeId node);
// The inverse of ParticipantId; nullopt for anything else.
std::optional<NodeId> ParticipantNode(const std::string& participant_id);

// Coordinator -> participant: a branch request of coordinator `epoch`.
struct BranchRequestMsg {
  uint64_t epoch = 0;
  v1::BranchRequest request;
};
// Participant -> coordinator: the answer to a branch request.
struct BranchReplyMsg {
  v1::BranchReply reply;
};
// Link layer -> coordinator: a branch request to `participant` got no
// answer; it may or may not have been processed.
struct DeliveryFailureMsg {
  std::string transaction_id;
};
// Participant -> coordinator: QueryOutcomes for in-doubt branches.
struct OutcomeQueryMsg {
  std::vector<std::string> transaction_ids;
};
// Coordinator -> participant: the answers to an OutcomeQueryMsg.
struct OutcomeAnswerMsg {
  std::vector<std::pair<std::string, v1::Outcome>> outcomes;
};

using Payload =
    std::variant<BranchRequestMsg, BranchReplyMsg, DeliveryFailureMsg,
                 OutcomeQueryMsg, OutcomeAnswerMsg>;

struct Message {
  NodeId from = kCoordinator;
  NodeId to = kCoordinator;
  // Incarnations of both ends. Send stamps `from_incarnation`, and
  // `to_incarnation` unless set (an answer is addressed to the incarnation
  // that asked).
  uint64_t from_incarnation = 0;
  uint64_t to_incarnation = 0;
  absl::Time deliver_at;
  Payload payload;

  // One line for traces, e.g. "coordinator->p1 prepare 1-3 (epoch 1)".
  std::string Describe() const;
};

struct NetworkFaults {
  // Probability that a message is lost.
  double loss = 0;
  // Probability that a message is delivered twice (independent delays).
  double duplicate = 0;
  // Delays are uniform in [0, max_delay].
  absl::Duration max_delay = absl::ZeroDuration();
  // Probability that a lost branch request or reply is reported to the
  // coordinator as a delivery failure.
  double failure_notice = 0.5;
};

class SimNetwork {
 public:
  // `rng` and `trace` must outlive the network.
  SimNetwork(std::mt19937_64* rng, Trace* trace);

  void set_faults(const NetworkFaults& faults) { faults_ = faults; }

  // Queues `message` for delivery after a random delay; it may be lost
  // (now, or later if its receiver crashes) or duplicated. A message to a
  // node that is down is lost at once.
  void Send(Message message, absl::Time now);

  // Whether some message is due at `now`.
  bool HasDue(absl::Time now) const;
  // Takes one of the messages due at `now`, chosen at random (that is the
  // reordering). REQUIRES: HasDue(now).
  Message TakeDue(absl::Time now);
  // When the next message becomes due; nullopt when none is in flight.
  std::optional<absl::Time> NextDue() const;
  size_t in_flight() const { return in_flight_.size(); }

  // `node` crashed: its connections are gone, nothing more reaches it.
  void Crash(NodeId node, absl::Time now);
  // `node` runs again, as a new incarnation.
  void Restart(NodeId node);

 private:
  struct NodeState {
    bool up = true;
    uint64_t incarnation = 1;
  };

  absl::Duration RandomDelay();
  // `message` is lost: maybe tell the coordinator, as the link would.
  void Lose(const Message& message, absl::Time now, const char* why);
  NodeState& node(NodeId id) { return nodes_[id]; }

  std::mt19937_64* const rng_;
  Trace* const trace_;
  NetworkFaults faults_;
  std::map<NodeId, NodeState> nodes_;
  std::vector<Message> in_flight_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_NETWORK_H_
