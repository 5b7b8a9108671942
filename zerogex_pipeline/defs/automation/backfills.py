"""Trading-day backfills of an underlying's four core assets, ordered by Dagster's backfill daemon.

The chain and surface are partitioned by date × expiration slot, the bars and levels by date. An *asset backfill*
of a date range targets every slot of every date (the dense grid: each (date, slot) is a real partition, the k-th
nearest expiration listed that day), so the levels of each date aggregate every tracked expiration. The daemon
launches the bars first, each slot's chain + surface once their dates' bars exist, and the levels of a date once
every slot's surface of it exists, in range runs of ``ZEROGEX_BACKFILL_DAYS_PER_RUN`` days (the assets' backfill
policy), through the run queue and the ``tradestation_api`` pool. Nothing needs registering first.

:func:`submit_trading_day_backfill` builds that partition set and submits it. Used by the end-of-day schedule
(one date), the ``<u>_backfill_trading_days`` job (a date range), and ``zerogex backfill``. Selecting the four
assets in the UI, Materialize, and picking dates submits the same backfill.
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
from zerogex_pipeline.defs.partitions import chain_partition_key
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


def backfill_sessions(
    start: dt.date | str, end: dt.date | str, first: dt.date | None = None, today: dt.date | None = None,
) -> list[dt.date]:
    """NYSE sessions from ``start`` through ``end``.

    Args:
        start, end: the range, both included (``YYYY-MM-DD`` or dates).
        first: the first date of the partitions (``ZEROGEX_FIRST_DATE``); earlier dates are refused.
        today: the latest date allowed (today in New York by default): a future session has no data.

    Raises:
        BackfillRequestError: a date is not ``YYYY-MM-DD``, ``end`` precedes ``start``, the range lies outside
            the partitions or in the future, holds no session, or more than :data:`MAX_BACKFILL_SESSIONS`.
    """
    try:
        lo, hi = (d if isinstance(d, dt.date) else dt.date.fromisoformat(d) for d in (start, end))
    except ValueError:
        raise BackfillRequestError(f"backfill dates: expected YYYY-MM-DD, got start={start!r} end={end!r}") from None
    if hi < lo:
        raise BackfillRequestError(f"backfill dates: end {hi} is before start {lo}")
    if first is not None and lo < first:
        raise BackfillRequestError(
            f"backfill dates: start {lo} is before the first partition date {first} (ZEROGEX_FIRST_DATE)")
    today = today or market_calendar.utc_now().tz_convert(market_calendar.NEW_YORK).date()
    if hi > today:
        raise BackfillRequestError(f"backfill dates: end {hi} is in the future (today is {today} in New York)")
    sessions = market_calendar.sessions_between(lo, hi)
    if not sessions:
        raise BackfillRequestError(f"backfill dates: no NYSE trading day from {lo} to {hi}")
    if len(sessions) > MAX_BACKFILL_SESSIONS:
        raise BackfillRequestError(
            f"backfill dates: {len(sessions)} sessions from {lo} to {hi}; at most {MAX_BACKFILL_SESSIONS}"
        )
    return sessions


def backfill_partitions(keys: CoreAssetKeys, sessions: Sequence[dt.date], slots: int) -> set[AssetKeyPartitionKey]:
    """Every (asset, partition) of a backfill: bars and levels per date, chain and surface per (date, slot)."""
    targets: set[AssetKeyPartitionKey] = set()
    for date in sessions:
        day = date.isoformat()
        targets |= {AssetKeyPartitionKey(keys.bars, day), AssetKeyPartitionKey(keys.levels, day)}
        for slot in range(1, slots + 1):
            key = str(chain_partition_key(date, slot))
            targets |= {AssetKeyPartitionKey(keys.chain, key), AssetKeyPartitionKey(keys.surface, key)}
    return targets


def backfill_path(backfill_id: str) -> str:
    """The backfill's page in the Dagster UI, relative to the webserver (``/runs/b/<id>?tab=partitions``)."""
    return f"/runs/b/{backfill_id}?tab=partitions"


def submit_trading_day_backfill(
    instance: dg.DagsterInstance,
    asset_graph: BaseAssetGraph,
    underlying: Underlying,
    sessions: Sequence[dt.date],
    slots: int,
    title: str,
    tags: Mapping[str, str] | None = None,
    backfill_id: str | None = None,
) -> str:
    """Submit the asset backfill of ``sessions`` × every expiration slot; returns the backfill id.

    ``backfill_id`` (default: a new random id) lets several submitters agree on one backfill: the instance
    refuses a second backfill with the same id. The backfill daemon (``dagster dev`` / ``make ui``, or
    ``dagster-daemon run``) executes it.
    """
    if not sessions:
        raise BackfillRequestError("backfill: no trading day to backfill")
    subset = AssetGraphSubset.from_asset_partition_set(
        backfill_partitions(CoreAssetKeys.of(underlying), sessions, slots), asset_graph
    )
    dates = sorted(sessions)
    backfill_id = backfill_id or make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=get_current_timestamp(),
            tags={BACKFILL_TAG: f"{underlying.key}:{dates[0]}..{dates[-1]}", **(tags or {})},
            dynamic_partitions_store=instance,
            asset_graph_subset=subset,
            title=title,
            description=(
                f"{underlying.name}: {len(dates)} trading day(s) {dates[0]}..{dates[-1]} x {slots} expiration "
                f"slot(s) (the {slots} nearest expirations listed each day)"
            ),
            run_config=None,
        )
    )
    return backfill_id
