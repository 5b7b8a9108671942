"""The checks load their partitions through the PostgreSQL IO manager exactly as through DuckDB."""

import json

import dagster as dg
import pytest

from zerogex_pipeline.defs.partitions import chain_partition_key
from zerogex_pipeline.settings import load_settings
from zerogex_pipeline_tests.checks.test_asset_checks import (
    DAY,
    EXP,
    CorruptMarket,
    Pipeline,
    evaluations,
    materialized,
    meta,
    use_source,
)
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV


def test_checks_pass_and_fail_through_the_postgres_store(
    pg_url: str, tmp_path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path), "ZEROGEX_DATABASE_URL": pg_url,
                              "ZEROGEX_SNAPSHOT_MINUTES": "30", "ZEROGEX_EXPIRATIONS": "2"}, env_file=None)
    pipeline = Pipeline(settings, instance)
    results = pipeline.day(DAY)  # bars, chain + surface of slots 1 and 2 (DAY and EXP), levels
    assert all(r.success for r in results)
    checks = [e for r in results for e in evaluations(r).values()]
    assert len(checks) == 7 and all(e.passed for e in checks)  # bars, 2 x (chain, surface), levels x 2
    complete = evaluations(results[-1])["levels_complete"]
    assert meta(complete, "expirations_tracked") == json.dumps({DAY.isoformat(): [DAY.isoformat(), EXP.isoformat()]})
    levels = evaluations(results[-1])["levels_plausibility"]
    assert meta(levels, "rows_checked") == 14 and meta(levels, "worst_total_error_rel") < 1e-12

    use_source(monkeypatch, CorruptMarket(chain=lambda c: c.assign(open_interest=-c["open_interest"])))
    result = pipeline.run(["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 2))
    assert not evaluations(result)["chain_sanity"].passed
    assert materialized(result) == {"option_chain_snapshots"}
