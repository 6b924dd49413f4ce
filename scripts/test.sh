#!/usr/bin/env bash
# Every test of Sluice, from a fresh machine: installs what is missing, checks formatting
# and lints, builds, starts a real Kafka broker for the tests, and runs the whole suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"
ensure_tools

export SLUICE_TEST_KAFKA_PORT="${SLUICE_TEST_KAFKA_PORT:-19092}"
kafka_env=(env KAFKA_PORT="$SLUICE_TEST_KAFKA_PORT" SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-test-$SLUICE_TEST_KAFKA_PORT")
cleanup() { "${kafka_env[@]}" bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --all-targets --quiet

echo "== Kafka for the tests (port $SLUICE_TEST_KAFKA_PORT)"
"${kafka_env[@]}" bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
"${kafka_env[@]}" bash scripts/kafka.sh start

echo "== tests"
# Cluster tests start several processes each; two at a time fit this machine.
cargo test --workspace -- --test-threads="${SLUICE_TEST_THREADS:-2}"
bash scripts/helm-test.sh
