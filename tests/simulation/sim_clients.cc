#include "tests/simulation/sim_clients.h"

#include <utility>

#include "tests/simulation/sim_random.h"

namespace twopc::simulation {
namespace {

// Of interactive transactions: aborted by the client instead of committed.
constexpr double kInteractiveAbortChance = 0.1;

}  // namespace

SimClients::SimClients(std::vector<ClientPlan> plans,
                       SimCoordinator* coordinator, InvariantChecker* checker,
                       std::mt19937_64* rng, Trace* trace)
    : coordinator_(coordinator), checker_(checker), rng_(rng), trace_(trace) {
  for (ClientPlan& plan : plans) {
    clients_.push_back(
        {.plan = std::move(plan), .id = "", .commit_epoch = 0, .told = false});
  }
}

std::vector<size_t> SimClients::WithWork() const {
  return Where([this](const Client& client) {
    return client.commit_epoch != coordinator_->epoch();
  });
}

std::vector<size_t> SimClients::Waiting() const {
  return Where([this](const Client& client) {
    return !client.id.empty() && client.commit_epoch == coordinator_->epoch();
  });
}

std::vector<size_t> SimClients::Where(
    const std::function<bool(const Client&)>& predicate) const {
  std::vector<size_t> indexes;
  for (size_t i = 0; i < clients_.size(); ++i) {
    if (!clients_[i].told && predicate(clients_[i])) indexes.push_back(i);
  }
  return indexes;
}

void SimClients::Act() {
  const size_t index = PickOne(*rng_, WithWork());
  Client& client = clients_[index];
  if (client.id.empty()) {
    Begin(client);
    if (!client.plan.interactive) Commit(index);
  } else if (client.commit_epoch == 0 &&
             Chance(*rng_, kInteractiveAbortChance)) {
    Abort(client);
  } else {
    Commit(index);
  }
}

void SimClients::GiveUp() { Abort(clients_[PickOne(*rng_, Waiting())]); }

std::vector<std::string> SimClients::BegunIds() const {
  std::vector<std::string> ids;
  for (const Client& client : clients_) {
    if (!client.id.empty()) ids.push_back(client.id);
  }
  return ids;
}

void SimClients::Begin(Client& client) {
  std::vector<v1::Branch> branches;
  for (const PlannedBranch& planned : client.plan.branches) {
    v1::Branch& branch = branches.emplace_back();
    branch.set_participant_id(ParticipantId(planned.participant));
    branch.set_payload(v1::Vote_Name(planned.vote));
  }
  client.id = coordinator_->Begin(branches, client.plan.timeout);
  trace_->Note("  client began ", client.id);
  checker_->AddTransaction(client.id, client.plan.branches);
}

void SimClients::Commit(size_t index) {
  Client& client = clients_[index];
  client.commit_epoch = coordinator_->epoch();
  trace_->Note("  client commits ", client.id);
  coordinator_->Commit(
      client.id, [this, index](const std::string& id, v1::Outcome outcome) {
        clients_[index].told = true;
        trace_->Note("  client told ", id, " ", v1::Outcome_Name(outcome));
        checker_->OnClientTold(id, outcome, "Commit");
      });
}

void SimClients::Abort(Client& client) {
  const absl::Status status = coordinator_->Abort(client.id);
  trace_->Note("  client aborts ", client.id, ": ", status.ToString());
  if (status.ok()) {
    client.told = true;
    checker_->OnClientTold(client.id, v1::OUTCOME_ABORTED, "Abort");
  } else if (absl::IsFailedPrecondition(status)) {
    client.told = true;
    checker_->OnClientTold(client.id, v1::OUTCOME_COMMITTED, "Abort refused");
  }
}

}  // namespace twopc::simulation
