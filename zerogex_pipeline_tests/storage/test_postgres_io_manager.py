"""The PostgreSQL IO manager on a real server: every asset, idempotency, concurrency, crashes, restarts."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest

from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.partitions import chain_partition_key, trading_day_partitions
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.schemas import ALL_SCHEMAS, GEX_LEVELS, AssetSchema
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import levels_reader, postgres_io_manager, postgres_queries
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    open_connection,
    read_frame,
    write_partition,
)
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE
from zerogex_pipeline_tests.postgres_fixtures import PgServer

DAY_TABLES = ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels")
"""The tables ``materialize_day`` writes (alerts and backtests are other assets)."""


pytestmark = pytest.mark.postgres

SPY = resolve_underlying("SPY")
DAY = dt.date(2025, 1, 15)  # EST: the 09:30 ET open is 14:30 UTC
DAY2 = dt.date(2025, 1, 16)


def small_settings(tmp_path: Path, url: str | None) -> Settings:
    """Two expirations, 30-minute snapshots: every asset, in a few seconds."""
    return Settings(first_date=TEST_FIRST_DATE, database_url=url, data_dir=tmp_path / "data", expirations=2, snapshot_minutes=30)


def pg_table(url: str, name: str) -> pd.DataFrame:
    schema = ALL_SCHEMAS[name]
    cols = ", ".join(schema.column_names)
    with open_connection(url) as conn:
        return read_frame(conn, f"SELECT {cols} FROM spy.{name} ORDER BY {', '.join(schema.primary_key)}", [], schema)


def duck_table(settings: Settings, schema: AssetSchema) -> pd.DataFrame:
    cols = ", ".join(f'"{c}"' for c in schema.column_names)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        frame = conn.execute(
            f"SELECT {cols} FROM spy.{schema.name} ORDER BY {', '.join(schema.primary_key)}"
        ).df()
    return schema.conform(frame)


def test_every_asset_round_trips_and_matches_the_embedded_store(
    pg_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    pg = small_settings(tmp_path / "pg", pg_url)
    run = materialize_day(SPY, DAY, pg, instance)
    assert all(run.rows[name] > 0 for name in DAY_TABLES), run.rows
    with dg.instance_for_test() as duck_instance:
        duck = small_settings(tmp_path / "duck", None)
        materialize_day(SPY, DAY, duck, duck_instance)
    for name in DAY_TABLES:
        schema = ALL_SCHEMAS[name]
        stored = pg_table(pg_url, name)
        assert len(stored) == run.rows[name], name
        # Same rows and dtypes as the embedded store; gex_levels was computed from a PostgreSQL load.
        pd.testing.assert_frame_equal(stored, duck_table(duck, schema), check_exact=False, rtol=1e-12)
    chain = pg_table(pg_url, "option_chain_snapshots")
    assert str(chain["snapshot_ts"].dtype) == "datetime64[ns, UTC]"
    assert chain["snapshot_ts"].min() == pd.Timestamp("2025-01-15 14:30", tz="UTC")
    assert str(chain["session_date"].dtype) == "datetime64[ns]"
    with psycopg.connect(pg_url) as conn:  # stored as timestamptz, shown in the session's zone
        conn.execute("SET TimeZone TO 'America/New_York'")
        first = conn.execute("SELECT min(snapshot_ts)::text FROM spy.option_chain_snapshots").fetchone()
    assert first is not None and first[0] == "2025-01-15 09:30:00-05"


def test_loading_reads_exactly_the_requested_partitions(
    pg_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = small_settings(tmp_path, pg_url)
    first = materialize_day(SPY, DAY, settings, instance)
    materialize_day(SPY, DAY2, settings, instance)
    assets = build_underlying_assets(SPY, settings)
    defs = dg.Definitions(assets=assets, resources=build_resources(settings))
    exp = first.expirations[1]
    surface = defs.load_asset_value(
        ["spy", "gex_surface"], partition_key=chain_partition_key(DAY, 2), instance=instance
    )
    assert isinstance(surface, pd.DataFrame) and len(surface) > 0
    assert set(surface["session_date"]) == {pd.Timestamp(DAY)}
    assert set(surface["expiration"]) == {pd.Timestamp(exp)}
    everything = pg_table(pg_url, "gex_surface")
    expected = everything[
        (everything["session_date"] == pd.Timestamp(DAY)) & (everything["expiration"] == pd.Timestamp(exp))
    ].reset_index(drop=True)
    pd.testing.assert_frame_equal(surface, expected)
    levels = defs.load_asset_value(["spy", "gex_levels"], partition_key=DAY2.isoformat(), instance=instance)
    assert isinstance(levels, pd.DataFrame)
    assert set(levels["session_date"]) == {pd.Timestamp(DAY2)}
    assert str(levels["snapshot_ts"].dtype) == "datetime64[ns, UTC]"


def test_rerunning_a_day_gives_identical_rows(pg_url: str, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    settings = small_settings(tmp_path, pg_url)
    materialize_day(SPY, DAY, settings, instance)
    before = {name: pg_table(pg_url, name) for name in DAY_TABLES}
    materialize_day(SPY, DAY, settings, instance)
    materialize_day(SPY, DAY, settings, instance)
    for name in DAY_TABLES:
        pd.testing.assert_frame_equal(pg_table(pg_url, name), before[name])


def levels_frame(date: dt.date, spot: float, rows: int = 50) -> pd.DataFrame:
    frame = GEX_LEVELS.empty_frame().reindex(range(rows))
    start = pd.Timestamp(f"{date} 14:30", tz="UTC")
    frame["underlying"] = "SPY"
    frame["session_date"] = pd.Timestamp(date)
    frame["snapshot_ts"] = [start + pd.Timedelta(minutes=5 * i) for i in range(rows)]
    for col in ("spot", "net_gex", "call_gex", "put_gex", "net_gex_at_spot", "rate", "dividend_yield"):
        frame[col] = spot
    frame["expirations"] = 1
    frame["expiration_list"] = "[\"2025-01-17\"]"
    frame["contracts"] = 10
    frame["convention"] = "test"
    return GEX_LEVELS.conform(frame)


def write_levels(url: str, date: dt.date, frame: pd.DataFrame, instance: dg.DagsterInstance | None = None) -> None:
    write_partition(
        PostgresFrameIOManager(database_url=url),
        dg.AssetKey(["spy", "gex_levels"]),
        trading_day_partitions(TEST_FIRST_DATE),
        date.isoformat(),
        frame,
        "session_date",
        instance,
    )


def test_concurrent_writes_of_one_partition_serialize(pg_url: str) -> None:
    write_levels(pg_url, DAY, levels_frame(DAY, 1.0))  # tables exist before the race
    for attempt in range(4):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def writer(
            spot: float, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            try:
                barrier.wait()
                write_levels(pg_url, DAY, levels_frame(DAY, spot))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(float(10 * attempt + k),)) for k in (2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        stored = pg_table(pg_url, "gex_levels")
        assert len(stored) == 50  # one complete version, never both or a mix
        assert stored["spot"].nunique() == 1
        assert stored["spot"].iloc[0] in {10.0 * attempt + 2, 10.0 * attempt + 3}


def test_a_crash_mid_write_keeps_the_previous_version(
    pg_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_levels(pg_url, DAY, levels_frame(DAY, 1.0), instance)
    original = postgres_io_manager.copy_frame

    def crashing_copy(cursor, qualified, frame, schema):  # type: ignore[no-untyped-def]
        original(cursor, qualified, frame.iloc[: len(frame) // 2], schema)  # half the rows reach the server
        raise RuntimeError("simulated crash during COPY")

    monkeypatch.setattr(postgres_io_manager, "copy_frame", crashing_copy)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_levels(pg_url, DAY, levels_frame(DAY, 2.0), instance)
    stored = pg_table(pg_url, "gex_levels")
    assert len(stored) == 50 and set(stored["spot"]) == {1.0}


def test_rows_outside_the_partition_and_duplicate_keys_are_refused(pg_url: str, instance: dg.DagsterInstance) -> None:
    write_levels(pg_url, DAY, levels_frame(DAY, 1.0), instance)
    with pytest.raises(StorageError, match="outside the partition"):
        write_levels(pg_url, DAY, levels_frame(DAY2, 2.0), instance)
    doubled = pd.concat([levels_frame(DAY, 3.0), levels_frame(DAY, 3.0)], ignore_index=True)
    with pytest.raises(StorageError, match="repeat the primary key"):
        write_levels(pg_url, DAY, doubled, instance)
    assert set(pg_table(pg_url, "gex_levels")["spot"]) == {1.0}


def test_server_restart_between_two_materializations(
    pg_server: PgServer, pg_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    if pg_server.cluster is None:
        pytest.skip("ZEROGEX_TEST_DATABASE_URL is an external server; cannot restart it from the test")
    settings = small_settings(tmp_path, pg_url)
    materialize_day(SPY, DAY, settings, instance)
    pg_server.cluster.restart()
    materialize_day(SPY, DAY2, settings, instance)
    levels = pg_table(pg_url, "gex_levels")
    assert set(levels["session_date"]) == {pd.Timestamp(DAY), pd.Timestamp(DAY2)}


def test_closing_levels_and_latest_paths_read_postgres(
    pg_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = small_settings(tmp_path, pg_url)
    materialize_day(SPY, DAY, settings, instance)
    run2 = materialize_day(SPY, DAY2, settings, instance)
    closing = levels_reader.closing_levels(settings, SPY, [DAY, DAY2, dt.date(2025, 1, 17)])
    levels = pg_table(pg_url, "gex_levels")
    expected = levels.sort_values("snapshot_ts").groupby("session_date").tail(1).reset_index(drop=True)
    pd.testing.assert_frame_equal(closing, expected)
    with open_connection(pg_url) as conn:
        latest = postgres_queries.latest_levels(conn, "spy")
        assert len(latest) == 1 and latest["snapshot_ts"].iloc[0] == levels["snapshot_ts"].max()
        intraday = postgres_queries.intraday_levels(conn, "spy", DAY)
        assert len(intraday) == int((levels["session_date"] == pd.Timestamp(DAY)).sum())
        surface = postgres_queries.day_surface(conn, "spy", DAY2, run2.expirations[0])
        assert len(surface) > 0 and set(surface["expiration"]) == {pd.Timestamp(run2.expirations[0])}
        snap = postgres_queries.latest_snapshot(conn, "spy")
        chain = pg_table(pg_url, "option_chain_snapshots")
        newest = chain[chain["snapshot_ts"] == chain["snapshot_ts"].max()]
        assert len(snap) == len(newest) > 0
    # the CLI's readers (levels --latest / --intraday) give the same rows as the table
    pd.testing.assert_frame_equal(levels_reader.latest_levels(settings, SPY), levels.tail(1).reset_index(drop=True))
    day2 = levels[levels["session_date"] == pd.Timestamp(DAY2)].reset_index(drop=True)
    pd.testing.assert_frame_equal(levels_reader.intraday_levels(settings, SPY, DAY2), day2)


def test_closing_levels_before_anything_is_stored(pg_url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such table yet"):
        levels_reader.closing_levels(small_settings(tmp_path, pg_url), SPY, [DAY])


def test_failed_run_reports_storage_errors(pg_url: str, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    settings = small_settings(tmp_path, pg_url.replace("/zg_test_", "/zg_missing_"))
    with pytest.raises(RunFailedError, match="cannot connect"):
        materialize_day(SPY, DAY, settings, instance)
