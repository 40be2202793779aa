#include "tests/chaos/cluster_observer.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace twopc::chaos {
namespace {

using KvEntries = std::vector<std::pair<std::string, std::string>>;

constexpr absl::Duration kReadDeadline = absl::Seconds(10);
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);
// Three heartbeats at LocalCluster's 0.5 s interval.
constexpr absl::Duration kSettleFor = absl::Milliseconds(1500);
constexpr uint32_t kPageSize = 10'000;

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + kReadDeadline));
}

// What the coordinator and the sidecars still have open.
struct OpenWork {
  int64_t in_doubt = 0;
  int64_t phase2_pending = 0;
  int64_t prepared_branches = 0;
  std::vector<std::string> unlinked_sidecars;

  int64_t unfinished() const {
    return in_doubt + phase2_pending + prepared_branches;
  }
  bool settled() const {
    return unfinished() == 0 && unlinked_sidecars.empty();
  }
  std::string ToString() const {
    return absl::StrCat(in_doubt, " in doubt, ", phase2_pending,
                        " with phase 2 pending, ", prepared_branches,
                        " prepared branches, unlinked sidecars: [",
                        absl::StrJoin(unlinked_sidecars, " "), "]");
  }
};

absl::StatusOr<OpenWork> ReadOpenWork(const testing::LocalCluster& cluster,
                                      const BankLayout& bank) {
  auto admin = cluster.Admin();
  v1::Stats stats;
  {
    grpc::ClientContext context;
    SetDeadline(context);
    RETURN_IF_ERROR(FromGrpcStatus(
        admin->GetStats(&context, v1::GetStatsRequest(), &stats)));
  }
  v1::ListParticipantsResponse participants;
  {
    grpc::ClientContext context;
    SetDeadline(context);
    RETURN_IF_ERROR(FromGrpcStatus(admin->ListParticipants(
        &context, v1::ListParticipantsRequest(), &participants)));
  }
  OpenWork open{.in_doubt = static_cast<int64_t>(stats.in_doubt()),
                .phase2_pending = static_cast<int64_t>(stats.phase2_pending()),
                .prepared_branches = 0,
                .unlinked_sidecars = {}};
  for (const std::string& sidecar : bank.sidecars) {
    auto info = std::find_if(participants.participants().begin(),
                             participants.participants().end(),
                             [&](const v1::ParticipantInfo& p) {
                               return p.participant_id() == sidecar;
                             });
    if (info == participants.participants().end() || !info->link_connected()) {
      open.unlinked_sidecars.push_back(sidecar);
    } else {
      open.prepared_branches += info->prepared_branches();
    }
  }
  return open;
}

// Every committed key of `sidecar` that starts with `prefix`, in key order.
absl::StatusOr<KvEntries> Scan(const testing::LocalCluster& cluster,
                               const std::string& sidecar,
                               const std::string& prefix) {
  auto kv = cluster.Kv(sidecar);
  KvEntries entries;
  v1::KvScanRequest request;
  request.set_prefix(prefix);
  request.set_limit(kPageSize);
  while (true) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::KvScanResponse response;
    RETURN_IF_ERROR(FromGrpcStatus(kv->Scan(&context, request, &response)));
    for (const auto& entry : response.entries()) {
      entries.emplace_back(entry.key(), entry.value());
    }
    if (!response.more() || response.entries().empty()) return entries;
    request.set_start_after(entries.back().first);
  }
}

absl::StatusOr<int64_t> SumBalances(const KvEntries& accounts) {
  int64_t sum = 0;
  for (const auto& [key, value] : accounts) {
    int64_t balance = 0;
    if (!absl::SimpleAtoi(value, &balance)) {
      return absl::DataLossError(
          absl::StrCat("account ", key, " holds '", value, "'"));
    }
    sum += balance;
  }
  return sum;
}

// Reads `partition` from offset 0 to its end.
absl::StatusOr<PartitionContents> ReadPartition(
    const testing::LocalCluster& cluster, const std::string& topic,
    int partition) {
  auto queues = cluster.Queues();
  PartitionContents contents;
  v1::FetchRequest request;
  request.set_topic(topic);
  request.set_partition(partition);
  request.set_max_messages(kPageSize);
  while (true) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::FetchResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(queues->Fetch(&context, request, &response)));
    contents.log_start_offset = response.log_start_offset();
    contents.end_offset = response.end_offset();
    if (response.messages().empty()) return contents;
    for (const v1::QueueMessage& m : response.messages()) {
      contents.messages.push_back({.offset = m.offset(), .value = m.value()});
    }
    request.set_offset(contents.messages.back().offset + 1);
  }
}

}  // namespace

absl::Status WaitUntilQuiescent(const testing::LocalCluster& cluster,
                                const BankLayout& bank,
                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Time settled_since = absl::InfiniteFuture();
  std::string still_open = "no answer yet";
  while (absl::Now() < deadline) {
    absl::StatusOr<OpenWork> open = ReadOpenWork(cluster, bank);
    if (open.ok() && open->settled()) {
      settled_since = std::min(settled_since, absl::Now());
      if (absl::Now() - settled_since >= kSettleFor) return absl::OkStatus();
    } else {
      settled_since = absl::InfiniteFuture();
      still_open = open.ok() ? open->ToString() : open.status().ToString();
    }
    absl::SleepFor(kPollInterval);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "not quiescent after ", absl::FormatDuration(timeout), ": ", still_open));
}

absl::StatusOr<ClusterObservation> ObserveCluster(
    const testing::LocalCluster& cluster, const BankLayout& bank) {
  ClusterObservation observed;
  for (const std::string& sidecar : bank.sidecars) {
    ASSIGN_OR_RETURN(KvEntries accounts,
                     Scan(cluster, sidecar, kAccountPrefix));
    ASSIGN_OR_RETURN(int64_t balance, SumBalances(accounts));
    observed.total_balance += balance;
    ASSIGN_OR_RETURN(KvEntries markers, Scan(cluster, sidecar, kMarkerPrefix));
    std::set<std::string>& names = observed.markers[sidecar];
    for (const auto& [key, value] : markers) {
      names.insert(key.substr(std::string(kMarkerPrefix).size()));
    }
  }
  for (int p = 0; p < bank.partitions; ++p) {
    ASSIGN_OR_RETURN(PartitionContents contents,
                     ReadPartition(cluster, bank.topic, p));
    observed.partitions.push_back(std::move(contents));
  }
  ASSIGN_OR_RETURN(OpenWork open, ReadOpenWork(cluster, bank));
  observed.unfinished = open.unfinished();
  return observed;
}

}  // namespace twopc::chaos
