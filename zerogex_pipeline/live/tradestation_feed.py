"""The live feed on TradeStation Web API v3 streams (or the local emulator, which runs the same code).

Streams (each in its own thread, each reconnecting on its own; requests per session are counted by the
client's stats and the emulator's):

- one quote stream of every tracked underlying's symbol (``SPY,QQQ,$SPX.X``): spot = ``Last``, its time
  ``TradeTime``;
- one bar stream per underlying (``barsback`` reaches the session's open, so a restart re-reads the day's
  bars): closed bars are captured;
- one option-chain stream per tracked expiration with greeks (``strikeProximity`` <= the cap, an explicit
  ``priceCenter``), holding one of the machine's option-stream slots for the whole session;
- quote streams (<= 100 symbols each) for strikes beyond the chain stream's cap (SPX).

REST only at start-up and on a new day: the expirations of each underlying and the strikes of each
tracked expiration (options categories, 90 per minute). No bar-chart request.

A fatal stream error (DualLogon, reconnects exhausted) does not end the session: the stream is marked down,
retried after a growing pause (5 s to 60 s), and the outage is recorded. Heartbeat-only starvation is judged
here rather than by a fixed silence: an option stream is starved when its connection has not delivered its
initial snapshot within the client's ``stream_starvation_s``, or, for a chain stream, when it sent no data for
that long although its underlying's spot moved since (its greeks would have changed). A quiet market (before
the open, a halted index) or far strikes whose quotes did not move are not starvation. The same rule judges a
chain stream at each snapshot instant, over the engine's much shorter ``chain_max_age_s``
(:meth:`TradeStationFeed.stale_chains`): connected but behind, its expiration is not captured then.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.book import BookUpdate, UnderlyingState
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.feed import LIVENESS_S, OpenedExpiration, StreamRegistry, StreamStatus
from zerogex_pipeline.live.plan import MAX_STRIKE_PROXIMITY, ExpirationPlan, Series
from zerogex_pipeline.sources.tradestation_market import option_series
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.errors import TradeStationError
from zerogex_pipeline.tradestation.stream_slots import StreamSlot
from zerogex_pipeline.tradestation.streams import (
    QuoteBook,
    Stream,
    bar_stream,
    is_heartbeat,
    option_chain_stream,
    option_stream_slots,
    quote_stream,
)
from zerogex_pipeline.tradestation.symbols import parse_option_symbol
from zerogex_pipeline.tradestation.values import to_float, to_timestamp
from zerogex_pipeline.underlyings import Underlying

log = logging.getLogger(__name__)

SPREAD_FIELDS = {"Bid": "bid", "Ask": "ask", "Last": "last", "Mid": "mid", "Volume": "volume",
                 "DailyOpenInterest": "open_interest", "ImpliedVolatility": "iv", "Delta": "delta",
                 "Gamma": "gamma", "Vega": "vega", "Theta": "theta"}
"""``Spread`` (chain stream) field -> book field."""
QUOTE_FIELDS = {"Bid": "bid", "Ask": "ask", "Last": "last", "Volume": "volume", "DailyOpenInterest": "open_interest"}
"""``Quote`` (quote stream) field -> book field; a quote stream has no IV or greeks."""
RETRY_PAUSES_S = (5.0, 10.0, 20.0, 40.0, 60.0)
SPOT_MOVES_KEPT = 4096
"""Spot changes remembered per underlying (about an hour of one a second); older ones only ever matter as "moved"."""


class _Completion:
    """Whether a connection has delivered its initial snapshot (see :class:`TradeStationFeed`)."""

    def __init__(self, expected: set[str] | None) -> None:
        self.expected = expected
        self.seen: set[str] = set()
        self.done = False

    def data(self, key: str) -> None:
        if key in self.seen or (self.expected is not None and self.expected <= self.seen | {key}):
            self.done = True
        self.seen.add(key)

    def heartbeat(self) -> None:
        if self.seen:
            self.done = True


class TradeStationFeed:
    """Live feed over TradeStation streams (see the module docstring).

    Args:
        client: the REST/stream client (its config sets timeouts; ``stream_idle_timeout_s`` should be a
            little above the heartbeat interval so a silent connection is replaced quickly).
        clock: the engine clock (receipt instants are stamped with it).
        bar_minutes: bar interval of the captured bars.
        liveness_s: a live stream was heard from within this many seconds (a little over the heartbeat).
        retry_pauses_s: pauses before reopening a stream that failed for good (DualLogon, reconnects exhausted).
        max_proximity: strikes a chain stream shows at most on each side of its center (beyond: quote streams).
    """

    name = "tradestation"

    def __init__(self, client: TradeStationClient, clock: EngineClock, bar_minutes: int = 1,
                 liveness_s: float = LIVENESS_S, retry_pauses_s: tuple[float, ...] = RETRY_PAUSES_S,
                 max_proximity: int = MAX_STRIKE_PROXIMITY) -> None:
        self.max_proximity = max_proximity
        self.client = client
        self.clock = clock
        self.bar_minutes = bar_minutes
        self.retry_pauses_s = retry_pauses_s
        self.registry = StreamRegistry(liveness_s)
        self._streams: dict[int, Stream] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._slots: dict[int, StreamSlot] = {}
        self._kinds: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._expirations: dict[str, list[dt.date]] = {}
        self._contracts: dict[str, tuple[dt.date, str, str, float]] = {}
        self._spot_moves: dict[str, deque[float]] = {}
        """Per underlying key, when its spot last changed (monotonic seconds, the latest last; bounded)."""
        self._chain_underlying: dict[int, str] = {}
        self._flowing = threading.Event()
        self._flowing.set()
        self._unapplied: dict[int, tuple[UnderlyingState, list[BookUpdate]]] = {}
        """Per option stream, the updates of the network chunk being read: applied together when it ends, so a
        snapshot cut sees a server's batch whole or not at all (its thread alone touches its entry)."""

    # ------------------------------------------------------------------ listings (REST, once a day)
    def listed_expirations(self, u: Underlying, day: dt.date) -> list[dt.date]:
        key = f"{u.key}|{day}"
        if key not in self._expirations:
            self._expirations[key] = [e.date for e in self.client.option_expirations(u.ts_symbol)]
        return [e for e in self._expirations[key] if e >= day]

    def listed_strikes(self, u: Underlying, expiration: dt.date, day: dt.date) -> np.ndarray:
        rows = self.client.option_strikes(u.ts_symbol, expiration)
        return np.array(sorted({row[0] for row in rows if row and row[0] == row[0]}), dtype=np.float64)

    def series(self, u: Underlying, expiration: dt.date, day: dt.date) -> tuple[Series, ...]:
        return tuple(Series(root, settlement) for root, settlement in option_series(u, expiration, day))

    # ------------------------------------------------------------------ streams
    def start(self, states: dict[str, UnderlyingState], underlyings: list[Underlying], day: dt.date) -> dict[str, int]:
        session = market_calendar.session(day)
        by_symbol = {u.ts_symbol.upper(): u for u in underlyings}
        spot = self.registry.register("spot", "quotes " + ",".join(u.ts_symbol for u in underlyings))
        symbols = [u.ts_symbol for u in underlyings]

        book = QuoteBook()

        def on_quote(msg: dict[str, Any], completion: _Completion) -> None:
            u = by_symbol.get(str(msg.get("Symbol", "")).upper())
            if u is None:
                return
            completion.data(u.ts_symbol.upper())
            merged = book.merge(msg)  # later messages carry only what changed: a new TradeTime at the same Last too
            if merged is None:
                return
            msg = merged
            price = to_float(msg.get("Last"))
            if price == price:
                traded = to_timestamp(msg.get("TradeTime"))
                now = self.clock.now().value
                before = states[u.key].get_spot().price
                if before == before and price != before:  # a change, not the first price
                    self._spot_moves.setdefault(u.key, deque(maxlen=SPOT_MOVES_KEPT)).append(time.monotonic())
                states[u.key].set_spot(price, traded.value if traded is not None else now, now)

        self._launch(spot, lambda: quote_stream(self.client, symbols), on_quote,
                     expected={s.upper() for s in symbols})
        minutes = max(1, int((self.clock.now() - session.open).total_seconds() // 60) + 2)
        for u in underlyings:
            status = self.registry.register("bars", f"{u.name} {self.bar_minutes}-minute bars")
            state = states[u.key]

            def on_bar(msg: dict[str, Any], completion: _Completion, state: UnderlyingState = state) -> None:
                end = to_timestamp(msg.get("TimeStamp"))
                if msg.get("IsEndOfHistory"):
                    completion.done = True
                if end is None or str(msg.get("BarStatus", "Closed")) != "Closed":
                    return
                if session.open < end <= session.close:
                    state.add_bar({"ts": end, "open": to_float(msg.get("Open")), "high": to_float(msg.get("High")),
                                   "low": to_float(msg.get("Low")), "close": to_float(msg.get("Close")),
                                   "volume": int(to_float(msg.get("TotalVolume")) or 0)})

            barsback = min(57_600, max(1, minutes // self.bar_minutes + 1))
            self._launch(status, self._bar_stream_factory(u, barsback), on_bar, expected=None)
        return {u.key: spot.id for u in underlyings}

    def open_expiration(self, plan: ExpirationPlan, state: UnderlyingState) -> OpenedExpiration:
        u = plan.underlying
        ids: list[int] = []
        if plan.slot:
            slot = option_stream_slots(self.client).try_acquire()
            if slot is None:
                raise TradeStationError(f"{plan.label}: no option-stream slot free (10 per API key across the "
                                        "machine; another process holds them)")
            status = self.registry.register(
                "chain", f"{plan.label} chain ±{plan.chain_proximity} @ {plan.center:g}")
            self._slots[status.id] = slot
            self._kinds[status.id] = 0
            self._chain_underlying[status.id] = u.key
            expected = plan.chain_symbols()

            def on_spread(msg: dict[str, Any], completion: _Completion, sid: int = status.id) -> None:
                legs = msg.get("Legs") or []
                if len(legs) != 1:
                    return
                symbol = str(legs[0].get("Symbol", ""))
                completion.data(symbol)
                self._update(state, u, symbol, msg, SPREAD_FIELDS, sid)

            self._launch(status, lambda: option_chain_stream(
                self.client, u.ts_symbol, plan.expiration.strftime("%m-%d-%Y"), plan.chain_proximity,
                price_center=plan.center, slot=self._slots[status.id]), on_spread, expected=expected, underlying=u)
            ids.append(status.id)
            for batch in plan.tail_batches():
                tail = self.registry.register("quotes", f"{plan.label} tail quotes ({len(batch)} symbols)")
                self._kinds[tail.id] = 1

                def on_tail(msg: dict[str, Any], completion: _Completion, sid: int = tail.id) -> None:
                    symbol = str(msg.get("Symbol", ""))
                    if not symbol:
                        return
                    completion.data(symbol)
                    if "Error" not in msg:
                        self._update(state, u, symbol, msg, QUOTE_FIELDS, sid)

                self._launch(tail, self._quote_stream_factory(batch), on_tail, expected=set(batch), underlying=u)
                ids.append(tail.id)
        return OpenedExpiration(plan, ids)

    def _bar_stream_factory(self, u: Underlying, barsback: int) -> Callable[[], Stream]:
        return lambda: bar_stream(self.client, u.ts_symbol, "Minute", self.bar_minutes, barsback)

    def _quote_stream_factory(self, symbols: list[str]) -> Callable[[], Stream]:
        return lambda: quote_stream(self.client, symbols)

    def _update(self, state: UnderlyingState, u: Underlying, symbol: str, msg: dict[str, Any],
                fields: dict[str, str], stream_id: int) -> None:
        contract = self._contracts.get(symbol)
        if contract is None:
            try:
                parsed = parse_option_symbol(symbol)
            except ValueError:
                return
            settlement = "AM" if u.listing_style == "index_am_pm" and parsed.root == u.name else "PM"
            contract = self._contracts[symbol] = (parsed.expiration, settlement, parsed.right, parsed.strike)
        try:
            values = {name: float(msg[wire]) for wire, name in fields.items() if wire in msg}
        except (TypeError, ValueError):  # a blank or odd value: the tolerant (slower) conversion
            values = {name: to_float(msg[wire]) for wire, name in fields.items() if wire in msg}
        pending = self._unapplied.setdefault(stream_id, (state, []))[1]
        pending.append((symbol, contract[0], contract[1], contract[2], contract[3], stream_id, values,
                        self.clock.now().value))

    def _apply(self, stream_id: int) -> None:
        """Apply the updates held for ``stream_id`` (the end of a network chunk, or of the connection)."""
        held = self._unapplied.get(stream_id)
        if held is not None and held[1]:
            state, updates = held
            self._unapplied[stream_id] = (state, [])
            state.book.update_batch(updates)

    def _launch(self, status: StreamStatus, make: Callable[[], Stream],
                handle: Callable[[dict[str, Any], _Completion], None], expected: set[str] | None,
                underlying: Underlying | None = None) -> None:
        """Run one stream in its own thread; ``underlying``: an option stream of it (starvation judged here)."""
        thread = threading.Thread(target=self._pump, args=(status, make, handle, expected, underlying), daemon=True,
                                  name=f"zerogex-stream-{status.id}")
        self._threads[status.id] = thread
        thread.start()

    def _starved(self, status: StreamStatus, u: Underlying, now: float) -> bool:
        """No data for ``stream_starvation_s``: ever on this connection (its snapshot never came), or since spot
        moved after its last data."""
        if now - max(status.last_data, status.connected_at) <= self.client.config.stream_starvation_s:
            return False
        if not status.complete:
            return True
        # a chain stream's greeks change with every spot move; a quote stream's far strikes may rightly not
        moves = self._spot_moves.get(u.key)
        return status.kind == "chain" and moves is not None and len(moves) > 0 and moves[-1] > status.last_data

    def stale_chains(self, ids: Iterable[int], instant: float, max_age_s: float) -> list[StreamStatus]:
        stale = []
        for i in ids:
            status = self.registry.get(i)
            key = self._chain_underlying.get(i)
            if key is None or not status.is_live(instant, self.registry.liveness_s):
                continue
            last = status.last_data
            if instant - last <= max_age_s:
                continue
            moves = tuple(self._spot_moves.get(key, ()))  # copied at once: its reader thread appends
            at = bisect.bisect_right(moves, last)
            if at < len(moves) and moves[at] <= instant:
                status.behind(instant)
                stale.append(status)
        return stale

    def _pump(self, status: StreamStatus, make: Callable[[], Stream],
              handle: Callable[[dict[str, Any], _Completion], None], expected: set[str] | None,
              underlying: Underlying | None) -> None:
        attempt = 0
        while not self._stop.is_set() and not status.closed:
            def dropped(reason: str) -> None:
                if reason == "GoAway":  # the connection was alive until the server said goodbye
                    status.heard(time.monotonic())
                self._down(status, reason, starved="starved" in reason)

            stream = make()
            stream.yield_heartbeats = True
            stream.on_disconnect = dropped
            if underlying is not None:
                stream.starvation_s = math.inf
            with self._lock:
                self._streams[status.id] = stream
            if status.closed or self._stop.is_set():
                stream.close()
                return
            connection = 0
            completion = _Completion(expected)
            unapplied_since: float | None = None
            try:
                for msg in stream:
                    self._flowing.wait()  # a cut in progress (see paused): the message waits, the socket buffers
                    now = time.monotonic()
                    if stream.connections != connection:
                        connection = stream.connections
                        completion = _Completion(expected)
                        status.connected, status.complete = True, False
                        status.connections += 1
                        status.connected_at = now
                        attempt = 0
                    if is_heartbeat(msg):
                        completion.heartbeat()
                        if underlying is not None and self._starved(status, underlying, now):
                            log.warning("stream %s: no data for %.1f s while %s moved: starved; reconnecting",
                                        status.label, now - status.last_data, underlying.name)
                            if status.down_since is None:  # nothing came since its last data (see _down)
                                status.down_since = status.last_data
                            stream.reconnect()
                    elif msg.get("StreamStatus") == "EndSnapshot":
                        completion.done = True
                    else:
                        handle(msg, completion)
                        unapplied_since = now if unapplied_since is None else unapplied_since
                    if unapplied_since is not None and (not stream.more_in_chunk
                                                        or (completion.done and not status.complete)):
                        self._apply(status.id)
                        status.data_applied(unapplied_since)  # data counts once the book holds it (a cut reads both)
                        unapplied_since = None
                    status.heard(now)
                    if completion.done and not status.complete:
                        status.complete = True
                        self._up(status)
            except TradeStationError as exc:
                status.failures += 1
                status.last_error = str(exc)
                log.warning("stream %s: %s", status.label, exc)
            except Exception as exc:  # a bug in a handler must not end the session's capture silently
                status.failures += 1
                status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("stream %s failed", status.label)
            self._apply(status.id)
            self._down(status, status.last_error or "ended")
            if status.closed or self._stop.is_set():
                return
            pause = self.retry_pauses_s[min(attempt, len(self.retry_pauses_s) - 1)]
            attempt += 1
            log.warning("stream %s is down; reopening in %.0f s", status.label, pause)
            self._stop.wait(pause)

    def _down(self, status: StreamStatus, reason: str, starved: bool = False) -> None:
        if status.connected:
            log.info("stream %s: connection ended (%s)", status.label, reason)
        status.went_down(time.monotonic(), starved)

    def _up(self, status: StreamStatus) -> None:
        if status.down_since is not None and status.connections > 1:
            status.outages.append((status.down_since, time.monotonic()))
            log.info("stream %s is back after %.1f s", status.label, time.monotonic() - status.down_since)
        status.down_since = None

    def close_streams(self, ids: Iterable[int]) -> None:
        for i in list(ids):
            status = self.registry.get(i)
            status.closed = True
            status.connected = False
            if status.stale_since is not None:  # closed while behind: its stale span ends here
                status.outages.append((status.stale_since, time.monotonic()))
                status.stale_since = None
            with self._lock:
                stream = self._streams.pop(i, None)
            if stream is not None:
                stream.close()
            slot = self._slots.pop(i, None)
            if slot is not None:
                # the server counts the stream until it has seen the close: free the slot a moment later
                timer = threading.Timer(self.client.config.option_slot_grace_s, slot.release)
                timer.daemon = True
                timer.start()

    def refresh(self, now_ns: int) -> None:
        return None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stream readers hold each message while this is held (a cut lasts tens to hundreds of milliseconds; the
        kernel's socket buffers keep what arrives meanwhile, and the readers catch up after)."""
        self._flowing.clear()
        try:
            yield
        finally:
            self._flowing.set()

    def stream_kind_codes(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self._kinds.get(int(i), 0) for i in ids], dtype=np.int64)

    def requests(self) -> dict[str, int]:
        return dict(self.client.stats.requests)

    def stop(self) -> None:
        self._stop.set()
        self.close_streams([s.id for s in self.registry.all() if not s.closed])
        for thread in list(self._threads.values()):
            thread.join(timeout=5)

