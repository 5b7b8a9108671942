"""The Dagster code location: every underlying's assets and the resources, from the settings."""

from __future__ import annotations

import dagster as dg

from zerogex_pipeline.defs.automation.intraday_refresh import build_intraday_refresh_sensor
from zerogex_pipeline.defs.automation.schedules import (
    build_backfill_job,
    build_end_of_day_schedule,
    build_pre_open_schedule,
    build_register_expirations_job,
)
from zerogex_pipeline.defs.gex.assets import build_gex_levels, build_gex_surface
from zerogex_pipeline.defs.market_data.assets import build_underlying_bars
from zerogex_pipeline.defs.options.assets import build_option_chain_snapshots
from zerogex_pipeline.defs.resources import build_resources, storage_kind
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.underlyings import Underlying


def build_underlying_assets(underlying: Underlying, settings: Settings) -> list[dg.AssetsDefinition]:
    """The four core assets of one underlying, in lineage order: bars, snapshots, surface, levels."""
    kind = storage_kind(settings)
    bars = build_underlying_bars(underlying, settings, kind)
    chain = build_option_chain_snapshots(underlying, settings, kind, bars)
    surface = build_gex_surface(underlying, settings, kind, chain)
    levels = build_gex_levels(underlying, settings, kind, surface)
    return [bars, chain, surface, levels]


def build_defs(settings: Settings) -> dg.Definitions:
    """All definitions for ``settings``."""
    assets_by_underlying = {u: build_underlying_assets(u, settings) for u in settings.underlyings}
    jobs: list[dg.JobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    for u in settings.underlyings:
        backfill_job = build_backfill_job(u, settings, assets_by_underlying[u])
        register_job = build_register_expirations_job(u, settings)
        jobs += [backfill_job, register_job]
        schedules += [build_pre_open_schedule(u, register_job), build_end_of_day_schedule(u, backfill_job)]
    return dg.Definitions(
        assets=[a for assets in assets_by_underlying.values() for a in assets],
        jobs=jobs,
        schedules=schedules,
        sensors=[build_intraday_refresh_sensor(u, settings, assets) for u, assets in assets_by_underlying.items()],
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Entry point for ``dagster dev`` / ``dg``: definitions from the environment's settings."""
    return build_defs(load_settings())
