#include "tools/bench/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/bench/interrupt.h"

namespace twopc::bench {
namespace {

constexpr char kListeningOn[] = "listening on ";
constexpr size_t kLogTailBytes = 2000;
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// The address after "listening on " in `log`, or "" when not there yet.
std::string ListeningAddress(const std::string& log) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find(kListeningOn);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + sizeof(kListeningOn) - 1);
    return std::string(rest.substr(0, rest.find(' ')));
  }
  return "";
}

// In the forked child: only async-signal-safe calls until exec.
[[noreturn]] void ExecChild(const std::vector<char*>& argv, int log_fd,
                            pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);  // the parent died before prctl
  dup2(log_fd, STDOUT_FILENO);
  dup2(log_fd, STDERR_FILENO);
  execv(argv[0], argv.data());
  _exit(127);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ScratchDir>> ScratchDir::Create() {
  const char* tmp = getenv("TMPDIR");
  std::string pattern = absl::StrCat(
      tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/twopc-bench-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create a directory like ", pattern));
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(std::move(pattern)));
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::StartServer(
    const std::vector<std::string>& argv, const std::string& log_path,
    absl::Duration timeout) {
  std::vector<char*> c_argv;
  for (const std::string& arg : argv) {
    c_argv.push_back(const_cast<char*>(arg.c_str()));
  }
  c_argv.push_back(nullptr);
  const int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", log_path));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) ExecChild(c_argv, log_fd, parent);
  close(log_fd);
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0]));
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess(pid, log_path));
  absl::Status listening = child->WaitUntilListening(timeout);
  if (!listening.ok()) return listening;
  return child;
}

absl::Status ChildProcess::WaitUntilListening(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Interrupted()) {
    address_ = ListeningAddress(ReadFile(log_path_));
    if (!address_.empty()) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return absl::FailedPreconditionError(absl::StrCat(
          "process ", pid_, " exited before serving:\n", LogTail()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " not serving after ",
                       absl::FormatDuration(timeout), ":\n", LogTail()));
    }
    absl::SleepFor(kPollInterval);
  }
  return absl::CancelledError("interrupted");
}

std::string ChildProcess::LogTail() const {
  const std::string log = ReadFile(log_path_);
  return log.size() <= kLogTailBytes ? log
                                     : log.substr(log.size() - kLogTailBytes);
}

ChildProcess::~ChildProcess() {
  if (reaped_) return;  // the pid may belong to another process by now
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
}

std::string OwnExecutablePath() {
  std::error_code error;
  return std::filesystem::read_symlink("/proc/self/exe", error).string();
}

}  // namespace twopc::bench
