// Trace: the step-by-step story of one simulated schedule. Kept only when
// asked for (replaying a seed, checking that a seed reproduces), so that the
// default run of thousands of schedules does not pay for formatting.
//
// Thread-compatible (a schedule runs on one thread).
#ifndef TWOPC_TESTS_SIMULATION_SIM_TRACE_H_
#define TWOPC_TESTS_SIMULATION_SIM_TRACE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace twopc::simulation {

class Trace {
 public:
  explicit Trace(bool enabled) : enabled_(enabled) {}

  bool enabled() const { return enabled_; }

  // Appends one line made of `parts` (absl::StrCat arguments) when enabled.
  // Arguments are evaluated either way: pass cheap ones, or check enabled().
  template <typename... Parts>
  void Note(const Parts&... parts) {
    if (enabled_) lines_.push_back(absl::StrCat(parts...));
  }

  const std::vector<std::string>& lines() const { return lines_; }

 private:
  const bool enabled_;
  std::vector<std::string> lines_;
};

}  // namespace twopc::simulation

#endif  // TWOPC_TESTS_SIMULATION_SIM_TRACE_H_
