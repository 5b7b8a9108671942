"""The production Dagster instance config (deploy/dagster.postgres.yaml) on a real PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from zerogex_pipeline_tests.postgres_fixtures import PgServer

pytestmark = pytest.mark.postgres

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.postgres.yaml"


def test_production_instance_uses_dagster_postgres_from_env(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier("zg_dagster_instance")))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("zg_dagster_instance")))
    parts = urlsplit(pg_server.admin_url)
    for var, value in {
        "DAGSTER_PG_HOST": parts.hostname, "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": "zg_dagster_instance", "DAGSTER_PG_USERNAME": parts.username,
        "DAGSTER_PG_PASSWORD": parts.password,
    }.items():
        monkeypatch.setenv(var, value or "")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 4
        assert not instance.telemetry_enabled
        instance.add_dynamic_partitions("spy_expirations", ["2025-01-17"])  # state lands in PostgreSQL
    finally:
        instance.dispose()
    with psycopg.connect(pg_server.url_for("zg_dagster_instance")) as conn:
        rows = conn.execute("SELECT partition FROM dynamic_partitions").fetchall()
    assert rows == [("2025-01-17",)]
