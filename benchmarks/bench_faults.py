"""Fault timings (issue 13): how long a failure takes to report, and what a restart costs a write.

``python -c "from benchmarks.bench_faults import main; main()"`` prints one line per measurement:

- ``restart``: one partition write while PostgreSQL is stopped for ``ZEROGEX_BENCH_OUTAGE_S`` (20) seconds, then
  started: seconds until the write is stored (it retries; before issue 13 it failed within 1.5 s);
- ``read_only_disk``: a day's materialization into an embedded store whose disk turned read-only: seconds until
  the one-line failure (108 s before: every DuckDB IOException was retried as a lock wait). Needs ``mount``
  (root); skipped otherwise;
- ``reader_lock_wait``: ``latest_levels`` while another process holds the DuckDB file for 2 s: seconds until it
  returns (before: at once, with "Could not set lock on file");
- ``cli_failure``: stderr lines of a failing ``zerogex run`` (50-81 before) and its seconds;
- ``backfill_no_daemon``: seconds until ``zerogex backfill --wait`` says no daemon runs (it waited forever).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb

from zerogex_pipeline.defs.partitions import trading_day_partitions
from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import levels_reader
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql
from zerogex_pipeline.storage.postgres_cluster import ClusterUnavailableError, ThrowawayCluster
from zerogex_pipeline.storage.postgres_io_manager import PostgresFrameIOManager, write_partition
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
ZEROGEX = str(Path(sys.executable).parent / "zerogex")


def _levels_frame(day: dt.date):  # type: ignore[no-untyped-def]
    import pandas as pd

    frame = GEX_LEVELS.empty_frame().reindex(range(79))
    frame["underlying"] = "SPY"
    frame["session_date"] = pd.Timestamp(day)
    frame["snapshot_ts"] = [pd.Timestamp(f"{day} 14:30", tz="UTC") + pd.Timedelta(minutes=5 * i) for i in range(79)]
    for col in ("spot", "net_gex", "call_gex", "put_gex", "net_gex_at_spot", "rate", "dividend_yield"):
        frame[col] = 1.0
    frame["expirations"], frame["contracts"], frame["convention"] = 1, 10, "bench"
    frame["expiration_list"] = f'["{day}"]'
    return GEX_LEVELS.conform(frame)


def restart(outage_s: float) -> str:
    try:
        cluster = ThrowawayCluster(timescaledb=False).start()
    except ClusterUnavailableError as exc:
        return f"restart: skipped ({exc})"
    try:
        day = dt.date(2025, 1, 15)
        manager = PostgresFrameIOManager(database_url=cluster.url)
        key, parts = dg.AssetKey(["spy", "gex_levels"]), trading_day_partitions(Settings().first_date)
        write_partition(manager, key, parts, day.isoformat(), _levels_frame(day), "session_date")
        cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop")
        cluster.running = False
        starter = threading.Timer(outage_s, cluster.start)
        started = time.monotonic()
        starter.start()
        write_partition(manager, key, parts, day.isoformat(), _levels_frame(day), "session_date")
        took = time.monotonic() - started
        starter.join()
        return f"restart: write stored {took:.1f} s after a {outage_s:.0f} s outage began (retried, not failed)"
    finally:
        cluster.stop()


def read_only_disk(root: Path) -> str:
    mount = root / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "bench", str(mount)], capture_output=True).returncode:
        return "read_only_disk: skipped (cannot mount a tmpfs here)"
    try:
        settings = Settings(data_dir=mount, expirations=1, snapshot_minutes=60)
        with dg.instance_for_test() as instance:
            materialize_day(SPY, dt.date(2025, 1, 15), settings, instance)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            started = time.monotonic()
            try:
                materialize_day(SPY, dt.date(2025, 1, 16), settings, instance)
                return "read_only_disk: the write did not fail"
            except RunFailedError:
                return f"read_only_disk: one-line failure after {time.monotonic() - started:.1f} s"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def reader_lock_wait(root: Path) -> str:
    settings = Settings(data_dir=root / "lock")
    settings.data_dir.mkdir()
    with duckdb.connect(str(settings.duckdb_path)) as conn:
        conn.execute("CREATE SCHEMA spy")
        conn.execute(create_table_sql('"spy"."gex_levels"', GEX_LEVELS))
    hold = ("import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); c.begin(); print('locked', flush=True); "
            "time.sleep(2); c.close()")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(settings.duckdb_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    started = time.monotonic()
    levels_reader.latest_levels(settings, SPY)
    took = time.monotonic() - started
    proc.wait()
    return f"reader_lock_wait: returned after {took:.1f} s while another process held the file for 2 s"


def cli(root: Path, name: str, args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run([ZEROGEX, *args], capture_output=True, text=True, cwd=root, timeout=600,
                          env={**os.environ, "DAGSTER_HOME": str(root / f"{name}_home"), **env})
    return time.monotonic() - started, done.stderr.count("\n"), done.stderr.strip()


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    outage = float(os.environ.get("ZEROGEX_BENCH_OUTAGE_S", "20"))
    with tempfile.TemporaryDirectory(prefix="zerogex_bench_faults_") as tmp:
        root = Path(tmp)
        print(restart(outage), flush=True)
        print(read_only_disk(root), flush=True)
        print(reader_lock_wait(root), flush=True)
        (root / "file").write_text("not a directory")
        took, lines, _ = cli(root, "fail", ["run", "--days", "1", "--end", "2025-01-15"],
                             {"ZEROGEX_DATA_DIR": str(root / "file" / "data"), "ZEROGEX_EXPIRATIONS": "1"})
        print(f"cli_failure: zerogex run failing inside a run: {lines} line(s) on stderr after {took:.1f} s", flush=True)
        start, _, _ = cli(root, "baseline", ["run", "--days", "0"], {})
        took, lines, err = cli(root, "backfill", ["backfill", "--start", "2026-11-16", "--end", "2026-11-20", "--wait"],
                               {"ZEROGEX_DATA_DIR": str(root / "bf")})
        print(f"backfill_no_daemon: {lines} line(s) after {took:.1f} s; the CLI's start alone (run --days 0, refused "
              f"by argparse) took {start:.1f} s: {err[:60]}...", flush=True)


if __name__ == "__main__":
    main()
