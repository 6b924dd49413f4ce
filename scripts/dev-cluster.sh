#!/usr/bin/env bash
# A 3-node Sluice cluster on loopback, for people: ports 7070-7072 (DEV_PORT sets the first).
#   scripts/dev-cluster.sh start [--wipe]   build, start the nodes, form the cluster (idempotent)
#   scripts/dev-cluster.sh stop [--wipe]    SIGTERM every node (drain), optionally drop their data
#   scripts/dev-cluster.sh status           the cluster as node 1 sees it
# Every node lists all three as peers; node 1 is initialized with `sluice init` (as the Helm
# chart's hook does) and the others join by themselves.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

DEV_DIR="$SLUICE_CACHE/dev-cluster"
DEV_PORT="${DEV_PORT:-7070}"
NODES=3
SLUICE="$CARGO_TARGET_DIR/debug/sluice"
PEERS=$(for i in $(seq 0 $((NODES - 1))); do printf '127.0.0.1:%d,' $((DEV_PORT + i)); done)
PEERS="${PEERS%,}"
export SLUICE_HOST="http://127.0.0.1:$DEV_PORT"

running() { [ -f "$DEV_DIR/node-$1.pid" ] && kill -0 "$(cat "$DEV_DIR/node-$1.pid")" 2>/dev/null; }

stop() {
  for i in $(seq 1 $NODES); do
    if running "$i"; then
      kill -TERM "$(cat "$DEV_DIR/node-$i.pid")" 2>/dev/null || true
    fi
  done
  for i in $(seq 1 $NODES); do
    for _ in $(seq 1 150); do running "$i" || break; sleep 0.2; done
    if running "$i"; then
      echo "node-$i did not stop within 30 s; killing it" >&2
      kill -KILL "$(cat "$DEV_DIR/node-$i.pid")" 2>/dev/null || true
    fi
    rm -f "$DEV_DIR/node-$i.pid"
  done
  if [ "${1:-}" = "--wipe" ]; then rm -rf "$DEV_DIR"; echo "dev cluster stopped and wiped"; else echo "dev cluster stopped"; fi
}

start() {
  [ "${1:-}" = "--wipe" ] && stop --wipe >/dev/null
  ensure_tools
  cargo build -p sluice --quiet
  mkdir -p "$DEV_DIR"
  for i in $(seq 1 $NODES); do
    if running "$i"; then echo "node-$i already running"; continue; fi
    local port=$((DEV_PORT + i - 1))
    nohup "$SLUICE" node --node-id "node-$i" --data-dir "$DEV_DIR/node-$i" \
      --grpc-addr "127.0.0.1:$port" --peers "$PEERS" \
      >"$DEV_DIR/node-$i.out" 2>"$DEV_DIR/node-$i.log" &
    echo $! >"$DEV_DIR/node-$i.pid"
  done
  for i in $(seq 1 $NODES); do
    for _ in $(seq 1 150); do [ -s "$DEV_DIR/node-$i/grpc-address" ] && break; sleep 0.2; done
    [ -s "$DEV_DIR/node-$i/grpc-address" ] || { tail -20 "$DEV_DIR/node-$i.log"; exit 1; }
  done
  "$SLUICE" init
  for _ in $(seq 1 150); do
    n=$("$SLUICE" sql --format tsv "SELECT count() FROM system.replicas WHERE error = '' AND lag IS NOT NULL" 2>/dev/null || echo 0)
    [ "$n" = "$NODES" ] && break
    sleep 0.2
  done
  [ "$n" = "$NODES" ] || { echo "the cluster did not form; see $DEV_DIR/node-*.log" >&2; exit 1; }
  echo "dev cluster of $NODES nodes on $PEERS (logs in $DEV_DIR)"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  status) "$SLUICE" status ;;
  *) echo "usage: $0 start [--wipe] | stop [--wipe] | status" >&2; exit 2 ;;
esac
