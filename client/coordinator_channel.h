// CreateCoordinatorChannel: a channel to a twopc coordinator for long-lived
// use, e.g. by an ExecuteStreamClient.
//
// It sends gRPC keepalive pings (common/grpc_channel.h): once the
// connection has been quiet for `keepalive_time` it pings the coordinator,
// and it closes the connection when the ping is not answered within
// `keepalive_timeout`. A coordinator whose host lost power or was cut off
// sends no TCP reset; without the pings, an ExecuteStreamClient would
// notice only after a whole deadline of silence (60 s by default). With
// them, the stream ends within about keepalive_time + keepalive_timeout:
// its written requests fail UNAVAILABLE, reason STREAM_ENDED (ambiguous:
// settle them with TransactionService.Get), and the next request opens a
// new connection. The coordinator accepts a ping per second, so
// `keepalive_time` is at least 1 s.
//
// After a lost connection it tries to connect again after 100 ms, backing
// off to at most 1 s between attempts (gRPC's default goes up to 2
// minutes), so clients are back soon after a coordinator restarts.
#ifndef TWOPC_CLIENT_COORDINATOR_CHANNEL_H_
#define TWOPC_CLIENT_COORDINATOR_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/time/time.h"

namespace twopc::client {

struct CoordinatorChannelOptions {
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
};

// `target` as for grpc::CreateChannel, e.g. "coordinator.internal:7400".
std::shared_ptr<grpc::Channel> CreateCoordinatorChannel(
    const std::string& target,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const CoordinatorChannelOptions& options = {});

}  // namespace twopc::client

#endif  // TWOPC_CLIENT_COORDINATOR_CHANNEL_H_
