"""Reading stored levels back for people: closing levels per day, the latest row, one day's intraday rows.

Each function reads the configured store (PostgreSQL when ``settings.database_url`` is set, else the
embedded DuckDB file) and returns frames in the ``gex_levels`` schema (timestamps tz-aware UTC; the
CLI shows them in America/New_York).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import duckdb
import pandas as pd
import psycopg

from zerogex_pipeline.schemas import GEX_LEVELS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_files import open_duckdb
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident
from zerogex_pipeline.underlyings import Underlying


def closing_levels(settings: Settings, underlying: Underlying, dates: Sequence[dt.date]) -> pd.DataFrame:
    """The last stored ``gex_levels`` row of each date (one row per date that has levels)."""
    if settings.database_url is not None:
        from zerogex_pipeline.storage import postgres_queries

        return _postgres(
            settings.database_url, underlying, lambda conn: postgres_queries.closing_levels(conn, underlying.key, dates)
        )
    return _duckdb(
        settings,
        underlying,
        "WHERE session_date IN (SELECT unnest(?::DATE[])) "
        "QUALIFY row_number() OVER (PARTITION BY session_date ORDER BY snapshot_ts DESC) = 1 "
        "ORDER BY session_date",
        [list(dates)],
    )


def latest_levels(settings: Settings, underlying: Underlying) -> pd.DataFrame:
    """The newest stored ``gex_levels`` row of ``underlying`` (zero rows when none is stored).

    PostgreSQL: a backward scan of the primary key (one row read, no history scan).
    """
    if settings.database_url is not None:
        from zerogex_pipeline.storage import postgres_queries

        return _postgres(settings.database_url, underlying, lambda conn: postgres_queries.latest_levels(conn, underlying.key))
    return _duckdb(settings, underlying, "ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1", [])


def intraday_levels(settings: Settings, underlying: Underlying, date: dt.date) -> pd.DataFrame:
    """Every stored ``gex_levels`` row of ``date`` (a trading day), oldest snapshot first."""
    if settings.database_url is not None:
        from zerogex_pipeline.storage import postgres_queries

        return _postgres(
            settings.database_url, underlying, lambda conn: postgres_queries.intraday_levels(conn, underlying.key, date)
        )
    return _duckdb(settings, underlying, "WHERE session_date = ? ORDER BY snapshot_ts", [date])


def _duckdb(settings: Settings, underlying: Underlying, clause: str, params: list[object]) -> pd.DataFrame:
    """``SELECT <gex_levels columns> FROM <underlying>.gex_levels <clause>`` on the embedded store."""
    cols = ", ".join(quote_ident(c) for c in GEX_LEVELS.column_names)
    table = f"{quote_ident(underlying.key)}.{quote_ident('gex_levels')}"
    # A run writing meanwhile holds the file's lock for one transaction at a time: wait for it, bounded.
    with open_duckdb(settings.duckdb_path, read_only=True) as conn:
        try:
            frame = conn.execute(f"SELECT {cols} FROM {table} {clause}", params).df()
        except duckdb.CatalogException:
            raise StorageError(f"{underlying.key}.gex_levels: no levels stored yet") from None
    return GEX_LEVELS.conform(frame)


def _postgres(
    url: str, underlying: Underlying, query: Callable[[psycopg.Connection], pd.DataFrame]
) -> pd.DataFrame:
    """``query`` on a fresh connection to the PostgreSQL store (errors are one line, password redacted)."""
    from zerogex_pipeline.storage.postgres_io_manager import describe_error, open_connection

    conn = open_connection(url)
    try:
        return query(conn)
    except psycopg.Error as exc:
        raise describe_error(exc, url, f"{underlying.key}.gex_levels") from None
    finally:
        conn.close()
