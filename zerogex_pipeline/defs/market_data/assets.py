"""``<underlying>/underlying_bars``: regular-session OHLCV bars per trading day."""


import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.partitions import trading_day_partitions
from zerogex_pipeline.defs.resources import MarketDataResource, source_kind
from zerogex_pipeline.schemas import UNDERLYING_BARS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import Underlying

TRADESTATION_POOL = "tradestation_api"


def build_underlying_bars(underlying: Underlying, settings: Settings, storage_kind: str) -> dg.AssetsDefinition:
    """The bars asset of ``underlying``."""

    @dg.asset(
        key=[underlying.key, "underlying_bars"],
        group_name=f"{underlying.key}_market_data",
        partitions_def=trading_day_partitions(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=TRADESTATION_POOL,
        kinds={"pandas", storage_kind, source_kind(settings)},
        description=(
            f"{underlying.name} regular-session OHLCV bars of {settings.bar_minutes} minute(s) per NYSE "
            "trading day: prices in USD, volume in shares, `ts` = bar end (UTC). Bars end at the 13:00 ET "
            "close on early-close days; today's partition holds the bars completed so far."
        ),
        metadata={
            "partition_expr": "session_date",
            "dagster/column_schema": UNDERLYING_BARS.table_schema(),
            "bar_minutes": settings.bar_minutes,
        },
    )
    def underlying_bars(context: dg.AssetExecutionContext, market_data: MarketDataResource) -> pd.DataFrame:
        source = market_data.get_source()
        now = market_calendar.utc_now()
        frames = []
        for key in context.partition_keys:
            session = market_calendar.session(key)
            if session.open > now:
                context.log.info(f"{underlying.name} {key}: session has not opened yet; no bars")
                continue
            with retry_transient_source_errors(context):
                bars = source.underlying_bars(underlying, session, settings.bar_minutes)
            frames.append(bars[bars["ts"] <= now])
        frame = UNDERLYING_BARS.conform(pd.concat(frames, ignore_index=True)) if frames else UNDERLYING_BARS.empty_frame()
        context.add_output_metadata(
            {
                "rows": len(frame),
                "sessions": len(frames),
                "source": source.name,
                "last_close_usd": float(frame["close"].iloc[-1]) if len(frame) else None,
                "last_bar_end": frame["ts"].iloc[-1].isoformat() if len(frame) else None,
            }
        )
        return frame

    return underlying_bars
