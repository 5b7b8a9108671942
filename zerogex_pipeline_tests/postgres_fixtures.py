"""A real PostgreSQL for every test that needs one (loaded once by the root ``conftest.py``).

``ZEROGEX_TEST_DATABASE_URL`` (a superuser URL) is used when set; otherwise a throwaway cluster is
started from the installed server binaries (initdb/pg_ctl in a temp dir, free port) for the session
and deleted afterwards. With ``CI=true`` a missing server fails the tests instead of skipping them.
Every test gets its own fresh database (``pg_url``); ``timescale_url`` is one with the TimescaleDB
extension, or a skip with the printed reason when the server cannot load it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from zerogex_pipeline.storage.postgres_cluster import ClusterUnavailableError, ThrowawayCluster
from zerogex_pipeline.storage.postgres_io_manager import forget_prepared_schemas


@dataclass
class PgServer:
    """The server under test: a superuser ``admin_url`` and, for a throwaway cluster, its handle."""

    admin_url: str
    cluster: ThrowawayCluster | None

    def url_for(self, database: str, user: str | None = None, password: str | None = None) -> str:
        parts = urlsplit(self.admin_url)
        name = user if user is not None else (parts.username or "")
        pw = password if password is not None else (parts.password or "")
        host = parts.hostname or "127.0.0.1"
        netloc = f"{name}:{pw}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no PostgreSQL server: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("ZEROGEX_TEST_DATABASE_URL", "").strip()
    if url:
        try:
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            _missing(f"ZEROGEX_TEST_DATABASE_URL does not connect: {type(exc).__name__}")
        yield PgServer(url, None)
        return
    try:
        cluster = ThrowawayCluster().start()
    except ClusterUnavailableError as exc:
        _missing(str(exc))
        return
    try:
        yield PgServer(cluster.url, cluster)
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database (dropped after the test)."""
    name = f"zg_test_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    forget_prepared_schemas()
    yield pg_server.url_for(name)
    forget_prepared_schemas()
    try:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.OperationalError:
        pass  # the server is being restarted by the test itself; the cluster is deleted at the end


def timescaledb_unavailable(conn: psycopg.Connection) -> str | None:
    """Why TimescaleDB cannot be used on this server (``None`` when it can)."""
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
        return "TimescaleDB extension is not installed on this PostgreSQL server"
    preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    if preload is None or "timescaledb" not in str(preload[0]):
        return "TimescaleDB is installed but not in shared_preload_libraries of this server"
    return None


@pytest.fixture
def timescale_url(pg_url: str) -> str:
    """``pg_url`` with the timescaledb extension created; skips (reason printed) when it cannot be."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        reason = timescaledb_unavailable(conn)
        if reason is not None:
            print(f"SKIP timescaledb tests: {reason}")
            pytest.skip(reason)
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return pg_url
