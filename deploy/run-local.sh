#!/usr/bin/env bash
# Starts a local twopc cluster in the foreground: one coordinator and two
# participant sidecars (built-in key-value resource) on loopback, data under
# ./var/. Ctrl-C (SIGINT) or SIGTERM stops all of them cleanly.
#
# Environment (defaults in brackets):
#   TWOPC_BIN               directory with the binaries [build/bin]
#   TWOPC_VAR               data and log directory [var]
#   TWOPC_COORDINATOR_PORT  [7400]; 0 picks a free port
#   TWOPC_PARTICIPANT_PORTS [7401 7402]; one per participant, 0 = free port
set -euo pipefail

BIN=${TWOPC_BIN:-build/bin}
VAR=${TWOPC_VAR:-var}
COORDINATOR_PORT=${TWOPC_COORDINATOR_PORT:-7400}
read -r -a PARTICIPANT_PORTS <<<"${TWOPC_PARTICIPANT_PORTS:-7401 7402}"
START_TIMEOUT_SECONDS=20

mkdir -p "$VAR/log"
pids=()

stop_all() {
  trap - INT TERM
  echo "run-local: stopping ${#pids[@]} processes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run-local: all stopped"
  exit 0
}
trap stop_all INT TERM

# start NAME BINARY ARGS...: runs the binary with its output prefixed by NAME
# on the terminal and copied to $VAR/log/NAME.log.
start() {
  local name=$1
  shift
  : >"$VAR/log/$name.log"
  # The log pipeline ignores SIGINT so that on Ctrl-C it outlives the
  # process and records its shutdown; it ends when the process closes stdout.
  "$@" > >(trap '' INT; tee -a "$VAR/log/$name.log" | sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}

# wait_listening NAME: prints the address NAME's log says it listens on.
wait_listening() {
  local log="$VAR/log/$1.log" deadline=$((SECONDS + START_TIMEOUT_SECONDS))
  while ((SECONDS < deadline)); do
    local line
    line=$(grep -m1 -o 'listening on [^ ]*' "$log" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
      echo "${line#listening on }"
      return 0
    fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "run-local: $1 exited; see $log" >&2; return 1; }
    done
    sleep 0.1
  done
  echo "run-local: $1 did not start within ${START_TIMEOUT_SECONDS}s; see $log" >&2
  return 1
}

start coordinator "$BIN/twopc-coordinator" \
  --listen "127.0.0.1:$COORDINATOR_PORT" --data_dir "$VAR/coordinator"
coordinator=$(wait_listening coordinator) || stop_all

participants=()
for i in "${!PARTICIPANT_PORTS[@]}"; do
  id="p$((i + 1))"
  start "$id" "$BIN/twopc-participant" --id "$id" \
    --listen "127.0.0.1:${PARTICIPANT_PORTS[$i]}" \
    --coordinator "$coordinator" --data_dir "$VAR/$id"
  participants+=("$id=$(wait_listening "$id")") || stop_all
done

# Wait until every sidecar has registered and its link is up, so the first
# command tried works.
deadline=$((SECONDS + START_TIMEOUT_SECONDS))
until [[ $("$BIN/twopcctl" --coordinator "$coordinator" participant list 2>/dev/null |
           awk '$5 == "up"' | wc -l) -ge ${#participants[@]} ]]; do
  if ((SECONDS > deadline)); then
    echo "run-local: participants did not register within ${START_TIMEOUT_SECONDS}s; see $VAR/log/" >&2
    stop_all
  fi
  sleep 0.2
done

cat <<INFO
run-local: cluster up (data and logs under $VAR/)
  coordinator   $coordinator
$(for p in "${participants[@]}"; do echo "  participant   ${p%%=*} at ${p#*=}"; done)
Try:
  export TWOPC_COORDINATOR=$coordinator
  $BIN/twopcctl participant list
  $BIN/twopcctl txn exec --op 'p1 put balance/alice 100' --op 'p2 put balance/bob 0'
  $BIN/twopcctl txn exec --op 'p1 add balance/alice -30 min=0' --op 'p2 add balance/bob 30'
  $BIN/twopcctl kv get --sidecar ${participants[1]#*=} balance/bob
Stop: Ctrl-C
INFO

# Run until a signal arrives or a process dies.
while true; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-local: a process exited unexpectedly; see $VAR/log/" >&2
      stop_all
    fi
  done
  sleep 1 &
  wait $! || true
done
