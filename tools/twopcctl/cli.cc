#include "tools/twopcctl/cli.h"

#include <algorithm>
#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::ctl {

using google::protobuf::util::TimeUtil;

std::shared_ptr<grpc::Channel> Dial(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

void SetDeadline(const GlobalFlags& flags, grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(flags.timeout_seconds)));
}

int ReportRpcError(const std::string& target, const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      std::fprintf(stderr,
                   "twopcctl: %s unreachable (%s); is it running? set "
                   "--coordinator or TWOPC_COORDINATOR\n",
                   target.c_str(), status.error_message().c_str());
      return kExitServerError;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::fprintf(stderr,
                   "twopcctl: %s did not answer in time; the outcome of the "
                   "request is unknown: check with `twopcctl txn get`\n",
                   target.c_str());
      return kExitServerError;
    case grpc::StatusCode::NOT_FOUND:
      std::fprintf(stderr, "twopcctl: %s\n", status.error_message().c_str());
      return kExitNotFound;
    case grpc::StatusCode::ABORTED:
      std::fprintf(stderr, "twopcctl: %s\n", status.error_message().c_str());
      return kExitAborted;
    case grpc::StatusCode::FAILED_PRECONDITION:
      std::fprintf(stderr, "twopcctl: refused: %s\n",
                   status.error_message().c_str());
      return kExitRefused;
    case grpc::StatusCode::UNIMPLEMENTED:
      std::fprintf(stderr,
                   "twopcctl: %s does not support this command yet\n",
                   target.c_str());
      return kExitServerError;
    default:
      std::fprintf(stderr, "twopcctl: %s\n", status.error_message().c_str());
      return kExitServerError;
  }
}

void PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::printf("%s", json.c_str());
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string Short(const std::string& enum_name, const std::string& prefix) {
  return enum_name.rfind(prefix, 0) == 0 ? enum_name.substr(prefix.size())
                                         : enum_name;
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S",
                          absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t)),
                          absl::UTCTimeZone());
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  return absl::FormatDuration(
      absl::Microseconds(TimeUtil::DurationToMicroseconds(d)));
}

}  // namespace twopc::ctl
