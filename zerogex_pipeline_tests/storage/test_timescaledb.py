"""The TimescaleDB layout and writes through the IO manager on hypertables (compressed chunks included).

Skipped, with the reason printed, when the server has no TimescaleDB (installed and preloaded): CI runs
plain PostgreSQL. The throwaway cluster preloads it whenever ``timescaledb.so`` is installed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from benchmarks.load_history import day_frames
from zerogex_pipeline.defs.partitions import (
    chain_partition_key,
    chain_partitions,
)
from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.schemas import ALL_SCHEMAS, OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.postgres_io_manager import (
    PostgresFrameIOManager,
    open_connection,
    read_frame,
    write_partition,
)
from zerogex_pipeline.storage.postgres_migrations import (
    HYPERTABLES,
    TimescalePolicy,
    apply_timescaledb,
    migrate,
)
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE
from zerogex_pipeline_tests.postgres_fixtures import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.timescaledb]

SPY = resolve_underlying("SPY")
DAY = dt.date(2025, 1, 15)


@pytest.fixture
def plain_url(pg_server: PgServer) -> Iterator[str]:
    """A second fresh database without the extension (plain PostgreSQL tables)."""
    name = f"zg_plain_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def jobs(conn: psycopg.Connection, proc: str) -> dict[str, dict[str, object]]:
    rows = conn.execute(
        "SELECT hypertable_name, config FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = 'spy' AND proc_name = %s",
        [proc],
    ).fetchall()
    return {str(name): dict(config) for name, config in rows}


def test_hypertables_chunk_intervals_and_compression_settings(timescale_url: str) -> None:
    with open_connection(timescale_url) as conn:
        migrate(conn, "spy")
        apply_timescaledb(conn, "spy", TimescalePolicy())
        dims = conn.execute(
            "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = 'spy'"
        ).fetchall()
        assert {name: (col, interval) for name, col, interval in dims} == {
            name: ("session_date", pd.Timedelta(interval).to_pytimedelta())
            for name, (interval, _, _) in HYPERTABLES.items()
        }
        settings = conn.execute(
            "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index, orderby_asc "
            "FROM timescaledb_information.compression_settings WHERE hypertable_schema = 'spy'"
        ).fetchall()
        for name, (_, segment_by, order_by) in HYPERTABLES.items():
            mine = [r for r in settings if r[0] == name]
            segments = [r[1] for r in sorted((r for r in mine if r[2] is not None), key=lambda r: r[2])]
            assert segments == [c.strip() for c in segment_by.split(",")], name
            orders = [(r[1], r[4]) for r in sorted((r for r in mine if r[3] is not None), key=lambda r: r[3])]
            expected = [(part.split()[0], not part.strip().endswith("DESC")) for part in order_by.split(",")]
            # TimescaleDB appends the time dimension (DESC) when the order-by lacks it.
            assert orders == [(c.strip(), asc) for c, asc in expected] + [("session_date", False)], name
        assert {k: v["compress_after"] for k, v in jobs(conn, "policy_compression").items()} == {
            name: "7 days" for name in HYPERTABLES
        }


def test_policies_follow_the_configuration_and_retention_is_only_on_raw_snapshots(timescale_url: str) -> None:
    with open_connection(timescale_url) as conn:
        migrate(conn, "spy")
        apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=3, snapshot_retention_days=90))
        assert {k: v["drop_after"] for k, v in jobs(conn, "policy_retention").items()} == {
            "option_chain_snapshots": "90 days"
        }
        assert {v["compress_after"] for v in jobs(conn, "policy_compression").values()} == {"3 days"}
        apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=10, snapshot_retention_days=30))
        assert {k: v["drop_after"] for k, v in jobs(conn, "policy_retention").items()} == {
            "option_chain_snapshots": "30 days"
        }
        assert {v["compress_after"] for v in jobs(conn, "policy_compression").values()} == {"10 days"}
        apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=10, snapshot_retention_days=None))
        assert jobs(conn, "policy_retention") == {}
        assert len(jobs(conn, "policy_compression")) == len(HYPERTABLES)
        with pytest.raises(StorageError, match="compress_after_days must be >= 0"):
            apply_timescaledb(conn, "spy", TimescalePolicy(compress_after_days=-1))


def chain_rows(url: str) -> pd.DataFrame:
    cols = ", ".join(OPTION_CHAIN_SNAPSHOTS.column_names)
    order = ", ".join(OPTION_CHAIN_SNAPSHOTS.primary_key)
    with open_connection(url) as conn:
        return read_frame(
            conn, f"SELECT {cols} FROM spy.option_chain_snapshots ORDER BY {order}", [], OPTION_CHAIN_SNAPSHOTS
        )


def test_a_compressed_chunk_is_rewritten_idempotently_through_the_io_manager(timescale_url: str) -> None:
    chain = day_frames("SPY", DAY, expirations=2, snapshot_minutes=30)["option_chain_snapshots"]
    parts = {int(k): p.reset_index(drop=True) for k, p in chain.groupby("expiration_slot")}
    manager = PostgresFrameIOManager(database_url=timescale_url)
    with dg.instance_for_test() as instance:

        def write(slot: int, frame: pd.DataFrame) -> None:
            write_partition(
                manager, dg.AssetKey(["spy", "option_chain_snapshots"]),
                chain_partitions(Settings(first_date=TEST_FIRST_DATE, expirations=2)),
                chain_partition_key(DAY, slot), frame, {"date": "session_date", "expiration": "expiration_slot"},
                instance,
            )

        for expiration, frame in parts.items():
            write(expiration, frame)
        with open_connection(timescale_url) as conn:
            compressed = conn.execute(
                "SELECT count(compress_chunk(c)) FROM show_chunks('spy.option_chain_snapshots') c"
            ).fetchone()
            conn.commit()
            assert compressed == (1,)
        target, other = sorted(parts)
        changed = parts[target].copy()
        changed["bid"] = changed["bid"] + 1.0
        write(target, changed)
        write(target, changed)  # twice: still one version
        stored = chain_rows(timescale_url)
        with open_connection(timescale_url) as conn:
            state = conn.execute(
                "SELECT is_compressed FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = 'spy' AND hypertable_name = 'option_chain_snapshots'"
            ).fetchall()
        # The re-write decompressed the chunk first (see decompress_slice_chunks); the policy recompresses it.
        assert state == [(False,)]
        with open_connection(timescale_url) as conn:
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('spy.option_chain_snapshots') c").fetchall()
            conn.commit()
        write(target, changed)  # and once more on the recompressed chunk
        assert chain_rows(timescale_url).equals(stored)
    key = list(OPTION_CHAIN_SNAPSHOTS.primary_key)
    expected = OPTION_CHAIN_SNAPSHOTS.conform(pd.concat([changed, parts[other]], ignore_index=True))
    expected = expected.sort_values(key).reset_index(drop=True)
    assert len(stored) == len(chain)
    pd.testing.assert_frame_equal(stored, expected)


def test_the_same_rows_as_on_plain_postgresql(timescale_url: str, plain_url: str, tmp_path: Path) -> None:
    results = {}
    written = ("option_chain_snapshots", "gex_surface", "gex_levels", "underlying_bars")  # what materialize_day writes
    for label, url in (("timescale", timescale_url), ("plain", plain_url)):
        settings = Settings(first_date=TEST_FIRST_DATE, database_url=url, data_dir=tmp_path / label, expirations=2, snapshot_minutes=30)
        with dg.instance_for_test() as instance:
            materialize_day(SPY, DAY, settings, instance)
        results[label] = {}
        with open_connection(url) as conn:
            hypertables = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            assert hypertables == ((1,) if label == "timescale" else (0,))
            if label == "timescale":
                conn.execute(
                    "SELECT compress_chunk(c) FROM show_chunks('spy.option_chain_snapshots') c"
                ).fetchall()
                conn.commit()
            for name in written:
                schema = ALL_SCHEMAS[name]
                cols = ", ".join(schema.column_names)
                order = ", ".join(schema.primary_key)
                results[label][name] = read_frame(conn, f"SELECT {cols} FROM spy.{name} ORDER BY {order}", [], schema)
    for name in written:
        assert len(results["plain"][name]) > 0, name
        pd.testing.assert_frame_equal(results["timescale"][name], results["plain"][name])
