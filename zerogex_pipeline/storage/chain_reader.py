"""Reading back stored ``option_chain_snapshots`` rows of one partition, on either store.

During today's session the chain asset re-uses the rows it rebuilt historically in an earlier refresh of the
same partition (a capture gap filled from bars stays filled), instead of asking the source again at every
intraday refresh. Only ``origin = 'historical'`` rows at the asked instants are returned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import pandas as pd
import psycopg

from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_files import open_duckdb
from zerogex_pipeline.storage.table_slices import quote_ident
from zerogex_pipeline.underlyings import Underlying


def stored_historical_rows(settings: Settings, underlying: Underlying, date: dt.date, expiration: dt.date,
                           instants: Sequence[pd.Timestamp]) -> pd.DataFrame:
    """Stored historical chain rows of ``(date, expiration)`` at ``instants`` (empty when none or no table)."""
    if not instants:
        return OPTION_CHAIN_SNAPSHOTS.empty_frame()
    cols = ", ".join(quote_ident(c) for c in OPTION_CHAIN_SNAPSHOTS.column_names)
    table = f"{quote_ident(underlying.key)}.{quote_ident('option_chain_snapshots')}"
    stamps = [pd.Timestamp(t).tz_convert("UTC").to_pydatetime() for t in instants]
    sql = (f"SELECT {cols} FROM {table} WHERE session_date = %s AND expiration = %s AND origin = 'historical' "
           "AND snapshot_ts = ANY(%s) ORDER BY snapshot_ts, strike, symbol")
    if settings.database_url is not None:
        from zerogex_pipeline.storage.postgres_io_manager import describe_error, open_connection, read_frame

        conn = open_connection(settings.database_url)
        try:
            return read_frame(conn, sql, [date, expiration, stamps], OPTION_CHAIN_SNAPSHOTS)
        except psycopg.errors.UndefinedTable:
            return OPTION_CHAIN_SNAPSHOTS.empty_frame()
        except psycopg.Error as exc:
            raise describe_error(exc, settings.database_url, f"{underlying.key}.option_chain_snapshots") from None
        finally:
            conn.close()
    if not settings.duckdb_path.exists():
        return OPTION_CHAIN_SNAPSHOTS.empty_frame()
    dconn = open_duckdb(settings.duckdb_path, read_only=True)
    try:
        frame = dconn.execute(sql.replace("%s", "?").replace("= ANY(?)", "IN (SELECT unnest(?::TIMESTAMPTZ[]))"),
                              [date, expiration, stamps]).df()
    except duckdb.CatalogException:
        return OPTION_CHAIN_SNAPSHOTS.empty_frame()
    except duckdb.BinderException:  # a store made before the origin column: nothing historical to re-use
        return OPTION_CHAIN_SNAPSHOTS.empty_frame()
    finally:
        dconn.close()
    return OPTION_CHAIN_SNAPSHOTS.conform(frame)
