// LoopbackCut: while it lives, iptables drops loopback TCP to and from one
// port, which cuts the process listening there off from everyone who dials
// it (for a sidecar: the coordinator's link). Packets are dropped, not
// refused, so peers see a silent network, not a dead process.
//
// The rules carry a comment tag; give each campaign its own (e.g. with the
// pid), so leftovers of a test process killed before its destructors ran can
// be found with `iptables -S OUTPUT | grep TAG`.
//
// Thread-compatible. Needs root and an iptables binary.
#ifndef TWOPC_TESTS_CHAOS_LOOPBACK_CUT_H_
#define TWOPC_TESTS_CHAOS_LOOPBACK_CUT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace twopc::chaos {

class LoopbackCut {
 public:
  // OK when cuts can be made here: running as root, an iptables binary is
  // installed and can list the OUTPUT chain; otherwise FAILED_PRECONDITION
  // saying why. iptables output is appended to `log_path`.
  static absl::Status CheckAvailable(const std::string& log_path);

  // Installs the rules for `port`. INTERNAL when iptables fails; nothing is
  // left installed then.
  static absl::StatusOr<std::unique_ptr<LoopbackCut>> Start(
      int port, std::string tag, std::string log_path);

  // Removes the rules (every copy, should one have been added twice).
  ~LoopbackCut();
  LoopbackCut(const LoopbackCut&) = delete;
  LoopbackCut& operator=(const LoopbackCut&) = delete;

 private:
  LoopbackCut(int port, std::string tag, std::string log_path)
      : port_(port), tag_(std::move(tag)), log_path_(std::move(log_path)) {}

  const int port_;
  const std::string tag_;
  const std::string log_path_;
};

}  // namespace twopc::chaos

#endif  // TWOPC_TESTS_CHAOS_LOOPBACK_CUT_H_
