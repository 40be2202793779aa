// SimClients: the applications calling the simulated coordinator, one
// client per planned transaction. A client begins its transaction; a
// one-shot client calls Commit at once, an interactive one in a later call
// (or aborts it, or never commits and lets the deadline abort it). A client
// waits for Commit's answer; when the coordinator that had the call
// crashes, the answer is lost (UNAVAILABLE) and the client calls Commit
// again, which also asks for the outcome of a transaction already decided.
// An impatient client may Abort while it waits. Every outcome a client is
// told goes to the InvariantChecker.
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_CLIENTS_H_
#define TWOPC_TESTS_SIMULATION_SIM_CLIENTS_H_

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/simulation/invariant_checker.h"
#include "tests/simulation/sim_coordinator.h"
#include "tests/simulation/sim_trace.h"

namespace twopc::simulation {

// A transaction as its client will run it.
struct ClientPlan {
  std::vector<PlannedBranch> branches;
  // Begin, then Commit in a later call (or never: the deadline aborts).
  bool interactive = false;
  absl::Duration timeout;
};

class SimClients {
 public:
  // Pointers must outlive the clients.
  SimClients(std::vector<ClientPlan> plans, SimCoordinator* coordinator,
             InvariantChecker* checker, std::mt19937_64* rng, Trace* trace);

  // Some client has a call to make now. REQUIRES (also below): the
  // coordinator is up.
  bool HasWork() const { return !WithWork().empty(); }
  // Some client waits for Commit's answer.
  bool HasWaiting() const { return !Waiting().empty(); }
  // A random client with work makes its call: Begin (and Commit when
  // one-shot), Commit or Abort when interactive, Commit again after a
  // crash. REQUIRES: HasWork().
  void Act();
  // A random waiting client gives up and calls Abort.
  // REQUIRES: HasWaiting().
  void GiveUp();

  // Ids of the transactions that began.
  std::vector<std::string> BegunIds() const;

 private:
  struct Client {
    ClientPlan plan;
    // Set by Begin.
    std::string id;
    // Epoch of the coordinator that has this client's Commit call (0: none).
    uint64_t commit_epoch = 0;
    // Told the outcome: done.
    bool told = false;
  };

  std::vector<size_t> WithWork() const;
  std::vector<size_t> Waiting() const;
  std::vector<size_t> Where(
      const std::function<bool(const Client&)>& predicate) const;
  void Begin(Client& client);
  void Commit(size_t index);
  void Abort(Client& client);

  SimCoordinator* const coordinator_;
  InvariantChecker* const checker_;
  std::mt19937_64* const rng_;
  Trace* const trace_;
  std::vector<Client> clients_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_CLIENTS_H_
