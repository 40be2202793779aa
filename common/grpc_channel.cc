#include "common/grpc_channel.h"

#include <grpc/grpc.h>

#include <algorithm>
#include <cstdint>

namespace twopc {
namespace {

int ClampedMilliseconds(absl::Duration duration, absl::Duration low) {
  const absl::Duration high = absl::Milliseconds(INT32_MAX);
  return static_cast<int>(
      absl::ToInt64Milliseconds(std::clamp(duration, low, high)));
}

}  // namespace

grpc::ChannelArguments KeepaliveChannelArguments(absl::Duration time,
                                                 absl::Duration timeout) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              ClampedMilliseconds(time, absl::Seconds(1)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              ClampedMilliseconds(timeout, absl::Milliseconds(1)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Keep pinging however long no data flows (the default stops after two).
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return args;
}

}  // namespace twopc
