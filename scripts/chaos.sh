#!/usr/bin/env bash
# The chaos soak: runs the randomized chaos scenario (random kill -9 rounds and a rolling
# SIGTERM restart under load, checked per partition offset) again and again with
# consecutive seeds until the duration is spent, then prints a summary.
#   scripts/chaos.sh [--duration 30m] [--seed N]
# A failing round prints its seed; replay it with SLUICE_CHAOS_SEED=<seed> cargo test -p
# cluster-tests --test chaos random_kills -- --nocapture.
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
export SLUICE_TEST_KAFKA_PORT="${SLUICE_TEST_KAFKA_PORT:-19192}"
kafka_env=(env KAFKA_PORT="$SLUICE_TEST_KAFKA_PORT" SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-test-$SLUICE_TEST_KAFKA_PORT")
cleanup() { "${kafka_env[@]}" bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true; }
trap cleanup EXIT
cargo build --workspace --all-targets --quiet
"${kafka_env[@]}" bash scripts/kafka.sh start >/dev/null

log_dir="$SLUICE_CACHE/chaos-logs"
mkdir -p "$log_dir"
end=$(( $(date +%s) + secs ))
rounds=0 passed=0 failed=0 messages=0 kills=0
echo "chaos soak for $duration from seed $seed (logs in $log_dir)"
while [ "$(date +%s)" -lt "$end" ]; do
  s=$(( seed + rounds ))
  log="$log_dir/round-$s.log"
  if SLUICE_CHAOS_SEED=$s cargo test -p cluster-tests --test chaos random_kills -- --nocapture >"$log" 2>&1; then
    passed=$(( passed + 1 ))
    result=ok
  else
    failed=$(( failed + 1 ))
    result="FAILED (seed $s, see $log)"
  fi
  n=$(grep -oE '^produced [0-9]+ messages' "$log" | grep -oE '[0-9]+' | tail -1 || true)
  k=$(grep -oE 'kill -9' "$log" | wc -l || true)
  messages=$(( messages + ${n:-0} ))
  kills=$(( kills + k ))
  rounds=$(( rounds + 1 ))
  echo "round $rounds seed $s: $result, ${n:-0} messages"
done
echo
echo "summary: $rounds rounds ($passed passed, $failed failed), $messages messages checked,"
echo "         about $kills kill -9 and $(( rounds * 3 )) SIGTERM restarts; lost 0 and duplicated 0 in every passed round"
[ "$failed" -eq 0 ]
