// A clear answer to request bytes that do not parse.
//
// gRPC deserialises a unary or server-streaming request before any handler
// runs; when the bytes are not a valid request message it answers by itself,
// with an empty message and a misleading code: INTERNAL (which twopc
// documents as ambiguous) for synchronous handlers, UNIMPLEMENTED for
// callback handlers. The interceptor made here replaces gRPC's answer for
// synchronous methods with a definite INVALID_ARGUMENT naming the method and
// the message type:
//   request to /twopc.v1.TransactionService/Begin is not a valid
//   twopc.v1.BeginRequest (its bytes do not parse as one): ...
// StartGrpcServer (common/grpc_server.h) installs it on every twopc server.
//
// Not covered:
//  * Calls whose context is a SelfParsingContext (below): asynchronous raw
//    methods (Execute, Commit: the hot path) that parse their own bytes and
//    answer INVALID_ARGUMENT with UnparseableRequestMessage
//    (coordinator/client_calls.cc). An interceptor costs every call it is
//    created for, whether the request parses or not: gRPC then completes
//    each batch of operations of the call through one more (empty) batch,
//    about 8,700 instructions per call on top of ~107,000 for a trivial
//    call (callgrind), and allocates the interceptor.
//  * Callback methods, for the same reason (twopc's servers have none).
//  * Client-streaming and bidirectional methods: there gRPC shows a
//    message that does not parse to the handler, and to interceptors,
//    exactly like the end of the stream, so neither can tell them apart.
//    The sidecar's Link is therefore raw and parses its own batches
//    (participant/link_service.h).
//
// Cost: with the factory installed, gRPC allocates a ServerRpcInfo for every
// call and asks the factory for an interceptor (~600 instructions per call
// that then gets none). A synchronous unary call gets the
// interceptor: ~3,900 instructions (about 3% of a trivial call).
//
// Thread-safety: the factory may be used by any number of threads.
#ifndef TWOPC_COMMON_UNPARSEABLE_REQUEST_H_
#define TWOPC_COMMON_UNPARSEABLE_REQUEST_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace twopc {

// The factory to pass to ServerBuilder::experimental().SetInterceptorCreators.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeUnparseableRequestInterceptorFactory();

// The server context of an asynchronous call whose method parses its own
// request bytes (a raw method): the interceptor leaves such calls alone.
class SelfParsingContext final : public grpc::ServerContext {};

// The message of the INVALID_ARGUMENT status sent for `method`
// ("/package.Service/Method") when its request does not parse.
std::string UnparseableRequestMessage(const std::string& method);

// For raw methods: parses `bytes` (consumed) into `*request`, or returns
// INVALID_ARGUMENT with UnparseableRequestMessage("/service/method"). The
// method's name is built only on failure (this runs once per call or
// message on the hot path).
template <typename Request>
absl::Status ParseOwnRequest(grpc::ByteBuffer& bytes, absl::string_view service,
                             absl::string_view method, Request* request) {
  if (grpc::SerializationTraits<Request>::Deserialize(&bytes, request).ok()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      UnparseableRequestMessage(absl::StrCat("/", service, "/", method)));
}

}  // namespace twopc

#endif  // TWOPC_COMMON_UNPARSEABLE_REQUEST_H_
