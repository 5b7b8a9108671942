"""The engine's clock: the wall clock, or a simulated session replayed from any instant at any speed.

``now()`` is market time (UTC). A replay clock starts at ``at`` and advances ``speed`` market seconds per
wall-clock second, so ``--at 2026-11-27T09:25 --speed 10`` plays a session from 09:25 ET ten times faster.
Sleeping ``until`` a market instant sleeps the matching wall time; :meth:`EngineClock.stop` wakes sleepers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pandas as pd

from zerogex_pipeline import market_calendar

REPLAY_SKIP_S = 60.0
"""A replay does not sleep through waits longer than this many wall seconds: it jumps over them."""


class EngineClock:
    """Market time for the engine (see the module docstring).

    Args:
        at: replay start (market instant, tz-aware); ``None`` follows the wall clock.
        speed: market seconds per wall second (> 0); only with ``at``.
        source: the wall clock to follow when ``at`` is ``None`` (tests inject one).
    """

    def __init__(self, at: pd.Timestamp | None = None, speed: float = 1.0,
                 source: Callable[[], pd.Timestamp] = market_calendar.utc_now) -> None:
        replay = market_calendar.replay_clock() if at is None and source is market_calendar.utc_now else None
        if replay is not None:  # $ZEROGEX_CLOCK: the replay every process of the pipeline shares
            at, speed = replay.now(), replay.speed
        if speed <= 0:
            raise ValueError(f"--speed: expected a positive number of market seconds per second, got {speed}")
        if at is not None and at.tzinfo is None:
            raise ValueError(f"--at: expected an instant with a time zone, got {at}")
        self.at = None if at is None else at.tz_convert("UTC")
        self.speed = speed if at is not None else 1.0
        self._source = source
        self._wall0 = time.monotonic()
        self._stop = threading.Event()

    @property
    def replay(self) -> bool:
        """True when replaying a simulated session (``--at``)."""
        return self.at is not None

    def now(self) -> pd.Timestamp:
        """The current market instant (UTC)."""
        if self.at is None:
            return self._source()
        return self.at + pd.Timedelta(seconds=(time.monotonic() - self._wall0) * self.speed)

    def spec(self) -> str:
        """This clock as a ``$ZEROGEX_CLOCK`` value (other processes then share its market time)."""
        now = self.now()
        return market_calendar.ReplayClock(now, self.speed, time.time()).spec()

    def market_at(self, monotonic: float) -> pd.Timestamp:
        """The market instant at the ``time.monotonic()`` reading ``monotonic`` (now's offset applied)."""
        return self.now() + pd.Timedelta(seconds=(monotonic - time.monotonic()) * self.speed)

    def wall_seconds(self, market_seconds: float) -> float:
        """Wall-clock seconds that ``market_seconds`` of market time take."""
        return market_seconds / self.speed

    def sleep_until(self, instant: pd.Timestamp, max_wall_s: float | None = None) -> bool:
        """Sleep until market time reaches ``instant`` (at most ``max_wall_s`` wall seconds).

        A replay skips a wait longer than :data:`REPLAY_SKIP_S` wall seconds (a night, a weekend) at once: the
        market clock jumps to ``instant``. Returns False when :meth:`stop` was called, True otherwise.
        """
        remaining = self.wall_seconds((instant - self.now()).total_seconds())
        if self.at is not None and max_wall_s is None and remaining > REPLAY_SKIP_S:
            self.at += instant - self.now()
            return not self._stop.is_set()
        if max_wall_s is not None:
            remaining = min(remaining, max_wall_s)
        if remaining > 0:
            self._stop.wait(remaining)
        return not self._stop.is_set()

    def stop(self) -> None:
        """Wake every sleeper; later sleeps return at once."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True after :meth:`stop`."""
        return self._stop.is_set()
