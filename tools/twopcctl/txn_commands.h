// twopcctl's `txn` and `audit` commands: run, inspect and repair
// transactions (AdminService and TransactionService).
#ifndef TWOPC_TOOLS_TWOPCCTL_TXN_COMMANDS_H_
#define TWOPC_TOOLS_TWOPCCTL_TXN_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "tools/twopcctl/cli.h"

namespace twopc::ctl {

// Adds `txn ...` and `audit list` to `app`. The chosen command sets
// *exit_code when it runs (during app.parse). Keeps the parsed flags, so it
// must outlive the parse.
class TxnCommands {
 public:
  TxnCommands(CLI::App* app, const GlobalFlags* flags, int* exit_code);

  struct Exec {
    std::vector<std::string> messages;
    std::vector<std::string> ops;
    std::vector<std::string> labels;
    std::string idempotency_key;
    double timeout_seconds = 0;
  };
  struct List {
    std::vector<std::string> states;
    std::string older_than;
    std::string participant;
    std::vector<std::string> labels;
    bool parked = false;
    uint32_t limit = 50;
    std::string page_token;
  };
  // retry / park / unpark / force-commit / force-abort.
  struct Operator {
    std::string id;
    std::string reason;
    std::string operator_name;
  };

 private:
  const GlobalFlags* const flags_;
  Exec exec_;
  List list_;
  Operator operator_;
  std::string id_;
  bool by_key_ = false;
  std::string older_than_ = "30s";
};

}  // namespace twopc::ctl

#endif  // TWOPC_TOOLS_TWOPCCTL_TXN_COMMANDS_H_
