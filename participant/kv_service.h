// KvServiceImpl: KvService (proto/twopc/v1/kv.proto), reads of the built-in
// key-value resource's committed state. Never sees prepared writes and never
// waits for locks.
//
// Thread-safety: a gRPC service; any number of concurrent calls.
#ifndef TWOPC_PARTICIPANT_KV_SERVICE_H_
#define TWOPC_PARTICIPANT_KV_SERVICE_H_

#include "participant/branch_store.h"
#include "twopc/v1/kv.grpc.pb.h"

namespace twopc::participant {

class KvServiceImpl final : public v1::KvService::Service {
 public:
  // `store` is not owned and must outlive the service.
  explicit KvServiceImpl(BranchStore* store) : store_(store) {}

  // OK (found = false when absent); INVALID_ARGUMENT (empty or > 1 KiB key).
  grpc::Status Get(grpc::ServerContext* context, const v1::KvGetRequest* request,
                   v1::KvGetResponse* response) override;
  // OK; INVALID_ARGUMENT (limit > 10,000; 0 means 100).
  grpc::Status Scan(grpc::ServerContext* context,
                    const v1::KvScanRequest* request,
                    v1::KvScanResponse* response) override;

 private:
  BranchStore* const store_;
};

}  // namespace twopc::participant

#endif  // TWOPC_PARTICIPANT_KV_SERVICE_H_
