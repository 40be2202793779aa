// RawCall: one call of any gRPC method with an arbitrary request encoding,
// through grpc::GenericStub, so a test can send bytes that are not a valid
// message. The same wire exchange serves unary, server-streaming and bidi
// methods: the client sends `request` as its only message, half-closes, and
// reads responses until the server ends the call.
#ifndef TWOPC_TESTS_FUZZ_RAW_CALL_H_
#define TWOPC_TESTS_FUZZ_RAW_CALL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace twopc::fuzz {

struct RawResult {
  // The call's status; CANCELLED when this side stopped reading after
  // `max_responses` responses.
  grpc::Status status;
  // The encodings of the responses read.
  std::vector<std::string> responses;
};

// Calls `method` ("/package.Service/Method") on `channel` and waits for the
// end of the call, at most `timeout` (then DEADLINE_EXCEEDED). Reads at most
// `max_responses` responses, then cancels the call.
RawResult RawCall(const std::shared_ptr<grpc::Channel>& channel,
                  const std::string& method, const std::string& request,
                  absl::Duration timeout, size_t max_responses);

// A channel with its own connection and no message size limits.
std::shared_ptr<grpc::Channel> UnlimitedChannel(const std::string& address);

// True when the server at `channel` answers the standard gRPC health check
// with SERVING within `timeout`.
bool IsServing(const std::shared_ptr<grpc::Channel>& channel,
               absl::Duration timeout);

}  // namespace twopc::fuzz

#endif  // TWOPC_TESTS_FUZZ_RAW_CALL_H_
