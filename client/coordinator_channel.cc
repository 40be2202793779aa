#include "client/coordinator_channel.h"

#include "common/grpc_channel.h"

namespace twopc::client {

std::shared_ptr<grpc::Channel> CreateCoordinatorChannel(
    const std::string& target,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const CoordinatorChannelOptions& options) {
  return grpc::CreateCustomChannel(
      target, credentials,
      KeepaliveChannelArguments(options.keepalive_time,
                                options.keepalive_timeout));
}

}  // namespace twopc::client
