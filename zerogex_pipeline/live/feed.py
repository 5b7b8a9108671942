"""What the engine needs from a live feed, and the health of each of its streams.

A stream is **live** at an instant when its current connection has delivered its whole initial snapshot
and it sent something (data or a heartbeat; TradeStation sends one after 5 s idle) within
:data:`LIVENESS_S` wall-clock seconds. A snapshot instant captures an expiration only when every stream
covering it is live then: an outage (reconnect after GoAway, silent death, starvation, DualLogon, a 5xx on
connect, an expired token) loses exactly the instants that fall inside it, and nothing stale is stored as
if it were current.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from zerogex_pipeline.live.book import UnderlyingState
from zerogex_pipeline.live.plan import ExpirationPlan, Series
from zerogex_pipeline.underlyings import Underlying

LIVENESS_S = 7.0
"""A live stream has sent something within this many wall seconds (heartbeats come every 5 s)."""


@dataclass
class StreamStatus:
    """Health of one stream (times are ``time.monotonic()`` seconds)."""

    id: int
    kind: str
    """``spot`` (underlying quotes), ``bars``, ``chain`` (option chain) or ``quotes`` (tail option quotes)."""
    label: str
    connected: bool = False
    complete: bool = False
    last_message: float = float("-inf")
    last_data: float = float("-inf")
    """When it last sent data (not a heartbeat)."""
    connected_at: float = float("-inf")
    """When its current connection sent its first message."""
    connections: int = 0
    failures: int = 0
    last_error: str = ""
    closed: bool = False
    alive_until: dict[int, float] = field(default_factory=dict)
    """Per connection number, when it was last heard from (data, heartbeat or its GoAway)."""
    down_since: float | None = None
    outages: list[tuple[float, float]] = field(default_factory=list)
    stale_since: float | None = None
    """Set when a snapshot instant found it connected but behind (see :meth:`Feed.stale_chains`): its last data
    before then. The span until data resumes is recorded as an outage, as a drop would be."""
    stale_seen: float = float("-inf")
    """The latest instant it was found behind (the outage reaches at least it)."""

    def is_live(self, now: float, liveness_s: float = LIVENESS_S) -> bool:
        """Connected, initial snapshot complete, and heard from within ``liveness_s``."""
        return self.connected and self.complete and now - self.last_message <= liveness_s

    def went_down(self, now: float, starved: bool = False) -> None:
        """Mark it down at ``now``. Its outage began when it was last heard from (a silent death: before it was
        noticed) or, when it starved (heartbeats only), when it last sent data: its heartbeats carried nothing."""
        self.connected = False
        self.complete = False
        if self.down_since is None:
            self.down_since = min(now, self.last_data if starved else self.last_message)
        if self.stale_since is not None:  # behind before it dropped: one outage from then
            self.down_since = min(self.down_since, self.stale_since)
            self.stale_since = None

    def data_applied(self, received: float) -> None:
        """Record data held by the book since ``received`` (its first message's receipt); ends a stale span."""
        if self.stale_since is not None:  # a chunk received before an instant found it behind is applied after it
            self.outages.append((self.stale_since, max(received, self.stale_seen)))
            self.stale_since = None
        self.last_data = received

    def behind(self, instant: float) -> None:
        """Record that it was found behind at ``instant``: stale since its last data (see :attr:`stale_since`)."""
        if self.stale_since is None:
            self.stale_since = self.last_data
        self.stale_seen = max(self.stale_seen, instant)

    def outage_start(self, now: float, liveness_s: float = LIVENESS_S) -> float | None:
        """When its current outage began (``None`` while live): when it went down, or, silent but not yet
        noticed, when it was last heard from."""
        if self.is_live(now, liveness_s):
            return None
        return self.down_since if self.down_since is not None else self.last_message

    def heard(self, now: float) -> None:
        """Record a message (data or heartbeat) on the current connection."""
        self.last_message = now
        self.alive_until[self.connections] = now

    def alive_after(self, connection: int, instant: float) -> bool | None:
        """Whether ``connection`` was heard from after ``instant``: True, False (it ended before), or
        ``None`` (still open and silent since: not known yet)."""
        if self.alive_until.get(connection, float("-inf")) > instant:
            return True
        return None if self.connections == connection and self.connected else False


class StreamRegistry:
    """Every stream a feed opened, by id (thread-safe)."""

    def __init__(self, liveness_s: float = LIVENESS_S) -> None:
        self.liveness_s = liveness_s
        self._lock = threading.Lock()
        self._streams: dict[int, StreamStatus] = {}
        self._next = 0

    def register(self, kind: str, label: str) -> StreamStatus:
        """A new stream's status (not yet connected)."""
        with self._lock:
            status = StreamStatus(self._next, kind, label, down_since=time.monotonic())
            self._streams[self._next] = status
            self._next += 1
            return status

    def get(self, stream_id: int) -> StreamStatus:
        with self._lock:
            return self._streams[stream_id]

    def all(self) -> list[StreamStatus]:
        """Every stream, open or closed, in id order."""
        with self._lock:
            return [self._streams[k] for k in sorted(self._streams)]

    def not_live(self, ids: Iterable[int], now: float | None = None) -> list[StreamStatus]:
        """The streams among ``ids`` that are not live now."""
        t = time.monotonic() if now is None else now
        with self._lock:
            return [self._streams[i] for i in ids if not self._streams[i].is_live(t, self.liveness_s)]

    def not_live_at(self, ids: Iterable[int], instant: float, now: float | None = None) -> list[StreamStatus]:
        """The streams among ``ids`` whose current outage began at or before ``instant`` (monotonic seconds): a
        stream that went down after it had already delivered what was current at the instant."""
        t = time.monotonic() if now is None else now
        with self._lock:
            out = []
            for i in ids:
                began = self._streams[i].outage_start(t, self.liveness_s)
                if began is not None and began <= instant:
                    out.append(self._streams[i])
            return out

    def open_count(self, kind: str) -> int:
        """Streams of ``kind`` not closed."""
        with self._lock:
            return sum(1 for s in self._streams.values() if s.kind == kind and not s.closed)


@dataclass
class OpenedExpiration:
    """The streams a feed opened for one expiration plan."""

    plan: ExpirationPlan
    stream_ids: list[int]


class Feed(Protocol):
    """A live market-data feed: TradeStation streams, or the simulated market at the engine's clock."""

    name: str
    """``tradestation`` or ``simulated`` (the ``source``/``feed`` columns)."""
    registry: StreamRegistry

    def listed_expirations(self, u: Underlying, day: dt.date) -> list[dt.date]:
        """Expirations listed on ``day`` that settle on or after it, ascending."""
        ...

    def listed_strikes(self, u: Underlying, expiration: dt.date, day: dt.date) -> np.ndarray:
        """Listed strikes (USD) of ``expiration`` on ``day``."""
        ...

    def series(self, u: Underlying, expiration: dt.date, day: dt.date) -> tuple[Series, ...]:
        """The option series (root, settlement) of ``expiration`` trading on ``day``."""
        ...

    def start(self, states: dict[str, UnderlyingState], underlyings: list[Underlying], day: dt.date) -> dict[str, int]:
        """Open the spot and bar streams of ``underlyings``; returns the spot stream id per underlying key."""
        ...

    def open_expiration(self, plan: ExpirationPlan, state: UnderlyingState) -> OpenedExpiration:
        """Open the streams of one expiration plan (a chain stream and its tail quote streams)."""
        ...

    def close_streams(self, ids: Iterable[int]) -> None:
        """Close these streams (their slots are freed)."""
        ...

    def refresh(self, now_ns: int) -> None:
        """Bring the states up to ``now_ns`` (the simulated feed prices the market then; streams: nothing)."""
        ...

    def stream_kind_codes(self, ids: np.ndarray) -> np.ndarray:
        """Per stream id, 0 for an option-chain stream and 1 for a quote stream (``STREAM_KINDS``)."""
        ...

    def stale_chains(self, ids: Iterable[int], instant: float, max_age_s: float) -> list[StreamStatus]:
        """The live chain streams among ``ids`` that were behind at ``instant`` (monotonic seconds): no data for more
        than ``max_age_s`` wall seconds before it although their underlying's spot moved after that data (every
        greek would have changed). Each one's stale span is recorded as an outage from its last data until data
        resumes (:attr:`StreamStatus.stale_since`). The simulated feed is priced at the instant: never behind."""
        ...

    def paused(self) -> AbstractContextManager[None]:
        """While held, no stream update is applied (they wait, nothing is lost): a snapshot cut reads every book as
        of one moment, and its computation does not share the interpreter with the stream readers."""
        ...

    def requests(self) -> dict[str, int]:
        """TradeStation requests made so far, per category (empty for the simulated feed)."""
        ...

    def stop(self) -> None:
        """Close every stream."""
        ...
