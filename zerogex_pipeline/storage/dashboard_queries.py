"""Read paths of the live screen and the levels API (``zerogex dashboard``), on both stores.

Every statement of the dashboard is here; the web layer (:mod:`zerogex_pipeline.dashboard`) only calls
:class:`DashboardStore`. Everything is read-only.

Stored tables (per-underlying schema, written by the Dagster assets): ``gex_levels`` (one row per snapshot),
``gex_surface`` (one row per snapshot x expiration x strike x settlement), ``gex_alerts`` and
``underlying_bars``. Live levels (``live_levels``, written by ``zerogex stream``) are read **only** through
:class:`zerogex_pipeline.storage.capture_store.CaptureStore`.

Embedded DuckDB (the default): a file is opened read-only for one read and closed right after
(:func:`~zerogex_pipeline.storage.duckdb_files.open_duckdb`, bounded wait while a writer holds it), never
for the life of the server. Opening a DuckDB database costs 30-100 ms here (the engine's start-up, even for
``:memory:``), far more than the reads themselves, so each result is kept in memory together with the
**file signature** it was read under (``st_ino, st_size, st_mtime_ns`` of the file and of its ``.wal``): a
later read whose file signature is unchanged returns the kept result after one ``stat`` per file. Any commit
by another process changes the WAL's or the file's size or mtime, so a changed store is always re-read (a
result is tagged with the signature taken *before* the read, so a write racing the read only causes one more
re-read). Results are shared: callers must not modify the returned frames.

PostgreSQL: a small pool of connections, each opened once with ``default_transaction_read_only = on`` and a
statement timeout, in autocommit (one round trip per statement); no result cache (each read is a
primary-key lookup of a few milliseconds at most). Errors are one line with the password redacted.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psycopg
from psycopg import errors as pg_errors

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import EVENT_KINDS
from zerogex_pipeline.schemas import GEX_ALERTS, GEX_LEVELS, GEX_SURFACE, LIVE_LEVELS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CAPTURE_FILE, CaptureStore
from zerogex_pipeline.storage.duckdb_files import open_duckdb
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident
from zerogex_pipeline.underlyings import Underlying

DEFAULT_WAIT_S = 5.0
"""Seconds a read waits for another process's DuckDB file lock before failing (a request is waiting)."""
STATEMENT_TIMEOUT_MS = 15_000
PG_POOL_SIZE = 4
CACHE_ENTRIES = 64

Signature = tuple[tuple[int, int, int] | None, ...]

HEATMAP_COLUMNS = ("snapshot_ts", "strike", "net_gex", "call_gex", "put_gex")


class CacheMiss(Exception):  # noqa: N818  (a signal, not an error)
    """Raised inside :meth:`DashboardStore.cache_only` when an answer would need a read of the store."""


_CACHE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("zerogex_dashboard_cache_only", default=False)


@dataclass(frozen=True)
class StoredState:
    """What the change watcher compares between two polls of the stored tables of one underlying.

    ``session_date``/``snapshot_ts``: the newest stored levels snapshot (``None`` when nothing is stored);
    ``rows`` and ``checksum`` (sum of spot and net GEX): that day's levels rows, so a re-materialized day
    with the same snapshot times still reads as changed; ``alerts``: that day's stored alert events.
    """

    session_date: dt.date | None
    snapshot_ts: pd.Timestamp | None
    rows: int
    checksum: float
    alerts: int


@functools.cache
def empty_frame(schema: AssetSchema) -> pd.DataFrame:
    """``schema.empty_frame()``, built once (it costs tens of milliseconds); shared: do not modify."""
    return schema.empty_frame()


def file_signature(path: Path) -> Signature:
    """``(ino, size, mtime_ns)`` of ``path`` and of its write-ahead log (``None`` for a missing file): DuckDB's
    ``.wal``, SQLite's ``-wal`` (the capture file: a commit changes only its log until a checkpoint)."""
    out: list[tuple[int, int, int] | None] = []
    for p in (path, path.with_name(path.name + ".wal"), path.with_name(path.name + "-wal")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _table(key: str, name: str) -> str:
    return f"{quote_ident(key)}.{quote_ident(name)}"


def _cols(schema: AssetSchema) -> str:
    return ", ".join(quote_ident(c) for c in schema.column_names)


class _ResultCache:
    """Results of reads of one DuckDB file, each kept with the file signature it was read under (LRU)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[Hashable, tuple[Signature, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, signature: Signature) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != signature:
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, signature: Signature, value: Any) -> None:
        with self._lock:
            self._items[key] = (signature, value)
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


class DashboardStore:
    """Read-only access to the configured store for the dashboard and the levels API.

    Args:
        settings: PostgreSQL when ``settings.database_url`` is set, else the embedded files under ``data_dir``.
        wait_s: embedded store only: seconds a read waits while another process holds a file.
        cache_entries: embedded store only: results kept per file (see the module docstring).

    Thread-safe: the web server calls it from its worker threads.
    """

    def __init__(self, settings: Settings, wait_s: float = DEFAULT_WAIT_S, cache_entries: int = CACHE_ENTRIES) -> None:
        self.settings = settings
        self.wait_s = wait_s
        self._stored_cache = _ResultCache(cache_entries)
        self._live_cache = _ResultCache(cache_entries)
        self._pg_idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._capture_idle: queue.LifoQueue[CaptureStore] = queue.LifoQueue()

    # ------------------------------------------------------------------ what and where
    @property
    def kind(self) -> str:
        """``postgres`` or ``duckdb``."""
        return "postgres" if self.settings.database_url else "duckdb"

    @property
    def location(self) -> str:
        """Where the stored tables are, for people (a PostgreSQL URL without its password)."""
        if self.settings.database_url:
            from zerogex_pipeline.storage.postgres_io_manager import redact_url

            return redact_url(self.settings.database_url)
        return str(self.settings.duckdb_path)

    def close(self) -> None:
        """Close the pooled PostgreSQL connections and capture stores (the DuckDB files are never kept open)."""
        while not self._pg_idle.empty():
            self._pg_idle.get_nowait().close()
        while not self._capture_idle.empty():
            self._capture_idle.get_nowait().close()

    @contextmanager
    def cache_only(self) -> Iterator[None]:
        """Within this block, answer only from kept results (``stat`` calls only): raise :class:`CacheMiss` when a
        read would be needed. Lets the web server answer unchanged data on its event loop, without a thread hop."""
        token = _CACHE_ONLY.set(True)
        try:
            yield
        finally:
            _CACHE_ONLY.reset(token)

    # ------------------------------------------------------------------ stored levels
    def latest_levels(self, underlying: Underlying) -> pd.DataFrame:
        """The newest ``gex_levels`` row (zero rows when none is stored); backward scan of the primary key."""
        return self._frame(underlying, GEX_LEVELS,
                           "ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1", [])

    def latest_levels_row(self, underlying: Underlying) -> dict[str, Any] | None:
        """The newest ``gex_levels`` row as ``{column: value}`` (``None`` when none is stored).

        The same row as :meth:`latest_levels`; on PostgreSQL without building a frame (the hot path of the API).
        """
        return self._newest_row(underlying, GEX_LEVELS, self.latest_levels)

    def intraday_levels(self, underlying: Underlying, day: dt.date) -> pd.DataFrame:
        """Every ``gex_levels`` row of ``day`` (America/New_York trading day), oldest snapshot first."""
        return self._frame(underlying, GEX_LEVELS, "WHERE session_date = %s ORDER BY snapshot_ts", [day])

    def levels_at(self, underlying: Underlying, day: dt.date, at: pd.Timestamp | None) -> pd.DataFrame:
        """The ``gex_levels`` row of ``day`` at or before the instant ``at`` (the day's last row when ``None``)."""
        if at is None:
            return self._frame(underlying, GEX_LEVELS,
                               "WHERE session_date = %s ORDER BY snapshot_ts DESC LIMIT 1", [day])
        return self._frame(underlying, GEX_LEVELS,
                           "WHERE session_date = %s AND snapshot_ts <= %s ORDER BY snapshot_ts DESC LIMIT 1",
                           [day, at.to_pydatetime()])

    def session_dates(self, underlying: Underlying) -> list[dt.date]:
        """Trading days with stored levels, newest first."""
        rows = self._rows(underlying, ("dates",), "gex_levels",
                          "SELECT DISTINCT session_date FROM {table} ORDER BY session_date DESC", [])
        return [_as_date(r[0]) for r in rows]

    # ------------------------------------------------------------------ surface
    def snapshot_surface(self, underlying: Underlying, day: dt.date, snapshot_ts: pd.Timestamp) -> pd.DataFrame:
        """The ``gex_surface`` rows of one snapshot (every expiration), by expiration, strike and settlement."""
        return self._frame(underlying, GEX_SURFACE,
                           "WHERE session_date = %s AND snapshot_ts = %s ORDER BY expiration, strike, settlement",
                           [day, snapshot_ts.to_pydatetime()])

    def net_gex_by_strike_and_time(self, underlying: Underlying, day: dt.date,
                                   expiration: dt.date | None) -> pd.DataFrame:
        """Call, put and net GEX (USD per 1% move) summed over expirations (or of one), per snapshot and strike.

        Columns :data:`HEATMAP_COLUMNS`, ordered by snapshot then strike.
        """
        where = "session_date = %s" + ("" if expiration is None else " AND expiration = %s")
        params: list[Any] = [day] + ([] if expiration is None else [expiration])
        rows = self._rows(
            underlying, ("heatmap", day, expiration), "gex_surface",
            "SELECT snapshot_ts, strike, sum(net_gex), sum(call_gex), sum(put_gex) FROM {table} "
            f"WHERE {where} GROUP BY snapshot_ts, strike ORDER BY snapshot_ts, strike", params)
        frame = pd.DataFrame(rows, columns=list(HEATMAP_COLUMNS))
        frame["snapshot_ts"] = pd.to_datetime(frame["snapshot_ts"], utc=True)
        for name in HEATMAP_COLUMNS[1:]:
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        return frame

    def day_expirations(self, underlying: Underlying, day: dt.date) -> list[dt.date]:
        """Expirations with stored surface rows on ``day``, nearest first."""
        rows = self._rows(underlying, ("expirations", day), "gex_surface",
                          "SELECT DISTINCT expiration FROM {table} WHERE session_date = %s ORDER BY expiration",
                          [day])
        return [_as_date(r[0]) for r in rows]

    # ------------------------------------------------------------------ alerts and provenance
    def alerts(self, underlying: Underlying, day: dt.date) -> pd.DataFrame:
        """Stored ``gex_alerts`` events of ``day`` in detection order (snapshot time, then kind as in
        :data:`~zerogex_pipeline.analytics.alerts.EVENT_KINDS`); zero rows when none or no table."""
        order = " ".join(f"WHEN '{kind}' THEN {i}" for i, kind in enumerate(EVENT_KINDS))
        return self._frame(underlying, GEX_ALERTS,
                           f"WHERE session_date = %s ORDER BY snapshot_ts, CASE kind {order} ELSE 99 END, event_id",
                           [day])

    def data_source(self, underlying: Underlying, day: dt.date) -> str | None:
        """Where ``day``'s stored market data came from (``simulated`` or ``tradestation``; ``None``: no bars)."""
        rows = self._rows(underlying, ("source", day), "underlying_bars",
                          "SELECT source FROM {table} WHERE session_date = %s ORDER BY ts LIMIT 1", [day])
        return str(rows[0][0]) if rows else None

    def stored_state(self, underlying: Underlying) -> StoredState:
        """The newest stored snapshot, its day's row count and checksum, and that day's alert count."""
        latest = self.latest_levels(underlying)
        if latest.empty:
            return StoredState(None, None, 0, 0.0, 0)
        day = _as_date(latest["session_date"].iloc[0])
        rows = self._rows(underlying, ("state", day), "gex_levels",
                          "SELECT count(*), sum(spot) + sum(net_gex) FROM {table} WHERE session_date = %s", [day])
        alerts = self._rows(underlying, ("alert_count", day), "gex_alerts",
                            "SELECT count(*) FROM {table} WHERE session_date = %s", [day])
        count, checksum = rows[0] if rows else (0, 0.0)
        return StoredState(day, latest["snapshot_ts"].iloc[0], int(count or 0), float(checksum or 0.0),
                           int(alerts[0][0]) if alerts else 0)

    # ------------------------------------------------------------------ live levels (CaptureStore only)
    def live_levels(self, underlying: Underlying, session_date: dt.date | None = None,
                    since: pd.Timestamp | None = None, latest: bool = False) -> pd.DataFrame:
        """``CaptureStore.live_levels`` (the ``LIVE_LEVELS`` schema), kept per file signature on DuckDB."""
        key = (underlying.key, session_date, None if since is None else pd.Timestamp(since).value, latest)
        return self._live(key, lambda store: store.live_levels(underlying, session_date, since, latest))

    def latest_live_levels(self, underlying: Underlying) -> pd.DataFrame:
        """The newest live-levels row (zero rows when the engine never wrote one).

        PostgreSQL: one backward scan of the primary key. Embedded: today's (America/New_York) newest row first,
        which DuckDB finds from its zone maps without reading the history; the newest of all only when today has
        none (either is re-read only after the file changed).
        """
        if self.kind == "postgres":
            return self.live_levels(underlying, latest=True)
        today = market_calendar.utc_now().tz_convert(market_calendar.NEW_YORK).date()
        frame = self.live_levels(underlying, session_date=today, latest=True)
        return frame if not frame.empty else self.live_levels(underlying, latest=True)

    def latest_live_levels_row(self, underlying: Underlying) -> dict[str, Any] | None:
        """The newest live-levels row as ``{column: value}`` (``None`` when the engine never wrote one).

        The same row as :meth:`latest_live_levels`; on PostgreSQL one read on a pooled read-only connection,
        without building a frame (the hot path of the API).
        """
        return self._newest_row(underlying, LIVE_LEVELS, self.latest_live_levels)

    def live_signature(self) -> Signature | None:
        """File signature of the embedded live-levels file (``None`` on PostgreSQL, which has none)."""
        return None if self.kind == "postgres" else file_signature(self.settings.data_dir / CAPTURE_FILE)

    def stored_signature(self) -> Signature | None:
        """File signature of the embedded store file (``None`` on PostgreSQL)."""
        return None if self.kind == "postgres" else file_signature(self.settings.duckdb_path)

    # ------------------------------------------------------------------ plumbing
    def _newest_row(self, underlying: Underlying, schema: AssetSchema,
                    embedded: Callable[[Underlying], pd.DataFrame]) -> dict[str, Any] | None:
        """The newest row of ``schema``'s table as ``{column: value}``: on PostgreSQL one read by the primary key
        on a pooled read-only connection (no frame); embedded, the first row of ``embedded``'s (cached) frame."""
        if self.kind == "postgres":
            rows = self._pg_rows(underlying, schema.name, f"SELECT {_cols(schema)} FROM {{table}} "
                                 "ORDER BY session_date DESC, snapshot_ts DESC LIMIT 1", [])
            return dict(zip(schema.column_names, rows[0], strict=True)) if rows else None
        frame = embedded(underlying)
        return None if frame.empty else dict(zip(frame.columns, frame.iloc[0].tolist(), strict=True))

    def _frame(self, underlying: Underlying, schema: AssetSchema, clause: str, params: Sequence[Any]) -> pd.DataFrame:
        sql = f"SELECT {_cols(schema)} FROM {{table}} {clause}"
        if self.kind == "postgres":
            from zerogex_pipeline.storage.postgres_io_manager import frame_from_rows

            return frame_from_rows(self._pg_rows(underlying, schema.name, sql, params), schema)
        cache_key = (underlying.key, schema.name, clause, tuple(str(p) for p in params))
        frame: pd.DataFrame = self._duck(cache_key, underlying, schema.name, sql, params,
                                         lambda cursor: schema.conform(cursor.df()), lambda: empty_frame(schema))
        return frame

    def _rows(self, underlying: Underlying, key: tuple[Any, ...], table: str, sql: str,
              params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            return self._pg_rows(underlying, table, sql, params)
        rows: list[tuple[Any, ...]] = self._duck((underlying.key, table, *key), underlying, table, sql, params,
                                                 lambda cursor: list(cursor.fetchall()), list)
        return rows

    def _duck(self, cache_key: Hashable, underlying: Underlying, table: str, sql: str, params: Sequence[Any],
              convert: Callable[[duckdb.DuckDBPyConnection], Any], missing: Callable[[], Any]) -> Any:
        """``convert`` of ``sql`` run on the embedded store file, or the result kept under the same file signature.

        ``missing()`` is the result when the file or the table does not exist yet (nothing materialized).
        """
        path = self.settings.duckdb_path
        signature = file_signature(path)
        if signature[0] is None:
            return missing()
        hit = self._stored_cache.get(cache_key, signature)
        if hit is not None:
            return hit
        if _CACHE_ONLY.get():
            raise CacheMiss(str(cache_key))
        statement = sql.format(table=_table(underlying.key, table)).replace("%s", "?")
        conn = open_duckdb(path, read_only=True, wait_s=self.wait_s)
        try:
            result = convert(conn.execute(statement, list(params)))
        except duckdb.CatalogException:
            result = missing()
        except duckdb.Error as exc:
            raise StorageError(f"{path}: {underlying.key}.{table}: read failed: {exc}") from None
        finally:
            conn.close()
        self._stored_cache.put(cache_key, signature, result)
        return result

    def _pg_rows(self, underlying: Underlying, table: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if _CACHE_ONLY.get():
            raise CacheMiss(table)
        statement = sql.format(table=_table(underlying.key, table)).encode()
        with self._pg_connection() as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(statement, list(params))
                    return list(cur.fetchall())
            except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName):
                return []  # nothing materialized into PostgreSQL yet

    @contextmanager
    def _pg_connection(self) -> Iterator[psycopg.Connection]:
        from zerogex_pipeline.storage.postgres_io_manager import describe_error, open_connection

        url = self.settings.database_url
        assert url is not None
        try:
            conn = self._pg_idle.get_nowait()
        except queue.Empty:
            conn = open_connection(url)
            try:
                conn.execute("SET default_transaction_read_only = on")
                conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
                conn.commit()
                conn.autocommit = True
            except psycopg.Error as exc:
                conn.close()
                raise describe_error(exc, url, "dashboard session setup") from None
        try:
            yield conn
        except psycopg.Error as exc:
            conn.close()
            raise describe_error(exc, url, "dashboard read") from None
        except BaseException:
            conn.close()
            raise
        if conn.closed or self._pg_idle.qsize() >= PG_POOL_SIZE:
            conn.close()
        else:
            self._pg_idle.put(conn)

    def _live(self, key: Hashable, read: Callable[[CaptureStore], pd.DataFrame]) -> pd.DataFrame:
        if self.kind == "postgres":
            if _CACHE_ONLY.get():
                raise CacheMiss("live_levels")
            try:
                store = self._capture_idle.get_nowait()
            except queue.Empty:
                store = CaptureStore(self.settings, wait_s=self.wait_s)
            try:
                frame = read(store)
            except BaseException:
                store.close()
                raise
            if self._capture_idle.qsize() >= PG_POOL_SIZE:
                store.close()
            else:
                self._capture_idle.put(store)
            return frame
        signature = file_signature(self.settings.data_dir / CAPTURE_FILE)
        if signature[0] is None:
            return empty_frame(LIVE_LEVELS)  # the engine never ran here
        hit = self._live_cache.get(key, signature)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        if _CACHE_ONLY.get():
            raise CacheMiss("live_levels")
        frame = read(CaptureStore(self.settings, wait_s=self.wait_s))
        self._live_cache.put(key, signature, frame)
        return frame


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()
