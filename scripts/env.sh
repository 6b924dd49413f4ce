# Shared settings for Sluice's scripts; sourced, not run.
# Builds go to a target folder outside the work tree so clean clones reuse compiled crates.
export SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}"
SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SLUICE_ROOT

# Installs the system tools the scripts use when a machine lacks them (Debian packages):
# Java runs Kafka, Maven resolves it, a C toolchain and OpenSSL's headers build librdkafka
# (with TLS and SCRAM), iproute2 and iptables make the network partitions of the chaos
# tests, fiu-utils their failing fsync. Rust itself comes from the machine's rustup (Debian's rustc is too old).
ensure_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v awk >/dev/null 2>&1 || missing+=(gawk)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v fiu-run >/dev/null 2>&1 || missing+=(fiu-utils)
  command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # The functions' oracle test runs the same queries through ClickHouse itself (chDB),
  # with python3 or, where pip may not install into it, a venv in Sluice's cache.
  local chdb_venv="${SLUICE_CACHE:-$HOME/.cache/sluice}/chdb-venv"
  if ! python3 -c 'import chdb' >/dev/null 2>&1 && ! "$chdb_venv/bin/python" -c 'import chdb' >/dev/null 2>&1; then
    echo "installing: chdb (pip)" >&2
    python3 -m pip install --quiet chdb==4.4.0 >/dev/null 2>&1 \
      || { python3 -m venv "$chdb_venv" && "$chdb_venv/bin/python" -m pip install --quiet chdb==4.4.0; }
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    return 1
  fi
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null
  fi
}
