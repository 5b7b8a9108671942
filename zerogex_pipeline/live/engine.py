"""``zerogex stream``: capture each session from live streams and publish live levels every few seconds.

A session, in the engine's clock (:mod:`zerogex_pipeline.live.clock`):

1. ``pre_open`` before the open, open the feed's spot and bar streams, plan the strike window of each tracked
   expiration (the ``expirations`` nearest listed that day; :mod:`zerogex_pipeline.live.plan`) and open
   its streams. What does not fit the option-stream budget is named in a warning and in the Dagster events.
2. Every ``interval`` wall seconds: the live levels of every underlying from the live state, written to
   ``live_levels``, logged, checked for alerts. Streams are re-centred when spot has moved so far that the
   window is no longer covered (new streams open before the old ones close when a slot is free).
3. At each snapshot instant ``T`` (every ``snapshot_minutes``, open and close included), after ``settle_s``
   for in-flight messages: the levels at ``T`` are committed first (their latency is measured from ``T``),
   then the snapshot of every expiration whose streams were live at ``T`` is captured once each of those
   streams has been heard from after ``T`` on the same connection (proof it was alive at ``T``); an
   expiration whose stream was down, or dies before confirming, is not captured at ``T`` (a gap the next
   chain materialization fills from bars), and the reason is recorded.
4. ``post_close`` after the close, close every stream and wait for the next session (weekends, holidays).

Every write is append-only and idempotent (:mod:`zerogex_pipeline.storage.capture_store`), so a crash loses
nothing committed and a restart re-captures nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.book import UnderlyingState
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.feed import Feed, OpenedExpiration, StreamStatus
from zerogex_pipeline.live.plan import ExpirationPlan, allot_slots, not_streamed_message, plan_expiration
from zerogex_pipeline.live.publish import DagsterReporter, LiveAlerts, capture_events, level_line, plan_events
from zerogex_pipeline.live.snapshot import (
    SnapshotArrays,
    capture_frame,
    levels_row,
    snapshot_arrays,
    window_mask,
)
from zerogex_pipeline.schemas import CAPTURED_BARS
from zerogex_pipeline.storage.capture_store import CaptureBatch, CaptureStore
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import Underlying

log = logging.getLogger("zerogex.live")

MAX_CHAIN_STREAMS = 10


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs (the ``zerogex stream`` options and the settings they default to).

    Times: ``interval_s``, ``settle_s``, ``catchup_s``, ``spot_wait_s`` are wall-clock seconds; ``pre_open_minutes`` and
    ``post_close_minutes`` market time. ``distance_pct`` and ``margin_pct`` are percent of spot.
    """

    underlyings: tuple[Underlying, ...]
    expirations: int = 3
    distance_pct: float = 10.0
    margin_pct: float = 1.5
    snapshot_minutes: int = 5
    bar_minutes: int = 1
    interval_s: float = 5.0
    settle_s: float = 0.25
    spot_wait_s: float = 30.0
    pre_open_minutes: float = 5.0
    post_close_minutes: float = 2.0
    max_iterations: int | None = None
    max_chain_streams: int = MAX_CHAIN_STREAMS
    spot_max_age_s: float = 15.0
    """A snapshot needs a spot whose own time is at most this many market seconds before the instant."""
    chain_max_age_s: float = 15.0
    """A snapshot needs each chain stream to have sent data within this many market seconds before the instant,
    unless spot has not moved since (a chain stream connected but behind holds quotes of an older spot)."""
    catchup_s: float = 1.5
    """Wall seconds past ``settle_s`` the open's cut waits for the session's first spot and chain quotes (before
    them the state holds the last session's close)."""
    rate: float = 0.04
    announce_alerts: bool = True


@dataclass
class PendingCapture:
    """A cut taken at a snapshot instant, waiting for its streams to prove they were alive then."""

    instant: pd.Timestamp
    crossed_wall: float
    cut_wall: float
    frames: dict[tuple[str, dt.date], pd.DataFrame]
    required: dict[tuple[str, dt.date], dict[int, int]]
    levels: dict[str, dict[str, Any]]
    missing: dict[tuple[str, dt.date], str] = field(default_factory=dict)


@dataclass
class SessionStats:
    """What one session did (for the log, the Dagster events and the benchmarks)."""

    day: dt.date
    levels_rows: int = 0
    snapshot_latency_s: list[float] = field(default_factory=list)
    capture_lag_s: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    captured: dict[str, set[tuple[pd.Timestamp, dt.date]]] = field(default_factory=dict)
    missed: dict[str, dict[tuple[pd.Timestamp, dt.date], str]] = field(default_factory=dict)
    recenters: int = 0
    not_streamed: str | None = None


class StreamEngine:
    """The session loop (see the module docstring).

    Args:
        feed: where the live data comes from.
        clock: market time (wall clock, or a replay).
        store: where captures and live levels go.
        options: cadences, window, budget.
        reporter: Dagster events (``None``: none are sent).
        alerts: live alert detection (``None``: none).
    """

    def __init__(self, feed: Feed, clock: EngineClock, store: CaptureStore, options: EngineOptions,
                 reporter: DagsterReporter | None = None, alerts: LiveAlerts | None = None) -> None:
        self.feed = feed
        self.clock = clock
        self.store = store
        self.options = options
        self.reporter = reporter
        self.alerts = alerts
        self.iterations = 0
        self.sessions: list[SessionStats] = []
        self._wake = threading.Event()
        self._listed: dict[tuple[str, dt.date], np.ndarray] = {}

    # ------------------------------------------------------------------ top level
    def stop(self) -> None:
        """Ask the loop to end (from a signal handler or another thread)."""
        self.clock.stop()
        self._wake.set()

    def _done(self) -> bool:
        cap = self.options.max_iterations
        return self.clock.stopped or (cap is not None and self.iterations >= cap)

    def run(self) -> list[SessionStats]:
        """Capture sessions until stopped (or ``max_iterations`` computations); returns each session's stats."""
        if self.reporter is not None:
            self.reporter.start()
        try:
            while not self._done():
                session = self._session_for(self.clock.now())
                start_at = session.open - pd.Timedelta(minutes=self.options.pre_open_minutes)
                if self.clock.now() < start_at:
                    close = session.close.tz_convert(market_calendar.NEW_YORK)
                    log.info("waiting for the %s session (streams open at %s ET, regular session %s-%s ET)",
                             session.date, f"{start_at.tz_convert(market_calendar.NEW_YORK):%H:%M}",
                             f"{session.open.tz_convert(market_calendar.NEW_YORK):%H:%M}", f"{close:%H:%M}")
                    if not self.clock.sleep_until(start_at):
                        break
                self.sessions.append(self.run_session(session))
        finally:
            if self.reporter is not None:
                self.reporter.close()
            self.store.close()
        return self.sessions

    def _session_for(self, now: pd.Timestamp) -> market_calendar.TradingSession:
        """The session in progress (until ``post_close`` after its close) or the next one."""
        day = now.tz_convert(market_calendar.NEW_YORK).date()
        if market_calendar.is_session(day):
            s = market_calendar.session(day)
            if now <= s.close + pd.Timedelta(minutes=self.options.post_close_minutes):
                return s
        return market_calendar.session(market_calendar.next_session_on_or_after(day + dt.timedelta(days=1)))

    # ------------------------------------------------------------------ one session
    def run_session(self, session: market_calendar.TradingSession) -> SessionStats:
        """Stream, capture and publish one session; returns its stats."""
        opt = self.options
        day = session.date
        stats = SessionStats(day)
        states = {u.key: UnderlyingState() for u in opt.underlyings}
        spot_ids = self.feed.start(states, list(opt.underlyings), day)
        opened: dict[tuple[str, dt.date], OpenedExpiration] = {}
        try:
            if not self._wait_for_spot(states):
                return stats
            plans = self._plan(day, states)
            stats.not_streamed = not_streamed_message(plans, opt.max_chain_streams)
            if stats.not_streamed:
                log.warning(stats.not_streamed)
            if self.reporter is not None:
                self.reporter.report(plan_events(day, plans, stats.not_streamed, self.feed.name))
            for plan in plans:
                log.info("streaming %s: chain stream %s strikes each side of %g%s", plan.label, plan.chain_proximity,
                         plan.center, f", {len(plan.tail_strikes)} tail strikes on quote streams"
                         if plan.tail_strikes else "") if plan.slot else None
                if plan.slot:
                    opened[(plan.underlying.key, plan.expiration)] = self.feed.open_expiration(
                        plan, states[plan.underlying.key])
            self._loop(session, states, spot_ids, opened, stats)
        finally:
            self.feed.stop()
        self._log_session(stats)
        return stats

    def _wait_for_spot(self, states: dict[str, UnderlyingState]) -> bool:
        deadline = time.monotonic() + self.options.spot_wait_s
        while time.monotonic() < deadline and not self.clock.stopped:
            self.feed.refresh(self.clock.now().value)
            if all(s.get_spot().price > 0 for s in states.values()):
                return True
            self._wake.wait(0.05)
        missing = [k for k, s in states.items() if not s.get_spot().price > 0]
        if missing and not self.clock.stopped:
            log.error("no spot for %s within %.0f s; is the feed reachable? the session is not captured",
                      ", ".join(missing), self.options.spot_wait_s)
        return not missing

    def _plan(self, day: dt.date, states: dict[str, UnderlyingState]) -> list[ExpirationPlan]:
        per_underlying = []
        for u in self.options.underlyings:
            spot = states[u.key].get_spot().price
            exps = self.feed.listed_expirations(u, day)[: self.options.expirations]
            per_underlying.append([self._plan_one(u, e, day, spot) for e in exps])
        return allot_slots(per_underlying, self.options.max_chain_streams)

    def _plan_one(self, u: Underlying, expiration: dt.date, day: dt.date, spot: float) -> ExpirationPlan:
        key = (u.key, expiration)
        if key not in self._listed:
            self._listed[key] = self.feed.listed_strikes(u, expiration, day)
        return plan_expiration(u, expiration, self.feed.series(u, expiration, day), self._listed[key], spot,
                               self.options.distance_pct, self.options.margin_pct,
                               getattr(self.feed, "max_proximity", 200))

    def _loop(self, session: market_calendar.TradingSession, states: dict[str, UnderlyingState],
              spot_ids: dict[str, int], opened: dict[tuple[str, dt.date], OpenedExpiration],
              stats: SessionStats) -> None:
        opt = self.options
        instants = session.snapshot_times(opt.snapshot_minutes)
        done = self._already_captured(session, stats)
        now = self.clock.now()
        next_i = int(instants.searchsorted(now, side="left"))
        skipped = [t for t in instants[:next_i] if t not in done]
        if skipped:
            log.warning("started after %d snapshot instant(s) of %s: those are not captured live (the chain "
                        "materialization fills them from bars)", len(skipped), session.date)
        pending: list[PendingCapture] = []
        next_interval = time.monotonic()
        end = session.close + pd.Timedelta(minutes=opt.post_close_minutes)
        while True:
            now = self.clock.now()
            wall = time.monotonic()
            finishing = self._done()
            due = not finishing and next_i < len(instants) and now >= instants[next_i]
            if finishing:
                self.feed.refresh(now.value)
            elif due and wall >= (crossed := self._crossed_wall(instants[next_i])) + opt.settle_s:
                instant = instants[next_i]
                self.feed.refresh(instant.value)  # a simulated market is read at the instant itself
                catching_up = (instant not in done and wall < crossed + opt.settle_s + opt.catchup_s
                               and not self._caught_up(session, instant, crossed, states, opened))
                if catching_up:
                    self._wake.wait(0.02)
                    continue
                next_i += 1
                if instant in done:
                    continue
                self._recenter(session, states, opened, stats)
                self.feed.refresh(instant.value)
                pending.append(self._cut(session, instant, states, spot_ids, opened, stats))
                self.iterations += 1
                next_interval = time.monotonic() + opt.interval_s
            elif wall >= next_interval and not due and not finishing:
                self.feed.refresh(now.value)
                self._interval(session, now, states, spot_ids, opened, stats)
                self._recenter(session, states, opened, stats)
                self.iterations += 1
                next_interval = wall + opt.interval_s
            if pending:
                self.feed.refresh(self.clock.now().value)
            pending = self._confirm(session, pending, states, stats)
            if finishing and not pending:  # stopped (a signal, max_iterations): the pending captures are settled
                break
            if now > end and next_i >= len(instants) and not pending:
                break
            if finishing:
                time.sleep(0.02)
            else:
                self._sleep(instants[next_i] if next_i < len(instants) else None, next_interval, bool(pending))
        self._flush_bars(session, states)

    def _caught_up(self, session: market_calendar.TradingSession, instant: pd.Timestamp, crossed: float,
                   states: dict[str, UnderlyingState], opened: dict[tuple[str, dt.date], OpenedExpiration]) -> bool:
        """Whether the state has reached the open instant: every spot's first trade of the session and every live
        chain stream's first quotes in. Any other instant is cut as it is (a lagging feed is a gap, not a wait)."""
        if instant != session.open:
            return True
        limit = instant.value - int(self.options.spot_max_age_s * 1e9)
        if any(states[u.key].get_spot().trade_ns < limit for u in self.options.underlyings):
            return False
        return not self._quiet_since_open(session, instant, crossed, opened.values())

    def _quiet_since_open(self, session: market_calendar.TradingSession, instant: pd.Timestamp, crossed: float,
                          expirations: Iterable[OpenedExpiration]) -> list[StreamStatus]:
        """At the open instant, the live chain streams with no data since it: they still hold the last session's
        quotes (every chain quote changes at the open)."""
        if instant != session.open:
            return []
        now = time.monotonic()
        statuses = [self.feed.registry.get(sid) for o in expirations for sid in o.stream_ids]
        return [st for st in statuses if st.kind == "chain" and st.is_live(now, self.feed.registry.liveness_s)
                and st.last_data < crossed]

    def _crossed_wall(self, instant: pd.Timestamp) -> float:
        """The monotonic time at which the clock reached ``instant`` (estimated from now)."""
        return time.monotonic() - self.clock.wall_seconds((self.clock.now() - instant).total_seconds())

    def _sleep(self, next_instant: pd.Timestamp | None, next_interval: float, pending: bool) -> None:
        wall = time.monotonic()
        waits = [next_interval - wall]
        if next_instant is not None:
            waits.append(self.clock.wall_seconds((next_instant - self.clock.now()).total_seconds())
                         + self.options.settle_s)
        if pending:
            waits.append(0.05)
        delay = max(0.0, min(waits))
        if delay > 0:
            self._wake.wait(min(delay, 1.0))

    def _already_captured(self, session: market_calendar.TradingSession, stats: SessionStats) -> set[pd.Timestamp]:
        """Instants of the day already captured for every tracked underlying (a restart resumes after them)."""
        per_u: list[set[pd.Timestamp]] = []
        for u in self.options.underlyings:
            try:
                got = self.store.captured_instants(u, session.date)
            except StorageError as exc:
                log.warning("could not read what was already captured for %s (%s)", u.name, exc)
                return set()
            stats.captured[u.key] = {(pd.Timestamp(t), pd.Timestamp(e).date())
                                     for t, e in zip(got["snapshot_ts"], got["expiration"], strict=True)}
            per_u.append({pd.Timestamp(t) for t in got["snapshot_ts"]})
        return set.intersection(*per_u) if per_u else set()

    # ------------------------------------------------------------------ computations
    def _arrays(self, u: Underlying, state: UnderlyingState, instant: pd.Timestamp,
                expirations: set[dt.date]) -> SnapshotArrays | None:
        spot = state.get_spot()
        if not spot.price > 0:
            return None
        view = state.book.view()
        if len(view) == 0:
            return None
        mask = window_mask(view, spot.price, self.options.distance_pct, expirations)
        if not mask.any():
            return None
        return snapshot_arrays(view, mask, instant, spot, self.feed.stream_kind_codes(view.stream))

    def _levels(self, session: market_calendar.TradingSession, u: Underlying, snap: SnapshotArrays,
                missing: str | None, started_ns: int) -> dict[str, Any]:
        row = levels_row(u, session.date, snap, self.options.rate, u.dividend_yield, self.feed.name, missing,
                         started_ns)
        if self.alerts is not None and self.options.announce_alerts:
            try:
                self.alerts.observe(u, session, row)
            except Exception as exc:  # an alert failure must not stop the levels
                log.warning("alert detection for %s failed: %s", u.name, exc)
        return row

    def _missing(self, u: Underlying, opened: dict[tuple[str, dt.date], OpenedExpiration], spot_ids: dict[str, int],
                 tracked: list[dt.date]) -> str | None:
        notes = []
        down = self.feed.registry.not_live([spot_ids[u.key]])
        if down:
            notes.append(f"spot stream not live ({down[0].label})")
        for e in tracked:
            o = opened.get((u.key, e))
            if o is None:
                notes.append(f"{e} not streamed")
                continue
            down = self.feed.registry.not_live(o.stream_ids)
            if down:
                notes.append(f"{e}: {len(down)} stream(s) not live ({down[0].label})")
        return "; ".join(notes) or None

    def _tracked(self, u: Underlying, opened: dict[tuple[str, dt.date], OpenedExpiration]) -> list[dt.date]:
        return sorted(e for (k, e) in opened if k == u.key)

    def _interval(self, session: market_calendar.TradingSession, now: pd.Timestamp,
                  states: dict[str, UnderlyingState], spot_ids: dict[str, int],
                  opened: dict[tuple[str, dt.date], OpenedExpiration], stats: SessionStats) -> None:
        instant = now.floor("ms")
        rows: dict[str, pd.DataFrame | list[dict[str, Any]]] = {}
        for u in self.options.underlyings:
            started = time.perf_counter_ns()
            tracked = self._tracked(u, opened)
            snap = self._arrays(u, states[u.key], instant, set(tracked))
            if snap is None:
                continue
            row = self._levels(session, u, snap, self._missing(u, opened, spot_ids, tracked), started)
            stats.compute_ms.append(float(row["compute_ms"]))  # type: ignore[arg-type]
            rows[u.key] = [row]
            log.info(level_line(row, 0.0))
        self._write(CaptureBatch(levels=rows, bars=self._bars(session, states)), stats, states)

    def _cut(self, session: market_calendar.TradingSession, instant: pd.Timestamp,
             states: dict[str, UnderlyingState], spot_ids: dict[str, int],
             opened: dict[tuple[str, dt.date], OpenedExpiration], stats: SessionStats) -> PendingCapture:
        crossed = self._crossed_wall(instant)
        cut_wall = time.monotonic()
        max_chain_age = self.clock.wall_seconds(self.options.chain_max_age_s)
        pending = PendingCapture(instant, crossed, cut_wall, {}, {}, {})
        level_rows: dict[str, pd.DataFrame | list[dict[str, Any]]] = {}
        taken: dict[tuple[str, dt.date], tuple[Underlying, SnapshotArrays]] = {}
        with self.feed.paused():  # every book as of this moment; the readers wait and catch up after
            for u in self.options.underlyings:
                started = time.perf_counter_ns()
                tracked = self._tracked(u, opened)
                snap = self._arrays(u, states[u.key], instant, set(tracked))
                spot_status = self.feed.registry.get(spot_ids[u.key])
                spot_age = (instant - pd.Timestamp(states[u.key].get_spot().trade_ns, tz="UTC")).total_seconds()
                for e in tracked:
                    key = (u.key, e)
                    o = opened[key]
                    down = self.feed.registry.not_live_at([spot_ids[u.key], *o.stream_ids], crossed)
                    quiet = self._quiet_since_open(session, instant, crossed, [o])
                    behind = [] if down or quiet else self.feed.stale_chains(o.stream_ids, crossed, max_chain_age)
                    why = self._not_capturable(snap, down, quiet, behind, crossed, spot_age)
                    if why is not None:
                        pending.missing[key] = why
                        continue
                    assert snap is not None  # refused above without one
                    listed = self._listed.get(key)
                    uncovered = [] if listed is None else o.plan.uncovered(listed, snap.spot.price,
                                                                           self.options.distance_pct)
                    if uncovered:
                        pending.missing[key] = (f"window not covered at spot {snap.spot.price:.2f}: strikes "
                                                f"{min(uncovered):g}..{max(uncovered):g} not streamed yet (re-centring)")
                        continue
                    rows = np.flatnonzero(snap.expiration == np.datetime64(e, "D"))
                    if rows.size == 0:
                        pending.missing[key] = "no contract of the expiration in the window"
                        continue
                    taken[key] = (u, _take(snap, rows))
                    required = {spot_status.id: spot_status.connections}
                    for sid in o.stream_ids:
                        required[sid] = self.feed.registry.get(sid).connections
                    pending.required[key] = required
                if snap is None:
                    continue
                row = self._levels(session, u, snap, self._missing(u, opened, spot_ids, tracked), started)
                pending.levels[u.key] = row
                stats.compute_ms.append(float(row["compute_ms"]))  # type: ignore[arg-type]
                level_rows[u.key] = [row]
            self._write(CaptureBatch(levels=level_rows, bars=self._bars(session, states)), stats, states)
        latency = time.monotonic() - crossed
        stats.snapshot_latency_s.append(latency)
        for row in pending.levels.values():
            log.info(level_line(row, latency))
        for key, (u, part) in taken.items():  # the captured rows: after the levels, off their latency
            pending.frames[key] = capture_frame(u, session.date, part, self.feed.name)
        return pending

    def _not_capturable(self, snap: SnapshotArrays | None, down: list[StreamStatus], quiet: list[StreamStatus],
                        behind: list[StreamStatus], crossed: float, spot_age: float) -> str | None:
        """Why an expiration cannot be captured at an instant (``None``: it can), the first reason that applies."""
        if down:
            return f"stream not live at the instant: {down[0].label}"
        if snap is None:
            return "no live state"
        if quiet:
            return f"no quote since the open yet on {quiet[0].label}"
        if behind:
            age = (crossed - behind[0].last_data) * self.clock.speed
            return f"stream behind at the instant: {behind[0].label} sent no data for {age:.0f} s of market while spot moved"
        if spot_age > self.options.spot_max_age_s:
            return f"spot stale: its last trade was {spot_age:.0f} s before the instant"
        return None

    def _confirm(self, session: market_calendar.TradingSession, pending: list[PendingCapture],
                 states: dict[str, UnderlyingState], stats: SessionStats) -> list[PendingCapture]:
        """Commit the captures whose streams have proved alive after their instant; keep the others waiting."""
        if not pending:
            return pending
        waiting = []
        registry = self.feed.registry
        for p in pending:
            verdicts: dict[tuple[str, dt.date], bool | None] = {}
            for key, required in p.required.items():
                states_ = [registry.get(sid).alive_after(conn, p.crossed_wall)
                           for sid, conn in required.items()]
                verdicts[key] = False if False in states_ else (None if None in states_ else True)
            expired = time.monotonic() - p.cut_wall > registry.liveness_s
            if any(v is None for v in verdicts.values()) and not expired:
                waiting.append(p)
                continue
            quotes: dict[str, list[pd.DataFrame]] = {}
            for key, verdict in verdicts.items():
                if verdict:
                    quotes.setdefault(key[0], []).append(p.frames[key])
                else:
                    p.missing[key] = "a stream covering it ended or fell silent before confirming it was live"
            batch = CaptureBatch(quotes={k: pd.concat(v, ignore_index=True) for k, v in quotes.items()},
                                 bars=self._bars(session, states))
            self._write(batch, stats, states)
            for key in verdicts:
                if verdicts[key]:
                    stats.captured.setdefault(key[0], set()).add((p.instant, key[1]))
            for key, why in p.missing.items():
                stats.missed.setdefault(key[0], {})[(p.instant, key[1])] = why
                log.warning("snapshot %s of %s %s not captured: %s",
                            f"{p.instant.tz_convert(market_calendar.NEW_YORK):%H:%M}", key[0].upper(), key[1], why)
            lag = time.monotonic() - p.crossed_wall
            stats.capture_lag_s.append(lag)
            self._report(session, p, states, stats, lag)
        return waiting

    def _recenter(self, session: market_calendar.TradingSession, states: dict[str, UnderlyingState],
                  opened: dict[tuple[str, dt.date], OpenedExpiration], stats: SessionStats) -> None:
        """Re-plan the expirations whose streams no longer cover the window around spot."""
        for key, o in list(opened.items()):
            u = o.plan.underlying
            spot = states[u.key].get_spot().price
            listed = self._listed.get(key)
            if listed is None or not spot > 0 or not o.plan.uncovered(listed, spot, self.options.distance_pct):
                continue
            plan = self._plan_one(u, o.plan.expiration, session.date, spot)
            log.info("re-centring %s: spot %.2f left the streamed window; new center %g", o.plan.label, spot,
                     plan.center)
            try:
                new = self.feed.open_expiration(plan, states[u.key])
            except Exception as exc:  # no spare slot: break before make
                log.info("re-centring %s: %s; closing the old streams first", o.plan.label, exc)
                self.feed.close_streams(o.stream_ids)
                new = self.feed.open_expiration(plan, states[u.key])
            else:
                self.feed.close_streams(o.stream_ids)
            opened[key] = new
            stats.recenters += 1

    # ------------------------------------------------------------------ output
    def _bars(self, session: market_calendar.TradingSession, states: dict[str, UnderlyingState]
              ) -> dict[str, pd.DataFrame]:
        out = {}
        for u in self.options.underlyings:
            bars = states[u.key].take_bars()
            if bars:
                frame = pd.DataFrame(bars).drop_duplicates("ts", keep="last")
                frame["underlying"] = u.name
                frame["session_date"] = pd.Timestamp(session.date)
                frame["source"] = self.feed.name
                out[u.key] = CAPTURED_BARS.conform(frame)
        return out

    def _flush_bars(self, session: market_calendar.TradingSession, states: dict[str, UnderlyingState]) -> None:
        bars = self._bars(session, states)
        if bars:
            self._write(CaptureBatch(bars=bars), None, states)

    def _write(self, batch: CaptureBatch, stats: SessionStats | None,
               states: dict[str, UnderlyingState] | None = None) -> None:
        """Append ``batch``; on a store failure its bars go back in the queue (the next write retries them)."""
        try:
            inserted = self.store.write(batch)
        except StorageError as exc:
            log.error("capture store write failed (%s); queued bars are retried by the next write", exc)
            if states is not None:
                for key, frame in batch.bars.items():
                    for bar in frame[["ts", "open", "high", "low", "close", "volume"]].to_dict("records"):
                        states[key].add_bar(bar)
            return
        if stats is not None:
            stats.levels_rows += inserted.get("live_levels", 0)

    def _report(self, session: market_calendar.TradingSession, p: PendingCapture, states: dict[str, UnderlyingState],
                stats: SessionStats, lag: float) -> None:
        if self.reporter is None:
            return
        elapsed = session.snapshot_times(self.options.snapshot_minutes)
        elapsed = elapsed[elapsed <= p.instant]
        events = []
        for u in self.options.underlyings:
            tracked = sorted({e for (k, e) in p.required if k == u.key} | {e for (k, e) in p.missing if k == u.key})
            captured = stats.captured.get(u.key, set())
            expected = len(elapsed) * max(len(tracked), 1)
            got = sum(1 for (t, _) in captured if t <= p.instant)
            missing = "; ".join(f"{e}: {why}" for (k, e), why in p.missing.items() if k == u.key)
            info: dict[str, Any] = {
                "contracts": int(sum(len(f) for (k, _), f in p.frames.items() if k == u.key
                                     and (p.instant, _) in captured)),
                "expirations": json.dumps([str(e) for e in tracked]),
                "missing": missing or "",
                "capture_coverage_pct": round(100.0 * got / expected, 2) if expected else 0.0,
                "lag_seconds": round(lag, 3),
                "streams_live": sum(1 for s in self.feed.registry.all() if not s.closed and s.is_live(
                    time.monotonic(), self.feed.registry.liveness_s)),
                "streams_open": sum(1 for s in self.feed.registry.all() if not s.closed),
                "requests": json.dumps(self.feed.requests(), sort_keys=True),
                "not_streamed": stats.not_streamed or "",
                "feed": self.feed.name,
                "pid": os.getpid(),
            }
            events += capture_events(u, session.date, p.instant, p.levels.get(u.key), info)
        self.reporter.report(events)

    def _log_session(self, stats: SessionStats) -> None:
        lat = np.array(stats.snapshot_latency_s)
        captured = sum(len(v) for v in stats.captured.values())
        missed = sum(len(v) for v in stats.missed.values())
        log.info("session %s done: %d live-levels rows, %d (instant, expiration) snapshots captured, %d missed, "
                 "%d re-centrings; snapshot-to-levels latency p50 %.3f s p95 %.3f s; requests %s", stats.day,
                 stats.levels_rows, captured, missed, stats.recenters,
                 float(np.percentile(lat, 50)) if lat.size else float("nan"),
                 float(np.percentile(lat, 95)) if lat.size else float("nan"), self.feed.requests())


def _take(snap: SnapshotArrays, rows: np.ndarray) -> SnapshotArrays:
    """The rows ``rows`` of a snapshot."""
    return SnapshotArrays(
        instant=snap.instant, spot=snap.spot, symbol=snap.symbol[rows], expiration=snap.expiration[rows],
        settlement=snap.settlement[rows], is_call=snap.is_call[rows], strike=snap.strike[rows], bid=snap.bid[rows],
        ask=snap.ask[rows], last=snap.last[rows], mid=snap.mid[rows], volume=snap.volume[rows],
        open_interest=snap.open_interest[rows], iv=snap.iv[rows], greeks={k: v[rows] for k, v in snap.greeks.items()},
        quote_ts=snap.quote_ts[rows], stream_kind=snap.stream_kind[rows],
    )

