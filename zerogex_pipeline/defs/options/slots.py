"""Which expiration each expiration slot stands for on a trading day, and the date × slot keys of a run.

A day's tracked expirations are its ``ZEROGEX_EXPIRATIONS`` nearest listed expirations, nearest first (0DTE
included); slot ``k`` is the k-th of them. They come from the stream capture when it tracked that many that day
(the engine tracks the same nearest expirations, and then no source request is needed), else from the source's
listing. The chain asset, ``gex_levels`` and the ``levels_complete`` check all resolve them here, so they agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import dagster as dg
import pandas as pd

from zerogex_pipeline.defs.partitions import split_chain_key
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.storage.postgres_io_manager import RETRY_SECONDS
from zerogex_pipeline.underlyings import Underlying

Listing = Callable[[dt.date], Sequence[dt.date]]
"""The expirations listed on a date, nearest first (a source's ``listed_expirations`` for one underlying)."""


class TrackedExpirations:
    """The tracked expirations of each date, looked up once per date (capture first, then the listing).

    Args:
        underlying: whose expirations.
        settings: ``expirations`` (how many are tracked) and the capture store's location.
        listing: the source's listing, called only for dates whose capture does not hold every tracked expiration.
    """

    def __init__(self, underlying: Underlying, settings: Settings, listing: Listing) -> None:
        self.underlying = underlying
        self.count = settings.expirations
        self._store = CaptureStore(settings, read_retry_s=RETRY_SECONDS)  # rides through a server restart
        self._listing = listing
        self._cache: dict[dt.date, list[dt.date]] = {}

    def __enter__(self) -> TrackedExpirations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the capture store's connection."""
        self._store.close()

    @property
    def store(self) -> CaptureStore:
        """The capture store (shared with the caller's reads of captured quotes)."""
        return self._store

    def of(self, date: dt.date) -> list[dt.date]:
        """The tracked expirations of ``date``, nearest first (fewer than ``count`` when fewer are listed)."""
        if date not in self._cache:
            captured = self._store.captured_instants(self.underlying, date)
            tracked = sorted({pd.Timestamp(e).date() for e in captured["expiration"]})[: self.count]
            if len(tracked) < self.count:  # no (complete) capture that day: the listing decides
                tracked = list(self._listing(date))[: self.count]
            self._cache[date] = tracked
        return self._cache[date]

    def slot(self, date: dt.date, slot: int) -> dt.date | None:
        """The expiration of slot ``slot`` (1 = nearest) on ``date``, or ``None`` when fewer are listed."""
        tracked = self.of(date)
        return tracked[slot - 1] if slot <= len(tracked) else None


class PartitionRunError(ValueError):
    """A run's partitions cannot be materialized together; the message names them."""


def run_chain_keys(keys: Sequence[str | dg.MultiPartitionKey]) -> list[tuple[dt.date, int]]:
    """The ``(date, slot)`` pairs of a chain/surface run's partition keys, sorted by date, then slot.

    A run may cover several dates of one slot (a backfill's range runs) or several slots of one date (the
    intraday refresh: every slot of today in one run), or any full dates × slots rectangle.

    Raises:
        PartitionRunError: the keys are not a full rectangle of dates × slots. The store replaces a run's
            partitions as one rectangle (every listed date × every listed slot), so a ragged range such as
            ``2024-06-13|3 .. 2024-06-14|1`` would delete partitions the run does not write.
    """
    if not keys:
        raise PartitionRunError("the run's partition range selects no (date, expiration slot) partition: Dagster "
                                "reads a date|slot range dimension by dimension, so the first slot must not follow "
                                "the last (e.g. 2024-06-13|1 .. 2024-06-14|3)")
    pairs = sorted({split_chain_key(k) for k in keys})
    dates = sorted({d for d, _ in pairs})
    slots = sorted({s for _, s in pairs})
    if len(pairs) != len(dates) * len(slots):
        raise PartitionRunError(
            f"partitions {keys[0]} .. {keys[-1]}: a run materializes every listed slot of every listed date, got "
            f"{len(pairs)} of the {len(dates)} x {len(slots)} (date, slot) pairs; launch one range per slot (a "
            "backfill from the partitions dialog does) or every slot of each date"
        )
    return pairs
