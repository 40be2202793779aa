#include "tools/bench/process_cpu.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace twopc::bench {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// The NUL-separated arguments of /proc/<pid>/cmdline.
std::vector<std::string> CommandLine(const std::string& pid) {
  return absl::StrSplit(ReadFile(absl::StrCat("/proc/", pid, "/cmdline")), '\0',
                        absl::SkipEmpty());
}

// True for "--listen=HOST:PORT" or "--listen" followed by "HOST:PORT".
bool ListensOnPort(const std::vector<std::string>& args, int port) {
  const std::string suffix = absl::StrCat(":", port);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (absl::StartsWith(args[i], "--listen=")) {
      value = args[i].substr(sizeof("--listen=") - 1);
    } else if (args[i] == "--listen" && i + 1 < args.size()) {
      value = args[i + 1];
    }
    if (absl::EndsWith(value, suffix)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<absl::Duration> ProcessCpuTime(pid_t pid) {
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  // The command name (field 2) is in parentheses and may contain spaces:
  // fields are counted from the last ')'. utime and stime are fields 14, 15.
  const size_t name_end = stat.rfind(')');
  if (name_end == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("no process ", pid));
  }
  const std::vector<std::string> fields =
      absl::StrSplit(stat.substr(name_end + 2), ' ');
  constexpr int kUtime = 14 - 3, kStime = 15 - 3;  // counted from field 3
  int64_t utime = 0, stime = 0;
  if (fields.size() <= kStime || !absl::SimpleAtoi(fields[kUtime], &utime) ||
      !absl::SimpleAtoi(fields[kStime], &stime)) {
    return absl::NotFoundError(absl::StrCat("unreadable /proc/", pid, "/stat"));
  }
  static const long ticks_per_second = sysconf(_SC_CLK_TCK);
  return absl::Seconds(1) * (utime + stime) / ticks_per_second;
}

std::optional<pid_t> FindServerProcess(const std::string& binary, int port) {
  std::optional<pid_t> found;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc", error)) {
    const std::string pid = entry.path().filename();
    pid_t value = 0;
    if (!absl::SimpleAtoi(pid, &value)) continue;
    const std::vector<std::string> args = CommandLine(pid);
    if (args.empty() || std::filesystem::path(args[0]).filename() != binary ||
        !ListensOnPort(args, port)) {
      continue;
    }
    if (found.has_value()) return std::nullopt;  // ambiguous
    found = value;
  }
  return found;
}

}  // namespace twopc::bench
