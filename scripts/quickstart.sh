#!/usr/bin/env bash
# The guide's quickstart on Sluice, from a fresh machine: builds Sluice, starts a real
# Kafka broker and a 3-node Sluice cluster on loopback, loads 200,000 GitHub events into
# topic `github`, creates the guide's tables, and shows ingestion up to 200,000 rows.
#   scripts/quickstart.sh         run it (again: it starts from a clean slate each time)
#   scripts/quickstart.sh stop    stop the cluster and the broker
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

EVENTS="${EVENTS:-200000}"
QS_DIR="$SLUICE_CACHE/quickstart"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-quickstart"
export SLUICE_HOST="http://127.0.0.1:${DEV_PORT:-7070}"
BROKERS="127.0.0.1:$KAFKA_PORT"
SLUICE="$CARGO_TARGET_DIR/debug/sluice"

if [ "${1:-}" = "stop" ]; then
  bash scripts/dev-cluster.sh stop
  bash scripts/kafka.sh stop
  exit 0
fi

ensure_tools
echo "== building sluice (the first build takes about 10 minutes)"
cargo build -p sluice --quiet

echo "== starting Kafka on $BROKERS (a clean broker each run)"
bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
bash scripts/kafka.sh start

echo "== starting a 3-node Sluice cluster"
bash scripts/dev-cluster.sh start --wipe

echo "== loading $EVENTS GitHub events into topic github (3 partitions)"
"$SLUICE" produce --brokers "$BROKERS" --topic github --partitions 3 --count "$EVENTS"

echo "== creating the guide's tables"
mkdir -p "$QS_DIR"
sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/github/" -e "s/\${KAFKA_GROUP}/clickhouse/" \
  scripts/sql/quickstart.sql >"$QS_DIR/quickstart.sql"
"$SLUICE" sql -f "$QS_DIR/quickstart.sql"

echo "== ingesting"
"$SLUICE" progress github --expect "$EVENTS"
"$SLUICE" sql "SELECT count() FROM github"
"$SLUICE" sql "SELECT actor_login, event_type, created_at FROM github LIMIT 10"
"$SLUICE" sql "SELECT node, \`table\`, assignments.partition_id, assignments.current_offset, num_messages_read FROM system.kafka_consumers ORDER BY assignments.partition_id ASC"
"$SLUICE" status
cat <<MSG

Sluice is running on three nodes (7070-7072); every node holds every row:
  $SLUICE sql --host http://127.0.0.1:7072 "SELECT event_type, count() FROM github GROUP BY event_type ORDER BY count() DESC"
Stop everything with:   scripts/quickstart.sh stop
MSG
