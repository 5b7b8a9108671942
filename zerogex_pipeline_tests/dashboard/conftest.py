"""Stores with real pipeline output for the dashboard tests, on both stores, built once per session.

Two simulated SPY days (2024-06-12, 2024-06-13: the second has zero-gamma crosses and wall breaches) are
materialized through the real runner (bars, chain, surface, levels; 2 expirations, 30-minute snapshots) and
the alerts asset, into an embedded DuckDB file and into a PostgreSQL template database. Each test gets its
own copy (a file copy; ``CREATE DATABASE ... TEMPLATE``), so tests that write live levels don't see each
other. Live levels are faked as the stream engine will write them: ``CaptureStore.write`` of LIVE_LEVELS rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest
import uvicorn
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from psycopg import sql

from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.alerts import build_alert_assets
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.runner import materialize_days
from zerogex_pipeline.schemas import LIVE_LEVELS
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.storage.capture_store import CaptureBatch, CaptureStore
from zerogex_pipeline.storage.postgres_io_manager import forget_prepared_schemas
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV
from zerogex_pipeline_tests.postgres_fixtures import PgServer
from zerogex_pipeline_tests.ui.conftest import artifacts_dir  # noqa: F401  (screenshots under test-artifacts/)

SPY = resolve_underlying("SPY")
DAYS = (dt.date(2024, 6, 12), dt.date(2024, 6, 13))
ALERT_DAY = DAYS[1]
SMALL = {"ZEROGEX_EXPIRATIONS": "2", "ZEROGEX_SNAPSHOT_MINUTES": "30", "ZEROGEX_UNDERLYINGS": "SPY"}


def small_settings(data_dir: Path, database_url: str | None = None) -> Settings:
    env = {**TEST_FIRST_DATE_ENV, **SMALL, "ZEROGEX_DATA_DIR": str(data_dir)}
    if database_url:
        env["ZEROGEX_DATABASE_URL"] = database_url
    return load_settings(env, env_file=None)


def materialize(settings: Settings, days: tuple[dt.date, ...], instance: dg.DagsterInstance) -> None:
    """The four core assets of the (consecutive) days in range runs, then the days' alerts in one run (what make
    ui's daemon and alerts sensor would run)."""
    materialize_days(SPY, days, settings, instance)
    assets = build_underlying_assets(SPY, settings)
    [alerts] = build_alert_assets(SPY, settings, storage_kind(settings), assets[-1])
    keys = [d.isoformat() for d in days]
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]} if len(keys) > 1 else {}
    result = dg.materialize([*assets, alerts], selection=[alerts.key], partition_key=None if tags else keys[0],
                            tags=tags, instance=instance, resources=build_resources(settings))
    assert result.success


@pytest.fixture(scope="session")
def embedded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``zerogex.duckdb`` holding the two days (built once)."""
    data_dir = tmp_path_factory.mktemp("dashboard_embedded") / "data"
    with dg.instance_for_test() as instance:
        materialize(small_settings(data_dir), DAYS, instance)
    return data_dir / "zerogex.duckdb"


@pytest.fixture(scope="session")
def postgres_template(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Name of a PostgreSQL database holding the two days (built once; used as a template)."""
    name = f"zg_dash_tpl_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    forget_prepared_schemas()
    with dg.instance_for_test() as instance:
        materialize(small_settings(tmp_path_factory.mktemp("dashboard_pg") / "data", pg_server.url_for(name)), DAYS, instance)
    forget_prepared_schemas()  # no connection may stay on a template database
    yield name
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def embedded_settings(embedded_template: Path, tmp_path: Path) -> Settings:
    """Settings on a private copy of the embedded store."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(embedded_template, data_dir / "zerogex.duckdb")
    return small_settings(data_dir)


@pytest.fixture
def postgres_settings(pg_server: PgServer, postgres_template: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a private copy of the PostgreSQL template database."""
    name = f"zg_dash_{secrets.token_hex(4)}"
    deadline = time.monotonic() + 30
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        while True:  # a session closed a moment ago may still be leaving the template database
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                             sql.Identifier(postgres_template)))
                break
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    forget_prepared_schemas()
    yield small_settings(tmp_path / "data", pg_server.url_for(name))
    forget_prepared_schemas()
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    """Each test with this fixture runs on the embedded store and on PostgreSQL."""
    name = "embedded_settings" if request.param == "duckdb" else "postgres_settings"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def live_row(day: dt.date, instant: pd.Timestamp, spot: float, net_gex: float = -2.5e9,
             zero_gamma: float | None = None, call_wall: float | None = None, put_wall: float | None = None,
             feed: str = "tradestation") -> pd.DataFrame:
    """One LIVE_LEVELS row as ``zerogex stream`` writes it."""
    row: dict[str, Any] = {c.name: None for c in LIVE_LEVELS.columns}
    row.update({
        "underlying": "SPY", "session_date": pd.Timestamp(day), "snapshot_ts": instant, "spot": spot,
        "net_gex": net_gex, "call_gex": 3e9, "put_gex": net_gex - 3e9, "net_gex_at_spot": net_gex,
        "zero_gamma": zero_gamma, "call_wall": call_wall, "put_wall": put_wall,
        "call_wall_gex": 1e9, "put_wall_gex": -1.5e9, "max_pain_next": round(spot),
        "max_pain": json.dumps({day.isoformat(): round(spot)}),
        "expirations": 2, "contracts": 400, "rate": 0.04, "dividend_yield": 0.012,
        "convention": "zerogex-v1: dealer long calls (+), short puts (-); net = call + put; GEX in USD per 1% move",
        "spot_ts": instant - pd.Timedelta(milliseconds=250), "feed": feed,
        "expiration_list": json.dumps([day.isoformat()]), "compute_ms": 4.2,
    })
    return LIVE_LEVELS.conform(pd.DataFrame([row]))


def in_process_retry(write: Any, timeout: float = 10.0) -> None:
    """Run ``write``, retrying while a server *thread of this process* has the DuckDB file open read-only.

    DuckDB refuses a read-write connection in a process that holds a read-only one to the same file
    (``Can't open a connection to same database file with a different configuration``); across processes,
    as in production, a writer just waits for the file lock instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            write()
            return
        except (StorageError, duckdb.ConnectionException) as exc:
            if "different configuration" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def write_live(settings: Settings, *frames: pd.DataFrame) -> None:
    """Append live-levels rows through the capture store (one transaction), as ``zerogex stream`` does."""
    store = CaptureStore(settings, wait_s=10)
    try:
        in_process_retry(lambda: store.write(CaptureBatch(levels={"spy": pd.concat(frames, ignore_index=True)})))
    finally:
        store.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a thread of this process); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # open event streams are cancelled after timeout_graceful_shutdown
        thread.join(timeout=15)
