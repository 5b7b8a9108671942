"""An embedded DuckDB store made by an older version is brought to the declared tables, keeping its rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster._core.storage.db_io_manager import TableSlice

from zerogex_pipeline.schemas import GEX_SURFACE, AssetSchema
from zerogex_pipeline.storage.duckdb_io_manager import create_table_sql, ensure_table, primary_key
from zerogex_pipeline.storage.table_slices import StorageError

SURFACE = TableSlice(table="gex_surface", schema="spx", database="zerogex", partition_dimensions=None)
COLUMNS_BEFORE_0004 = tuple(c for c in GEX_SURFACE.columns if c.name != "settlement")
"""``gex_surface`` before migration 0004: no ``settlement``, one row per strike."""


def surface_rows(n: int, settlement: str | None = None) -> pd.DataFrame:
    values = {"text": "SPX", "date": pd.Timestamp("2025-01-17"), "timestamptz": pd.Timestamp("2025-01-17 15:00", tz="UTC"),
              "double": 0.25, "bigint": 10}
    frame = pd.DataFrame({c.name: [values[c.kind]] * n for c in GEX_SURFACE.columns})
    frame["strike"] = [5900.0 + 5 * i for i in range(n)]
    frame["settlement"] = settlement
    return frame


def old_store(path: Path, schema: AssetSchema, rows: pd.DataFrame) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA spx")
        conn.execute(create_table_sql("spx.gex_surface", schema))
        cols = ", ".join(schema.column_names)
        conn.register("old_rows", rows[schema.column_names])
        conn.execute(f"INSERT INTO spx.gex_surface ({cols}) SELECT {cols} FROM old_rows")


def test_a_surface_table_from_before_settlement_gains_the_column_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "zerogex.duckdb"
    before = dataclasses.replace(
        GEX_SURFACE, columns=COLUMNS_BEFORE_0004, primary_key=("session_date", "expiration", "snapshot_ts", "strike")
    )
    old_store(path, before, surface_rows(3))
    with duckdb.connect(str(path)) as conn:
        conn.begin()
        ensure_table(conn, SURFACE)
        conn.commit()
        assert primary_key(conn, "spx", "gex_surface") == GEX_SURFACE.primary_key
        stored = conn.execute("SELECT strike, settlement FROM spx.gex_surface ORDER BY strike").fetchall()
        assert stored == [(5900.0, "PM"), (5905.0, "PM"), (5910.0, "PM")]
        # the AM series of the same strike and snapshot is now its own row
        am = surface_rows(1, "AM")
        conn.register("am", am)
        conn.execute(f"INSERT INTO spx.gex_surface ({', '.join(GEX_SURFACE.column_names)}) SELECT * FROM am")
        assert conn.execute("SELECT count(*) FROM spx.gex_surface WHERE strike = 5900").fetchone() == (2,)
        # once current, nothing is rebuilt again
        ensure_table(conn, SURFACE)
        assert conn.execute("SELECT count(*) FROM spx.gex_surface").fetchone() == (4,)


def test_rows_that_cannot_fit_the_declared_table_refuse_and_leave_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "zerogex.duckdb"
    # an old table keyed on fewer columns, without a non-nullable column that has no value for old rows
    without_spot = tuple(c for c in GEX_SURFACE.columns if c.name != "spot")
    before = dataclasses.replace(GEX_SURFACE, columns=without_spot, primary_key=("session_date", "strike", "settlement"))
    old_store(path, before, surface_rows(2, "PM"))
    with duckdb.connect(str(path)) as conn:
        conn.begin()
        with pytest.raises(StorageError, match=r"spx\.gex_surface: the stored rows do not fit .*make clean-data"):
            ensure_table(conn, SURFACE)
        conn.rollback()
        assert primary_key(conn, "spx", "gex_surface") == ("session_date", "strike", "settlement")
        assert conn.execute("SELECT count(*) FROM spx.gex_surface").fetchone() == (2,)
        assert dt.date(2025, 1, 17) == conn.execute("SELECT max(session_date) FROM spx.gex_surface").fetchone()[0]
