"""``<underlying>/gex_surface`` and ``<underlying>/gex_levels``: exposures and levels from the chain.

Both run over a range of trading days (a backfill run holds up to ``ZEROGEX_BACKFILL_DAYS_PER_RUN`` of them, the
surface for one expiration slot; the intraday refresh runs every slot of today at once); each partition gets its
own materialization metadata. The PNG charts are drawn for the newest day of a run only: a backfill of a year would
otherwise spend minutes drawing charts of days nobody opens. The intraday refresh draws none: its target is 20 s
from a capture to the levels row, and on this 2-core machine the surface's three charts took 3.3 s and the levels'
three about 2.5 s of it. Its numbers are still in the metadata (the asset's plots follow them), the live screen
(``zerogex dashboard``) charts the session as it goes, and the end-of-day run draws the day's charts.

``gex_levels`` of a date aggregates exactly the day's tracked expirations (the ``ZEROGEX_EXPIRATIONS`` nearest
listed, one per expiration slot). When the stored surface lacks one of them, at any snapshot, it writes nothing and
fails naming each missing (date, slot, expiration) and how to fill it: levels on fewer expirations are never stored.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.levels import build_levels
from zerogex_pipeline.analytics.surface import build_surface
from zerogex_pipeline.analytics.validation import SlotGap, missing_tracked_expirations
from zerogex_pipeline.defs.automation.intraday_refresh import REFRESH_TAG
from zerogex_pipeline.defs.automation.refresh_barrier import RefreshBarrier
from zerogex_pipeline.defs.gex.lineage import LEVELS_FROM_SURFACE, SURFACE_FROM_CHAIN, column_lineage
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.options.assets import session_opened
from zerogex_pipeline.defs.options.slots import PartitionRunError, TrackedExpirations, run_chain_keys
from zerogex_pipeline.defs.partitions import (
    backfill_policy,
    chain_partition_key,
    chain_partitions,
    day_partitions,
)
from zerogex_pipeline.defs.resources import MarketDataResource
from zerogex_pipeline.schemas import GEX_LEVELS, GEX_SURFACE
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying


def _usd(value: float | None) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 2)


def _days(frame: pd.DataFrame) -> dict[dt.date, pd.DataFrame]:
    """Rows of ``frame`` per ``session_date``."""
    return {pd.Timestamp(d).date(): f for d, f in frame.groupby("session_date", sort=True)}


def build_gex_surface(
    underlying: Underlying, settings: Settings, storage_kind: str, chain: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The GEX-surface asset of ``underlying``."""

    @dg.asset(
        key=[underlying.key, "gex_surface"],
        group_name=f"{underlying.key}_gex",
        partitions_def=chain_partitions(settings),
        backfill_policy=backfill_policy(settings),
        ins={"option_chain_snapshots": dg.AssetIn(key=chain.key)},
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} dealer gamma exposure per snapshot and strike for one expiration slot (the k-th "
            "nearest expiration listed that day): call, put and net GEX in USD per 1% move of the underlying "
            "(sign · Γ · OI · 100 · S² · 0.01; dealers long calls +, short puts -), with the IV, gamma, time to "
            "expiry (years to the settlement instant) and r, q that produced them."
        ),
        metadata={
            "partition_expr": {"date": "session_date", "expiration": "expiration_slot"},
            "dagster/column_schema": GEX_SURFACE.table_schema(),
            "convention": CONVENTION,
        },
    )
    def gex_surface(context: dg.AssetExecutionContext, option_chain_snapshots: pd.DataFrame) -> pd.DataFrame:
        try:
            pairs = run_chain_keys(context.partition_keys)
        except PartitionRunError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        parts = [
            build_surface(rows, settings.risk_free_rate, underlying.dividend_yield).assign(expiration_slot=slot)
            for slot, rows in option_chain_snapshots.groupby("expiration_slot", sort=True)
        ]
        surface = (GEX_SURFACE.empty_frame() if not parts
                   else GEX_SURFACE.conform(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]))
        by_pair = {(pd.Timestamp(d).date(), int(s)): f
                   for (d, s), f in surface.groupby(["session_date", "expiration_slot"], sort=False)}
        newest = pairs[-1][0]
        context.add_asset_metadata({"dagster/column_lineage": column_lineage(chain.key, SURFACE_FROM_CHAIN),
                                    "rate": settings.risk_free_rate, "dividend_yield": underlying.dividend_yield})
        for date, slot in pairs:
            day = by_pair.get((date, slot))
            key = str(chain_partition_key(date, slot))
            if day is None:
                context.add_asset_metadata({"rows": 0, "empty_reason": "no chain snapshots in this partition"},
                                           partition_key=key)
                continue
            last = day[day["snapshot_ts"] == day["snapshot_ts"].max()].sort_values("strike")
            metadata: dict[str, object] = {
                "rows": len(day),
                "expiration": f"{pd.Timestamp(last['expiration'].iloc[0]):%Y-%m-%d}",
                "snapshots": int(day["snapshot_ts"].nunique()),
                "strikes": int(day["strike"].nunique()),
                "net_gex_last_snapshot_usd_per_pct": _usd(last["net_gex"].sum()),
            }
            if date == newest and REFRESH_TAG not in context.run.tags:  # see the module docstring
                from zerogex_pipeline.defs.gex.charts import gex_by_strike_png, markdown_image

                when = f"{last['snapshot_ts'].iloc[0].tz_convert('America/New_York'):%Y-%m-%d %H:%M} ET"
                png = gex_by_strike_png(
                    last["strike"].to_numpy(float), last["call_gex"].to_numpy(float), last["put_gex"].to_numpy(float),
                    float(last["spot"].iloc[0]),
                    f"{underlying.name} {metadata['expiration']} GEX by strike at {when} ($bn per 1%)",
                )
                metadata["gex_by_strike"] = dg.MetadataValue.md(markdown_image(png, "GEX by strike"))
            context.add_asset_metadata(metadata, partition_key=key)
        return surface

    return gex_surface


def incomplete_message(underlying: Underlying, missing: dict[dt.date, list[SlotGap]]) -> str:
    """One line naming every missing (date, slot, expiration) and how to fill them."""
    items = "; ".join(f"({date}, slot {slot} = {expiration}: {what})" for date, gaps in sorted(missing.items())
                      for slot, expiration, what in gaps)
    dates = sorted(missing)
    keys = ", ".join(str(chain_partition_key(d, s)) for d, gaps in sorted(missing.items()) for s, _, _ in gaps)
    return (
        f"{underlying.key}/gex_levels: the GEX surface lacks tracked expirations, so no levels were written: {items}. "
        f"Fill them by materializing {underlying.key}/option_chain_snapshots and {underlying.key}/gex_surface for "
        f"{keys} (or every expiration slot of those dates: zerogex backfill --start {dates[0]} --end {dates[-1]}, or "
        "select the four assets in the UI, Materialize, and pick the dates), then gex_levels again"
    )


def build_gex_levels(
    underlying: Underlying, settings: Settings, storage_kind: str, surface: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The GEX-levels asset of ``underlying``."""

    @dg.asset(
        key=[underlying.key, "gex_levels"],
        group_name=f"{underlying.key}_gex",
        partitions_def=day_partitions(settings),
        backfill_policy=backfill_policy(settings),
        ins={
            "gex_surface": dg.AssetIn(
                key=surface.key,
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
            )
        },
        kinds={"pandas", storage_kind},
        description=(
            f"{underlying.name} GEX levels per snapshot across the day's tracked expirations (the "
            f"{settings.expirations} nearest listed, ZEROGEX_EXPIRATIONS: every expiration slot; expiration_list "
            "names them): spot (USD), total call/put/net GEX and net GEX at spot (USD per 1% move), zero gamma "
            "(USD; the sticky-strike gamma profile's crossing nearest spot, or null with a reason), call wall "
            "(strike >= spot with the largest call GEX) and put wall (strike <= spot with the largest |put GEX|). "
            "Refuses to write a date whose stored surface lacks a tracked expiration at any snapshot, naming it."
        ),
        metadata={
            "partition_expr": "session_date",
            "dagster/column_schema": GEX_LEVELS.table_schema(),
            "convention": CONVENTION,
        },
    )
    def gex_levels(
        context: dg.AssetExecutionContext, gex_surface: pd.DataFrame, market_data: MarketDataResource,
        refresh_barrier: RefreshBarrier,
    ) -> pd.DataFrame:
        refresh_barrier.require_awaited_run()  # an intraday refresh's levels run waited for its chain run
        dates = [dt.date.fromisoformat(k) for k in context.partition_keys]

        def listing(date: dt.date) -> list[dt.date]:
            with retry_transient_source_errors(context):
                return list(market_data.get_source().listed_expirations(underlying, date))

        by_day = _days(gex_surface)
        now = market_calendar.utc_now()
        plan: dict[dt.date, tuple[list[dt.date], pd.DataFrame]] = {}
        missing: dict[dt.date, list[SlotGap]] = {}
        with TrackedExpirations(underlying, settings, listing) as tracked_days:
            for date in dates:
                tracked = tracked_days.of(date)
                day = by_day.get(date, gex_surface.iloc[0:0])
                day = day[day["expiration_slot"] <= len(tracked)]
                plan[date] = (tracked, day)
                if not session_opened(date, now):
                    continue  # nothing can be stored before the open: an empty partition, with its reason
                gaps = missing_tracked_expirations(day, tracked)
                if gaps:
                    missing[date] = gaps
        if missing:  # before anything is written: the previous levels of these dates stay as they were
            raise dg.Failure(description=incomplete_message(underlying, missing), allow_retries=False)

        frames = []
        context.add_asset_metadata({"dagster/column_lineage": column_lineage(surface.key, LEVELS_FROM_SURFACE)})
        for date, (tracked, day) in plan.items():
            key = date.isoformat()
            tracked_meta = {"expirations_tracked": [d.isoformat() for d in tracked]}
            if day.empty:
                context.add_asset_metadata(
                    {"rows": 0, "empty_reason": f"the session of {date} has not opened yet", **tracked_meta},
                    partition_key=key)
                continue
            levels = GEX_LEVELS.conform(build_levels(day))
            frames.append(levels)
            last = levels.iloc[-1]
            metadata: dict[str, object] = {
                "rows": len(levels),
                "expirations": int(day["expiration"].nunique()),
                **tracked_meta,
                "spot_usd": _usd(last["spot"]),
                "net_gex_usd_per_pct": _usd(last["net_gex"]),
                "zero_gamma_usd": _usd(last["zero_gamma"]),
                "zero_gamma_reason": None if pd.isna(last["zero_gamma_reason"]) else str(last["zero_gamma_reason"]),
                "call_wall_usd": _usd(last["call_wall"]),
                "put_wall_usd": _usd(last["put_wall"]),
            }
            if date == dates[-1] and REFRESH_TAG not in context.run.tags:  # see the module docstring
                metadata.update(levels_charts(underlying, day, levels))
            context.add_asset_metadata(metadata, partition_key=key)
        if not frames:
            return GEX_LEVELS.empty_frame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    return gex_levels


def levels_charts(underlying: Underlying, surface: pd.DataFrame, levels: pd.DataFrame) -> dict[str, object]:
    """The gamma profile, GEX by strike (all tracked expirations) and intraday levels of one day, as metadata."""
    from zerogex_pipeline.analytics.engine import compute_product
    from zerogex_pipeline.analytics.levels import chain_from_surface
    from zerogex_pipeline.defs.gex.charts import (
        gamma_profile_png,
        gex_by_strike_png,
        intraday_levels_png,
        markdown_image,
    )

    last = levels.iloc[-1]
    last_rows = surface[surface["snapshot_ts"] == surface["snapshot_ts"].max()]
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
    return {name: dg.MetadataValue.md(markdown_image(png, name)) for name, png in charts.items()}
