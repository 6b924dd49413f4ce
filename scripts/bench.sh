#!/usr/bin/env bash
# Ingestion benchmark. In one run, on one broker and one topic:
#   (a) baseline: a plain librdkafka consumer drains the topic and discards it (3 times; the
#       fastest counts);
#   (b) Sluice, one node: ingests the topic through the guide's tables until count() = N;
#   (c) Sluice, three nodes, three replicas: the same, until every replica holds N rows.
# Prints the rates, the ratios against (a), the nodes' peak RSS and their CPU seconds.
# Release build.
#   scripts/bench.sh [N]        (default 1,000,000 events)
# BENCH_LOG sets the nodes' log filter (default warn); BENCH_KEEP=1 keeps their logs;
# BENCH_PROFILE names another cargo build profile to measure (default release).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"
ensure_tools

N="${1:-${BENCH_EVENTS:-1000000}}"
export KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}"
export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-bench"
BROKERS="127.0.0.1:$KAFKA_PORT"
WORK="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
PROFILE="${BENCH_PROFILE:-release}"
# cargo puts the dev profile's output in debug/, every other profile's in a folder of its name.
SLUICE="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/sluice"
PIDS=()
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_nodes
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "node logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== $PROFILE build"
cargo build --profile "$PROFILE" -p sluice --quiet

echo "== Kafka on $BROKERS; producing $N events to topic bench (3 partitions)"
bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
bash scripts/kafka.sh start >/dev/null
"$SLUICE" produce --brokers "$BROKERS" --topic bench --partitions 3 --count "$N" --quiet

# A drain takes a second or two, so one run of it varied from 370 k to 755 k msg/s here; the
# fastest of three is steadier, and a ratio against it errs low, not high.
echo "== (a) baseline: librdkafka consumer, discarding; the fastest of 3 runs counts"
base_rate=0
for _ in 1 2 3; do
  line=$("$SLUICE" baseline --brokers "$BROKERS" --topic bench --count "$N")
  echo "   $line"
  rate=$(sed -E 's/.*= ([0-9]+) msg\/s/\1/' <<<"$line")
  if [ "$rate" -gt "$base_rate" ]; then base_rate=$rate; base_line="$line (fastest of 3)"; fi
done

# start_node NAME PORT EXTRA_ARGS...
start_node() {
  local name=$1 port=$2; shift 2
  "$SLUICE" node --node-id "$name" --data-dir "$WORK/$name" --grpc-addr "127.0.0.1:$port" \
    --log "${BENCH_LOG:-warn}" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/$name/grpc-address" ] && break; sleep 0.1; done
}

# ingest GROUP HOSTS...: creates the guide's tables through the first host, waits until every
# host counts N rows, prints seconds taken.
ingest() {
  local group=$1; shift
  sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/bench/" -e "s/\${KAFKA_GROUP}/$group/" \
    scripts/sql/quickstart.sql >"$WORK/ddl-$group.sql"
  local start end n
  start=$(date +%s.%N)
  "$SLUICE" sql --host "$1" -f "$WORK/ddl-$group.sql" >/dev/null
  for host in "$@"; do
    while :; do
      n=$("$SLUICE" sql --host "$host" --format tsv "SELECT count() FROM github")
      [ "$n" -ge "$N" ] && break
      for pid in "${PIDS[@]}"; do kill -0 "$pid" || { tail -20 "$WORK"/*.log; exit 1; }; done
      sleep 0.2
    done
  done
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
}

peak_rss_mib() {
  local max=0 kib
  for pid in "${PIDS[@]}"; do
    kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    [ "$kib" -gt "$max" ] && max=$kib
  done
  echo $((max / 1024))
}

# CPU seconds (user + system) the nodes have used so far, all together: steadier than the
# rate when the machine is shared, and what a change to the ingest path moves.
cpu_secs() {
  local ticks=0 t
  for pid in "${PIDS[@]}"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    ticks=$((ticks + t))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'
}

report() {
  local label=$1 secs=$2 rss=$3 cpu=$4
  awk -v n="$N" -v s="$secs" -v base="$base_rate" -v rss="$rss" -v cpu="$cpu" -v label="$label" 'BEGIN {
    rate = n / s
    printf "%s: %d rows in %.2f s = %.0f rows/s; ratio to baseline %.2f; peak RSS per node %d MiB; node CPU %.1f s\n", label, n, s, rate, rate / base, rss, cpu
  }'
}

echo "== (b) Sluice, one node"
start_node solo 27070 --bootstrap
secs=$(ingest bench-1 http://127.0.0.1:27070)
one=$(report "sluice 1 node" "$secs" "$(peak_rss_mib)" "$(cpu_secs)")
stop_nodes

echo "== (c) Sluice, three nodes, three replicas"
peers="127.0.0.1:27171,127.0.0.1:27172,127.0.0.1:27173"
for i in 1 2 3; do start_node "n$i" "2717$i" --peers "$peers"; done
"$SLUICE" init --host http://127.0.0.1:27171 >/dev/null
for _ in $(seq 1 150); do
  m=$("$SLUICE" sql --host http://127.0.0.1:27171 --format tsv "SELECT count() FROM system.replicas WHERE error = ''" 2>/dev/null || echo 0)
  [ "$m" = 3 ] && break
  sleep 0.2
done
secs=$(ingest bench-3 http://127.0.0.1:27171 http://127.0.0.1:27172 http://127.0.0.1:27173)
three=$(report "sluice 3 nodes, 3 replicas" "$secs" "$(peak_rss_mib)" "$(cpu_secs)")
stop_nodes

echo
echo "$base_line"
echo "$one"
echo "$three"
