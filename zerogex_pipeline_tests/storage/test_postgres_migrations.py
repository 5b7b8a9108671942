"""Versioned migrations: applied once, recorded, re-runnable, and in step with the declared schemas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS, SQL_TYPE
from zerogex_pipeline.storage.migrations import MIGRATIONS, Migration
from zerogex_pipeline.storage.postgres_copy import encode_binary_copy
from zerogex_pipeline.storage.postgres_io_manager import open_connection, prepare_schema, read_frame
from zerogex_pipeline.storage.postgres_migrations import (
    HYPERTABLES,
    TimescalePolicy,
    apply_timescaledb,
    migrate,
    migrated_columns,
    pending_statements,
    schema_drift,
)
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline_tests.history import TEST_FIRST_DATE

pytestmark = pytest.mark.postgres


def test_migrations_match_declared_schemas(pg_url: str) -> None:
    """Fails when zerogex_pipeline.schemas gains a column that no migration adds (write one)."""
    with open_connection(pg_url) as conn:
        assert migrate(conn, "spy") == [m.version for m in MIGRATIONS]
        drift = schema_drift(conn, "spy")
    hint = "\n".join(pending_statements(migrated_columns()))
    assert drift == [], f"add a migration (python -m zerogex_pipeline.storage.postgres_migrations --new NAME):\n{hint}"


def test_migrations_apply_once_and_are_recorded(pg_url: str) -> None:
    with open_connection(pg_url) as conn:
        everything = [m.version for m in MIGRATIONS]
        assert migrate(conn, "spy", MIGRATIONS[:1]) == [1]
        assert migrate(conn, "spy") == everything[1:]  # only the pending ones
        assert migrate(conn, "spy") == []
        assert migrate(conn, "qqq") == everything  # one schema per underlying
        rows = conn.execute("SELECT version, name, checksum FROM spy.zerogex_migrations").fetchall()
    assert rows == [(m.version, m.name, m.checksum) for m in MIGRATIONS]


def test_a_new_migration_is_applied_and_an_edited_one_refused(pg_url: str) -> None:
    extra = Migration(MIGRATIONS[-1].version + 1, "test_column", "ALTER TABLE {schema}.gex_levels ADD COLUMN test_note TEXT;")
    with open_connection(pg_url) as conn:
        migrate(conn, "spy")
        assert migrate(conn, "spy", [*MIGRATIONS, extra]) == [extra.version]
        assert "gex_levels.test_note exists but is not declared" in schema_drift(conn, "spy")
        edited = Migration(1, MIGRATIONS[0].name, MIGRATIONS[0].sql + "\n-- edited")
        with pytest.raises(StorageError, match="edited after it was applied"):
            migrate(conn, "spy", [edited, *MIGRATIONS[1:], extra])
        with pytest.raises(StorageError, match="does not know"):
            migrate(conn, "spy", list(MIGRATIONS))


def test_writes_refuse_a_schema_that_drifted_from_the_declarations(pg_url: str) -> None:
    with open_connection(pg_url) as conn:
        migrate(conn, "spy")
        conn.execute("ALTER TABLE spy.gex_levels DROP COLUMN call_wall_gex")
        conn.commit()
        with pytest.raises(StorageError, match=r"gex_levels\.call_wall_gex is declared but no migration adds it"):
            prepare_schema(conn, pg_url, "spy", use_timescaledb=False, policy=TimescalePolicy())


def test_concurrent_migrations_apply_once(pg_url: str) -> None:
    import threading

    results: list[list[int]] = []

    def run() -> None:
        with open_connection(pg_url) as conn:
            results.append(migrate(conn, "spy"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(tuple, results)) == [(), (), (), tuple(m.version for m in MIGRATIONS)]


def test_draft_migration_lists_a_newly_declared_column(tmp_path: Path) -> None:
    live = migrated_columns()
    assert pending_statements(live) == []  # the migrations cover the declarations
    live["gex_levels"].discard("convention")
    assert pending_statements(live) == ["ALTER TABLE {schema}.gex_levels ADD COLUMN convention TEXT NOT NULL;"]


def test_binary_copy_round_trips_edge_values(pg_url: str) -> None:
    n = 4
    frame = OPTION_CHAIN_SNAPSHOTS.conform(
        pd.DataFrame(
            {
                "underlying": ["SPY", "SPX", "ÉTF ✓", "x" * 300],
                "session_date": pd.to_datetime(["1999-12-31", "2000-01-01", "2025-03-10", "2099-12-31"]),
                "expiration": pd.to_datetime(["1999-12-31", "2000-01-03", "2025-03-21", "2100-01-15"]),
                "expiration_slot": [1, 2, 3, 2**40],
                "snapshot_ts": pd.to_datetime(
                    ["1999-12-31 23:59:59.999999", "2000-01-01", "2025-03-10 13:30:00.123456", "2099-12-31 21:00"],
                    utc=True,
                    format="ISO8601",
                ),
                "symbol": ["A", "B", "", "D"],
                "option_type": ["C", "P", "C", "P"],
                "strike": [0.5, 1e6, -0.0, 123.456],
                "settlement": ["PM", "AM", "PM", "PM"],
                "bid": [0.0, 1.5, np.inf, 2.0],
                "ask": [1.0, 2.0, 3.0, 4.0],
                "last": [np.nan, 1.0, np.nan, 5e-324],
                "mid": [0.5, 1.75, 2.0, 3.0],
                "volume": [0, 2**62, -5, 7],
                "open_interest": [1, 2, 3, 4],
                "iv": [np.nan] * n,
                "delta": [0.5, np.nan, -0.5, 0.0],
                "gamma": [0.01] * n,
                "vega": [0.1] * n,
                "theta": [-0.1] * n,
                "spot": [500.0] * n,
                "spot_ts": pd.to_datetime(["2025-03-10 13:30"] * n, utc=True),
                "source": ["simulated", "tradestation", "x", "y"],
                "origin": ["capture", "historical", "capture", "historical"],
            }
        )
    )
    cols = ", ".join(f'"{c.name}" {SQL_TYPE[c.kind]}' for c in OPTION_CHAIN_SNAPSHOTS.columns)
    with open_connection(pg_url) as conn:
        conn.execute(f"CREATE TABLE t ({cols})")
        with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(encode_binary_copy(frame, OPTION_CHAIN_SNAPSHOTS))
        back = conn.execute("SELECT session_date::text, snapshot_ts::text, underlying FROM t").fetchall()
        assert back[0] == ("1999-12-31", "1999-12-31 23:59:59.999999+00", "SPY")
        assert back[2][2] == "ÉTF ✓"
        assert conn.execute("SELECT count(*) FROM t WHERE last IS NULL AND iv IS NULL").fetchone() == (2,)
        cols_sql = ", ".join(f'"{c}"' for c in OPTION_CHAIN_SNAPSHOTS.column_names)
        stored = read_frame(conn, f"SELECT {cols_sql} FROM t", [], OPTION_CHAIN_SNAPSHOTS)
    pd.testing.assert_frame_equal(stored, frame)


@pytest.mark.timescaledb
def test_timescaledb_layout(timescale_url: str, tmp_path: Path) -> None:
    with open_connection(timescale_url) as conn:
        migrate(conn, "spy")
        apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=3, snapshot_retention_days=90))
        apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=3, snapshot_retention_days=90))
        hypertables = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'spy'"
        ).fetchall()
        assert dict(hypertables) == {name: True for name in HYPERTABLES}
        jobs = conn.execute(
            "SELECT hypertable_name, proc_name FROM timescaledb_information.jobs WHERE hypertable_schema = 'spy'"
        ).fetchall()
        assert ("option_chain_snapshots", "policy_retention") in jobs
        assert ("gex_levels", "policy_retention") not in jobs
        assert {("gex_levels", "policy_compression"), ("option_chain_snapshots", "policy_compression")} <= set(jobs)
        segment = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings WHERE hypertable_schema = 'spy' "
            "AND hypertable_name = 'option_chain_snapshots' AND segmentby_column_index IS NOT NULL "
            "ORDER BY segmentby_column_index"
        ).fetchall()
        assert [r[0] for r in segment] == ["underlying", "expiration"]
        assert schema_drift(conn, "spy") == []


@pytest.mark.timescaledb
def test_timescaledb_store_gives_the_same_rows(timescale_url: str, tmp_path: Path) -> None:
    import dagster as dg

    from zerogex_pipeline.runner import materialize_day
    from zerogex_pipeline.settings import Settings
    from zerogex_pipeline.underlyings import resolve_underlying

    settings = Settings(first_date=TEST_FIRST_DATE, database_url=timescale_url, data_dir=tmp_path, expirations=1, snapshot_minutes=60)
    with dg.instance_for_test() as instance:
        first = materialize_day(resolve_underlying("SPY"), dt.date(2025, 1, 15), settings, instance)
        second = materialize_day(resolve_underlying("SPY"), dt.date(2025, 1, 15), settings, instance)
    assert first.rows == second.rows
    with open_connection(timescale_url) as conn:
        for name in first.rows:  # the tables materialize_day writes
            count = conn.execute(f"SELECT count(*) FROM spy.{name}").fetchone()
            assert count == (first.rows[name],)
