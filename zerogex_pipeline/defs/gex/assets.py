"""``<underlying>/gex_surface`` and ``<underlying>/gex_levels``: exposures and levels from the chain."""

import datetime as dt

import dagster as dg
import pandas as pd

from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.engine import compute_product
from zerogex_pipeline.analytics.levels import build_levels, chain_from_surface
from zerogex_pipeline.analytics.surface import build_surface
from zerogex_pipeline.defs.gex.charts import (
    gamma_profile_png,
    gex_by_strike_png,
    intraday_levels_png,
    markdown_image,
)
from zerogex_pipeline.defs.gex.lineage import LEVELS_FROM_SURFACE, SURFACE_FROM_CHAIN, column_lineage
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.partitions import chain_partitions, trading_day_partitions
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.schemas import GEX_LEVELS, GEX_SURFACE
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import Underlying


def _usd(value: float | None) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 2)


def build_gex_surface(
    underlying: Underlying, settings: Settings, storage_kind: str, chain: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The GEX-surface asset of ``underlying``."""

    @dg.asset(
        key=[underlying.key, "gex_surface"],
        group_name=f"{underlying.key}_gex",
        partitions_def=chain_partitions(underlying),
        ins={"option_chain_snapshots": dg.AssetIn(key=chain.key)},
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} dealer gamma exposure per snapshot and strike for one expiration: call, put "
            "and net GEX in USD per 1% move of the underlying (sign · Γ · OI · 100 · S² · 0.01; dealers "
            "long calls +, short puts -), with the IV, gamma, time to expiry (years to the settlement "
            "instant) and r, q that produced them."
        ),
        metadata={
            "partition_expr": {"date": "session_date", "expiration": "expiration"},
            "dagster/column_schema": GEX_SURFACE.table_schema(),
            "convention": CONVENTION,
        },
    )
    def gex_surface(context: dg.AssetExecutionContext, option_chain_snapshots: pd.DataFrame) -> pd.DataFrame:
        if option_chain_snapshots.empty:
            context.add_output_metadata({"rows": 0, "empty_reason": "no chain snapshots in this partition"})
            return GEX_SURFACE.empty_frame()
        surface = GEX_SURFACE.conform(
            build_surface(option_chain_snapshots, settings.risk_free_rate, underlying.dividend_yield)
        )
        last = surface[surface["snapshot_ts"] == surface["snapshot_ts"].max()].sort_values("strike")
        when = f"{last['snapshot_ts'].iloc[0].tz_convert('America/New_York'):%Y-%m-%d %H:%M} ET"
        expiration = f"{pd.Timestamp(last['expiration'].iloc[0]):%Y-%m-%d}"
        by_strike = gex_by_strike_png(
            last["strike"].to_numpy(float), last["call_gex"].to_numpy(float), last["put_gex"].to_numpy(float),
            float(last["spot"].iloc[0]), f"{underlying.name} {expiration} GEX by strike at {when} ($bn per 1%)",
        )
        context.add_output_metadata(
            {
                "dagster/column_lineage": column_lineage(chain.key, SURFACE_FROM_CHAIN),
                "gex_by_strike": dg.MetadataValue.md(markdown_image(by_strike, "GEX by strike")),
                "rows": len(surface),
                "snapshots": int(surface["snapshot_ts"].nunique()),
                "strikes": int(surface["strike"].nunique()),
                "net_gex_last_snapshot_usd_per_pct": _usd(last["net_gex"].sum()),
                "rate": settings.risk_free_rate,
                "dividend_yield": underlying.dividend_yield,
            }
        )
        return surface

    return gex_surface


def captured_expirations(underlying: Underlying, settings: Settings, date: dt.date) -> list[dt.date]:
    """The expirations the stream engine tracked on ``date`` (the nearest listed then), from its capture."""
    store = CaptureStore(settings)
    try:
        captured = store.captured_instants(underlying, date)
    finally:
        store.close()
    return sorted({pd.Timestamp(e).date() for e in captured["expiration"]})[: settings.expirations]


def build_gex_levels(
    underlying: Underlying, settings: Settings, storage_kind: str, surface: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The GEX-levels asset of ``underlying``."""

    @dg.asset(
        key=[underlying.key, "gex_levels"],
        group_name=f"{underlying.key}_gex",
        partitions_def=trading_day_partitions(),
        ins={
            "gex_surface": dg.AssetIn(
                key=surface.key,
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
            )
        },
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} GEX levels per snapshot across the day's tracked expirations (the "
            f"{settings.expirations} nearest listed, ZEROGEX_EXPIRATIONS; expiration_list names them): spot (USD), "
            "total call/put/net GEX and net GEX at spot (USD per 1% move), zero gamma (USD; the sticky-strike "
            "gamma profile's crossing nearest spot, or null with a reason), call wall (strike >= spot with "
            "the largest call GEX) and put wall (strike <= spot with the largest |put GEX|)."
        ),
        metadata={
            "partition_expr": "session_date",
            "dagster/column_schema": GEX_LEVELS.table_schema(),
            "convention": CONVENTION,
        },
    )
    def gex_levels(
        context: dg.AssetExecutionContext, gex_surface: pd.DataFrame, market_data: MarketDataResource
    ) -> pd.DataFrame:
        date = dt.date.fromisoformat(context.partition_key)
        tracked = captured_expirations(underlying, settings, date)
        if len(tracked) < settings.expirations:  # no (complete) capture that day: ask the source for its listing
            with retry_transient_source_errors(context):
                tracked = market_data.get_source().listed_expirations(underlying, date)[: settings.expirations]
        stored = sorted({d.date() for d in pd.to_datetime(gex_surface["expiration"])})
        # Only the tracked expirations: a surface stored while ZEROGEX_EXPIRATIONS was larger stays in the store
        # (its partitions are still that expiration's chain), but it is not part of today's levels.
        gex_surface = gex_surface[pd.to_datetime(gex_surface["expiration"]).dt.date.isin(tracked)]
        expirations_metadata = {
            "expirations_tracked": [d.isoformat() for d in tracked],
            "expirations_ignored": [d.isoformat() for d in stored if d not in tracked],
            "expirations_missing": [d.isoformat() for d in tracked if d not in stored],
        }
        if gex_surface.empty:
            context.add_output_metadata({"rows": 0, "empty_reason": "no GEX surface stored for this date's tracked "
                                         "expirations", **expirations_metadata})
            return GEX_LEVELS.empty_frame()
        levels = GEX_LEVELS.conform(build_levels(gex_surface))
        last = levels.iloc[-1]
        last_rows = gex_surface[gex_surface["snapshot_ts"] == gex_surface["snapshot_ts"].max()]
        product = compute_product(chain_from_surface(last_rows))
        when = f"{last['snapshot_ts'].tz_convert('America/New_York'):%Y-%m-%d %H:%M} ET"
        charts = {
            "gamma_profile": gamma_profile_png(product, f"{underlying.name} gamma profile at {when}"),
            "gex_by_strike": gex_by_strike_png(
                product.strikes, product.by_strike["call_gex"], product.by_strike["put_gex"], product.spot,
                f"{underlying.name} GEX by strike, all tracked expirations, at {when}",
            ),
            "intraday_levels": intraday_levels_png(levels, f"{underlying.name} levels through {when}"),
        }
        context.add_output_metadata(
            {
                "dagster/column_lineage": column_lineage(surface.key, LEVELS_FROM_SURFACE),
                **{name: dg.MetadataValue.md(markdown_image(png, name)) for name, png in charts.items()},
                "rows": len(levels),
                "expirations": int(gex_surface["expiration"].nunique()),
                **expirations_metadata,
                "spot_usd": _usd(last["spot"]),
                "net_gex_usd_per_pct": _usd(last["net_gex"]),
                "zero_gamma_usd": _usd(last["zero_gamma"]),
                "zero_gamma_reason": None if pd.isna(last["zero_gamma_reason"]) else str(last["zero_gamma_reason"]),
                "call_wall_usd": _usd(last["call_wall"]),
                "put_wall_usd": _usd(last["put_wall"]),
            }
        )
        return levels

    return gex_levels
