#include "participant/kv_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace twopc::participant {
namespace {

constexpr size_t kMaxKeyBytes = 1024;
constexpr uint32_t kDefaultLimit = 100;
constexpr uint32_t kMaxLimit = 10'000;

}  // namespace

grpc::Status KvServiceImpl::Get(grpc::ServerContext* /*context*/,
                                const v1::KvGetRequest* request,
                                v1::KvGetResponse* response) {
  if (request->key().empty() || request->key().size() > kMaxKeyBytes) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("key must be 1..", kMaxKeyBytes, " bytes, got ",
                     request->key().size())));
  }
  absl::StatusOr<std::optional<std::string>> value = store_->Get(request->key());
  if (!value.ok()) return ToGrpcStatus(value.status());
  response->set_found(value->has_value());
  if (value->has_value()) response->set_value(std::move(**value));
  return grpc::Status::OK;
}

grpc::Status KvServiceImpl::Scan(grpc::ServerContext* /*context*/,
                                 const v1::KvScanRequest* request,
                                 v1::KvScanResponse* response) {
  uint32_t limit = request->limit() == 0 ? kDefaultLimit : request->limit();
  if (limit > kMaxLimit) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "limit must be 1..", kMaxLimit, " (0 = ", kDefaultLimit, "), got ",
        request->limit())));
  }
  bool more = false;
  absl::StatusOr<std::vector<KvEntry>> entries =
      store_->Scan(request->prefix(), request->start_after(), limit, &more);
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  for (KvEntry& entry : *entries) {
    auto* out = response->add_entries();
    out->set_key(std::move(entry.key));
    out->set_value(std::move(entry.value));
  }
  response->set_more(more);
  return grpc::Status::OK;
}

}  // namespace twopc::participant
