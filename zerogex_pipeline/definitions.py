"""The Dagster code location: every underlying's assets and the resources, from the settings."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from zerogex_pipeline.defs.alerts.assets import build_alert_assets
from zerogex_pipeline.defs.alerts.sensors import build_levels_alert_sensor
from zerogex_pipeline.defs.automation.intraday_refresh import build_intraday_refresh_sensor
from zerogex_pipeline.defs.automation.orphaned_runs import build_orphaned_runs_sensor
from zerogex_pipeline.defs.automation.schedules import (
    build_backfill_job,
    build_backtest_job,
    build_end_of_day_schedule,
    build_evening_backtest_schedule,
)
from zerogex_pipeline.defs.backtest.assets import build_regime_backtest
from zerogex_pipeline.defs.capture import (
    build_capture_check,
    build_capture_specs,
    build_capture_watch_sensor,
    capture_keys,
)
from zerogex_pipeline.defs.checks.asset_checks import build_asset_checks
from zerogex_pipeline.defs.gex.assets import build_gex_levels, build_gex_surface
from zerogex_pipeline.defs.market_data.assets import build_underlying_bars
from zerogex_pipeline.defs.options.assets import build_option_chain_snapshots
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.underlyings import Underlying


def build_underlying_assets(underlying: Underlying, settings: Settings) -> list[dg.AssetsDefinition]:
    """The four core assets of one underlying, in lineage order: bars, snapshots, surface, levels."""
    kind = storage_kind(settings)
    captured_quotes, captured_bars, _ = capture_keys(underlying)
    bars = build_underlying_bars(underlying, settings, kind, captured_bars)
    chain = build_option_chain_snapshots(underlying, settings, kind, bars, captured_quotes)
    surface = build_gex_surface(underlying, settings, kind, chain)
    levels = build_gex_levels(underlying, settings, kind, surface)
    return [bars, chain, surface, levels]


def build_defs(settings: Settings) -> dg.Definitions:
    """All definitions for ``settings``: per underlying the core assets and their checks, the alerts and
    backtest assets, the refresh and alert sensors, the schedules and the jobs they launch."""
    kind = storage_kind(settings)
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs: list[dg.JobDefinition | UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for u in settings.underlyings:
        core = build_underlying_assets(u, settings)
        bars, chain, surface, levels = core
        alerts = build_alert_assets(u, settings, kind, levels)
        backtest = build_regime_backtest(u, settings, kind, bars, levels)
        assets += [*build_capture_specs(u, settings, kind), *core, *alerts, backtest]
        checks += [build_capture_check(u, settings), *build_asset_checks(u, settings, bars, chain, surface, levels)]
        backfill_job = build_backfill_job(u, settings, core)
        backtest_job = build_backtest_job(u, backtest)
        jobs += [backfill_job, backtest_job]
        schedules += [
            build_end_of_day_schedule(u, backfill_job),
            build_evening_backtest_schedule(u, backtest_job),
        ]
        sensors += [build_intraday_refresh_sensor(u, settings, core), build_levels_alert_sensor(u, levels, alerts[0], days_per_run=settings.backfill_days_per_run),
                    build_capture_watch_sensor(u, settings)]
    sensors.append(build_orphaned_runs_sensor())
    return dg.Definitions(
        assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules, sensors=sensors,
        resources=build_resources(settings),
        # One process per run: a run's steps (asset, its checks, the next asset) are sequential anyway,
        # and a subprocess per step cost several seconds of imports each, most of a backfill run's time.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Entry point for ``dagster dev`` / ``dg``: definitions from the environment's settings."""
    return build_defs(load_settings())
