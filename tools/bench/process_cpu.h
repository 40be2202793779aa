// CPU time of processes, read from /proc, for "CPU time per transaction".
//
// Thread-safe (no shared state).
#ifndef TWOPC_TOOLS_BENCH_PROCESS_CPU_H_
#define TWOPC_TOOLS_BENCH_PROCESS_CPU_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace twopc::bench {

// User + system CPU time consumed so far by every thread of process `pid`
// (utime + stime of /proc/<pid>/stat; clock-tick resolution, usually 10 ms).
// NOT_FOUND when the process is gone or not readable.
absl::StatusOr<absl::Duration> ProcessCpuTime(pid_t pid);

// The process running `binary` (a file name such as "twopc-coordinator")
// whose command line has a --listen option ending in ":<port>", as started by
// `make run` or the README. nullopt when there is none or several.
std::optional<pid_t> FindServerProcess(const std::string& binary, int port);

}  // namespace twopc::bench

#endif  // TWOPC_TOOLS_BENCH_PROCESS_CPU_H_
