#!/usr/bin/env bash
# Ingestion benchmark: what a row costs and how soon it is visible. In one run, on one
# broker and one topic of N GitHub events of the guide's schema (3 partitions):
#   - a plain librdkafka drain (`sluice baseline`, best of 3): the floor for fetching;
#   - decode alone (`sluice bench-decode`): JSONEachRow -> Arrow of the same messages, cut
#     into blocks as a consumer cuts them, one thread, median of 3;
#   - chDB (ClickHouse in-process) inserting the same rows, dumped to a JSONEachRow file,
#     into a MergeTree table of the guide's schema and ORDER BY, one thread;
#   - Sluice, one node, one replica: the guide's DDL, until count() = N;
#   - produce -> visible latency on that node (`sluice bench-latency`), the guide's DDL with
#     default settings on a one-partition topic: 100 rows/s, then 40% of the one-node rate;
#   - Sluice, three nodes, a three-replica table, per node (the table's Raft leader apart).
# CPU is user + system of the processes (for the nodes, /proc/PID/stat from CREATE until
# every node counts N), per row and per JSON payload byte; the nodes' CPU per thread name
# splits the background (part-merger) from the ingest path, at the end of ingest and again
# once the nodes are idle. Prints one table, the machine, and each node's peak RSS (VmHWM).
#   scripts/bench.sh [N]        (default 1,000,000 events; at least 1,000)
# BENCH_LOG sets the nodes' log filter (default warn); BENCH_KEEP=1 keeps their logs;
# BENCH_PROFILE names another cargo build profile to measure (default release);
# BENCH_LAT_LOW_SECS / BENCH_LAT_HIGH_SECS (25 / 20) how long each latency rate lasts,
# BENCH_LAT_HIGH_FRACTION (0.4) the high rate as a fraction of the one-node rate (that rate
# is over three partitions; the latency topic has one, whose one consumer shares the two
# cores with the paced producer: at 0.75 it fell behind, measuring a growing backlog);
# BENCH_PERF=1 records the one-node ingest with perf and prints the top symbols.
# The events mode uses its own broker (port 29092, BENCH_KAFKA_PORT) and nodes on
# 127.0.0.1:27070 and 27171-27173.
#
# Scale mode: a long load into three nodes with three replicas, then queries, a Raft
# snapshot transfer and chDB (ClickHouse in-process) on the same rows, side by side.
#   scripts/bench.sh --scale [SECONDS] [--events MAX] [--batch B]
# (defaults: 600 s, MAX 10,000,000 or BENCH_SCALE_EVENTS, B 500,000 or BENCH_SCALE_BATCH).
#   1. A producer (`sluice produce`, batches of B events) keeps topic bench fed for about
#      SECONDS, paced to reach MAX at the end and never more than half a batch ahead of the
#      table, so the run holds as many rows as fit; every tenth of the run prints the rows
#      per node, the rate over that tenth, each node's RSS and peak RSS, the parts of its
#      replica (system.raft_groups) and its data dir's bytes.
#   2. Once every node holds every row: disk bytes per row per node against the JSON bytes
#      per row, and three queries on n1 (best of 3 each, with n1's peak RSS while they run,
#      sampled every 50 ms).
#   3. Snapshot transfer: a follower of the table's group is stopped, its data dir wiped,
#      and it is started again under the same --node-id; the time until its own replica
#      holds every row, and the peak RSS of the leader (sender) and of it (receiver).
#   4. The topic is dumped to a JSONEachRow file (Kafka's console consumer) and loaded into
#      chDB with one thread by scripts/bench_chdb.py (which installs chdb if missing).
# BENCH_SCALE_BLOCK_ROWS adds kafka_max_block_size to the guide's DDL (more, smaller Raft
# entries, so that a run short of 15 M rows still makes the table's group snapshot).
# The scale mode uses its own broker (port 29192, BENCH_KAFKA_PORT) and nodes on
# 127.0.0.1:27271-27273, so it can run beside the other modes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SLUICE_ROOT"

MODE=events
if [ "${1:-}" = --scale ]; then
  MODE=scale
  shift
  SCALE_SECS=600
  if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then SCALE_SECS=$1; shift; fi
  SCALE_MAX="${BENCH_SCALE_EVENTS:-10000000}"
  SCALE_BATCH="${BENCH_SCALE_BATCH:-500000}"
  scale_usage() {
    echo "usage: scripts/bench.sh --scale [SECONDS] [--events MAX] [--batch B]" >&2
    exit 2
  }
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || scale_usage
    case "$1" in
      --events) SCALE_MAX=$2 ;;
      --batch) SCALE_BATCH=$2 ;;
      *) scale_usage ;;
    esac
    shift 2
  done
  for v in "$SCALE_SECS" "$SCALE_MAX" "$SCALE_BATCH"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ]; then
      echo "bench.sh --scale: SECONDS, --events and --batch take positive integers (got '$v')" >&2
      exit 2
    fi
  done
  [ "$SCALE_SECS" -ge 10 ] || { echo "bench.sh --scale: run for at least 10 s" >&2; exit 2; }
  [ "$SCALE_BATCH" -le "$SCALE_MAX" ] || SCALE_BATCH=$SCALE_MAX
fi

ensure_tools

N="${1:-${BENCH_EVENTS:-1000000}}"
if [ "$MODE" = scale ]; then
  export KAFKA_PORT="${BENCH_KAFKA_PORT:-29192}"
  export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-bench-scale"
  # The state machine's info lines say when a node builds or installs a Raft snapshot.
  LOG_FILTER="${BENCH_LOG:-warn,sluice::raft::state_machine=info}"
else
  export KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}"
  export SLUICE_KAFKA_DIR="$SLUICE_CACHE/kafka-bench"
  LOG_FILTER="${BENCH_LOG:-warn}"
fi
BROKERS="127.0.0.1:$KAFKA_PORT"
WORK="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
PROFILE="${BENCH_PROFILE:-release}"
# cargo puts the dev profile's output in debug/, every other profile's in a folder of its name.
BUILT="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/sluice"
# The run uses its own copy: the target dir may be shared, and another build replacing the
# binary must not change the program of a node restarted or a query run later in the run.
SLUICE="$WORK/sluice"
PIDS=()
BG_PIDS=() # producers, samplers and dumps of the scale mode
declare -A NODE_PID=()
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_nodes
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "node logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== $PROFILE build"
cargo build --profile "$PROFILE" -p sluice --quiet
cp "$BUILT" "$SLUICE"

start_kafka() {
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  bash scripts/kafka.sh start >/dev/null
}

# start_node NAME PORT EXTRA_ARGS...
start_node() {
  local name=$1 port=$2; shift 2
  "$SLUICE" node --node-id "$name" --data-dir "$WORK/$name" --grpc-addr "127.0.0.1:$port" \
    --log "$LOG_FILTER" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  NODE_PID[$name]=$!
  for _ in $(seq 1 100); do [ -s "$WORK/$name/grpc-address" ] && break; sleep 0.1; done
}

# form_cluster BASE_PORT: nodes n1..n3 on BASE_PORT+1..+3, each with all three as peers;
# forms the cluster through n1 and waits (up to 30 s) until n1 lists three healthy members.
form_cluster() {
  local base=$1 i m
  local peers="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
  for i in 1 2 3; do start_node "n$i" "$((base + i))" --peers "$peers"; done
  "$SLUICE" init --host "http://127.0.0.1:$((base + 1))" >/dev/null
  for _ in $(seq 1 150); do
    m=$("$SLUICE" sql --host "http://127.0.0.1:$((base + 1))" --format tsv "SELECT count() FROM system.replicas WHERE error = ''" 2>/dev/null || echo 0)
    [ "$m" = 3 ] && break
    sleep 0.2
  done
}

# write_ddl GROUP: the guide's DDL for topic bench and consumer group GROUP, in $WORK.
write_ddl() {
  sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/bench/" -e "s/\${KAFKA_GROUP}/$1/" \
    scripts/sql/quickstart.sql >"$WORK/ddl-$1.sql"
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

# ------------------------------------------------------------------------ scale mode ---

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

# now_us: microseconds since the epoch, without a fork.
now_us() { echo "${EPOCHREALTIME/./}"; }

# proc_kib PID FIELD: a /proc/PID/status field in KiB (VmRSS, VmHWM); 0 if the process is gone.
proc_kib() {
  local k v _
  if { while read -r k v _; do
    [ "$k" = "$2:" ] && { echo "$v"; return 0; }
  done; } 2>/dev/null <"/proc/$1/status"; then :; fi
  echo 0
}

# alive PID: the process exists and is not a zombie (kill -0 succeeds on a zombie).
alive() {
  local k v _
  { while read -r k v _; do
    [ "$k" = State: ] && { [ "$v" != Z ]; return; }
  done; } 2>/dev/null <"/proc/$1/status"
  return 1
}

# sqlq HOST SQL: one statement, TSV out; fails (its error in $WORK/sql.err) after 120 s.
sqlq() {
  timeout "${BENCH_SQL_TIMEOUT:-120}" "$SLUICE" sql --host "$1" --format tsv "$2" 2>>"$WORK/sql.err"
}

# rss_sampler OUT PID...: until killed, samples each PID's VmRSS every 50 ms and keeps the
# maxima (KiB, in the order of the PIDs) in OUT.
rss_sampler() {
  local out=$1; shift
  local pids=("$@") max=() i k v _
  for i in "${!pids[@]}"; do max[i]=0; done
  trap 'exit 0' TERM
  while :; do
    for i in "${!pids[@]}"; do
      { while read -r k v _; do
        if [ "$k" = VmRSS: ]; then
          [ "$v" -gt "${max[i]}" ] && max[i]=$v
          break
        fi
      done; } 2>/dev/null <"/proc/${pids[i]}/status" || true
    done
    echo "${max[*]}" >"$out"
    sleep 0.05
  done
}
# forget_bg PID: PID has been waited for; cleanup must not signal it (the number may be reused).
forget_bg() {
  local keep=() pid
  for pid in "${BG_PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  BG_PIDS=("${keep[@]}")
}

SAMPLER=""
SAMPLED=""
start_sampler() {
  rss_sampler "$@" &
  SAMPLER=$!
  BG_PIDS+=("$SAMPLER")
}
# stop_sampler OUT: sets SAMPLED to the maxima.
stop_sampler() {
  kill -TERM "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  forget_bg "$SAMPLER"
  SAMPLER=""
  SAMPLED=$(cat "$1" 2>/dev/null) || SAMPLED=0
}

# timed_query HOST PID SQL: runs SQL once (its output in $WORK/query.out); sets Q_US to the
# client's wall time in microseconds and Q_KIB to PID's peak VmRSS while it ran.
timed_query() {
  local start end
  start_sampler "$WORK/rss.query" "$2"
  start=$(now_us)
  if ! sqlq "$1" "$3" >"$WORK/query.out"; then
    stop_sampler "$WORK/rss.query"
    tail -5 "$WORK/sql.err" >&2
    die "query failed on $1: $3"
  fi
  end=$(now_us)
  stop_sampler "$WORK/rss.query"
  Q_US=$((end - start))
  Q_KIB=${SAMPLED:-0}
}

# best_of_3 HOST PID SQL: sets BEST_US to the fastest of three runs, BEST_KIB to the
# highest peak RSS of the three.
best_of_3() {
  BEST_US=0
  BEST_KIB=0
  for _ in 1 2 3; do
    timed_query "$@"
    if [ "$BEST_US" = 0 ] || [ "$Q_US" -lt "$BEST_US" ]; then BEST_US=$Q_US; fi
    if [ "$Q_KIB" -gt "$BEST_KIB" ]; then BEST_KIB=$Q_KIB; fi
  done
}

# count_rows HOST: count() of github there, or ? when the node does not answer.
count_rows() {
  local n
  n=$(sqlq "$1" "SELECT count() FROM github") || n=""
  [[ $n =~ ^[0-9]+$ ]] && echo "$n" || echo "?"
}

# dir_bytes DIR: bytes under DIR (du -sb; files may vanish while it runs).
dir_bytes() {
  local b
  b=$(du -sb "$1" 2>/dev/null | awk '{print $1}') || true
  echo "${b:-0}"
}

# table_col HOST COLUMN: COLUMN of github in system.tables, or n/a without that column.
table_col() {
  local v
  v=$(sqlq "$1" "SELECT $2 FROM system.raft_groups WHERE \"table\" = 'github'") || v=""
  [ -n "$v" ] && echo "$v" || echo "?"
}

# row LABEL SLUICE CHDB: a line of the final table.
row() { printf '%-26s %-56s %s\n' "$@"; }

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

check_nodes_alive() {
  local name
  for name in "${NAMES[@]}"; do
    if ! alive "${NODE_PID[$name]}"; then
      echo "node $name (pid ${NODE_PID[$name]}) exited; the end of its log:" >&2
      tail -20 "$WORK/$name.log" >&2
      die "node $name died"
    fi
  done
}

# The line printed every tenth of the run.
progress_line() {
  local t=$1 produced=$2 i name pid c rows="" rss="" parts="" disk="" min=""
  for i in "${!NAMES[@]}"; do
    name=${NAMES[i]}
    pid=${NODE_PID[$name]}
    c=$(count_rows "${HOSTS[i]}")
    rows+=" $c"
    if [ "$c" != "?" ] && { [ -z "$min" ] || [ "$c" -lt "$min" ]; }; then min=$c; fi
    rss+=" $(($(proc_kib "$pid" VmRSS) / 1024))/$(($(proc_kib "$pid" VmHWM) / 1024))"
    parts+=" $(table_col "${HOSTS[i]}" parts)"
    disk+=" $(mib "$(dir_bytes "$WORK/$name")")"
  done
  min=${min:-0}
  local rate
  rate=$(awk -v a="$LAST_ROWS" -v b="$min" -v s="$LAST_T" -v e="$t" \
    'BEGIN { printf "%.0f", (e > s) ? (b - a) / ((e - s) / 1e6) : 0 }')
  LAST_ROWS=$min
  LAST_T=$t
  printf '%7.1f s  produced %9d  rows%s  %7s rows/s  RSS/peak MiB%s  parts%s  disk MiB%s\n' \
    "$(awk -v t="$t" -v s="$T0" 'BEGIN { print (t - s) / 1e6 }')" "$produced" "$rows" "$rate" \
    "$rss" "$parts" "$disk"
}

scale_mode() {
  NAMES=(n1 n2 n3)
  HOSTS=(http://127.0.0.1:27271 http://127.0.0.1:27272 http://127.0.0.1:27273)
  local i name

  echo "== scale: Kafka on $BROKERS; 3 nodes, 3 replicas; up to $SCALE_MAX events over ${SCALE_SECS} s in batches of $SCALE_BATCH"
  start_kafka
  bash scripts/kafka.sh topic-create bench 3 >/dev/null
  form_cluster 27270
  local members
  members=$(sqlq "${HOSTS[0]}" "SELECT count() FROM system.replicas WHERE error = ''") || members=0
  [ "$members" = 3 ] || die "the cluster did not form (n1 sees ${members:-0} healthy members); logs in $WORK"
  write_ddl bench-scale
  # Smaller blocks make more Raft entries: a table's group snapshots every 2000 entries, and
  # the guide's 4 MiB blocks (about 7,500 events) take 15 M rows to get there.
  if [ -n "${BENCH_SCALE_BLOCK_ROWS:-}" ]; then
    [[ $BENCH_SCALE_BLOCK_ROWS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SCALE_BLOCK_ROWS takes a positive integer"
    sed -i "s/kafka_num_consumers = 1;/kafka_num_consumers = 1, kafka_max_block_size = $BENCH_SCALE_BLOCK_ROWS;/" \
      "$WORK/ddl-bench-scale.sql"
    grep -q kafka_max_block_size "$WORK/ddl-bench-scale.sql" || die "could not set kafka_max_block_size in the DDL"
    echo "   kafka_max_block_size = $BENCH_SCALE_BLOCK_ROWS (BENCH_SCALE_BLOCK_ROWS)"
  fi
  "$SLUICE" sql --host "${HOSTS[0]}" -f "$WORK/ddl-bench-scale.sql" >/dev/null

  # -- 1. the load --
  local secs_us=$((SCALE_SECS * 1000000)) tick_us=$((SCALE_SECS * 100000))
  local tail_us=$((SCALE_SECS > 300 ? SCALE_SECS * 1000000 : 300000000))
  local produced=0 inflight=0 batches=0 prod_pid="" t e rows rc all
  T0=$(now_us)
  LAST_T=$T0
  LAST_ROWS=0
  local next_tick=$((T0 + tick_us))
  echo "   each line: seconds since CREATE; events produced (with the batch in flight); count() on n1 n2 n3;"
  echo "   rows/s since the line before (the lowest count); RSS now/peak, parts and data dir MiB of n1 n2 n3"
  while :; do
    t=$(now_us)
    e=$((t - T0))
    check_nodes_alive
    if [ -n "$prod_pid" ] && [ -s "$WORK/produce.rc" ]; then
      rc=$(cat "$WORK/produce.rc")
      wait "$prod_pid" 2>/dev/null || true
      forget_bg "$prod_pid"
      [ "$rc" = 0 ] || { tail -5 "$WORK/produce.log" >&2; die "sluice produce failed (exit $rc)"; }
      produced=$((produced + inflight))
      inflight=0
      prod_pid=""
    fi
    rows=$(count_rows "${HOSTS[0]}")
    # The next batch: while the run lasts, once the pace allows it (MAX spread over the
    # run), and once the table is within half a batch of what was produced.
    if [ -z "$prod_pid" ] && [ "$produced" -lt "$SCALE_MAX" ] && [ "$e" -lt "$secs_us" ] &&
      [ "$rows" != "?" ] && [ $((produced - rows)) -le $((SCALE_BATCH / 2)) ] &&
      [ "$e" -ge $((batches * SCALE_BATCH * secs_us / SCALE_MAX)) ]; then
      inflight=$((SCALE_MAX - produced < SCALE_BATCH ? SCALE_MAX - produced : SCALE_BATCH))
      rm -f "$WORK/produce.rc"
      (
        rc=0
        "$SLUICE" produce --brokers "$BROKERS" --topic bench --partitions 3 --count "$inflight" \
          --start-index "$produced" --quiet >>"$WORK/produce.log" 2>&1 || rc=$?
        echo "$rc" >"$WORK/produce.rc"
      ) &
      prod_pid=$!
      BG_PIDS+=("$prod_pid")
      batches=$((batches + 1))
    fi
    if [ "$t" -ge "$next_tick" ]; then
      progress_line "$t" "$((produced + inflight))"
      next_tick=$((next_tick + tick_us))
    fi
    # Done once producing has stopped and every node holds every row.
    if [ -z "$prod_pid" ] && { [ "$e" -ge "$secs_us" ] || [ "$produced" -ge "$SCALE_MAX" ]; } &&
      [ "$rows" = "$produced" ]; then
      all=1
      for i in 1 2; do [ "$(count_rows "${HOSTS[i]}")" = "$produced" ] || all=0; done
      [ "$all" = 1 ] && break
    fi
    if [ "$e" -ge $((secs_us + tail_us)) ]; then
      progress_line "$(now_us)" "$((produced + inflight))"
      die "the nodes did not reach $produced rows within $(((secs_us + tail_us) / 1000000)) s"
    fi
    sleep 1
  done
  local t_end load_secs
  t_end=$(now_us)
  load_secs=$(awk -v a="$T0" -v b="$t_end" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
  progress_line "$t_end" "$produced"
  local load_cpu
  load_cpu=$(cpu_secs)
  echo "   every node holds $produced rows after $load_secs s ($batches batches); node CPU ${load_cpu} s"
  [ "$produced" -gt 0 ] || die "nothing was produced"
  N=$produced

  # -- 2. disk and queries --
  local kafka_bytes=0 disk=() peak=() parts=() ondisk=()
  # The segments only: a partition's index files are preallocated (10 MiB each, sparse).
  kafka_bytes=$(find "$SLUICE_KAFKA_DIR"/data/bench-* -name '*.log' -printf '%s\n' 2>/dev/null |
    awk '{ s += $1 } END { print s + 0 }') || kafka_bytes=0
  local split sub
  for i in "${!NAMES[@]}"; do
    name=${NAMES[i]}
    disk[i]=$(dir_bytes "$WORK/$name")
    split=""
    for sub in "$WORK/$name"/*/; do
      sub=${sub%/}
      split+=", ${sub##*/} $(mib "$(dir_bytes "$sub")")"
    done
    echo "   $name's data dir: $(mib "${disk[i]}") MiB$split"
    peak[i]=$(($(proc_kib "${NODE_PID[$name]}" VmHWM) / 1024))
    parts[i]=$(table_col "${HOSTS[i]}" parts)
    ondisk[i]=$(table_col "${HOSTS[i]}" bytes_on_disk)
  done

  echo "== queries on n1 (its own replica), best of 3, n1's peak RSS sampled every 50 ms"
  local q_sql=(
    "SELECT event_type, count() FROM github GROUP BY event_type"
    "SELECT count() FROM github WHERE event_type = 'PushEvent'"
    "SELECT repo_name, count() FROM github GROUP BY repo_name ORDER BY count() DESC LIMIT 10"
  )
  local q_us=() q_kib=() push_count="" client_us n1_before
  n1_before=$(($(proc_kib "${NODE_PID[n1]}" VmRSS) / 1024))
  best_of_3 "${HOSTS[0]}" "${NODE_PID[n1]}" "SELECT 1"
  client_us=$BEST_US
  for i in "${!q_sql[@]}"; do
    best_of_3 "${HOSTS[0]}" "${NODE_PID[n1]}" "${q_sql[i]}"
    q_us[i]=$BEST_US
    q_kib[i]=$BEST_KIB
    if [ "$i" = 1 ]; then push_count=$(cat "$WORK/query.out"); fi
    printf '   %6.1f ms  peak RSS %5d MiB  %s\n' "$(awk -v u="$BEST_US" 'BEGIN { print u / 1000 }')" \
      "$((BEST_KIB / 1024))" "${q_sql[i]}"
  done
  printf '   (the client itself: SELECT 1 takes %.1f ms, included above; n1 held %d MiB before)\n' \
    "$(awk -v u="$client_us" 'BEGIN { print u / 1000 }')" "$n1_before"

  # -- 3. snapshot transfer --
  echo "== snapshot transfer: a follower of github's group stopped, wiped, restarted"
  local leader recv="" sender last_index
  leader=$(sqlq "${HOSTS[0]}" "SELECT leader FROM system.raft_groups WHERE table = 'github'") || leader=""
  for i in 2 1 0; do
    if [ "${NAMES[i]}" != "$leader" ]; then recv=$i; break; fi
  done
  sender=""
  for i in "${!NAMES[@]}"; do [ "${NAMES[i]}" = "$leader" ] && sender=$i; done
  [ -n "$sender" ] || die "github's group has no known leader (n1 says '$leader')"
  last_index=$(sqlq "${HOSTS[sender]}" "SELECT last_log_index FROM system.raft_groups WHERE table = 'github'") || last_index="?"
  local rname=${NAMES[recv]} sname=${NAMES[sender]} rpid
  rpid=${NODE_PID[$rname]}
  local s_before
  s_before=$(($(proc_kib "${NODE_PID[$sname]}" VmRSS) / 1024))
  echo "   leader (sender) $sname, log index $last_index, RSS $s_before MiB; receiver $rname"
  kill -TERM "$rpid"
  for _ in $(seq 1 600); do alive "$rpid" || break; sleep 0.1; done
  if alive "$rpid"; then
    echo "   $rname still runs 60 s after SIGTERM; SIGKILL"
    kill -KILL "$rpid" 2>/dev/null || true
  fi
  wait "$rpid" 2>/dev/null || true
  local keep=()
  for pid in "${PIDS[@]}"; do [ "$pid" = "$rpid" ] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
  mv "$WORK/$rname.log" "$WORK/$rname.before-wipe.log"
  rm -rf "${WORK:?}/$rname"
  local s_start s_end r snap_secs snap_peaks deadline
  s_start=$(now_us)
  start_node "$rname" "${HOSTS[recv]##*:}" --peers "127.0.0.1:27271,127.0.0.1:27272,127.0.0.1:27273"
  start_sampler "$WORK/rss.snapshot" "${NODE_PID[$sname]}" "${NODE_PID[$rname]}"
  deadline=$((s_start + tail_us))
  while :; do
    check_nodes_alive
    r=$(sqlq "${HOSTS[recv]}" "SELECT rows FROM system.raft_groups WHERE table = 'github'") || r=""
    [ "$r" = "$N" ] && break
    [ "$(now_us)" -lt "$deadline" ] || {
      stop_sampler "$WORK/rss.snapshot"
      die "$rname's replica holds ${r:-no} rows of $N after $((tail_us / 1000000)) s"
    }
    sleep 0.2
  done
  s_end=$(now_us)
  stop_sampler "$WORK/rss.snapshot"
  snap_peaks=$SAMPLED
  snap_secs=$(awk -v a="$s_start" -v b="$s_end" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
  r=$(count_rows "${HOSTS[recv]}")
  [ "$r" = "$N" ] || die "$rname's count() is $r after catching up, not $N"
  local installed how
  installed=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$rname.log" | grep 'installed a snapshot' |
    grep -o 'snapshot=[^ ]*' | sed 's/snapshot=//' || true)
  # A snapshot id is TERM-INDEX-BYTES; the table's is the large one, meta's is small.
  if [ -n "$installed" ]; then
    how="through Raft snapshots ($(tr '\n' ' ' <<<"$installed" | sed 's/ $//'): term-index-bytes)"
  else
    how="no snapshot installed: by log replay (a group snapshots every 2000 entries; github's log is at $last_index)"
  fi
  read -r s_kib r_kib <<<"$snap_peaks"
  echo "   $rname holds $N rows after $snap_secs s, $how"
  echo "   peak RSS while it caught up: sender $sname $((s_kib / 1024)) MiB ($s_before before), receiver $rname $((r_kib / 1024)) MiB"
  stop_nodes

  # -- 4. chDB on the same rows --
  echo "== chDB: the topic dumped to JSONEachRow, loaded with 1 thread"
  command -v python3 >/dev/null 2>&1 || {
    echo "installing: python3 python3-pip python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
  }
  local json="$WORK/events.json" lines json_bytes
  KAFKA_TOOL_OPTS="-Xmx1g -XX:+UseSerialGC" timeout 1800 bash scripts/kafka.sh console-consumer \
    --bootstrap-server "$BROKERS" --topic bench --from-beginning --max-messages "$N" \
    --timeout-ms 60000 >"$json" 2>"$WORK/dump.err" || true
  lines=$(wc -l <"$json")
  [ "$lines" = "$N" ] || { tail -5 "$WORK/dump.err" >&2; die "the dump holds $lines events, not $N"; }
  json_bytes=$(($(stat -c %s "$json") - lines))
  bash scripts/kafka.sh stop --wipe >/dev/null 2>&1 || true
  python3 scripts/bench_chdb.py --json "$json" --rows "$N" --dir "$WORK/chdb" --out "$WORK/chdb.tsv"
  rm -f "$json"
  declare -A CH=()
  while IFS=$'\t' read -r k v; do CH[$k]=$v; done <"$WORK/chdb.tsv"

  # -- the table --
  local jpr
  jpr=$(awk -v b="$json_bytes" -v n="$N" 'BEGIN { printf "%.1f", b / n }')
  echo
  echo "== Sluice $PROFILE (3 nodes, 3 replicas) and chDB ${CH[chdb_version]} (ClickHouse ${CH[clickhouse_version]}, 1 thread): $N rows"
  echo "   JSON: $jpr bytes/row (the dumped topic, without newlines); Kafka's log: $(awk -v b="$kafka_bytes" -v n="$N" 'BEGIN { printf "%.1f", b / n }') bytes/row (lz4 batches)"
  local sl="" pr="" dk=""
  row "" "Sluice (n1 n2 n3)" "chDB"
  for i in "${!NAMES[@]}"; do
    sl+="$(awk -v b="${disk[i]}" -v n="$N" 'BEGIN { printf "%.1f", b / n }') "
    pr+="$(awk -v b="${disk[i]}" -v j="$json_bytes" 'BEGIN { printf "%.3f", b / j }') "
    dk+="$(mib "${disk[i]}") "
  done
  row "disk MiB" "$dk(data dirs)" "$(mib "${CH[bytes_on_disk]}") (active parts)"
  row "disk bytes/row" "$sl" "$(awk -v b="${CH[bytes_on_disk]}" -v n="$N" 'BEGIN { printf "%.1f", b / n }')"
  row "disk / JSON" "$pr" "$(awk -v b="${CH[bytes_on_disk]}" -v j="$json_bytes" 'BEGIN { printf "%.3f", b / j }')"
  row "parts" "${parts[*]}" "${CH[parts]}"
  row "bytes_on_disk (system)" "${ondisk[*]}" ""
  row "load" "$(awk -v n="$N" -v s="$load_secs" -v c="$load_cpu" 'BEGIN { printf "%.0f rows/s from Kafka, paced (%.0f s; CPU %.0f s)", n / s, s, c }')" \
    "$(awk -v n="$N" -v s="${CH[load_secs]}" 'BEGIN { printf "%.0f rows/s from the file (%.1f s)", n / s, s }')"
  row "peak RSS MiB (load)" "${peak[*]}" "$((CH[load_peak_rss_kib] / 1024)) (the Python process)"
  local labels=("q1 GROUP BY event_type" "q2 count() PushEvent" "q3 top 10 repo_name")
  for i in 0 1 2; do
    row "${labels[i]}" \
      "$(awk -v u="${q_us[i]}" -v k="${q_kib[i]}" -v b="$n1_before" 'BEGIN { printf "%.1f ms, %d MiB (n1, %d before; with the client)", u / 1000, k / 1024, b }')" \
      "$(awk -v s="${CH["q$((i + 1))_secs"]}" -v k="${CH["q$((i + 1))_peak_rss_kib"]}" -v b="${CH[rss_before_queries_kib]}" 'BEGIN { printf "%.1f ms, %d MiB (%d before; in process)", s * 1000, k / 1024, b / 1024 }')"
  done
  row "q2's answer" "$push_count" "${CH[q2_result]:-?}"
  row "snapshot transfer" "$snap_secs s; peak RSS sender $((s_kib / 1024)) ($s_before before), receiver $((r_kib / 1024)) MiB" "-"
  echo "   snapshot transfer: $how"
}

if [ "$MODE" = scale ]; then
  scale_mode
  exit 0
fi

# ----------------------------------------------------------------------- events mode ---

# kv FILE KEY: the value of KEY in a key<TAB>value file the subcommands write.
kv() {
  local v
  v=$(awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$1" 2>/dev/null) || v=""
  [ -n "$v" ] || die "$1 has no $2"
  echo "$v"
}

# proc_ticks PID: the process's user + system CPU so far, in clock ticks (its exited
# threads included); 0 once it is gone.
proc_ticks() {
  local line
  line=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  # The fields after "(comm) ": state is the first, utime and stime the 12th and 13th.
  line=${line##*) }
  # shellcheck disable=SC2086
  set -- $line
  echo $((${12} + ${13}))
}

# thread_groups PID: "name ticks" per thread name of the process, the digits at a name's
# end dropped so that rdk:broker1 and rdk:broker2 count together.
thread_groups() {
  local f line comm
  for f in /proc/"$1"/task/*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    comm=${line#*(}
    comm=${comm%)*}
    comm=${comm// /_}
    line=${line##*) }
    # shellcheck disable=SC2086
    set -- $line
    echo "$comm $((${12} + ${13}))"
  done | awk '{ g = $1; sub(/[0-9]+$/, "", g); t[g] += $2 } END { for (g in t) print g, t[g] }' | sort
}

# cpu_snapshot NAME LABEL: node NAME's process and per-thread-name CPU now, kept as LABEL.
cpu_snapshot() {
  local pid=${NODE_PID[$1]}
  { echo "_process $(proc_ticks "$pid")"; thread_groups "$pid"; } >"$WORK/cpu.$1.$2"
}

# cpu_delta NAME FROM TO KEY: ticks of KEY (_process, or a thread name) between two
# snapshots of node NAME; "background" sums the part merger and any snapshot thread.
cpu_delta() {
  awk -v k="$4" '
    function want(g) { return k == "background" ? (g == "part-merger" || g ~ /snap/) : g == k }
    FNR == NR { if (want($1)) a += $2; next }
    want($1) { b += $2 }
    END { d = b - a; print (d > 0 ? d : 0) }' "$WORK/cpu.$1.$2" "$WORK/cpu.$1.$3"
}

# thread_line NAME FROM TO: the CPU seconds of node NAME's thread names between two
# snapshots, and of threads that ended in between (the process's rest).
thread_line() {
  awk -v hz="$HZ" '
    FNR == NR { a[$1] = $2; next }
    $1 == "_process" { p = $2 - a[$1]; next }
    { d = $2 - a[$1]; if (d > 0) { printf "%s %.2f  ", $1, d / hz; s += d } }
    END { if (p - s > 0) printf "(ended threads) %.2f", (p - s) / hz; print "" }' "$WORK/cpu.$1.$2" "$WORK/cpu.$1.$3"
}

# wait_idle NAME...: waits (up to 60 s) until the nodes together use under 5% of a core for
# three seconds in a row; prints how many seconds that took.
wait_idle() {
  local name before after quiet=0 waited=0
  while [ "$quiet" -lt 3 ] && [ "$waited" -lt 60 ]; do
    before=0
    for name in "$@"; do before=$((before + $(proc_ticks "${NODE_PID[$name]}"))); done
    sleep 1
    waited=$((waited + 1))
    after=0
    for name in "$@"; do after=$((after + $(proc_ticks "${NODE_PID[$name]}"))); done
    if [ $((after - before)) -le $((HZ / 20)) ]; then quiet=$((quiet + 1)); else quiet=0; fi
  done
  echo "$waited"
}

# ingest_rows DDL HOSTS...: runs DDL through the first host and waits until every host
# counts N rows; sets INGEST_SECS (from the DDL to the last host's N).
ingest_rows() {
  local ddl=$1; shift
  local start n host name deadline
  start=$(now_us)
  "$SLUICE" sql --host "$1" -f "$ddl" >/dev/null 2>>"$WORK/sql.err" || {
    tail -5 "$WORK/sql.err" >&2
    die "the DDL failed on $1"
  }
  deadline=$((start + ${BENCH_INGEST_TIMEOUT:-1800} * 1000000))
  for host in "$@"; do
    while :; do
      n=$(count_rows "$host")
      [ "$n" != "?" ] && [ "$n" -ge "$N" ] && break
      check_nodes_alive
      [ "$(now_us)" -lt "$deadline" ] || die "$host counts $n of $N rows after ${BENCH_INGEST_TIMEOUT:-1800} s"
      sleep 0.1
    done
  done
  INGEST_SECS=$(awk -v a="$start" -v b="$(now_us)" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
}

# Arithmetic for the table: ticks or nanoseconds to CPU-µs per row and ns per JSON byte.
us_per_row() { awk -v t="$1" -v hz="$HZ" -v n="$N" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'; }
ns_per_byte() { awk -v t="$1" -v hz="$HZ" -v b="$JSON_BYTES" 'BEGIN { printf "%.2f", t / hz * 1e9 / b }'; }
ns_us_per_row() { awk -v ns="$1" -v n="$N" 'BEGIN { printf "%.2f", ns / 1e3 / n }'; }
ns_ns_per_byte() { awk -v ns="$1" -v b="$JSON_BYTES" 'BEGIN { printf "%.2f", ns / b }'; }
rate_of() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
hwm_mib() { echo $(($(proc_kib "${NODE_PID[$1]}" VmHWM) / 1024)); }

TABLE=()
# trow CASE RATE CPU_US NS_BYTE RSS NOTE: a line of the final table.
trow() { TABLE+=("$(printf '%-40s %10s %11s %8s %9s  %s' "$@")"); }

# lat_ddl NAME TOPIC: the guide's DDL with its tables named NAME_queue, NAME, NAME_mv, for
# TOPIC, in $WORK/ddl-NAME.sql.
lat_ddl() {
  sed -e "s/\${KAFKA_BROKERS}/$BROKERS/" -e "s/\${KAFKA_TOPIC}/$2/" -e "s/\${KAFKA_GROUP}/$1/" \
    -e "s/\bgithub_queue\b/$1_queue/g" -e "s/\bgithub_mv\b/$1_mv/g" -e "s/\bgithub\b/$1/g" \
    scripts/sql/quickstart.sql >"$WORK/ddl-$1.sql"
  if grep -v '^--' "$WORK/ddl-$1.sql" | grep -q github; then die "could not rename the guide's tables for $1"; fi
}

# latency NAME RATE SECONDS HOST: a table set NAME on a new one-partition topic, then
# bench-latency into it; its results in $WORK/lat-NAME.tsv.
latency() {
  local name=$1 rate=$2 secs=$3 host=$4 topic="bench-$1" used
  bash scripts/kafka.sh topic-create "$topic" 1 >/dev/null || die "could not create topic $topic"
  lat_ddl "$name" "$topic"
  "$SLUICE" sql --host "$host" -f "$WORK/ddl-$name.sql" >/dev/null 2>>"$WORK/sql.err" || {
    tail -5 "$WORK/sql.err" >&2
    die "the DDL of $name failed"
  }
  # Producing starts once the table's consumer runs, so the first rows do not wait for it.
  for _ in $(seq 1 300); do
    used=$(sqlq "$host" "SELECT count() FROM system.kafka_consumers WHERE \"table\" = '${name}_queue' AND is_currently_used") || used=0
    [ "${used:-0}" -ge 1 ] 2>/dev/null && break
    sleep 0.1
  done
  [ "${used:-0}" -ge 1 ] 2>/dev/null || die "no consumer of ${name}_queue runs after 30 s"
  sleep 1
  "$SLUICE" bench-latency --host "$host" --brokers "$BROKERS" --topic "$topic" --table "$name" \
    --rate "$rate" --seconds "$secs" --stats "$WORK/lat-$name.tsv" | sed 's/^/   /' ||
    die "bench-latency failed ($name at $rate rows/s)"
  [ -s "$WORK/lat-$name.tsv" ] || die "bench-latency wrote no results for $name"
}

events_mode() {
  [[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1000 ] || die "N takes a whole number of events, at least 1000 (got '$N')"
  HZ=$(getconf CLK_TCK)
  local machine
  machine="$(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "== machine: $machine; $(date -u '+%Y-%m-%d %H:%M UTC')"

  echo "== Kafka on $BROKERS; producing $N events to topic bench (3 partitions)"
  start_kafka
  "$SLUICE" produce --brokers "$BROKERS" --topic bench --partitions 3 --count "$N" --quiet ||
    die "sluice produce failed"

  # -- the floor: a plain librdkafka drain, best of 3 (a drain lasts a second or two, so
  # one run varies a lot on a shared machine) --
  echo "== librdkafka drain (sluice baseline), 3 runs"
  local i best_cpu="" best_rate=0 r c
  for i in 1 2 3; do
    "$SLUICE" baseline --brokers "$BROKERS" --topic bench --count "$N" --stats "$WORK/base-$i.tsv" |
      sed 's/^/   /' || die "sluice baseline failed"
    c=$(kv "$WORK/base-$i.tsv" cpu_ns)
    r=$(awk -v n="$N" -v w="$(kv "$WORK/base-$i.tsv" wall_ns)" 'BEGIN { printf "%.0f", n / (w / 1e9) }')
    if [ -z "$best_cpu" ] || [ "$c" -lt "$best_cpu" ]; then best_cpu=$c; fi
    if [ "$r" -gt "$best_rate" ]; then best_rate=$r; fi
  done
  JSON_BYTES=$(kv "$WORK/base-1.tsv" json_bytes)
  [ "$JSON_BYTES" -gt 0 ] || die "the topic's payloads hold no bytes"
  trow "librdkafka drain (sluice baseline)" "$best_rate" "$(ns_us_per_row "$best_cpu")" \
    "$(ns_ns_per_byte "$best_cpu")" "-" "fetch only; best of 3"

  # -- decode alone, and the dump chDB loads --
  echo "== decode alone: JSONEachRow -> Arrow, blocks as a consumer cuts them, 1 thread"
  local json="$WORK/events.json"
  "$SLUICE" bench-decode --brokers "$BROKERS" --topic bench --count "$N" --runs 3 --dump "$json" \
    --stats "$WORK/decode.tsv" | sed 's/^/   /' || die "sluice bench-decode failed"
  [ "$(kv "$WORK/decode.tsv" json_bytes)" = "$JSON_BYTES" ] ||
    die "bench-decode read $(kv "$WORK/decode.tsv" json_bytes) payload bytes, the drain $JSON_BYTES"
  c=$(kv "$WORK/decode.tsv" cpu_ns)
  trow "decode alone (1 thread)" \
    "$(awk -v n="$N" -v w="$(kv "$WORK/decode.tsv" wall_ns)" 'BEGIN { printf "%.0f", n / (w / 1e9) }')" \
    "$(ns_us_per_row "$c")" "$(ns_ns_per_byte "$c")" "-" "median of 3; $(kv "$WORK/decode.tsv" blocks) blocks"

  # -- ClickHouse on the same rows --
  echo "== chDB: INSERT of the same rows (the dump) into a MergeTree table, 1 thread"
  local lines
  lines=$(wc -l <"$json")
  [ "$lines" = "$N" ] || die "the dump holds $lines lines, not $N"
  python3 scripts/bench_chdb.py --insert-only --json "$json" --rows "$N" --dir "$WORK/chdb" \
    --out "$WORK/chdb.tsv" | sed 's/^/   /' || die "chDB's insert failed"
  rm -rf "$json" "$WORK/chdb"
  c=$(awk -v s="$(kv "$WORK/chdb.tsv" insert_cpu_secs)" 'BEGIN { printf "%.0f", s * 1e9 }')
  local chdb_label
  chdb_label="chDB $(kv "$WORK/chdb.tsv" chdb_version) INSERT, MergeTree (1 thread)"
  trow "$chdb_label" "$(rate_of "$(kv "$WORK/chdb.tsv" insert_secs)")" "$(ns_us_per_row "$c")" \
    "$(ns_ns_per_byte "$c")" "$(($(kv "$WORK/chdb.tsv" peak_rss_kib) / 1024))" \
    "ClickHouse $(kv "$WORK/chdb.tsv" clickhouse_version); parse, sort, compress, write"

  # -- one node, one replica --
  echo "== Sluice, one node, one replica: the guide's tables over topic bench"
  NAMES=(solo)
  local solo=http://127.0.0.1:27070
  start_node solo 27070 --bootstrap
  [ -s "$WORK/solo/grpc-address" ] || die "node solo did not start; its log: $WORK/solo.log"
  write_ddl bench-1
  local perf_pid=""
  if [ "${BENCH_PERF:-0}" = 1 ]; then
    command -v perf >/dev/null 2>&1 || die "BENCH_PERF=1 needs perf"
    perf record -q -F 499 -g -p "${NODE_PID[solo]}" -o "$WORK/perf.data" 2>"$WORK/perf.err" &
    perf_pid=$!
    BG_PIDS+=("$perf_pid")
    sleep 1
  fi
  cpu_snapshot solo start
  ingest_rows "$WORK/ddl-bench-1.sql" "$solo"
  cpu_snapshot solo ingested
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    forget_bg "$perf_pid"
    echo "   perf, one node during ingest (BENCH_PERF=1; its CPU figures carry perf's cost), top 15 symbols by self time:"
    perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -15 | sed 's/^/     /' || true
  fi
  local one_secs=$INGEST_SECS one_rate idle
  one_rate=$(rate_of "$one_secs")
  echo "   $N rows in $one_secs s = $one_rate rows/s"
  idle=$(wait_idle solo)
  cpu_snapshot solo idle
  echo "   idle after $idle s more"
  echo "   threads, CPU s during ingest: $(thread_line solo start ingested)"
  echo "   threads, CPU s after ingest:  $(thread_line solo ingested idle)"
  local all bg ingest_path after bg_after
  all=$(cpu_delta solo start ingested _process)
  bg=$(cpu_delta solo start ingested background)
  after=$(cpu_delta solo ingested idle _process)
  bg_after=$(cpu_delta solo ingested idle background)
  ingest_path=$((all - bg))
  trow "Sluice 1 node, 1 replica: all-in" "$one_rate" "$(us_per_row "$all")" "$(ns_per_byte "$all")" \
    "$(hwm_mib solo)" "CREATE -> count() = N; ${one_secs} s"
  trow "  ingest path (all-in - background)" "" "$(us_per_row "$ingest_path")" "$(ns_per_byte "$ingest_path")" "" ""
  trow "  background (part-merger) in ingest" "" "$(us_per_row "$bg")" "$(ns_per_byte "$bg")" "" ""
  trow "  after ingest, until idle (${idle} s)" "" "$(us_per_row "$after")" "$(ns_per_byte "$after")" "" \
    "of which part-merger $(us_per_row "$bg_after") µs/row"

  # -- produce -> visible latency on the same node, default settings --
  local low_secs=${BENCH_LAT_LOW_SECS:-25} high_secs=${BENCH_LAT_HIGH_SECS:-20}
  local high_rate
  high_rate=$(awk -v r="$one_rate" -v f="${BENCH_LAT_HIGH_FRACTION:-0.4}" 'BEGIN { printf "%.0f", r * f }')
  echo "== produce -> visible latency on the one node, the guide's DDL (defaults), one partition"
  latency lat_low 100 "$low_secs" "$solo"
  latency lat_high "$high_rate" "$high_secs" "$solo"
  local solo_rss
  solo_rss=$(hwm_mib solo)
  stop_nodes

  # -- three nodes, three replicas --
  echo "== Sluice, three nodes, three replicas"
  NAMES=(n1 n2 n3)
  local hosts=(http://127.0.0.1:27171 http://127.0.0.1:27172 http://127.0.0.1:27173) members
  form_cluster 27170
  members=$(sqlq "${hosts[0]}" "SELECT count() FROM system.replicas WHERE error = ''") || members=0
  [ "$members" = 3 ] || die "the cluster did not form (n1 sees ${members:-0} healthy members); logs in $WORK"
  write_ddl bench-3
  local name
  for name in "${NAMES[@]}"; do cpu_snapshot "$name" start; done
  ingest_rows "$WORK/ddl-bench-3.sql" "${hosts[@]}"
  for name in "${NAMES[@]}"; do cpu_snapshot "$name" ingested; done
  local three_secs=$INGEST_SECS leader consumers
  echo "   $N rows on every node in $three_secs s = $(rate_of "$three_secs") rows/s"
  leader=$(sqlq "${hosts[0]}" "SELECT leader FROM system.raft_groups WHERE \"table\" = 'github'") || leader="?"
  consumers=$(sqlq "${hosts[0]}" "SELECT node, num_messages_read FROM system.kafka_consumers WHERE \"table\" = 'github_queue' ORDER BY node" |
    awk '{ n[$1] += 1; m[$1] += $2 } END { for (k in n) printf "%s:%d ", k, m[k] }') || consumers=""
  echo "   github's Raft leader: ${leader:-?}; messages read per node: ${consumers:-?}"
  idle=$(wait_idle "${NAMES[@]}")
  for name in "${NAMES[@]}"; do cpu_snapshot "$name" idle; done
  echo "   idle after $idle s more"
  local sum=0 sum_bg=0 sum_after=0 sum_bg_after=0 max_rss=0 role rss msgs
  for name in "${NAMES[@]}"; do
    echo "   $name threads, CPU s during ingest: $(thread_line "$name" start ingested)"
  done
  for name in "${NAMES[@]}"; do
    all=$(cpu_delta "$name" start ingested _process)
    bg=$(cpu_delta "$name" start ingested background)
    sum=$((sum + all))
    sum_bg=$((sum_bg + bg))
    sum_after=$((sum_after + $(cpu_delta "$name" ingested idle _process)))
    sum_bg_after=$((sum_bg_after + $(cpu_delta "$name" ingested idle background)))
    rss=$(hwm_mib "$name")
    [ "$rss" -gt "$max_rss" ] && max_rss=$rss
    if [ "$name" = "$leader" ]; then role=leader; else role=follower; fi
    msgs=$(tr ' ' '\n' <<<"$consumers" | awk -F: -v n="$name" '$1 == n { print $2 }')
    trow "  $name ($role)" "" "$(us_per_row "$all")" "$(ns_per_byte "$all")" "$rss" \
      "consumed ${msgs:-0} msgs; part-merger $(us_per_row "$bg") µs/row"
  done
  local three_rows=("${TABLE[@]: -3}")
  TABLE=("${TABLE[@]:0:${#TABLE[@]}-3}")
  trow "Sluice 3 nodes, 3 replicas: sum" "$(rate_of "$three_secs")" "$(us_per_row "$sum")" \
    "$(ns_per_byte "$sum")" "$max_rss" "CREATE -> every node counts N; ${three_secs} s"
  TABLE+=("${three_rows[@]}")
  trow "  background (part-merger), 3 nodes" "" "$(us_per_row "$sum_bg")" "$(ns_per_byte "$sum_bg")" "" \
    "in ingest; after ingest $(us_per_row "$sum_bg_after")"
  trow "  after ingest, until idle, 3 nodes" "" "$(us_per_row "$sum_after")" "$(ns_per_byte "$sum_after")" "" ""
  stop_nodes

  # -- the table --
  echo
  echo "== Sluice $PROFILE, $N events of the guide's schema, $(awk -v b="$JSON_BYTES" -v n="$N" 'BEGIN { printf "%.0f", b / n }') JSON bytes/row ($(date -u '+%Y-%m-%d'))"
  echo "   machine: $machine"
  echo "   CPU = user + system of the process(es) (Sluice nodes: from CREATE until count() = N); ns/byte per JSON payload byte"
  printf '%-40s %10s %11s %8s %9s  %s\n' "case" "rows/s" "CPU-µs/row" "ns/byte" "RSS MiB" "notes"
  printf '%s\n' "${TABLE[@]}"
  echo
  printf '%-40s %10s %9s %9s %9s\n' "produce -> visible (one partition)" "rows/s" "p50 ms" "p99 ms" "max ms"
  local l
  for l in lat_low lat_high; do
    printf '%-40s %10s %9s %9s %9s\n' \
      "$l: asked $(kv "$WORK/lat-$l.tsv" rate_asked | awk '{ printf "%.0f", $1 }') rows/s, $(kv "$WORK/lat-$l.tsv" rows) rows" \
      "$(kv "$WORK/lat-$l.tsv" rate | awk '{ printf "%.0f", $1 }')" "$(kv "$WORK/lat-$l.tsv" p50_ms)" \
      "$(kv "$WORK/lat-$l.tsv" p99_ms)" "$(kv "$WORK/lat-$l.tsv" max_ms)"
  done
  echo "   (1 node, peak RSS $solo_rss MiB after both; count() polled every 10 ms; rows sent paced, each timed when handed to librdkafka)"
}

events_mode
