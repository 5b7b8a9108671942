"""The simulated market at any instant of a session: spot, and the priced chain around it.

The intraday path moves on ``price_path.STEP_SECONDS`` steps, so the market at ``t`` is the market at the
step that began at or before ``t`` (:func:`step_time`): spot and every quote of an instant come from that
one moment. Open interest is drawn once per listed series (a property of the contract for the session),
whatever subset of contracts is priced. Used by the emulator's streams and quotes and by the live engine's
simulated feed, so both see one market.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.sources.simulated import listing, price_path, quotes
from zerogex_pipeline.underlyings import Underlying


def market_day(now: pd.Timestamp) -> TradingSession:
    """The session whose data is "current" at ``now``: today's once open, else the previous one."""
    s = _session_on_or_before(now.tz_convert(market_calendar.NEW_YORK).date())
    return _session_on_or_before(s.date - dt.timedelta(days=1)) if s.open > now else s


@lru_cache(maxsize=64)
def _session_on_or_before(local: dt.date) -> TradingSession:
    """The last session on or before New York date ``local`` (asked at every stream tick: cached)."""
    return market_calendar.session(market_calendar.previous_session_on_or_before(local))


@lru_cache(maxsize=64)
def steps(u: Underlying, day: dt.date) -> pd.Series:
    """The session's intraday path: price (USD) at each step start (UTC)."""
    return price_path.intraday_steps(u, market_calendar.session(day))


@lru_cache(maxsize=64)
def _step_starts_ns(u: Underlying, day: dt.date) -> np.ndarray:
    """:func:`steps`' index as int64 nanoseconds (a numpy search is ~50x cheaper than a DatetimeIndex one)."""
    return steps(u, day).index.asi8.copy()


def _step_index(u: Underlying, s: TradingSession, ts: pd.Timestamp) -> int:
    clamped = min(max(ts.value, s.open.value), s.close.value)
    return max(int(np.searchsorted(_step_starts_ns(u, s.date), clamped, side="right")) - 1, 0)


def step_time(u: Underlying, s: TradingSession, ts: pd.Timestamp) -> pd.Timestamp:
    """Start of the path step in force at ``ts`` (clamped to the session), UTC."""
    return pd.Timestamp(steps(u, s.date).index[_step_index(u, s, ts)])


def next_step(u: Underlying, now: pd.Timestamp) -> tuple[TradingSession, pd.Timestamp]:
    """The session and start (UTC) of the first path step after the one in force at ``now``: the next step of the
    session, else the next session's open (before an open, that session's first step)."""
    s = market_day(now)
    starts = _step_starts_ns(u, s.date)
    i = int(np.searchsorted(starts, now.value, side="right"))
    if now >= s.open and i < len(starts):
        return s, pd.Timestamp(int(starts[i]), tz="UTC")
    following = market_calendar.session(market_calendar.next_session_on_or_after(s.date + dt.timedelta(days=1)))
    return following, following.open


def spot_at(u: Underlying, s: TradingSession, ts: pd.Timestamp) -> float:
    """Underlying price at ``ts`` within session ``s`` (clamped to the session), USD."""
    return float(steps(u, s.date).iloc[_step_index(u, s, ts)])


def series_open_interest(u: Underlying, root: str, exp: dt.date, day: dt.date, strike: np.ndarray,
                         is_call: np.ndarray, center: float) -> np.ndarray:
    """Open interest (contracts) of the requested contracts, drawn once for the whole listed series.

    The simulated draw depends on the position of a contract in the array it is drawn with, so drawing
    only the requested contracts would give a contract a different open interest in a bar request, a
    chain stream and a quote. Drawing the series' full grid (calls, then puts) makes it a property of
    the contract for the session, as a real open interest is. Strikes off the grid are drawn alone.
    """
    grid = listed_grid(u, center)
    full = _grid_open_interest(u, root, exp, day, center)
    pos = np.searchsorted(grid, strike)
    on_grid = (pos < len(grid)) & np.isclose(grid[np.minimum(pos, len(grid) - 1)], strike, rtol=0, atol=1e-6)
    out = np.where(on_grid, full[np.minimum(pos, len(grid) - 1) + np.where(is_call, 0, len(grid))], 0)
    if (~on_grid).any():
        out[~on_grid] = quotes.open_interest(u, root, exp, day, strike[~on_grid], is_call[~on_grid], center)
    return out.astype(np.int64)


@lru_cache(maxsize=1024)
def listed_grid(u: Underlying, center: float) -> np.ndarray:
    """:func:`listing.strike_grid` around ``center``, computed once (read-only: it is shared)."""
    grid = np.asarray(listing.strike_grid(u, center), dtype=np.float64)
    grid.setflags(write=False)
    return grid


@lru_cache(maxsize=1024)
def _grid_open_interest(u: Underlying, root: str, exp: dt.date, day: dt.date, center: float) -> np.ndarray:
    """Open interest of a series' whole listed grid (calls, then puts): drawn once per session, not per quote."""
    grid = listed_grid(u, center)
    full = quotes.open_interest(u, root, exp, day, np.concatenate([grid, grid]),
                                np.concatenate([np.ones(len(grid), bool), np.zeros(len(grid), bool)]), center)
    full.setflags(write=False)
    return full


def price_contracts(u: Underlying, s: TradingSession, rows: pd.DataFrame, seed: tuple[object, ...]) -> pd.DataFrame:
    """Quote ``rows`` (symbol, root, expiration, option_type, strike, settlement, snapshot_ts) at their instants.

    Adds ``spot`` (USD), ``open_interest`` and the quote columns of :func:`quotes.price_chain`.
    """
    rows = rows.copy()
    instants = pd.DatetimeIndex(rows["snapshot_ts"])
    unique = instants.unique()
    spots = np.array([spot_at(u, s, t) for t in unique])
    rows["spot"] = spots[unique.get_indexer(instants)]
    center = price_path.previous_close(u, s.date)
    oi = np.zeros(len(rows), dtype=np.int64)
    for (root, exp), idx in rows.groupby(["root", "expiration"]).groups.items():
        part = rows.loc[idx]
        oi[rows.index.get_indexer(idx)] = series_open_interest(
            u, str(root), pd.Timestamp(exp).date(), s.date, part["strike"].to_numpy(np.float64),
            (part["option_type"] == "C").to_numpy(), center)
    rows["open_interest"] = oi
    elapsed = ((rows["snapshot_ts"] - s.open) / (s.close - s.open)).to_numpy(np.float64)
    path = price_path.daily_path(u)
    return quotes.price_chain(
        u, rows, regime_vol=price_path.volatility_regime(u, s.date), open_spot=float(path.open[path.locate(s.date)]),
        fraction_elapsed=elapsed, seed_parts=seed,
    )


def window_strikes(u: Underlying, s: TradingSession, center: float, proximity: int) -> np.ndarray:
    """Listed strikes of the session: ``proximity`` at or below ``center`` and ``proximity`` above it (USD)."""
    grid = listed_grid(u, price_path.previous_close(u, s.date))
    return np.concatenate([grid[grid <= center][-proximity:], grid[grid > center][:proximity]])


def window_rows(u: Underlying, s: TradingSession, now: pd.Timestamp, expiration: dt.date, strikes: np.ndarray,
                option_type: str = "All", strike_range: str = "All") -> pd.DataFrame:
    """Priced contracts of ``expiration`` at ``strikes``, every listed series, at the step in force at ``now``.

    ``option_type`` (``All``/``Call``/``Put``) and ``strike_range`` (``All``/``ITM``/``OTM``, against spot)
    filter as the TradeStation chain stream does. Empty when nothing matches.
    """
    return windows_rows(u, s, now, [(expiration, strikes)], option_type, strike_range,
                        seed=(u.name, expiration.isoformat(), s.date.isoformat(), "stream"))


def windows_rows(u: Underlying, s: TradingSession, now: pd.Timestamp,
                 windows: list[tuple[dt.date, np.ndarray]], option_type: str = "All", strike_range: str = "All",
                 seed: tuple[object, ...] | None = None) -> pd.DataFrame:
    """:func:`window_rows` of several expirations priced in one batch (one trade-noise draw for the batch)."""
    t = step_time(u, s, now)
    spot = spot_at(u, s, t)
    parts = []
    for expiration, strike_values in windows:
        strikes = np.asarray(strike_values, dtype=np.float64)
        for series in listing.series_for(u, expiration, s.date):
            for right in ("C", "P"):
                if option_type.lower() in ("call", "put") and right != option_type[0].upper():
                    continue
                itm = strikes < spot if right == "C" else strikes > spot
                keep = (itm if strike_range.upper() == "ITM" else ~itm if strike_range.upper() == "OTM"
                        else np.ones(strikes.size, dtype=bool))
                ks = strikes[keep]
                parts.append(pd.DataFrame({
                    "symbol": [listing.option_symbol(series.root, expiration, right, float(k)) for k in ks],
                    "root": series.root, "expiration": pd.Timestamp(expiration), "option_type": right, "strike": ks,
                    "settlement": series.settlement, "snapshot_ts": t}))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rows.empty:
        return pd.DataFrame()
    key = seed or (u.name, ",".join(str(e) for e, _ in windows), s.date.isoformat(), "stream")
    return price_contracts(u, s, rows, key)
