"""The production store: a partition-aware PostgreSQL (optionally TimescaleDB) IO manager for pandas.

Built like :mod:`zerogex_pipeline.storage.duckdb_io_manager`: Dagster's ``DbIOManager`` (through
:class:`PartitionedDbIOManager`, which fixes dynamic multi-partitions) with a psycopg 3 client and a
pandas type handler. A partition write is one transaction::

    BEGIN; pg_advisory_xact_lock(slice); DELETE slice; COPY frame (binary); COMMIT

so re-running a partition replaces exactly its rows, two concurrent writers of one slice run one
after the other (the last one wins, no duplicate-key error), and a crash before ``COMMIT`` leaves
the previous version. Tables live in one schema per underlying (the asset-key prefix, e.g.
``spy.option_chain_snapshots``) and are created only by the versioned migrations
(:mod:`zerogex_pipeline.storage.postgres_migrations`). Timestamps are ``timestamptz`` (the session
runs in UTC, frames hold tz-aware UTC); dates are ``date``. Errors never contain the password.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import tenacity
from dagster._core.storage.db_io_manager import DbClient, DbTypeHandler, TableSlice
from psycopg import errors as pg_errors
from psycopg.copy import QueuedLibpqWriter
from psycopg.pq import ConnStatus, TransactionStatus
from pydantic import Field

from zerogex_pipeline.schemas import AssetSchema
from zerogex_pipeline.storage.partitioned_db_io_manager import PartitionedDbIOManager
from zerogex_pipeline.storage.postgres_copy import iter_binary_copy
from zerogex_pipeline.storage.postgres_migrations import (
    DECOMPRESS_FUNCTION,
    TimescalePolicy,
    apply_timescaledb,
    hypertable_names,
    migrate,
    owns_tables,
    schema_drift,
    timescaledb_layout_gaps,
    timescaledb_version,
)
from zerogex_pipeline.storage.table_slices import (
    StorageError,
    TransientStorageError,
    display_query,
    frame_for_slice,
    qualified_name,
    quote_ident,
    select_slice,
    slice_date_bounds,
    slice_lock_keys,
    slice_schema,
    where_clause,
)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10
COPY_CHUNK_ROWS = 4096
"""Rows per binary COPY piece (~1 MB of chain rows): a writer thread sends one piece while the next is encoded."""
MAX_IDLE_CONNECTIONS = 2
"""Idle connections kept per process and URL for the next slice write/read (see :func:`checkout_connection`)."""


# ---------------------------------------------------------------------------------------------
# URLs and errors
# ---------------------------------------------------------------------------------------------


def url_password(url: str) -> str | None:
    """The password in a ``postgresql://`` URL (userinfo or ``password=`` query parameter), if any."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return unquote(parts.password)
    except ValueError:
        pass
    match = re.search(r"[?&]password=([^&]*)", url)
    return unquote(match.group(1)) if match else None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to log)."""
    text = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    try:
        parts = urlsplit(text)
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
            text = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        text = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    return text


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


_USERINFO = re.compile(r"(://[^:/@\s\"']*:)[^@\s\"']*@")
_PASSWORD_PARAM = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]*)", re.IGNORECASE)


def redact(text: str, url: str, bare: bool = False) -> str:
    """``text`` on one line with ``url``'s credential redacted where it appears as a credential.

    Redacted: ``url`` itself (shown by :func:`redact_url`), the userinfo password of any URL in the
    text (``://user:***@``) and any ``password=...`` setting. The password is not replaced wherever
    its characters happen to occur (the password ``zgc`` leaves ``database "zgc_nosuchdb"`` as it is).
    ``bare=True`` also replaces standalone occurrences (delimited by non-word characters): for messages
    about parsing the URL itself, which quote fragments of it.
    """
    out = _one_line(text).replace(url, redact_url(url))
    out = _USERINFO.sub(r"\1***@", out)
    out = _PASSWORD_PARAM.sub(r"\1***", out)
    password = url_password(url)
    if bare and password:
        for form in sorted({password, _percent(password)}, key=len, reverse=True):
            out = re.sub(rf"(?<![\w]){re.escape(form)}(?![\w])", "***", out)
    return out


def _percent(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


_ENUMERATED_OPTIONS: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
}
"""libpq options whose values libpq checks only when connecting (so a typo would fail mid-run)."""
_INTEGER_OPTIONS = ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")


def validate_database_url(url: str) -> None:
    """Check the URL's form and option values without connecting; raises :class:`StorageError` (password redacted)."""
    from psycopg.conninfo import conninfo_to_dict

    if not url.startswith(("postgresql://", "postgres://")):
        raise StorageError(f"ZEROGEX_DATABASE_URL {redact_url(url)}: expected postgresql://user:password@host/db")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise StorageError(
            f"ZEROGEX_DATABASE_URL {redact_url(url)}: malformed URL ({redact(str(exc), url, bare=True)})"
        ) from None
    if not parts.hostname and "host=" not in (parts.query or ""):
        raise StorageError(f"ZEROGEX_DATABASE_URL {redact_url(url)}: no host name")
    try:
        options = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StorageError(f"ZEROGEX_DATABASE_URL {redact_url(url)}: {redact(str(exc), url, bare=True)}") from None
    for name, allowed in _ENUMERATED_OPTIONS.items():
        value = options.get(name)
        if value is not None and str(value) not in allowed:
            raise StorageError(
                f"ZEROGEX_DATABASE_URL {redact_url(url)}: {name}={value!r} is not one of {', '.join(allowed)}"
            )
    for name in _INTEGER_OPTIONS:
        value = options.get(name)
        if value is not None and not str(value).strip().lstrip("-").isdigit():
            raise StorageError(f"ZEROGEX_DATABASE_URL {redact_url(url)}: {name}={value!r} is not a whole number")


_TRANSIENT_SQLSTATES = {
    "57P01": "terminated by the server (shutdown, restart or an administrator)",  # admin_shutdown
    "57P02": "the server crashed",  # crash_shutdown
    "57P03": "the server is starting up",  # cannot_connect_now
    "40001": "serialization conflict with a concurrent transaction",
    "40P01": "deadlock with a concurrent transaction",
    "53300": "too many connections",
}
_PERMANENT_SQLSTATES = {
    "53100": "the server's disk is full",
    "25006": "the server is read-only",
    "58030": "the server cannot write its files",
}


def describe_error(exc: BaseException, url: str, what: str, connected: bool = True) -> StorageError:
    """A one-line :class:`StorageError` for a psycopg failure of ``what`` (password redacted).

    Transient failures (:class:`TransientStorageError`: the connection lost or refused, the server
    shutting down or starting up, a serialization conflict or deadlock) may be retried; everything else
    (permissions, schema, a full disk, a read-only server, authentication) is permanent. ``connected``
    says whether the connection had been established: a failure then reads "connection lost", before
    it "cannot connect".
    """
    where = redact_url(url)
    message = redact(re.sub(r"^connection failed:\s*", "", str(exc).strip()), url)
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        user = urlsplit(url).username or "the connecting role"
        primary = exc.diag.message_primary or str(exc)
        return StorageError(
            f"PostgreSQL {where}: {what}: permission denied for role {user!r} ({redact(primary, url)}); "
            "a writer needs CONNECT on the database, USAGE on the schema and SELECT, INSERT, DELETE on its "
            "tables (docs/storage.md, Privileges)"
        )
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate in _TRANSIENT_SQLSTATES:
        reason = _TRANSIENT_SQLSTATES[sqlstate]
        lost = "connection lost: " if connected and sqlstate.startswith("57P") else ""
        return TransientStorageError(f"PostgreSQL {where}: {what}: {lost}{reason} ({message})")
    if sqlstate in _PERMANENT_SQLSTATES:
        return StorageError(f"PostgreSQL {where}: {what}: {_PERMANENT_SQLSTATES[sqlstate]} ({message})")
    if not connected:
        if sqlstate.startswith("28") or sqlstate == "3D000" or not isinstance(exc, psycopg.OperationalError):
            return StorageError(f"PostgreSQL {where}: cannot connect ({message})")
        return TransientStorageError(f"PostgreSQL {where}: cannot connect ({message})")
    if isinstance(exc, psycopg.OperationalError) and (not sqlstate or sqlstate.startswith("08")):
        return TransientStorageError(f"PostgreSQL {where}: {what}: connection lost ({message})")
    return StorageError(f"PostgreSQL {where}: {what} failed: {message}")


def open_connection(url: str) -> psycopg.Connection:
    """A connection with the session time zone set to UTC (not in autocommit mode).

    Raises:
        StorageError: malformed URL, bad credentials, missing database (password redacted).
        TransientStorageError: the server refused or dropped the connection, or is starting up.
    """
    validate_database_url(url)
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise describe_error(exc, url, "connect", connected=False) from None
    try:
        conn.execute("SET TimeZone TO 'UTC'")
        conn.commit()
    except psycopg.Error as exc:
        conn.close()
        raise describe_error(exc, url, "session setup") from None
    return conn


# ---------------------------------------------------------------------------------------------
# Idle connections reused across slice writes of one process
# ---------------------------------------------------------------------------------------------
# Opening a connection costs a TCP handshake, SCRAM authentication and a server process (12.6 ms
# measured against a local server), as much as COPYing ~2,500 chain rows. A run that writes or reads
# several slices (a multi-partition step, the benchmarks, the single-run backfill) reuses the
# connection of the previous slice instead. A connection goes back to the cache only after its
# transaction committed; it is dropped when the server closed it meanwhile (restart, terminated
# backend: the socket is then readable while idle) and the cache is per process (never shared by a fork).

_IDLE: dict[tuple[int, str], list[psycopg.Connection]] = {}
_IDLE_LOCK = threading.Lock()


def _usable(conn: psycopg.Connection) -> bool:
    """Idle, open, and nothing pending from the server (a readable idle socket means EOF or FATAL)."""
    if conn.closed or conn.pgconn.status != ConnStatus.OK or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def checkout_connection(url: str) -> psycopg.Connection:
    """An idle cached connection to ``url`` of this process if one is still usable, else a new one.

    Raises:
        StorageError: as :func:`open_connection`.
    """
    key = (os.getpid(), url)
    while True:
        with _IDLE_LOCK:
            idle = _IDLE.get(key)
            conn = idle.pop() if idle else None
        if conn is None:
            return open_connection(url)
        if _usable(conn):
            return conn
        conn.close()


def release_connection(url: str, conn: psycopg.Connection) -> None:
    """Give back a connection whose work committed: cached when idle and room is left, else closed."""
    key = (os.getpid(), url)
    if _usable(conn):
        with _IDLE_LOCK:
            idle = _IDLE.setdefault(key, [])
            if len(idle) < MAX_IDLE_CONNECTIONS:
                idle.append(conn)
                return
    conn.close()


def close_idle_connections() -> None:
    """Close every cached idle connection of this process (at exit, and in tests that drop databases)."""
    with _IDLE_LOCK:
        mine = [c for (pid, _), conns in _IDLE.items() if pid == os.getpid() for c in conns]
        _IDLE.clear()
    for conn in mine:
        conn.close()


atexit.register(close_idle_connections)


# ---------------------------------------------------------------------------------------------
# Schema preparation (once per process, database and schema)
# ---------------------------------------------------------------------------------------------

_READY: dict[tuple[str, str], frozenset[str]] = {}
"""Prepared ``(url, schema)`` -> its tables that are TimescaleDB hypertables."""
_READY_LOCK = threading.Lock()
_LOG = logging.getLogger(__name__)


def prepare_schema(
    conn: psycopg.Connection, url: str, schema: str, use_timescaledb: bool, policy: TimescalePolicy
) -> frozenset[str]:
    """Apply pending migrations (and the TimescaleDB layout) and refuse a drifted schema.

    Returns the schema's tables that are TimescaleDB hypertables. Cached per process for ``(url, schema)``:
    the checks run once per worker, not per write. Schema changes belong to the owner of the tables: for
    another role (a writer with SELECT, INSERT and DELETE) this only reads the catalog. Pending migrations
    then fail with a message saying so; a TimescaleDB layout that differs from ``policy`` is logged and
    left as the owner set it (writes work on it as it is).

    Raises:
        StorageError: migrations pending that the role may not apply, or live columns that differ from the
            declared schemas (the message names the schema, never one table's write).
    """
    key = (url, schema)
    with _READY_LOCK:
        if key in _READY:
            return _READY[key]
    migrate(conn, schema)
    if use_timescaledb and timescaledb_version(conn) is not None:
        gaps = timescaledb_layout_gaps(conn, schema, policy)
        if gaps and owns_tables(conn, schema):
            apply_timescaledb(conn, schema, policy)
        elif gaps:
            _LOG.warning(
                "%s: the TimescaleDB layout differs from this configuration (%s); only the owner of the tables "
                "changes it (zerogex migrate): writing to the tables as they are", schema, "; ".join(gaps)
            )
    hypertables = hypertable_names(conn, schema)
    drift = schema_drift(conn, schema)
    if drift:
        raise StorageError(
            f"schema {schema!r} disagrees with zerogex_pipeline.schemas ({len(drift)} differences): "
            f"{'; '.join(drift[:5])}{'; ...' if len(drift) > 5 else ''}. "
            "Add a migration (python -m zerogex_pipeline.storage.postgres_migrations --new <name>)"
        )
    with _READY_LOCK:
        _READY[key] = hypertables
    return hypertables


def forget_prepared_schemas() -> None:
    """Drop the per-process cache of prepared schemas and the idle connections (tests that recreate databases)."""
    with _READY_LOCK:
        _READY.clear()
    close_idle_connections()


# ---------------------------------------------------------------------------------------------
# Writes and reads of one slice
# ---------------------------------------------------------------------------------------------


def lock_slice(connection: psycopg.Connection, table_slice: TableSlice) -> None:
    """Take the slice's transaction-scoped advisory locks (see :func:`table_slices.slice_lock_keys`).

    Overlapping slices (two date ranges of one table sharing days) wait for each other; disjoint ones
    (other days, other expirations of the same day) run concurrently.
    """
    table_key, keys = slice_lock_keys(table_slice)
    if not keys:
        connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [table_key])
        return
    connection.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", [table_key])
    # unnest yields the (sorted) keys in array order, so every writer locks them in the same order.
    connection.execute(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(%s::text[]) AS k", [keys]
    )


def decompress_slice_chunks(connection: psycopg.Connection, table_slice: TableSlice) -> int:
    """Decompress the compressed TimescaleDB chunks holding days of the slice; returns how many.

    On TimescaleDB 2.28 a DELETE of a slice in a compressed chunk removes whole compressed batches
    cheaply, but the COPY that follows checks every new row's primary key against the compressed
    batches of its segment and decompresses them row after row: re-writing one 18k-row chain partition
    ran for more than 10 minutes, and more than ``timescaledb.max_tuples_decompressed_per_dml_transaction``
    (100,000) rows of a 5-session chunk fail the transaction. Decompressing the chunk once (a few
    seconds for a 5-session chain chunk) makes the re-write an ordinary DELETE + COPY; the compression
    policy compresses the chunk again on its next run. Runs after the slice's locks, inside its transaction.
    """
    bounds = slice_date_bounds(table_slice)
    # Decompressing inside the write transaction counts against the per-transaction DML limit
    # (a 5-session chain chunk is ~210k rows): lift it for this transaction only.
    connection.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
    qualified = qualified_name(table_slice)
    function = f"{quote_ident(table_slice.schema)}.{DECOMPRESS_FUNCTION}"
    found = connection.execute("SELECT to_regprocedure(%s)", [f"{function}(regclass, date, date)"]).fetchone()
    if found is not None and found[0] is not None:
        # the owner's SECURITY DEFINER function: a writer that does not own the table may call it
        first, end = (None, None) if bounds is None else bounds
        row = connection.execute(f"SELECT {function}(%s::regclass, %s, %s)".encode(), [qualified, first, end]).fetchone()
        return int(row[0]) if row else 0
    where = "" if bounds is None else " AND c.range_start < %s::timestamptz AND c.range_end > %s::timestamptz"
    params: list[Any] = [table_slice.schema, table_slice.table]
    if bounds is not None:
        params += [bounds[1].isoformat(), bounds[0].isoformat()]
    rows = connection.execute(
        "SELECT decompress_chunk(format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass, if_compressed => TRUE) "
        "FROM timescaledb_information.chunks c WHERE c.hypertable_schema = %s AND c.hypertable_name = %s "
        f"AND c.is_compressed{where}",
        params,
    ).fetchall()
    return len(rows)


def copy_frame(cursor: psycopg.Cursor[Any], qualified: str, frame: pd.DataFrame, schema: AssetSchema) -> None:
    """Bulk-load a conformed ``frame`` into ``qualified`` with binary ``COPY`` (see ``postgres_copy``).

    Pieces of :data:`COPY_CHUNK_ROWS` rows go through psycopg's ``QueuedLibpqWriter``: a worker thread
    sends one piece while this thread encodes the next, so encoding overlaps the server's parsing.
    """
    if frame.empty:
        return
    cols = ", ".join(quote_ident(c) for c in schema.column_names)
    statement = f"COPY {qualified} ({cols}) FROM STDIN (FORMAT BINARY)".encode()
    with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        for piece in iter_binary_copy(frame, schema, COPY_CHUNK_ROWS):
            copy.write(piece)




@functools.cache
def _empty_frame(schema: AssetSchema) -> pd.DataFrame:
    """``schema.empty_frame()`` built once (conforming tens of columns costs 20-50 ms; a copy well under 1 ms)."""
    return schema.empty_frame()


def frame_from_rows(rows: Sequence[Sequence[Any]], schema: AssetSchema) -> pd.DataFrame:
    """A frame in ``schema``'s dtypes from rows of its columns, as psycopg returns them.

    Same result as ``schema.conform(pd.DataFrame(rows))`` (UTC ``datetime64[ns, UTC]`` timestamps,
    naive midnight ``datetime64[ns]`` dates, ``string``/``float64``/``int64``) but built column by
    column with numpy, which keeps small reads (the latest levels row) in the sub-millisecond range.
    """
    if not rows:
        return _empty_frame(schema).copy()
    columns = list(zip(*rows, strict=True))
    data: dict[str, Any] = {}
    for col, values in zip(schema.columns, columns, strict=True):
        has_null = None in values
        if has_null and (col.kind == "bigint" or (not col.nullable and col.kind != "double")):
            # NULL where the schema has none (integers never): the declared schema's own error
            return schema.conform(pd.DataFrame(rows, columns=schema.column_names))
        if col.kind == "timestamptz":
            data[col.name] = pd.DatetimeIndex(pd.to_datetime(list(values), utc=True)).astype("datetime64[ns, UTC]")
        elif col.kind == "date":
            data[col.name] = np.array(values, dtype="datetime64[D]").astype("datetime64[ns]")
        elif col.kind == "text":
            data[col.name] = pd.array(values, dtype="string")
        elif col.kind == "double":
            array = np.array([np.nan if v is None else v for v in values] if has_null else values, dtype=np.float64)
            if not col.nullable and np.isnan(array).any():
                return schema.conform(pd.DataFrame(rows, columns=schema.column_names))
            data[col.name] = array
        else:
            data[col.name] = np.array(values, dtype=np.int64)
    return pd.DataFrame(data)


def read_frame(conn: psycopg.Connection, query: str, params: Sequence[Any], schema: AssetSchema) -> pd.DataFrame:
    """Run ``query`` (selecting ``schema``'s columns in order) and return the rows in ``schema``'s dtypes."""
    with conn.cursor() as cur:
        cur.execute(query.encode(), list(params))
        rows = cur.fetchall()
    return frame_from_rows(rows, schema)


class PostgresPartitionClient(DbClient):
    """psycopg 3 client: one transaction per slice write, serialized per slice by an advisory lock."""

    @staticmethod
    def delete_table_slice(context: dg.OutputContext, table_slice: TableSlice, connection: Any) -> None:
        lock_slice(connection, table_slice)
        config = context.resource_config or {}
        with _READY_LOCK:
            hypertables = _READY.get((str(config.get("database_url", "")), table_slice.schema), frozenset())
        if table_slice.table in hypertables:
            decompress_slice_chunks(connection, table_slice)
        clause, params = where_clause(table_slice, "%s")
        connection.execute(f"DELETE FROM {qualified_name(table_slice)} WHERE {clause}".encode(), params)

    @staticmethod
    def ensure_schema_exists(context: dg.OutputContext, table_slice: TableSlice, connection: Any) -> None:
        # The schema and tables are prepared by the migrations in ``connect``; here only check.
        slice_schema(table_slice)

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return display_query(table_slice, table_slice.columns)

    @staticmethod
    @contextmanager
    def connect(context: dg.OutputContext | dg.InputContext, table_slice: TableSlice) -> Iterator[psycopg.Connection]:
        config: dict[str, Any] = dict(context.resource_config or {})
        url = str(config["database_url"])
        policy = TimescalePolicy(
            compress_after_days=int(config.get("compress_after_days", 7)),
            snapshot_retention_days=config.get("snapshot_retention_days"),
        )
        conn = checkout_connection(url)
        what = f"{table_slice.schema}.{table_slice.table}"
        committed = False
        try:
            try:
                prepare_schema(conn, url, table_slice.schema, bool(config.get("use_timescaledb", True)), policy)
            except psycopg.Error as exc:
                raise describe_error(exc, url, f"{table_slice.schema} schema check (migrations, layout)") from None
            with conn.transaction():
                yield conn
            committed = True
        except psycopg.Error as exc:
            raise describe_error(exc, url, what) from None
        finally:
            if committed:
                release_connection(url, conn)
            else:
                conn.close()


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores and loads pandas frames conformed to the table's declared schema."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> dg.RawMetadataMapping:
        schema, frame = frame_for_slice(table_slice, obj)
        with connection.cursor() as cur:
            copy_frame(cur, qualified_name(table_slice), frame, schema)
        return {"dagster/row_count": len(frame), "dagster/column_schema": schema.table_schema()}

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection: Any) -> pd.DataFrame:
        schema, query, params = select_slice(table_slice, "%s")
        return read_frame(connection, query, params, schema)

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]


RETRY_SECONDS = 60.0
"""Default time a partition write or read keeps retrying transient failures: a server restart of ~30 s
(shutdown, start-up, crash recovery) with room to spare."""


def retrying(fn: Callable[[], T], what: str, retry_seconds: float, log: Callable[[str], None] | None = None) -> T:
    """``fn()``, called again after a :class:`TransientStorageError` until ``retry_seconds`` have passed.

    Waits grow from 0.5 s to 5 s between attempts. ``fn`` must be safe to repeat whole (a slice write is
    one transaction: an attempt that lost its connection, even during ``COMMIT``, is replaced by the next
    DELETE + COPY of the same rows). Permanent failures are raised at once.

    Raises:
        TransientStorageError: still failing after ``retry_seconds``; the message gives the attempts and
            the time spent, then the last failure.
        StorageError: a permanent failure.
    """
    started = time.monotonic()

    def note(state: tenacity.RetryCallState) -> None:
        if log is not None and state.outcome is not None and state.next_action is not None:
            log(f"{what}: {state.outcome.exception()}; attempt {state.attempt_number + 1} in "
                f"{state.next_action.sleep:.1f} s (retrying for up to {retry_seconds:.0f} s)")

    retry = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientStorageError),
        stop=tenacity.stop_after_delay(max(retry_seconds, 0.0)),
        wait=tenacity.wait_exponential(multiplier=0.5, max=5.0),
        before_sleep=note,
        reraise=False,
    )
    try:
        return retry(fn)
    except tenacity.RetryError as exhausted:
        last = exhausted.last_attempt
        raise TransientStorageError(
            f"{last.exception()}; gave up after {last.attempt_number} attempts in "
            f"{time.monotonic() - started:.0f} s"
        ) from None


class PostgresDbIOManager(PartitionedDbIOManager):
    """The partition-aware ``DbIOManager`` with whole-slice retries of transient failures (see :func:`retrying`)."""

    def __init__(self, *args: Any, retry_seconds: float = RETRY_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = retry_seconds

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        what = f"write of {context.asset_key.to_user_string()}"
        retrying(lambda: super(PostgresDbIOManager, self).handle_output(context, obj), what,
                 self.retry_seconds, context.log.warning if _has_log(context) else None)

    def load_input(self, context: dg.InputContext) -> object:
        what = f"read of {context.asset_key.to_user_string()}"
        return retrying(lambda: super(PostgresDbIOManager, self).load_input(context), what,
                        self.retry_seconds, context.log.warning if _has_log(context) else None)


def _has_log(context: dg.OutputContext | dg.InputContext) -> bool:
    try:
        return context.log is not None
    except Exception:  # contexts built outside a run (benchmarks) have no log
        return False


class PostgresFrameIOManager(dg.ConfigurableIOManagerFactory):
    """Partition-aware IO manager on PostgreSQL, using TimescaleDB when the extension is installed."""

    database_url: str = Field(description="postgresql://user:password@host:port/database of the store.")
    schema_: str | None = Field(
        default=None, alias="schema", description="Schema for every table; default: the asset-key prefix."
    )
    use_timescaledb: bool = Field(
        default=True, description="Use hypertables/compression/retention when the extension is installed."
    )
    compress_after_days: int = Field(default=7, description="TimescaleDB: compress chunks older than this (days).")
    snapshot_retention_days: int | None = Field(
        default=None, description="TimescaleDB: drop raw chain snapshots older than this (days); null keeps all."
    )
    retry_seconds: float = Field(
        default=RETRY_SECONDS,
        description="Seconds a partition write or read retries transient failures (a server restart, a lost "
        "connection, a serialization conflict) before the step fails; permanent ones fail at once.",
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> PostgresDbIOManager:
        return self.build_db_io_manager()

    def build_db_io_manager(self) -> PostgresDbIOManager:
        """The ``DbIOManager`` this factory configures (no Dagster context needed)."""
        validate_database_url(self.database_url)
        database = urlsplit(self.database_url).path.lstrip("/") or "postgres"
        return PostgresDbIOManager(
            type_handlers=[PostgresPandasTypeHandler()],
            db_client=PostgresPartitionClient(),
            database=database,
            schema=self.schema_,
            io_manager_name="PostgresFrameIOManager",
            default_load_type=pd.DataFrame,
            retry_seconds=self.retry_seconds,
        )


def postgres_io_manager(database_url: str) -> PostgresFrameIOManager:
    """The IO manager for ``database_url``; validated now, connected at the first write or read.

    When the URL is exactly ``$ZEROGEX_DATABASE_URL``, the resource is configured with
    ``dg.EnvVar`` so the password never appears in the run config shown by the Dagster UI.

    Raises:
        StorageError: the URL is malformed (password redacted).
    """
    validate_database_url(database_url)
    if os.environ.get("ZEROGEX_DATABASE_URL", "").strip() == database_url:
        return PostgresFrameIOManager(database_url=dg.EnvVar("ZEROGEX_DATABASE_URL"))
    return PostgresFrameIOManager(database_url=database_url)


def write_partition(
    io_manager: PostgresFrameIOManager,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    partition_key: str,
    frame: pd.DataFrame,
    partition_expr: str | dict[str, str],
    instance: dg.DagsterInstance | None = None,
) -> float:
    """Write ``frame`` as one partition through the IO manager's full ``DbIOManager`` path, outside a run.

    Used by the benchmarks and the concurrency tests (no Dagster run per call). ``instance`` holds the
    dynamic partitions of ``partitions_def`` (needed for multi-partitions with a dynamic dimension).
    Returns the seconds spent in the IO manager's ``handle_output`` (connect, schema check, lock,
    DELETE, checks, COPY, COMMIT), without the cost of building the Dagster output context. Transient
    failures are retried as in a run (``io_manager.retry_seconds``).
    """
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.storage.db_io_manager import DbIOManager

    context = dg.build_output_context(
        asset_key=asset_key,
        partition_key=partition_key,
        asset_partitions_def=partitions_def,
        definition_metadata={"partition_expr": partition_expr},
        resource_config=io_manager.model_dump(by_alias=False),
        instance=instance,
    )
    manager = io_manager.build_db_io_manager()
    with partition_loading_context(dynamic_partitions_store=instance):
        started = time.perf_counter()
        retrying(lambda: DbIOManager.handle_output(manager, context, frame),
                 f"write of {asset_key.to_user_string()}", io_manager.retry_seconds)
        return time.perf_counter() - started
