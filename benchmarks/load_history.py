"""Bulk-load simulated history into the PostgreSQL store, bypassing Dagster for speed.

Per trading day it computes exactly what the assets compute (bars, chain snapshots of the nearest
``expirations`` expirations, the GEX surface, the levels; same simulator and analytics), encodes
each table with the binary ``COPY`` encoder in worker processes, and writes the day in one
transaction (``DELETE`` the day, ``COPY``), so re-loading a range is idempotent. Tables come from the
store's migrations (and, with the TimescaleDB extension in the database, the same hypertable layout),
so the result is what the IO manager would have written, minus Dagster's run bookkeeping.

    ZEROGEX_DATABASE_URL=postgresql://... python -m benchmarks.load_history --days 252

Simulation and analytics dominate (about 2 CPU-seconds per SPY day at the default 5-minute
snapshots, 3 expirations, ±10% strikes); ``--workers`` spreads them over processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import psycopg

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.levels import build_levels
from zerogex_pipeline.analytics.surface import build_surface
from zerogex_pipeline.schemas import (
    GEX_LEVELS,
    GEX_SURFACE,
    OPTION_CHAIN_SNAPSHOTS,
    UNDERLYING_BARS,
    AssetSchema,
)
from zerogex_pipeline.sources.base import spots_from_bars
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.storage.postgres_copy import encode_binary_copy
from zerogex_pipeline.storage.postgres_io_manager import open_connection
from zerogex_pipeline.storage.postgres_migrations import (
    TimescalePolicy,
    apply_timescaledb,
    migrate,
    timescaledb_version,
)
from zerogex_pipeline.storage.table_slices import quote_ident
from zerogex_pipeline.underlyings import resolve_underlying

TABLES: tuple[AssetSchema, ...] = (UNDERLYING_BARS, OPTION_CHAIN_SNAPSHOTS, GEX_SURFACE, GEX_LEVELS)


@dataclass
class LoadStats:
    """What a history load did: days, rows per table, and wall-clock seconds (total and in COPY)."""

    days: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    copy_seconds: float = 0.0


def day_frames(
    underlying_name: str, date: dt.date, expirations: int = 3, snapshot_minutes: int = 5,
    strike_distance_pct: float = 10.0, risk_free_rate: float = 0.04,
) -> dict[str, pd.DataFrame]:
    """The four tables' rows of one trading day, as the assets compute them (conformed)."""
    underlying = resolve_underlying(underlying_name)
    source = SimulatedMarket()
    session = market_calendar.session(date)
    bars = UNDERLYING_BARS.conform(source.underlying_bars(underlying, session, 1))
    spots = spots_from_bars(bars, session.snapshot_times(snapshot_minutes))
    chains, surfaces = [], []
    for slot, expiration in enumerate(source.listed_expirations(underlying, date)[:expirations], start=1):
        chain = OPTION_CHAIN_SNAPSHOTS.conform(
            source.chain_snapshots(underlying, session, expiration, spots, strike_distance_pct)
            .assign(expiration_slot=slot)
        )
        chains.append(chain)
        surfaces.append(GEX_SURFACE.conform(
            build_surface(chain, risk_free_rate, underlying.dividend_yield).assign(expiration_slot=slot)))
    surface = pd.concat(surfaces, ignore_index=True)
    return {
        UNDERLYING_BARS.name: bars,
        OPTION_CHAIN_SNAPSHOTS.name: pd.concat(chains, ignore_index=True),
        GEX_SURFACE.name: surface,
        GEX_LEVELS.name: GEX_LEVELS.conform(build_levels(surface)),
    }


def _encoded_day(args: tuple[str, dt.date, int, int]) -> tuple[dt.date, dict[str, tuple[int, bytes]]]:
    name, date, expirations, snapshot_minutes = args
    frames = day_frames(name, date, expirations, snapshot_minutes)
    return date, {s.name: (len(frames[s.name]), encode_binary_copy(frames[s.name], s)) for s in TABLES}


def _copy_day(conn: psycopg.Connection, schema: str, date: dt.date, payloads: dict[str, tuple[int, bytes]]) -> None:
    with conn.transaction():
        for s in TABLES:
            table = f"{quote_ident(schema)}.{quote_ident(s.name)}"
            conn.execute(f"DELETE FROM {table} WHERE session_date = %s".encode(), [date])
            cols = ", ".join(quote_ident(c) for c in s.column_names)
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)".encode()) as cp:
                cp.write(payloads[s.name][1])


def trading_days(count: int, end: dt.date) -> list[dt.date]:
    """The ``count`` NYSE sessions ending on or before ``end``, oldest first."""
    days: list[dt.date] = []
    day = market_calendar.previous_session_on_or_before(end)
    while len(days) < count:
        days.append(day)
        day = market_calendar.previous_session_on_or_before(day - dt.timedelta(days=1))
    return sorted(days)


def load_history(
    url: str, days: Sequence[dt.date], underlying: str = "SPY", workers: int = 2,
    expirations: int = 3, snapshot_minutes: int = 5, progress: bool = True,
) -> LoadStats:
    """Load ``days`` of simulated ``underlying`` history into ``url`` (idempotent per day)."""
    stats = LoadStats(rows={s.name: 0 for s in TABLES})
    schema = resolve_underlying(underlying).key
    started = time.perf_counter()
    conn = open_connection(url)
    try:
        migrate(conn, schema)
        if timescaledb_version(conn) is not None:  # the same layout the IO manager sets up
            apply_timescaledb(conn, schema, TimescalePolicy())
        jobs = [(underlying, d, expirations, snapshot_minutes) for d in days]
        results: Iterator[tuple[dt.date, dict[str, tuple[int, bytes]]]]
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(_encoded_day, jobs, chunksize=1)
            for date, payloads in results:
                t = time.perf_counter()
                _copy_day(conn, schema, date, payloads)
                stats.copy_seconds += time.perf_counter() - t
                stats.days += 1
                for name, (n, _) in payloads.items():
                    stats.rows[name] += n
                if progress and stats.days % 20 == 0:
                    rate = stats.days / (time.perf_counter() - started)
                    print(f"  loaded {stats.days}/{len(days)} days ({rate:.2f} days/s)", flush=True)
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()
    stats.seconds = time.perf_counter() - started
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: load ``--days`` sessions ending ``--end`` into ``$ZEROGEX_DATABASE_URL``."""
    parser = argparse.ArgumentParser(description="Load simulated history into the PostgreSQL store.")
    parser.add_argument("--days", type=int, default=252, help="trading days to load (252 = a year)")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 12, 31))
    parser.add_argument("--underlying", default="SPY")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    url = os.environ.get("ZEROGEX_DATABASE_URL", "").strip()
    if not url:
        parser.error("set ZEROGEX_DATABASE_URL=postgresql://...")
    stats = load_history(url, trading_days(args.days, args.end), args.underlying, args.workers)
    print(f"loaded {stats.days} days in {stats.seconds:.1f}s (COPY {stats.copy_seconds:.1f}s): {stats.rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
