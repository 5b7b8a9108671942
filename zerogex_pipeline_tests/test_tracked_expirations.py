"""Levels aggregate exactly the tracked expirations and say which (issue 13, item 9).

After lowering ZEROGEX_EXPIRATIONS from 3 to 2 and re-running, the third expiration's chain and surface stay in the
store (they are still that expiration's data), but gex_levels must equal a clean 2-expiration run. Existing levels
rows of an older store get the expirations of the stored surface at their snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest
from dagster._core.storage.db_io_manager import TableSlice

from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.schemas import GEX_LEVELS, GEX_SURFACE
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql, ensure_table
from zerogex_pipeline.storage.migrations import MIGRATIONS
from zerogex_pipeline.storage.postgres_io_manager import open_connection
from zerogex_pipeline.storage.postgres_migrations import migrate
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
DAY = dt.date(2026, 11, 19)


def stored_levels(settings: Settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        frame = conn.execute(f"SELECT {', '.join(GEX_LEVELS.column_names)} FROM spy.gex_levels ORDER BY snapshot_ts").df()
    return GEX_LEVELS.conform(frame)


def test_levels_use_exactly_the_tracked_expirations_after_lowering_their_number(tmp_path: Path) -> None:
    def settings(folder: str, expirations: int) -> Settings:
        return Settings(data_dir=tmp_path / folder, expirations=expirations, snapshot_minutes=60)

    with dg.instance_for_test() as instance:
        three = materialize_day(SPY, DAY, settings("lowered", 3), instance)
        assert len(three.expirations) == 3
        two = materialize_day(SPY, DAY, settings("lowered", 2), instance)
    with dg.instance_for_test() as instance:
        materialize_day(SPY, DAY, settings("clean", 2), instance)
    lowered, clean = stored_levels(settings("lowered", 2)), stored_levels(settings("clean", 2))
    pd.testing.assert_frame_equal(lowered, clean)  # net GEX -5.78bn against -5.33bn before: the 3rd was counted
    listed = [e.isoformat() for e in two.expirations]
    assert set(lowered["expiration_list"]) == {json.dumps(listed)}
    assert set(lowered["expirations"]) == {2}
    with duckdb.connect(str(settings("lowered", 2).duckdb_path), read_only=True) as conn:  # the 3rd is still stored
        assert conn.execute("SELECT count(DISTINCT expiration) FROM spy.gex_surface").fetchone() == (3,)


LEVELS = TableSlice(table="gex_levels", schema="spy", database="zerogex", partition_dimensions=None)


def test_an_older_embedded_store_gets_the_expirations_of_its_stored_surface(tmp_path: Path) -> None:
    before = dataclasses.replace(GEX_LEVELS, columns=tuple(c for c in GEX_LEVELS.columns if c.name != "expiration_list"))
    values = {"text": "SPY", "date": pd.Timestamp("2025-01-15"), "timestamptz": pd.Timestamp("2025-01-15 15:00", tz="UTC"),
              "double": 1.0, "bigint": 2}
    levels = pd.DataFrame({c.name: [values[c.kind]] * 2 for c in before.columns})
    levels.loc[1, "snapshot_ts"] = pd.Timestamp("2025-01-15 16:00", tz="UTC")  # no surface stored at this one
    surface = pd.DataFrame({c.name: [values[c.kind]] * 2 for c in GEX_SURFACE.columns})
    surface["expiration"] = [pd.Timestamp("2025-01-17"), pd.Timestamp("2025-01-15")]
    path = tmp_path / "zerogex.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA spy")
        for name, schema, rows in (("gex_levels", before, levels), ("gex_surface", GEX_SURFACE, surface)):
            conn.execute(create_table_sql(f"spy.{name}", schema))
            conn.register("rows", rows[schema.column_names])
            conn.execute(f"INSERT INTO spy.{name} SELECT * FROM rows")
            conn.unregister("rows")
        conn.begin()
        ensure_table(conn, LEVELS)
        conn.commit()
        got = conn.execute("SELECT expiration_list FROM spy.gex_levels ORDER BY snapshot_ts").fetchall()
    assert got == [('["2025-01-15", "2025-01-17"]',), ("[]",)]


@pytest.mark.postgres
def test_migration_0006_gives_existing_levels_rows_their_surface_expirations(pg_url: str) -> None:
    with open_connection(pg_url) as conn:
        migrate(conn, "spy", [m for m in MIGRATIONS if m.version <= 5])
        surface_cols = [c.name for c in GEX_SURFACE.columns if c.name != "expiration_slot"]  # (0007 adds it)
        row = {c.name: {"text": "SPY", "date": dt.date(2025, 1, 15), "timestamptz": pd.Timestamp("2025-01-15 15:00", tz="UTC"),
                        "double": 1.0, "bigint": 2}[c.kind] for c in GEX_SURFACE.columns}
        for expiration in (dt.date(2025, 1, 17), dt.date(2025, 1, 15)):
            conn.execute(f"INSERT INTO spy.gex_surface ({', '.join(surface_cols)}) VALUES ({', '.join(['%s'] * len(surface_cols))})",
                         [{**row, "expiration": expiration}[c] for c in surface_cols])
        level_cols = [c.name for c in GEX_LEVELS.columns if c.name != "expiration_list"]
        for ts in ("2025-01-15 15:00", "2025-01-15 16:00"):
            values = {c.name: {"text": "SPY", "date": dt.date(2025, 1, 15), "timestamptz": pd.Timestamp(ts, tz="UTC"),
                               "double": 1.0, "bigint": 2}[c.kind] for c in GEX_LEVELS.columns}
            conn.execute(f"INSERT INTO spy.gex_levels ({', '.join(level_cols)}) VALUES ({', '.join(['%s'] * len(level_cols))})",
                         [values[c] for c in level_cols])
        conn.commit()
        assert migrate(conn, "spy", [m for m in MIGRATIONS if m.version <= 6]) == [6]
        got = conn.execute("SELECT expiration_list FROM spy.gex_levels ORDER BY snapshot_ts").fetchall()
    assert got == [('["2025-01-15", "2025-01-17"]',), ("[]",)]
    with psycopg.connect(pg_url) as conn:  # NOT NULL, as declared (and as live_levels has it since 0005)
        nullable = conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'spy' "
                                "AND table_name = 'gex_levels' AND column_name = 'expiration_list'").fetchone()
    assert nullable == ("NO",)
