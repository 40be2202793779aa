// Processes the bench starts itself: the servers of a --local cluster and the
// echo server of the gRPC ceiling, plus the scratch directories they use.
#ifndef TWOPC_TOOLS_BENCH_CHILD_PROCESS_H_
#define TWOPC_TOOLS_BENCH_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace twopc::bench {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents by
// the destructor.
class ScratchDir {
 public:
  // INTERNAL when the directory cannot be created.
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Create();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A server process with stdout and stderr going to a log file. It is killed
// (SIGKILL) and reaped by the destructor, and killed by the kernel if the
// bench dies first (PR_SET_PDEATHSIG; REQUIRES: the thread that calls Start
// outlives the process, e.g. the main thread).
//
// Thread-compatible.
class ChildProcess {
 public:
  // Starts argv[0] (a path) with `argv` and waits until its output has a line
  // "... listening on HOST:PORT ...", as every twopc server prints once it
  // serves. DEADLINE_EXCEEDED after `timeout`; FAILED_PRECONDITION when it
  // exits first; CANCELLED when the bench is interrupted; INTERNAL when it
  // cannot be started. Error messages include the log's tail.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> StartServer(
      const std::vector<std::string>& argv, const std::string& log_path,
      absl::Duration timeout);

  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // HOST:PORT from the "listening on" line.
  const std::string& address() const { return address_; }

 private:
  ChildProcess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}
  absl::Status WaitUntilListening(absl::Duration timeout);
  std::string LogTail() const;

  const pid_t pid_;
  const std::string log_path_;
  std::string address_;
  bool reaped_ = false;
};

// The path of the running executable (the twopc binaries are installed side
// by side, so its directory holds the servers too).
std::string OwnExecutablePath();

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_CHILD_PROCESS_H_
