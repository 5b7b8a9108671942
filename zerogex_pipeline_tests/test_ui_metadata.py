"""What the Dagster UI shows: kinds, column lineage, and the PNG charts in materialization metadata."""

import base64
import datetime as dt
import re

import dagster as dg
import pytest

from zerogex_pipeline.definitions import build_defs
from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DATA_URI = re.compile(r"^!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)$")


def png_of(markdown: str) -> bytes:
    match = DATA_URI.match(markdown)
    assert match, markdown[:80]
    return base64.b64decode(match.group(1))


def latest(instance: dg.DagsterInstance, name: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(["spy", name]))
    return event.asset_materialization.metadata


def test_levels_and_surface_carry_charts_and_column_lineage(settings: Settings, instance: dg.DagsterInstance) -> None:
    materialize_day(SPY, dt.date(2024, 6, 14), settings, instance)
    levels = latest(instance, "gex_levels")
    for chart in ("gamma_profile", "gex_by_strike", "intraday_levels"):
        png = png_of(levels[chart].value)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < len(png) < 150_000  # a real picture, small enough for the event log
    lineage = levels["dagster/column_lineage"].value
    zero_gamma_deps = {(d.asset_key.to_user_string(), d.column_name) for d in lineage.deps_by_column["zero_gamma"]}
    assert ("spy/gex_surface", "call_oi") in zero_gamma_deps and ("spy/gex_surface", "put_iv") in zero_gamma_deps
    surface = latest(instance, "gex_surface")
    assert png_of(surface["gex_by_strike"].value)[:4] == b"\x89PNG"
    net = {(d.asset_key.to_user_string(), d.column_name) for d in surface["dagster/column_lineage"].value.deps_by_column["net_gex"]}
    assert ("spy/option_chain_snapshots", "open_interest") in net


@pytest.mark.parametrize(
    ("env", "storage", "source"),
    [
        ({}, "duckdb", "simulated"),
        ({"ZEROGEX_DATABASE_URL": "postgresql://u:p@localhost:5432/z"}, "timescaledb", "simulated"),
    ],
)
def test_kinds_name_the_store_and_the_source(tmp_path, env: dict, storage: str, source: str) -> None:
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path), **env}, env_file=None)
    kinds = {spec.key.to_user_string(): spec.kinds for spec in build_defs(settings).resolve_all_asset_specs()}
    assert {"pandas", storage, source} <= kinds["spy/underlying_bars"]
    assert {"pandas", storage, source} <= kinds["spy/option_chain_snapshots"]
    assert storage in kinds["spy/gex_levels"] and source not in kinds["spy/gex_levels"]
