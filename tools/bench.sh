#!/usr/bin/env bash
# Reproduces the README's transaction benchmark tables (`make bench`): every
# configuration of the benchmark issue's bar, each run several times with
# `twopc-bench txn --local` (all processes on this machine, fsync on,
# 2 participants per transaction), once with one Execute call per
# transaction and once over ExecuteStream (--stream), and prints the medians
# as a markdown table per API, with the bar and whether the median meets it.
#
#   bash tools/bench.sh BIN_DIR
#
# Environment (defaults in brackets):
#   TWOPC_BENCH_RUNS      runs per configuration [3]
#   TWOPC_BENCH_DURATION  measured window per client count [10s]
#   TWOPC_BENCH_WARMUP    warm-up before each window [2s]
#   TWOPC_BENCH_SWEEP     client counts of the flatness sweep [16,64,256,1024]
#   TWOPC_BENCH_ARGS      extra twopc-bench txn flags for every run []
# Each run's JSON report is kept in TWOPC_BENCH_OUT [a temporary directory,
# removed at the end].
set -euo pipefail

bin=${1:?usage: bash tools/bench.sh BIN_DIR}
runs=${TWOPC_BENCH_RUNS:-3}
duration=${TWOPC_BENCH_DURATION:-10s}
warmup=${TWOPC_BENCH_WARMUP:-2s}
sweep=${TWOPC_BENCH_SWEEP:-16,64,256,1024}
read -r -a extra <<< "${TWOPC_BENCH_ARGS:-}"
out=${TWOPC_BENCH_OUT:-}
if [[ -z "$out" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

# run_once NAME I FLAGS...: NAME.I.json
run_once() {
  local name=$1 i=$2
  shift 2
  echo "bench.sh: $name ($*), run $i of $runs" >&2
  "$bin/twopc-bench" txn --local --json --participants 2 \
    --duration "$duration" --warmup "$warmup" "${extra[@]}" "$@" \
    > "$out/$name.$i.json"
}

# run NAME FLAGS...: NAME.1.json .. NAME.$runs.json
run() {
  local name=$1
  shift
  for ((i = 1; i <= runs; i++)); do run_once "$name" "$i" "$@"; done
}

start=$(date +%s)
# The two APIs, and with and without a message, alternate, so that the
# ratios of their medians compare runs made close together (this machine
# drifts between runs).
for ((i = 1; i <= runs; i++)); do
  run_once execute.clients64 "$i" --clients 64
  run_once stream.clients64 "$i" --clients 64 --stream
  run_once execute.message64 "$i" --clients 64 --messages 1
  run_once stream.message64 "$i" --clients 64 --messages 1 --stream
done
for ((i = 1; i <= runs; i++)); do
  run_once execute.clients1 "$i" --clients 1
  run_once stream.clients1 "$i" --clients 1 --stream
done
for ((i = 1; i <= runs; i++)); do
  run_once execute.sweep "$i" --sweep "$sweep"
  run_once stream.sweep "$i" --sweep "$sweep" --stream
done
echo "bench.sh: done in $(($(date +%s) - start)) s" >&2

/usr/bin/python3 - "$out" "$runs" "$(nproc)" <<'PYTHON'
import datetime
import glob
import json
import statistics
import sys

out, runs, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def reports(name):
    return [json.load(open(f"{out}/{name}.{i}.json")) for i in range(1, runs + 1)]


def first_run(name):
    return [r["runs"][0] for r in reports(name)]


def values(runs_, get):
    result = []
    for run in runs_:
        try:
            result.append(get(run))
        except (KeyError, ZeroDivisionError):
            pass
    return result


def table(api):
    rows = []

    def row(measure, bar, vals, fmt, meets=None):
        if not vals:
            rows.append((measure, bar, "-", "-", ""))
            return
        median = statistics.median(vals)
        met = "" if meets is None else ("yes" if meets(median) else "**no**")
        rows.append((measure, bar, fmt.format(median),
                     " / ".join(fmt.format(v) for v in vals), met))

    tx = lambda r: r["committed_per_second"]
    ms = lambda key: (lambda r: r["latency_us"][key] / 1000)

    c64 = first_run(f"{api}.clients64")
    c1 = first_run(f"{api}.clients1")
    m64 = first_run(f"{api}.message64")
    row("64 clients: committed tx/s", "≥ 15,000 (goal 20,000)",
        values(c64, tx), "{:,.0f}", lambda v: v >= 15000)
    row("64 clients: latency p50 (ms)", "", values(c64, ms("p50")), "{:.2f}")
    row("64 clients: latency p99 (ms)", "", values(c64, ms("p99")), "{:.2f}")
    row("64 clients: decisions per sync", "≥ 8",
        values(c64, lambda r: r["decisions_per_sync"]), "{:.1f}",
        lambda v: v >= 8)
    for process in ("coordinator", "p1", "p2", "bench"):
        row(f"64 clients: CPU µs per tx, {process}", "",
            values(c64, lambda r: r["cpu_us_per_transaction"][process]),
            "{:.0f}")
    row("64 clients: gRPC echo ceiling (unary calls/s)", "",
        values(c64, lambda r: r["echo_calls_per_second"]), "{:,.0f}")
    row("64 clients: ours / echo", "",
        values(c64, lambda r: r["ratio_to_echo"]), "{:.3f}")
    row("1 client: committed tx/s", "", values(c1, tx), "{:,.0f}")
    row("1 client: latency p50 (ms)", "≤ 0.3", values(c1, ms("p50")),
        "{:.3f}", lambda v: v <= 0.3)
    row("1 client: latency p99 (ms)", "≤ 1.5", values(c1, ms("p99")),
        "{:.3f}", lambda v: v <= 1.5)

    sweeps = [r["runs"] for r in reports(f"{api}.sweep")]
    for index, point in enumerate(sweeps[0]):
        row(f"{point['clients']} clients: committed tx/s", "",
            [s[index]["committed_per_second"] for s in sweeps], "{:,.0f}")
    flatness = [min(p["committed_per_second"] for p in s) /
                max(p["committed_per_second"] for p in s) for s in sweeps]
    row("sweep: lowest / peak tx/s", "≥ 0.90", flatness, "{:.2f}",
        lambda v: v >= 0.9)

    row("64 clients, 1 message/tx: committed tx/s", "", values(m64, tx),
        "{:,.0f}")
    with_message = statistics.median(values(m64, tx))
    without = statistics.median(values(c64, tx))
    rows.append(("with a message / without (medians)", "≥ 0.80",
                 f"{with_message / without:.2f}", "",
                 "yes" if with_message >= 0.8 * without else "**no**"))
    row("RocksDB synced writes/s, 1 thread", "",
        values(reports(f"{api}.clients64"),
               lambda r: r["rocksdb_synced_writes_per_second"]), "{:,.0f}")
    return rows


print(f"Medians of {runs} runs of `twopc-bench txn --local` "
      f"({cores} cores, all processes on this machine, fsync on, "
      f"2 participants per transaction), {datetime.date.today()}.")
for api, title in (("execute", "One `Execute` call per transaction"),
                   ("stream", "Over `ExecuteStream` (`--stream`)")):
    print(f"\n{title}:\n")
    print("| measure | bar | median | runs | met |")
    print("| --- | --- | ---: | --- | --- |")
    for measure, bar, median, each, met in table(api):
        print(f"| {measure} | {bar} | {median} | {each} | {met} |")
PYTHON
