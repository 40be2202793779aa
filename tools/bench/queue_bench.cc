#include "tools/bench/queue_bench.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "twopc/v1/admin.grpc.pb.h"
#include "twopc/v1/queue.grpc.pb.h"
#include "twopc/v1/transaction.grpc.pb.h"

namespace twopc::bench {

namespace {

// Publishes `count` messages to topic/0 in transactions of up to 1,000.
bool Publish(v1::TransactionService::Stub* transactions,
             const std::string& participant, const std::string& topic,
             int count, int value_bytes) {
  const std::string value(value_bytes, 'v');
  for (int done = 0; done < count;) {
    v1::ExecuteRequest request;
    v1::Branch* branch = request.add_branches();
    branch->set_participant_id(participant);
    auto* put = branch->mutable_kv()->add_operations()->mutable_put();
    put->set_key("bench/" + topic);
    put->set_value(absl::StrCat(done));
    request.set_wait_for_completion(true);
    const int n = std::min(1000, count - done);
    for (int i = 0; i < n; ++i) {
      v1::Message* m = request.add_messages();
      m->set_topic(topic);
      m->set_partition(0);
      m->set_value(value);
    }
    grpc::ClientContext context;
    v1::ExecuteResponse response;
    grpc::Status status = transactions->Execute(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "twopc-bench: publishing: %s\n",
                   status.error_message().c_str());
      return false;
    }
    done += n;
  }
  return true;
}

}  // namespace

int RunQueueBench(const QueueFlags& flags, bool json) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(
      flags.coordinator, grpc::InsecureChannelCredentials(), args);
  auto admin = v1::AdminService::NewStub(channel);
  auto transactions = v1::TransactionService::NewStub(channel);
  auto queues = v1::QueueService::NewStub(channel);
  const std::string topic =
      absl::StrCat("bench-", getpid(), "-", absl::ToUnixMillis(absl::Now()));
  {
    grpc::ClientContext context;
    v1::CreateTopicRequest create;
    create.set_name(topic);
    create.set_partitions(1);
    v1::TopicInfo info;
    grpc::Status status = admin->CreateTopic(&context, create, &info);
    if (!status.ok()) {
      std::fprintf(stderr, "twopc-bench: creating topic: %s\n",
                   status.error_message().c_str());
      return EXIT_FAILURE;
    }
  }
  if (!Publish(transactions.get(), flags.participant, topic, flags.messages,
               flags.value_bytes)) {
    return EXIT_FAILURE;
  }

  // Fetch: one consumer reading the partition from 0.
  absl::Time start = absl::Now();
  int64_t offset = 0;
  while (offset < flags.messages) {
    grpc::ClientContext context;
    v1::FetchRequest fetch;
    fetch.set_topic(topic);
    fetch.set_offset(offset);
    fetch.set_max_messages(10'000);
    v1::FetchResponse response;
    grpc::Status status = queues->Fetch(&context, fetch, &response);
    if (!status.ok() || response.messages().empty()) {
      std::fprintf(stderr, "twopc-bench: fetch: %s\n",
                   status.error_message().c_str());
      return EXIT_FAILURE;
    }
    offset = response.messages().rbegin()->offset() + 1;
  }
  const double fetch_rate =
      flags.messages / absl::ToDoubleSeconds(absl::Now() - start);

  // Subscribe: the same, as a stream.
  start = absl::Now();
  {
    grpc::ClientContext context;
    v1::SubscribeRequest subscribe;
    subscribe.set_topic(topic);
    subscribe.set_max_batch_messages(10'000);
    subscribe.set_max_batch_bytes(4 << 20);
    auto reader = queues->Subscribe(&context, subscribe);
    v1::SubscribeResponse response;
    int64_t received = 0;
    while (received < flags.messages && reader->Read(&response)) {
      received += response.messages_size();
    }
    context.TryCancel();
  }
  const double subscribe_rate =
      flags.messages / absl::ToDoubleSeconds(absl::Now() - start);

  // Latency: from the commit decision (the message's commit_time, taken
  // just before the COMMIT record's sync) to the subscriber having it.
  std::vector<absl::Duration> latencies;
  {
    grpc::ClientContext context;
    v1::SubscribeRequest subscribe;
    subscribe.set_topic(topic);
    subscribe.set_offset(flags.messages);
    auto reader = queues->Subscribe(&context, subscribe);
    absl::Mutex mu;
    std::vector<absl::Duration> arrivals;
    std::thread receiver([&] {
      v1::SubscribeResponse response;
      while (reader->Read(&response)) {
        const absl::Time now = absl::Now();
        absl::MutexLock lock(&mu);
        for (const v1::QueueMessage& m : response.messages()) {
          arrivals.push_back(
              now -
              absl::FromUnixMicros(
                  google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                      m.commit_time())));
        }
      }
    });
    for (int i = 0; i < flags.latency_samples; ++i) {
      if (!Publish(transactions.get(), flags.participant, topic, 1,
                   flags.value_bytes)) {
        break;
      }
      absl::MutexLock lock(&mu);
      auto arrived = [&]() { return arrivals.size() > size_t(i); };
      mu.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(5));
    }
    {
      absl::MutexLock lock(&mu);
      latencies = arrivals;
    }
    context.TryCancel();
    receiver.join();
  }
  std::sort(latencies.begin(), latencies.end());
  auto quantile = [&](double q) {
    if (latencies.empty()) return 0.0;
    return absl::ToDoubleMilliseconds(latencies[std::min(
        latencies.size() - 1, static_cast<size_t>(q * latencies.size()))]);
  };
  if (json) {
    std::printf(
        "{\"fetch_messages_per_second\": %.0f, "
        "\"subscribe_messages_per_second\": %.0f, "
        "\"subscriber_latency_ms_p50\": %.3f, "
        "\"subscriber_latency_ms_p99\": %.3f}\n",
        fetch_rate, subscribe_rate, quantile(0.5), quantile(0.99));
  } else {
    std::printf("queue read, 1 partition, %d messages of %d bytes:\n",
                flags.messages, flags.value_bytes);
    std::printf("  Fetch      %10.0f messages/s\n", fetch_rate);
    std::printf("  Subscribe  %10.0f messages/s\n", subscribe_rate);
    std::printf(
        "  commit -> subscriber latency: p50 %.3f ms, p99 %.3f ms "
        "(%zu samples)\n",
        quantile(0.5), quantile(0.99), latencies.size());
  }
  return EXIT_SUCCESS;
}

}  // namespace twopc::bench
