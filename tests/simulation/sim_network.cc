#include "tests/simulation/sim_network.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/simulation/sim_random.h"

namespace twopc::simulation {
namespace {

std::string DescribeRequest(const v1::BranchRequest& request) {
  switch (request.op_case()) {
    case v1::BranchRequest::kPrepare:
      return absl::StrCat("prepare ", request.transaction_id());
    case v1::BranchRequest::kCommit:
      return absl::StrCat("commit ", request.transaction_id());
    case v1::BranchRequest::kAbort:
      return absl::StrCat("abort ", request.transaction_id());
    case v1::BranchRequest::OP_NOT_SET:
      break;
  }
  return absl::StrCat("empty request ", request.transaction_id());
}

std::string DescribeReply(const v1::BranchReply& reply) {
  switch (reply.result_case()) {
    case v1::BranchReply::kVote:
      return absl::StrCat(v1::Vote_Name(reply.vote()), " ",
                          reply.transaction_id());
    case v1::BranchReply::kAck:
      return absl::StrCat(v1::BranchReply::Ack_Name(reply.ack()), " ",
                          reply.transaction_id());
    case v1::BranchReply::kError:
      return absl::StrCat("error ", reply.transaction_id(), ": ",
                          reply.error().message());
    case v1::BranchReply::RESULT_NOT_SET:
      break;
  }
  return absl::StrCat("empty reply ", reply.transaction_id());
}

struct PayloadDescriber {
  std::string operator()(const BranchRequestMsg& m) const {
    return absl::StrCat(DescribeRequest(m.request), " (epoch ", m.epoch, ")");
  }
  std::string operator()(const BranchReplyMsg& m) const {
    return DescribeReply(m.reply);
  }
  std::string operator()(const DeliveryFailureMsg& m) const {
    return absl::StrCat("delivery failure ", m.transaction_id);
  }
  std::string operator()(const OutcomeQueryMsg& m) const {
    return absl::StrCat("query outcomes of ",
                        absl::StrJoin(m.transaction_ids, ","));
  }
  std::string operator()(const OutcomeAnswerMsg& m) const {
    std::string text = "outcomes";
    for (const auto& [id, outcome] : m.outcomes) {
      absl::StrAppend(&text, " ", id, "=", v1::Outcome_Name(outcome));
    }
    return text;
  }
};

}  // namespace

std::string NodeName(NodeId node) {
  return node == kCoordinator ? "coordinator" : ParticipantId(node);
}

std::string ParticipantId(NodeId node) { return absl::StrCat("p", node); }

std::optional<NodeId> ParticipantNode(const std::string& participant_id) {
  int node = 0;
  if (participant_id.size() < 2 || participant_id[0] != 'p' ||
      !absl::SimpleAtoi(participant_id.substr(1), &node) || node < 0) {
    return std::nullopt;
  }
  return node;
}

std::string Message::Describe() const {
  return absl::StrCat(NodeName(from), "->", NodeName(to), " ",
                      std::visit(PayloadDescriber(), payload));
}

SimNetwork::SimNetwork(std::mt19937_64* rng, Trace* trace)
    : rng_(rng), trace_(trace) {}

absl::Duration SimNetwork::RandomDelay() {
  return RandomDuration(*rng_, absl::ZeroDuration(), faults_.max_delay);
}

void SimNetwork::Send(Message message, absl::Time now) {
  message.from_incarnation = node(message.from).incarnation;
  const NodeState& receiver = node(message.to);
  if (message.to_incarnation == 0) {
    message.to_incarnation = receiver.incarnation;
  }
  if (!receiver.up || message.to_incarnation != receiver.incarnation) {
    Lose(message, now, "receiver gone");
    return;
  }
  // Delivery failures come from the coordinator's own link: never lost.
  const bool local =
      std::holds_alternative<DeliveryFailureMsg>(message.payload);
  if (!local && Chance(*rng_, faults_.loss)) {
    Lose(message, now, "lost");
    return;
  }
  if (!local && Chance(*rng_, faults_.duplicate)) {
    Message copy = message;
    copy.deliver_at = now + RandomDelay();
    if (trace_->enabled()) trace_->Note("  duplicated ", copy.Describe());
    in_flight_.push_back(std::move(copy));
  }
  message.deliver_at = now + RandomDelay();
  in_flight_.push_back(std::move(message));
}

void SimNetwork::Lose(const Message& message, absl::Time now, const char* why) {
  if (trace_->enabled()) trace_->Note("  ", why, ": ", message.Describe());
  std::string transaction_id;
  uint64_t coordinator_incarnation = 0;
  if (const auto* request = std::get_if<BranchRequestMsg>(&message.payload)) {
    transaction_id = request->request.transaction_id();
    coordinator_incarnation = message.from_incarnation;
  } else if (const auto* reply =
                 std::get_if<BranchReplyMsg>(&message.payload)) {
    transaction_id = reply->reply.transaction_id();
    coordinator_incarnation = message.to_incarnation;
  } else {
    return;
  }
  if (!Chance(*rng_, faults_.failure_notice)) return;
  const NodeId participant =
      message.to == kCoordinator ? message.from : message.to;
  Send(Message{.from = participant,
               .to = kCoordinator,
               .from_incarnation = 0,
               .to_incarnation = coordinator_incarnation,
               .deliver_at = now,
               .payload = DeliveryFailureMsg{transaction_id}},
       now);
}

bool SimNetwork::HasDue(absl::Time now) const {
  return std::any_of(in_flight_.begin(), in_flight_.end(),
                     [now](const Message& m) { return m.deliver_at <= now; });
}

Message SimNetwork::TakeDue(absl::Time now) {
  std::vector<size_t> due;
  for (size_t i = 0; i < in_flight_.size(); ++i) {
    if (in_flight_[i].deliver_at <= now) due.push_back(i);
  }
  const size_t pick = PickOne(*rng_, due);
  Message message = std::move(in_flight_[pick]);
  in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(pick));
  return message;
}

std::optional<absl::Time> SimNetwork::NextDue() const {
  std::optional<absl::Time> next;
  for (const Message& m : in_flight_) {
    if (!next.has_value() || m.deliver_at < *next) next = m.deliver_at;
  }
  return next;
}

void SimNetwork::Crash(NodeId id, absl::Time now) {
  NodeState& state = node(id);
  state.up = false;
  ++state.incarnation;
  std::vector<Message> kept;
  std::vector<Message> lost;
  for (Message& m : in_flight_) {
    (m.to == id ? lost : kept).push_back(std::move(m));
  }
  in_flight_ = std::move(kept);
  for (const Message& m : lost) Lose(m, now, "receiver crashed");
}

void SimNetwork::Restart(NodeId id) { node(id).up = true; }

}  // namespace twopc::simulation
