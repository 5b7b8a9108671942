"""Is the capture keeping up? The rule behind the capture check and the refresh sensor (pure; no I/O).

During a session (from the open plus ``grace`` to the close plus ``grace``), the newest captured snapshot
must be the latest snapshot instant that is at least ``grace`` old: the engine captures an instant within
seconds of it, so an older newest capture means the engine stopped (or its streams are down). Coverage is
the share of (instant, expiration) pairs captured among the instants elapsed so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.market_calendar import TradingSession

DEFAULT_GRACE = pd.Timedelta(seconds=90)


@dataclass(frozen=True)
class CaptureCoverage:
    """The capture's state at ``now`` (instants UTC; ``ok`` False means it stopped during the session)."""

    now: pd.Timestamp
    in_session: bool
    expected: pd.Timestamp | None
    newest: pd.Timestamp | None
    instants_elapsed: int
    pairs_expected: int
    pairs_captured: int
    missed_instants: tuple[pd.Timestamp, ...]
    ok: bool
    message: str

    @property
    def coverage_pct(self) -> float:
        """Captured (instant, expiration) pairs over the pairs elapsed, percent (100 with none elapsed)."""
        return 100.0 if self.pairs_expected == 0 else 100.0 * self.pairs_captured / self.pairs_expected

    @property
    def lag_seconds(self) -> float | None:
        """Seconds from the newest captured instant to ``now`` (``None`` when nothing is captured)."""
        return None if self.newest is None else (self.now - self.newest).total_seconds()


def _et(ts: pd.Timestamp) -> str:
    return f"{ts.tz_convert(market_calendar.NEW_YORK):%H:%M} ET"


def capture_coverage(session: TradingSession, snapshot_minutes: int, captured: pd.DataFrame, expirations: int,
                     now: pd.Timestamp, grace: pd.Timedelta = DEFAULT_GRACE) -> CaptureCoverage:
    """Judge one session's capture at ``now``.

    Args:
        captured: ``snapshot_ts`` and ``expiration`` of every captured (instant, expiration) of the session.
        expirations: how many expirations each instant should have (``ZEROGEX_EXPIRATIONS``).
    """
    instants = session.snapshot_times(snapshot_minutes)
    due = instants[instants <= now - grace]
    in_session = session.open + grace <= now <= session.close + grace
    stamps = pd.DatetimeIndex(pd.to_datetime(captured["snapshot_ts"], utc=True)) if len(captured) else \
        pd.DatetimeIndex([], tz="UTC")
    newest = stamps.max() if len(stamps) else None
    per_instant = pd.Series(1, index=stamps).groupby(level=0).size() if len(stamps) else pd.Series(dtype=int)
    pairs = int(sum(min(int(per_instant.get(t, 0)), expirations) for t in due))
    missed = tuple(t for t in due if int(per_instant.get(t, 0)) == 0)
    expected = due[-1] if len(due) else None
    if not in_session or expected is None:
        ok = True
        when = "has not opened" if now < session.open + grace else "is over"
        message = f"session {session.date} {when}: no capture expected now"
    elif newest is not None and newest >= expected:
        ok = True
        partial = int(per_instant.get(expected, 0)) < expirations
        message = (f"capturing: newest snapshot {_et(newest)}"
                   + (f" ({int(per_instant.get(expected, 0))} of {expirations} expirations)" if partial else ""))
    else:
        ok = False
        last = "nothing captured yet today" if newest is None else f"newest snapshot {_et(newest)}"
        message = (f"the stream engine stopped capturing: {last}, expected {_et(expected)} "
                   f"({len(missed)} of {len(due)} instants missed so far); is `zerogex stream` running?")
    return CaptureCoverage(now, in_session, expected, newest, len(due), len(due) * expirations, pairs, missed, ok,
                           message)
