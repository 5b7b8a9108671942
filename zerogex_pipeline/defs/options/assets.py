"""``<underlying>/option_chain_snapshots``: the chain of one expiration slot, sampled through each session of a run."""


import datetime as dt

import dagster as dg
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.market_data.assets import TRADESTATION_POOL
from zerogex_pipeline.defs.market_data.source_retries import retry_transient_source_errors
from zerogex_pipeline.defs.options.slots import PartitionRunError, TrackedExpirations, run_chain_keys
from zerogex_pipeline.defs.partitions import backfill_policy, chain_partition_key, chain_partitions
from zerogex_pipeline.defs.resources import MarketDataResource, source_kind
from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.sources.base import MarketDataSource, spots_from_bars
from zerogex_pipeline.storage.chain_reader import stored_historical_rows
from zerogex_pipeline.underlyings import Underlying

CAPTURE_GRACE = pd.Timedelta(seconds=60)
"""Today's snapshot instants younger than this are left to the stream capture, not rebuilt from bars."""


def session_opened(date: dt.date, now: pd.Timestamp) -> bool:
    """Whether ``date``'s first snapshot instant (the open) may have a chain at ``now`` (the capture grace passed)."""
    return bool(market_calendar.session(date).open + CAPTURE_GRACE <= now)


def build_option_chain_snapshots(
    underlying: Underlying, settings: Settings, storage_kind: str, bars: dg.AssetsDefinition,
    captured_quotes: dg.AssetKey,
) -> dg.AssetsDefinition:
    """The chain-snapshot asset of ``underlying``, built from the stream capture where it exists."""

    @dg.asset(
        key=[underlying.key, "option_chain_snapshots"],
        group_name=f"{underlying.key}_options",
        partitions_def=chain_partitions(settings),
        backfill_policy=backfill_policy(settings),
        ins={"underlying_bars": dg.AssetIn(key=bars.key)},
        deps=[dg.AssetDep(captured_quotes,
                          partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"))],
        pool=TRADESTATION_POOL,
        kinds={"pandas", storage_kind, source_kind(settings)},
        description=(
            f"{underlying.name} option chain of one expiration slot on one trading day: slot k is the k-th nearest "
            f"expiration listed that day (1 = nearest, 0DTE included; {settings.expirations} slots, "
            f"ZEROGEX_EXPIRATIONS). Every {settings.snapshot_minutes} minutes of the regular session (open and "
            f"close included), each contract with |strike/spot - 1| <= {settings.strike_distance_pct}%: "
            "bid/ask/last/mid in USD per share, volume and open interest in contracts, vendor IV (annualized) and "
            "greeks where the source gives them, and the spot (USD) and spot timestamp used. Snapshots captured "
            "live by `zerogex stream` (captured_quotes) are taken as they are (origin 'capture'); only the "
            "instants the capture lacks are rebuilt by the source's historical path (origin 'historical': bar "
            "closes on TradeStation); today's rebuilt instants are kept for the later refreshes of the day. A slot "
            "beyond the expirations listed that day materializes empty, with the reason in the metadata."
        ),
        metadata={
            "partition_expr": {"date": "session_date", "expiration": "expiration_slot"},
            "dagster/column_schema": OPTION_CHAIN_SNAPSHOTS.table_schema(),
            "snapshot_minutes": settings.snapshot_minutes,
            "strike_distance_pct": settings.strike_distance_pct,
        },
    )
    def option_chain_snapshots(
        context: dg.AssetExecutionContext, underlying_bars: pd.DataFrame, market_data: MarketDataResource
    ) -> pd.DataFrame:
        try:
            pairs = run_chain_keys(context.partition_keys)
        except PartitionRunError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        source = market_data.get_source()

        def listing(date: dt.date) -> list[dt.date]:
            with retry_transient_source_errors(context):
                return list(source.listed_expirations(underlying, date))

        bars_by_day = {pd.Timestamp(d).date(): f for d, f in underlying_bars.groupby("session_date", sort=False)}
        frames = []
        with TrackedExpirations(underlying, settings, listing) as tracked:
            for date, slot in pairs:
                chain, metadata = chain_of_day(context, source, tracked, date, slot,
                                               bars_by_day.get(date, underlying_bars.iloc[0:0]))
                context.add_asset_metadata(metadata, partition_key=str(chain_partition_key(date, slot)))
                frames.append(chain)
        chain = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return chain.sort_values(["session_date", "snapshot_ts", "strike", "symbol"], kind="stable",
                                 ignore_index=True)

    def chain_of_day(context: dg.AssetExecutionContext, source: MarketDataSource, tracked: TrackedExpirations,
                     date: dt.date, slot: int, day_bars: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, object]]:
        """One (date, slot) partition's rows and its materialization metadata."""
        expiration = tracked.slot(date, slot)
        if expiration is None:
            why = f"only {len(tracked.of(date))} expiration(s) listed on {date}: no expiration in slot {slot}"
            return OPTION_CHAIN_SNAPSHOTS.empty_frame(), {"rows": 0, "empty_reason": why}
        session = market_calendar.session(date)
        now = market_calendar.utc_now()
        times = session.snapshot_times(settings.snapshot_minutes)
        today = now.tz_convert(market_calendar.NEW_YORK).date() == date
        # an instant that just passed is the stream engine's to capture (within seconds): not rebuilt yet
        times = times[times <= now - (CAPTURE_GRACE if today else pd.Timedelta(0))]
        captured = tracked.store.captured_quotes(underlying, date, expiration)
        have = set(captured["snapshot_ts"])
        lacking = [t for t in times if t not in have]
        # today's gaps, once rebuilt, are kept across the refreshes (each rebuild costs a request per contract);
        # a past day is rebuilt whole, so re-materializing it re-reads the source
        reused = (stored_historical_rows(settings, underlying, date, expiration, lacking) if today
                  else OPTION_CHAIN_SNAPSHOTS.empty_frame())
        reused_times = set(reused["snapshot_ts"])
        fetch = [t for t in lacking if t not in reused_times]
        parts = [captured_rows(captured), reused.drop(columns=["expiration_slot"])]
        reason: str | None = None
        fetched = 0
        if fetch:
            if day_bars.empty:
                reason = f"no underlying bars stored for {date} (materialize {bars.key.to_user_string()} first)"
            else:
                spots = spots_from_bars(day_bars, pd.DatetimeIndex(fetch))
                with retry_transient_source_errors(context):
                    rebuilt = source.chain_snapshots(underlying, session, expiration, spots,
                                                     settings.strike_distance_pct)
                fetched = int(rebuilt["snapshot_ts"].nunique())
                parts.append(rebuilt)
        nonempty = [p for p in parts if len(p)]
        chain = (pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0]) if nonempty else None
        chain = (OPTION_CHAIN_SNAPSHOTS.empty_frame() if chain is None
                 else OPTION_CHAIN_SNAPSHOTS.conform(chain.assign(expiration_slot=slot)))
        chain = chain.sort_values(["snapshot_ts", "strike", "symbol"], kind="stable").reset_index(drop=True)
        meta: dict[str, object] = {"expiration": expiration.isoformat(), "expiration_slot": slot}
        if chain.empty:
            if reason is None and not len(times):
                reason = f"no snapshot instant of {date} has passed yet"
            # an empty chain without a reason (the source returned nothing) fails the chain check
            return chain, {**meta, "rows": 0, **({"empty_reason": reason} if reason else {})}
        origins = chain.groupby("origin")["snapshot_ts"].nunique()
        return chain, {
            **meta,
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

    return option_chain_snapshots


def captured_rows(captured: pd.DataFrame) -> pd.DataFrame:
    """Captured quotes as chain rows (``origin`` 'capture'; the capture's own columns dropped)."""
    rows = captured.drop(columns=["quote_ts", "stream"])
    rows["origin"] = "capture"
    return rows

