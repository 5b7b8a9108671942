"""``<underlying>/underlying_bars``: regular-session OHLCV bars per trading day."""


import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.partitions import backfill_policy, day_partitions
from zerogex_pipeline.defs.resources import MarketDataResource, source_kind
from zerogex_pipeline.schemas import UNDERLYING_BARS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.storage.postgres_io_manager import RETRY_SECONDS
from zerogex_pipeline.underlyings import Underlying

TRADESTATION_POOL = "tradestation_api"


def build_underlying_bars(underlying: Underlying, settings: Settings, storage_kind: str,
                          captured_bars: dg.AssetKey) -> dg.AssetsDefinition:
    """The bars asset of ``underlying``: the stream capture's bars where it has them, the source's otherwise."""

    @dg.asset(
        key=[underlying.key, "underlying_bars"],
        group_name=f"{underlying.key}_market_data",
        partitions_def=day_partitions(settings),
        backfill_policy=backfill_policy(settings),
        deps=[captured_bars],
        pool=TRADESTATION_POOL,
        kinds={"pandas", storage_kind, source_kind(settings)},
        description=(
            f"{underlying.name} regular-session OHLCV bars of {settings.bar_minutes} minute(s) per NYSE "
            "trading day: prices in USD, volume in shares, `ts` = bar end (UTC). Bars end at the 13:00 ET "
            "close on early-close days; today's partition holds the bars completed so far. Bars captured from "
            "the bar stream by `zerogex stream` (captured_bars) are used as they are; the source is asked only "
            "when the capture lacks some."
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
        captured_days = 0
        store = CaptureStore(settings, read_retry_s=RETRY_SECONDS)  # rides through a server restart
        try:
            for key in context.partition_keys:
                session = market_calendar.session(key)
                if session.open > now:
                    context.log.info(f"{underlying.name} {key}: session has not opened yet; no bars")
                    context.add_asset_metadata({"rows": 0, "empty_reason": "the session has not opened yet"},
                                               partition_key=key)
                    continue
                ends = session.bar_ends(settings.bar_minutes)
                ends = ends[ends <= now]
                captured = store.captured_bars(underlying, session.date)
                captured = captured[captured["ts"].isin(ends)]
                if len(captured) == len(ends):
                    captured_days += 1
                    day = UNDERLYING_BARS.conform(captured)
                else:
                    with retry_transient_source_errors(context):
                        bars = source.underlying_bars(underlying, session, settings.bar_minutes)
                    bars = bars[(bars["ts"] <= now) & ~bars["ts"].isin(captured["ts"])]
                    day = (UNDERLYING_BARS.conform(pd.concat([captured, bars], ignore_index=True))
                           .sort_values("ts", kind="stable"))
                frames.append(day)
                context.add_asset_metadata(
                    {"rows": len(day), "from_capture": len(captured) == len(ends),
                     "last_close_usd": float(day["close"].iloc[-1]) if len(day) else None,
                     "last_bar_end": day["ts"].iloc[-1].isoformat() if len(day) else None},
                    partition_key=key,
                )
        finally:
            store.close()
        frame = UNDERLYING_BARS.conform(pd.concat(frames, ignore_index=True)) if frames else UNDERLYING_BARS.empty_frame()
        context.add_asset_metadata(
            {"sessions": len(frames), "sessions_from_capture": captured_days, "source": source.name}
        )
        return frame

    return underlying_bars
