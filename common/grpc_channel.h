// Channel arguments for long-lived connections to twopc servers.
#ifndef TWOPC_COMMON_GRPC_CHANNEL_H_
#define TWOPC_COMMON_GRPC_CHANNEL_H_

#include <grpcpp/support/channel_arguments.h>

#include "absl/time/time.h"

namespace twopc {

// Channel arguments with gRPC keepalive: the channel pings its server once
// the connection has been quiet for `time`, also while no call is open,
// and closes the connection when a ping is not answered within `timeout`.
// That finds a peer gone without a TCP reset (host powered off, network
// cut), which TCP alone reports only after ~15 minutes of retransmissions:
// the calls on the connection then fail UNAVAILABLE. Every twopc server
// accepts a ping per second (common/grpc_server.h), so `time` must be at
// least 1 s (shorter is raised to 1 s).
grpc::ChannelArguments KeepaliveChannelArguments(absl::Duration time,
                                                 absl::Duration timeout);

}  // namespace twopc

#endif  // TWOPC_COMMON_GRPC_CHANNEL_H_
