#!/usr/bin/env bash
# The chaos soak: faults mixed at random under load (kill -9 of a random node, of the
# leader, of a partition's owner with its data dir wiped; SIGSTOP; a node cut off, the
# leader isolated, a bridge; slow links; a rolling SIGTERM restart; a Kafka broker
# restart; a full disk; fsync failing with EIO), one per round, each healed and checked (exactly once per partition offset on every replica, identical replicas,
# fencing, DDL, group offsets, liveness), until the duration is spent; then a summary.
#   scripts/chaos.sh [--duration 30m] [--seed N]
# Replay a failure with the seed it prints: SLUICE_CHAOS_SEED=<seed> cargo test -p
# cluster-tests --test network a_random_mix -- --nocapture (needs root: network namespaces).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

duration=30m
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "usage: $0 [--duration 30m] [--seed N]" >&2; exit 2 ;;
  esac
done
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac

ensure_tools
# The soak runs in a network namespace of its own, with a Kafka broker of its own.
cargo build --workspace --all-targets --quiet

log_dir="$SLUICE_CACHE/chaos-logs"
mkdir -p "$log_dir"
log="$log_dir/soak-$seed.log"
echo "chaos soak for $duration from seed $seed (log: $log)"
started=$(date +%s)
set +e
SLUICE_CHAOS_SEED=$seed SLUICE_SOAK_SECS=$secs \
  cargo test -p cluster-tests --test network a_random_mix -- --nocapture 2>&1 \
  | tee "$log" | grep --line-buffered -E '^soak (round|summary)'
status=${PIPESTATUS[0]}
set -e
echo
echo "ran $(( ($(date +%s) - started) / 60 )) minutes"
if [ "$status" -ne 0 ]; then
  echo "FAILED (seed $seed): the invariant that broke and the history are in $log" >&2
  grep -E 'invariants broken|fencing broken|Error|Caused by' "$log" | head -20 >&2 || true
  exit 1
fi
