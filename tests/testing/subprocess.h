// Subprocess: a real process started by a test, with its stdout and stderr
// captured in a file. The destructor kills (SIGKILL) and reaps a process that
// is still running, so a failing test never leaves one behind.
//
// Waits are on conditions with a deadline, never fixed sleeps.
//
// Thread-compatible: use one Subprocess from one thread.
#ifndef TWOPC_TESTS_TESTING_SUBPROCESS_H_
#define TWOPC_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace twopc::testing {

// A process run to its end by Subprocess::Run.
struct ProcessResult {
  int exit_code = -1;  // -1 unless it exited normally
  std::string output;  // stdout and stderr
};

class Subprocess {
 public:
  // Starts argv[0] (a path) with `argv`, output appended to `log_path`.
  // OK; INTERNAL when fork/exec fails (exec failure shows as exit code 127).
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      std::vector<std::string> argv, std::string log_path);

  // Starts `argv` and waits until it exits. Start's error, or
  // DEADLINE_EXCEEDED after `timeout` (the process is then killed).
  static absl::StatusOr<ProcessResult> Run(std::vector<std::string> argv,
                                           std::string log_path,
                                           absl::Duration timeout);

  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // Everything the process has written so far.
  std::string Output() const;

  // Waits until the output has a line containing `needle` and returns that
  // line. DEADLINE_EXCEEDED after `timeout`; FAILED_PRECONDITION when the
  // process exits first. Both messages include the output.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle,
                                          absl::Duration timeout);

  // Sends `signal` (no-op once reaped).
  void Signal(int signal);

  // SIGSTOP, returning once every thread of the process has stopped (kill
  // returns before that: a thread running on another CPU may still read a
  // request and answer it). No-op once reaped.
  // REQUIRES: the process is not stopped already (a second stop is never
  // reported, so this would wait forever).
  void Freeze();

  // Waits for the process to exit and returns its wait status (as from
  // waitpid); DEADLINE_EXCEEDED after `timeout` (the process keeps running).
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // SIGKILL and reap.
  void Kill();

 private:
  Subprocess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  // Reaps without blocking; true once the process is gone.
  bool Poll();

  pid_t pid_;
  std::string log_path_;
  std::optional<int> wait_status_;
};

}  // namespace twopc::testing

#endif  // TWOPC_TESTS_TESTING_SUBPROCESS_H_
