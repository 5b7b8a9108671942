"""What the store holds per partition, on either store: used by ``zerogex migrate`` to bring the Dagster instance's
partition status to what is stored, after the chain and surface moved from date × registered expiration to
date × expiration slot.

The embedded store's chain and surface tables are first brought to the declared tables (``ensure_table``: an older
store gains ``expiration_slot``); the PostgreSQL store has them from migration 0007.
"""

from __future__ import annotations

import pandas as pd
import psycopg
from dagster._core.storage.db_io_manager import TableSlice

from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_files import open_duckdb
from zerogex_pipeline.storage.postgres_migrations import TimescalePolicy
from zerogex_pipeline.storage.table_slices import quote_ident
from zerogex_pipeline.underlyings import Underlying

SLOTTED_TABLES = ("option_chain_snapshots", "gex_surface")


def _run(settings: Settings, underlying: Underlying, sql: str, columns: list[str],
         tables: tuple[str, ...]) -> pd.DataFrame:
    """``sql`` (``{table}`` placeholders filled per table, results concatenated with a ``table`` column)."""
    frames = []
    if settings.database_url is not None:
        from zerogex_pipeline.storage.postgres_io_manager import (
            describe_error,
            open_connection,
            prepare_schema,
        )

        conn = open_connection(settings.database_url)
        try:
            prepare_schema(conn, settings.database_url, underlying.key, True, TimescalePolicy())
            for table in tables:
                qualified = f"{quote_ident(underlying.key)}.{quote_ident(table)}"
                rows = conn.execute(sql.format(table=qualified).encode()).fetchall()
                frames.append(pd.DataFrame(rows, columns=columns).assign(table=table))
            conn.commit()
        except psycopg.Error as exc:
            raise describe_error(exc, settings.database_url, f"{underlying.key} partition inventory") from None
        finally:
            conn.close()
    else:
        if not settings.duckdb_path.exists():
            return pd.DataFrame(columns=[*columns, "table"])
        from zerogex_pipeline.storage.duckdb_io_manager import ensure_table, run_sql

        with open_duckdb(settings.duckdb_path) as dconn:
            present = {r[0] for r in run_sql(dconn, "SELECT table_name FROM information_schema.tables "
                                                   "WHERE table_schema = ?", [underlying.key])}
            for table in tables:
                if table not in present:
                    continue
                dconn.begin()
                ensure_table(dconn, TableSlice(table=table, schema=underlying.key, database="zerogex",
                                              partition_dimensions=None))
                dconn.commit()
                qualified = f"{quote_ident(underlying.key)}.{quote_ident(table)}"
                rows = run_sql(dconn, sql.format(table=qualified))
                frames.append(pd.DataFrame(rows, columns=columns).assign(table=table))
    if not frames:
        return pd.DataFrame(columns=[*columns, "table"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("session_date", "expiration"):
        if col in out:
            out[col] = pd.to_datetime(out[col]).dt.date
    return out


def stored_slots(settings: Settings, underlying: Underlying) -> pd.DataFrame:
    """One row per stored (table, session_date, expiration_slot, expiration) of the chain and surface tables, with
    ``rows``; the embedded store's tables are upgraded first (``expiration_slot`` added)."""
    sql = ("SELECT session_date, expiration_slot, expiration, count(*) FROM {table} "
           "GROUP BY session_date, expiration_slot, expiration ORDER BY session_date, expiration_slot")
    return _run(settings, underlying, sql, ["session_date", "expiration_slot", "expiration", "rows"], SLOTTED_TABLES)


def stored_levels_expirations(settings: Settings, underlying: Underlying) -> pd.DataFrame:
    """Per stored levels date: the fewest and most expirations a row aggregates, and the distinct lists."""
    sql = ("SELECT session_date, min(expirations), max(expirations), string_agg(DISTINCT expiration_list, ' | ') "
           "FROM {table} GROUP BY session_date ORDER BY session_date")
    return _run(settings, underlying, sql, ["session_date", "min_expirations", "max_expirations", "lists"],
                ("gex_levels",))
