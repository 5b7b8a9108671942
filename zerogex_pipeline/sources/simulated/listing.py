"""Simulated option listings: expirations, settlement styles, strike grids and symbols.

- ``etf_daily`` (SPY, QQQ): a PM-settled expiration every session up to ``DAILY_HORIZON_DAYS`` ahead,
  plus third-Friday monthlies up to ``MONTHLY_HORIZON_DAYS`` ahead.
- ``index_am_pm`` (SPX): PM-settled SPXW expirations every session, plus third-Friday monthlies that
  list both the AM-settled SPX series and the PM-settled SPXW series. The AM series stops trading the
  session before its expiration date.

Strikes: the grid is centred on the previous close; ``strike_step`` within ``FINE_BAND`` of it and five
times that step further out, to ``LISTED_BAND``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from zerogex_pipeline.market_calendar import nyse_calendar, previous_session_on_or_before
from zerogex_pipeline.underlyings import Underlying

DAILY_HORIZON_DAYS = 42
MONTHLY_HORIZON_DAYS = 730
FINE_BAND = 0.12
LISTED_BAND = 0.35


@dataclass(frozen=True)
class Series:
    """One listed option series of an expiration: its root and settlement style."""

    root: str
    settlement: str


def third_friday(year: int, month: int) -> dt.date:
    """The third Friday of a month."""
    first = dt.date(year, month, 1)
    offset = (4 - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


def monthly_expiration(year: int, month: int) -> dt.date:
    """The monthly expiration: the third Friday, or the session before it when it is a holiday."""
    return previous_session_on_or_before(third_friday(year, month))


def _monthlies_between(start: dt.date, end: dt.date) -> list[dt.date]:
    out = []
    last = nyse_calendar().last_session.date()
    year, month = start.year, start.month
    while dt.date(year, month, 1) <= end:
        if third_friday(year, month) > last:  # past the calendar its holidays are unknown; never listed
            break
        exp = monthly_expiration(year, month)
        if start <= exp <= end:
            out.append(exp)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def is_monthly(expiration: dt.date) -> bool:
    """True when ``expiration`` is its month's standard (third-Friday) expiration."""
    return expiration == monthly_expiration(expiration.year, expiration.month)


def listed_expirations(underlying: Underlying, as_of: dt.date) -> list[dt.date]:
    """Expirations listed on ``as_of`` that have not yet settled on that date, ascending."""
    return list(_listed_expirations(underlying, as_of))


@lru_cache(maxsize=512)
def _listed_expirations(underlying: Underlying, as_of: dt.date) -> tuple[dt.date, ...]:
    cal = nyse_calendar()
    horizon = as_of + dt.timedelta(days=DAILY_HORIZON_DAYS)
    last = cal.last_session.date()
    dailies = [d.date() for d in cal.sessions_in_range(pd.Timestamp(as_of), pd.Timestamp(min(horizon, last)))]
    monthlies = _monthlies_between(as_of, min(as_of + dt.timedelta(days=MONTHLY_HORIZON_DAYS), last))
    return tuple(sorted(set(dailies) | set(monthlies)))


def series_for(underlying: Underlying, expiration: dt.date, as_of: dt.date) -> list[Series]:
    """The option series of ``expiration`` quoted on ``as_of``."""
    root = underlying.name
    if underlying.listing_style == "etf_daily":
        return [Series(root, "PM")]
    series = [Series(f"{root}W", "PM")]
    if is_monthly(expiration) and as_of < expiration:
        series.append(Series(root, "AM"))
    return series


def strike_grid(underlying: Underlying, center: float) -> np.ndarray:
    """Listed strikes around ``center`` (USD), ascending."""
    step = underlying.strike_step
    coarse = 5 * step
    lo = np.floor(center * (1 - LISTED_BAND) / coarse) * coarse
    hi = np.ceil(center * (1 + LISTED_BAND) / coarse) * coarse
    fine_lo = np.floor(center * (1 - FINE_BAND) / step) * step
    fine_hi = np.ceil(center * (1 + FINE_BAND) / step) * step
    coarse_strikes = np.arange(lo, hi + coarse / 2, coarse)
    fine_strikes = np.arange(fine_lo, fine_hi + step / 2, step)
    return np.unique(np.round(np.concatenate([coarse_strikes, fine_strikes]), 2))


def format_strike(strike: float) -> str:
    """Strike as TradeStation writes it in a symbol: no trailing zeros (``600``, ``600.5``)."""
    return f"{strike:.3f}".rstrip("0").rstrip(".")


def option_symbol(root: str, expiration: dt.date, option_type: str, strike: float) -> str:
    """TradeStation option symbol, e.g. ``SPY 250117C600`` or ``SPXW 250117P5900``."""
    return f"{root} {expiration:%y%m%d}{option_type}{format_strike(strike)}"
