#include "tests/chaos/nemesis.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/chaos/loopback_cut.h"

namespace twopc::chaos {
namespace {

using ::twopc::testing::LocalCluster;

// How often each kind is drawn, relative to the others.
constexpr std::pair<FaultKind, int> kWeights[] = {
    {FaultKind::kKillCoordinator, 1},   {FaultKind::kKillSidecar, 2},
    {FaultKind::kFreezeCoordinator, 1}, {FaultKind::kFreezeSidecar, 2},
    {FaultKind::kCutSidecar, 2},
};

bool TargetsCoordinator(FaultKind kind) {
  return kind == FaultKind::kKillCoordinator ||
         kind == FaultKind::kFreezeCoordinator;
}

// The port of a "host:port" address.
int PortOf(const std::string& address) {
  int port = 0;
  const bool parsed =
      absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port);
  return parsed ? port : 0;
}

}  // namespace

const char* FaultName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKillCoordinator:
      return "kill -9 coordinator";
    case FaultKind::kKillSidecar:
      return "kill -9 sidecar";
    case FaultKind::kFreezeCoordinator:
      return "freeze coordinator";
    case FaultKind::kFreezeSidecar:
      return "freeze sidecar";
    case FaultKind::kCutSidecar:
      return "iptables cut sidecar";
  }
  return "?";
}

Nemesis::Nemesis(LocalCluster* cluster, NemesisOptions options)
    : cluster_(cluster),
      options_(std::move(options)),
      start_(absl::Now()),
      random_(options_.seed) {
  const absl::Status cuts =
      LoopbackCut::CheckAvailable(options_.log_dir + "/iptables.log");
  for (const auto& [kind, weight] : kWeights) {
    if (kind == FaultKind::kCutSidecar && !cuts.ok()) continue;
    kinds_.insert(kinds_.end(), weight, kind);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!cuts.ok()) cuts_unavailable_ = std::string(cuts.message());
    for (FaultKind kind : kinds_) counts_[kind] = 0;
  }
  worker_ = std::thread([this] { Run(); });
}

Nemesis::~Nemesis() {
  Stop().IgnoreError();
  released_.Notify();
  worker_.join();
}

absl::Status Nemesis::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  healed_.WaitForNotification();
  absl::MutexLock lock(&mu_);
  return error_;
}

std::map<FaultKind, int64_t> Nemesis::Counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::string Nemesis::cuts_unavailable_reason() const {
  absl::MutexLock lock(&mu_);
  return cuts_unavailable_;
}

void Nemesis::Run() {
  while (!PauseFor(Between(options_.min_pause, options_.max_pause))) {
    const FaultKind kind = kinds_[std::uniform_int_distribution<size_t>(
        0, kinds_.size() - 1)(random_)];
    const absl::Status injected = Inject(kind);
    if (!injected.ok()) {
      Announce(absl::StrCat("giving up: ", injected.ToString()));
      absl::MutexLock lock(&mu_);
      error_ = injected;
      break;
    }
  }
  healed_.Notify();
  // Processes restarted here die when this thread ends: keep it alive.
  released_.WaitForNotification();
}

absl::Status Nemesis::Inject(FaultKind kind) {
  const std::string target = TargetsCoordinator(kind)
                                 ? std::string(LocalCluster::kCoordinator)
                                 : AnySidecar();
  const absl::Duration how_long =
      Between(options_.min_fault, options_.max_fault);
  Announce(absl::StrCat(FaultName(kind), " ", target, " for ",
                        absl::FormatDuration(how_long)));
  switch (kind) {
    case FaultKind::kKillCoordinator:
    case FaultKind::kKillSidecar:
      cluster_->Kill(target);
      Count(kind);
      PauseFor(how_long);
      return Restart(target);
    case FaultKind::kFreezeCoordinator:
    case FaultKind::kFreezeSidecar:
      cluster_->Freeze(target);
      Count(kind);
      PauseFor(how_long);
      cluster_->Thaw(target);
      return absl::OkStatus();
    case FaultKind::kCutSidecar:
      CutOff(target, how_long);
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

void Nemesis::Count(FaultKind kind) {
  absl::MutexLock lock(&mu_);
  ++counts_[kind];
}

absl::Status Nemesis::Restart(const std::string& name) {
  if (name == LocalCluster::kCoordinator) {
    return cluster_->StartCoordinator(options_.coordinator_flags);
  }
  return cluster_->StartParticipant(name, options_.sidecar_flags);
}

void Nemesis::CutOff(const std::string& sidecar, absl::Duration how_long) {
  absl::StatusOr<std::unique_ptr<LoopbackCut>> cut =
      LoopbackCut::Start(PortOf(cluster_->participant_address(sidecar)),
                         options_.cut_tag, options_.log_dir + "/iptables.log");
  if (!cut.ok()) {
    // Cuts are best effort: stop drawing them, and say why in the summary.
    Announce(absl::StrCat("no more cuts: ", cut.status().ToString()));
    kinds_.erase(
        std::remove(kinds_.begin(), kinds_.end(), FaultKind::kCutSidecar),
        kinds_.end());
    absl::MutexLock lock(&mu_);
    cuts_unavailable_ = std::string(cut.status().message());
    return;
  }
  Count(FaultKind::kCutSidecar);
  PauseFor(how_long);
}  // ~LoopbackCut removes the rules.

absl::Duration Nemesis::Between(absl::Duration low, absl::Duration high) {
  return low +
         std::uniform_real_distribution<double>(0, 1)(random_) * (high - low);
}

const std::string& Nemesis::AnySidecar() {
  return options_.sidecars[std::uniform_int_distribution<size_t>(
      0, options_.sidecars.size() - 1)(random_)];
}

void Nemesis::Announce(const std::string& what) {
  std::fprintf(stderr, "nemesis +%.1fs: %s\n",
               absl::ToDoubleSeconds(absl::Now() - start_), what.c_str());
}

}  // namespace twopc::chaos
