"""The levels alerts sensor: gex_alerts runs per range of consecutive materialized days, none twice."""

import dagster as dg
import pytest

from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.alerts import build_alert_assets, build_levels_alert_sensor
from zerogex_pipeline.defs.alerts.sensors import LEVELS_STORAGE_ID_TAG
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")


@pytest.fixture
def rig(settings, instance):
    levels = build_underlying_assets(SPY, settings)[-1]
    [alerts] = build_alert_assets(SPY, settings, "duckdb", levels)
    sensor = build_levels_alert_sensor(SPY, levels, alerts, batch=3)

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
            return sensor(ctx)

    def materialized(*partitions: str) -> None:
        for p in partitions:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=levels.key, partition=p))

    return sensor, tick, materialized, alerts


def test_one_run_per_range_of_materialized_days_and_none_twice(rig) -> None:
    sensor, tick, materialized, alerts = rig
    assert sensor.name == "spy_levels_alerts"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    empty = tick(None)
    assert not empty.run_requests and "no new spy/gex_levels materialization" in empty.skip_reason.skip_message

    materialized("2024-06-13", "2024-06-14", "2024-06-18")  # 06-17 not materialized: two ranges
    first = tick(None)
    ranges = [(r.partition_key, r.tags.get("dagster/asset_partition_range_start"),
               r.tags.get("dagster/asset_partition_range_end")) for r in first.run_requests]
    assert ranges == [(None, "2024-06-13", "2024-06-14"), ("2024-06-18", None, None)]
    assert all(r.asset_selection == [alerts.key] for r in first.run_requests)
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 2 and all(k.startswith("spy-alerts-levels-") for k in keys)
    assert [r.tags[LEVELS_STORAGE_ID_TAG] for r in first.run_requests] == [k.rsplit("-", 1)[1] for k in keys]

    again = tick(first.cursor)  # nothing new: nothing requested again
    assert not again.run_requests and again.cursor is None

    materialized("2024-06-14")  # an intraday refresh re-materializes today's levels
    refresh = tick(first.cursor)
    assert [str(r.partition_key) for r in refresh.run_requests] == ["2024-06-14"]
    assert refresh.run_requests[0].run_key not in keys
    assert not tick(refresh.cursor).run_requests


def test_materializations_of_one_partition_in_one_batch_share_a_run_and_batches_page(rig) -> None:
    _, tick, materialized, _ = rig
    materialized("2024-06-12", "2024-06-14", "2024-06-14", "2024-06-13")  # batch=3 per tick
    first = tick(None)
    assert [str(r.partition_key) for r in first.run_requests] == ["2024-06-12", "2024-06-14"]
    second = tick(first.cursor)
    assert [str(r.partition_key) for r in second.run_requests] == ["2024-06-13"]
    all_keys = [r.run_key for r in (*first.run_requests, *second.run_requests)]
    assert len(set(all_keys)) == 3
    assert not tick(second.cursor).run_requests


def test_the_sensors_requests_resolve_against_the_definitions(settings, instance) -> None:
    """Run requests validate (asset selection and partition) when evaluated with the definitions."""
    assets = build_underlying_assets(SPY, settings)
    [alerts] = build_alert_assets(SPY, settings, "duckdb", assets[-1])
    sensor = build_levels_alert_sensor(SPY, assets[-1], alerts)
    defs = dg.Definitions(assets=[*assets, alerts], sensors=[sensor], resources=build_resources(settings))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=assets[-1].key, partition="2024-06-14"))
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests] == ["2024-06-14"]


def test_alerts_sensor_and_backtest_wire_into_definitions_for_every_underlying(tmp_path) -> None:
    from zerogex_pipeline.defs.automation.intraday_refresh import build_intraday_refresh_sensor
    from zerogex_pipeline.defs.backtest import build_regime_backtest
    from zerogex_pipeline.defs.capture import build_capture_specs
    from zerogex_pipeline.settings import load_settings

    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_UNDERLYINGS": "SPY,SPX,QQQ", "ZEROGEX_DATA_DIR": str(tmp_path)}, env_file=None)
    assets, sensors = [], []
    for u in settings.underlyings:
        core = build_underlying_assets(u, settings)
        [alerts] = build_alert_assets(u, settings, "duckdb", core[-1])
        backtest = build_regime_backtest(u, settings, "duckdb", core[0], core[-1])
        assets += [*build_capture_specs(u, settings, "duckdb"), *core, alerts, backtest]
        sensors += [build_intraday_refresh_sensor(u, settings, core), build_levels_alert_sensor(u, core[-1], alerts)]
    defs = dg.Definitions(assets=assets, sensors=sensors, resources=build_resources(settings))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in ("spy", "spx", "qqq"):
        assert graph.get(dg.AssetKey([key, "gex_alerts"])).parent_keys == {dg.AssetKey([key, "gex_levels"])}
        assert graph.get(dg.AssetKey([key, "gex_regime_backtest"])).parent_keys == {
            dg.AssetKey([key, "gex_levels"]), dg.AssetKey([key, "underlying_bars"])}
        assert defs.resolve_sensor_def(f"{key}_levels_alerts").default_status == dg.DefaultSensorStatus.RUNNING
    for spec in defs.resolve_all_asset_specs():
        assert spec.metadata["dagster/column_schema"].columns and "USD" in (spec.description or "")
