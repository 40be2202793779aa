// The bad-input oracle for one answer: is it a clean error (promise 5 of
// DESIGN.md: "a clear gRPC error ... with a message a person can act on")?
//
// Clean answers:
//  * OK; for a stream, also any call that delivered a first response (this
//    side may then have cancelled it);
//  * a definite code that says what was wrong with the request:
//    INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, OUT_OF_RANGE,
//    RESOURCE_EXHAUSTED, ALREADY_EXISTS, ABORTED; with a non-empty message;
//  * DEADLINE_EXCEEDED for a call documented to wait (long-poll Fetch,
//    Subscribe and Watch streams), ended by this side's deadline.
// Anything else is a finding: INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE,
// CANCELLED by the server, an empty message, DEADLINE_EXCEEDED where nothing
// waits (a hang), a response that does not parse, or an error this side
// could not even read.
#ifndef TWOPC_TESTS_FUZZ_ORACLE_H_
#define TWOPC_TESTS_FUZZ_ORACLE_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "google/protobuf/message.h"
#include "tests/fuzz/raw_call.h"

namespace twopc::fuzz {

struct CallFacts {
  // The request bytes parse as the method's request type.
  bool request_parses = true;
  // The method documents waiting for something (long-poll or a stream).
  bool may_wait = false;
  // The method's response type, to check that responses parse.
  const google::protobuf::Message* response_type = nullptr;
};

struct Verdict {
  // Empty when the answer is clean.
  std::string finding;

  bool clean() const { return finding.empty(); }
};

// Judges `result`, the answer to a call described by `facts`.
Verdict Judge(const CallFacts& facts, const RawResult& result);

// True for the codes after which a request must have had no effect on the
// coordinator's or the sidecar's state (ABORTED included: a transaction
// that aborted changed no participant and committed nothing).
bool IsRejection(grpc::StatusCode code);

}  // namespace twopc::fuzz

#endif  // TWOPC_TESTS_FUZZ_ORACLE_H_
