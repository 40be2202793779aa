#include "client/coordinator_channel.h"

#include "common/grpc_channel.h"

namespace twopc::client {

std::shared_ptr<grpc::Channel> CreateCoordinatorChannel(
    const std::string& target,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const CoordinatorChannelOptions& options) {
  grpc::ChannelArguments args = KeepaliveChannelArguments(
      options.keepalive_time, options.keepalive_timeout);
  // Reconnect soon after a coordinator restart (gRPC's defaults start at
  // 1 s and grow to 2 minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, credentials, args);
}

}  // namespace twopc::client
