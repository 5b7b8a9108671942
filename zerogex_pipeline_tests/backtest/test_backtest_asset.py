"""gex_regime_backtest over a few simulated days materialized through DuckDB."""

import base64
import datetime as dt
import re

import dagster as dg
import duckdb
import pandas as pd
import pytest

from zerogex_pipeline.analytics.regime import regime_table
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.backtest import build_regime_backtest
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.runner import materialize_day
from zerogex_pipeline.schemas import GEX_REGIME_BACKTEST
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DAYS = [dt.date(2024, 6, 11), dt.date(2024, 6, 12), dt.date(2024, 6, 13)]
BARS_ONLY = dt.date(2024, 6, 10)


def run_backtest(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    assets = build_underlying_assets(SPY, settings)
    backtest = build_regime_backtest(SPY, settings, storage_kind(settings), assets[0], assets[-1])
    return dg.materialize([*assets, backtest], selection=[backtest.key], instance=instance,
                          resources=build_resources(settings))


def query(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql).df()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path_factory.mktemp("bt") / "data"),
                              "ZEROGEX_EXPIRATIONS": "1", "ZEROGEX_SNAPSHOT_MINUTES": "30"}, env_file=None)
    with dg.instance_for_test() as instance:
        for day in DAYS:
            materialize_day(SPY, day, settings, instance)
        bars = build_underlying_assets(SPY, settings)[0]
        assert dg.materialize([bars], partition_key=BARS_ONLY.isoformat(), instance=instance,
                              resources=build_resources(settings)).success
        yield settings, instance


def test_backtest_table_matches_the_stored_history(store) -> None:
    settings, instance = store
    result = run_backtest(settings, instance)
    table = GEX_REGIME_BACKTEST.conform(query(settings, "SELECT * FROM spy.gex_regime_backtest ORDER BY session_date"))
    assert [d.date() for d in table["session_date"]] == DAYS
    # independent path: every stored level and 1-minute bar, straight into the pure core
    levels = query(settings, "SELECT * FROM spy.gex_levels")
    bars = query(settings, "SELECT * FROM spy.underlying_bars")
    expected = GEX_REGIME_BACKTEST.conform(regime_table(levels, bars))
    pd.testing.assert_frame_equal(table, expected)
    first = table.iloc[0]
    assert first["previous_session_date"].date() == BARS_ONLY  # the bars-only day gives the previous close
    day_bars = bars[bars["session_date"] == pd.Timestamp(DAYS[0])].sort_values("ts")
    assert first["day_open"] == day_bars["open"].iloc[0] and first["day_close"] == day_bars["close"].iloc[-1]
    assert first["realized_range_pct"] == pytest.approx(
        (day_bars["high"].max() - day_bars["low"].min()) / day_bars["open"].iloc[0] * 100)
    opening = levels[levels["session_date"] == pd.Timestamp(DAYS[0])].sort_values("snapshot_ts").iloc[0]
    assert first["spot_open"] == opening["spot"]
    assert first["regime"] == ("positive" if opening["net_gex"] > 0 else "negative")

    meta = result.asset_materializations_for_node("spy__gex_regime_backtest")[0].metadata
    assert meta["rows"].value == 3 and meta["days_with_levels_but_no_bars"].value == 0
    summary = meta["summary"].value
    assert summary.startswith("| regime at open (net GEX) | days |")
    counts = table["regime"].value_counts()
    for regime, n in counts.items():
        assert re.search(rf"\| {regime} \| {n} \|", summary)
    uri = re.fullmatch(r"!\[range vs flip\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta["range_vs_flip"].value)
    assert uri and base64.b64decode(uri.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_rematerializing_replaces_the_whole_table(store) -> None:
    settings, instance = store
    run_backtest(settings, instance)
    once = query(settings, "SELECT * FROM spy.gex_regime_backtest ORDER BY session_date")
    run_backtest(settings, instance)
    twice = query(settings, "SELECT * FROM spy.gex_regime_backtest ORDER BY session_date")
    pd.testing.assert_frame_equal(once, twice)
    assert len(twice) == len(DAYS)


def test_no_history_gives_an_empty_table_with_the_reason(settings: Settings, instance) -> None:
    result = run_backtest(settings, instance)
    meta = result.asset_materializations_for_node("spy__gex_regime_backtest")[0].metadata
    assert meta["rows"].value == 0 and meta["empty_reason"].value == "no gex_levels stored for SPY"


def test_evening_schedule_runs_the_backtest_job_on_trading_days(store) -> None:
    from zoneinfo import ZoneInfo

    from zerogex_pipeline.definitions import build_defs

    settings, instance = store
    defs = build_defs(settings)
    schedule = defs.resolve_schedule_def("spy_evening_backtest")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 18 * * 1-5", "America/New_York")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    ny = ZoneInfo("America/New_York")
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 6, 13, 18, tzinfo=ny),
                                   instance=instance) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.run_key == "spy-2024-06-13-backtest"
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 6, 19, 18, tzinfo=ny),
                                   instance=instance) as context:  # Juneteenth
        skipped = schedule.evaluate_tick(context)
    assert not skipped.run_requests and "next session 2024-06-20" in skipped.skip_message
    # the job the schedule launches materializes exactly the backtest, over the stored days
    result = defs.resolve_job_def(schedule.job_name).execute_in_process(instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("spy__gex_regime_backtest")
    assert materialization.metadata["last_day"].value == "2024-06-13"
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {
        dg.AssetKey(["spy", "gex_regime_backtest"])
    }
