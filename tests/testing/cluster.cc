#include "tests/testing/cluster.h"

#include <cstdio>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace twopc::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(30);

}  // namespace

int PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

LocalCluster::LocalCluster(std::string bin_dir, std::string work_dir)
    : bin_dir_(std::move(bin_dir)), work_dir_(std::move(work_dir)) {}

LocalCluster::~LocalCluster() {
  for (auto& [name, node] : nodes_) {
    if (node.process != nullptr) {
      node.process->Signal(SIGCONT);
      node.process->Kill();
    }
  }
}

absl::Status LocalCluster::Launch(const std::string& name,
                                  std::vector<std::string> argv) {
  Node& node = nodes_[name];
  if (node.process != nullptr) node.process->Kill();
  const std::string log =
      absl::StrCat(work_dir_, "/", name, ".", ++node.starts, ".log");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(std::move(argv), log);
  if (!process.ok()) return process.status();
  node.process = std::move(*process);
  absl::StatusOr<std::string> line =
      node.process->WaitForLine("listening on", kStartTimeout);
  return line.status();
}

absl::Status LocalCluster::StartCoordinator(
    std::vector<std::string> extra_flags) {
  Node& node = nodes_[kCoordinator];
  if (node.port == 0) node.port = PickFreePort();
  std::vector<std::string> argv = {
      bin_dir_ + "/twopc-coordinator",
      absl::StrCat("--listen=127.0.0.1:", node.port),
      absl::StrCat("--data_dir=", work_dir_, "/coordinator"),
      "--heartbeat_interval=0.5"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  return Launch(kCoordinator, std::move(argv));
}

absl::Status LocalCluster::StartParticipant(
    const std::string& id, std::vector<std::string> extra_flags) {
  Node& node = nodes_[id];
  if (node.port == 0) node.port = PickFreePort();
  std::vector<std::string> argv = {
      bin_dir_ + "/twopc-participant", "--id=" + id,
      absl::StrCat("--listen=127.0.0.1:", node.port),
      "--coordinator=" + coordinator_address(),
      absl::StrCat("--data_dir=", work_dir_, "/", id)};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  return Launch(id, std::move(argv));
}

void LocalCluster::Kill(const std::string& name) {
  Node& node = nodes_[name];
  if (node.process != nullptr) node.process->Kill();
}

absl::Status LocalCluster::Stop(const std::string& name) {
  Node& node = nodes_[name];
  if (node.process == nullptr) return absl::OkStatus();
  node.process->Signal(SIGCONT);
  node.process->Signal(SIGTERM);
  absl::StatusOr<int> status = node.process->Wait(absl::Seconds(20));
  if (!status.ok()) return status.status();
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(absl::StrCat(name, " did not exit cleanly:\n",
                                            node.process->Output()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LocalCluster::WaitForExit(const std::string& name,
                                              absl::Duration timeout) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || it->second.process == nullptr) {
    return absl::NotFoundError(absl::StrCat(name, " was never started"));
  }
  ASSIGN_OR_RETURN(int status, it->second.process->Wait(timeout));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void LocalCluster::Freeze(const std::string& name) {
  nodes_[name].process->Freeze();
}

void LocalCluster::Thaw(const std::string& name) {
  nodes_[name].process->Signal(SIGCONT);
}

absl::Status LocalCluster::StartWithSidecars(
    const std::vector<std::string>& ids) {
  RETURN_IF_ERROR(StartCoordinator());
  for (const std::string& id : ids) RETURN_IF_ERROR(StartParticipant(id));
  return WaitForParticipants(ids, absl::Seconds(30));
}

absl::Status LocalCluster::WaitForParticipants(
    const std::vector<std::string>& ids, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  auto admin = Admin();
  std::string missing;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    v1::ListParticipantsResponse response;
    if (admin->ListParticipants(&context, v1::ListParticipantsRequest(),
                                &response)
            .ok()) {
      missing.clear();
      for (const std::string& id : ids) {
        bool up = false;
        for (const auto& p : response.participants()) {
          up |= p.participant_id() == id && p.link_connected() &&
                p.endpoint() == participant_address(id);
        }
        if (!up) absl::StrAppend(&missing, id, " ");
      }
      if (missing.empty()) return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("participants not connected: ", missing));
}

std::string LocalCluster::coordinator_address() const {
  auto it = nodes_.find(kCoordinator);
  return absl::StrCat("127.0.0.1:", it == nodes_.end() ? 0 : it->second.port);
}

std::string LocalCluster::participant_address(const std::string& id) const {
  auto it = nodes_.find(id);
  return absl::StrCat("127.0.0.1:", it == nodes_.end() ? 0 : it->second.port);
}

std::string LocalCluster::Log(const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || it->second.process == nullptr) return "";
  return it->second.process->Output();
}

void LocalCluster::PrintLogs() const {
  for (const auto& [name, node] : nodes_) {
    std::fprintf(stderr, "----- %s log -----\n%s\n", name.c_str(),
                 Log(name).c_str());
  }
}

std::unique_ptr<v1::TransactionService::Stub> LocalCluster::Transactions()
    const {
  return v1::TransactionService::NewStub(grpc::CreateChannel(
      coordinator_address(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<v1::AdminService::Stub> LocalCluster::Admin() const {
  return v1::AdminService::NewStub(grpc::CreateChannel(
      coordinator_address(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<v1::QueueService::Stub> LocalCluster::Queues() const {
  return v1::QueueService::NewStub(grpc::CreateChannel(
      coordinator_address(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<v1::KvService::Stub> LocalCluster::Kv(
    const std::string& id) const {
  return v1::KvService::NewStub(grpc::CreateChannel(
      participant_address(id), grpc::InsecureChannelCredentials()));
}

}  // namespace twopc::testing
