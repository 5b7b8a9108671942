"""Levels API latency: ``GET /api/v1/spy/levels/latest`` through the HTTP server at a year of history, both stores.

What is measured: wall time of one request from a client on 127.0.0.1 to ``zerogex dashboard`` (uvicorn, its
own process, as ``make ui`` runs it) and back, over a kept-alive connection (httpx), for the embedded DuckDB
store and for PostgreSQL (a throwaway cluster, fsync on, or ``$ZEROGEX_BENCH_DATABASE_URL``). The answer is the
newest of the live engine's ``live_levels`` row and the newest stored ``gex_levels`` row.

History (the same in both stores): ``ZEROGEX_BENCH_HISTORY_DAYS`` (default 252, a year) SPY sessions ending
2025-12-31 in the two tables the answer reads, ``gex_levels`` (79 snapshots a session) and ``live_levels`` (one row
every 5 s of each session, the engine's default interval: 4,680 a session, ~1.18M a year). The newest
``ZEROGEX_BENCH_COMPUTED_DAYS`` (default 10) sessions are computed as the assets compute them
(:func:`benchmarks.load_history.day_frames`: bars, chain snapshots, surface, levels; 3 expirations, 5-minute
snapshots) and stored in full; the earlier sessions' levels and live rows are those computed sessions' rows re-dated
(simulating and analysing a whole year costs ~2 CPU-s a session, 45+ minutes on the shared 2-core machine, and the
answer reads neither the chain nor the surface). ``ZEROGEX_BENCH_COMPUTED_DAYS=252`` computes every session.

Scenarios, per store (``ZEROGEX_BENCH_REQUESTS`` requests each, default 300, after 20 warm-up requests):

1. **idle**: nothing writes;
2. **engine writing**: a writer process appends one ``live_levels`` row for today every second (5x the engine's
   rate) while the requests run back to back, so the embedded store's kept result is invalidated every second
   (each change costs one read of both files);
3. **first request after a write** (20 samples): a row is written, then one request; on the embedded store this
   always re-reads (opens the DuckDB files: the cost every cache miss pays).

Prints first/median/p95/p99/max in ms. Target: p95 <= 20 ms at a year of history.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import psycopg

from benchmarks.bench_storage import _db_url
from benchmarks.load_history import TABLES, day_frames, trading_days
from zerogex_pipeline.schemas import GEX_LEVELS, LIVE_LEVELS, AssetSchema
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline.storage.capture_store import (
    CaptureBatch,
    CaptureStore,
)
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql
from zerogex_pipeline.storage.postgres_cluster import ThrowawayCluster
from zerogex_pipeline.storage.postgres_copy import encode_binary_copy
from zerogex_pipeline.storage.postgres_io_manager import open_connection, redact_url
from zerogex_pipeline.storage.postgres_migrations import (
    TimescalePolicy,
    apply_timescaledb,
    migrate,
    timescaledb_version,
)
from zerogex_pipeline.storage.table_slices import quote_ident

END = dt.date(2025, 12, 31)
LIVE_INTERVAL_S = 5
PATH = "/api/v1/spy/levels/latest"


def live_rows(levels: pd.DataFrame) -> pd.DataFrame:
    """One live-levels row every 5 s of the session, carrying the last stored levels at or before it."""
    levels = levels.sort_values("snapshot_ts").reset_index(drop=True)
    start, end = levels["snapshot_ts"].iloc[0], levels["snapshot_ts"].iloc[-1]
    instants = pd.date_range(start, end, freq=f"{LIVE_INTERVAL_S}s", tz="UTC")
    frame = pd.merge_asof(pd.DataFrame({"snapshot_ts": instants}), levels.drop(columns=["snapshot_ts"]).assign(
        at=levels["snapshot_ts"]), left_on="snapshot_ts", right_on="at").drop(columns=["at"])
    day = f"{levels['session_date'].iloc[0]:%Y-%m-%d}"
    frame["spot_ts"] = frame["snapshot_ts"] - pd.Timedelta(milliseconds=200)
    frame["feed"] = "simulated"
    frame["expiration_list"] = json.dumps(sorted(json.loads(levels["max_pain"].iloc[0] or "{}")) or [day])
    frame["missing"] = None
    frame["compute_ms"] = 5.0
    return LIVE_LEVELS.conform(frame)


def _day(args: tuple[str, dt.date]) -> tuple[dt.date, dict[str, pd.DataFrame]]:
    name, date = args
    frames = day_frames(name, date)
    frames[LIVE_LEVELS.name] = live_rows(frames[GEX_LEVELS.name])
    return date, frames


def history(days: Sequence[dt.date], workers: int) -> Iterator[tuple[dt.date, dict[str, pd.DataFrame]]]:
    """Each day's tables (computed in worker processes), oldest first."""
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:  # fork, as load_history (python -m benchmarks)
        yield from pool.map(_day, [("SPY", d) for d in days], chunksize=1)


def _copy(conn: psycopg.Connection, schema: AssetSchema, frame: pd.DataFrame) -> None:
    table = f"spy.{quote_ident(schema.name)}"
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)".encode()) as cp:
        cp.write(encode_binary_copy(frame, schema))


def redated(frames: dict[str, pd.DataFrame], source: dt.date, day: dt.date) -> dict[str, pd.DataFrame]:
    """``source``'s levels and live rows moved to ``day`` (same times of day, UTC)."""
    shift = pd.Timedelta(days=(day - source).days)
    out = {}
    for schema in (GEX_LEVELS, LIVE_LEVELS):
        frame = frames[schema.name].copy()
        frame["session_date"] = pd.Timestamp(day)
        for col in ("snapshot_ts", "spot_ts"):
            if col in frame:
                frame[col] = frame[col] + shift
        out[schema.name] = frame
    return out


def load(days: Sequence[dt.date], data_dir: Path, pg_url: str, computed: int) -> dict[str, int]:
    """Write the history into ``data_dir``'s embedded files and into ``pg_url``; rows per table."""
    rows: dict[str, int] = {}
    started = time.perf_counter()
    full_days = list(days[-max(1, min(computed, len(days))):])
    full = dict(history(full_days, os.cpu_count() or 2))  # before any connection is open (the workers fork)
    print(f"  computed {len(full_days)} sessions {full_days[0]}..{full_days[-1]} in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = open_connection(pg_url)
    migrate(pg, "spy")
    if timescaledb_version(pg) is not None:
        apply_timescaledb(pg, "spy", TimescalePolicy())
    pg.commit()
    store = duckdb.connect(str(data_dir / "zerogex.duckdb"))
    live = CaptureStore(load_settings({"ZEROGEX_DATA_DIR": str(data_dir)}, env_file=None))
    store.execute("SET TimeZone = 'UTC'")
    store.execute("CREATE SCHEMA IF NOT EXISTS spy")
    for schema in TABLES:
        store.execute(create_table_sql(f"spy.{quote_ident(schema.name)}", schema))
    try:
        for i, day in enumerate(days, start=1):
            if day in full:
                frames = full[day]
            else:
                source = full_days[(i - 1) % len(full_days)]
                frames = redated(full[source], source, day)
            schemas = [s for s in (*TABLES, LIVE_LEVELS) if s.name in frames]
            with pg.transaction():
                for schema in schemas:
                    _copy(pg, schema, frames[schema.name])
            for schema in schemas:
                if schema is LIVE_LEVELS:
                    live.write(CaptureBatch(levels={"spy": frames[schema.name]}))
                else:
                    store.register("incoming", frames[schema.name])
                    cols = ", ".join(quote_ident(c) for c in schema.column_names)
                    store.execute(f"INSERT INTO spy.{quote_ident(schema.name)} ({cols}) SELECT {cols} FROM incoming")
                    store.unregister("incoming")
                rows[schema.name] = rows.get(schema.name, 0) + len(frames[schema.name])
            if i % 42 == 0:
                print(f"  written {i}/{len(days)} days ({time.perf_counter() - started:.0f} s)", flush=True)
        pg.execute("ANALYZE")
        pg.commit()
    finally:
        pg.close()
        store.close()
        live.close()
    return rows


@contextmanager
def dashboard(env: dict[str, str], port: int) -> Iterator[str]:
    """``zerogex dashboard`` in its own process; yields its base URL."""
    proc = subprocess.Popen([str(Path(sys.executable).parent / "zerogex"), "dashboard", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"zerogex dashboard exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            try:
                if httpx.get(f"{base}/api/v1/meta", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("zerogex dashboard did not answer within 120 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _writer(env: dict[str, str], stop_after_s: float, period_s: float) -> None:
    """Append one live-levels row for today every ``period_s`` seconds (what the stream engine does)."""
    settings = load_settings(env, env_file=None)
    store = CaptureStore(settings, wait_s=30)
    deadline = time.monotonic() + stop_after_s
    base = None
    try:
        while time.monotonic() < deadline:
            base = _today_row(settings) if base is None else base
            now = pd.Timestamp.now(tz="UTC").floor("ms")
            row = base.copy()
            row["snapshot_ts"], row["spot_ts"] = now, now
            row["spot"] = row["spot"] + float(np.random.default_rng().normal(0, 0.05))
            store.write(CaptureBatch(levels={"spy": row}))
            time.sleep(period_s)
    finally:
        store.close()


def _today_row(settings: object) -> pd.DataFrame:
    """The newest live row of the history, re-dated to today (America/New_York)."""
    store = CaptureStore(settings)  # type: ignore[arg-type]
    try:
        from zerogex_pipeline.underlyings import resolve_underlying

        row = store.live_levels(resolve_underlying("SPY"), latest=True)
    finally:
        store.close()
    today = pd.Timestamp.now(tz="America/New_York").normalize().tz_localize(None)
    return LIVE_LEVELS.conform(row.assign(session_date=today))


def _timed(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1e3
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
    return elapsed


def _stats(samples: list[float]) -> str:
    a = np.array(samples)
    return (f"n={a.size} first {a[0]:.2f} / median {statistics.median(samples):.2f} / p95 "
            f"{np.percentile(a, 95):.2f} / p99 {np.percentile(a, 99):.2f} / max {a.max():.2f} ms")


def measure(name: str, env: dict[str, str], requests: int, port: int) -> dict[str, float]:
    """The three scenarios against one store; returns the p95s."""
    out: dict[str, float] = {}
    with dashboard(env, port) as base, httpx.Client(timeout=60) as client:
        url = f"{base}{PATH}"
        first = client.get(url).json()
        print(f"  {name}: latest = {first['source']} {first['levels']['session_date']} "
              f"{first['levels']['snapshot_ts']} (spot {first['levels']['spot']})")
        for _ in range(20):
            _timed(client, url)
        idle = [_timed(client, url) for _ in range(requests)]
        print(f"  {name} idle:            {_stats(idle)}")
        out["idle"] = float(np.percentile(idle, 95))
        writer = mp.Process(target=_writer, args=(env, 3600.0, 1.0), daemon=True)
        writer.start()
        try:
            time.sleep(3.0)  # the writer is writing today's rows
            busy = []
            for _ in range(requests):
                busy.append(_timed(client, url))
                time.sleep(0.02)
            print(f"  {name} engine writing:  {_stats(busy)}")
            out["writing"] = float(np.percentile(busy, 95))
        finally:
            writer.terminate()
            writer.join()
        body = client.get(url).json()
        print(f"  {name}: latest now = {body['source']} {body['levels']['session_date']} (feed {body['feed']})")
        settings = load_settings(env, env_file=None)
        store = CaptureStore(settings, wait_s=30)
        base_row = _today_row(settings)
        after = []
        try:
            for _ in range(20):
                row = base_row.copy()
                now = pd.Timestamp.now(tz="UTC").floor("ms")
                row["snapshot_ts"], row["spot_ts"] = now, now
                store.write(CaptureBatch(levels={"spy": row}))
                time.sleep(0.1)
                after.append(_timed(client, url))
        finally:
            store.close()
        print(f"  {name} after a write:   {_stats(after)}")
        out["after_write"] = float(np.percentile(after, 95))
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    """Load the history into both stores, then measure the latest-levels latency on each."""
    days = trading_days(int(os.environ.get("ZEROGEX_BENCH_HISTORY_DAYS", "252")), END)
    requests = int(os.environ.get("ZEROGEX_BENCH_REQUESTS", "300"))
    computed = int(os.environ.get("ZEROGEX_BENCH_COMPUTED_DAYS", "10"))
    admin = os.environ.get("ZEROGEX_BENCH_DATABASE_URL", "").strip()
    cluster = None
    if not admin:
        cluster = ThrowawayCluster(durable=True).start()
        admin = cluster.url
    work = Path(tempfile.mkdtemp(prefix="zerogex-bench-dashboard-"))
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS zg_bench_dashboard WITH (FORCE)")
            conn.execute("CREATE DATABASE zg_bench_dashboard")
            version = conn.execute("SHOW server_version").fetchone()
        pg_url = _db_url(admin, "zg_bench_dashboard")
        print(f"== bench_dashboard: {len(days)} SPY sessions {days[0]}..{days[-1]}, PostgreSQL "
              f"{version[0] if version else '?'} at {redact_url(admin)}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        started = time.perf_counter()
        rows = load(days, work / "data", pg_url, computed)
        print(f"  history loaded in {time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
        sizes = {p.name: p.stat().st_size / 1e6 for p in (work / "data").glob("*.duckdb")}
        print("  embedded files: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in sizes.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEROGEX_", "TRADESTATION_"))}
        env.update(ZEROGEX_UNDERLYINGS="SPY", ZEROGEX_DATA_DIR=str(work / "data"))
        results = {"duckdb": measure("duckdb", env, requests, free_port())}
        results["postgres"] = measure("postgres", {**env, "ZEROGEX_DATABASE_URL": pg_url}, requests, free_port())
        for store, p95 in results.items():
            verdict = "met" if max(p95["idle"], p95["writing"]) <= 20.0 else "NOT met"
            print(f"  {store}: p95 idle {p95['idle']:.2f} ms, engine writing {p95['writing']:.2f} ms, first after a "
                  f"write {p95['after_write']:.2f} ms -> <= 20 ms p95: {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
