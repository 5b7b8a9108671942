"""Direct SQL on the configured store (embedded DuckDB or PostgreSQL), for reads and writes the IO manager
does not cover: the alert announcement ledger (:mod:`zerogex_pipeline.storage.alert_ledger`) and the
backtest's history queries (:mod:`zerogex_pipeline.storage.backtest_history`).

Statements are written once with ``%s`` placeholders (rewritten to ``?`` for DuckDB) and portable SQL
(window functions, ``ON CONFLICT``, ``RETURNING``, ``information_schema``). Tables live in the
per-underlying schema, as with the IO managers. On PostgreSQL the schema is migrated first (so the
tables of migration 0003 exist); errors are one line with the password redacted. On DuckDB the
connection waits, bounded, for another process's file lock like the IO manager does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import psycopg

from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_files import open_duckdb
from zerogex_pipeline.storage.table_slices import StorageError, quote_ident


class StoreConflictError(StorageError):
    """A concurrent transaction wrote the same rows first (DuckDB's optimistic concurrency); retry."""


class StoreSession:
    """One open connection to the store; :meth:`rows` runs a statement and returns its rows."""

    def __init__(self, kind: str, conn: Any, schema: str) -> None:
        self.kind = kind
        self.conn = conn
        self.schema = schema

    def table(self, name: str) -> str:
        """``"schema"."name"``."""
        return f"{quote_ident(self.schema)}.{quote_ident(name)}"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Execute ``sql`` (``%s`` placeholders) and fetch its rows (``[]`` when it returns none)."""
        if self.kind == "duckdb":
            cursor = self.conn.execute(sql.replace("%s", "?"), list(params))
            return list(cursor.fetchall()) if cursor.description else []
        with self.conn.cursor() as cur:
            cur.execute(sql.encode(), list(params))
            return list(cur.fetchall()) if cur.description else []

    def has_table(self, name: str) -> bool:
        """True when ``name`` exists in the session's schema."""
        found = self.rows(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            [self.schema, name],
        )
        return bool(found)


@contextmanager
def store_session(settings: Settings, schema: str, create: bool = False) -> Iterator[StoreSession | None]:
    """A session on ``settings``' store in ``schema``, committed on success and rolled back on error.

    Yields ``None`` when the embedded store file does not exist yet and ``create`` is false (nothing
    stored: callers treat it as empty history).

    Raises:
        StorageError: the store cannot be opened or a statement failed (password redacted).
    """
    if settings.database_url is not None:
        from zerogex_pipeline.storage.postgres_io_manager import describe_error, open_connection
        from zerogex_pipeline.storage.postgres_migrations import migrate

        url = settings.database_url
        conn = open_connection(url)
        try:
            migrate(conn, schema)
            with conn.transaction():
                yield StoreSession("postgres", conn, schema)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise StoreConflictError(f"{schema}: concurrent write conflict: {type(exc).__name__}") from None
        except psycopg.Error as exc:
            raise describe_error(exc, url, f"{schema} alerts/backtest query") from None
        finally:
            conn.close()
        return
    path = settings.duckdb_path
    if not path.exists() and not create:
        yield None
        return
    dconn = open_duckdb(path, read_only=False)  # waits, bounded, while another process holds the file
    try:
        dconn.begin()
        try:
            yield StoreSession("duckdb", dconn, schema)
        except BaseException:
            dconn.rollback()
            raise
        dconn.commit()
    except (duckdb.TransactionException, duckdb.ConstraintException) as exc:
        raise StoreConflictError(f"{path}: {schema}: concurrent write conflict: {exc}") from None
    except duckdb.Error as exc:
        raise StorageError(f"{path}: {schema} alerts/backtest query failed: {exc}") from None
    finally:
        dconn.close()
