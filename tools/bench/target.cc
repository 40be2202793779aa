#include "tools/bench/target.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tools/bench/interrupt.h"
#include "tools/bench/process_cpu.h"
#include "tools/bench/workload.h"
#include "twopc/v1/admin.grpc.pb.h"

namespace twopc::bench {
namespace {

namespace v1 = ::twopc::v1;

constexpr char kCoordinator[] = "coordinator";
constexpr char kKvResource[] = "kv";
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kRpcTimeout = absl::Seconds(5);
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

// The participants `coordinator` reports, sorted by id.
absl::StatusOr<std::vector<v1::ParticipantInfo>> ListParticipants(
    const std::string& coordinator) {
  auto admin = v1::AdminService::NewStub(
      grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kRpcTimeout));
  v1::ListParticipantsResponse response;
  grpc::Status status = admin->ListParticipants(
      &context, v1::ListParticipantsRequest(), &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "coordinator ", coordinator, " does not answer: ", StatusText(status)));
  }
  std::vector<v1::ParticipantInfo> participants(response.participants().begin(),
                                                response.participants().end());
  std::sort(participants.begin(), participants.end(),
            [](const auto& a, const auto& b) {
              return a.participant_id() < b.participant_id();
            });
  return participants;
}

bool IsConnectedKv(const v1::ParticipantInfo& info) {
  return info.link_connected() && info.resource() == kKvResource;
}

absl::Status WaitForConnected(const std::string& coordinator,
                              const std::vector<std::string>& ids) {
  const absl::Time deadline = absl::Now() + kStartTimeout;
  std::string missing;
  while (absl::Now() < deadline && !Interrupted()) {
    absl::StatusOr<std::vector<v1::ParticipantInfo>> participants =
        ListParticipants(coordinator);
    if (participants.ok()) {
      std::vector<std::string> absent;
      for (const std::string& id : ids) {
        if (std::none_of(participants->begin(), participants->end(),
                         [&](const v1::ParticipantInfo& info) {
                           return info.participant_id() == id &&
                                  IsConnectedKv(info);
                         })) {
          absent.push_back(id);
        }
      }
      if (absent.empty()) return absl::OkStatus();
      missing = absl::StrJoin(absent, ", ");
    }
    absl::SleepFor(kPollInterval);
  }
  if (Interrupted()) return absl::CancelledError("interrupted");
  return absl::DeadlineExceededError(
      absl::StrCat("sidecars not connected to the coordinator after ",
                   absl::FormatDuration(kStartTimeout), ": ", missing));
}

// Parses "NAME=PID" entries.
using PidsByName = std::map<std::string, pid_t>;

absl::StatusOr<PidsByName> ParsePids(const std::vector<std::string>& entries) {
  PidsByName pids;
  for (const std::string& entry : entries) {
    std::vector<std::string> parts = absl::StrSplit(entry, '=');
    pid_t pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &pid) || pid <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--pids entry '", entry, "' is not NAME=PID, e.g. coordinator=1234"));
    }
    pids[parts[0]] = pid;
  }
  return pids;
}

int PortOf(const std::string& address) {
  int port = 0;
  (void)absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port);
  return port;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalTwopcCluster>> LocalTwopcCluster::Start(
    const std::string& bin_dir, int participants) {
  std::unique_ptr<LocalTwopcCluster> cluster(new LocalTwopcCluster());
  ASSIGN_OR_RETURN(cluster->dir_, ScratchDir::Create());
  const ScratchDir& dir = *cluster->dir_;
  ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> coordinator,
                   ChildProcess::StartServer(
                       {bin_dir + "/twopc-coordinator", "--listen=127.0.0.1:0",
                        "--data_dir=" + dir.Sub(kCoordinator)},
                       dir.Sub("coordinator.log"), kStartTimeout));
  const std::string coordinator_address = coordinator->address();
  cluster->servers_.push_back({kCoordinator, std::move(coordinator)});
  std::vector<std::string> ids;
  for (int i = 1; i <= participants; ++i) {
    const std::string id = absl::StrCat("p", i);
    ASSIGN_OR_RETURN(
        std::unique_ptr<ChildProcess> sidecar,
        ChildProcess::StartServer(
            {bin_dir + "/twopc-participant", "--id=" + id,
             "--listen=127.0.0.1:0", "--coordinator=" + coordinator_address,
             "--data_dir=" + dir.Sub(id)},
            dir.Sub(id + ".log"), kStartTimeout));
    cluster->servers_.push_back({id, std::move(sidecar)});
    ids.push_back(id);
  }
  RETURN_IF_ERROR(WaitForConnected(coordinator_address, ids));
  return cluster;
}

Target LocalTwopcCluster::target() const {
  Target target;
  target.coordinator = servers_.front().process->address();
  for (const Server& server : servers_) {
    if (server.name != kCoordinator) {
      target.participant_ids.push_back(server.name);
    }
    target.processes.push_back({server.name, server.process->pid()});
  }
  return target;
}

absl::StatusOr<Target> ConnectToCluster(const std::string& coordinator,
                                        int participants,
                                        const std::vector<std::string>& pids) {
  ASSIGN_OR_RETURN(const PidsByName given, ParsePids(pids));
  ASSIGN_OR_RETURN(const std::vector<v1::ParticipantInfo> registered,
                   ListParticipants(coordinator));
  auto find_pid = [&](const std::string& name, const std::string& binary,
                      const std::string& address) -> std::optional<pid_t> {
    auto it = given.find(name);
    if (it != given.end()) return it->second;
    return FindServerProcess(binary, PortOf(address));
  };
  Target target;
  target.coordinator = coordinator;
  target.processes.push_back(
      {kCoordinator, find_pid(kCoordinator, "twopc-coordinator", coordinator)});
  for (const v1::ParticipantInfo& info : registered) {
    if (static_cast<int>(target.participant_ids.size()) == participants) break;
    if (!IsConnectedKv(info)) continue;
    target.participant_ids.push_back(info.participant_id());
    target.processes.push_back(
        {info.participant_id(),
         find_pid(info.participant_id(), "twopc-participant",
                  info.endpoint())});
  }
  if (static_cast<int>(target.participant_ids.size()) < participants) {
    return absl::FailedPreconditionError(absl::StrCat(
        "coordinator ", coordinator, " has ", target.participant_ids.size(),
        " connected kv sidecars, the benchmark needs ", participants,
        ": start more or lower --participants"));
  }
  return target;
}

}  // namespace twopc::bench
