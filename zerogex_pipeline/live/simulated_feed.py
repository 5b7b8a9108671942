"""The live feed of the embedded default: the simulated market, read at the engine's clock.

No server and no network: at each :meth:`SimulatedFeed.refresh` the market is priced at the path step in
force (:mod:`zerogex_pipeline.sources.simulated.instant`, the same market the emulator streams) straight into
the live state. Its "streams" never fail; fault handling is exercised through the emulator, which runs the
real TradeStation code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.book import QUOTE_FIELDS, UnderlyingState
from zerogex_pipeline.live.feed import OpenedExpiration, StreamRegistry, StreamStatus
from zerogex_pipeline.live.plan import ExpirationPlan, Series
from zerogex_pipeline.sources.simulated import instant, listing, price_path
from zerogex_pipeline.underlyings import Underlying

SIMULATED_MAX_PROXIMITY = 10_000
"""The simulated market caps no window: one "chain stream" per expiration covers it."""


class SimulatedFeed:
    """The simulated market as a live feed (see the module docstring).

    Args:
        bar_minutes: bar interval of the captured bars.
    """

    name = "simulated"
    max_proximity = SIMULATED_MAX_PROXIMITY

    def __init__(self, bar_minutes: int = 1) -> None:
        self.registry = StreamRegistry()
        self.bar_minutes = bar_minutes
        self._states: dict[str, UnderlyingState] = {}
        self._underlyings: list[Underlying] = []
        self._spot_ids: dict[str, int] = {}
        self._opened: dict[int, ExpirationPlan] = {}
        self._session: market_calendar.TradingSession | None = None
        self._bars_sent: dict[str, pd.Timestamp] = {}
        self._priced_at: dict[int, pd.Timestamp] = {}
        self._bars: dict[tuple[str, dt.date], pd.DataFrame] = {}

    def listed_expirations(self, u: Underlying, day: dt.date) -> list[dt.date]:
        return [e for e in listing.listed_expirations(u, day) if e >= day]

    def listed_strikes(self, u: Underlying, expiration: dt.date, day: dt.date) -> np.ndarray:
        return np.asarray(listing.strike_grid(u, price_path.previous_close(u, day)), dtype=np.float64)

    def series(self, u: Underlying, expiration: dt.date, day: dt.date) -> tuple[Series, ...]:
        return tuple(Series(s.root, s.settlement) for s in listing.series_for(u, expiration, day))

    def start(self, states: dict[str, UnderlyingState], underlyings: list[Underlying], day: dt.date) -> dict[str, int]:
        self._states = states
        self._underlyings = list(underlyings)
        self._session = market_calendar.session(day)
        for u in underlyings:
            status = self.registry.register("spot", f"{u.name} simulated spot and bars")
            self._live(status.id)
            self._spot_ids[u.key] = status.id
        return dict(self._spot_ids)

    def _live(self, stream_id: int) -> None:
        import time

        status = self.registry.get(stream_id)
        status.connected = status.complete = True
        status.connections = max(status.connections, 1)
        status.down_since = None
        status.last_data = time.monotonic()  # the simulated market is priced afresh at every refresh
        status.heard(status.last_data)

    def open_expiration(self, plan: ExpirationPlan, state: UnderlyingState) -> OpenedExpiration:
        status = self.registry.register("chain", f"{plan.label} simulated chain ±{plan.chain_proximity}")
        self._opened[status.id] = plan
        self._live(status.id)
        return OpenedExpiration(plan, [status.id])

    def close_streams(self, ids: Iterable[int]) -> None:
        for i in ids:
            self.registry.get(i).closed = True
            self.registry.get(i).connected = False
            self._opened.pop(i, None)
            self._priced_at.pop(i, None)

    def refresh(self, now_ns: int) -> None:
        now = pd.Timestamp(now_ns, tz="UTC")
        for u in self._underlyings:
            s = instant.market_day(now)
            state = self._states[u.key]
            step = instant.step_time(u, s, now)
            state.set_spot(instant.spot_at(u, s, step), step.value, now_ns)
            self._send_bars(u, self._session, now, state)
            self._live(self._spot_ids[u.key])
        by_underlying: dict[str, list[tuple[int, ExpirationPlan]]] = {}
        for stream_id, plan in list(self._opened.items()):
            self._live(stream_id)
            by_underlying.setdefault(plan.underlying.key, []).append((stream_id, plan))
        for key, streams in by_underlying.items():
            u = streams[0][1].underlying
            s = instant.market_day(now)
            step = instant.step_time(u, s, now)
            stale = [(i, p) for i, p in streams if self._priced_at.get(i) != step]
            if not stale:
                continue
            rows = instant.windows_rows(u, s, now, [(p.expiration, np.asarray(p.chain_strikes)) for _, p in stale])
            for stream_id, plan in stale:
                self._priced_at[stream_id] = step
                part = rows[rows["expiration"] == pd.Timestamp(plan.expiration)] if len(rows) else rows
                if part.empty:
                    continue
                self._states[key].book.update_many(
                    part["symbol"].tolist(), plan.expiration, part["settlement"].tolist(),
                    part["option_type"].tolist(), part["strike"].to_numpy(np.float64), stream_id,
                    {name: part[name].to_numpy(np.float64) for name in QUOTE_FIELDS}, now_ns)

    def _send_bars(self, u: Underlying, s: market_calendar.TradingSession | None, now: pd.Timestamp,
                   state: UnderlyingState) -> None:
        """Queue the bars of the engine's session that closed since the last call (none before its open)."""
        if s is None or now <= s.open:
            return
        key = (u.key, s.date)
        if key not in self._bars:
            self._bars[key] = price_path.session_bars(u, s, self.bar_minutes)
        bars = self._bars[key]
        sent = self._bars_sent.get(u.key, s.open)
        fresh = bars[(bars["ts"] > sent) & (bars["ts"] <= now)]
        for r in fresh.itertuples():
            state.add_bar({"ts": r.ts, "open": r.open, "high": r.high, "low": r.low, "close": r.close,
                           "volume": int(r.volume)})
        if len(fresh):
            self._bars_sent[u.key] = fresh["ts"].iloc[-1]

    def paused(self) -> AbstractContextManager[None]:
        """Nothing to pause: the simulated market is read at the engine's own calls (``refresh``)."""
        return nullcontext()

    def stream_kind_codes(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(ids), dtype=np.int64)

    def stale_chains(self, ids: Iterable[int], instant: float, max_age_s: float) -> list[StreamStatus]:
        return []

    def requests(self) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        self.close_streams(list(self._opened))
