// TopicRegistry: the durable set of topics and their partition logs.
//
// Topics have a fixed number of partitions (1..1,024) chosen at creation.
// Creating a topic is synced before it is acknowledged; creating it again
// with the same configuration is OK, with another is ALREADY_EXISTS. With
// `auto_create_partitions` > 0, publishing to an unknown topic creates it
// with that many partitions.
//
// Thread-safety: all methods may be called concurrently.
#ifndef TWOPC_COORDINATOR_TOPIC_REGISTRY_H_
#define TWOPC_COORDINATOR_TOPIC_REGISTRY_H_

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "storage/partition_log.h"
#include "storage/store.h"
#include "twopc/internal/decision_log.pb.h"
#include "twopc/v1/admin.pb.h"
#include "twopc/v1/common.pb.h"

namespace twopc::coordinator {

class TopicRegistry {
 public:
  static constexpr char kFamily[] = "topics";
  static constexpr int32_t kMaxPartitions = 1024;

  // `store` (opened with kFamily), `logs` and `clock` must outlive this.
  TopicRegistry(storage::Store* store, storage::PartitionLogs* logs,
                Clock* clock, int32_t auto_create_partitions);

  // Loads the topics on disk and their partition offsets.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  // OK (also for an identical existing topic); INVALID_ARGUMENT (name,
  // partitions, retention); ALREADY_EXISTS (different configuration).
  absl::StatusOr<v1::TopicInfo> Create(const v1::CreateTopicRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Changes retention. OK; NOT_FOUND; INVALID_ARGUMENT.
  absl::StatusOr<v1::TopicInfo> Update(const v1::UpdateTopicRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  // With per-partition offsets when `with_partitions`. NOT_FOUND.
  absl::StatusOr<v1::TopicInfo> Describe(const std::string& name,
                                         bool with_partitions) const
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::TopicInfo> List() const ABSL_LOCKS_EXCLUDED(mu_);

  // Checks a message to publish and returns the partition it goes to:
  // its explicit partition, or fnv1a_64(key, or `fallback_key` when the key
  // is empty) mod partitions. With auto-creation on, an unknown topic is
  // created (synced) once the message is known to fit it. NOT_FOUND (unknown
  // topic, unless auto-creation is on); INVALID_ARGUMENT (partition out of
  // range: no topic is created).
  absl::StatusOr<int32_t> Route(const v1::Message& message,
                                const std::string& fallback_key)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Route's checks alone, creating nothing: OK when Route would route
  // `message` (creating its topic with auto-creation on); otherwise Route's
  // error. To refuse a request of several messages before any of their
  // topics is created, check all of them first.
  absl::Status CheckRoute(const v1::Message& message) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Retention: in every partition of every topic with a retention setting,
  // removes the oldest messages that committed before now - max_age, and
  // then the oldest ones until the partition holds at most max_bytes of
  // message values. Returns how many messages were removed.
  absl::StatusOr<int64_t> ApplyRetention(absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Runs ApplyRetention every `interval` on a thread of its own until
  // StopRetention (or destruction).
  void StartRetention(absl::Duration interval) ABSL_LOCKS_EXCLUDED(mu_);
  void StopRetention() ABSL_LOCKS_EXCLUDED(mu_);
  ~TopicRegistry();

 private:
  static v1::TopicInfo ToInfo(const internal::TopicRecord& record);

  // The partitions of `topic`; 0 when it does not exist.
  int32_t PartitionsOf(const std::string& topic) const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `message` fits a topic of `partitions` (0: unknown, to be
  // auto-created if that is on). NOT_FOUND; INVALID_ARGUMENT.
  absl::Status CheckFits(const v1::Message& message, int32_t partitions) const;

  storage::Store* const store_;
  storage::PartitionLogs* const logs_;
  Clock* const clock_;
  const int32_t auto_create_partitions_;

  // The first offset of a partition that retention keeps.
  absl::StatusOr<int64_t> RetainedStart(const internal::TopicRecord& topic,
                                        int32_t partition,
                                        absl::Time now) const;

  mutable absl::Mutex mu_;
  std::map<std::string, internal::TopicRecord> topics_ ABSL_GUARDED_BY(mu_);
  bool retention_stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread retention_thread_;
};

}  // namespace twopc::coordinator

#endif  // TWOPC_COORDINATOR_TOPIC_REGISTRY_H_
