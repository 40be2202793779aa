#include "tools/twopcctl/txn_commands.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::ctl {
namespace {

using google::protobuf::util::TimeUtil;

// ---------------------------------------------------------------------------
// txn exec / txn get

// Parses "PARTICIPANT OP ARGS..." (see the --op help) into `branches`.
bool ParseOp(const std::string& spec, std::vector<v1::Branch>* branches,
             std::string* error) {
  std::vector<std::string> words =
      absl::StrSplit(spec, ' ', absl::SkipWhitespace());
  if (words.size() < 3) {
    *error = "expected 'PARTICIPANT OP KEY [ARGS]'";
    return false;
  }
  v1::Branch* branch = nullptr;
  for (v1::Branch& b : *branches) {
    if (b.participant_id() == words[0]) branch = &b;
  }
  if (branch == nullptr) {
    branches->emplace_back();
    branch = &branches->back();
    branch->set_participant_id(words[0]);
  }
  v1::KvOperation* op = branch->mutable_kv()->add_operations();
  const std::string& verb = words[1];
  const std::string& key = words[2];
  if (verb == "put" && words.size() == 4) {
    op->mutable_put()->set_key(key);
    op->mutable_put()->set_value(words[3]);
  } else if (verb == "delete" && words.size() == 3) {
    op->mutable_delete_()->set_key(key);
  } else if (verb == "add" && words.size() >= 4) {
    v1::KvOperation::Add* add = op->mutable_add();
    add->set_key(key);
    int64_t value = 0;
    if (!absl::SimpleAtoi(words[3], &value)) {
      *error = "add needs an integer delta";
      return false;
    }
    add->set_delta(value);
    for (size_t i = 4; i < words.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(words[i], '=');
      if (!absl::SimpleAtoi(kv.second, &value) ||
          (kv.first != "min" && kv.first != "max")) {
        *error = "add bounds are min=N and max=N";
        return false;
      }
      kv.first == "min" ? add->set_min(value) : add->set_max(value);
    }
  } else if (verb == "expect" && words.size() == 4) {
    op->mutable_expect()->set_key(key);
    if (words[3] == "absent") {
      op->mutable_expect()->set_absent(true);
    } else {
      op->mutable_expect()->set_value(words[3]);
    }
  } else {
    *error = "unknown operation; use put KEY VALUE | delete KEY | add KEY "
             "DELTA [min=N] [max=N] | expect KEY VALUE|absent";
    return false;
  }
  return true;
}

// One row: id, state, outcome, flags and times; then the abort reason.
void PrintTransactionHeader(const v1::Transaction& t) {
  PrintTable({{"TRANSACTION", "STATE", "OUTCOME", "PARKED", "FORCED",
               "CREATED", "DECIDED"},
              {t.transaction_id(),
               Short(v1::TransactionState_Name(t.state()), "TRANSACTION_STATE_"),
               Short(v1::Outcome_Name(t.outcome()), "OUTCOME_"),
               t.parked() ? "yes" : "no", t.forced() ? "yes" : "no",
               FormatTime(t.create_time()), FormatTime(t.decide_time())}});
  if (!t.abort_reason().empty()) {
    std::printf("reason: %s\n", t.abort_reason().c_str());
  }
}

void PrintTransaction(const GlobalFlags& flags, const v1::Transaction& t) {
  if (flags.json()) {
    PrintJson(t);
    return;
  }
  PrintTransactionHeader(t);
  std::vector<std::vector<std::string>> branches = {
      {"PARTICIPANT", "VOTE", "FINISHED", "VOTE REASON"}};
  for (const v1::BranchStatus& b : t.branches()) {
    branches.push_back({b.participant_id(), Short(v1::Vote_Name(b.vote()), "VOTE_"),
                        b.finished() ? "yes" : "no", b.vote_reason()});
  }
  std::printf("\n");
  PrintTable(branches);
  if (!t.message_positions().empty()) {
    std::vector<std::vector<std::string>> messages = {
        {"TOPIC", "PARTITION", "OFFSET"}};
    for (const v1::MessagePosition& p : t.message_positions()) {
      messages.push_back({p.topic(), absl::StrCat(p.partition()),
                          absl::StrCat(p.offset())});
    }
    std::printf("\n");
    PrintTable(messages);
  }
}

// Parses "TOPIC[:PARTITION] KEY VALUE" into a message.
bool ParseMessage(const std::string& spec, v1::Message* message,
                  std::string* error) {
  std::vector<std::string> words = absl::StrSplit(spec, absl::MaxSplits(' ', 2));
  if (words.size() != 3) {
    *error = "expected 'TOPIC[:PARTITION] KEY VALUE'";
    return false;
  }
  std::pair<std::string, std::string> topic = absl::StrSplit(words[0], ':');
  message->set_topic(topic.first);
  if (!topic.second.empty()) {
    int32_t partition = 0;
    if (!absl::SimpleAtoi(topic.second, &partition)) {
      *error = "the partition after ':' must be a number";
      return false;
    }
    message->set_partition(partition);
  }
  message->set_key(words[1]);
  message->set_value(words[2]);
  return true;
}

// Parses --label KEY=VALUE flags into `labels`.
bool ParseLabels(const std::vector<std::string>& flags,
                 google::protobuf::Map<std::string, std::string>* labels) {
  for (const std::string& label : flags) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(label, absl::MaxSplits('=', 1));
    if (kv.first.empty() || label.find('=') == std::string::npos) {
      std::fprintf(stderr, "twopcctl: --label '%s' must be KEY=VALUE\n",
                   label.c_str());
      return false;
    }
    (*labels)[kv.first] = kv.second;
  }
  return true;
}

int RunExec(const GlobalFlags& flags, const TxnCommands::Exec& exec) {
  v1::ExecuteRequest request;
  std::vector<v1::Branch> branches;
  for (const std::string& spec : exec.ops) {
    std::string error;
    if (!ParseOp(spec, &branches, &error)) {
      std::fprintf(stderr, "twopcctl: --op '%s': %s\n", spec.c_str(), error.c_str());
      return kExitUsage;
    }
  }
  for (v1::Branch& branch : branches) *request.add_branches() = std::move(branch);
  for (const std::string& spec : exec.messages) {
    std::string error;
    if (!ParseMessage(spec, request.add_messages(), &error)) {
      std::fprintf(stderr, "twopcctl: --msg '%s': %s\n", spec.c_str(),
                   error.c_str());
      return kExitUsage;
    }
  }
  if (!ParseLabels(exec.labels, request.mutable_labels())) return kExitUsage;
  request.set_idempotency_key(exec.idempotency_key);
  if (exec.timeout_seconds > 0) {
    *request.mutable_timeout() = TimeUtil::MicrosecondsToDuration(
        static_cast<int64_t>(exec.timeout_seconds * 1e6));
  }
  v1::ExecuteResponse response;
  if (int rc = CallCoordinator(flags, &v1::TransactionService::Stub::Execute,
                               request, &response)) {
    return rc;
  }
  PrintTransaction(flags, response.transaction());
  return kExitOk;
}

int RunGet(const GlobalFlags& flags, const std::string& id, bool by_key) {
  v1::GetRequest request;
  if (by_key) {
    request.mutable_ref()->set_idempotency_key(id);
  } else {
    request.mutable_ref()->set_transaction_id(id);
  }
  v1::GetResponse response;
  if (int rc = CallCoordinator(flags, &v1::TransactionService::Stub::Get,
                               request, &response)) {
    return rc;
  }
  PrintTransaction(flags, response.transaction());
  return response.transaction().outcome() == v1::OUTCOME_ABORTED ? kExitAborted
                                                                 : kExitOk;
}

// Parses a duration like "90s", "5m" or "1h30m" into `out`.
bool ParseAge(const std::string& flag, const std::string& text,
              google::protobuf::Duration* out) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "twopcctl: %s '%s' is not a duration; write e.g. 90s, 5m or "
                 "1h\n",
                 flag.c_str(), text.c_str());
    return false;
  }
  *out = TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(d));
  return true;
}

// After a table: how to get the next page, when there is one.
void PrintNextPage(const std::string& token) {
  if (!token.empty()) std::printf("more: add --page-token %s\n", token.c_str());
}

std::string Branches(const v1::Transaction& t) {
  std::vector<std::string> branches;
  for (const v1::BranchStatus& b : t.branches()) {
    branches.push_back(absl::StrCat(b.participant_id(), ":",
                                    Short(v1::Vote_Name(b.vote()), "VOTE_"),
                                    b.finished() ? "/done" : ""));
  }
  return absl::StrJoin(branches, " ");
}

std::string State(const v1::Transaction& t) {
  return Short(v1::TransactionState_Name(t.state()), "TRANSACTION_STATE_");
}

// Transactions, newest first, filtered and paged.
int RunList(const GlobalFlags& flags, const TxnCommands::List& list) {
  v1::ListTransactionsRequest request;
  for (const std::string& name : list.states) {
    v1::TransactionState state;
    if (!v1::TransactionState_Parse(
            "TRANSACTION_STATE_" + absl::AsciiStrToUpper(name), &state)) {
      std::fprintf(stderr,
                   "twopcctl: unknown state '%s'; use active, preparing, "
                   "committing, committed or aborted\n",
                   name.c_str());
      return kExitUsage;
    }
    request.add_states(state);
  }
  if (!list.older_than.empty() &&
      !ParseAge("--older-than", list.older_than,
                request.mutable_older_than())) {
    return kExitUsage;
  }
  if (!ParseLabels(list.labels, request.mutable_labels())) return kExitUsage;
  request.set_participant_id(list.participant);
  request.set_parked_only(list.parked);
  request.set_page_size(list.limit);
  request.set_page_token(list.page_token);
  v1::ListTransactionsResponse response;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::ListTransactions,
                               request, &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"TRANSACTION", "STATE", "OUTCOME", "PARKED", "CREATED", "BRANCHES"}};
  for (const v1::Transaction& t : response.transactions()) {
    rows.push_back({t.transaction_id(), State(t),
                    Short(v1::Outcome_Name(t.outcome()), "OUTCOME_"),
                    t.parked() ? "yes" : "no", FormatTime(t.create_time()),
                    Branches(t)});
  }
  PrintTable(rows);
  PrintNextPage(response.next_page_token());
  return kExitOk;
}

void PrintDetail(const GlobalFlags& flags, const v1::TransactionDetail& d) {
  if (flags.json()) {
    PrintJson(d);
    return;
  }
  PrintTransactionHeader(d.transaction());
  std::vector<std::vector<std::string>> branches = {
      {"PARTICIPANT", "VOTE", "VOTED", "ATTEMPTS", "LAST ATTEMPT",
       "NEXT ATTEMPT", "ACKED", "LAST ERROR"}};
  for (const v1::BranchDetail& b : d.branches()) {
    branches.push_back({b.participant_id(),
                        Short(v1::Vote_Name(b.vote()), "VOTE_"),
                        FormatTime(b.vote_time()), absl::StrCat(b.attempts()),
                        FormatTime(b.last_attempt_time()),
                        FormatTime(b.next_attempt_time()),
                        FormatTime(b.ack_time()),
                        b.last_error().empty() ? "-" : b.last_error()});
  }
  std::printf("\n");
  PrintTable(branches);
  std::vector<std::vector<std::string>> timeline = {
      {"TIME", "EVENT", "PARTICIPANT", "DETAIL"}};
  for (const v1::TimelineEvent& e : d.timeline()) {
    timeline.push_back({FormatTime(e.time()), e.kind(),
                        e.participant_id().empty() ? "-" : e.participant_id(),
                        e.detail()});
  }
  std::printf("\n");
  PrintTable(timeline);
  if (d.messages_size() + d.message_positions_size() > 0) {
    std::vector<std::vector<std::string>> messages = {
        {"TOPIC", "PARTITION", "OFFSET", "KEY"}};
    for (const v1::Message& m : d.messages()) {
      messages.push_back({m.topic(), absl::StrCat(m.partition()),
                          "(on commit)", m.key()});
    }
    for (const v1::MessagePosition& p : d.message_positions()) {
      messages.push_back({p.topic(), absl::StrCat(p.partition()),
                          absl::StrCat(p.offset()), "-"});
    }
    std::printf("\n");
    PrintTable(messages);
  }
}

int RunDescribe(const GlobalFlags& flags, const std::string& id, bool by_key) {
  v1::DescribeTransactionRequest request;
  if (by_key) {
    request.mutable_ref()->set_idempotency_key(id);
  } else {
    request.mutable_ref()->set_transaction_id(id);
  }
  v1::TransactionDetail detail;
  if (int rc = CallCoordinator(
          flags, &v1::AdminService::Stub::DescribeTransaction, request,
          &detail)) {
    return rc;
  }
  PrintDetail(flags, detail);
  return kExitOk;
}

int RunStuck(const GlobalFlags& flags, const std::string& older_than) {
  v1::ListStuckTransactionsRequest request;
  if (!ParseAge("--older-than", older_than, request.mutable_older_than())) {
    return kExitUsage;
  }
  v1::ListStuckTransactionsResponse response;
  if (int rc = CallCoordinator(
          flags, &v1::AdminService::Stub::ListStuckTransactions, request,
          &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"TRANSACTION", "STATE", "STUCK FOR", "REASON"}};
  for (const v1::StuckTransaction& s : response.transactions()) {
    rows.push_back({s.transaction().transaction_id(), State(s.transaction()),
                    FormatDuration(s.stuck_for()), s.reason()});
  }
  PrintTable(rows);
  return kExitOk;
}

enum class OperatorAction { kRetry, kPark, kUnpark, kForceCommit, kForceAbort };

int RunOperatorAction(const GlobalFlags& flags, OperatorAction action,
                      const TxnCommands::Operator& op) {
  std::string operator_name = op.operator_name;
  if (operator_name.empty() && std::getenv("USER") != nullptr) {
    operator_name = std::getenv("USER");
  }
  v1::TransactionDetail detail;
  int rc = kExitOk;
  switch (action) {
    case OperatorAction::kRetry: {
      v1::RetryTransactionRequest request;
      request.set_transaction_id(op.id);
      rc = CallCoordinator(flags, &v1::AdminService::Stub::RetryTransaction,
                           request, &detail);
      break;
    }
    case OperatorAction::kPark: {
      v1::ParkTransactionRequest request;
      request.set_transaction_id(op.id);
      request.set_reason(op.reason);
      request.set_operator_(operator_name);
      rc = CallCoordinator(flags, &v1::AdminService::Stub::ParkTransaction,
                           request, &detail);
      break;
    }
    case OperatorAction::kUnpark: {
      v1::UnparkTransactionRequest request;
      request.set_transaction_id(op.id);
      request.set_reason(op.reason);
      request.set_operator_(operator_name);
      rc = CallCoordinator(flags, &v1::AdminService::Stub::UnparkTransaction,
                           request, &detail);
      break;
    }
    case OperatorAction::kForceCommit:
    case OperatorAction::kForceAbort: {
      v1::ForceTransactionRequest request;
      request.set_transaction_id(op.id);
      request.set_outcome(action == OperatorAction::kForceCommit
                              ? v1::OUTCOME_COMMITTED
                              : v1::OUTCOME_ABORTED);
      request.set_reason(op.reason);
      request.set_operator_(operator_name);
      rc = CallCoordinator(flags, &v1::AdminService::Stub::ForceTransaction,
                           request, &detail);
      break;
    }
  }
  if (rc != kExitOk) return rc;
  if (flags.json()) {
    PrintJson(detail);
  } else {
    PrintTransactionHeader(detail.transaction());
  }
  return kExitOk;
}

int RunAudit(const GlobalFlags& flags, uint32_t limit,
             const std::string& page_token) {
  v1::ListAuditRecordsRequest request;
  request.set_page_size(limit);
  request.set_page_token(page_token);
  v1::ListAuditRecordsResponse response;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::ListAuditRecords,
                               request, &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "OPERATOR", "ACTION", "TARGET", "REASON", "RESULT"}};
  for (const v1::AuditRecord& r : response.records()) {
    rows.push_back({FormatTime(r.time()), r.operator_(), r.action(), r.target(),
                    r.reason().empty() ? "-" : r.reason(), r.result()});
  }
  PrintTable(rows);
  PrintNextPage(response.next_page_token());
  return kExitOk;
}

}  // namespace

TxnCommands::TxnCommands(CLI::App* app, const GlobalFlags* flags,
                         int* exit_code)
    : flags_(flags) {
  CLI::App* txn = app->add_subcommand("txn", "run, inspect and repair transactions");
  txn->require_subcommand(1);

  CLI::App* exec = txn->add_subcommand(
      "exec",
      "run one transaction on kv sidecars, e.g.\n"
      "  txn exec --op 'p1 add balance/alice -10 min=0' "
      "--op 'p2 add balance/bob 10'");
  exec->add_option("--op", exec_.ops,
                   "'PARTICIPANT put KEY VALUE | delete KEY | add KEY DELTA "
                   "[min=N] [max=N] | expect KEY VALUE|absent' (repeat; ops "
                   "of one participant form its branch)")
      ->required();
  exec->add_option("--msg", exec_.messages,
                   "'TOPIC[:PARTITION] KEY VALUE': a message published "
                   "iff the transaction commits (repeat)");
  exec->add_option("--key", exec_.idempotency_key,
                   "idempotency key (makes a retry safe)");
  exec->add_option("--label", exec_.labels,
                   "KEY=VALUE attached to the transaction, for `txn list "
                   "--label` (repeat)");
  exec->add_option("--txn_timeout", exec_.timeout_seconds,
                   "seconds allowed for every branch to vote");
  exec->callback([this, exit_code] { *exit_code = RunExec(*flags_, exec_); });

  for (auto [name, help] :
       {std::pair<const char*, const char*>{"get", "a transaction's outcome"},
        {"describe",
         "a transaction's full timeline: votes, decision, phase-2 attempts "
         "with the last error per participant, messages and offsets"}}) {
    CLI::App* command = txn->add_subcommand(name, help);
    command->add_option("ID", id_, "transaction id (or key with --by-key)")
        ->required();
    command->add_flag("--by-key", by_key_, "ID is an idempotency key");
    const bool describe = std::string(name) == "describe";
    command->callback([this, exit_code, describe] {
      *exit_code = describe ? RunDescribe(*flags_, id_, by_key_)
                            : RunGet(*flags_, id_, by_key_);
    });
  }

  CLI::App* list = txn->add_subcommand(
      "list", "transactions, newest first (live and logged)");
  list->add_option("--state", list_.states,
                   "active, preparing, committing, committed or aborted "
                   "(repeat)");
  list->add_option("--older-than", list_.older_than,
                   "only those created at least this long ago (e.g. 5m)");
  list->add_option("--participant", list_.participant,
                   "only those with a branch on this participant");
  list->add_option("--label", list_.labels,
                   "KEY=VALUE: only those carrying this label (repeat)");
  list->add_flag("--parked", list_.parked,
                 "only transactions whose retry budget is spent");
  list->add_option("--limit", list_.limit, "page size")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  list->add_option("--page-token", list_.page_token,
                   "continue from a previous page");
  list->callback([this, exit_code] { *exit_code = RunList(*flags_, list_); });

  CLI::App* stuck = txn->add_subcommand(
      "stuck",
      "transactions in doubt, being retried or parked longer than a "
      "threshold, with the reason each is stuck");
  stuck->add_option("--older-than", older_than_, "threshold (e.g. 30s, 5m)")
      ->capture_default_str();
  stuck->callback(
      [this, exit_code] { *exit_code = RunStuck(*flags_, older_than_); });

  struct ActionSpec {
    const char* name;
    const char* help;
    OperatorAction action;
    bool reason_required;
  };
  for (const ActionSpec& spec : std::vector<ActionSpec>{
           {"retry", "deliver phase 2 now", OperatorAction::kRetry, false},
           {"park", "retry only every minute, until unparked",
            OperatorAction::kPark, true},
           {"unpark", "resume normal retries with a fresh budget",
            OperatorAction::kUnpark, true},
           {"force-commit",
            "finish a decided commit now (refused unless every branch is "
            "prepared or commit is decided); audited",
            OperatorAction::kForceCommit, true},
           {"force-abort",
            "abort an undecided transaction (refused once commit is "
            "decided); audited",
            OperatorAction::kForceAbort, true}}) {
    CLI::App* command = txn->add_subcommand(spec.name, spec.help);
    command->add_option("ID", operator_.id, "transaction id")->required();
    CLI::Option* reason = command->add_option(
        "--reason", operator_.reason, "why (written to the audit log)");
    if (spec.reason_required) reason->required();
    command->add_option("--operator", operator_.operator_name,
                        "who (default: $USER)");
    const OperatorAction action = spec.action;
    command->callback([this, exit_code, action] {
      *exit_code = RunOperatorAction(*flags_, action, operator_);
    });
  }

  CLI::App* audit = app->add_subcommand("audit", "the operator audit log");
  audit->require_subcommand(1);
  CLI::App* audit_list =
      audit->add_subcommand("list",
                            "forced decisions, retries, parking and "
                            "participant removals, newest first, refusals "
                            "included");
  audit_list->add_option("--limit", list_.limit, "page size")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  audit_list->add_option("--page-token", list_.page_token,
                         "continue from a previous page");
  audit_list->callback([this, exit_code] {
    *exit_code = RunAudit(*flags_, list_.limit, list_.page_token);
  });
}

}  // namespace twopc::ctl
