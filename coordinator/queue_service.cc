#include "coordinator/queue_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::coordinator {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultMessages = 500;
constexpr int kMaxMessages = 10'000;
constexpr size_t kMaxFetchBytes = 4 << 20;
constexpr size_t kDefaultBatchBytes = 1 << 20;
constexpr absl::Duration kMaxWait = absl::Seconds(30);
// How often a caught-up subscriber checks whether its client went away.
constexpr absl::Duration kSubscriberPoll = absl::Milliseconds(500);

}  // namespace

absl::Status QueueServiceImpl::CheckPosition(const std::string& topic,
                                             int32_t partition,
                                             int64_t offset) const {
  ASSIGN_OR_RETURN(v1::TopicInfo info, topics_->Describe(topic, false));
  if (partition < 0 || partition >= info.partitions()) {
    return absl::InvalidArgumentError(
        absl::StrCat("topic ", QuoteField(topic), " has partitions 0..",
                     info.partitions() - 1, "; got ", partition));
  }
  if (offset < 0) {
    return absl::InvalidArgumentError("offset must be >= 0");
  }
  return absl::OkStatus();
}

grpc::Status QueueServiceImpl::Fetch(grpc::ServerContext*,
                                     const v1::FetchRequest* request,
                                     v1::FetchResponse* response) {
  absl::Status valid =
      CheckPosition(request->topic(), request->partition(), request->offset());
  if (!valid.ok()) return ToGrpcStatus(valid);
  if (request->max_messages() > kMaxMessages ||
      request->max_bytes() > kMaxFetchBytes) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("max_messages is at most ", kMaxMessages,
                     " and max_bytes at most ", kMaxFetchBytes)));
  }
  const absl::Duration wait = absl::Microseconds(
      TimeUtil::DurationToMicroseconds(request->max_wait()));
  if (wait < absl::ZeroDuration() || wait > kMaxWait) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("max_wait must be between 0 and 30s"));
  }
  const int max_messages = request->max_messages() == 0
                               ? kDefaultMessages
                               : static_cast<int>(request->max_messages());
  const size_t max_bytes =
      request->max_bytes() == 0 ? kMaxFetchBytes : request->max_bytes();
  auto read = logs_->Read(request->topic(), request->partition(),
                          request->offset(), max_messages, max_bytes);
  if (read.ok() && read->messages.empty() && wait > absl::ZeroDuration()) {
    logs_->WaitForEnd(request->topic(), request->partition(),
                      request->offset(), absl::Now() + wait);
    read = logs_->Read(request->topic(), request->partition(),
                       request->offset(), max_messages, max_bytes);
  }
  if (!read.ok()) return ToGrpcStatus(read.status());
  for (v1::QueueMessage& message : read->messages) {
    *response->add_messages() = std::move(message);
  }
  response->set_log_start_offset(read->offsets.log_start);
  response->set_end_offset(read->offsets.end);
  return grpc::Status::OK;
}

grpc::Status QueueServiceImpl::Subscribe(
    grpc::ServerContext* context, const v1::SubscribeRequest* request,
    grpc::ServerWriter<v1::SubscribeResponse>* writer) {
  absl::Status valid =
      CheckPosition(request->topic(), request->partition(), request->offset());
  if (!valid.ok()) return ToGrpcStatus(valid);
  const int max_messages =
      request->max_batch_messages() == 0
          ? kDefaultMessages
          : std::min<int>(kMaxMessages, request->max_batch_messages());
  const size_t max_bytes =
      request->max_batch_bytes() == 0
          ? kDefaultBatchBytes
          : std::min<size_t>(kMaxFetchBytes, request->max_batch_bytes());
  int64_t offset = request->offset();
  while (!context->IsCancelled()) {
    if (logs_->waits_ended()) {
      return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
          "the coordinator is shutting down: subscribe again from offset ",
          offset, " once it is back")));
    }
    auto read = logs_->Read(request->topic(), request->partition(), offset,
                            max_messages, max_bytes);
    if (!read.ok()) return ToGrpcStatus(read.status());
    if (read->messages.empty()) {
      logs_->WaitForEnd(request->topic(), request->partition(), offset,
                        absl::Now() + kSubscriberPoll);
      continue;
    }
    v1::SubscribeResponse response;
    offset = read->messages.back().offset() + 1;
    for (v1::QueueMessage& message : read->messages) {
      *response.add_messages() = std::move(message);
    }
    response.set_end_offset(read->offsets.end);
    if (!writer->Write(response)) break;
  }
  return grpc::Status::CANCELLED;
}

grpc::Status QueueServiceImpl::JoinGroup(grpc::ServerContext*,
                                         const v1::JoinGroupRequest* request,
                                         v1::JoinGroupResponse* response) {
  return ReplyWith(groups_->Join(*request), response);
}

grpc::Status QueueServiceImpl::GroupHeartbeat(
    grpc::ServerContext*, const v1::GroupHeartbeatRequest* request,
    v1::GroupHeartbeatResponse* response) {
  return ReplyWith(groups_->Heartbeat(*request), response);
}

grpc::Status QueueServiceImpl::LeaveGroup(grpc::ServerContext*,
                                          const v1::LeaveGroupRequest* request,
                                          v1::LeaveGroupResponse*) {
  groups_->Leave(*request);
  return grpc::Status::OK;
}

grpc::Status QueueServiceImpl::CommitOffsets(
    grpc::ServerContext*, const v1::CommitOffsetsRequest* request,
    v1::CommitOffsetsResponse*) {
  return ToGrpcStatus(groups_->CommitOffsets(*request));
}

grpc::Status QueueServiceImpl::FetchOffsets(
    grpc::ServerContext*, const v1::FetchOffsetsRequest* request,
    v1::FetchOffsetsResponse* response) {
  return ReplyWith(groups_->FetchOffsets(*request), response);
}

}  // namespace twopc::coordinator
