#!/usr/bin/env bash
# `make run`'s script brings the local cluster up and SIGINT stops every
# process it started. Usage: run_local_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
set -m  # background jobs get their own process group and keep SIGINT
SOURCE_DIR=$1
BIN_DIR=$2
work=$(mktemp -d)
cleanup() {
  pkill -KILL -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

TWOPC_BIN=$BIN_DIR TWOPC_VAR=$work/var TWOPC_COORDINATOR_PORT=0 \
  TWOPC_PARTICIPANT_PORTS="0 0" \
  bash "$SOURCE_DIR/deploy/run-local.sh" >"$work/out" 2>&1 &
script=$!

deadline=$((SECONDS + 60))
until grep -q "cluster up" "$work/out"; do
  if ((SECONDS > deadline)) || ! kill -0 "$script" 2>/dev/null; then
    echo "FAIL: cluster did not come up"; cat "$work/out"; exit 1
  fi
  sleep 0.1
done
for name in coordinator p1 p2; do
  grep -q "^\[$name\] .*listening on" "$work/out" || {
    echo "FAIL: $name not listening"; cat "$work/out"; exit 1; }
done
address=$(sed -n 's/^  coordinator   //p' "$work/out")
"$BIN_DIR/twopcctl" --coordinator "$address" health >/dev/null || {
  echo "FAIL: coordinator not healthy at $address"; exit 1; }

kill -INT "$script"
deadline=$((SECONDS + 30))
while kill -0 "$script" 2>/dev/null; do
  if ((SECONDS > deadline)); then echo "FAIL: script still running"; exit 1; fi
  sleep 0.1
done
wait "$script" || { echo "FAIL: script exited non-zero"; cat "$work/out"; exit 1; }

if pgrep -f "$work/var" >/dev/null; then
  echo "FAIL: processes left behind:"; pgrep -af "$work/var"; exit 1
fi
for name in coordinator p1 p2; do
  grep -q "stopped" "$work/var/log/$name.log" || {
    echo "FAIL: $name did not stop cleanly"; cat "$work/var/log/$name.log"; exit 1; }
done
echo "run-local: up, healthy, and stopped cleanly on SIGINT"
