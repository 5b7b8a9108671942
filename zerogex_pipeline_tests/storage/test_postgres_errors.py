"""Bad URLs, wrong passwords and missing permissions: one-line errors, never the password."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.settings import Settings, SettingsError
from zerogex_pipeline.storage import levels_reader
from zerogex_pipeline.storage.postgres_cluster import free_port
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    open_connection,
    redact_url,
    validate_database_url,
)
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE
from zerogex_pipeline_tests.postgres_fixtures import PgServer

SPY = resolve_underlying("SPY")
SECRET = "s3cr3t-Pa55w0rd"


def assert_clean(message: str) -> None:
    assert SECRET not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://zg:{SECRET}@db.example:notaport/zerogex",
        f"postgresql://zg:{SECRET}@/zerogex",
        f"postgresql://zg:{SECRET}@db.example/zerogex?sslmode=sometimes&bogus_option=1",
    ],
)
def test_malformed_urls_fail_at_definition_time_without_the_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        validate_database_url(url)
    assert_clean(str(caught.value))
    assert "***" in str(caught.value)
    with pytest.raises(SettingsError) as from_resources:
        build_resources(Settings(first_date=TEST_FIRST_DATE, database_url=url, data_dir=tmp_path))
    assert_clean(str(from_resources.value))


def test_redact_url_hides_userinfo_and_query_passwords() -> None:
    assert redact_url(f"postgresql://zg:{SECRET}@h:5432/db") == "postgresql://zg:***@h:5432/db"
    assert redact_url(f"postgresql://h/db?user=zg&password={SECRET}") == "postgresql://h/db?user=zg&password=***"
    assert redact_url("postgresql://h/db") == "postgresql://h/db"


def test_resource_config_uses_the_env_var_not_the_literal_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"postgresql://zg:{SECRET}@127.0.0.1:5432/zerogex"
    monkeypatch.setenv("ZEROGEX_DATABASE_URL", url)
    manager = build_resources(Settings(first_date=TEST_FIRST_DATE, database_url=url, data_dir=tmp_path))["io_manager"]
    assert isinstance(manager, PostgresFrameIOManager)
    assert SECRET not in repr(manager.database_url)


@pytest.mark.postgres
def test_wrong_password_and_unreachable_server(pg_server: PgServer, pg_url: str) -> None:
    wrong = pg_server.url_for(pg_url.rsplit("/", 1)[1], password=SECRET)
    with pytest.raises(StorageError, match=r"cannot connect .*password authentication failed") as caught:
        open_connection(wrong)
    assert_clean(str(caught.value))
    nowhere = f"postgresql://zg:{SECRET}@127.0.0.1:{free_port()}/zerogex"
    with pytest.raises(StorageError, match="cannot connect") as caught:
        open_connection(nowhere)
    assert_clean(str(caught.value))
    missing_db = pg_server.url_for("zg_no_such_database")
    with pytest.raises(StorageError, match='database "zg_no_such_database" does not exist'):
        open_connection(missing_db)


@pytest.fixture
def unprivileged_url(pg_server: PgServer, pg_url: str) -> str:
    """A login role that may connect to the test database but not create anything in it."""
    role = f"zg_reader_{pg_url.rsplit('_', 1)[1]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(SECRET)))
    return pg_server.url_for(pg_url.rsplit("/", 1)[1], user=role, password=SECRET)


@pytest.mark.postgres
def test_missing_permissions_give_a_clear_error(
    unprivileged_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = Settings(first_date=TEST_FIRST_DATE, database_url=unprivileged_url, data_dir=tmp_path, expirations=1, snapshot_minutes=60)
    with pytest.raises(RunFailedError) as caught:
        materialize_day(SPY, dt.date(2025, 1, 15), settings, instance)
    message = str(caught.value)
    assert "migration(s) pending" in message and "role 'zg_reader_" in message
    assert "permission denied for database" in message and "zerogex migrate" in message
    assert_clean(message)
    for record in instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_FAILURE)):
        assert SECRET not in str(record.event_log_entry)
    with pytest.raises(StorageError) as read_error:
        levels_reader.closing_levels(settings, SPY, [dt.date(2025, 1, 15)])
    assert_clean(str(read_error.value))
