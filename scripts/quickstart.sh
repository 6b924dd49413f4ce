#!/usr/bin/env bash
# The guide's quickstart on Sluice, from a fresh machine: builds Sluice, starts a real
# Kafka broker and a node on loopback, loads 200,000 GitHub events into topic `github`,
# creates the guide's tables, and shows ingestion up to 200,000 rows.
#   scripts/quickstart.sh         run it (again: it starts from a clean slate each time)
#   scripts/quickstart.sh stop    stop the node and the broker
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

EVENTS="${EVENTS:-200000}"
QS_DIR="$SLUICE_CACHE/quickstart"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-quickstart"
export SLUICE_HOST="http://127.0.0.1:${SLUICE_GRPC_PORT:-7070}"
BROKERS="127.0.0.1:$KAFKA_PORT"
SLUICE="$CARGO_TARGET_DIR/debug/sluice"

stop_node() {
  if [ -f "$QS_DIR/node.pid" ]; then
    kill -TERM "$(cat "$QS_DIR/node.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$(cat "$QS_DIR/node.pid")" 2>/dev/null || break; sleep 0.2; done
    rm -f "$QS_DIR/node.pid"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop_node
  bash scripts/kafka.sh stop
  exit 0
fi

ensure_tools
echo "== building sluice (the first build takes about 10 minutes)"
cargo build -p sluice --quiet

echo "== starting Kafka on $BROKERS (a clean broker each run)"
stop_node
bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
bash scripts/kafka.sh start

echo "== starting a Sluice node on ${SLUICE_HOST#http://}"
rm -rf "$QS_DIR" && mkdir -p "$QS_DIR"
nohup "$SLUICE" node --bootstrap --node-id quickstart --data-dir "$QS_DIR/data" \
  --grpc-addr "${SLUICE_HOST#http://}" >"$QS_DIR/node.out" 2>"$QS_DIR/node.log" &
echo $! >"$QS_DIR/node.pid"
for _ in $(seq 1 100); do [ -s "$QS_DIR/data/grpc-address" ] && break; sleep 0.2; done
[ -s "$QS_DIR/data/grpc-address" ] || { tail -20 "$QS_DIR/node.log"; exit 1; }

echo "== loading $EVENTS GitHub events into topic github (3 partitions)"
"$SLUICE" produce --brokers "$BROKERS" --topic github --partitions 3 --count "$EVENTS"

echo "== creating the guide's tables"
sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/github/" -e "s/\${KAFKA_GROUP}/clickhouse/" \
  scripts/sql/quickstart.sql >"$QS_DIR/quickstart.sql"
"$SLUICE" sql -f "$QS_DIR/quickstart.sql"

echo "== ingesting"
"$SLUICE" progress github --expect "$EVENTS"
"$SLUICE" sql "SELECT count() FROM github"
"$SLUICE" sql "SELECT actor_login, event_type, created_at FROM github LIMIT 10"
"$SLUICE" sql "SELECT \`table\`, assignments.partition_id, assignments.current_offset, num_messages_read, num_commits FROM system.kafka_consumers ORDER BY assignments.partition_id ASC"
cat <<MSG

Sluice is running: try  $SLUICE sql "SELECT event_type, count() FROM github GROUP BY event_type ORDER BY count() DESC"
Stop everything with:   scripts/quickstart.sh stop
MSG
