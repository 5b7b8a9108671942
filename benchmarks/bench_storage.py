"""Storage benchmarks: chain ingest (IO manager vs ``to_sql`` vs raw COPY), query latency, sizes.

Runs against ``$ZEROGEX_BENCH_DATABASE_URL`` (a superuser URL; two databases are created in it) or
else a throwaway cluster with default durability (fsync on) started from the installed binaries.

1. Ingest: the same simulated SPY chain frames (``INGEST_DAYS`` days × 3 expirations, one
   ``(date, expiration)`` partition each) written (a) through the IO manager's full ``DbIOManager``
   path (advisory lock, DELETE slice, binary COPY, commit; one connection per partition, as in a
   run), again as a re-write that replaces every partition, (b) by raw ``COPY`` of the same frames
   on one connection: CSV text (``to_csv``), psycopg's own binary ``write_row`` with ``set_types``,
   and binary from our encoder, and (c) by ``pandas.DataFrame.to_sql`` (SQLAlchemy + psycopg,
   default insert method), one call per partition. Every path writes the same rows into a table made
   by the same migrations (with TimescaleDB: the same hypertable layout), each in its own schema. With a throwaway cluster it also prints rows per CPU-second of the server processes
   (``/proc``), which does not depend on what else runs on the machine.
2. History: ``HISTORY_DAYS`` (default 252, a year) sessions of simulated SPY history loaded with
   :mod:`benchmarks.load_history`, then median/p95 latency of "latest levels", "one day's intraday
   levels" and "one day's surface for one expiration" (SQL round trip, and through the pandas read
   functions of ``postgres_queries``), and table/index sizes. With TimescaleDB (installed and
   preloaded: the throwaway cluster preloads it when installed) both databases use hypertables; the
   history's chunks older than ``compress_after_days`` before its newest day are compressed first (as
   the policy would), and the compression ratio is printed.

Environment: ``ZEROGEX_BENCH_HISTORY_DAYS`` (0 skips part 2), ``ZEROGEX_BENCH_INGEST_DAYS`` (5),
``ZEROGEX_BENCH_ROUNDS`` (3 ingest rounds; the median round is reported),
``ZEROGEX_BENCH_TIMESCALEDB=0`` (plain PostgreSQL even when TimescaleDB is installed).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
from psycopg import sql

from benchmarks.load_history import day_frames, load_history, trading_days
from zerogex_pipeline.defs.partitions import (
    chain_partition_key,
    chain_partitions,
)
from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS, SQL_TYPE
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import postgres_queries
from zerogex_pipeline.storage.postgres_cluster import ThrowawayCluster
from zerogex_pipeline.storage.postgres_copy import encode_binary_copy
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    open_connection,
    prepare_schema,
    redact_url,
    write_partition,
)
from zerogex_pipeline.storage.postgres_migrations import (
    TimescalePolicy,
    apply_timescaledb,
    migrate,
    timescaledb_version,
)
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
END = dt.date(2025, 12, 31)


def _db_url(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    head, _, _ = admin_url.rpartition("/")
    query = ""
    if "?" in admin_url.rsplit("/", 1)[1]:
        query = "?" + admin_url.rsplit("?", 1)[1]
    return f"{head}/{name}{query}"


def _rate(rows: int, seconds: float, server_cpu: float | None = None) -> str:
    text = f"{rows / seconds:>12,.0f} rows/s  ({rows:,} rows in {seconds:.3f} s)"
    if server_cpu:
        text += f"  server {rows / server_cpu:,.0f} rows/CPU-s"
    return text


class ServerCpu:
    """CPU seconds used by a local cluster's processes (postmaster, its live children, reaped children)."""

    def __init__(self, cluster: ThrowawayCluster | None) -> None:
        self.pid: int | None = None
        if cluster is not None:
            pid_file = cluster.data_dir / "postmaster.pid"
            try:
                self.pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                self.pid = None
        self.tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int | str) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None

    def seconds(self) -> float | None:
        """Total CPU seconds so far, or None when the server is not a local throwaway cluster."""
        if self.pid is None:
            return None
        own = self._stat(self.pid)
        if own is None:
            return None
        ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime (reaped backends)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = self._stat(entry)
                if st is not None and st[1] == str(self.pid):
                    ticks += int(st[11]) + int(st[12])
        return ticks / self.tick


def _enable_timescaledb(url: str) -> str | None:
    """Create the extension when installed and preloaded; returns its version or None."""
    with psycopg.connect(url, autocommit=True) as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        if available is None or preload is None or "timescaledb" not in str(preload[0]):
            return None
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return None if row is None else str(row[0])


def _python_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as Python values for ``write_row`` (NaN/NaT -> None, dates as ``datetime.date``)."""
    columns: list[list[Any]] = []
    for name in OPTION_CHAIN_SNAPSHOTS.column_names:
        series = frame[name]
        if name in ("session_date", "expiration"):
            values: list[Any] = list(series.dt.date)
        elif isinstance(series.dtype, pd.DatetimeTZDtype):
            values = list(series.dt.to_pydatetime())
        else:
            values = series.astype(object).where(series.notna(), None).tolist()
        columns.append(values)
    return list(zip(*columns, strict=True))


def _chain_partitions(days: int) -> list[tuple[dt.date, int, pd.DataFrame]]:
    """The benchmark's ``(date, expiration slot, frame)`` chain partitions: ``days`` SPY sessions x 3 slots."""
    partitions: list[tuple[dt.date, int, pd.DataFrame]] = []
    for d in trading_days(days, END):
        chain = day_frames(SPY.name, d)["option_chain_snapshots"]
        for slot, part in chain.groupby("expiration_slot", sort=True):
            partitions.append((d, int(slot), part.reset_index(drop=True)))
    return partitions


INGEST_PATHS = (
    ("io_manager", "IO manager, first write"),
    ("io_manager_rewrite", "IO manager, re-write"),
    ("raw_copy_csv", "raw COPY csv (to_csv)"),
    ("raw_copy_write_row", "raw COPY psycopg write_row"),
    ("raw_copy_binary", "raw COPY binary (encoder)"),
    ("to_sql", "pandas to_sql"),
)
"""Ingest paths in the order each round runs them: (result key, label)."""


def bench_ingest(url: str, days: int, cpu: ServerCpu | None = None, rounds: int = 3) -> dict[str, float]:
    """Chain rows/s through the IO manager, raw COPY (csv, write_row, binary) and to_sql; prints and returns them.

    Each of ``rounds`` rounds writes every partition once per path into empty tables (the IO manager
    then re-writes them); the result per path is the median round (wall-clock rows/s), printed with
    the slowest and fastest round and the server's rows per CPU-second in the median round.
    """
    cpu = cpu or ServerCpu(None)
    partitions = _chain_partitions(days)
    total = sum(len(p) for _, _, p in partitions)
    print(f"ingest: {len(partitions)} chain partitions ({days} SPY days x 3 expirations), {total:,} rows, "
          f"{rounds} rounds (median shown, [slowest..fastest])")
    # The ingest days are years old: a 7-day compression policy would start compressing them in the
    # background mid-measurement. Keep this database's policy out of the way (compressed re-writes are
    # measured explicitly below).
    policy = TimescalePolicy(compress_after_days=36500)
    manager = PostgresFrameIOManager(database_url=url, use_timescaledb=True, compress_after_days=36500)
    partitions_def = chain_partitions(Settings())
    cols = ", ".join(f'"{c}"' for c in OPTION_CHAIN_SNAPSHOTS.column_names)
    types = [SQL_TYPE[c.kind].lower() for c in OPTION_CHAIN_SNAPSHOTS.columns]
    baselines = ("raw_csv", "raw_write_row", "raw_binary", "to_sql")
    with open_connection(url) as conn:
        # The once-per-process schema preparation (migrations check, TimescaleDB layout, drift check)
        # runs before the clock starts, as it does once per run, not once per partition. Each baseline
        # writes its own schema made by the same migrations (and, with TimescaleDB, the same hypertable
        # layout) as the IO manager's: same table, primary key and chunking.
        prepare_schema(conn, url, "spy", True, policy)
        timescale = timescaledb_version(conn) is not None
        for name in baselines:
            migrate(conn, name)
            if timescale:
                apply_timescaledb(conn, name, policy)
        conn.commit()

    def io_manager(instance: dg.DagsterInstance) -> float:
        # Seconds inside DbIOManager.handle_output, summed over partitions (building Dagster's
        # output context per call is harness cost that a real run pays once per step anyway).
        return sum(
            write_partition(
                manager, dg.AssetKey(["spy", "option_chain_snapshots"]), partitions_def,
                chain_partition_key(d, e), frame, {"date": "session_date", "expiration": "expiration_slot"},
                instance,
            )
            for d, e, frame in partitions
        )

    def copy_csv(conn: psycopg.Connection) -> None:
        for _, _, frame in partitions:
            buf = io.StringIO()
            frame.to_csv(buf, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f%z")
            statement = f"COPY raw_csv.option_chain_snapshots ({cols}) FROM STDIN (FORMAT CSV)"
            with conn.cursor() as cur, cur.copy(statement) as cp:
                cp.write(buf.getvalue())
            conn.commit()

    def copy_write_row(conn: psycopg.Connection) -> None:
        for _, _, frame in partitions:
            statement = f"COPY raw_write_row.option_chain_snapshots ({cols}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(statement) as cp:
                cp.set_types(types)
                for row in _python_rows(frame):
                    cp.write_row(row)
            conn.commit()

    def copy_binary(conn: psycopg.Connection) -> None:
        for _, _, frame in partitions:
            payload = encode_binary_copy(frame, OPTION_CHAIN_SNAPSHOTS)
            statement = f"COPY raw_binary.option_chain_snapshots ({cols}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(statement) as cp:
                cp.write(payload)
            conn.commit()

    from sqlalchemy import create_engine

    def to_sql() -> None:
        # One call per partition, as a writer of partitions would; default method (SQLAlchemy
        # executemany, which psycopg 3 sends as multi-row INSERTs of 1,000 rows).
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            for _, _, frame in partitions:
                frame.to_sql("option_chain_snapshots", engine, schema="to_sql", if_exists="append", index=False)
        finally:
            engine.dispose()

    samples: dict[str, list[tuple[float, float | None]]] = {key: [] for key, _ in INGEST_PATHS}

    def timed(key: str, fn: Callable[[], float | None]) -> None:
        c0, t = cpu.seconds(), time.perf_counter()
        inner = fn()
        seconds = inner if inner is not None else time.perf_counter() - t
        samples[key].append((seconds, _delta(cpu, c0)))

    for _ in range(rounds):
        with open_connection(url) as conn:
            for schema in ("spy", *baselines):
                conn.execute(f"TRUNCATE {schema}.option_chain_snapshots")
            conn.commit()
        with dg.instance_for_test() as instance:
            timed("io_manager", partial(io_manager, instance))
            timed("io_manager_rewrite", partial(io_manager, instance))
        with open_connection(url) as conn:
            timed("raw_copy_csv", partial(copy_csv, conn))
            timed("raw_copy_write_row", partial(copy_write_row, conn))
            timed("raw_copy_binary", partial(copy_binary, conn))
            for name in baselines:
                assert conn.execute(f"SELECT count(*) FROM {name}.option_chain_snapshots").fetchone() == (
                    (total,) if name != "to_sql" else (0,)
                )
        timed("to_sql", to_sql)

    out: dict[str, float] = {}
    for key, label in INGEST_PATHS:
        ordered = sorted(samples[key], key=lambda sample: sample[0])
        seconds, server_cpu = ordered[len(ordered) // 2]
        out[key] = total / seconds
        spread = f"[{total / ordered[-1][0]:,.0f}..{total / ordered[0][0]:,.0f}]"
        print(f"  {label:<27}{_rate(total, seconds, server_cpu)}  {spread}")

    if timescale:
        with open_connection(url) as conn:
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('spy.option_chain_snapshots') c").fetchall()
            conn.commit()
        with dg.instance_for_test() as instance:
            c0 = cpu.seconds()
            on_compressed = io_manager(instance)
            out["io_manager_rewrite_compressed"] = total / on_compressed
        print(f"  IO manager, re-write of compressed chunks (once) {_rate(total, on_compressed, _delta(cpu, c0))}")

    best_raw = max(out["raw_copy_csv"], out["raw_copy_write_row"], out["raw_copy_binary"])
    print(
        f"  IO manager / to_sql = {out['io_manager'] / out['to_sql']:.1f}x; "
        f"best raw COPY / IO manager = {best_raw / out['io_manager']:.2f}x "
        f"(csv {out['raw_copy_csv'] / out['io_manager']:.2f}x, write_row "
        f"{out['raw_copy_write_row'] / out['io_manager']:.2f}x, binary {out['raw_copy_binary'] / out['io_manager']:.2f}x)"
    )
    return out


def _delta(cpu: ServerCpu, before: float | None) -> float | None:
    after = cpu.seconds()
    return None if before is None or after is None else after - before


def _latency(fn: Callable[[], Any], repeat: int = 200) -> tuple[float, float, float]:
    """(first call, median, p95) in milliseconds."""
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return first, statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def bench_queries(url: str, day: dt.date, expiration: dt.date) -> dict[str, float]:
    """Latency of the three read paths (SQL only, and into conformed frames)."""
    out: dict[str, float] = {}
    with open_connection(url) as conn:
        sql_only = {
            "latest levels": (
                "SELECT * FROM spy.gex_levels ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1", []),
            "one day's intraday levels": (
                "SELECT * FROM spy.gex_levels WHERE session_date = %s ORDER BY snapshot_ts", [day]),
            "one day's surface, one expiration": (
                "SELECT * FROM spy.gex_surface WHERE session_date = %s AND expiration = %s "
                "ORDER BY snapshot_ts, strike", [day, expiration]),
            "latest chain snapshot": (None, []),
        }
        frames: dict[str, Callable[[], pd.DataFrame]] = {
            "latest levels": lambda: postgres_queries.latest_levels(conn, "spy"),
            "one day's intraday levels": lambda: postgres_queries.intraday_levels(conn, "spy", day),
            "one day's surface, one expiration": lambda: postgres_queries.day_surface(conn, "spy", day, expiration),
            "latest chain snapshot": lambda: postgres_queries.latest_snapshot(conn, "spy"),
        }
        print(f"queries (ms; first / median / p95 of 200), day {day}, expiration {expiration}:")
        for name, (query, params) in sql_only.items():
            rows = len(frames[name]())
            if query is not None:
                def run_sql(q: bytes = query.encode(), params: list[Any] = params) -> list[Any]:
                    return conn.execute(q, params).fetchall()

                first, med, p95 = _latency(run_sql)
                print(f"  {name:<36} SQL    {first:7.2f} / {med:6.2f} / {p95:6.2f}   ({rows} rows)")
                out[f"{name} sql median ms"] = med
                out[f"{name} sql p95 ms"] = p95
            first, med, p95 = _latency(frames[name])
            print(f"  {name:<36} pandas {first:7.2f} / {med:6.2f} / {p95:6.2f}   ({rows} rows)")
            out[f"{name} pandas median ms"] = med
            out[f"{name} pandas p95 ms"] = p95
        plan = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM spy.gex_levels "
            "ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1"
        ).fetchall()
        print("  plan of latest levels: " + " | ".join(r[0].strip() for r in plan[:3]))
    return out


def compress_history(url: str, newest: dt.date, policy: TimescalePolicy | None = None) -> None:
    """With TimescaleDB, compress every chunk older than ``compress_after_days`` before ``newest``.

    That is what the compression policy would have done by ``newest`` (it runs in the background on
    its own schedule, relative to now()); doing it here makes the measured state deterministic.
    """
    policy = policy or TimescalePolicy()
    with open_connection(url) as conn:
        if timescaledb_version(conn) is None:
            return
        cutoff = newest - dt.timedelta(days=policy.compress_after_days)
        t = time.perf_counter()
        chunks = 0
        for table in ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels"):
            rows = conn.execute(
                "SELECT compress_chunk(c, if_not_compressed => TRUE) FROM show_chunks(%s::regclass, older_than => %s) c",
                [f"spy.{table}", cutoff],
            ).fetchall()
            conn.commit()
            chunks += len(rows)
        print(f"  compressed {chunks} chunks older than {cutoff} in {time.perf_counter() - t:.1f} s")


def print_sizes(url: str) -> None:
    """Table, index and total sizes of the store (and TimescaleDB compression when present)."""
    with open_connection(url) as conn:
        timescale = timescaledb_version(conn)
        print("sizes:")
        for table in ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels"):
            qualified = f"spy.{table}"
            if timescale:
                row = conn.execute(
                    "SELECT table_bytes, index_bytes, total_bytes FROM hypertable_detailed_size(%s)", [qualified]
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass), "
                    "pg_total_relation_size(%s::regclass)", [qualified] * 3
                ).fetchone()
            count = conn.execute(f"SELECT count(*) FROM {qualified}").fetchone()
            assert row is not None and count is not None
            mb = [(v or 0) / 2**20 for v in row]
            print(f"  {table:<24} {count[0]:>12,} rows  table {mb[0]:9.1f} MB  indexes {mb[1]:8.1f} MB  "
                  f"total {mb[2]:9.1f} MB")
            if timescale:
                stats = conn.execute(
                    "SELECT before_compression_total_bytes, after_compression_total_bytes "
                    "FROM hypertable_compression_stats(%s)", [qualified]
                ).fetchone()
                if stats and stats[0] and stats[1]:
                    print(f"  {'':<24} compression ratio {stats[0] / stats[1]:.1f}x")
        if not timescale:
            print("  (TimescaleDB not installed: plain PostgreSQL tables, no compression)")


def main() -> None:
    """Run the storage benchmarks and print the results."""
    history_days = int(os.environ.get("ZEROGEX_BENCH_HISTORY_DAYS", "252"))
    ingest_days = int(os.environ.get("ZEROGEX_BENCH_INGEST_DAYS", "5"))
    admin = os.environ.get("ZEROGEX_BENCH_DATABASE_URL", "").strip()
    cluster = None
    if not admin:
        cluster = ThrowawayCluster(durable=True).start()
        admin = cluster.url
    try:
        with psycopg.connect(admin) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
        print(f"== bench_storage: PostgreSQL {version[0] if version else '?'} at {redact_url(admin)} "
              f"(fsync={fsync[0] if fsync else '?'}), {os.cpu_count()} CPUs")
        use_timescale = os.environ.get("ZEROGEX_BENCH_TIMESCALEDB", "").strip() != "0"
        ingest_url = _db_url(admin, "zg_bench_ingest")
        tsdb = _enable_timescaledb(ingest_url) if use_timescale else None
        print(f"store: {'TimescaleDB ' + tsdb + ' hypertables' if tsdb else 'plain PostgreSQL tables'}")
        with open_connection(ingest_url) as conn:
            migrate(conn, "spy")
        rounds = int(os.environ.get("ZEROGEX_BENCH_ROUNDS", "3"))
        bench_ingest(ingest_url, ingest_days, ServerCpu(cluster), rounds)
        if history_days <= 0:
            return
        history_url = _db_url(admin, "zg_bench_history")
        if use_timescale:
            _enable_timescaledb(history_url)
        days = trading_days(history_days, END)
        print(f"history: loading {len(days)} SPY sessions {days[0]}..{days[-1]} (benchmarks.load_history)")
        stats = load_history(history_url, days, workers=os.cpu_count() or 2)
        print(f"  loaded in {stats.seconds:.1f} s (COPY {stats.copy_seconds:.1f} s): "
              + ", ".join(f"{k} {v:,}" for k, v in stats.rows.items()))
        compress_history(history_url, days[-1])
        source_day = days[len(days) // 2]
        with open_connection(history_url) as conn:
            exp = conn.execute(
                "SELECT min(expiration) FROM spy.gex_surface WHERE session_date = %s", [source_day]
            ).fetchone()
        assert exp is not None and exp[0] is not None
        bench_queries(history_url, source_day, exp[0])
        print_sizes(history_url)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
