"""Simulated underlying prices: a daily path with clustered volatility and an intraday bridge.

Daily model (per underlying, fixed seed): log-volatility follows an AR(1) with leverage (down days
raise tomorrow's volatility); a quarter of each day's variance is the overnight gap. The path is
anchored so the close on ``REFERENCE_DATE`` equals the underlying's ``sim_reference_price``. Draws are
indexed by weekday from ``DRAW_START`` so no value depends on the calendar's horizon.

Intraday (per underlying and date): a Brownian bridge from the open to the close on 10-second steps,
with U-shaped variance (busier at the open and the close); bars take OHLC from those steps and
volume from a U-shaped profile.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from zerogex_pipeline.market_calendar import TradingSession, nyse_calendar
from zerogex_pipeline.sources.simulated.seeds import rng
from zerogex_pipeline.underlyings import Underlying

DRAW_START = dt.date(2010, 1, 1)
DRAW_END = dt.date(2040, 12, 31)
REFERENCE_DATE = dt.date(2025, 1, 2)
TRADING_DAYS_PER_YEAR = 252.0
OVERNIGHT_VARIANCE_SHARE = 0.25
STEP_SECONDS = 10
SIM_DAILY_VOLUME = {"SPY": 60e6, "QQQ": 40e6, "SPX": 2.5e9}


@dataclass(frozen=True)
class DailyPath:
    """Per-session open, close and annualized volatility regime of one underlying."""

    sessions: pd.DatetimeIndex
    open: np.ndarray
    close: np.ndarray
    vol: np.ndarray

    def locate(self, day: dt.date) -> int:
        i = int(self.sessions.searchsorted(pd.Timestamp(day)))
        if i >= len(self.sessions) or self.sessions[i].date() != day:
            raise ValueError(f"{day}: not a session of the simulated market")
        return i


@lru_cache(maxsize=8)
def daily_path(underlying: Underlying) -> DailyPath:
    """The whole daily path of ``underlying`` over the calendar (cached per process)."""
    weekdays = pd.bdate_range(DRAW_START, DRAW_END)
    gen = rng(underlying.name, "daily-path")
    n = len(weekdays)
    z_ret = gen.standard_normal(n)
    z_vol = gen.standard_normal(n)
    gap_share = gen.standard_normal(n)

    phi, vol_of_logvol, leverage = 0.97, 0.07, -0.6
    shocks = leverage * z_ret + np.sqrt(1 - leverage**2) * z_vol
    logvol = np.zeros(n)
    for i in range(1, n):
        logvol[i] = phi * logvol[i - 1] + vol_of_logvol * shocks[i - 1]
    vol = underlying.sim_annual_vol * np.exp(logvol - 0.5 * vol_of_logvol**2 / (1 - phi**2))

    cal = nyse_calendar()
    sessions = cal.sessions
    keep = weekdays.isin(sessions)
    sd = vol[keep] / np.sqrt(TRADING_DAYS_PER_YEAR)
    drift = 0.07 / TRADING_DAYS_PER_YEAR - 0.5 * sd**2
    gap = np.sqrt(OVERNIGHT_VARIANCE_SHARE) * sd * gap_share[keep]
    day = drift + np.sqrt(1 - OVERNIGHT_VARIANCE_SHARE) * sd * z_ret[keep]
    log_close = np.cumsum(gap + day)
    log_open = log_close - day
    days = weekdays[keep]
    ref = int(days.searchsorted(pd.Timestamp(REFERENCE_DATE)))
    shift = np.log(underlying.sim_reference_price) - log_close[ref]
    return DailyPath(days, np.exp(log_open + shift), np.exp(log_close + shift), vol[keep])


def _u_shape(x: np.ndarray) -> np.ndarray:
    """Relative intensity over the session fraction x in [0, 1]: 3.4x at the edges, 1x at midday."""
    return 1.0 + 2.4 * (2.0 * x - 1.0) ** 2


def intraday_steps(underlying: Underlying, session: TradingSession) -> pd.Series:
    """Prices every ``STEP_SECONDS`` from the open to the close (inclusive), indexed by UTC instant."""
    path = daily_path(underlying)
    i = path.locate(session.date)
    open_px, close_px = path.open[i], path.close[i]
    n = int((session.close - session.open).total_seconds() // STEP_SECONDS)
    x = (np.arange(n) + 0.5) / n
    weights = _u_shape(x)
    weights /= weights.sum()
    day_sd = path.vol[i] / np.sqrt(TRADING_DAYS_PER_YEAR) * np.sqrt(1 - OVERNIGHT_VARIANCE_SHARE)
    gen = rng(underlying.name, session.date.isoformat(), "intraday")
    increments = gen.standard_normal(n) * np.sqrt(weights) * day_sd
    walk = np.concatenate([[0.0], np.cumsum(increments)])
    frac = np.concatenate([[0.0], np.cumsum(weights)])
    bridge = walk - frac * (walk[-1] - np.log(close_px / open_px))
    index = session.open + pd.to_timedelta(np.arange(n + 1) * STEP_SECONDS, unit="s")
    return pd.Series(open_px * np.exp(bridge), index=index)


def session_bars(underlying: Underlying, session: TradingSession, bar_minutes: int) -> pd.DataFrame:
    """OHLCV bars of the regular session; ``ts`` is the bar end (UTC)."""
    steps = intraday_steps(underlying, session)
    ends = session.bar_ends(bar_minutes)
    starts = ends - pd.Timedelta(minutes=bar_minutes)
    starts = starts.where(starts >= session.open, session.open)
    values = steps.to_numpy()
    pos = steps.index
    lo = pos.searchsorted(starts, side="left")
    hi = pos.searchsorted(ends, side="right")
    opens = values[lo]
    closes = values[hi - 1]
    highs = np.array([values[a:b].max() for a, b in zip(lo, hi, strict=True)])
    lows = np.array([values[a:b].min() for a, b in zip(lo, hi, strict=True)])

    path = daily_path(underlying)
    i = path.locate(session.date)
    gen = rng(underlying.name, session.date.isoformat(), "volume", bar_minutes)
    regime = path.vol[i] / underlying.sim_annual_vol
    day_volume = SIM_DAILY_VOLUME.get(underlying.name, 30e6) * regime * session.minutes / 390.0
    mids = ((starts - session.open) + (ends - starts) / 2) / (session.close - session.open)
    share = _u_shape(np.asarray(mids, dtype=np.float64)) * (ends - starts).total_seconds().to_numpy()
    share = share / share.sum() * gen.lognormal(0.0, 0.25, len(share))
    return pd.DataFrame(
        {
            "underlying": underlying.name,
            "session_date": pd.Timestamp(session.date),
            "ts": ends,
            "open": np.round(opens, 2),
            "high": np.round(highs, 2),
            "low": np.round(lows, 2),
            "close": np.round(closes, 2),
            "volume": np.floor(day_volume * share).astype(np.int64),
            "source": "simulated",
        }
    )


def previous_close(underlying: Underlying, day: dt.date) -> float:
    """Close of the session before ``day`` (the reference for strikes and open interest)."""
    path = daily_path(underlying)
    i = path.locate(day)
    return float(path.close[i - 1]) if i > 0 else float(path.open[i])


def volatility_regime(underlying: Underlying, day: dt.date) -> float:
    """Annualized volatility regime of the session (drives the implied-vol level)."""
    path = daily_path(underlying)
    return float(path.vol[path.locate(day)])
