"""The stream capture and the live levels: what ``zerogex stream`` writes and what the assets, the CLI and the
live screen read back.

Tables (declared in :mod:`zerogex_pipeline.schemas`): ``captured_quotes`` (one row per contract and snapshot
instant), ``captured_bars`` (the underlying's closed bars from its bar stream) and ``live_levels`` (one row per
``--interval`` computation), one set per underlying.

Writes are **append-only and idempotent**: insert-or-ignore on the primary key, so a snapshot instant is stored
once, a restarted engine re-sending it adds nothing, and nothing ever overwrites a captured row. One
:meth:`CaptureStore.write` call is one transaction (every underlying's rows of that moment), so a crash leaves
whole instants or nothing.

Where:

- **PostgreSQL** (``ZEROGEX_DATABASE_URL``): beside the assets' tables, in the underlying's schema, from the
  migrations (hypertables with compression under TimescaleDB); ``INSERT ... ON CONFLICT DO NOTHING``.
- **Embedded default**: an SQLite file of its own, ``$ZEROGEX_DATA_DIR/live.sqlite`` (tables ``spy__captured_quotes``
  and so on), in write-ahead-log mode. The engine commits every few seconds and Dagster runs, the CLI and the live
  screen read while it does. The asset store's DuckDB file lets one process at a time hold it, and opening and
  closing it costs 50 ms median (measured, more under load) against a 50 ms budget per computation; in WAL mode
  SQLite readers never block the writer nor the writer them, a commit takes about a millisecond, and the
  primary-key index lives on disk (no per-connection load). Instants are stored as int64 nanoseconds (UTC),
  dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from zerogex_pipeline.schemas import CAPTURED_BARS, CAPTURED_QUOTES, LIVE_LEVELS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.table_slices import StorageError, is_conformed, quote_ident
from zerogex_pipeline.underlyings import Underlying

log = logging.getLogger(__name__)

CAPTURE_FILE = "live.sqlite"
DEFAULT_WAIT_S = 30.0
_SQLITE_TYPE = {"text": "TEXT", "date": "TEXT", "timestamptz": "INTEGER", "double": "REAL", "bigint": "INTEGER"}
_TABLES = (CAPTURED_QUOTES, CAPTURED_BARS, LIVE_LEVELS)


@dataclass
class CaptureBatch:
    """Rows of one moment to append, per underlying key (``spy``): any of the three tables may be empty."""

    quotes: dict[str, pd.DataFrame] = field(default_factory=dict)
    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    levels: dict[str, pd.DataFrame | list[dict[str, Any]]] = field(default_factory=dict)
    """Live-levels rows as a frame, or as records with every ``LIVE_LEVELS`` column (the engine's own rows: a
    frame of one row costs more to build than the rest of the write)."""

    def tables(self) -> Iterator[tuple[str, AssetSchema, pd.DataFrame | list[dict[str, Any]]]]:
        """``(underlying key, schema, rows)`` of every non-empty frame or record list."""
        for frames, schema in ((self.quotes, CAPTURED_QUOTES), (self.bars, CAPTURED_BARS),
                               (self.levels, LIVE_LEVELS)):
            for key, frame in frames.items():
                if len(frame):
                    yield key, schema, frame


class CaptureStore:
    """The capture tables of the configured store (see the module docstring).

    Args:
        settings: picks PostgreSQL (``database_url``) or the embedded file under ``data_dir``.
        wait_s: embedded store: seconds a writer waits for another writer's transaction to end.
        read_retry_s: PostgreSQL: seconds a read keeps retrying a lost or refused connection (a server restart);
            0 (the default, for the screens and commands) fails at once. The pipeline's assets pass
            ``RETRY_SECONDS``, as their IO manager does.
    """

    def __init__(self, settings: Settings, wait_s: float = DEFAULT_WAIT_S, read_retry_s: float = 0.0) -> None:
        self.settings = settings
        self.wait_s = wait_s
        self.read_retry_s = read_retry_s
        self._pg: psycopg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        """``postgres`` or ``sqlite``."""
        return "postgres" if self.settings.database_url else "sqlite"

    @property
    def path(self) -> Path:
        """The embedded capture file."""
        return self.settings.data_dir / CAPTURE_FILE

    @property
    def location(self) -> str:
        """Where the tables are, for messages (the PostgreSQL URL is shown without its password)."""
        if self.settings.database_url:
            from zerogex_pipeline.storage.postgres_io_manager import redact_url

            return redact_url(self.settings.database_url)
        return str(self.path)

    def close(self) -> None:
        """Close the connection kept between calls."""
        with self._lock:
            if self._pg is not None:
                self._pg.close()
                self._pg = None
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None

    # ------------------------------------------------------------------ writes
    def write(self, batch: CaptureBatch) -> dict[str, int]:
        """Append ``batch`` in one transaction; return the rows actually inserted per table.

        Rows whose primary key is already stored are skipped (never updated).

        Raises:
            StorageError: the store refused the write (nothing of the batch is stored).
        """
        inserted: dict[str, int] = {}
        parts = []
        for key, schema, frame in batch.tables():
            if isinstance(frame, list):
                if self.kind == "sqlite" and len({tuple(r[c] for c in schema.primary_key) for r in frame}) == len(frame):
                    parts.append((key, schema, frame))
                    continue
                frame = pd.DataFrame.from_records(frame)
            rows = frame if is_conformed(schema, frame) else schema.conform(frame)
            repeated = rows.duplicated(list(schema.primary_key))
            if repeated.any():
                first = rows.loc[repeated, list(schema.primary_key)].iloc[0].to_dict()
                raise StorageError(f"{key}.{schema.name}: {int(repeated.sum())} rows repeat a primary key within "
                                   f"one write (first: {first}); nothing of this write was stored")
            parts.append((key, schema, rows))
        if not parts:
            return inserted
        with self._write_transaction({key for key, _, _ in parts}) as conn:
            for key, schema, rows in parts:
                if self.kind == "sqlite":
                    n = _insert_new_sqlite(conn, key, schema, rows)
                else:
                    n = _insert_new_postgres(conn, key, schema, rows)
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
        stamps = frame["snapshot_ts"]
        frame["snapshot_ts"] = (pd.to_datetime(stamps.astype("int64"), unit="ns", utc=True) if self.kind == "sqlite"
                                else pd.to_datetime(stamps, utc=True)).astype("datetime64[ns, UTC]")
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
            params.append(pd.Timestamp(since).tz_convert("UTC"))
        where = " AND ".join(clauses) or "1 = 1"
        if latest:
            return self._select(underlying, LIVE_LEVELS, where, params,
                                "session_date DESC, snapshot_ts DESC LIMIT 1")
        return self._select(underlying, LIVE_LEVELS, where, params, "snapshot_ts")

    def _select(self, underlying: Underlying, schema: AssetSchema, where: str, params: Sequence[Any],
                order: str) -> pd.DataFrame:
        cols = ", ".join(quote_ident(c) for c in schema.column_names)
        sql = f"SELECT {cols} FROM {{table}} WHERE {where} ORDER BY {order}"
        rows = self._rows(underlying, schema, sql, params)
        if self.kind == "postgres":
            from zerogex_pipeline.storage.postgres_io_manager import frame_from_rows

            return frame_from_rows(rows, schema)
        return _frame_from_sqlite(rows, schema)

    def _rows(self, underlying: Underlying, schema: AssetSchema, sql: str, params: Sequence[Any]
              ) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            from zerogex_pipeline.storage.postgres_io_manager import retrying

            statement = sql.format(table=_pg_table(underlying.key, schema))

            def read() -> list[tuple[Any, ...]]:
                with self._write_transaction({underlying.key}) as conn, conn.cursor() as cur:
                    cur.execute(statement.encode(), [_pg_value(p) for p in params])
                    return list(cur.fetchall())

            if self.read_retry_s <= 0:
                return read()
            # a read is safe to repeat: ride through a server restart like the IO manager's reads
            return retrying(read, f"capture store ({underlying.key}) read", self.read_retry_s, log.warning)
        if not self.path.exists():
            return []
        statement = sql.format(table=_sqlite_table(underlying.key, schema)).replace("%s", "?")
        with self._lock:
            conn = self._sqlite_connection()
            try:
                return list(conn.execute(statement, [_sqlite_value(p) for p in params]).fetchall())
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise StorageError(f"{self.path}: capture store read failed: {exc}") from None

    # ------------------------------------------------------------------ connections
    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=self.wait_s, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot open the capture store: {exc}") from None
            self._sqlite = conn
        return self._sqlite

    @contextmanager
    def _write_transaction(self, keys: set[str]) -> Iterator[Any]:
        if self.settings.database_url:
            url = self.settings.database_url
            from zerogex_pipeline.storage.postgres_io_manager import (
                describe_error,
                open_connection,
                prepare_schema,
            )
            from zerogex_pipeline.storage.postgres_migrations import TimescalePolicy

            with self._lock:
                if self._pg is None or self._pg.closed:
                    self._pg = open_connection(url)
                conn = self._pg
                try:
                    for key in sorted(keys - self._ready):
                        prepare_schema(conn, url, key, True, TimescalePolicy())
                        self._ready.add(key)
                    with conn.transaction():
                        yield conn
                except psycopg.Error as exc:
                    conn.close()
                    self._pg = None
                    raise describe_error(exc, url, f"capture store ({', '.join(sorted(keys))})") from None
            return
        with self._lock:
            lite = self._sqlite_connection()
            try:
                for key in sorted(keys - self._ready):
                    ensure_capture_tables(lite, key)
                    self._ready.add(key)
                lite.execute("BEGIN IMMEDIATE")
                try:
                    yield lite
                except BaseException:
                    lite.execute("ROLLBACK")
                    raise
                lite.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: capture store write failed: {exc}") from None


def _pg_table(key: str, schema: AssetSchema) -> str:
    return f"{quote_ident(key)}.{quote_ident(schema.name)}"


def _sqlite_table(key: str, schema: AssetSchema) -> str:
    return quote_ident(f"{key}__{schema.name}")


def ensure_capture_tables(conn: sqlite3.Connection, key: str) -> None:
    """Create the underlying's capture tables in the embedded capture file if missing."""
    for schema in _TABLES:
        cols = ", ".join(f"{quote_ident(c.name)} {_SQLITE_TYPE[c.kind]}{'' if c.nullable else ' NOT NULL'}"
                         for c in schema.columns)
        pk = ", ".join(quote_ident(c) for c in schema.primary_key)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_sqlite_table(key, schema)} ({cols}, PRIMARY KEY ({pk}))")


def _sqlite_value(value: Any) -> Any:
    """A bound parameter in the embedded file's representation."""
    if isinstance(value, pd.Timestamp):
        return int(value.tz_convert("UTC").value) if value.tzinfo else int(value.value)
    if isinstance(value, dt.datetime):
        return _sqlite_value(pd.Timestamp(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _pg_value(value: Any) -> Any:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _sqlite_columns(schema: AssetSchema, rows: pd.DataFrame) -> list[np.ndarray]:
    """Each column as an object array of SQLite values (``None`` for nulls)."""
    out = []
    for col in schema.columns:
        series = rows[col.name]
        if col.kind == "timestamptz":
            values = pd.DatetimeIndex(series).tz_convert("UTC").as_unit("ns").asi8.astype(object)
        elif col.kind == "date":
            values = pd.DatetimeIndex(series).strftime("%Y-%m-%d").to_numpy(dtype=object)
        elif col.kind == "double":
            values = series.to_numpy(dtype=np.float64).astype(object)
        elif col.kind == "bigint":
            values = series.to_numpy(dtype=np.int64).astype(object)
        else:
            values = series.astype(object).to_numpy()
        null = series.isna().to_numpy()
        if null.any():
            values = values.copy()
            values[null] = None
        out.append(values)
    return out


def _sqlite_row(schema: AssetSchema, record: tuple[Any, ...]) -> tuple[Any, ...]:
    """One row's SQLite values, value by value (cheaper than the column path for a few rows)."""
    out: list[Any] = []
    for col, value in zip(schema.columns, record, strict=True):
        if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and value != value):
            out.append(None)
        elif col.kind == "timestamptz":
            out.append(int(pd.Timestamp(value).tz_convert("UTC").value))
        elif col.kind == "date":
            out.append(f"{pd.Timestamp(value):%Y-%m-%d}")
        elif col.kind == "double":
            out.append(float(value))
        elif col.kind == "bigint":
            out.append(int(value))
        else:
            out.append(str(value))
    return tuple(out)


def _insert_new_sqlite(conn: sqlite3.Connection, key: str, schema: AssetSchema,
                       rows: pd.DataFrame | list[dict[str, Any]]) -> int:
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    marks = ", ".join("?" * len(schema.column_names))
    if isinstance(rows, list):
        missing = [c for c in schema.column_names if c not in rows[0]]
        if missing:
            raise StorageError(f"{key}.{schema.name}: a record lacks columns {missing}")
        values: Any = [_sqlite_row(schema, tuple(r[c] for c in schema.column_names)) for r in rows]
    elif len(rows) <= 16:
        values = [_sqlite_row(schema, r) for r in rows.itertuples(index=False, name=None)]
    else:
        values = zip(*_sqlite_columns(schema, rows), strict=True)
    cursor = conn.executemany(f"INSERT OR IGNORE INTO {_sqlite_table(key, schema)} ({cols}) VALUES ({marks})",
                              values)
    return int(cursor.rowcount)


def _frame_from_sqlite(rows: list[tuple[Any, ...]], schema: AssetSchema) -> pd.DataFrame:
    if not rows:
        return schema.empty_frame()
    columns = list(zip(*rows, strict=True))
    data: dict[str, Any] = {}
    for col, values in zip(schema.columns, columns, strict=True):
        if col.kind == "timestamptz":
            data[col.name] = pd.to_datetime(pd.Series(values, dtype="Int64"), unit="ns", utc=True)
        elif col.kind == "date":
            data[col.name] = pd.to_datetime(pd.Series(values))
        elif col.kind == "double":
            data[col.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            data[col.name] = list(values)
    return schema.conform(pd.DataFrame(data))


def _insert_new_postgres(conn: psycopg.Connection, key: str, schema: AssetSchema, rows: pd.DataFrame) -> int:
    from zerogex_pipeline.storage.postgres_io_manager import copy_frame

    staging = quote_ident(f"zerogex_incoming_{schema.name}")
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {_pg_table(key, schema)}) "
                    "ON COMMIT DELETE ROWS".encode())
        cur.execute(f"TRUNCATE {staging}".encode())
        copy_frame(cur, staging, rows, schema)
        cur.execute(f"INSERT INTO {_pg_table(key, schema)} ({cols}) SELECT {cols} FROM {staging} "
                    "ON CONFLICT DO NOTHING".encode())
        return int(cur.rowcount)


def latest_live_levels(settings: Settings, underlyings: Sequence[Underlying]) -> Mapping[str, pd.DataFrame]:
    """The newest live-levels row of each underlying (zero rows where none is stored), one store session."""
    store = CaptureStore(settings)
    try:
        return {u.name: store.live_levels(u, latest=True) for u in underlyings}
    finally:
        store.close()
