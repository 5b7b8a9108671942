"""``<underlying>/option_chain_snapshots``: the chain of one expiration, sampled through one session."""


import datetime as dt

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.market_data.assets import TRADESTATION_POOL
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.partitions import chain_partitions
from zerogex_pipeline.defs.resources import MarketDataResource, source_kind
from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.sources.base import MarketDataSource, spots_from_bars
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.storage.chain_reader import stored_historical_rows
from zerogex_pipeline.underlyings import Underlying

CAPTURE_GRACE = pd.Timedelta(seconds=60)
"""Today's snapshot instants younger than this are left to the stream capture, not rebuilt from bars."""


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """(date, expiration) of the run's multi-partition key."""
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return dt.date.fromisoformat(keys["date"]), dt.date.fromisoformat(keys["expiration"])


def unavailable_reason(
    source: MarketDataSource, underlying: Underlying, date: dt.date, expiration: dt.date, tracked: int
) -> str | None:
    """Why (date, expiration) has no chain, or ``None`` when it has one.

    Only the ``tracked`` nearest expirations listed on ``date`` are snapshotted (``ZEROGEX_EXPIRATIONS``):
    a backfill over dates x every registered expiration then writes real chains exactly where the
    intraday refresh and ``zerogex run`` would, and cheap empty partitions elsewhere.
    """
    if expiration < date:
        return f"expiration {expiration} had already expired on {date}"
    listed = source.listed_expirations(underlying, date)
    if expiration not in listed:
        return f"expiration {expiration} was not listed on {date}"
    if expiration not in listed[:tracked]:
        return f"expiration {expiration} is not among the {tracked} nearest listed on {date} (ZEROGEX_EXPIRATIONS)"
    return None


def build_option_chain_snapshots(
    underlying: Underlying, settings: Settings, storage_kind: str, bars: dg.AssetsDefinition,
    captured_quotes: dg.AssetKey,
) -> dg.AssetsDefinition:
    """The chain-snapshot asset of ``underlying``, built from the stream capture where it exists."""

    @dg.asset(
        key=[underlying.key, "option_chain_snapshots"],
        group_name=f"{underlying.key}_options",
        partitions_def=chain_partitions(underlying),
        ins={"underlying_bars": dg.AssetIn(key=bars.key)},
        deps=[dg.AssetDep(captured_quotes,
                          partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"))],
        pool=TRADESTATION_POOL,
        kinds={"pandas", storage_kind, source_kind(settings)},
        description=(
            f"{underlying.name} option chain of one expiration on one trading day, every "
            f"{settings.snapshot_minutes} minutes of the regular session (open and close included), each "
            f"contract with |strike/spot - 1| <= {settings.strike_distance_pct}%: bid/ask/last/mid in USD per "
            "share, volume and open interest in contracts, vendor IV (annualized) and greeks where the "
            "source gives them, and the spot (USD) and spot timestamp used. Snapshots captured live by "
            "`zerogex stream` (captured_quotes) are taken as they are (origin 'capture'); only the instants the "
            "capture lacks are rebuilt by the source's historical path (origin 'historical': bar closes on "
            "TradeStation); today's rebuilt instants are kept for the later refreshes of the day. An expiration "
            "already past or "
            "not yet listed on the date materializes empty, with the reason in the metadata."
        ),
        metadata={
            "partition_expr": {"date": "session_date", "expiration": "expiration"},
            "dagster/column_schema": OPTION_CHAIN_SNAPSHOTS.table_schema(),
            "snapshot_minutes": settings.snapshot_minutes,
            "strike_distance_pct": settings.strike_distance_pct,
        },
    )
    def option_chain_snapshots(
        context: dg.AssetExecutionContext, underlying_bars: pd.DataFrame, market_data: MarketDataResource
    ) -> pd.DataFrame:
        date, expiration = partition_dates(context)
        session = market_calendar.session(date)
        now = market_calendar.utc_now()
        times = session.snapshot_times(settings.snapshot_minutes)
        today = now.tz_convert(market_calendar.NEW_YORK).date() == date
        # an instant that just passed is the stream engine's to capture (within seconds): not rebuilt yet
        times = times[times <= now - (CAPTURE_GRACE if today else pd.Timedelta(0))]
        store = CaptureStore(settings)
        try:
            captured = store.captured_quotes(underlying, date, expiration)
        finally:
            store.close()
        have = set(captured["snapshot_ts"])
        lacking = [t for t in times if t not in have]
        # today's gaps, once rebuilt, are kept across the refreshes (each rebuild costs a request per contract);
        # a past day is rebuilt whole, so re-materializing it re-reads the source
        reused = (stored_historical_rows(settings, underlying, date, expiration, lacking) if today
                  else OPTION_CHAIN_SNAPSHOTS.empty_frame())
        reused_times = set(reused["snapshot_ts"])
        fetch = [t for t in lacking if t not in reused_times]
        parts = [captured_rows(captured), reused]
        reason = None
        fetched = 0
        if fetch:
            source = market_data.get_source()
            if captured.empty:  # a captured expiration was tracked that day: no listing request needed
                with retry_transient_source_errors(context):
                    reason = unavailable_reason(source, underlying, date, expiration, settings.expirations)
            if reason is None and underlying_bars.empty:
                reason = f"no underlying bars stored for {date} (materialize {bars.key.to_user_string()} first)"
            if reason is None:
                spots = spots_from_bars(underlying_bars, pd.DatetimeIndex(fetch))
                with retry_transient_source_errors(context):
                    rebuilt = source.chain_snapshots(underlying, session, expiration, spots,
                                                     settings.strike_distance_pct)
                fetched = int(rebuilt["snapshot_ts"].nunique())
                parts.append(rebuilt)
        chain = OPTION_CHAIN_SNAPSHOTS.conform(pd.concat([p for p in parts if len(p)], ignore_index=True)) \
            if any(len(p) for p in parts) else OPTION_CHAIN_SNAPSHOTS.empty_frame()
        chain = chain.sort_values(["snapshot_ts", "strike", "symbol"], kind="stable").reset_index(drop=True)
        if chain.empty:
            if reason is None and not len(times):
                reason = f"no snapshot instant of {date} has passed yet"
            # an empty chain without a reason (the source returned nothing) fails the chain check
            context.add_output_metadata({"rows": 0, **({"empty_reason": reason} if reason else {})})
            return chain
        origins = chain.groupby("origin")["snapshot_ts"].nunique()
        context.add_output_metadata(
            {
                "rows": len(chain),
                "snapshots": int(chain["snapshot_ts"].nunique()),
                "snapshots_captured": int(origins.get("capture", 0)),
                "snapshots_historical": int(origins.get("historical", 0)),
                "snapshots_fetched_now": fetched,
                "snapshots_reused": int(reused["snapshot_ts"].nunique()) if len(reused) else 0,
                "capture_coverage_pct": round(100.0 * len(have & set(times)) / len(times), 2) if len(times) else None,
                "contracts": int(chain["symbol"].nunique()),
                "spot_first_usd": float(chain["spot"].iloc[0]),
                "spot_last_usd": float(chain["spot"].iloc[-1]),
            }
        )
        return chain

    return option_chain_snapshots


def captured_rows(captured: pd.DataFrame) -> pd.DataFrame:
    """Captured quotes as chain rows (``origin`` 'capture'; the capture's own columns dropped)."""
    rows = captured.drop(columns=["quote_ts", "stream"])
    rows["origin"] = "capture"
    return rows
