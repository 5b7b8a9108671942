"""Trading-day backfills of an underlying's four core assets, ordered by Dagster's backfill daemon.

The chain and surface assets are partitioned by date x expiration, the bars and levels by date, so a
day cannot be one run. An *asset backfill* can: given the exact partitions, the daemon launches the
bars run first, the chain + surface runs of each (date, expiration) once that date's bars exist, and
the levels of a date once its surfaces exist, honoring the run queue and the ``tradestation_api``
pool. :func:`submit_trading_day_backfill` builds that partition set (the ``ZEROGEX_EXPIRATIONS``
nearest expirations listed on each date, registered as dynamic partitions first) and submits it.

Used by the end-of-day schedule (one date), the ``<u>_backfill_trading_days`` job launched from the
UI (a date range), and ``zerogex backfill``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_timestamp

from zerogex_pipeline import market_calendar
from zerogex_pipeline.defs.partitions import chain_partition_key, expirations_partitions_name
from zerogex_pipeline.sources.base import MarketDataSource
from zerogex_pipeline.underlyings import Underlying

BACKFILL_TAG = "zerogex/backfill"
"""Tag on every backfill submitted here: ``<underlying>:<first date>..<last date>``."""

MAX_BACKFILL_SESSIONS = 1300
"""About five years of sessions: a larger range is almost certainly a typo in a date."""


class BackfillRequestError(ValueError):
    """A backfill request names no trading day, or an invalid range; the message says which input."""


@dataclass(frozen=True)
class CoreAssetKeys:
    """The four core asset keys of one underlying, in lineage order."""

    bars: dg.AssetKey
    chain: dg.AssetKey
    surface: dg.AssetKey
    levels: dg.AssetKey

    @classmethod
    def of(cls, underlying: Underlying) -> CoreAssetKeys:
        """The keys the asset factories give ``underlying`` (``spy/underlying_bars``, ...)."""
        return cls(*(dg.AssetKey([underlying.key, name]) for name in
                     ("underlying_bars", "option_chain_snapshots", "gex_surface", "gex_levels")))


def backfill_sessions(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """NYSE sessions from ``start`` through ``end``.

    Raises:
        BackfillRequestError: a date is not ``YYYY-MM-DD``, ``end`` precedes ``start``, the range holds no
            session, or more than :data:`MAX_BACKFILL_SESSIONS`.
    """
    try:
        first, last = (d if isinstance(d, dt.date) else dt.date.fromisoformat(d) for d in (start, end))
    except ValueError as exc:
        raise BackfillRequestError(f"backfill dates: expected YYYY-MM-DD, got start={start!r} end={end!r}") from exc
    if last < first:
        raise BackfillRequestError(f"backfill dates: end {last} is before start {first}")
    sessions = market_calendar.sessions_between(first, last)
    if not sessions:
        raise BackfillRequestError(f"backfill dates: no NYSE trading day from {first} to {last}")
    if len(sessions) > MAX_BACKFILL_SESSIONS:
        raise BackfillRequestError(
            f"backfill dates: {len(sessions)} sessions from {first} to {last}; at most {MAX_BACKFILL_SESSIONS}"
        )
    return sessions


def tracked_expirations(
    source: MarketDataSource, underlying: Underlying, sessions: Sequence[dt.date], count: int
) -> dict[dt.date, list[dt.date]]:
    """The ``count`` nearest expirations listed on each session (0DTE included), as the refresh tracks them."""
    return {d: source.listed_expirations(underlying, d)[:count] for d in sessions}


def backfill_partitions(keys: CoreAssetKeys, plan: Mapping[dt.date, Sequence[dt.date]]) -> set[AssetKeyPartitionKey]:
    """Every (asset, partition) of the plan: bars and levels per date, chain and surface per (date, expiration)."""
    targets: set[AssetKeyPartitionKey] = set()
    for date, expirations in plan.items():
        day = date.isoformat()
        targets |= {AssetKeyPartitionKey(keys.bars, day), AssetKeyPartitionKey(keys.levels, day)}
        for expiration in expirations:
            key = str(chain_partition_key(date, expiration))
            targets |= {AssetKeyPartitionKey(keys.chain, key), AssetKeyPartitionKey(keys.surface, key)}
    return targets


def submit_trading_day_backfill(
    instance: dg.DagsterInstance,
    asset_graph: BaseAssetGraph,
    underlying: Underlying,
    plan: Mapping[dt.date, Sequence[dt.date]],
    title: str,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Register the plan's expirations and submit its asset backfill; returns the backfill id.

    The backfill daemon (``dagster dev`` / ``make ui``, or ``dagster-daemon run``) executes it.
    """
    if not plan:
        raise BackfillRequestError("backfill plan: no trading day to backfill")
    expirations = sorted({e.isoformat() for exps in plan.values() for e in exps})
    name = expirations_partitions_name(underlying)
    known = set(instance.get_dynamic_partitions(name))
    new = [e for e in expirations if e not in known]
    if new:
        instance.add_dynamic_partitions(name, new)
    subset = AssetGraphSubset.from_asset_partition_set(
        backfill_partitions(CoreAssetKeys.of(underlying), plan), asset_graph
    )
    dates = sorted(plan)
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=get_current_timestamp(),
            tags={BACKFILL_TAG: f"{underlying.key}:{dates[0]}..{dates[-1]}", **(tags or {})},
            dynamic_partitions_store=instance,
            asset_graph_subset=subset,
            title=title,
            description=(
                f"{underlying.name}: {len(dates)} trading day(s) {dates[0]}..{dates[-1]}, "
                f"{sum(len(e) for e in plan.values())} (date, expiration) chain partitions"
            ),
            run_config=None,
        )
    )
    return backfill_id
