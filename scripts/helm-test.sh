#!/usr/bin/env bash
# The Helm chart (helm/sluice) and the image (Dockerfile), checked without a Kubernetes
# cluster or a Docker engine:
#   1. helm lint and helm template for the default values and each set in helm/tests/values;
#      every rendered object validated against the Kubernetes OpenAPI schemas (strict);
#      unit assertions on the rendered YAML, each with a negative control (a broken copy of
#      the chart must make it fail); values.schema.json's rejections and their messages;
#   2. the Dockerfile against what the built binary links (ldd, dpkg);
#   3. the rendered StatefulSet and hook Jobs started as Kubernetes would start them, one
#      network namespace per pod, against a real Kafka with SASL_SSL (helm/tests/boot_test.py).
# Needs root (network namespaces), Go (to build helm once), Python 3 and the sluice binary
# (built here unless SLUICE_BIN names one). helm and a Python venv are cached in $SLUICE_CACHE.
# HELM_TEST_KAFKA_AUTH=ssl boots against Kafka over TLS without SASL (default: sasl_ssl), to
# tell a SASL problem from the rest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

HELM_VERSION=v3.22.0
HELM_DIR="$SLUICE_CACHE/helm-$HELM_VERSION"
HELM="$HELM_DIR/bin/helm"
VENV="$SLUICE_CACHE/helm-test-venv"
PY_PACKAGES="kubernetes-validate==1.37.0 pyyaml==6.0.3 grpcio==1.85.1 grpcio-health-checking==1.85.1"
started=$SECONDS

if [ ! -x "$HELM" ]; then
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi
  command -v go >/dev/null 2>&1 || { echo "helm-test: Go is needed once to build helm" >&2; exit 1; }
  echo "== installing helm $HELM_VERSION (go install, a few minutes once)"
  mkdir -p "$HELM_DIR"
  tmp="$(mktemp -d "$HELM_DIR/.install.XXXXXX")"
  GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mkdir -p "$HELM_DIR/bin" && mv "$tmp/helm" "$HELM" && rm -rf "$tmp"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "helm-test: Python 3.11 or newer is needed (tomllib)" >&2; exit 1; }
if [ "$(cat "$VENV/.packages" 2>/dev/null)" != "$PY_PACKAGES" ]; then
  echo "== Python venv for the chart checks"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # a list of requirement specifiers
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PY_PACKAGES
  echo "$PY_PACKAGES" >"$VENV/.packages"
fi
if [ -z "${SLUICE_BIN:-}" ]; then
  cargo build -p sluice --quiet
  SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
fi
# A copy: a build in the shared target folder may replace the binary while the test runs.
work="$(mktemp -d)"
cp "$SLUICE_BIN" "$work/sluice"

# Network namespaces of this run, and whatever runs in them, go on exit, even on failure.
prefix="slh$$"
cleanup() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== chart: lint, template, Kubernetes schemas, assertions, schema rejections ($("$HELM" version --short))"
"$VENV/bin/python" helm/tests/check_chart.py --helm "$HELM" --negative-controls
echo "== image: Dockerfile against what sluice links"
"$VENV/bin/python" helm/tests/check_image.py --sluice "$work/sluice" --negative-controls
echo "== chart booted: pods in network namespaces, hook Jobs, a real Kafka (${HELM_TEST_KAFKA_AUTH:-sasl_ssl})"
"$VENV/bin/python" helm/tests/boot_test.py --helm "$HELM" --sluice "$work/sluice" \
  --python "$VENV/bin/python" --prefix "$prefix" --kafka-auth "${HELM_TEST_KAFKA_AUTH:-sasl_ssl}"
echo "helm-test: done in $((SECONDS - started))s"
