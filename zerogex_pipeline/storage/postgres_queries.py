"""Read paths of the PostgreSQL store, each answered from a primary-key index (no history scan).

- :func:`latest_levels`: the newest ``gex_levels`` row of an underlying (backward scan of the
  ``(session_date, snapshot_ts)`` primary key, one row read).
- :func:`latest_snapshot`: every contract of the newest chain snapshot (newest ``session_date``
  from the primary key, then that day's newest ``snapshot_ts``; reads one day, not the history).
- :func:`intraday_levels`: one trading day's levels, oldest first (primary-key prefix).
- :func:`day_surface`: one day's GEX surface of one expiration (primary-key prefix
  ``session_date, expiration``).
- :func:`closing_levels`: the last levels row of each asked date.

The schema is the underlying's key (``spy``). Frames are conformed to the declared schemas
(timestamps tz-aware UTC; convert with ``.dt.tz_convert("America/New_York")`` to show them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
import psycopg
from psycopg import errors as pg_errors

from zerogex_pipeline.schemas import GEX_LEVELS, GEX_SURFACE, OPTION_CHAIN_SNAPSHOTS, AssetSchema
from zerogex_pipeline.storage.postgres_io_manager import read_frame
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident


def _cols(schema: AssetSchema) -> str:
    return ", ".join(quote_ident(c) for c in schema.column_names)


def _table(underlying_key: str, table: str) -> str:
    return f"{quote_ident(underlying_key)}.{quote_ident(table)}"


def _read(conn: psycopg.Connection, query: str, params: Sequence[object], schema: AssetSchema, what: str) -> pd.DataFrame:
    try:
        return read_frame(conn, query, params, schema)
    except pg_errors.UndefinedTable:
        conn.rollback()
        raise StorageError(f"{what}: no such table yet (nothing materialized into PostgreSQL)") from None


def latest_levels(conn: psycopg.Connection, underlying_key: str) -> pd.DataFrame:
    """The newest levels row of ``underlying_key`` (zero rows when none is stored)."""
    table = _table(underlying_key, "gex_levels")
    return _read(
        conn,
        f"SELECT {_cols(GEX_LEVELS)} FROM {table} ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1",
        [],
        GEX_LEVELS,
        f"{underlying_key}.gex_levels",
    )


def intraday_levels(conn: psycopg.Connection, underlying_key: str, date: dt.date) -> pd.DataFrame:
    """Every levels row of ``date`` (a trading day, America/New_York), by snapshot time."""
    table = _table(underlying_key, "gex_levels")
    return _read(
        conn,
        f"SELECT {_cols(GEX_LEVELS)} FROM {table} WHERE session_date = %s ORDER BY snapshot_ts",
        [date],
        GEX_LEVELS,
        f"{underlying_key}.gex_levels",
    )


def day_surface(conn: psycopg.Connection, underlying_key: str, date: dt.date, expiration: dt.date) -> pd.DataFrame:
    """The GEX surface of ``expiration`` on ``date``, by snapshot time and strike."""
    table = _table(underlying_key, "gex_surface")
    return _read(
        conn,
        f"SELECT {_cols(GEX_SURFACE)} FROM {table} WHERE session_date = %s AND expiration = %s "
        "ORDER BY snapshot_ts, strike",
        [date, expiration],
        GEX_SURFACE,
        f"{underlying_key}.gex_surface",
    )


def latest_snapshot(conn: psycopg.Connection, underlying_key: str) -> pd.DataFrame:
    """Every contract (all expirations) of the newest stored chain snapshot of ``underlying_key``."""
    table = _table(underlying_key, "option_chain_snapshots")
    return _read(
        conn,
        f"WITH d AS (SELECT max(session_date) AS day FROM {table}), "
        f"t AS (SELECT max(snapshot_ts) AS ts FROM {table} WHERE session_date = (SELECT day FROM d)) "
        f"SELECT {_cols(OPTION_CHAIN_SNAPSHOTS)} FROM {table} "
        "WHERE session_date = (SELECT day FROM d) AND snapshot_ts = (SELECT ts FROM t) "
        "ORDER BY expiration, symbol",
        [],
        OPTION_CHAIN_SNAPSHOTS,
        f"{underlying_key}.option_chain_snapshots",
    )


def closing_levels(conn: psycopg.Connection, underlying_key: str, dates: Sequence[dt.date]) -> pd.DataFrame:
    """The last levels row of each of ``dates`` that has levels, by date."""
    table = _table(underlying_key, "gex_levels")
    return _read(
        conn,
        f"SELECT DISTINCT ON (session_date) {_cols(GEX_LEVELS)} FROM {table} "
        "WHERE session_date = ANY(%s) ORDER BY session_date, snapshot_ts DESC",
        [list(dates)],
        GEX_LEVELS,
        f"{underlying_key}.gex_levels",
    )
