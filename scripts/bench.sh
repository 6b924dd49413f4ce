#!/usr/bin/env bash
# Ingestion benchmark. In one run, on one broker and one topic:
#   (a) baseline: a plain librdkafka consumer drains the topic and discards it;
#   (b) Sluice: one node ingests the same topic through the guide's tables until
#       count() = N.
# Prints both rates, the ratio b/a and the node's peak RSS. Release build.
#   scripts/bench.sh [N]        (default 1,000,000 events)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"
ensure_tools

N="${1:-${BENCH_EVENTS:-1000000}}"
export KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}"
export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-bench"
BROKERS="127.0.0.1:$KAFKA_PORT"
WORK="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
SLUICE="$CARGO_TARGET_DIR/release/sluice"
NODE_PID=""
cleanup() {
  [ -n "$NODE_PID" ] && kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== release build"
cargo build --release -p sluice --quiet

echo "== Kafka on $BROKERS; producing $N events to topic bench (3 partitions)"
bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
bash scripts/kafka.sh start >/dev/null
"$SLUICE" produce --brokers "$BROKERS" --topic bench --partitions 3 --count "$N" --quiet

echo "== (a) baseline: librdkafka consumer, discarding"
base_line=$("$SLUICE" drain --brokers "$BROKERS" --topic bench --count "$N")
echo "$base_line"
base_rate=$(sed -E 's/.*= ([0-9]+) msg\/s/\1/' <<<"$base_line")

echo "== (b) Sluice: one node, the guide's tables"
"$SLUICE" node --bootstrap --data-dir "$WORK/node" --grpc-addr 127.0.0.1:0 --log warn >"$WORK/node.out" 2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/node/grpc-address" ] && break; sleep 0.1; done
export SLUICE_HOST="http://$(cat "$WORK/node/grpc-address")"
sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/bench/" -e "s/\${KAFKA_GROUP}/bench/" \
  scripts/sql/quickstart.sql >"$WORK/ddl.sql"
start=$(date +%s.%N)
"$SLUICE" sql -f "$WORK/ddl.sql" >/dev/null
while :; do
  n=$("$SLUICE" sql --format tsv "SELECT count() FROM github")
  [ "$n" -ge "$N" ] && break
  kill -0 "$NODE_PID" || { tail -20 "$WORK/node.log"; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$NODE_PID/status")
awk -v n="$N" -v s="$start" -v e="$end" -v base="$base_rate" -v rss="$rss_kib" 'BEGIN {
  secs = e - s; rate = n / secs
  printf "sluice:   %d rows in %.2f s = %.0f rows/s\n", n, secs, rate
  printf "ratio sluice/baseline: %.2f\n", rate / base
  printf "node peak RSS: %.0f MiB\n", rss / 1024
}'
