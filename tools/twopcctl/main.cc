// twopcctl: the operator CLI over AdminService, TransactionService,
// QueueService and a sidecar's KvService. The transaction commands are in
// txn_commands.cc, the shared plumbing in cli.h.
//
// Exit codes (documented in README.md): 0 success, 1 server error or
// unreachable, 2 usage error, 3 not found, 4 the transaction aborted,
// 5 refused in the transaction's current state.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tools/twopcctl/cli.h"
#include "tools/twopcctl/txn_commands.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/kv.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"

namespace twopc::ctl {
namespace {

using google::protobuf::util::TimeUtil;

// ---------------------------------------------------------------------------
// health

int RunHealth(const GlobalFlags& flags) {
  grpc::health::v1::HealthCheckResponse response;
  if (int rc = CallCoordinator(flags, &grpc::health::v1::Health::Stub::Check,
                               grpc::health::v1::HealthCheckRequest(),
                               &response)) {
    return rc;
  }
  const std::string serving =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
          response.status());
  if (flags.json()) {
    std::printf("{\"coordinator\": \"%s\", \"status\": \"%s\"}\n",
                flags.coordinator.c_str(), serving.c_str());
  } else {
    PrintTable({{"COORDINATOR", "STATUS"}, {flags.coordinator, serving}});
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitServerError;
}

// ---------------------------------------------------------------------------
// participant list, stats

int RunParticipants(const GlobalFlags& flags) {
  v1::ListParticipantsResponse response;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::ListParticipants,
                               v1::ListParticipantsRequest(), &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"PARTICIPANT", "ENDPOINT", "RESOURCE", "HEALTH", "LINK", "LAST HEARTBEAT",
       "IN FLIGHT", "PREPARED", "UNFINISHED"}};
  for (const v1::ParticipantInfo& p : response.participants()) {
    rows.push_back({p.participant_id(), p.endpoint(), p.resource(),
                    Short(v1::ParticipantHealth_Name(p.health()), "PARTICIPANT_HEALTH_"),
                    p.link_connected() ? "up" : "down", FormatTime(p.last_heartbeat()),
                    absl::StrCat(p.in_flight_requests()),
                    absl::StrCat(p.prepared_branches()),
                    absl::StrCat(p.unfinished_transactions())});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunParticipantRemove(const GlobalFlags& flags,
                         const v1::RemoveParticipantRequest& request) {
  v1::RemoveParticipantRequest with_operator = request;
  if (with_operator.operator_().empty() && std::getenv("USER") != nullptr) {
    with_operator.set_operator_(std::getenv("USER"));
  }
  v1::RemoveParticipantResponse response;
  if (int rc = CallCoordinator(flags,
                               &v1::AdminService::Stub::RemoveParticipant,
                               with_operator, &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
  } else {
    std::printf("removed participant %s\n", request.participant_id().c_str());
  }
  return kExitOk;
}

int RunStats(const GlobalFlags& flags) {
  v1::Stats stats;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::GetStats,
                               v1::GetStatsRequest(), &stats)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(stats);
    return kExitOk;
  }
  const v1::LatencySummary& l = stats.commit_latency();
  PrintTable({
      {"STAT", "VALUE"},
      {"epoch", absl::StrCat(stats.coordinator_epoch())},
      {"committed", absl::StrCat(stats.committed_total())},
      {"aborted", absl::StrCat(stats.aborted_total())},
      {"committed/s (10s)", absl::StrCat(stats.committed_per_second())},
      {"commit latency p50/p90/p99/p99.9/max",
       absl::StrCat(FormatDuration(l.p50()), " / ", FormatDuration(l.p90()), " / ",
                    FormatDuration(l.p99()), " / ", FormatDuration(l.p999()), " / ",
                    FormatDuration(l.max()))},
      {"in doubt (oldest)",
       stats.in_doubt() == 0
           ? "0"
           : absl::StrCat(stats.in_doubt(), " (oldest ",
                          FormatDuration(stats.oldest_in_doubt_age()), ")")},
      {"phase 2 pending", absl::StrCat(stats.phase2_pending())},
      {"parked", absl::StrCat(stats.parked())},
      {"log syncs", absl::StrCat(stats.log_syncs())},
      {"decisions per sync", absl::StrCat(stats.decisions_per_sync())},
  });
  return kExitOk;
}

// ---------------------------------------------------------------------------
// kv get / kv scan (a sidecar's committed state)

int RunKvGet(const GlobalFlags& flags, const std::string& sidecar,
             const std::string& key) {
  v1::KvGetRequest request;
  request.set_key(key);
  v1::KvGetResponse response;
  if (int rc = Call(flags, "sidecar " + sidecar, sidecar,
                    &v1::KvService::Stub::Get, request, &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
  } else if (!response.found()) {
    std::fprintf(stderr, "twopcctl: key '%s' not found\n", key.c_str());
    return kExitNotFound;
  } else {
    std::printf("%s\n", response.value().c_str());
  }
  return response.found() ? kExitOk : kExitNotFound;
}

int RunKvScan(const GlobalFlags& flags, const std::string& sidecar,
              const std::string& prefix) {
  auto stub = v1::KvService::NewStub(Dial(sidecar));
  std::vector<std::vector<std::string>> rows = {{"KEY", "VALUE"}};
  v1::KvScanResponse all;
  std::string start_after;
  do {
    grpc::ClientContext context;
    SetDeadline(flags, &context);
    v1::KvScanRequest request;
    request.set_prefix(prefix);
    request.set_start_after(start_after);
    request.set_limit(1000);
    v1::KvScanResponse page;
    grpc::Status status = stub->Scan(&context, request, &page);
    if (!status.ok()) return ReportRpcError("sidecar " + sidecar, status);
    for (const auto& entry : page.entries()) {
      rows.push_back({entry.key(), entry.value()});
      *all.add_entries() = entry;
      start_after = entry.key();
    }
    if (!page.more()) break;
  } while (true);
  if (flags.json()) {
    PrintJson(all);
  } else {
    PrintTable(rows);
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------
// topic create / list / describe, consume

void PrintTopics(const GlobalFlags& flags,
                 const std::vector<v1::TopicInfo>& topics) {
  std::vector<std::vector<std::string>> rows = {
      {"TOPIC", "PARTITIONS", "RETENTION AGE", "RETENTION BYTES", "CREATED"}};
  for (const v1::TopicInfo& t : topics) {
    rows.push_back({t.name(), absl::StrCat(t.partitions()),
                    t.retention().has_max_age() &&
                            TimeUtil::DurationToMicroseconds(
                                t.retention().max_age()) > 0
                        ? FormatDuration(t.retention().max_age())
                        : "unlimited",
                    t.retention().max_bytes() > 0
                        ? absl::StrCat(t.retention().max_bytes())
                        : "unlimited",
                    FormatTime(t.create_time())});
  }
  PrintTable(rows);
  (void)flags;
}

struct TopicFlags {
  std::string name;
  int32_t partitions = 1;
  double max_age_seconds = 0;
  int64_t max_bytes = 0;
};

int RunTopicCreate(const GlobalFlags& flags, const TopicFlags& topic) {
  v1::CreateTopicRequest request;
  request.set_name(topic.name);
  request.set_partitions(topic.partitions);
  *request.mutable_retention()->mutable_max_age() =
      TimeUtil::MicrosecondsToDuration(
          static_cast<int64_t>(topic.max_age_seconds * 1e6));
  request.mutable_retention()->set_max_bytes(topic.max_bytes);
  v1::TopicInfo info;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::CreateTopic,
                               request, &info)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(info);
  } else {
    PrintTopics(flags, {info});
  }
  return kExitOk;
}

int RunTopicList(const GlobalFlags& flags) {
  v1::ListTopicsResponse response;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::ListTopics,
                               v1::ListTopicsRequest(), &response)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(response);
  } else {
    PrintTopics(flags, {response.topics().begin(), response.topics().end()});
  }
  return kExitOk;
}

int RunTopicDescribe(const GlobalFlags& flags, const std::string& name) {
  v1::DescribeTopicRequest request;
  request.set_name(name);
  v1::TopicInfo info;
  if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::DescribeTopic,
                               request, &info)) {
    return rc;
  }
  if (flags.json()) {
    PrintJson(info);
    return kExitOk;
  }
  PrintTopics(flags, {info});
  std::vector<std::vector<std::string>> rows = {
      {"PARTITION", "START OFFSET", "END OFFSET"}};
  for (const v1::PartitionInfo& p : info.partition_info()) {
    rows.push_back({absl::StrCat(p.partition()),
                    absl::StrCat(p.log_start_offset()),
                    absl::StrCat(p.end_offset())});
  }
  std::printf("\n");
  PrintTable(rows);
  return kExitOk;
}

struct ConsumeFlags {
  std::string topic;
  int32_t partition = 0;
  int64_t from = 0;
  bool follow = false;
  int64_t max = 0;
  std::string group;
  double session_seconds = 10;
};

void PrintMessage(const GlobalFlags& flags, const v1::QueueMessage& m,
                  bool* header) {
  if (flags.json()) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(m, &json, options);
    std::printf("%s\n", json.c_str());
  } else {
    if (*header) {
      std::printf("%-9s %-8s %-20s %-24s %s\n", "PARTITION", "OFFSET",
                  "TRANSACTION", "KEY", "VALUE");
      *header = false;
    }
    std::printf("%-9d %-8lld %-20s %-24s %s\n", m.partition(),
                static_cast<long long>(m.offset()), m.transaction_id().c_str(),
                m.key().c_str(), m.value().c_str());
  }
  std::fflush(stdout);
}

// Consumes as a member of a consumer group: reads the partitions the group
// assigns to this member from the group's committed offsets, and commits
// after printing each batch (at-least-once). Runs until --max messages or,
// without --follow, until its partitions are drained.
int RunGroupConsume(const GlobalFlags& flags, const ConsumeFlags& consume) {
  auto stub = v1::QueueService::NewStub(Dial(flags.coordinator));
  const std::string target = "coordinator " + flags.coordinator;
  std::string member;
  uint64_t generation = 0;
  std::vector<v1::TopicPartition> assignment;
  absl::Duration heartbeat_every = absl::Seconds(1);
  absl::Time next_heartbeat = absl::InfinitePast();
  std::map<std::pair<std::string, int32_t>, int64_t> positions;
  int64_t printed = 0;
  bool header = !flags.json();
  while (true) {
    if (absl::Now() >= next_heartbeat) {
      grpc::ClientContext context;
      SetDeadline(flags, &context);
      if (member.empty()) {
        v1::JoinGroupRequest join;
        join.set_group_id(consume.group);
        join.add_topics(consume.topic);
        *join.mutable_session_timeout() = TimeUtil::MicrosecondsToDuration(
            static_cast<int64_t>(consume.session_seconds * 1e6));
        v1::JoinGroupResponse joined;
        grpc::Status status = stub->JoinGroup(&context, join, &joined);
        if (!status.ok()) return ReportRpcError(target, status);
        member = joined.member_id();
        generation = joined.generation();
        assignment.assign(joined.assignment().begin(), joined.assignment().end());
        heartbeat_every = absl::Microseconds(
            TimeUtil::DurationToMicroseconds(joined.heartbeat_interval()));
      } else {
        v1::GroupHeartbeatRequest beat;
        beat.set_group_id(consume.group);
        beat.set_member_id(member);
        v1::GroupHeartbeatResponse response;
        grpc::Status status = stub->GroupHeartbeat(&context, beat, &response);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          member.clear();  // expired: join again
          continue;
        }
        if (!status.ok()) return ReportRpcError(target, status);
        if (response.generation() != generation) positions.clear();
        generation = response.generation();
        assignment.assign(response.assignment().begin(),
                          response.assignment().end());
      }
      std::fprintf(stderr, "twopcctl: member %s of %s, generation %llu, %zu partitions\n",
                   member.c_str(), consume.group.c_str(),
                   static_cast<unsigned long long>(generation),
                   assignment.size());
      next_heartbeat = absl::Now() + heartbeat_every;
      // Resume every newly assigned partition from the group's offset.
      grpc::ClientContext offsets_context;
      SetDeadline(flags, &offsets_context);
      v1::FetchOffsetsRequest request;
      request.set_group_id(consume.group);
      request.add_topics(consume.topic);
      v1::FetchOffsetsResponse committed;
      grpc::Status status =
          stub->FetchOffsets(&offsets_context, request, &committed);
      if (!status.ok()) return ReportRpcError(target, status);
      for (const v1::TopicPartition& tp : assignment) {
        auto key = std::make_pair(tp.topic(), tp.partition());
        if (positions.count(key)) continue;
        positions[key] = 0;
        for (const v1::PartitionOffset& o : committed.offsets()) {
          if (o.topic() == tp.topic() && o.partition() == tp.partition()) {
            positions[key] = o.offset();
          }
        }
      }
    }
    bool any = false;
    for (const v1::TopicPartition& tp : assignment) {
      auto key = std::make_pair(tp.topic(), tp.partition());
      grpc::ClientContext context;
      SetDeadline(flags, &context);
      v1::FetchRequest fetch;
      fetch.set_topic(tp.topic());
      fetch.set_partition(tp.partition());
      fetch.set_offset(positions[key]);
      fetch.set_max_messages(100);
      v1::FetchResponse response;
      grpc::Status status = stub->Fetch(&context, fetch, &response);
      if (!status.ok()) return ReportRpcError(target, status);
      if (response.messages().empty()) continue;
      any = true;
      for (const v1::QueueMessage& m : response.messages()) {
        PrintMessage(flags, m, &header);
        positions[key] = m.offset() + 1;
        ++printed;
      }
      grpc::ClientContext commit_context;
      SetDeadline(flags, &commit_context);
      v1::CommitOffsetsRequest commit;
      commit.set_group_id(consume.group);
      commit.set_member_id(member);
      commit.set_generation(generation);
      v1::PartitionOffset* offset = commit.add_offsets();
      offset->set_topic(tp.topic());
      offset->set_partition(tp.partition());
      offset->set_offset(positions[key]);
      v1::CommitOffsetsResponse committed;
      status = stub->CommitOffsets(&commit_context, commit, &committed);
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        next_heartbeat = absl::InfinitePast();  // reassigned: re-sync
        break;
      }
      if (!status.ok()) return ReportRpcError(target, status);
      if (consume.max > 0 && printed >= consume.max) break;
    }
    if ((consume.max > 0 && printed >= consume.max) ||
        (!any && !consume.follow)) {
      grpc::ClientContext context;
      SetDeadline(flags, &context);
      v1::LeaveGroupRequest leave;
      leave.set_group_id(consume.group);
      leave.set_member_id(member);
      v1::LeaveGroupResponse left;
      (void)stub->LeaveGroup(&context, leave, &left);
      return kExitOk;
    }
    if (!any) absl::SleepFor(absl::Milliseconds(100));
  }
}

int RunConsume(const GlobalFlags& flags, const ConsumeFlags& consume) {
  if (!consume.group.empty()) return RunGroupConsume(flags, consume);
  auto stub = v1::QueueService::NewStub(Dial(flags.coordinator));
  int64_t offset = consume.from;
  int64_t printed = 0;
  bool header = !flags.json();
  while (true) {
    grpc::ClientContext context;
    v1::FetchRequest request;
    request.set_topic(consume.topic);
    request.set_partition(consume.partition);
    request.set_offset(offset);
    if (consume.follow) {
      request.mutable_max_wait()->set_seconds(1);
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    } else {
      SetDeadline(flags, &context);
    }
    v1::FetchResponse response;
    grpc::Status status = stub->Fetch(&context, request, &response);
    if (!status.ok()) return ReportRpcError("coordinator " + flags.coordinator, status);
    for (const v1::QueueMessage& m : response.messages()) {
      PrintMessage(flags, m, &header);
      offset = m.offset() + 1;
      if (consume.max > 0 && ++printed >= consume.max) return kExitOk;
    }
    if (response.messages().empty() && !consume.follow) return kExitOk;
  }
}

int RunGroups(const GlobalFlags& flags, const std::string& group_id) {
  std::vector<v1::GroupInfo> groups;
  if (group_id.empty()) {
    v1::ListGroupsResponse response;
    if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::ListGroups,
                                 v1::ListGroupsRequest(), &response)) {
      return rc;
    }
    if (flags.json()) PrintJson(response);
    groups.assign(response.groups().begin(), response.groups().end());
  } else {
    v1::DescribeGroupRequest request;
    request.set_group_id(group_id);
    v1::GroupInfo info;
    if (int rc = CallCoordinator(flags, &v1::AdminService::Stub::DescribeGroup,
                                 request, &info)) {
      return rc;
    }
    if (flags.json()) PrintJson(info);
    groups.push_back(std::move(info));
  }
  if (flags.json()) return kExitOk;
  std::vector<std::vector<std::string>> rows = {
      {"GROUP", "GENERATION", "TOPIC", "PARTITION", "MEMBER", "COMMITTED",
       "END", "LAG"}};
  for (const v1::GroupInfo& g : groups) {
    for (const v1::GroupPartition& p : g.partitions()) {
      rows.push_back({g.group_id(), absl::StrCat(g.generation()), p.topic(),
                      absl::StrCat(p.partition()),
                      p.member_id().empty() ? "-" : p.member_id(),
                      p.committed_offset() < 0
                          ? "-"
                          : absl::StrCat(p.committed_offset()),
                      absl::StrCat(p.end_offset()), absl::StrCat(p.lag())});
    }
  }
  PrintTable(rows);
  return kExitOk;
}

}  // namespace
}  // namespace twopc::ctl

int main(int argc, char** argv) {
  using namespace twopc::ctl;  // NOLINT: the commands of this binary
  GlobalFlags flags;
  CLI::App app{
      "twopcctl: run, inspect and repair twopc transactions, participants "
      "and queues.\nExit codes: 0 ok, 1 server error or unreachable, 2 usage "
      "error, 3 not found, 4 transaction aborted, 5 refused (not allowed in "
      "the transaction's state)."};
  app.require_subcommand(1);
  app.add_option("--coordinator", flags.coordinator, "coordinator host:port")
      ->envname("TWOPC_COORDINATOR")
      ->capture_default_str();
  app.add_option("-o,--output", flags.output, "output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", flags.timeout_seconds, "RPC timeout in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  int exit_code = kExitOk;
  app.add_subcommand("health", "check that the coordinator is serving")
      ->callback([&] { exit_code = RunHealth(flags); });

  TxnCommands txn_commands(&app, &flags, &exit_code);

  CLI::App* participant =
      app.add_subcommand("participant", "registered participant sidecars");
  participant->require_subcommand(1);
  participant->add_subcommand("list", "participants with their health")
      ->callback([&] { exit_code = RunParticipants(flags); });
  twopc::v1::RemoveParticipantRequest removal;
  CLI::App* participant_remove = participant->add_subcommand(
      "remove",
      "forget a participant whose sidecar is retired (refused while a "
      "transaction still has a branch on it; a sidecar still running "
      "registers again); audited");
  participant_remove
      ->add_option("ID", *removal.mutable_participant_id(), "participant id")
      ->required();
  participant_remove
      ->add_option("--reason", *removal.mutable_reason(),
                   "why (written to the audit log)")
      ->required();
  participant_remove->add_option("--operator", *removal.mutable_operator_(),
                                 "who (default: $USER)");
  participant_remove->callback(
      [&] { exit_code = RunParticipantRemove(flags, removal); });

  app.add_subcommand("stats", "throughput, latency, in-doubt, group commit")
      ->callback([&] { exit_code = RunStats(flags); });

  CLI::App* kv = app.add_subcommand(
      "kv", "read a kv sidecar's committed state (KvService)");
  kv->require_subcommand(1);
  std::string sidecar = "127.0.0.1:7401";
  std::string kv_arg;
  CLI::App* kv_get = kv->add_subcommand("get", "the committed value of a key");
  kv_get->add_option("KEY", kv_arg, "key")->required();
  kv_get->callback([&] { exit_code = RunKvGet(flags, sidecar, kv_arg); });
  CLI::App* kv_scan = kv->add_subcommand("scan", "committed keys with a prefix");
  kv_scan->add_option("PREFIX", kv_arg, "key prefix");
  kv_scan->callback([&] { exit_code = RunKvScan(flags, sidecar, kv_arg); });
  for (CLI::App* command : {kv_get, kv_scan}) {
    command->add_option("--sidecar", sidecar, "sidecar host:port")
        ->capture_default_str();
  }

  CLI::App* topic = app.add_subcommand("topic", "queue topics");
  topic->require_subcommand(1);
  TopicFlags topic_flags;
  CLI::App* topic_create = topic->add_subcommand("create", "create a topic");
  topic_create->add_option("NAME", topic_flags.name, "topic name")->required();
  topic_create
      ->add_option("--partitions", topic_flags.partitions,
                   "number of partitions (1..1024, fixed)")
      ->capture_default_str();
  topic_create->add_option("--retention_seconds", topic_flags.max_age_seconds,
                           "drop messages older than this (0 = keep)");
  topic_create->add_option("--retention_bytes", topic_flags.max_bytes,
                           "keep at most this many bytes per partition "
                           "(0 = unlimited)");
  topic_create->callback(
      [&] { exit_code = RunTopicCreate(flags, topic_flags); });
  topic->add_subcommand("list", "all topics")
      ->callback([&] { exit_code = RunTopicList(flags); });
  CLI::App* topic_describe =
      topic->add_subcommand("describe", "a topic with partition offsets");
  topic_describe->add_option("NAME", topic_flags.name, "topic name")
      ->required();
  topic_describe->callback(
      [&] { exit_code = RunTopicDescribe(flags, topic_flags.name); });

  ConsumeFlags consume;
  CLI::App* consume_cmd =
      app.add_subcommand("consume", "read a partition of a topic");
  consume_cmd->add_option("TOPIC", consume.topic, "topic")->required();
  consume_cmd->add_option("--partition", consume.partition, "partition")
      ->capture_default_str();
  consume_cmd->add_option("--from", consume.from, "first offset")
      ->capture_default_str();
  consume_cmd->add_flag("--follow", consume.follow,
                        "keep waiting for new messages (Ctrl-C to stop)");
  consume_cmd->add_option("--max", consume.max,
                          "stop after this many messages (0 = no limit)");
  consume_cmd->add_option("--group", consume.group,
                          "consume as a member of this consumer group: the "
                          "group assigns partitions and keeps offsets");
  consume_cmd->add_option("--session_timeout", consume.session_seconds,
                          "seconds without heartbeat before the group gives "
                          "this member's partitions to others")
      ->capture_default_str();
  consume_cmd->callback([&] { exit_code = RunConsume(flags, consume); });

  CLI::App* group = app.add_subcommand("group", "consumer groups");
  group->require_subcommand(1);
  std::string group_id;
  group->add_subcommand("list", "groups with members and lag")
      ->callback([&] { exit_code = RunGroups(flags, ""); });
  CLI::App* group_describe =
      group->add_subcommand("describe", "a group's members, offsets and lag");
  group_describe->add_option("GROUP", group_id, "group id")->required();
  group_describe->callback([&] { exit_code = RunGroups(flags, group_id); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // prints help, exit 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}
