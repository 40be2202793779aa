// The initial metadata a coordinator sends when it starts serving an
// ExecuteStream (proto/twopc/v1/transaction.proto), before it reads any
// request.
//
// Why: a stream can end before the coordinator ever sees it (gRPC cancels
// the calls not yet taken when a server shuts down), with the same
// ambiguous status as a stream that broke after its requests were read. A
// client that writes only once this key has arrived knows that a stream
// ending before it started none of its requests, and may send them again.
// A stream refused at once (a draining coordinator, too many streams) ends
// without it, with a definite status of its own.
#ifndef TWOPC_COMMON_EXECUTE_STREAM_METADATA_H_
#define TWOPC_COMMON_EXECUTE_STREAM_METADATA_H_

namespace twopc {

// Present (value "1") in the initial metadata of a stream being served.
inline constexpr char kExecuteStreamServingKey[] = "twopc-stream-serving";

}  // namespace twopc

#endif  // TWOPC_COMMON_EXECUTE_STREAM_METADATA_H_
