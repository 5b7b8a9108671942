"""Surviving a database restart, classifying failures, redacting only the credential (issue 13, items 2 and 7).

A partition write is one transaction, so the IO manager retries it whole after a transient failure (the
connection lost or refused while the server restarts, a serialization conflict) for ``retry_seconds``;
permanent failures (permissions, a read-only server, a full disk) fail at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import dagster as dg
import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql

from zerogex_pipeline.defs.partitions import trading_day_partitions
from zerogex_pipeline.storage import postgres_io_manager
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    describe_error,
    open_connection,
    redact,
    write_partition,
)
from zerogex_pipeline.storage.table_slices import StorageError, TransientStorageError
from zerogex_pipeline_tests.history import TEST_FIRST_DATE
from zerogex_pipeline_tests.postgres_fixtures import PgServer
from zerogex_pipeline_tests.storage.test_postgres_io_manager import levels_frame, pg_table

DAY = dt.date(2025, 1, 15)
URL = "postgresql://zgw:zgc@db.internal:5432/zerogex"


def write(url: str, spot: float, retry_seconds: float = 60.0) -> None:
    write_partition(
        PostgresFrameIOManager(database_url=url, retry_seconds=retry_seconds),
        dg.AssetKey(["spy", "gex_levels"]),
        trading_day_partitions(TEST_FIRST_DATE),
        DAY.isoformat(),
        levels_frame(DAY, spot),
        "session_date",
    )


# --------------------------------------------------------------------------- redaction (item 7)


def test_redaction_replaces_the_credential_not_text_that_happens_to_contain_it() -> None:
    assert redact('FATAL:  database "zgc_nosuchdb" does not exist', URL) == 'FATAL:  database "zgc_nosuchdb" does not exist'
    assert redact(f"while connecting to {URL}", URL) == "while connecting to postgresql://zgw:***@db.internal:5432/zerogex"
    assert redact("dsn: host=db user=zgw password=zgc dbname=x", URL) == "dsn: host=db user=zgw password=*** dbname=x"
    assert redact("see postgresql://other:zgc@h/x", URL) == "see postgresql://other:***@h/x"
    # parsing the URL itself quotes its fragments: there standalone occurrences go too
    assert redact('invalid integer value "zgc" for connection option "port"', URL, bare=True) == (
        'invalid integer value "***" for connection option "port"'
    )


@pytest.mark.postgres
def test_a_server_error_naming_a_database_like_the_password_is_shown_as_is(pg_server: PgServer, pg_url: str) -> None:
    role = f"zgc_role_{pg_url.rsplit('_', 1)[1]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'zgc'").format(sql.Identifier(role)))
    with pytest.raises(StorageError) as caught:
        open_connection(pg_server.url_for("zgc_nosuchdb", user=role, password="zgc"))
    message = str(caught.value)
    assert 'database "zgc_nosuchdb" does not exist' in message
    assert ":zgc@" not in message and "***" in message  # the URL's password is still redacted


# --------------------------------------------------------------------------- classification (item 2)


@pytest.mark.parametrize(
    ("error", "transient", "text"),
    [
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), True,
         "connection lost: terminated by the server"),
        (pg_errors.CannotConnectNow("the database system is starting up"), True, "the server is starting up"),
        (pg_errors.SerializationFailure("could not serialize access"), True, "serialization conflict"),
        (pg_errors.DeadlockDetected("deadlock detected"), True, "deadlock"),
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True,
         "connection lost"),
        (pg_errors.DiskFull("could not extend file: No space left on device"), False, "the server's disk is full"),
        (pg_errors.ReadOnlySqlTransaction("cannot execute DELETE in a read-only transaction"), False,
         "the server is read-only"),
        (pg_errors.InsufficientPrivilege("permission denied for table gex_levels"), False, "permission denied"),
        (pg_errors.UndefinedTable('relation "spy.gex_levels" does not exist'), False, "failed"),
    ],
)
def test_errors_are_classified_transient_or_permanent(error: Exception, transient: bool, text: str) -> None:
    described = describe_error(error, URL, "spy.gex_levels")
    assert isinstance(described, TransientStorageError) is transient
    assert text in str(described) and "cannot connect" not in str(described)
    assert "zgc" not in str(described)


def test_connect_failures_say_cannot_connect_and_only_refusals_are_retried() -> None:
    refused = describe_error(psycopg.OperationalError("connection refused"), URL, "connect", connected=False)
    assert isinstance(refused, TransientStorageError) and "cannot connect (connection refused)" in str(refused)
    auth = describe_error(pg_errors.InvalidPassword("password authentication failed"), URL, "connect", connected=False)
    assert not isinstance(auth, TransientStorageError) and "cannot connect" in str(auth)


# --------------------------------------------------------------------------- retries against a real server


@pytest.mark.postgres
def test_a_write_whose_connection_is_killed_mid_copy_is_retried_whole(
    pg_server: PgServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(pg_url, 1.0)
    original = postgres_io_manager.copy_frame
    kills: list[int] = []

    def killed_copy(cursor, qualified, frame, schema):  # type: ignore[no-untyped-def]
        original(cursor, qualified, frame.iloc[: len(frame) // 2], schema)
        if not kills:  # the first attempt loses its connection after sending half its rows
            pid = cursor.connection.info.backend_pid
            with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            kills.append(pid)
            cursor.execute("SELECT 1")
        original(cursor, qualified, frame.iloc[len(frame) // 2:], schema)

    monkeypatch.setattr(postgres_io_manager, "copy_frame", killed_copy)
    write(pg_url, 2.0)
    assert len(kills) == 1
    stored = pg_table(pg_url, "gex_levels")
    assert len(stored) == 50 and set(stored["spot"]) == {2.0}  # the retry wrote the whole partition once

    kills.clear()
    with pytest.raises(TransientStorageError) as caught:  # without retries: one line that says what happened
        write(pg_url, 3.0, retry_seconds=0)
    assert "connection lost" in str(caught.value) and "cannot connect" not in str(caught.value)
    assert set(pg_table(pg_url, "gex_levels")["spot"]) == {2.0}  # the failed attempt left the previous version


@pytest.mark.postgres
def test_a_write_rides_through_a_server_restart(pg_server: PgServer, pg_url: str) -> None:
    if pg_server.cluster is None:
        pytest.skip("ZEROGEX_TEST_DATABASE_URL is an external server; cannot restart it from the test")
    cluster = pg_server.cluster
    write(pg_url, 1.0)
    cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop")
    cluster.running = False
    restarted = threading.Timer(4.0, cluster.start)
    restarted.start()
    started = time.monotonic()
    try:
        write(pg_url, 2.0)
    finally:
        restarted.join()
    assert time.monotonic() - started >= 3.5  # it waited for the server instead of failing
    assert set(pg_table(pg_url, "gex_levels")["spot"]) == {2.0}


@pytest.mark.postgres
def test_permanent_failures_fail_at_once(pg_server: PgServer, pg_url: str) -> None:
    write(pg_url, 1.0)
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(database)))
    postgres_io_manager.close_idle_connections()
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        write(pg_url, 2.0)
    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, TransientStorageError)
    assert "the server is read-only" in str(caught.value) and "\n" not in str(caught.value)
