#include "tests/chaos/loopback_cut.h"

#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "tests/testing/subprocess.h"

namespace twopc::chaos {
namespace {

constexpr absl::Duration kIptablesTimeout = absl::Seconds(20);
// Each rule matches one direction of the port's traffic.
constexpr const char* kDirections[] = {"--dport", "--sport"};

std::optional<std::string> FindIptables() {
  for (const char* path : {"/usr/sbin/iptables", "/sbin/iptables"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return std::nullopt;
}

// Runs `iptables -w ARGS...` (-w: wait for the xtables lock, which other
// users of iptables may hold). OK when it exits 0.
absl::Status RunIptables(std::vector<std::string> args,
                         const std::string& log_path) {
  const std::optional<std::string> iptables = FindIptables();
  if (!iptables.has_value()) {
    return absl::FailedPreconditionError("no iptables binary");
  }
  std::vector<std::string> argv = {*iptables, "-w"};
  argv.insert(argv.end(), args.begin(), args.end());
  ASSIGN_OR_RETURN(std::unique_ptr<testing::Subprocess> process,
                   testing::Subprocess::Start(argv, log_path));
  ASSIGN_OR_RETURN(int status, process->Wait(kIptablesTimeout));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("'", absl::StrJoin(argv, " "),
                                            "' failed; see ", log_path));
  }
  return absl::OkStatus();
}

// `action` (-I or -D) the rule dropping `direction` traffic of `port`.
absl::Status ChangeRule(const std::string& action, const char* direction,
                        int port, const std::string& tag,
                        const std::string& log_path) {
  return RunIptables(
      {action, "OUTPUT", "-o", "lo", "-p", "tcp", direction, absl::StrCat(port),
       "-m", "comment", "--comment", tag, "-j", "DROP"},
      log_path);
}

}  // namespace

absl::Status LoopbackCut::CheckAvailable(const std::string& log_path) {
  if (geteuid() != 0) return absl::FailedPreconditionError("not root");
  const absl::Status listed = RunIptables({"-S", "OUTPUT"}, log_path);
  if (!listed.ok()) return absl::FailedPreconditionError(listed.message());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LoopbackCut>> LoopbackCut::Start(
    int port, std::string tag, std::string log_path) {
  // Built first, so a half-installed cut is removed on failure.
  std::unique_ptr<LoopbackCut> cut(
      new LoopbackCut(port, std::move(tag), std::move(log_path)));
  for (const char* direction : kDirections) {
    RETURN_IF_ERROR(
        ChangeRule("-I", direction, cut->port_, cut->tag_, cut->log_path_));
  }
  return cut;
}

LoopbackCut::~LoopbackCut() {
  for (const char* direction : kDirections) {
    while (ChangeRule("-D", direction, port_, tag_, log_path_).ok()) {
    }
  }
}

}  // namespace twopc::chaos
