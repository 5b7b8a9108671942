"""Stores and instances made before the expiration-slot partitions are brought to them (issue 12).

The embedded store's upgrade and PostgreSQL migration 0007 give stored chain and surface rows their
``expiration_slot``; ``zerogex migrate`` deletes the registered expirations, reports the stored partitions under
their ``date|slot`` keys, and marks stored levels on fewer expirations than tracked with a failed levels_complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.storage.db_io_manager import TableSlice

from zerogex_pipeline.defs.automation.partition_migration import MIGRATION_TAG, migrate_partitions
from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.schemas import GEX_SURFACE, OPTION_CHAIN_SNAPSHOTS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql, ensure_table
from zerogex_pipeline.storage.migrations import MIGRATIONS
from zerogex_pipeline.storage.postgres_io_manager import open_connection
from zerogex_pipeline.storage.postgres_migrations import migrate
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE

SPY = resolve_underlying("SPY")
D1, D2 = dt.date(2025, 1, 15), dt.date(2025, 1, 16)
E1, E2, E3 = dt.date(2025, 1, 15), dt.date(2025, 1, 16), dt.date(2025, 1, 17)
VALUES = {"text": "SPY", "date": pd.Timestamp("2025-01-15"), "timestamptz": pd.Timestamp("2025-01-15 15:00", tz="UTC"),
          "double": 1.0, "bigint": 2}


def without_slot(schema: AssetSchema) -> AssetSchema:
    return dataclasses.replace(schema, columns=tuple(c for c in schema.columns if c.name != "expiration_slot"))


def rows(schema: AssetSchema, pairs: list[tuple[dt.date, dt.date]]) -> pd.DataFrame:
    frame = pd.DataFrame({c.name: [VALUES[c.kind]] * len(pairs) for c in schema.columns})
    frame["session_date"] = [pd.Timestamp(d) for d, _ in pairs]
    frame["expiration"] = [pd.Timestamp(e) for _, e in pairs]
    if "symbol" in frame:
        frame["symbol"] = [f"S{i}" for i in range(len(pairs))]
    return frame


# the chain of D1 holds its three nearest expirations; its surface only the 2nd and 3rd (the 1st never computed);
# D2's chain has only its 2nd nearest (E3): the rank makes it slot 1, which the migration then finds mismatched
CHAIN_PAIRS = [(D1, E1), (D1, E2), (D1, E3), (D2, E3)]
SURFACE_PAIRS = [(D1, E2), (D1, E3)]
EXPECTED = {"option_chain_snapshots": [(D1, E1, 1), (D1, E2, 2), (D1, E3, 3), (D2, E3, 1)],
            "gex_surface": [(D1, E2, 2), (D1, E3, 3)]}


def test_an_older_embedded_store_gets_the_expiration_slots_of_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "zerogex.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA spy")
        for schema, pairs in ((OPTION_CHAIN_SNAPSHOTS, CHAIN_PAIRS), (GEX_SURFACE, SURFACE_PAIRS)):
            before = without_slot(schema)
            conn.execute(create_table_sql(f"spy.{schema.name}", before))
            conn.register("old", rows(before, pairs)[before.column_names])
            conn.execute(f"INSERT INTO spy.{schema.name} ({', '.join(before.column_names)}) SELECT * FROM old")
            conn.unregister("old")
        conn.begin()
        for name in EXPECTED:  # each table ranks over both tables' expirations: the slots agree
            ensure_table(conn, TableSlice(table=name, schema="spy", database="zerogex", partition_dimensions=None))
        conn.commit()
        for name, expected in EXPECTED.items():
            got = conn.execute(f"SELECT DISTINCT session_date, expiration, expiration_slot FROM spy.{name} "
                               "ORDER BY ALL").fetchall()
            assert got == expected, name


@pytest.mark.postgres
def test_migration_0007_gives_existing_rows_their_expiration_slots(pg_url: str) -> None:
    with open_connection(pg_url) as conn:
        migrate(conn, "spy", [m for m in MIGRATIONS if m.version <= 6])
        for schema, pairs in ((OPTION_CHAIN_SNAPSHOTS, CHAIN_PAIRS), (GEX_SURFACE, SURFACE_PAIRS)):
            frame = rows(without_slot(schema), pairs)
            cols = list(frame.columns)
            for record in frame.itertuples(index=False):
                values = [v.date() if isinstance(v, pd.Timestamp) and v.tzinfo is None else v for v in record]
                conn.execute(f"INSERT INTO spy.{schema.name} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                             values)
        conn.commit()
        assert migrate(conn, "spy") == [7]
        for name, expected in EXPECTED.items():
            got = conn.execute(f"SELECT DISTINCT session_date, expiration, expiration_slot FROM spy.{name} "
                               "ORDER BY 1, 2").fetchall()
            assert got == expected, name
            nullable = conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'spy' "
                                    "AND table_name = %s AND column_name = 'expiration_slot'", [name]).fetchone()
            assert nullable == ("NO",)


def test_zerogex_migrate_brings_an_old_instance_to_the_slot_partitions(tmp_path: Path) -> None:
    """A store with two days and an instance that only knows the old keys (and the registered expirations)."""
    settings = Settings(first_date=TEST_FIRST_DATE, data_dir=tmp_path, expirations=2, snapshot_minutes=60,
                        strike_distance_pct=3.0)
    with dg.instance_for_test() as writer:
        for day in (D1, D2):
            materialize_day(SPY, day, settings, writer)
    with duckdb.connect(str(settings.duckdb_path)) as conn:  # D2's levels as a date x registered grid left them
        conn.execute("UPDATE spy.gex_levels SET expirations = 1, expiration_list = '[\"2025-01-16\"]' "
                     "WHERE session_date = '2025-01-16'")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("spy_expirations", ["2025-01-15", "2025-01-16", "2025-01-17"])
        report = migrate_partitions(instance, settings, SPY)
        assert report.registered_deleted == 3 and instance.get_dynamic_partitions("spy_expirations") == []
        assert report.reported == {"option_chain_snapshots": 4, "gex_surface": 4} and not report.mismatched
        chain = dg.AssetKey(["spy", "option_chain_snapshots"])
        assert set(instance.get_materialized_partitions(chain)) == {
            "2025-01-15|1", "2025-01-15|2", "2025-01-16|1", "2025-01-16|2"}
        event = instance.get_latest_materialization_event(chain)
        assert event is not None and MIGRATION_TAG in event.asset_materialization.metadata
        assert report.incomplete_levels == [D2]
        key = dg.AssetCheckKey(dg.AssetKey(["spy", "gex_levels"]), "levels_complete")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        assert not evaluation.passed and evaluation.partition == "2025-01-16"
        assert "zerogex backfill --start 2025-01-16 --end 2025-01-16" in " ".join(report.lines())
        again = migrate_partitions(instance, settings, SPY)  # nothing left to do, nothing reported twice
        assert again.registered_deleted == 0 and again.reported == {}
