#include "coordinator/participant_registry.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::coordinator {
namespace {

google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
      absl::ToUnixMicros(t));
}

// The longest endpoint Register accepts.
constexpr size_t kMaxEndpointBytes = 256;

// OK for what the coordinator's channel can dial: host:port, where host is
// a DNS name or IPv4 address ([A-Za-z0-9._-]+) or an IPv6 address in
// brackets, and port is 1..65535; at most kMaxEndpointBytes in all.
absl::Status ValidateEndpoint(const std::string& endpoint) {
  auto invalid = [&endpoint](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "endpoint ", QuoteField(endpoint), " is invalid: ", why,
        "; use host:port, 1 to ", kMaxEndpointBytes,
        " bytes, e.g. 127.0.0.1:7401"));
  };
  if (endpoint.size() > kMaxEndpointBytes) {
    return invalid(absl::StrCat("it is ", endpoint.size(),
                                " bytes; the limit is ", kMaxEndpointBytes,
                                " bytes"));
  }
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) return invalid("it has no port");
  const absl::string_view host = absl::string_view(endpoint).substr(0, colon);
  const absl::string_view port = absl::string_view(endpoint).substr(colon + 1);
  uint32_t port_number = 0;
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &port_number) || port_number < 1 ||
      port_number > 65535) {
    return invalid("the port is not a number from 1 to 65535");
  }
  bool host_ok = !host.empty();
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    for (char c : host.substr(1, host.size() - 2)) {
      host_ok &= absl::ascii_isxdigit(static_cast<unsigned char>(c)) ||
                 c == ':' || c == '.';
    }
  } else {
    for (char c : host) {
      host_ok &= absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                 c == '.' || c == '-' || c == '_';
    }
  }
  if (!host_ok) {
    return invalid(
        "the host is not a name, an IPv4 address or an [IPv6] address");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParticipantUnknownError(const std::string& participant_id,
                                     absl::string_view what) {
  v1::ErrorInfo info;
  info.set_reason("PARTICIPANT_UNKNOWN");
  info.set_participant_id(participant_id);
  return WithErrorInfo(
      absl::NotFoundError(absl::StrCat("participant ", participant_id, " ", what)),
      info);
}

ParticipantRegistry::ParticipantRegistry(storage::Store* store, Clock* clock,
                                         CompletionQueueLoop* loop,
                                         uint64_t epoch,
                                         ParticipantLink::Callbacks callbacks,
                                         absl::Duration heartbeat_interval)
    : store_(store),
      clock_(clock),
      loop_(loop),
      epoch_(epoch),
      callbacks_(std::move(callbacks)),
      heartbeat_interval_(heartbeat_interval) {}

std::shared_ptr<ParticipantLink> ParticipantRegistry::MakeLink(
    const internal::ParticipantRecord& record) {
  return std::make_shared<ParticipantLink>(loop_, record.participant_id(),
                                           record.endpoint(), epoch_,
                                           callbacks_);
}

absl::Status ParticipantRegistry::Load() {
  std::unique_ptr<rocksdb::Iterator> it(store_->db()->NewIterator(
      rocksdb::ReadOptions(), store_->family(kFamily)));
  absl::MutexLock lock(&mu_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    internal::ParticipantRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat("participant registry in ", store_->dir(),
                       " holds a corrupt record"));
    }
    Entry& entry = participants_[record.participant_id()];
    entry.link = MakeLink(record);
    entry.record = std::move(record);
  }
  return storage::FromRocksDb(it->status(), "loading participants");
}

absl::Status ParticipantRegistry::Register(const std::string& participant_id,
                                           const std::string& endpoint,
                                           const std::string& resource) {
  RETURN_IF_ERROR(ValidateIdentifier("participant id", participant_id));
  RETURN_IF_ERROR(ValidateEndpoint(endpoint));
  internal::ParticipantRecord record;
  record.set_participant_id(participant_id);
  record.set_endpoint(endpoint);
  record.set_resource(resource);
  absl::MutexLock serial(&register_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = participants_.find(participant_id);
    if (it != participants_.end() &&
        it->second.record.endpoint() == endpoint &&
        it->second.record.resource() == resource) {
      it->second.last_heartbeat = clock_->Now();
      return absl::OkStatus();  // nothing changed
    }
  }
  // The synced write happens outside mu_, which Send (on the hot path) takes.
  record.set_register_time_us(absl::ToUnixMicros(clock_->Now()));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(storage::FromRocksDb(
      store_->db()->Put(sync, store_->family(kFamily), participant_id,
                        record.SerializeAsString()),
      "registering participant"));
  std::shared_ptr<ParticipantLink> link = MakeLink(record);
  {
    absl::MutexLock lock(&mu_);
    Entry& entry = participants_[participant_id];
    if (entry.link != nullptr) {
      RetireLinkLocked(entry, "re-registered; its old link is closed");
    }
    entry.link = std::move(link);
    entry.record = std::move(record);
    entry.last_heartbeat = clock_->Now();
  }
  DestroyRetiredLinks();
  return absl::OkStatus();
}

absl::Status ParticipantRegistry::Remove(const std::string& participant_id,
                                         rocksdb::WriteBatch with) {
  absl::MutexLock serial(&register_mu_);
  RETURN_IF_ERROR(CheckRegistered(participant_id));
  // Synced before the link goes: after a crash it stays removed.
  RETURN_IF_ERROR(storage::FromRocksDb(
      with.Delete(store_->family(kFamily), participant_id),
      "removing participant"));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(storage::FromRocksDb(store_->db()->Write(sync, &with),
                                       "removing participant"));
  {
    absl::MutexLock lock(&mu_);
    auto it = participants_.find(participant_id);
    if (it != participants_.end()) {  // else Shutdown took it
      RetireLinkLocked(it->second, "was removed by an operator");
      participants_.erase(it);
    }
  }
  DestroyRetiredLinks();
  return absl::OkStatus();
}

void ParticipantRegistry::RetireLinkLocked(Entry& entry,
                                           absl::string_view why) {
  entry.link->Stop(absl::StrCat("UNAVAILABLE: participant ",
                                entry.record.participant_id(), " ", why));
  retired_.push_back(std::move(entry.link));
}

void ParticipantRegistry::DestroyRetiredLinks() {
  std::vector<std::shared_ptr<ParticipantLink>> retired;
  {
    absl::MutexLock lock(&mu_);
    // A Send that found a link before it was retired may still be using it.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_sends_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
    retired.swap(retired_);
  }
  retired.clear();  // outside mu_: fails what was in flight via callbacks
}

absl::Status ParticipantRegistry::Heartbeat(const std::string& participant_id,
                                            uint32_t prepared_branches,
                                            uint32_t in_flight_requests) {
  absl::MutexLock lock(&mu_);
  auto it = participants_.find(participant_id);
  if (it == participants_.end()) {
    return absl::NotFoundError(
        absl::StrCat("participant ", QuoteField(participant_id),
                     " is not registered; register again"));
  }
  it->second.last_heartbeat = clock_->Now();
  it->second.prepared_branches = prepared_branches;
  it->second.reported_in_flight = in_flight_requests;
  return absl::OkStatus();
}

bool ParticipantRegistry::IsRegistered(const std::string& participant_id) const {
  absl::MutexLock lock(&mu_);
  return participants_.count(participant_id) > 0;
}

absl::Status ParticipantRegistry::CheckRegistered(
    const std::string& participant_id) const {
  if (IsRegistered(participant_id)) return absl::OkStatus();
  return ParticipantUnknownError(
      participant_id,
      "is not registered; start its sidecar or check the name (twopcctl "
      "participant list)");
}

bool ParticipantRegistry::Send(const std::string& participant_id,
                               v1::BranchRequest request) {
  ParticipantLink* link = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = participants_.find(participant_id);
    if (closed_ || it == participants_.end()) return false;
    // The entry (or retired_) keeps the link alive until active_sends_
    // drops back to 0; see Shutdown.
    link = it->second.link.get();
    ++active_sends_;
  }
  link->Send(std::move(request));
  absl::MutexLock lock(&mu_);
  --active_sends_;
  return true;
}

std::vector<v1::ParticipantInfo> ParticipantRegistry::List() const {
  const absl::Time now = clock_->Now();
  std::vector<v1::ParticipantInfo> result;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, entry] : participants_) {
    v1::ParticipantInfo info;
    info.set_participant_id(id);
    info.set_endpoint(entry.record.endpoint());
    info.set_resource(entry.record.resource());
    *info.mutable_register_time() =
        ToProto(absl::FromUnixMicros(entry.record.register_time_us()));
    if (entry.last_heartbeat != absl::InfinitePast()) {
      *info.mutable_last_heartbeat() = ToProto(entry.last_heartbeat);
    }
    const bool link_up = entry.link->connected();
    info.set_link_connected(link_up);
    info.set_in_flight_requests(static_cast<uint32_t>(entry.link->in_flight()));
    info.set_prepared_branches(entry.prepared_branches);
    const absl::Duration silence = now - entry.last_heartbeat;
    if (!link_up || silence > 3 * heartbeat_interval_) {
      info.set_health(v1::PARTICIPANT_HEALTH_DOWN);
    } else if (silence > heartbeat_interval_ * 3 / 2) {
      info.set_health(v1::PARTICIPANT_HEALTH_SUSPECT);
    } else {
      info.set_health(v1::PARTICIPANT_HEALTH_HEALTHY);
    }
    result.push_back(std::move(info));
  }
  return result;
}

void ParticipantRegistry::Shutdown() {
  std::map<std::string, Entry> participants;
  std::vector<std::shared_ptr<ParticipantLink>> retired;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return active_sends_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
    participants.swap(participants_);
    retired.swap(retired_);
  }
  // Destroyed outside the lock (their destructors wait for the link loop
  // and fail what was in flight through the callbacks).
  participants.clear();
  retired.clear();
}

}  // namespace twopc::coordinator
