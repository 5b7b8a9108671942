"""The privileges docs/storage.md documents are enough, on plain PostgreSQL and on TimescaleDB (issue 13, item 1).

The owner applies the migrations and the TimescaleDB layout (``zerogex migrate``); a writer with CONNECT, USAGE on
the schema and SELECT, INSERT, DELETE on its tables materializes and re-writes days (also into a compressed chunk),
and a reader with SELECT reads levels. Neither ever needs ownership.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from zerogex_pipeline.cli import main
from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import levels_reader
from zerogex_pipeline.storage.postgres_io_manager import forget_prepared_schemas
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE
from zerogex_pipeline_tests.postgres_fixtures import PgServer

pytestmark = pytest.mark.postgres

SPY = resolve_underlying("SPY")
DAYS = (dt.date(2026, 11, 19), dt.date(2026, 11, 20))
PASSWORD = "w-Pa55-least"


def grant_documented_privileges(admin_url: str, database: str, writer: str, reader: str) -> None:
    """Exactly the statements of docs/storage.md, "Privileges"."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role in (writer, reader):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role)))
    with psycopg.connect(admin_url.rsplit("/", 1)[0] + f"/{database}", autocommit=True) as conn:
        for role in (writer, reader):
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA spy TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA spy TO {}").format(sql.Identifier(writer)))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA spy TO {}").format(sql.Identifier(reader)))


@pytest.mark.parametrize("store", ["plain", pytest.param("timescale", marks=pytest.mark.timescaledb)])
def test_the_documented_privileges_write_rewrite_and_read(
    store: str, request: pytest.FixtureRequest, pg_server: PgServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    owner_url = request.getfixturevalue("timescale_url" if store == "timescale" else "pg_url")
    database = owner_url.rsplit("/", 1)[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROGEX_DATABASE_URL", owner_url)
    assert main(["migrate"]) == 0  # the owner makes the tables (and, with TimescaleDB, the layout)
    made = capsys.readouterr().out
    assert "spy: applied migrations 0001" in made
    assert ("TimescaleDB" in made) is (store == "timescale")
    assert main(["migrate"]) == 0 and "migrations up to date" in capsys.readouterr().out

    suffix = database.rsplit("_", 1)[1]
    writer, reader = f"zgw_{suffix}", f"zgr_{suffix}"
    grant_documented_privileges(pg_server.admin_url, database, writer, reader)
    writer_url = pg_server.url_for(database, user=writer, password=PASSWORD)
    forget_prepared_schemas()
    settings = Settings(first_date=TEST_FIRST_DATE, database_url=writer_url, data_dir=tmp_path / "data", expirations=1, snapshot_minutes=60)
    with dg.instance_for_test() as instance:
        for day in DAYS:
            materialize_day(SPY, day, settings, instance)
        if store == "timescale":  # the owner's policy compressed the chunk; the writer re-writes a day in it
            with psycopg.connect(owner_url, autocommit=True) as conn:
                compressed = conn.execute(
                    "SELECT count(compress_chunk(c)) FROM show_chunks('spy.option_chain_snapshots') c"
                ).fetchone()
            assert compressed is not None and compressed[0] >= 1
        again = materialize_day(SPY, DAYS[0], settings, instance)
    assert again.rows["gex_levels"] > 0

    reader_settings = Settings(first_date=TEST_FIRST_DATE, database_url=pg_server.url_for(database, user=reader, password=PASSWORD),
                               data_dir=tmp_path / "reader")
    closing = levels_reader.closing_levels(reader_settings, SPY, list(DAYS))
    assert list(closing["session_date"].dt.date) == list(DAYS)
    forget_prepared_schemas()
    with dg.instance_for_test() as instance, pytest.raises(RunFailedError) as denied:
        materialize_day(SPY, DAYS[0], Settings(first_date=TEST_FIRST_DATE, database_url=reader_settings.database_url, data_dir=tmp_path / "r",
                                               expirations=1, snapshot_minutes=60), instance)
    message = str(denied.value)
    assert "spy.underlying_bars: permission denied for role 'zgr_" in message  # names the table it was writing
    assert PASSWORD not in message and "\n" not in message


def test_a_writer_is_told_that_pending_migrations_belong_to_the_owner(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    suffix = database.rsplit("_", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA spy")
    grant_documented_privileges(pg_server.admin_url, database, f"zgw_{suffix}", f"zgr_{suffix}")
    settings = Settings(first_date=TEST_FIRST_DATE, database_url=pg_server.url_for(database, user=f"zgw_{suffix}", password=PASSWORD),
                        data_dir=tmp_path)
    with pytest.raises(StorageError) as caught:
        levels_reader.closing_levels(settings, SPY, list(DAYS))
    assert "spy.gex_levels: no such table yet" in str(caught.value)
    with dg.instance_for_test() as instance, pytest.raises(RunFailedError) as pending:
        materialize_day(SPY, DAYS[0], Settings(first_date=TEST_FIRST_DATE, database_url=settings.database_url, data_dir=tmp_path,
                                               expirations=1, snapshot_minutes=60), instance)
    assert "migration(s) pending" in str(pending.value) and "zerogex migrate" in str(pending.value)
