#include "tests/testing/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace twopc::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    std::vector<std::string> argv, std::string log_path) {
  std::vector<char*> args;
  for (std::string& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", log_path));
  const pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    // Die with the test runner even if it is killed before cleaning up.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fd);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, std::move(log_path)));
}

absl::StatusOr<ProcessResult> Subprocess::Run(std::vector<std::string> argv,
                                              std::string log_path,
                                              absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Start(std::move(argv), std::move(log_path));
  if (!process.ok()) return process.status();
  absl::StatusOr<int> status = (*process)->Wait(timeout);
  if (!status.ok()) return status.status();
  ProcessResult result;
  if (WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
  result.output = (*process)->Output();
  return result;
}

Subprocess::~Subprocess() { Kill(); }

std::string Subprocess::Output() const {
  std::ifstream in(log_path_);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& needle,
                                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Read before checking for exit, so a line written just before exiting
    // is still found.
    const bool exited = Poll();
    const std::string output = Output();
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(needle) != std::string::npos) return line;
    }
    if (exited) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process exited before printing '", needle, "'; output:\n", output));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no line with '", needle, "' within ", absl::FormatDuration(timeout),
          "; output:\n", output));
    }
    absl::SleepFor(kPollInterval);
  }
}

void Subprocess::Signal(int signal) {
  if (!wait_status_.has_value()) kill(pid_, signal);
}

void Subprocess::Freeze() {
  if (wait_status_.has_value() || kill(pid_, SIGSTOP) != 0) return;
  // Reported once the group stop is complete, or the exit if it dies first.
  int status = 0;
  pid_t reaped = 0;
  do {
    reaped = waitpid(pid_, &status, WUNTRACED);
  } while (reaped == -1 && errno == EINTR);
  if (reaped == pid_ && !WIFSTOPPED(status)) wait_status_ = status;
}

bool Subprocess::Poll() {
  if (wait_status_.has_value()) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) wait_status_ = status;
  return wait_status_.has_value();
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Poll()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, " still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
  return *wait_status_;
}

void Subprocess::Kill() {
  if (wait_status_.has_value()) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  wait_status_ = status;
}

}  // namespace twopc::testing
