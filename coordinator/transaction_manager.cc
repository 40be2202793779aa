#include "coordinator/transaction_manager.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/failpoint.h"
#include "common/grpc_status.h"
#include "common/identifiers.h"
#include "common/status_macros.h"
#include "common/transaction_id.h"
#include "coordinator/request_validation.h"
#include "google/protobuf/util/time_util.h"

namespace twopc::coordinator {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kCompactedThroughMeta[] = "compacted_through";
constexpr size_t kLatencySamples = 10'000;

google::protobuf::Timestamp Timestamp(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

bool IsFinal(v1::TransactionState state) {
  return state == v1::TRANSACTION_STATE_COMMITTED ||
         state == v1::TRANSACTION_STATE_ABORTED;
}

v1::Transaction ToTransaction(const internal::TransactionRecord& record) {
  v1::Transaction t;
  t.set_transaction_id(record.transaction_id());
  t.set_idempotency_key(record.idempotency_key());
  t.set_state(record.state());
  t.set_outcome(record.outcome());
  t.set_abort_reason(record.abort_reason());
  for (const internal::BranchRecord& b : record.branches()) {
    v1::BranchStatus* status = t.add_branches();
    status->set_participant_id(b.participant_id());
    status->set_vote(b.vote());
    status->set_vote_reason(b.vote_reason());
    status->set_finished(b.finished());
  }
  *t.mutable_message_positions() = record.message_positions();
  *t.mutable_labels() = record.labels();
  if (record.create_time_us() != 0) {
    *t.mutable_create_time() = Timestamp(record.create_time_us());
  }
  if (record.deadline_us() != 0) {
    *t.mutable_deadline() = Timestamp(record.deadline_us());
  }
  if (record.decide_time_us() != 0) {
    *t.mutable_decide_time() = Timestamp(record.decide_time_us());
  }
  if (record.finish_time_us() != 0) {
    *t.mutable_finish_time() = Timestamp(record.finish_time_us());
  }
  t.set_parked(record.parked());
  t.set_forced(record.forced());
  return t;
}

// The answer to Execute/Commit for a decided transaction.
absl::StatusOr<v1::Transaction> Outcome(
    const internal::TransactionRecord& record) {
  if (record.outcome() == v1::OUTCOME_COMMITTED) return ToTransaction(record);
  v1::ErrorInfo info;
  info.set_reason(record.abort_code().empty() ? "ABORTED" : record.abort_code());
  info.set_transaction_id(record.transaction_id());
  info.set_participant_id(record.abort_participant_id());
  return WithErrorInfo(
      absl::AbortedError(absl::StrCat("transaction ", record.transaction_id(),
                                      " aborted: ", record.abort_reason())),
      info);
}

// What others may see of a live transaction: while its COMMIT record is
// being written the commit is not decided yet (the write may fail).
internal::TransactionRecord VisibleRecord(const TransactionMachine& machine) {
  internal::TransactionRecord record = machine.record();
  if (record.outcome() == v1::OUTCOME_COMMITTED && !machine.decided()) {
    record.set_state(v1::TRANSACTION_STATE_PREPARING);
    record.set_outcome(v1::OUTCOME_PENDING);
    record.clear_decide_time_us();
  }
  return record;
}

uint64_t Fingerprint(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream out(&stream);
  out.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&out);
  out.Trim();
  return std::hash<std::string>()(bytes);
}

v1::TransactionRef RefById(const std::string& transaction_id) {
  v1::TransactionRef ref;
  ref.set_transaction_id(transaction_id);
  return ref;
}

// Client replies made while a ReplyScope is open on this thread run when the
// outermost scope closes. Entry points open one before taking mu_ (so it
// closes after mu_ is released): a reply's Finish writes to the client's
// socket inline, and doing that under the lock stalls every other caller.
// With no scope open, Reply answers at once.
class ReplyScope {
 public:
  ReplyScope() : outermost_(current_ == nullptr) {
    if (outermost_) current_ = this;
  }
  ~ReplyScope() {
    if (!outermost_) return;
    current_ = nullptr;
    for (Pending& pending : pending_) pending.done(std::move(pending.result));
  }
  ReplyScope(const ReplyScope&) = delete;
  ReplyScope& operator=(const ReplyScope&) = delete;

  static void Reply(TransactionManager::Done& done,
                    absl::StatusOr<v1::Transaction> result) {
    if (current_ == nullptr) {
      done(std::move(result));
    } else {
      current_->pending_.push_back({std::move(done), std::move(result)});
    }
  }

 private:
  struct Pending {
    TransactionManager::Done done;
    absl::StatusOr<v1::Transaction> result;
  };
  static thread_local ReplyScope* current_;
  const bool outermost_;
  std::vector<Pending> pending_;
};

thread_local ReplyScope* ReplyScope::current_ = nullptr;

// A request that reuses `key` of another request's transaction.
absl::Status KeyReusedError(const std::string& key,
                            const std::string& transaction_id) {
  return absl::AlreadyExistsError(absl::StrCat(
      "idempotency_key ", QuoteField(key), " was used by transaction ",
      transaction_id, " with a different request"));
}

// Ids of records compare in creation order when parsed.
bool IdLessOrEqual(const std::string& a, const std::string& b) {
  absl::optional<TransactionId> x = TransactionId::Parse(a);
  absl::optional<TransactionId> y = TransactionId::Parse(b);
  if (!x || !y) return false;
  return std::make_pair(x->epoch, x->sequence) <=
         std::make_pair(y->epoch, y->sequence);
}

}  // namespace

TransactionManager::TransactionManager(uint64_t epoch, Clock* clock,
                                       storage::Store* store,
                                       storage::DecisionLog* log,
                                       AuditLog* audit,
                                       ParticipantRegistry* registry,
                                       TopicRegistry* topics,
                                       ManagerOptions options)
    : epoch_(epoch),
      clock_(clock),
      store_(store),
      log_(log),
      audit_(audit),
      registry_(registry),
      topics_(topics),
      options_(options),
      start_time_(clock->Now()) {}

TransactionManager::~TransactionManager() { Stop(); }

void TransactionManager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, entry] : live_) {
      const absl::Status unavailable = absl::UnavailableError(absl::StrCat(
          "coordinator shutting down; the outcome of ", id,
          " is not known yet: ask with Get after it restarts"));
      for (Done& done : entry->on_decided) done(unavailable);
      for (Done& done : entry->on_finished) done(unavailable);
      entry->on_decided.clear();
      entry->on_finished.clear();
    }
  }
  if (timer_thread_.joinable()) timer_thread_.join();
  if (compaction_thread_.joinable()) compaction_thread_.join();
}

absl::Status TransactionManager::CheckRunningLocked() const {
  if (!stopping_) return absl::OkStatus();
  return absl::UnavailableError("coordinator shutting down; retry shortly");
}

absl::Status TransactionManager::CheckMayStartLocked() const {
  if (!draining_) return absl::OkStatus();
  return WithErrorInfo(
      absl::UnavailableError(
          "the coordinator is shutting down and starts no new transaction: "
          "this one was not started; send it again to a running coordinator "
          "(with the same idempotency key)"),
      v1::ErrorInfo::CERTAINTY_DEFINITE, "SHUTTING_DOWN");
}

bool TransactionManager::AllDecidedLocked() const {
  for (const auto& [id, entry] : live_) {
    if (!entry->machine.decided()) return false;
  }
  return true;
}

void TransactionManager::Drain(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  mu_.AwaitWithTimeout(
      absl::Condition(this, &TransactionManager::AllDecidedLocked), grace);
}

std::string TransactionManager::FindKeyLocked(const std::string& key) {
  if (auto it = live_keys_.find(key); it != live_keys_.end()) return it->second;
  if (auto it = recent_keys_.find(key); it != recent_keys_.end()) {
    return it->second;
  }
  return "";
}

absl::Status TransactionManager::Start() {
  ASSIGN_OR_RETURN(absl::optional<std::string> compacted,
                   store_->GetMeta(kCompactedThroughMeta));
  std::vector<internal::TransactionRecord> unfinished;
  RETURN_IF_ERROR(log_->ForEach([&](internal::TransactionRecord record) {
    if (!IsFinal(record.state())) unfinished.push_back(std::move(record));
  }));
  absl::MutexLock lock(&mu_);
  if (compacted.has_value()) compacted_through_ = *compacted;
  const absl::Time now = clock_->Now();
  for (internal::TransactionRecord& record : unfinished) {
    const std::string id = record.transaction_id();
    auto entry = std::make_unique<Entry>(TransactionMachine::FromLog(
        std::move(record), options_.retry, std::hash<std::string>()(id)));
    Entry* raw = entry.get();
    raw->key_indexed = true;
    live_.emplace(id, std::move(entry));
    if (!raw->machine.record().idempotency_key().empty()) {
      live_keys_[raw->machine.record().idempotency_key()] = id;
    }
    ApplyLocked(id, raw->machine.Recover(now));
  }
  timer_thread_ = std::thread([this] { TimerLoop(); });
  compaction_thread_ = std::thread([this] { CompactionLoop(); });
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Client API

TransactionManager::Entry* TransactionManager::CreateLocked(
    const std::string& idempotency_key, uint64_t fingerprint,
    absl::Duration timeout,
    const google::protobuf::Map<std::string, std::string>& labels) {
  const absl::Time now = clock_->Now();
  const std::string id =
      TransactionId{.epoch = epoch_, .sequence = next_sequence_++}.ToString();
  internal::TransactionRecord record;
  record.set_transaction_id(id);
  record.set_idempotency_key(idempotency_key);
  record.set_request_fingerprint(fingerprint);
  record.set_epoch(epoch_);
  record.set_create_time_us(absl::ToUnixMicros(now));
  record.set_deadline_us(absl::ToUnixMicros(now + timeout));
  *record.mutable_labels() = labels;
  auto entry = std::make_unique<Entry>(TransactionMachine(
      std::move(record), options_.retry, std::hash<std::string>()(id)));
  Entry* raw = entry.get();
  live_.emplace(id, std::move(entry));
  if (!idempotency_key.empty()) live_keys_[idempotency_key] = id;
  ++change_count_;
  return raw;
}

void TransactionManager::AttachLocked(Entry* entry, bool wait_for_completion,
                                      Done done) {
  const TransactionMachine& machine = entry->machine;
  if (machine.decided() &&
      (machine.outcome() == v1::OUTCOME_ABORTED || !wait_for_completion ||
       machine.finished())) {
    ReplyScope::Reply(done, Outcome(machine.record()));
    return;
  }
  if (wait_for_completion) {
    entry->on_finished.push_back(std::move(done));
  } else {
    entry->on_decided.push_back(std::move(done));
  }
}

void TransactionManager::Execute(v1::ExecuteRequest request, Done done) {
  ReplyScope replies;  // declared before the lock: replies go out after it
  const Limits& limits = options_.limits;
  absl::Status valid = ValidateIdempotencyKey(request.idempotency_key(), limits);
  if (valid.ok()) valid = ValidateLabels(request.labels(), limits);
  if (valid.ok()) valid = ValidateBranches(request.branches(), limits);
  absl::StatusOr<absl::Duration> timeout =
      ValidateTimeout(request.timeout(), request.has_timeout(), limits);
  if (valid.ok()) valid = timeout.status();
  if (valid.ok() && request.ByteSizeLong() > limits.max_transaction_bytes) {
    valid = absl::InvalidArgumentError(absl::StrCat(
        "the transaction is ", request.ByteSizeLong(),
        " bytes; the limit is ", limits.max_transaction_bytes));
  }
  for (const v1::Branch& branch : request.branches()) {
    if (!valid.ok()) break;
    valid = registry_->CheckRegistered(branch.participant_id());
  }
  // Creates nothing: with auto-creation on, topics are created only when
  // the transaction is (AddMessageLocked, below).
  if (valid.ok()) valid = ValidateMessages(request.messages(), 0);
  if (!valid.ok()) {
    done(valid);
    return;
  }

  const std::string& key = request.idempotency_key();
  // Only a keyed request can be retried, so only it needs a fingerprint
  // (which copies and serialises the whole request: keep it off the
  // keyless hot path). wait_for_completion does not change its identity.
  uint64_t fingerprint = 0;
  if (!key.empty()) {
    v1::ExecuteRequest identity = request;
    identity.clear_wait_for_completion();
    fingerprint = Fingerprint(identity);
  }

  // A finished transaction with this key lives only in the log.
  absl::optional<internal::TransactionRecord> logged;
  if (!key.empty()) {
    absl::StatusOr<absl::optional<std::string>> id =
        log_->FindByIdempotencyKey(key);
    if (!id.ok()) {
      done(id.status());
      return;
    }
    if (id->has_value()) {
      absl::StatusOr<absl::optional<internal::TransactionRecord>> record =
          log_->Read(**id);
      if (!record.ok()) {
        done(record.status());
        return;
      }
      logged = std::move(*record);
    }
  }

  absl::MutexLock lock(&mu_);
  if (absl::Status running = CheckRunningLocked(); !running.ok()) {
    ReplyScope::Reply(done, running);
    return;
  }
  if (!key.empty()) {
    const std::string existing = FindKeyLocked(key);
    if (!existing.empty()) {
      absl::StatusOr<internal::TransactionRecord> record =
          LookupLocked(RefById(existing));
      if (!record.ok()) {
        ReplyScope::Reply(done, record.status());
      } else if (record->request_fingerprint() != fingerprint) {
        ReplyScope::Reply(done, KeyReusedError(key, existing));
      } else if (Entry* entry = FindLiveLocked(existing)) {
        AttachLocked(entry, request.wait_for_completion(), std::move(done));
      } else {
        ReplyScope::Reply(done, Outcome(*record));
      }
      return;
    }
    if (logged.has_value()) {
      if (logged->request_fingerprint() != fingerprint) {
        ReplyScope::Reply(done, KeyReusedError(key, logged->transaction_id()));
      } else {
        ReplyScope::Reply(done, Outcome(*logged));
      }
      return;
    }
  }
  for (const v1::Branch& branch : request.branches()) {
    if (absl::Status removing = CheckNotRemovingLocked(branch.participant_id());
        !removing.ok()) {
      ReplyScope::Reply(done, removing);
      return;
    }
  }
  if (absl::Status may_start = CheckMayStartLocked(); !may_start.ok()) {
    ReplyScope::Reply(done, may_start);
    return;
  }
  if (static_cast<int>(live_.size()) >= limits.max_inflight) {
    ReplyScope::Reply(done, absl::ResourceExhaustedError(absl::StrCat(
                                "the coordinator has ", live_.size(),
                                " transactions in flight (limit ",
                                limits.max_inflight, "); retry with backoff")));
    return;
  }
  Entry* entry =
      CreateLocked(key, fingerprint, *timeout, request.labels());
  for (v1::Branch& branch : *request.mutable_branches()) {
    entry->machine.AddBranch(branch.participant_id());
    std::string participant_id = branch.participant_id();
    entry->work[std::move(participant_id)] = std::move(branch);
  }
  const std::string id = entry->machine.record().transaction_id();
  for (v1::Message& message : *request.mutable_messages()) {
    // Checked above: routing cannot fail now (topics are never deleted).
    AddMessageLocked(*entry, std::move(message)).IgnoreError();
  }
  AttachLocked(entry, request.wait_for_completion(), std::move(done));
  ApplyLocked(id, entry->machine.Commit(clock_->Now()));
}

absl::StatusOr<v1::BeginResponse> TransactionManager::Begin(
    const v1::BeginRequest& request) {
  const Limits& limits = options_.limits;
  RETURN_IF_ERROR(ValidateIdempotencyKey(request.idempotency_key(), limits));
  RETURN_IF_ERROR(ValidateLabels(request.labels(), limits));
  ASSIGN_OR_RETURN(
      absl::Duration timeout,
      ValidateTimeout(request.timeout(), request.has_timeout(), limits));
  const std::string& key = request.idempotency_key();
  const uint64_t fingerprint = key.empty() ? 0 : Fingerprint(request);

  auto response_for = [](const internal::TransactionRecord& record) {
    v1::BeginResponse response;
    response.set_transaction_id(record.transaction_id());
    *response.mutable_deadline() = Timestamp(record.deadline_us());
    return response;
  };
  absl::optional<std::string> logged_id;
  if (!key.empty()) {
    ASSIGN_OR_RETURN(logged_id, log_->FindByIdempotencyKey(key));
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckRunningLocked());
  if (!key.empty()) {
    std::string existing = FindKeyLocked(key);
    if (existing.empty() && logged_id.has_value()) existing = *logged_id;
    if (!existing.empty()) {
      ASSIGN_OR_RETURN(internal::TransactionRecord record,
                       LookupLocked(RefById(existing)));
      if (record.request_fingerprint() != fingerprint) {
        return KeyReusedError(key, existing);
      }
      return response_for(record);
    }
  }
  RETURN_IF_ERROR(CheckMayStartLocked());
  if (static_cast<int>(live_.size()) >= limits.max_inflight) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator has ", live_.size(),
        " transactions in flight (limit ", limits.max_inflight,
        "); retry with backoff"));
  }
  Entry* entry = CreateLocked(key, fingerprint, timeout, request.labels());
  const std::string id = entry->machine.record().transaction_id();
  ApplyLocked(id, entry->machine.Open(clock_->Now()));
  return response_for(entry->machine.record());
}

absl::Status TransactionManager::AddBranch(const v1::AddBranchRequest& request) {
  RETURN_IF_ERROR(ValidateBranch(request.branch(), options_.limits));
  const std::string& participant = request.branch().participant_id();
  RETURN_IF_ERROR(registry_->CheckRegistered(participant));
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckNotRemovingLocked(participant));
  ASSIGN_OR_RETURN(Entry * entry,
                   FindActiveLocked(request.transaction_id(), "branches"));
  const internal::TransactionRecord& record = entry->machine.record();
  auto existing = entry->work.find(participant);
  if (existing != entry->work.end()) {
    if (Fingerprint(existing->second) == Fingerprint(request.branch())) {
      return absl::OkStatus();  // a retry
    }
    return absl::AlreadyExistsError(absl::StrCat(
        "transaction ", request.transaction_id(), " already has a branch for ",
        participant, ": put all of a participant's work into one branch"));
  }
  const size_t branch_bytes = request.branch().ByteSizeLong();
  RETURN_IF_ERROR(CheckTransactionBytes(*entry, branch_bytes));
  if (record.branches_size() >= options_.limits.max_branches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "transaction ", request.transaction_id(), " already has ",
        record.branches_size(), " branches; the limit is ",
        options_.limits.max_branches));
  }
  entry->machine.AddBranch(participant);
  entry->work[participant] = request.branch();
  entry->bytes += branch_bytes;
  ++change_count_;
  return absl::OkStatus();
}

absl::Status TransactionManager::CheckTransactionBytes(const Entry& entry,
                                                      size_t more) const {
  const size_t total = entry.bytes + more;
  if (total <= options_.limits.max_transaction_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "transaction ", entry.machine.record().transaction_id(), " would be ",
      total, " bytes; the limit is ", options_.limits.max_transaction_bytes));
}

absl::Status TransactionManager::ValidateMessages(
    const google::protobuf::RepeatedPtrField<v1::Message>& messages,
    int already_added) {
  const Limits& limits = options_.limits;
  if (already_added + messages.size() > limits.max_messages) {
    return absl::InvalidArgumentError(
        absl::StrCat(already_added + messages.size(),
                     " messages; the limit is ", limits.max_messages));
  }
  for (const v1::Message& message : messages) {
    RETURN_IF_ERROR(ValidateMessage(message));
    RETURN_IF_ERROR(topics_->CheckRoute(message));
  }
  return absl::OkStatus();
}

absl::Status TransactionManager::AddMessageLocked(Entry& entry,
                                                  v1::Message message) {
  ASSIGN_OR_RETURN(
      int32_t partition,
      topics_->Route(message, entry.machine.record().transaction_id()));
  message.set_partition(partition);
  entry.machine.AddMessage(std::move(message));
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> TransactionManager::AddMessages(
    const v1::AddMessagesRequest& request) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Entry * entry,
                   FindActiveLocked(request.transaction_id(), "messages"));
  const internal::TransactionRecord& record = entry->machine.record();
  const auto have = static_cast<uint32_t>(record.messages_size());
  const uint32_t first = request.first_index();
  const auto count = static_cast<uint32_t>(request.messages_size());
  if (first < have && first + count <= have) {
    // A retry: accepted only if it is the same messages.
    for (uint32_t i = 0; i < count; ++i) {
      v1::Message sent = request.messages(static_cast<int>(i));
      v1::Message stored = record.messages(static_cast<int>(first + i));
      if (!sent.has_partition()) stored.clear_partition();
      if (sent.SerializeAsString() != stored.SerializeAsString()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "messages from index ", first,
            " differ from the ones already added; the next index is ", have));
      }
    }
    return have;
  }
  if (first != have) {
    v1::ErrorInfo info;
    info.set_reason("WRONG_INDEX");
    info.set_transaction_id(request.transaction_id());
    (*info.mutable_metadata())["expected_first_index"] = absl::StrCat(have);
    return WithErrorInfo(
        absl::FailedPreconditionError(absl::StrCat(
            "first_index is ", first, " but the transaction has ", have,
            " messages; send first_index ", have)),
        info);
  }
  size_t message_bytes = 0;
  for (const v1::Message& message : request.messages()) {
    message_bytes += message.ByteSizeLong();
  }
  RETURN_IF_ERROR(CheckTransactionBytes(*entry, message_bytes));
  RETURN_IF_ERROR(ValidateMessages(request.messages(), have));
  for (const v1::Message& message : request.messages()) {
    RETURN_IF_ERROR(AddMessageLocked(*entry, message));
  }
  entry->bytes += message_bytes;
  ++change_count_;
  return static_cast<uint32_t>(entry->machine.record().messages_size());
}

void TransactionManager::Commit(const v1::CommitRequest& request, Done done) {
  ReplyScope replies;
  absl::MutexLock lock(&mu_);
  if (absl::Status running = CheckRunningLocked(); !running.ok()) {
    ReplyScope::Reply(done, running);
    return;
  }
  Entry* entry = FindLiveLocked(request.transaction_id());
  if (entry == nullptr) {
    absl::StatusOr<internal::TransactionRecord> record =
        LookupLocked(RefById(request.transaction_id()));
    if (!record.ok()) {
      ReplyScope::Reply(done, record.status());
    } else {
      // A retry after the transaction finished.
      ReplyScope::Reply(done, Outcome(*record));
    }
    return;
  }
  const std::string id = request.transaction_id();
  if (entry->machine.state() == v1::TRANSACTION_STATE_ACTIVE) {
    if (entry->machine.record().branches_size() == 0) {
      ReplyScope::Reply(done, absl::InvalidArgumentError(absl::StrCat(
                                  "transaction ", id,
                                  " has no branch: AddBranch before Commit")));
      return;
    }
    AttachLocked(entry, request.wait_for_completion(), std::move(done));
    ApplyLocked(id, entry->machine.Commit(clock_->Now()));
    return;
  }
  AttachLocked(entry, request.wait_for_completion(), std::move(done));
}

absl::StatusOr<v1::Transaction> TransactionManager::Abort(
    const v1::AbortRequest& request) {
  if (request.reason().size() > options_.limits.max_reason_bytes) {
    return absl::InvalidArgumentError("reason is longer than 1 KiB");
  }
  absl::MutexLock lock(&mu_);
  Entry* entry = FindLiveLocked(request.transaction_id());
  if (entry == nullptr) {
    ASSIGN_OR_RETURN(internal::TransactionRecord record,
                     LookupLocked(RefById(request.transaction_id())));
    if (record.outcome() == v1::OUTCOME_COMMITTED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", request.transaction_id(),
          " is already decided COMMITTED and cannot be aborted"));
    }
    return ToTransaction(record);
  }
  Actions actions;
  RETURN_IF_ERROR(entry->machine.Abort(
      request.reason().empty() ? "aborted by the client"
                               : absl::StrCat("aborted by the client: ",
                                              request.reason()),
      clock_->Now(), &actions));
  v1::Transaction result = ToTransaction(VisibleRecord(entry->machine));
  ApplyLocked(request.transaction_id(), std::move(actions));
  return result;
}

absl::StatusOr<v1::Transaction> TransactionManager::Get(
    const v1::TransactionRef& ref) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(internal::TransactionRecord record, LookupLocked(ref));
  return ToTransaction(record);
}

absl::StatusOr<v1::Transaction> TransactionManager::WaitForChange(
    const v1::TransactionRef& ref, const v1::Transaction& previous,
    absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (true) {
    ASSIGN_OR_RETURN(internal::TransactionRecord record, LookupLocked(ref));
    v1::Transaction current = ToTransaction(record);
    if (current.SerializeAsString() != previous.SerializeAsString() ||
        stopping_) {
      return current;
    }
    const uint64_t seen = change_count_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return change_count_ != seen || stopping_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
      return current;
    }
  }
}

absl::StatusOr<TransactionManager::Entry*>
TransactionManager::FindActiveLocked(const std::string& transaction_id,
                                     absl::string_view what) {
  Entry* entry = FindLiveLocked(transaction_id);
  if (entry == nullptr) {
    ASSIGN_OR_RETURN(internal::TransactionRecord record,
                     LookupLocked(RefById(transaction_id)));
    if (record.outcome() == v1::OUTCOME_ABORTED) return Outcome(record).status();
    return absl::FailedPreconditionError(
        absl::StrCat("transaction ", transaction_id, " is already decided"));
  }
  const internal::TransactionRecord& record = entry->machine.record();
  if (record.outcome() == v1::OUTCOME_ABORTED) return Outcome(record).status();
  if (record.state() != v1::TRANSACTION_STATE_ACTIVE) {
    return absl::FailedPreconditionError(
        absl::StrCat("transaction ", transaction_id, " is no longer open for ",
                     what, ": Commit was already called"));
  }
  return entry;
}

TransactionManager::Entry* TransactionManager::FindLiveLocked(
    const std::string& transaction_id) {
  auto it = live_.find(transaction_id);
  return it == live_.end() ? nullptr : it->second.get();
}

absl::StatusOr<internal::TransactionRecord> TransactionManager::LookupLocked(
    const v1::TransactionRef& ref) {
  std::string id;
  switch (ref.ref_case()) {
    case v1::TransactionRef::kTransactionId:
      id = ref.transaction_id();
      break;
    case v1::TransactionRef::kIdempotencyKey: {
      id = FindKeyLocked(ref.idempotency_key());
      if (!id.empty()) break;
      ASSIGN_OR_RETURN(absl::optional<std::string> logged,
                       log_->FindByIdempotencyKey(ref.idempotency_key()));
      if (!logged.has_value()) {
        return absl::NotFoundError(absl::StrCat(
            "no transaction with idempotency key ",
            QuoteField(ref.idempotency_key()),
            " is known: it never reached a decision (so it is aborted) or "
            "was compacted after the retention period"));
      }
      id = *logged;
      break;
    }
    case v1::TransactionRef::REF_NOT_SET:
      return absl::InvalidArgumentError(
          "name the transaction by transaction_id or idempotency_key");
  }
  if (Entry* entry = FindLiveLocked(id)) return VisibleRecord(entry->machine);
  if (auto it = recent_.find(id); it != recent_.end()) return it->second;
  ASSIGN_OR_RETURN(absl::optional<internal::TransactionRecord> logged,
                   log_->Read(id));
  if (logged.has_value()) return *logged;

  absl::optional<TransactionId> parsed = TransactionId::Parse(id);
  const bool ours_and_past =
      parsed.has_value() &&
      (parsed->epoch < epoch_ ||
       (parsed->epoch == epoch_ && parsed->sequence < next_sequence_));
  if (!ours_and_past) {
    return absl::NotFoundError(
        absl::StrCat("transaction ", QuoteField(id), " does not exist"));
  }
  if (!compacted_through_.empty() && IdLessOrEqual(id, compacted_through_)) {
    return absl::NotFoundError(absl::StrCat(
        "transaction ", id, " was compacted after the retention period (",
        absl::FormatDuration(options_.retention), ")"));
  }
  // Presumed abort: an id this coordinator handed out that never reached
  // the log was never decided, so it is aborted (and can no longer commit).
  internal::TransactionRecord presumed;
  presumed.set_transaction_id(id);
  presumed.set_state(v1::TRANSACTION_STATE_ABORTED);
  presumed.set_outcome(v1::OUTCOME_ABORTED);
  if (parsed->epoch < epoch_) {
    presumed.set_abort_code(kRestartAbortCode);
    presumed.set_abort_reason(
        absl::StrCat(kRestartAbortReason, " (presumed abort)"));
  } else {
    presumed.set_abort_reason("aborted before any branch was prepared");
  }
  return presumed;
}

// ---------------------------------------------------------------------------
// Carrying out actions

bool TransactionManager::SendLocked(Entry& entry,
                                    const std::string& participant_id,
                                    v1::BranchRequest request) {
  request.set_transaction_id(entry.machine.record().transaction_id());
  return registry_->Send(participant_id, std::move(request));
}

void TransactionManager::ApplyLocked(const std::string& transaction_id,
                                     Actions actions) {
  Entry* entry = FindLiveLocked(transaction_id);
  if (entry == nullptr) return;
  ++change_count_;
  bool done = false;
  // Participants unregistered since the transaction started: delivery
  // failures, handled by the machine like any other once these actions ran.
  std::vector<std::string> unsendable;
  auto send = [&](const std::string& participant_id,
                  v1::BranchRequest request) {
    if (!SendLocked(*entry, participant_id, std::move(request))) {
      unsendable.push_back(participant_id);
    }
  };
  for (Action& a : actions) {
    if (auto* prepare = std::get_if<action::SendPrepare>(&a)) {
      v1::BranchRequest request;
      v1::PrepareBranch* p = request.mutable_prepare();
      // Prepare is sent once per branch: hand the work over, do not copy.
      auto work = entry->work.find(prepare->participant_id);
      if (work != entry->work.end()) {
        p->mutable_branch()->Swap(&work->second);
        entry->work.erase(work);
      }
      *p->mutable_deadline() =
          Timestamp(entry->machine.record().deadline_us());
      send(prepare->participant_id, std::move(request));
    } else if (auto* commit = std::get_if<action::SendCommit>(&a)) {
      v1::BranchRequest request;
      request.mutable_commit();
      send(commit->participant_id, std::move(request));
    } else if (auto* abort = std::get_if<action::SendAbort>(&a)) {
      v1::BranchRequest request;
      request.mutable_abort()->set_reason(
          entry->machine.record().abort_reason());
      send(abort->participant_id, std::move(request));
    } else if (auto* persist = std::get_if<action::Persist>(&a)) {
      const bool index_key = !entry->key_indexed;
      entry->key_indexed = true;
      if (persist->sync) {
        log_->AppendCommit(
            entry->machine.record(), index_key,
            [this, transaction_id](
                const absl::Status& status,
                const std::vector<v1::MessagePosition>& positions) {
              OnPersisted(transaction_id, status, positions);
            });
      } else {
        log_->Append(entry->machine.record(), index_key, nullptr);
      }
    } else if (std::holds_alternative<action::Reply>(a)) {
      const internal::TransactionRecord& record = entry->machine.record();
      if (record.outcome() == v1::OUTCOME_COMMITTED) {
        ++committed_total_;
        const absl::Time now = clock_->Now();
        recent_commits_.push_back(now);
        while (recent_commits_.front() < now - absl::Seconds(10)) {
          recent_commits_.pop_front();
        }
        commit_latencies_.push_back(
            clock_->Now() - absl::FromUnixMicros(record.create_time_us()));
        if (commit_latencies_.size() > kLatencySamples) {
          commit_latencies_.pop_front();
        }
      } else {
        ++aborted_total_;
      }
      for (Done& waiter : entry->on_decided) {
        ReplyScope::Reply(waiter, Outcome(record));
      }
      entry->on_decided.clear();
    } else if (auto* wake = std::get_if<action::WakeAt>(&a)) {
      timers_.erase({entry->wake_at, transaction_id});
      entry->wake_at = wake->when;
      timers_.insert({wake->when, transaction_id});
    } else if (std::holds_alternative<action::Done>(a)) {
      done = true;
    }
  }
  if (done) {
    FinishLocked(transaction_id);
    return;
  }
  for (const std::string& participant_id : unsendable) {
    // Each failure may finish (and erase) the transaction: look it up again.
    Entry* current = FindLiveLocked(transaction_id);
    if (current == nullptr) return;
    ApplyLocked(transaction_id,
                current->machine.OnDeliveryError(
                    participant_id, "participant is no longer registered",
                    clock_->Now()));
  }
}

void TransactionManager::OnPersisted(
    const std::string& transaction_id, const absl::Status& status,
    std::vector<v1::MessagePosition> positions) {
  if (status.ok()) TWOPC_FAILPOINT("coordinator.after_decision_synced");
  ReplyScope replies;
  absl::MutexLock lock(&mu_);
  Entry* entry = FindLiveLocked(transaction_id);
  if (entry == nullptr) return;
  if (!status.ok()) {
    // The COMMIT record may or may not be on disk: the outcome is unknown
    // until a restart reads the log. Never acknowledge it.
    const absl::Status unknown = WithErrorInfo(
        absl::UnavailableError(absl::StrCat(
            "the decision log write for ", transaction_id,
            " failed (", status.message(),
            "); the outcome is unknown until the coordinator restarts: ask "
            "with Get")),
        [&] {
          v1::ErrorInfo info;
          info.set_reason("DECISION_LOG_FAILED");
          info.set_transaction_id(transaction_id);
          return info;
        }());
    for (Done& done : entry->on_decided) ReplyScope::Reply(done, unknown);
    for (Done& done : entry->on_finished) ReplyScope::Reply(done, unknown);
    entry->on_decided.clear();
    entry->on_finished.clear();
    // Nothing more may be acknowledged; only a restart can tell what is
    // durable. Fail-stop.
    const std::string message = absl::StrCat(
        "decision log write failed: ", status.ToString(),
        "; stopping so that recovery can establish what is durable");
    if (options_.on_fatal) {
      options_.on_fatal(message);
    } else {
      std::fprintf(stderr, "twopc-coordinator: FATAL: %s\n", message.c_str());
      std::fflush(stderr);
      std::_Exit(70);
    }
    return;
  }
  entry->machine.SetMessagePositions(std::move(positions));
  ApplyLocked(transaction_id, entry->machine.OnPersisted(clock_->Now()));
}

void TransactionManager::FinishLocked(const std::string& transaction_id) {
  auto it = live_.find(transaction_id);
  if (it == live_.end()) return;
  Entry& entry = *it->second;
  const internal::TransactionRecord& record = entry.machine.record();
  for (Done& waiter : entry.on_decided) {
    ReplyScope::Reply(waiter, Outcome(record));
  }
  for (Done& waiter : entry.on_finished) {
    ReplyScope::Reply(waiter, Outcome(record));
  }
  if (!record.idempotency_key().empty()) {
    live_keys_.erase(record.idempotency_key());
  }
  timers_.erase({entry.wake_at, transaction_id});
  RememberRecentLocked(std::move(entry.machine).TakeRecord());
  live_.erase(it);
}

void TransactionManager::RememberRecentLocked(
    internal::TransactionRecord record) {
  // Serves Get/Watch until the final record, written unforced, is readable
  // from the log; and keeps hot lookups off the disk.
  const std::string id = record.transaction_id();
  if (!record.idempotency_key().empty()) {
    recent_keys_[record.idempotency_key()] = id;
  }
  recent_[id] = std::move(record);
  recent_order_.push_back(id);
  while (recent_order_.size() > options_.recent_cache_size) {
    auto old = recent_.find(recent_order_.front());
    if (old != recent_.end()) {
      recent_keys_.erase(old->second.idempotency_key());
      recent_.erase(old);
    }
    recent_order_.pop_front();
  }
}

// ---------------------------------------------------------------------------
// Participants

void TransactionManager::OnReplies(const std::string& participant_id,
                                   absl::Span<const v1::BranchReply> replies) {
  for (const v1::BranchReply& reply : replies) {
    if (reply.result_case() == v1::BranchReply::kAck) {
      TWOPC_FAILPOINT("coordinator.after_commit_ack");
    }
  }
  const absl::Time now = clock_->Now();
  ReplyScope client_replies;
  absl::MutexLock lock(&mu_);
  for (const v1::BranchReply& reply : replies) {
    OnReplyLocked(participant_id, reply, now);
  }
}

void TransactionManager::OnReplyLocked(const std::string& participant_id,
                                       const v1::BranchReply& reply,
                                       absl::Time now) {
  const std::string& id = reply.transaction_id();
  Entry* entry = FindLiveLocked(id);
  if (entry == nullptr) {
    // A late YES for a transaction that is gone: release it unless it
    // committed (then this is a duplicate of a vote already counted).
    if (reply.result_case() == v1::BranchReply::kVote &&
        reply.vote() == v1::VOTE_YES) {
      absl::StatusOr<internal::TransactionRecord> record =
          LookupLocked(RefById(id));
      if (!record.ok() || record->outcome() != v1::OUTCOME_COMMITTED) {
        v1::BranchRequest request;
        request.set_transaction_id(id);
        request.mutable_abort()->set_reason("transaction aborted");
        registry_->Send(participant_id, std::move(request));
      }
    }
    return;
  }
  switch (reply.result_case()) {
    case v1::BranchReply::kVote:
      ApplyLocked(id, entry->machine.OnVote(participant_id, reply.vote(),
                                            reply.reason(), now));
      break;
    case v1::BranchReply::kAck:
      ApplyLocked(id, entry->machine.OnAck(
                          participant_id,
                          reply.ack() == v1::BranchReply::ACK_COMMITTED, now));
      break;
    case v1::BranchReply::kError:
      ApplyLocked(id, entry->machine.OnDeliveryError(
                          participant_id,
                          absl::StrCat(absl::StatusCodeToString(
                                           static_cast<absl::StatusCode>(
                                               reply.error().code())),
                                       ": ", reply.error().message()),
                          now));
      break;
    case v1::BranchReply::RESULT_NOT_SET:
      break;
  }
}

void TransactionManager::OnDeliveryFailure(const std::string& participant_id,
                                           const std::string& transaction_id,
                                           const std::string& error) {
  ReplyScope replies;
  absl::MutexLock lock(&mu_);
  Entry* entry = FindLiveLocked(transaction_id);
  if (entry == nullptr) return;
  ApplyLocked(transaction_id, entry->machine.OnDeliveryError(
                                  participant_id, error, clock_->Now()));
}

std::vector<v1::QueryOutcomesResponse::Result>
TransactionManager::QueryOutcomes(const std::vector<std::string>& ids) {
  std::vector<v1::QueryOutcomesResponse::Result> results;
  absl::MutexLock lock(&mu_);
  for (const std::string& id : ids) {
    v1::QueryOutcomesResponse::Result result;
    result.set_transaction_id(id);
    result.set_outcome(v1::OUTCOME_PENDING);
    absl::optional<TransactionId> parsed = TransactionId::Parse(id);
    if (Entry* entry = FindLiveLocked(id)) {
      // While the COMMIT record is being written the answer is PENDING.
      if (entry->machine.decided()) {
        result.set_outcome(entry->machine.outcome());
      }
    } else if (parsed.has_value() && parsed->epoch > epoch_) {
      // A newer coordinator exists; this one must not answer for it.
    } else {
      absl::StatusOr<internal::TransactionRecord> record =
          LookupLocked(RefById(id));
      if (record.ok()) {
        result.set_outcome(record->outcome());
      } else if (absl::IsNotFound(record.status())) {
        // Unknown: presumed abort. An id of this epoch not handed out yet
        // is skipped so it never will be (and so can never commit). Ids
        // absurdly far ahead are answered without moving the sequence.
        result.set_outcome(v1::OUTCOME_ABORTED);
        if (parsed.has_value() && parsed->epoch == epoch_ &&
            parsed->sequence >= next_sequence_ &&
            parsed->sequence < next_sequence_ + (uint64_t{1} << 40)) {
          next_sequence_ = parsed->sequence + 1;
        }
      }
      // Any other error (e.g. reading the log): PENDING, ask again.
    }
    results.push_back(std::move(result));
  }
  return results;
}

// ---------------------------------------------------------------------------
// Timers, compaction, stats

void TransactionManager::TimerLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = clock_->Now();
    if (!timers_.empty() && timers_.begin()->first <= now) {
      const std::string id = timers_.begin()->second;
      timers_.erase(timers_.begin());
      Entry* entry = FindLiveLocked(id);
      if (entry != nullptr) {
        entry->wake_at = absl::InfiniteFuture();
        ApplyLocked(id, entry->machine.OnTimer(now));
      }
      continue;
    }
    // Sleep until the earliest wake-up, or until an earlier one is added.
    const absl::Time wake =
        timers_.empty() ? now + absl::Seconds(1) : timers_.begin()->first;
    auto earlier = [this, wake]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || (!timers_.empty() && timers_.begin()->first < wake);
    };
    mu_.AwaitWithDeadline(absl::Condition(&earlier), wake);
  }
}

void TransactionManager::CompactionLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_;
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping),
                             options_.compaction_interval)) {
      return;
    }
    mu_.Unlock();
    Compact();
    mu_.Lock();
  }
}

void TransactionManager::Compact() {
  const absl::Time cutoff = clock_->Now() - options_.retention;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = recent_.begin(); it != recent_.end();) {
      if (absl::FromUnixMicros(it->second.finish_time_us()) < cutoff) {
        recent_keys_.erase(it->second.idempotency_key());
        it = recent_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // The watermark is stored before anything is deleted, so a removed id is
  // always answered "compacted", never "presumed aborted".
  log_->Compact(cutoff,
                [this](const std::string& newest_removed) {
                  RETURN_IF_ERROR(
                      store_->PutMeta(kCompactedThroughMeta, newest_removed));
                  absl::MutexLock lock(&mu_);
                  compacted_through_ = newest_removed;
                  return absl::OkStatus();
                })
      .IgnoreError();
}

v1::Stats TransactionManager::GetStats() const {
  v1::Stats stats;
  const absl::Time now = clock_->Now();
  *stats.mutable_start_time() = Timestamp(absl::ToUnixMicros(start_time_));
  stats.set_coordinator_epoch(epoch_);
  for (const auto& [name, value] : options_.limits.Describe()) {
    (*stats.mutable_limits())[name] = value;
  }
  std::vector<absl::Duration> latencies;
  {
    absl::MutexLock lock(&mu_);
    stats.set_committed_total(committed_total_);
    stats.set_aborted_total(aborted_total_);
    const absl::Time window_start = now - absl::Seconds(10);
    stats.set_committed_per_second(
        std::count_if(recent_commits_.begin(), recent_commits_.end(),
                      [&](absl::Time t) { return t >= window_start; }) /
        10.0);
    absl::Time oldest_in_doubt = absl::InfiniteFuture();
    for (const auto& [id, entry] : live_) {
      const internal::TransactionRecord& record = entry->machine.record();
      if (record.state() == v1::TRANSACTION_STATE_PREPARING) {
        stats.set_in_doubt(stats.in_doubt() + 1);
        oldest_in_doubt = std::min(
            oldest_in_doubt, absl::FromUnixMicros(record.create_time_us()));
      } else if (record.outcome() != v1::OUTCOME_PENDING) {
        stats.set_phase2_pending(stats.phase2_pending() + 1);
      }
      if (record.parked()) stats.set_parked(stats.parked() + 1);
    }
    if (oldest_in_doubt != absl::InfiniteFuture()) {
      *stats.mutable_oldest_in_doubt_age() = TimeUtil::MicrosecondsToDuration(
          absl::ToInt64Microseconds(now - oldest_in_doubt));
    }
    latencies.assign(commit_latencies_.begin(), commit_latencies_.end());
  }
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    auto at = [&](double q) {
      const size_t i = std::min(latencies.size() - 1,
                                static_cast<size_t>(q * latencies.size()));
      return TimeUtil::MicrosecondsToDuration(
          absl::ToInt64Microseconds(latencies[i]));
    };
    v1::LatencySummary* summary = stats.mutable_commit_latency();
    *summary->mutable_p50() = at(0.5);
    *summary->mutable_p90() = at(0.9);
    *summary->mutable_p99() = at(0.99);
    *summary->mutable_p999() = at(0.999);
    *summary->mutable_max() = at(1.0);
  }
  return stats;
}


// ---------------------------------------------------------------------------
// Operators

namespace {

constexpr uint32_t kDefaultPageSize = 50;
constexpr uint32_t kMaxPageSize = 1000;
// Log records examined per List call before it returns a short page.
constexpr int kMaxScannedPerList = 100'000;
constexpr size_t kMaxReasonBytes = 1024;

// Creation order of a transaction id (unparseable ids sort first).
std::pair<uint64_t, uint64_t> CreationOrder(const std::string& id) {
  absl::optional<TransactionId> parsed = TransactionId::Parse(id);
  if (!parsed) return {0, 0};
  return {parsed->epoch, parsed->sequence};
}

bool Matches(const v1::ListTransactionsRequest& request,
             const internal::TransactionRecord& record, absl::Time now) {
  if (request.parked_only() && !record.parked()) return false;
  if (!request.states().empty() &&
      std::find(request.states().begin(), request.states().end(),
                record.state()) == request.states().end()) {
    return false;
  }
  if (request.has_older_than() &&
      absl::FromUnixMicros(record.create_time_us()) >
          now - absl::Microseconds(
                    TimeUtil::DurationToMicroseconds(request.older_than()))) {
    return false;
  }
  if (!request.participant_id().empty() &&
      std::none_of(record.branches().begin(), record.branches().end(),
                   [&](const internal::BranchRecord& b) {
                     return b.participant_id() == request.participant_id();
                   })) {
    return false;
  }
  for (const auto& [key, value] : request.labels()) {
    auto it = record.labels().find(key);
    if (it == record.labels().end() || it->second != value) return false;
  }
  return true;
}

std::string VoteText(const internal::BranchRecord& branch) {
  std::string text = absl::StrCat(
      "voted ", v1::Vote_Name(branch.vote()).substr(strlen("VOTE_")));
  if (!branch.vote_reason().empty()) {
    absl::StrAppend(&text, ": ", branch.vote_reason());
  }
  return text;
}

void AddEvent(int64_t micros, const std::string& kind,
              const std::string& participant, const std::string& detail,
              v1::TransactionDetail* detail_out) {
  if (micros == 0) return;
  v1::TimelineEvent* event = detail_out->add_timeline();
  *event->mutable_time() = Timestamp(micros);
  event->set_kind(kind);
  event->set_participant_id(participant);
  event->set_detail(detail);
}

// Branches, timeline and messages of `record`; `next_attempt` is when phase
// 2 is delivered again (InfiniteFuture when not scheduled).
v1::TransactionDetail BuildDetail(const internal::TransactionRecord& record,
                                  absl::Time next_attempt,
                                  const std::vector<v1::AuditRecord>& audit) {
  v1::TransactionDetail detail;
  *detail.mutable_transaction() = ToTransaction(record);
  AddEvent(record.create_time_us(), "created", "",
           absl::StrCat(record.branches_size(), " branches, ",
                        record.messages_size() +
                            record.message_positions_size(),
                        " messages"),
           &detail);
  for (const internal::BranchRecord& b : record.branches()) {
    v1::BranchDetail* branch = detail.add_branches();
    branch->set_participant_id(b.participant_id());
    branch->set_vote(b.vote());
    branch->set_vote_reason(b.vote_reason());
    branch->set_attempts(b.attempts());
    branch->set_last_error(b.last_error());
    if (b.vote_time_us() != 0) {
      *branch->mutable_vote_time() = Timestamp(b.vote_time_us());
    }
    if (b.last_attempt_time_us() != 0) {
      *branch->mutable_last_attempt_time() =
          Timestamp(b.last_attempt_time_us());
    }
    if (b.ack_time_us() != 0) {
      *branch->mutable_ack_time() = Timestamp(b.ack_time_us());
    }
    const bool awaiting_phase2 =
        record.state() == v1::TRANSACTION_STATE_COMMITTING && !b.finished();
    if (awaiting_phase2 && next_attempt != absl::InfiniteFuture()) {
      *branch->mutable_next_attempt_time() =
          Timestamp(absl::ToUnixMicros(next_attempt));
    }
    AddEvent(b.vote_time_us(), "vote", b.participant_id(), VoteText(b),
             &detail);
    std::string attempt = absl::StrCat("commit delivery attempt ", b.attempts());
    if (!b.last_error().empty()) {
      absl::StrAppend(&attempt, "; last error: ", b.last_error());
    }
    AddEvent(b.last_attempt_time_us(), "commit_sent", b.participant_id(),
             attempt, &detail);
    AddEvent(b.ack_time_us(), "ack", b.participant_id(), "commit acknowledged",
             &detail);
  }
  std::string decision =
      record.outcome() == v1::OUTCOME_COMMITTED ? "COMMITTED" : "ABORTED";
  if (!record.abort_reason().empty()) {
    absl::StrAppend(&decision, " (", record.abort_code(), "): ",
                    record.abort_reason());
  }
  AddEvent(record.decide_time_us(), "decided", "", decision, &detail);
  if (record.state() == v1::TRANSACTION_STATE_COMMITTED ||
      record.state() == v1::TRANSACTION_STATE_ABORTED) {
    AddEvent(record.finish_time_us(), "finished", "", "every branch is done",
             &detail);
  }
  for (const v1::AuditRecord& a : audit) {
    AddEvent(TimeUtil::TimestampToMicroseconds(a.time()), a.action(), "",
             absl::StrCat("by ", a.operator_(), ": ", a.reason(), " (",
                          a.result(), ")"),
             &detail);
  }
  std::stable_sort(detail.mutable_timeline()->begin(),
                   detail.mutable_timeline()->end(),
                   [](const v1::TimelineEvent& x, const v1::TimelineEvent& y) {
                     return TimeUtil::TimestampToMicroseconds(x.time()) <
                            TimeUtil::TimestampToMicroseconds(y.time());
                   });
  *detail.mutable_messages() = record.messages();
  *detail.mutable_message_positions() = record.message_positions();
  return detail;
}

// Why a live transaction is not finished, or "" when it is not stuck (not
// prepared yet, or its commit record is being written).
std::string StuckReason(const internal::TransactionRecord& record,
                        absl::Duration stuck_for) {
  const std::string age = absl::FormatDuration(absl::Trunc(
      stuck_for,
      stuck_for < absl::Seconds(1) ? absl::Milliseconds(1) : absl::Seconds(1)));
  std::vector<std::string> waiting;
  if (record.state() == v1::TRANSACTION_STATE_PREPARING) {
    for (const internal::BranchRecord& b : record.branches()) {
      if (b.vote() != v1::VOTE_UNSPECIFIED) continue;
      waiting.push_back(b.last_error().empty()
                            ? b.participant_id()
                            : absl::StrCat(b.participant_id(), " (",
                                           b.last_error(), ")"));
    }
    if (waiting.empty()) return "";
    return absl::StrCat("in doubt for ", age, ": waiting for votes from ",
                        absl::StrJoin(waiting, ", "));
  }
  if (record.state() != v1::TRANSACTION_STATE_COMMITTING) return "";
  for (const internal::BranchRecord& b : record.branches()) {
    if (b.finished()) continue;
    waiting.push_back(absl::StrCat(
        b.participant_id(), " after ", b.attempts(), " attempts",
        b.last_error().empty() ? "" : absl::StrCat(": ", b.last_error())));
  }
  return absl::StrCat(record.parked() ? "parked; " : "",
                      "commit not acknowledged for ", age, " by ",
                      absl::StrJoin(waiting, "; "));
}

// `no_target` is the error for a request without a target.
absl::Status ValidateOperatorRequest(
    const TransactionManager::OperatorRequest& request, bool reason_required,
    absl::string_view no_target = "name the transaction (transaction_id)") {
  if (request.target.empty()) return absl::InvalidArgumentError(no_target);
  if (reason_required && request.reason.empty()) {
    return absl::InvalidArgumentError(
        "a reason is required; it is written to the audit log");
  }
  if (request.reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the reason is longer than ", kMaxReasonBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ListTransactionsResponse> TransactionManager::List(
    const v1::ListTransactionsRequest& request) const {
  if (request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is at most ", kMaxPageSize));
  }
  if (!request.page_token().empty() &&
      !TransactionId::Parse(request.page_token())) {
    return absl::InvalidArgumentError(
        "page_token must come from a previous ListTransactions response");
  }
  const int limit = static_cast<int>(
      request.page_size() == 0 ? kDefaultPageSize : request.page_size());
  const auto before = request.page_token().empty()
                          ? std::make_pair(~uint64_t{0}, ~uint64_t{0})
                          : CreationOrder(request.page_token());
  // Live transactions are newer than their log records (and undecided ones
  // have none): snapshot them, then merge them into the log scan.
  std::map<std::pair<uint64_t, uint64_t>, internal::TransactionRecord,
           std::greater<>>
      live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : live_) {
      if (CreationOrder(id) < before) {
        live.emplace(CreationOrder(id), VisibleRecord(entry->machine));
      }
    }
  }
  const absl::Time now = clock_->Now();
  v1::ListTransactionsResponse response;
  std::string last_id;
  auto emit = [&](const internal::TransactionRecord& record) {
    last_id = record.transaction_id();
    if (Matches(request, record, now)) {
      *response.add_transactions() = ToTransaction(record);
    }
    return response.transactions_size() < limit;
  };
  auto live_it = live.begin();
  int scanned = 0;
  bool more = false;
  absl::Status status = log_->ForEachNewestFirst(
      request.page_token(), [&](internal::TransactionRecord record) {
        const auto order = CreationOrder(record.transaction_id());
        while (live_it != live.end() && live_it->first >= order) {
          const bool same = live_it->first == order;
          const internal::TransactionRecord& newer = (live_it++)->second;
          if (!emit(newer)) {
            more = true;
            return false;
          }
          if (same) return true;  // the live copy replaces the logged one
        }
        if (!IsFinal(record.state())) {
          // Finished since the snapshot, or so recently that its final
          // (unforced) record is not in the log yet: the cache has it.
          absl::MutexLock lock(&mu_);
          auto it = recent_.find(record.transaction_id());
          if (it != recent_.end()) record = it->second;
        }
        if (++scanned > kMaxScannedPerList || !emit(record)) {
          more = true;
          return false;
        }
        return true;
      });
  RETURN_IF_ERROR(status);
  for (; !more && live_it != live.end(); ++live_it) {
    if (!emit(live_it->second)) more = true;
  }
  if (more) response.set_next_page_token(last_id);
  return response;
}

absl::StatusOr<v1::TransactionDetail> TransactionManager::Describe(
    const v1::TransactionRef& ref) {
  internal::TransactionRecord record;
  absl::Time next_attempt = absl::InfiniteFuture();
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(record, LookupLocked(ref));
    if (Entry* entry = FindLiveLocked(record.transaction_id())) {
      next_attempt = entry->wake_at;
    }
  }
  ASSIGN_OR_RETURN(std::vector<v1::AuditRecord> audit,
                   audit_->ForTarget(record.transaction_id()));
  return BuildDetail(record, next_attempt, audit);
}

std::vector<v1::StuckTransaction> TransactionManager::ListStuck(
    absl::Duration older_than) const {
  const absl::Time now = clock_->Now();
  std::vector<v1::StuckTransaction> result;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, entry] : live_) {
    const internal::TransactionRecord record = VisibleRecord(entry->machine);
    const int64_t since_us =
        record.state() == v1::TRANSACTION_STATE_COMMITTING
            ? record.decide_time_us()
            : record.create_time_us();
    const absl::Duration stuck_for = now - absl::FromUnixMicros(since_us);
    if (stuck_for < older_than) continue;
    std::string reason = StuckReason(record, stuck_for);
    if (reason.empty()) continue;
    v1::StuckTransaction stuck;
    *stuck.mutable_transaction() = ToTransaction(record);
    stuck.set_reason(std::move(reason));
    *stuck.mutable_stuck_for() = TimeUtil::MicrosecondsToDuration(
        absl::ToInt64Microseconds(stuck_for));
    result.push_back(std::move(stuck));
  }
  std::sort(result.begin(), result.end(),
            [](const v1::StuckTransaction& x, const v1::StuckTransaction& y) {
              return TimeUtil::DurationToMicroseconds(x.stuck_for()) >
                     TimeUtil::DurationToMicroseconds(y.stuck_for());
            });
  return result;
}

std::map<std::string, uint32_t> TransactionManager::UnfinishedByParticipant()
    const {
  std::map<std::string, uint32_t> result;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, entry] : live_) {
    for (const internal::BranchRecord& b : entry->machine.record().branches()) {
      ++result[b.participant_id()];
    }
  }
  return result;
}

absl::Status TransactionManager::CheckOperatorActionLocked(
    const std::string& transaction_id,
    const std::function<absl::Status(const TransactionMachine&)>& check,
    absl::Status* allowed) {
  RETURN_IF_ERROR(CheckRunningLocked());
  if (Entry* entry = FindLiveLocked(transaction_id)) {
    *allowed = check(entry->machine);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(internal::TransactionRecord record,
                   LookupLocked(RefById(transaction_id)));
  *allowed =
      check(TransactionMachine::FromLog(std::move(record), options_.retry, 0));
  return absl::OkStatus();
}

v1::AuditRecord TransactionManager::AuditRecordOf(
    const OperatorRequest& request, const std::string& action,
    absl::string_view result) const {
  v1::AuditRecord audit;
  *audit.mutable_time() = Timestamp(absl::ToUnixMicros(clock_->Now()));
  audit.set_operator_(request.operator_name.empty() ? "unknown"
                                                    : request.operator_name);
  audit.set_action(action);
  audit.set_target(request.target);
  audit.set_reason(request.reason);
  audit.set_result(std::string(result));
  return audit;
}

absl::Status TransactionManager::WriteAudit(const OperatorRequest& request,
                                            const std::string& action,
                                            absl::string_view result) {
  if (absl::Status written =
          audit_->Append(AuditRecordOf(request, action, result));
      !written.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "nothing was done: the audit log could not be written: ",
        written.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::TransactionDetail> TransactionManager::RunOperatorAction(
    const OperatorRequest& request, const std::string& action,
    const std::function<absl::Status(const TransactionMachine&)>& check,
    const std::function<Actions(TransactionMachine&)>& act) {
  const std::string& id = request.target;
  absl::Status allowed;
  bool live = false;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckOperatorActionLocked(id, check, &allowed));
    live = FindLiveLocked(id) != nullptr;
  }
  // The audit record is durable before anything happens. It is a synced
  // write, so it is made without the manager's lock, and a live
  // transaction's state is checked again before acting (a finished one
  // cannot change, and there is nothing to act on).
  RETURN_IF_ERROR(WriteAudit(request, action,
                             allowed.ok() ? "applied" : allowed.message()));
  RETURN_IF_ERROR(allowed);
  absl::Status still_allowed;
  if (live) {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckOperatorActionLocked(id, check, &still_allowed));
    Entry* entry = FindLiveLocked(id);
    if (still_allowed.ok() && entry != nullptr) {
      ApplyLocked(id, act(entry->machine));
    }
  }
  if (!still_allowed.ok()) {
    // The transaction moved on between the check and the action: say so in
    // the audit log too.
    WriteAudit(request, action,
               absl::StrCat("not applied after all: ", still_allowed.message()))
        .IgnoreError();
    return still_allowed;
  }
  return Describe(RefById(id));
}

absl::StatusOr<v1::TransactionDetail> TransactionManager::Retry(
    const OperatorRequest& request) {
  RETURN_IF_ERROR(ValidateOperatorRequest(request, /*reason_required=*/false));
  const absl::Time now = clock_->Now();
  return RunOperatorAction(
      request, "retry",
      [](const TransactionMachine& m) { return m.CheckPhase2Pending(); },
      [now](TransactionMachine& m) { return m.RetryNow(now); });
}

absl::StatusOr<v1::TransactionDetail> TransactionManager::Park(
    const OperatorRequest& request, bool parked) {
  RETURN_IF_ERROR(ValidateOperatorRequest(request, /*reason_required=*/true));
  const absl::Time now = clock_->Now();
  return RunOperatorAction(
      request, parked ? "park" : "unpark",
      [](const TransactionMachine& m) { return m.CheckPhase2Pending(); },
      [parked, now](TransactionMachine& m) { return m.SetParked(parked, now); });
}

absl::StatusOr<v1::TransactionDetail> TransactionManager::Force(
    const OperatorRequest& request, v1::Outcome outcome) {
  RETURN_IF_ERROR(ValidateOperatorRequest(request, /*reason_required=*/true));
  if (outcome != v1::OUTCOME_COMMITTED && outcome != v1::OUTCOME_ABORTED) {
    return absl::InvalidArgumentError(
        "outcome must be OUTCOME_COMMITTED or OUTCOME_ABORTED");
  }
  const absl::Time now = clock_->Now();
  return RunOperatorAction(
      request,
      outcome == v1::OUTCOME_COMMITTED ? "force-commit" : "force-abort",
      [outcome](const TransactionMachine& m) { return m.CheckForce(outcome); },
      [outcome, &request, now](TransactionMachine& m) {
        return m.Force(outcome, request.reason, now);
      });
}

absl::Status TransactionManager::RemoveParticipant(
    const OperatorRequest& request) {
  RETURN_IF_ERROR(ValidateOperatorRequest(
      request, /*reason_required=*/true,
      "name the participant (participant_id)"));
  const std::string& participant = request.target;
  RETURN_IF_ERROR(ValidateIdentifier("participant id", participant));
  // Not audited, like an unknown transaction.
  RETURN_IF_ERROR(registry_->CheckRegistered(participant));
  absl::Status allowed;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckRunningLocked());
    allowed = CheckNotRemovingLocked(participant);
    int unfinished = 0;
    std::string example;
    for (const auto& [id, entry] : live_) {
      for (const internal::BranchRecord& b :
           entry->machine.record().branches()) {
        if (b.participant_id() != participant) continue;
        if (unfinished++ == 0) example = id;
      }
    }
    if (allowed.ok() && unfinished > 0) {
      allowed = absl::FailedPreconditionError(absl::StrCat(
          "participant ", participant, " still has ", unfinished,
          " unfinished transaction", unfinished == 1 ? "" : "s", " (e.g. ",
          example, "); let them finish or resolve them first (twopcctl txn "
          "list --participant ", participant, ")"));
    }
    // From here no transaction may start on it (the registry is changed
    // without the manager's lock: a link's end calls back into it).
    if (allowed.ok()) removing_.insert(participant);
  }
  absl::Cleanup stop_refusing = [&] {
    if (!allowed.ok()) return;
    absl::MutexLock lock(&mu_);
    removing_.erase(participant);
  };
  if (!allowed.ok()) {
    RETURN_IF_ERROR(
        WriteAudit(request, "remove-participant", allowed.message()));
    return allowed;
  }
  TWOPC_FAILPOINT("coordinator.removing_participant");
  // The audit record goes in the registry's own synced write: after a crash
  // the removal and its record are both on disk, or neither is.
  rocksdb::WriteBatch audit;
  audit_->Add(AuditRecordOf(request, "remove-participant", "applied"), audit);
  absl::Status status = registry_->Remove(participant, std::move(audit));
  if (!status.ok()) {
    WriteAudit(request, "remove-participant",
               absl::StrCat("not applied: ", status.message()))
        .IgnoreError();
  }
  return status;
}

absl::Status TransactionManager::CheckNotRemovingLocked(
    const std::string& participant_id) const {
  if (removing_.empty() || !removing_.contains(participant_id)) {
    return absl::OkStatus();
  }
  return ParticipantUnknownError(participant_id,
                                 "is being removed by an operator");
}

}  // namespace twopc::coordinator
