"""NYSE trading calendar: sessions, regular hours, early closes and snapshot instants.

Backed by ``exchange_calendars`` (XNYS). All instants are tz-aware; sessions are plain dates in
America/New_York. The trading-day partitions and every market-hours decision go through here.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

NEW_YORK = "America/New_York"
CALENDAR_NAME = "XNYS"
CALENDAR_START = dt.date(2018, 1, 2)
"""First session the pipeline partitions over (also the earliest date the calendar is loaded for)."""
CALENDAR_YEARS_AHEAD = 3
"""How far past today the calendar is loaded. Option listings reach two years ahead (monthly expirations), and the
library's own default (one year) made any date whose listing crossed it fail; beyond the holidays already announced,
``exchange_calendars`` extends the NYSE's holiday rules (ad-hoc closures cannot be known)."""


@lru_cache(maxsize=1)
def nyse_calendar() -> xcals.ExchangeCalendar:
    """The XNYS calendar from ``CALENDAR_START`` to ``CALENDAR_YEARS_AHEAD`` years after today."""
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.DateOffset(years=CALENDAR_YEARS_AHEAD)
    return xcals.get_calendar(CALENDAR_NAME, start=pd.Timestamp(CALENDAR_START), end=end)


@dataclass(frozen=True)
class TradingSession:
    """One regular NYSE session.

    Attributes:
        date: the session date (America/New_York).
        open: regular open, tz-aware UTC.
        close: regular close, tz-aware UTC (13:00 ET on early-close days).
    """

    date: dt.date
    open: pd.Timestamp
    close: pd.Timestamp

    @property
    def is_early_close(self) -> bool:
        """True when the session closes before 16:00 ET."""
        return bool(self.close.tz_convert(NEW_YORK).hour < 16)

    @property
    def minutes(self) -> int:
        """Length of the regular session in minutes (390 on a full day, 210 on an early close)."""
        return int((self.close - self.open).total_seconds() // 60)

    def bar_ends(self, bar_minutes: int) -> pd.DatetimeIndex:
        """Bar end instants (UTC) of ``bar_minutes`` bars covering the session; the last is the close."""
        _check_interval("bar_minutes", bar_minutes)
        ends = pd.date_range(self.open + pd.Timedelta(minutes=bar_minutes), self.close,
                             freq=f"{bar_minutes}min")
        if len(ends) == 0 or ends[-1] != self.close:
            ends = ends.append(pd.DatetimeIndex([self.close]))
        return ends

    def snapshot_times(self, snapshot_minutes: int) -> pd.DatetimeIndex:
        """Chain snapshot instants (UTC): the open, every ``snapshot_minutes`` after it, and the close."""
        _check_interval("snapshot_minutes", snapshot_minutes)
        times = pd.date_range(self.open, self.close, freq=f"{snapshot_minutes}min")
        if times[-1] != self.close:
            times = times.append(pd.DatetimeIndex([self.close]))
        return times


def _check_interval(name: str, minutes: int) -> None:
    if minutes <= 0:
        raise ValueError(f"{name}: expected a positive number of minutes, got {minutes}")


def _as_date(day: dt.date | str | pd.Timestamp) -> dt.date:
    if isinstance(day, str):
        return dt.date.fromisoformat(day)
    if isinstance(day, pd.Timestamp):
        return day.date()
    if isinstance(day, dt.datetime):
        return day.date()
    return day


def is_session(day: dt.date | str) -> bool:
    """True when ``day`` is an NYSE trading day."""
    return bool(nyse_calendar().is_session(pd.Timestamp(_as_date(day))))


def session(day: dt.date | str) -> TradingSession:
    """The regular session of ``day``.

    Raises:
        ValueError: ``day`` is not a trading day (weekend or holiday) or is outside the calendar.
    """
    date = _as_date(day)
    cal = nyse_calendar()
    ts = pd.Timestamp(date)
    if not (cal.first_session <= ts <= cal.last_session):
        raise ValueError(
            f"{date}: outside the NYSE calendar ({cal.first_session.date()} to {cal.last_session.date()})"
        )
    if not cal.is_session(ts):
        raise ValueError(f"{date}: not an NYSE trading day (weekend or exchange holiday)")
    return TradingSession(date=date, open=cal.session_open(ts), close=cal.session_close(ts))


def sessions_between(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Trading days in ``[start, end]`` (both inclusive)."""
    cal = nyse_calendar()
    lo = max(pd.Timestamp(_as_date(start)), cal.first_session)
    hi = min(pd.Timestamp(_as_date(end)), cal.last_session)
    if lo > hi:
        return []
    return [d.date() for d in cal.sessions_in_range(lo, hi)]


def next_session_on_or_after(day: dt.date) -> dt.date:
    """The first trading day on or after ``day``."""
    cal = nyse_calendar()
    return cal.date_to_session(pd.Timestamp(day), direction="next").date()  # type: ignore[no-any-return]


def previous_session_on_or_before(day: dt.date) -> dt.date:
    """The last trading day on or before ``day``."""
    cal = nyse_calendar()
    return cal.date_to_session(pd.Timestamp(day), direction="previous").date()  # type: ignore[no-any-return]


def last_completed_sessions(count: int, now: pd.Timestamp | None = None) -> list[dt.date]:
    """The ``count`` most recent sessions whose regular close is at or before ``now`` (oldest first)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    if now.tzinfo is None:
        raise ValueError("now: expected a tz-aware timestamp")
    cal = nyse_calendar()
    today = now.tz_convert(NEW_YORK).date()
    candidates = sessions_between(today - dt.timedelta(days=10 + 2 * count), today)
    done = [d for d in candidates if cal.session_close(pd.Timestamp(d)) <= now]
    if len(done) < count:
        raise ValueError(f"fewer than {count} completed sessions before {now}")
    return done[-count:]


def non_trading_weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in ``[start, end]`` on which the NYSE is closed (holidays and ad-hoc closures)."""
    cal = nyse_calendar()
    end = min(end, cal.last_session.date())
    weekdays = pd.bdate_range(start, end)
    sessions = set(cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end)))
    return [d.date() for d in weekdays if d not in sessions]


REPLAY_CLOCK_ENV = "ZEROGEX_CLOCK"
"""A replayed market clock shared by processes: ``AT@SPEED@WALL``, e.g. ``2026-11-27T14:29:00Z@10@1764500000.5``:
the market is at ``AT`` at Unix time ``WALL`` and moves ``SPEED`` market seconds per second. Unset: the wall clock.
``zerogex stream --at ... --print-clock`` writes one, so ``make ui`` can replay a session through every process."""


@dataclass(frozen=True)
class ReplayClock:
    """A replayed market clock (see :data:`REPLAY_CLOCK_ENV`)."""

    at: pd.Timestamp
    speed: float
    wall: float

    def now(self) -> pd.Timestamp:
        return self.at + pd.Timedelta(seconds=(time.time() - self.wall) * self.speed)

    def spec(self) -> str:
        """The ``ZEROGEX_CLOCK`` value of this clock."""
        return f"{self.at.tz_convert('UTC'):%Y-%m-%dT%H:%M:%S.%fZ}@{self.speed:g}@{self.wall:.3f}"


@lru_cache(maxsize=8)
def parse_replay_clock(spec: str) -> ReplayClock:
    """Parse a ``ZEROGEX_CLOCK`` value; a malformed one raises ``ValueError`` naming the variable."""
    try:
        at_text, speed_text, wall_text = spec.strip().split("@")
        at = pd.Timestamp(at_text)
        clock = ReplayClock(at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC"), float(speed_text),
                            float(wall_text))
    except (ValueError, TypeError):
        raise ValueError(f"{REPLAY_CLOCK_ENV}: expected AT@SPEED@WALL (e.g. 2026-11-27T14:29:00Z@10@1764500000), "
                         f"got {spec!r}") from None
    if not clock.speed > 0:
        raise ValueError(f"{REPLAY_CLOCK_ENV}: the speed must be positive, got {speed_text!r}")
    return clock


def replay_clock() -> ReplayClock | None:
    """The replayed clock of ``$ZEROGEX_CLOCK``, or ``None`` when the pipeline follows the wall clock."""
    spec = os.environ.get(REPLAY_CLOCK_ENV, "").strip()
    return parse_replay_clock(spec) if spec else None


def utc_now() -> pd.Timestamp:
    """The current instant (UTC): the wall clock, or ``$ZEROGEX_CLOCK``'s replay. The single clock of the pipeline;
    tests replace it."""
    replay = replay_clock()
    return pd.Timestamp.now(tz="UTC") if replay is None else replay.now()
