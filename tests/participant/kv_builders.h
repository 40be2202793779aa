// Builders for kv branches and branch requests in participant tests.
#ifndef TWOPC_TESTS_PARTICIPANT_KV_BUILDERS_H_
#define TWOPC_TESTS_PARTICIPANT_KV_BUILDERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "twopc/v1/common.pb.h"
#include "twopc/v1/participant.pb.h"

namespace twopc::participant::testing {

inline v1::KvOperation Put(const std::string& key, const std::string& value) {
  v1::KvOperation op;
  op.mutable_put()->set_key(key);
  op.mutable_put()->set_value(value);
  return op;
}
inline v1::KvOperation Delete(const std::string& key) {
  v1::KvOperation op;
  op.mutable_delete_()->set_key(key);
  return op;
}
inline v1::KvOperation Add(const std::string& key, int64_t delta,
                           std::optional<int64_t> min = std::nullopt,
                           std::optional<int64_t> max = std::nullopt) {
  v1::KvOperation op;
  op.mutable_add()->set_key(key);
  op.mutable_add()->set_delta(delta);
  if (min.has_value()) op.mutable_add()->set_min(*min);
  if (max.has_value()) op.mutable_add()->set_max(*max);
  return op;
}
inline v1::KvOperation ExpectValue(const std::string& key,
                                   const std::string& value) {
  v1::KvOperation op;
  op.mutable_expect()->set_key(key);
  op.mutable_expect()->set_value(value);
  return op;
}
inline v1::KvOperation ExpectAbsent(const std::string& key) {
  v1::KvOperation op;
  op.mutable_expect()->set_key(key);
  op.mutable_expect()->set_absent(true);
  return op;
}

inline v1::Branch KvBranch(const std::vector<v1::KvOperation>& ops,
                           const std::string& participant = "p1") {
  v1::Branch branch;
  branch.set_participant_id(participant);
  for (const auto& op : ops) *branch.mutable_kv()->add_operations() = op;
  return branch;
}

inline v1::BranchRequest PrepareRequest(uint64_t id, const std::string& txid,
                                        const v1::Branch& branch,
                                        bool one_phase = false) {
  v1::BranchRequest request;
  request.set_request_id(id);
  request.set_transaction_id(txid);
  *request.mutable_prepare()->mutable_branch() = branch;
  request.mutable_prepare()->set_one_phase(one_phase);
  return request;
}
inline v1::BranchRequest CommitRequest(uint64_t id, const std::string& txid) {
  v1::BranchRequest request;
  request.set_request_id(id);
  request.set_transaction_id(txid);
  request.mutable_commit();
  return request;
}
inline v1::BranchRequest AbortRequest(uint64_t id, const std::string& txid,
                                      const std::string& reason = "") {
  v1::BranchRequest request;
  request.set_request_id(id);
  request.set_transaction_id(txid);
  request.mutable_abort()->set_reason(reason);
  return request;
}

}  // namespace twopc::participant::testing

#endif  // TWOPC_TESTS_PARTICIPANT_KV_BUILDERS_H_
