#include "tools/bench/report.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace twopc::bench {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;

double Micros(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }
double Millis(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

std::string OrDash(std::optional<double> value, const char* format) {
  return value.has_value() ? absl::StrFormat(format, *value) : "-";
}

std::string Describe(const TxnBenchOptions& options, const Target& target) {
  const std::string load =
      options.load.rate > 0
          ? absl::StrCat("open loop at ", options.load.rate, " tx/s over ",
                         options.client_counts.front(), " clients")
          : absl::StrCat("closed loop, ",
                         absl::StrJoin(options.client_counts, ","), " clients");
  return absl::StrCat(
      load, "; ", target.participant_ids.size(), " participants (",
      absl::StrJoin(target.participant_ids, ","), "), ", options.payload_bytes,
      "-byte payloads, ", options.messages, " messages/tx, abort ratio ",
      options.abort_ratio, "; ", absl::FormatDuration(options.duration),
      " after ", absl::FormatDuration(options.warmup), " warm-up; ",
      options.stream ? "ExecuteStream over " : "Execute calls over ",
      options.channels, " channels, ", options.load.threads, " client threads",
      options.local ? "; --local" : "");
}

std::string CpuLine(const RunResult& run) {
  std::vector<std::string> parts;
  for (const CpuShare& share : run.cpu) {
    parts.push_back(absl::StrCat(
        share.name, " ",
        share.per_transaction.has_value()
            ? absl::StrFormat("%.1f", Micros(*share.per_transaction))
            : "-"));
  }
  const std::optional<absl::Duration> total = run.total_cpu_per_transaction();
  return absl::StrCat(
      absl::StrJoin(parts, ", "), "; total ",
      total.has_value() ? absl::StrFormat("%.1f", Micros(*total)) : "-", " us");
}

void PrintRunBlock(const RunResult& run) {
  const LoadCounters& c = run.window.counters;
  const LatencyHistogram& latency = run.window.latency;
  std::printf("  committed        %10.0f tx/s   (%llu in %.2f s)\n",
              run.committed_per_second(),
              static_cast<unsigned long long>(c.committed),
              absl::ToDoubleSeconds(run.window.elapsed));
  std::printf(
      "  aborted          %10.0f tx/s   (intended %llu, lock "
      "conflicts %llu, other %llu)\n",
      run.aborted_per_second(),
      static_cast<unsigned long long>(c.aborted_as_intended),
      static_cast<unsigned long long>(c.conflicts),
      static_cast<unsigned long long>(c.aborted_unexpectedly));
  std::printf(
      "  failed %llu, committed although meant to abort %llu, "
      "skipped (open loop) %llu\n",
      static_cast<unsigned long long>(c.failed),
      static_cast<unsigned long long>(c.committed_unexpectedly),
      static_cast<unsigned long long>(c.skipped));
  std::printf(
      "  latency (ms)     p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  "
      "max %.3f\n",
      Millis(latency.Percentile(0.5)), Millis(latency.Percentile(0.9)),
      Millis(latency.Percentile(0.99)), Millis(latency.Percentile(0.999)),
      Millis(latency.Max()));
  const LatencyHistogram& send_delay = run.window.send_delay;
  if (send_delay.count() > 0) {
    std::printf(
        "  sent late (ms)   p50 %.3f  p99 %.3f  max %.3f   (the generator's "
        "own delay, counted in the latency)\n",
        Millis(send_delay.Percentile(0.5)), Millis(send_delay.Percentile(0.99)),
        Millis(send_delay.Max()));
  }
  std::printf(
      "  group commit     %s decisions per sync (%s decisions in %s "
      "syncs)\n",
      OrDash(run.decisions_per_sync(), "%.1f").c_str(),
      OrDash(run.decisions_synced, "%.0f").c_str(),
      OrDash(run.log_syncs, "%.0f").c_str());
  std::printf("  cpu per tx (us)  %s\n", CpuLine(run).c_str());
  if (run.echo.has_value()) {
    std::printf(
        "  echo ceiling     %10.0f calls/s (p50 %.3f ms, p99 %.3f "
        "ms); ours/echo %s\n",
        run.echo->calls_per_second, Millis(run.echo->p50),
        Millis(run.echo->p99), OrDash(run.ratio_to_echo(), "%.3f").c_str());
  }
  if (!c.first_error.empty()) {
    std::printf("  first error      %s\n", c.first_error.c_str());
  }
}

void PrintSweepTable(const std::vector<RunResult>& runs) {
  std::printf(
      "| clients | committed/s | aborted/s | p50 ms | p90 ms | p99 ms | "
      "p99.9 ms | max ms | decisions/sync | cpu us/tx | echo calls/s | "
      "ours/echo |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const RunResult& run : runs) {
    const LatencyHistogram& latency = run.window.latency;
    const std::optional<absl::Duration> cpu = run.total_cpu_per_transaction();
    std::printf(
        "| %d | %.0f | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %s | "
        "%s | %s |\n",
        run.clients, run.committed_per_second(), run.aborted_per_second(),
        Millis(latency.Percentile(0.5)), Millis(latency.Percentile(0.9)),
        Millis(latency.Percentile(0.99)), Millis(latency.Percentile(0.999)),
        Millis(latency.Max()), OrDash(run.decisions_per_sync(), "%.1f").c_str(),
        cpu.has_value() ? absl::StrFormat("%.1f", Micros(*cpu)).c_str() : "-",
        run.echo.has_value()
            ? absl::StrFormat("%.0f", run.echo->calls_per_second).c_str()
            : "-",
        OrDash(run.ratio_to_echo(), "%.3f").c_str());
  }
}

void PrintText(const TxnBenchOptions& options, const Target& target,
               const std::vector<RunResult>& runs,
               std::optional<double> synced_writes_per_second) {
  std::printf("twopc-bench txn: %s\n", Describe(options, target).c_str());
  if (runs.size() == 1) {
    PrintRunBlock(runs.front());
  } else {
    PrintSweepTable(runs);
    for (const RunResult& run : runs) {
      if (run.window.counters.first_error.empty()) continue;
      std::printf("first error at %d clients: %s\n", run.clients,
                  run.window.counters.first_error.c_str());
    }
  }
  if (synced_writes_per_second.has_value()) {
    std::printf(
        "  storage ceiling  %10.0f RocksDB synced writes/s, 1 "
        "thread\n",
        *synced_writes_per_second);
  }
}

// --- JSON ------------------------------------------------------------------

void Set(Struct& object, const std::string& key, double value) {
  (*object.mutable_fields())[key].set_number_value(value);
}
void Set(Struct& object, const std::string& key, const std::string& value) {
  (*object.mutable_fields())[key].set_string_value(value);
}
void Set(Struct& object, const std::string& key, Struct value) {
  *(*object.mutable_fields())[key].mutable_struct_value() = std::move(value);
}
template <typename T>
void SetIfKnown(Struct& object, const std::string& key,
                const std::optional<T>& value) {
  if (value.has_value()) Set(object, key, static_cast<double>(*value));
}

Struct ConfigJson(const TxnBenchOptions& options, const Target& target) {
  Struct config;
  Set(config, "coordinator", target.coordinator);
  Set(config, "local", options.local ? 1.0 : 0.0);
  Set(config, "participants",
      static_cast<double>(target.participant_ids.size()));
  Set(config, "rate", options.load.rate);
  Set(config, "payload_bytes", options.payload_bytes);
  Set(config, "messages", options.messages);
  Set(config, "abort_ratio", options.abort_ratio);
  Set(config, "idempotency_keys", options.idempotency_keys ? 1.0 : 0.0);
  Set(config, "duration_seconds", absl::ToDoubleSeconds(options.duration));
  Set(config, "warmup_seconds", absl::ToDoubleSeconds(options.warmup));
  Set(config, "channels", options.channels);
  Set(config, "stream", options.stream ? 1.0 : 0.0);
  Set(config, "client_threads", options.load.threads);
  return config;
}

Struct RunJson(const RunResult& run) {
  const LoadCounters& c = run.window.counters;
  const LatencyHistogram& latency = run.window.latency;
  Struct json;
  Set(json, "clients", run.clients);
  Set(json, "seconds", absl::ToDoubleSeconds(run.window.elapsed));
  Set(json, "committed", c.committed);
  Set(json, "committed_per_second", run.committed_per_second());
  Set(json, "aborted_per_second", run.aborted_per_second());
  Set(json, "aborted_as_intended", c.aborted_as_intended);
  Set(json, "conflicts", c.conflicts);
  Set(json, "aborted_unexpectedly", c.aborted_unexpectedly);
  Set(json, "committed_unexpectedly", c.committed_unexpectedly);
  Set(json, "failed", c.failed);
  Set(json, "skipped", c.skipped);
  Struct latency_us;
  Set(latency_us, "p50", Micros(latency.Percentile(0.5)));
  Set(latency_us, "p90", Micros(latency.Percentile(0.9)));
  Set(latency_us, "p99", Micros(latency.Percentile(0.99)));
  Set(latency_us, "p999", Micros(latency.Percentile(0.999)));
  Set(latency_us, "max", Micros(latency.Max()));
  Set(json, "latency_us", std::move(latency_us));
  if (run.window.send_delay.count() > 0) {
    Struct send_delay_us;
    Set(send_delay_us, "p50", Micros(run.window.send_delay.Percentile(0.5)));
    Set(send_delay_us, "p99", Micros(run.window.send_delay.Percentile(0.99)));
    Set(send_delay_us, "max", Micros(run.window.send_delay.Max()));
    Set(json, "send_delay_us", std::move(send_delay_us));
  }
  SetIfKnown(json, "log_syncs", run.log_syncs);
  SetIfKnown(json, "decisions_synced", run.decisions_synced);
  SetIfKnown(json, "decisions_per_sync", run.decisions_per_sync());
  Struct cpu;
  for (const CpuShare& share : run.cpu) {
    if (share.per_transaction.has_value()) {
      Set(cpu, share.name, Micros(*share.per_transaction));
    }
  }
  const std::optional<absl::Duration> total = run.total_cpu_per_transaction();
  if (total.has_value()) Set(cpu, "total", Micros(*total));
  Set(json, "cpu_us_per_transaction", std::move(cpu));
  if (run.echo.has_value()) {
    Set(json, "echo_calls_per_second", run.echo->calls_per_second);
    Struct echo_latency;
    Set(echo_latency, "p50", Micros(run.echo->p50));
    Set(echo_latency, "p99", Micros(run.echo->p99));
    Set(json, "echo_latency_us", std::move(echo_latency));
    SetIfKnown(json, "ratio_to_echo", run.ratio_to_echo());
  }
  if (!c.first_error.empty()) Set(json, "first_error", c.first_error);
  return json;
}

void PrintJson(const TxnBenchOptions& options, const Target& target,
               const std::vector<RunResult>& runs,
               std::optional<double> synced_writes_per_second) {
  Struct report;
  Set(report, "config", ConfigJson(options, target));
  Value& list = (*report.mutable_fields())["runs"];
  for (const RunResult& run : runs) {
    *list.mutable_list_value()->add_values()->mutable_struct_value() =
        RunJson(run);
  }
  SetIfKnown(report, "rocksdb_synced_writes_per_second",
             synced_writes_per_second);
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(report, &text);
  std::printf("%s\n", text.c_str());
}

}  // namespace

void PrintReport(const TxnBenchOptions& options, const Target& target,
                 const std::vector<RunResult>& runs,
                 std::optional<double> synced_writes_per_second) {
  if (options.json) {
    PrintJson(options, target, runs, synced_writes_per_second);
  } else {
    PrintText(options, target, runs, synced_writes_per_second);
  }
  std::fflush(stdout);
}

}  // namespace twopc::bench
