"""Partitions: NYSE trading days, listed expirations per underlying, and date × expiration.

Trading days are a ``DailyPartitionsDefinition`` in America/New_York with weekends and every NYSE
holiday (from ``exchange_calendars`` XNYS) excluded. ``end_offset=1`` makes today's partition exist
during the session for intraday refreshes; on a weekend or holiday the last key can be the next
session (Dagster issue 33551), so callers pick dates through ``market_calendar``, never "last key".
Multi-partition keys read ``date|expiration`` (dimensions sort by name); build them with
:func:`chain_partition_key`.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import dagster as dg

from zerogex_pipeline.market_calendar import CALENDAR_START, NEW_YORK, non_trading_weekdays, nyse_calendar
from zerogex_pipeline.underlyings import Underlying

WEEKEND_EXCLUSIONS = ("0 0 * * 6", "0 0 * * 0")


@lru_cache(maxsize=1)
def trading_day_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per NYSE trading day since ``CALENDAR_START``."""
    holidays = non_trading_weekdays(CALENDAR_START, nyse_calendar().last_session.date())
    return dg.DailyPartitionsDefinition(
        start_date=CALENDAR_START.isoformat(),
        timezone=NEW_YORK,
        end_offset=1,
        exclusions=[*WEEKEND_EXCLUSIONS, *(dt.datetime.combine(d, dt.time()) for d in holidays)],
    )


def expirations_partitions_name(underlying: Underlying) -> str:
    """Name of the dynamic partition set of ``underlying``'s expirations, e.g. ``spy_expirations``."""
    return f"{underlying.key}_expirations"


def expiration_partitions(underlying: Underlying) -> dg.DynamicPartitionsDefinition:
    """Listed expirations of ``underlying`` (keys ``YYYY-MM-DD``), registered as they are listed."""
    return dg.DynamicPartitionsDefinition(name=expirations_partitions_name(underlying))


def chain_partitions(underlying: Underlying) -> dg.MultiPartitionsDefinition:
    """Trading day × expiration; keys ``YYYY-MM-DD|YYYY-MM-DD`` (date first)."""
    return dg.MultiPartitionsDefinition(
        {"date": trading_day_partitions(), "expiration": expiration_partitions(underlying)}
    )


def chain_partition_key(date: dt.date | str, expiration: dt.date | str) -> dg.MultiPartitionKey:
    """The multi-partition key of (date, expiration)."""
    return dg.MultiPartitionKey({"date": str(date), "expiration": str(expiration)})
