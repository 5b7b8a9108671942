"""Partitions: NYSE trading days, and trading day × expiration slot.

Trading days are a ``DailyPartitionsDefinition`` in America/New_York from ``ZEROGEX_FIRST_DATE`` with
weekends and every NYSE holiday (from ``exchange_calendars`` XNYS) excluded. ``end_offset=1`` makes today's
partition exist during the session for intraday refreshes; on a weekend or holiday the last key can be the
next session (Dagster issue 33551), so callers pick dates through ``market_calendar``, never "last key".

The chain and surface are partitioned by date × **expiration slot**: a static dimension ``expiration`` whose
keys ``1`` .. ``ZEROGEX_EXPIRATIONS`` name the k-th nearest expiration listed that day (``1`` = the nearest,
0DTE included). Every (date, slot) pair is a real partition (the grid is dense: a backfill of a date range
over every slot is exactly the tracked chains, and partition status counts real progress), and nothing has
to be registered before a date can be materialized. The expiration a slot stands for on a date is resolved
when the chain is built (:mod:`zerogex_pipeline.defs.options.slots`) and stored beside it
(``expiration`` and ``expiration_slot`` columns). Multi-partition keys read ``date|slot``, e.g.
``2024-06-14|2`` (dimensions sort by name); build them with :func:`chain_partition_key`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import dagster as dg

from zerogex_pipeline.market_calendar import (
    NEW_YORK,
    next_session_on_or_after,
    non_trading_weekdays,
    nyse_calendar,
)
from zerogex_pipeline.settings import Settings

WEEKEND_EXCLUSIONS = ("0 0 * * 6", "0 0 * * 0")
SLOT_DIMENSION = "expiration"
DATE_DIMENSION = "date"


@lru_cache(maxsize=8)
def trading_day_partitions(first_date: dt.date) -> dg.DailyPartitionsDefinition:
    """One partition per NYSE trading day from the first session on or after ``first_date``."""
    start = next_session_on_or_after(first_date)
    holidays = non_trading_weekdays(start, nyse_calendar().last_session.date())
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        timezone=NEW_YORK,
        end_offset=1,
        exclusions=[*WEEKEND_EXCLUSIONS, *(dt.datetime.combine(d, dt.time()) for d in holidays)],
    )


def day_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """The trading-day partitions of ``settings`` (from ``ZEROGEX_FIRST_DATE``)."""
    return trading_day_partitions(settings.first_date)


def slot_keys(count: int) -> list[str]:
    """Keys of the expiration-slot dimension: ``["1", ..., str(count)]`` (1 = nearest listed expiration)."""
    if count < 1:
        raise ValueError(f"expiration slots: expected at least 1, got {count}")
    return [str(k) for k in range(1, count + 1)]


def slot_number(key: str) -> int:
    """The slot ``k`` (1-based) of an expiration-slot key.

    Raises:
        ValueError: the key is not a positive whole number.
    """
    if not key.isdigit() or int(key) < 1:
        raise ValueError(f"expiration slot: expected 1, 2, ... (k-th nearest listed expiration), got {key!r}")
    return int(key)


@lru_cache(maxsize=16)
def _chain_partitions(first_date: dt.date, slots: int) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {DATE_DIMENSION: trading_day_partitions(first_date),
         SLOT_DIMENSION: dg.StaticPartitionsDefinition(slot_keys(slots))}
    )


def chain_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Trading day × expiration slot (``ZEROGEX_EXPIRATIONS`` slots); keys ``YYYY-MM-DD|k`` (date first)."""
    return _chain_partitions(settings.first_date, settings.expirations)


def chain_partition_key(date: dt.date | str, slot: int | str) -> dg.MultiPartitionKey:
    """The multi-partition key of (date, k-th nearest expiration)."""
    return dg.MultiPartitionKey({DATE_DIMENSION: str(date), SLOT_DIMENSION: str(slot_number(str(slot)))})


def split_chain_key(key: str | dg.MultiPartitionKey) -> tuple[dt.date, int]:
    """``(date, slot)`` of a chain partition key (``MultiPartitionKey`` or its ``date|slot`` string)."""
    if isinstance(key, dg.MultiPartitionKey):
        by_dim = key.keys_by_dimension
        return dt.date.fromisoformat(by_dim[DATE_DIMENSION]), slot_number(by_dim[SLOT_DIMENSION])
    date, _, slot = str(key).partition("|")
    return dt.date.fromisoformat(date), slot_number(slot)


def backfill_policy(settings: Settings) -> dg.BackfillPolicy:
    """Range runs of at most ``ZEROGEX_BACKFILL_DAYS_PER_RUN`` trading days (per expiration slot for the chain).

    Every partitioned core asset shares this policy, so a backfill launches a few runs per asset instead of one
    per partition (the run start-up, not the computation, set the pace of per-partition runs). Dagster splits a
    date × slot selection into one date range per slot and cuts each range into runs of this many days.
    """
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_days_per_run)


def consecutive_sessions(dates: Sequence[dt.date], size: int) -> list[list[dt.date]]:
    """``dates`` (sorted, deduplicated) cut into runs of consecutive NYSE sessions of at most ``size`` days: each is
    one contiguous range of date partitions, so one range run can materialize it."""
    ranges: list[list[dt.date]] = []
    for date in sorted(set(dates)):
        current = ranges[-1] if ranges else None
        if (current is not None and len(current) < size
                and next_session_on_or_after(current[-1] + dt.timedelta(days=1)) == date):
            current.append(date)
        else:
            ranges.append([date])
    return ranges
