#include "participant/coordinator_client.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "common/backoff.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::participant {
namespace {

constexpr size_t kMaxIdsPerQuery = 1000;

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options,
                                     BranchManager* manager)
    : options_(std::move(options)),
      manager_(manager),
      stub_(options_.coordinator.empty()
                ? nullptr
                : v1::CoordinatorService::NewStub(grpc::CreateChannel(
                      options_.coordinator,
                      grpc::InsecureChannelCredentials()))),
      registration_([this] { RunRegistration(); }),
      resolver_([this] { RunResolver(); }) {}

CoordinatorClient::~CoordinatorClient() {
  stop_.Notify();
  registration_.join();
  resolver_.join();
}

void CoordinatorClient::RunRegistration() {
  if (stub_ == nullptr) return;
  Backoff backoff({.initial = options_.retry_initial,
                   .max = options_.retry_max,
                   .jitter = 0.2},
                  RandomSeed());
  uint64_t failures = 0;  // in a row
  absl::Duration interval = options_.heartbeat_interval;
  bool logged_unreachable = false;
  auto failed = [&](const grpc::Status& status, const char* what) {
    if (!logged_unreachable) {
      std::fprintf(stderr,
                   "twopc-participant %s: %s to coordinator %s failed (%s); "
                   "retrying with backoff\n",
                   options_.participant_id.c_str(), what,
                   options_.coordinator.c_str(),
                   status.error_message().c_str());
      logged_unreachable = true;
    }
    return backoff.Delay(failures++);
  };
  while (!stop_.HasBeenNotified()) {
    absl::Duration wait;
    if (!registered_.load()) {
      v1::RegisterRequest request;
      request.set_participant_id(options_.participant_id);
      request.set_endpoint(options_.endpoint);
      request.set_resource(options_.resource);
      v1::RegisterResponse response;
      grpc::ClientContext context;
      SetDeadline(&context, options_.rpc_timeout);
      const grpc::Status status = stub_->Register(&context, request, &response);
      if (status.ok()) {
        registered_.store(true);
        logged_unreachable = false;
        failures = 0;
        manager_->ObserveEpoch(response.coordinator_epoch()).IgnoreError();
        if (response.has_heartbeat_interval()) {
          const int64_t ms = google::protobuf::util::TimeUtil::DurationToMilliseconds(
              response.heartbeat_interval());
          if (ms > 0) interval = absl::Milliseconds(ms);
        }
        std::fprintf(stderr,
                     "twopc-participant %s: registered with coordinator %s "
                     "(epoch %llu, heartbeat every %s)\n",
                     options_.participant_id.c_str(),
                     options_.coordinator.c_str(),
                     static_cast<unsigned long long>(response.coordinator_epoch()),
                     absl::FormatDuration(interval).c_str());
        wait = interval;
      } else {
        wait = failed(status, "registration");
      }
    } else {
      v1::HeartbeatRequest request;
      request.set_participant_id(options_.participant_id);
      request.set_prepared_branches(
          static_cast<uint32_t>(manager_->prepared_branches()));
      request.set_in_flight_requests(
          static_cast<uint32_t>(manager_->in_flight_requests()));
      v1::HeartbeatResponse response;
      grpc::ClientContext context;
      SetDeadline(&context, options_.rpc_timeout);
      const grpc::Status status = stub_->Heartbeat(&context, request, &response);
      if (status.ok()) {
        logged_unreachable = false;
        failures = 0;
        manager_->ObserveEpoch(response.coordinator_epoch()).IgnoreError();
        wait = interval;
      } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        std::fprintf(stderr,
                     "twopc-participant %s: coordinator does not know this "
                     "participant; registering again\n",
                     options_.participant_id.c_str());
        registered_.store(false);
        wait = absl::ZeroDuration();
      } else {
        wait = failed(status, "heartbeat");
      }
    }
    stop_.WaitForNotificationWithTimeout(wait);
  }
}

void CoordinatorClient::RunResolver() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval)) {
    manager_->ForgetFinished();
    if (stub_ == nullptr) continue;
    std::vector<std::string> due = manager_->DueForOutcomeQuery(kMaxIdsPerQuery);
    if (due.empty()) continue;
    v1::QueryOutcomesRequest request;
    request.set_participant_id(options_.participant_id);
    for (std::string& txid : due) request.add_transaction_ids(std::move(txid));
    v1::QueryOutcomesResponse response;
    grpc::ClientContext context;
    SetDeadline(&context, options_.rpc_timeout);
    const grpc::Status status =
        stub_->QueryOutcomes(&context, request, &response);
    if (!status.ok()) continue;  // each branch already backs off
    for (const auto& result : response.results()) {
      manager_->ApplyOutcome(result.transaction_id(), result.outcome());
    }
  }
}

}  // namespace twopc::participant
