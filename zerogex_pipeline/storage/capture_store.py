"""The stream capture and the live levels: what ``zerogex stream`` writes and what the assets, the CLI and the
live screen read back.

Tables (one set per underlying schema, declared in :mod:`zerogex_pipeline.schemas`): ``captured_quotes`` (one
row per contract and snapshot instant), ``captured_bars`` (the underlying's closed bars from its bar stream)
and ``live_levels`` (one row per ``--interval`` computation).

Writes are **append-only and idempotent**: ``INSERT ... ON CONFLICT DO NOTHING`` on the primary key, so a
snapshot instant is stored once, a restarted engine re-sending it adds nothing, and nothing ever overwrites a
captured row. One :meth:`CaptureStore.write` call is one transaction (every underlying's rows of that moment),
so a crash leaves whole instants or nothing.

Where: on PostgreSQL (``ZEROGEX_DATABASE_URL``) the tables sit beside the assets' tables and come from the
migrations (hypertables with compression under TimescaleDB); ``ON CONFLICT DO NOTHING`` on the primary key
keeps them idempotent. In the embedded default they live in their own DuckDB file,
``$ZEROGEX_DATA_DIR/live.duckdb``: DuckDB lets one process at a time hold a file, a Dagster run holds
``zerogex.duckdb`` for the seconds a partition write takes, and the engine must commit every few seconds; in a
file of their own, each side holds it for milliseconds (one short transaction per open). Those DuckDB tables
have no primary-key index: DuckDB loads a table's whole index at a connection's first insert (measured 40 ms
for a day of live levels, growing with the table), so a write instead skips the instants already stored
(:data:`INSTANT_KEYS`, found through the row groups' min/max statistics, as rows arrive in time order).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import psycopg

from zerogex_pipeline.schemas import CAPTURED_BARS, CAPTURED_QUOTES, LIVE_LEVELS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_files import DEFAULT_WAIT_S, open_duckdb
from zerogex_pipeline.storage.table_slices import StorageError, is_conformed, quote_ident
from zerogex_pipeline.underlyings import Underlying

CAPTURE_FILE = "live.duckdb"
SMALL_INSERT_ROWS = 16
"""Up to this many rows go in as bound VALUES; more are scanned from the frame (cheaper per row, costlier to set up)."""
INSTANT_KEYS = {"captured_quotes": ("session_date", "expiration", "snapshot_ts"), "captured_bars": ("session_date", "ts"),
                "live_levels": ("session_date", "snapshot_ts")}
"""What one write is idempotent per, in the embedded store: an expiration's snapshot instant, a bar, a levels row."""
_TABLES_MADE: set[tuple[str, str]] = set()
"""(embedded file, underlying key) whose capture tables this process has made sure of."""


@dataclass
class CaptureBatch:
    """Rows of one moment to append, per underlying key (``spy``): any of the three tables may be empty."""

    quotes: dict[str, pd.DataFrame] = field(default_factory=dict)
    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    levels: dict[str, pd.DataFrame] = field(default_factory=dict)

    def tables(self) -> Iterator[tuple[str, AssetSchema, pd.DataFrame]]:
        """``(underlying key, schema, rows)`` of every non-empty frame."""
        for frames, schema in ((self.quotes, CAPTURED_QUOTES), (self.bars, CAPTURED_BARS),
                               (self.levels, LIVE_LEVELS)):
            for key, frame in frames.items():
                if not frame.empty:
                    yield key, schema, frame


class CaptureStore:
    """The capture tables of the configured store (see the module docstring).

    Args:
        settings: picks PostgreSQL (``database_url``) or the embedded file under ``data_dir``.
        wait_s: embedded store only: seconds an opener waits while another process holds the file.
    """

    def __init__(self, settings: Settings, wait_s: float = DEFAULT_WAIT_S) -> None:
        self.settings = settings
        self.wait_s = wait_s
        self._pg: psycopg.Connection | None = None
        self._ready: set[str] = set()

    @property
    def kind(self) -> str:
        """``postgres`` or ``duckdb``."""
        return "postgres" if self.settings.database_url else "duckdb"

    @property
    def location(self) -> str:
        """Where the tables are, for messages (the PostgreSQL URL is shown without its password)."""
        if self.settings.database_url:
            from zerogex_pipeline.storage.postgres_io_manager import redact_url

            return redact_url(self.settings.database_url)
        return str(self.settings.data_dir / CAPTURE_FILE)

    def close(self) -> None:
        """Close the PostgreSQL connection kept between writes (no-op for the embedded file)."""
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    # ------------------------------------------------------------------ writes
    def write(self, batch: CaptureBatch) -> dict[str, int]:
        """Append ``batch`` in one transaction; return the rows actually inserted per table.

        Rows whose primary key is already stored are skipped (never updated).

        Raises:
            StorageError: the store refused the write (nothing of the batch is stored).
        """
        inserted: dict[str, int] = {}
        parts = list(batch.tables())
        if not parts:
            return inserted
        with self._transaction({key for key, _, _ in parts}) as (kind, conn):
            for key, schema, frame in parts:
                rows = frame if is_conformed(schema, frame) else schema.conform(frame)
                repeated = rows.duplicated(list(schema.primary_key))
                if repeated.any():
                    first = rows.loc[repeated, list(schema.primary_key)].iloc[0].to_dict()
                    raise StorageError(f"{key}.{schema.name}: {int(repeated.sum())} rows repeat a primary key "
                                       f"within one write (first: {first}); nothing of this write was stored")
                n = (_insert_new_duckdb if kind == "duckdb" else _insert_new_postgres)(conn, key, schema, rows)
                inserted[schema.name] = inserted.get(schema.name, 0) + n
        return inserted

    # ------------------------------------------------------------------ reads
    def captured_quotes(self, underlying: Underlying, session_date: dt.date,
                        expiration: dt.date | None = None) -> pd.DataFrame:
        """Captured rows of one day (and one expiration), ordered by snapshot, strike and symbol."""
        where = "session_date = %s" + ("" if expiration is None else " AND expiration = %s")
        params: list[Any] = [session_date] + ([] if expiration is None else [expiration])
        return self._select(underlying, CAPTURED_QUOTES, where, params, "snapshot_ts, strike, symbol")

    def captured_bars(self, underlying: Underlying, session_date: dt.date) -> pd.DataFrame:
        """Captured bars of one day, oldest first."""
        return self._select(underlying, CAPTURED_BARS, "session_date = %s", [session_date], "ts")

    def captured_instants(self, underlying: Underlying, session_date: dt.date) -> pd.DataFrame:
        """``expiration``, ``snapshot_ts`` and ``contracts`` of every captured snapshot of one day."""
        sql = ("SELECT expiration, snapshot_ts, count(*) FROM {table} WHERE session_date = %s "
               "GROUP BY expiration, snapshot_ts ORDER BY snapshot_ts, expiration")
        rows = self._rows(underlying, CAPTURED_QUOTES, sql, [session_date])
        frame = pd.DataFrame(rows, columns=["expiration", "snapshot_ts", "contracts"])
        frame["expiration"] = pd.to_datetime(frame["expiration"]).astype("datetime64[ns]")
        frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
        frame["contracts"] = frame["contracts"].astype("int64")
        return frame

    def live_levels(self, underlying: Underlying, session_date: dt.date | None = None,
                    since: pd.Timestamp | None = None, latest: bool = False) -> pd.DataFrame:
        """Live-levels rows: of one day and/or after ``since`` (oldest first), or only the newest (``latest``)."""
        clauses, params = [], []
        if session_date is not None:
            clauses.append("session_date = %s")
            params.append(session_date)
        if since is not None:
            clauses.append("snapshot_ts > %s")
            params.append(pd.Timestamp(since).tz_convert("UTC").to_pydatetime())
        where = " AND ".join(clauses) or "TRUE"
        if latest:
            return self._select(underlying, LIVE_LEVELS, where, params,
                                "session_date DESC, snapshot_ts DESC LIMIT 1")
        return self._select(underlying, LIVE_LEVELS, where, params, "snapshot_ts")

    def _select(self, underlying: Underlying, schema: AssetSchema, where: str, params: Sequence[Any],
                order: str) -> pd.DataFrame:
        cols = ", ".join(quote_ident(c) for c in schema.column_names)
        sql = f"SELECT {cols} FROM {{table}} WHERE {where} ORDER BY {order}"
        if self.kind == "postgres":
            from zerogex_pipeline.storage.postgres_io_manager import frame_from_rows

            return frame_from_rows(self._rows(underlying, schema, sql, params), schema)
        with self._duckdb_read(underlying.key, schema) as conn:
            if conn is None:
                return schema.empty_frame()
            frame = conn.execute(sql.format(table=_table(underlying.key, schema)).replace("%s", "?"),
                                 list(params)).df()
        return schema.conform(frame)

    def _rows(self, underlying: Underlying, schema: AssetSchema, sql: str, params: Sequence[Any]
              ) -> list[tuple[Any, ...]]:
        statement = sql.format(table=_table(underlying.key, schema))
        if self.kind == "postgres":
            with self._transaction({underlying.key}) as (_, conn), conn.cursor() as cur:
                cur.execute(statement.encode(), list(params))
                return list(cur.fetchall())
        with self._duckdb_read(underlying.key, schema) as dconn:
            if dconn is None:
                return []
            return list(dconn.execute(statement.replace("%s", "?"), list(params)).fetchall())

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _transaction(self, keys: set[str]) -> Iterator[tuple[str, Any]]:
        if self.settings.database_url:
            url = self.settings.database_url
            from zerogex_pipeline.storage.postgres_io_manager import (
                describe_error,
                open_connection,
                prepare_schema,
            )
            from zerogex_pipeline.storage.postgres_migrations import TimescalePolicy

            if self._pg is None or self._pg.closed:
                self._pg = open_connection(url)
            conn = self._pg
            try:
                for key in sorted(keys - self._ready):
                    prepare_schema(conn, url, key, True, TimescalePolicy())
                    self._ready.add(key)
                with conn.transaction():
                    yield "postgres", conn
            except psycopg.Error as exc:
                self.close()
                raise describe_error(exc, url, f"capture store ({', '.join(sorted(keys))})") from None
            return
        path = self.settings.data_dir / CAPTURE_FILE
        dconn = open_duckdb(path, read_only=False, wait_s=self.wait_s)
        try:
            for key in sorted(keys):
                if (str(path), key) not in _TABLES_MADE:
                    ensure_capture_tables(dconn, key)
                    _TABLES_MADE.add((str(path), key))
            dconn.begin()
            try:
                yield "duckdb", dconn
            except BaseException:
                dconn.rollback()
                raise
            dconn.commit()
        except duckdb.Error as exc:
            raise StorageError(f"{path}: capture store write failed: {exc}") from None
        finally:
            dconn.close()

    @contextmanager
    def _duckdb_read(self, key: str, schema: AssetSchema) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only connection, or ``None`` when nothing was captured yet (no file or no table)."""
        path = self.settings.data_dir / CAPTURE_FILE
        if not path.exists():
            yield None
            return
        conn = open_duckdb(path, read_only=True, wait_s=self.wait_s)
        try:
            found = conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                                 [key, schema.name]).fetchall()
            yield conn if found else None
        except duckdb.Error as exc:
            raise StorageError(f"{path}: capture store read failed: {exc}") from None
        finally:
            conn.close()


def _table(key: str, schema: AssetSchema) -> str:
    return f"{quote_ident(key)}.{quote_ident(schema.name)}"


def ensure_capture_tables(conn: duckdb.DuckDBPyConnection, key: str) -> None:
    """Create the underlying's schema and capture tables in the embedded capture file if missing (no key index)."""
    from zerogex_pipeline.schemas import SQL_TYPE
    from zerogex_pipeline.storage.duckdb_io_manager import run_sql

    run_sql(conn, f"CREATE SCHEMA IF NOT EXISTS {quote_ident(key)}")
    for schema in (CAPTURED_QUOTES, CAPTURED_BARS, LIVE_LEVELS):
        cols = ", ".join(f"{quote_ident(c.name)} {SQL_TYPE[c.kind]}{'' if c.nullable else ' NOT NULL'}"
                         for c in schema.columns)
        run_sql(conn, f"CREATE TABLE IF NOT EXISTS {_table(key, schema)} ({cols})")


def _insert_new_duckdb(conn: duckdb.DuckDBPyConnection, key: str, schema: AssetSchema, rows: pd.DataFrame) -> int:
    """Insert the rows of ``rows`` whose instant (:data:`INSTANT_KEYS`) is not stored yet; return how many."""
    table = _table(key, schema)
    instant = list(INSTANT_KEYS[schema.name])
    wanted = rows[instant].drop_duplicates()
    days = sorted({pd.Timestamp(d).date() for d in wanted["session_date"]})
    last = instant[-1]
    stamps = [pd.Timestamp(t).to_pydatetime() for t in wanted[last]]
    stored = conn.execute(
        f"SELECT DISTINCT {', '.join(quote_ident(c) for c in instant)} FROM {table} "
        f"WHERE session_date IN (SELECT unnest(?::DATE[])) AND {quote_ident(last)} IN (SELECT unnest(?::TIMESTAMPTZ[]))",
        [days, stamps]).df()
    if len(stored):
        for c in instant:
            stored[c] = (pd.to_datetime(stored[c], utc=True).astype("datetime64[ns, UTC]") if c in ("snapshot_ts", "ts")
                         else pd.to_datetime(stored[c]).astype("datetime64[ns]"))
        taken = rows[instant].merge(stored.assign(_taken=True), on=instant, how="left")["_taken"].fillna(False)
        rows = rows[~taken.to_numpy(bool)]
    if rows.empty:
        return 0
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    if len(rows) <= SMALL_INSERT_ROWS:
        marks = ", ".join("?" * len(schema.column_names))
        values = ", ".join(f"({marks})" for _ in range(len(rows)))
        params = [None if _missing(v) else (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v)
                  for record in rows.itertuples(index=False) for v in record]
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES {values}", params).fetchall()
        return len(rows)
    conn.register("zerogex_capture", rows)
    try:
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM zerogex_capture").fetchall()
    finally:
        conn.unregister("zerogex_capture")
    return len(rows)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _insert_new_postgres(conn: psycopg.Connection, key: str, schema: AssetSchema, rows: pd.DataFrame) -> int:
    from zerogex_pipeline.storage.postgres_io_manager import copy_frame

    staging = quote_ident(f"zerogex_incoming_{schema.name}")
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {_table(key, schema)}) "
                    "ON COMMIT DELETE ROWS".encode())
        cur.execute(f"TRUNCATE {staging}".encode())
        copy_frame(cur, staging, rows, schema)
        cur.execute(f"INSERT INTO {_table(key, schema)} ({cols}) SELECT {cols} FROM {staging} "
                    "ON CONFLICT DO NOTHING".encode())
        return int(cur.rowcount)


def latest_live_levels(settings: Settings, underlyings: Sequence[Underlying]) -> Mapping[str, pd.DataFrame]:
    """The newest live-levels row of each underlying (zero rows where none is stored), one store session."""
    store = CaptureStore(settings)
    try:
        return {u.name: store.live_levels(u, latest=True) for u in underlyings}
    finally:
        store.close()
