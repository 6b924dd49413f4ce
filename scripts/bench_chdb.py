#!/usr/bin/env python3
"""chDB (ClickHouse in-process) beside Sluice's scale benchmark.

Loads a JSONEachRow file (the same events Sluice ingested, dumped from the Kafka topic)
into a chDB MergeTree table with the guide's schema and ORDER BY, with one thread, then
reports the table's bytes on disk and the best of 3 runs of each query, with the peak RSS
of this process while the query ran (VmRSS sampled every 50 ms).

    scripts/bench_chdb.py --json events.json --rows N --dir SESSION_DIR --out results.tsv

With --insert-only it measures the INSERT alone, for the events benchmark's CPU per row:
the CPU time (user + system, resource.getrusage) this process spends in it, all threads.

The schema and the ORDER BY are read from scripts/sql/quickstart.sql, so they are the ones
Sluice's tables get. `--out` receives `key<TAB>value` lines that scripts/bench.sh reads.
Installs chdb with pip when it is missing.
"""

import argparse
import importlib
import os
import re
import resource
import subprocess
import sys
import threading
import time

CHDB_VERSION = "4.4.0"

QUERIES = [
    ("group by event_type", "SELECT event_type, count() FROM github GROUP BY event_type"),
    ("count PushEvent", "SELECT count() FROM github WHERE event_type = 'PushEvent'"),
    (
        "top 10 repo_name",
        "SELECT repo_name, count() FROM github GROUP BY repo_name ORDER BY count() DESC LIMIT 10",
    ),
]


def ensure_chdb():
    """Installs chdb when missing: with pip into this interpreter, or, where that is refused
    (a system Python that is externally managed), into a venv in Sluice's cache, and then
    runs this script again with the venv's interpreter."""
    try:
        import chdb  # noqa: F401

        return
    except ImportError:
        pass
    print(f"chdb: installing chdb=={CHDB_VERSION} with pip", file=sys.stderr)
    if pip_install(sys.executable):
        return
    cache = os.environ.get("SLUICE_CACHE", os.path.expanduser("~/.cache/sluice"))
    venv = os.path.join(cache, "chdb-venv")
    python = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.executable) == os.path.realpath(python):
        raise SystemExit("chdb: could not install chdb, even into " + venv)
    print(f"chdb: pip refused; installing into the venv {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if not pip_install(python):
        raise SystemExit("chdb: could not install chdb into " + venv)
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def pip_install(python):
    cmd = [python, "-m", "pip", "install", "--quiet"]
    if subprocess.run(cmd + [f"chdb=={CHDB_VERSION}"]).returncode == 0:
        return True
    # The pinned version may be gone from the registry; take the newest.
    return subprocess.run(cmd + ["chdb"]).returncode == 0


def guide_schema(ddl_path):
    """The column list of the guide's github_queue and the ORDER BY of github."""
    text = open(ddl_path, encoding="utf-8").read()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    start = re.search(r"CREATE\s+TABLE\s+github_queue\s*\(", text)
    if not start:
        raise SystemExit(f"{ddl_path}: no CREATE TABLE github_queue (...)")
    depth, i = 1, start.end()
    while depth and i < len(text):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    columns = " ".join(text[start.end() : i - 1].split())
    order = re.search(r"CREATE\s+TABLE\s+github\s+AS.*?ORDER\s+BY\s+(\([^)]*\))", text, re.S)
    if not order:
        raise SystemExit(f"{ddl_path}: no ORDER BY for table github")
    return columns, order.group(1)


def process_rss_kib():
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """The peak VmRSS of this process, sampled every 50 ms in a thread (chDB releases the
    GIL while a query runs, so the thread samples during it)."""

    def __init__(self):
        self.peak = process_rss_kib()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, process_rss_kib())
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_rss_kib())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="JSONEachRow file of the events")
    ap.add_argument("--rows", type=int, required=True, help="rows the file must hold")
    ap.add_argument("--dir", required=True, help="chDB session dir (created; must not exist)")
    ap.add_argument("--out", help="key<TAB>value results for scripts/bench.sh")
    ap.add_argument("--ddl", default=os.path.join(os.path.dirname(__file__), "sql", "quickstart.sql"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--insert-only", action="store_true", help="measure the INSERT's CPU, then stop")
    args = ap.parse_args()
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs take positive integers")
    if not os.path.isfile(args.json):
        ap.error(f"--json {args.json}: no such file")

    ensure_chdb()
    importlib.invalidate_caches()
    import chdb
    from chdb import session

    columns, order_by = guide_schema(args.ddl)
    if os.path.exists(args.dir):
        raise SystemExit(f"{args.dir} exists; give a new session dir")
    sess = session.Session(args.dir)
    results = {"chdb_version": chdb.__version__}

    def q(sql, fmt="TSV"):
        r = sess.query(sql, fmt)
        if r is not None and hasattr(r, "has_error") and r.has_error():
            raise RuntimeError(f"{sql[:80]}: {r.error_message()}")
        return r

    results["clickhouse_version"] = str(q("SELECT version()")).strip()
    # One thread for everything this session runs: reads, inserts, the queries.
    q("SET max_threads = 1")
    q("SET max_insert_threads = 1")
    q("CREATE DATABASE IF NOT EXISTS bench")
    q("USE bench")
    q(f"CREATE TABLE github ({columns}) ENGINE = MergeTree ORDER BY {order_by}")

    structure = columns.replace("\\", "\\\\").replace("'", "\\'")
    path = os.path.abspath(args.json).replace("'", "\\'")
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with RssSampler() as load_rss:
        q(f"INSERT INTO github SELECT * FROM file('{path}', 'JSONEachRow', '{structure}')")
    load_secs = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_secs = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = int(str(q("SELECT count() FROM github")).strip())
    if rows != args.rows:
        raise SystemExit(f"chDB holds {rows} rows, expected {args.rows}")
    if args.insert_only:
        print(f"chdb: INSERT of {rows} rows in {load_secs:.2f} s = {rows / load_secs:.0f} rows/s "
              f"(1 thread); CPU {cpu_secs:.2f} s = {cpu_secs * 1e6 / rows:.2f} µs/row; "
              f"peak RSS {load_rss.peak // 1024} MiB", flush=True)
        results.update(rows=rows, insert_secs=f"{load_secs:.3f}", insert_cpu_secs=f"{cpu_secs:.3f}",
                       peak_rss_kib=load_rss.peak)
        sess.close()
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                for k, v in results.items():
                    f.write(f"{k}\t{v}\n")
        return
    results.update(rows=rows, load_secs=f"{load_secs:.3f}", load_peak_rss_kib=load_rss.peak)
    print(f"chdb: loaded {rows} rows in {load_secs:.1f} s = {rows / load_secs:.0f} rows/s "
          f"(1 thread), peak RSS {load_rss.peak // 1024} MiB", flush=True)

    # Background merges run in chDB's own pool; give them up to 60 s to settle so the
    # bytes on disk are those of a table at rest, and say how many parts there are.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if int(str(q("SELECT count() FROM system.merges WHERE database = 'bench'")).strip()) == 0:
            break
        time.sleep(0.5)
    parts, disk = str(
        q("SELECT count(), sum(bytes_on_disk) FROM system.parts "
          "WHERE database = 'bench' AND table = 'github' AND active")
    ).split()
    results.update(parts=int(parts), bytes_on_disk=int(disk))
    print(f"chdb: {parts} active parts, {int(disk)} bytes on disk = {int(disk) / rows:.1f} bytes/row",
          flush=True)

    results["rss_before_queries_kib"] = process_rss_kib()
    for i, (label, sql) in enumerate(QUERIES, 1):
        best, peak = None, 0
        for _ in range(args.runs):
            start = time.perf_counter()
            with RssSampler() as rss:
                r = q(sql)
            secs = time.perf_counter() - start
            best = secs if best is None else min(best, secs)
            peak = max(peak, rss.peak)
        results[f"q{i}_secs"] = f"{best:.4f}"
        results[f"q{i}_result"] = " ".join(str(r).split()) if i == 2 else ""
        results[f"q{i}_peak_rss_kib"] = peak
        print(f"chdb: {label}: best of {args.runs} {best * 1000:.1f} ms, peak RSS {peak // 1024} MiB",
              flush=True)
    results["rss_end_kib"] = process_rss_kib()
    sess.close()

    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for k, v in results.items():
                f.write(f"{k}\t{v}\n")


if __name__ == "__main__":
    main()
