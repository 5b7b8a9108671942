"""The :class:`~zerogex_pipeline.sources.base.MarketDataSource` on TradeStation Web API v3.

Paths:
- **Historical** (any date TradeStation still serves): underlying minute bars for the session; for the chain,
  one option bar-chart request per candidate contract (``Minute`` bars at the snapshot spacing) giving
  the price at each snapshot (close of the last bar ending at or before it; the first bar's open at the
  open), cumulative volume and ``OpenInterest``. Bars carry no quotes, so the rows say so: ``bid = ask = 0``
  (no quote; the schema's "0 when no bid"), ``last = mid =`` the bar price, vendor ``iv`` and greeks null.
  Downstream (:func:`zerogex_pipeline.analytics.chain.choose_iv`) then finds no sane quote (bid 0) and
  solves the IV from ``last``, i.e. the bar close, and records the IV source as ``last``.
- **Live quotes** are not this module's: ``zerogex stream`` captures them from the option-chain streams at
  each snapshot instant (:mod:`zerogex_pipeline.live`), and the chain asset asks this source only for the
  instants the capture lacks. Today's session in progress is rebuilt from the bars completed so far, like
  any past day, never by reading a stream minutes after the instant.

Candidate strikes: the underlying's strike step over ``[min spot·(1-d), max spot·(1+d)]``; contracts
the server does not know (404) or that have no bars are skipped. Expirations: the expirations endpoint
(listed today), plus, for past dates, every NYSE session between the date and today (SPY/QQQ/SPXW list
daily expirations; an assumption for dates before daily listings existed).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import reduce

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.schemas import CHAIN_QUOTES, UNDERLYING_BARS
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.errors import ApiError
from zerogex_pipeline.tradestation.symbols import format_option_symbol
from zerogex_pipeline.underlyings import Underlying

log = logging.getLogger(__name__)

_EXPIRATIONS_CACHE: dict[tuple[str, str, dt.date], list[dt.date]] = {}
_CACHE_LOCK = threading.Lock()


def _wire(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def is_standard_monthly(day: dt.date) -> bool:
    """True for the month's standard expiration: the third Friday, or the session before it on a holiday."""
    first = dt.date(day.year, day.month, 1)
    third_friday = first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)
    return day == market_calendar.previous_session_on_or_before(third_friday)


def option_series(underlying: Underlying, expiration: dt.date, day: dt.date) -> list[tuple[str, str]]:
    """(root, settlement) of the series of ``expiration`` trading on ``day``."""
    if underlying.listing_style == "etf_daily":
        return [(underlying.name, "PM")]
    series = [(f"{underlying.name}W", "PM")]
    if is_standard_monthly(expiration) and day < expiration:
        series.append((underlying.name, "AM"))
    return series


class TradeStationMarket:
    """Market data from TradeStation (or the local emulator) through a :class:`TradeStationClient`.

    Args:
        client: the REST/stream client.
        risk_free_rate: annualized continuous r (kept for callers; IVs are solved downstream).
        workers: concurrent bar requests per chain (they share the client's rate budgets).
    """

    name = "tradestation"

    def __init__(self, client: TradeStationClient, risk_free_rate: float = 0.04, workers: int = 4) -> None:
        self.client = client
        self.risk_free_rate = risk_free_rate
        self.workers = max(1, workers)

    def __repr__(self) -> str:
        return f"TradeStationMarket({self.client!r})"

    # --------------------------------------------------------------- bars
    def underlying_bars(self, underlying: Underlying, session: TradingSession, bar_minutes: int) -> pd.DataFrame:
        """Regular-session bars of ``bar_minutes`` minutes (``ts`` = bar end, UTC; prices USD; volume shares)."""
        if not 1 <= bar_minutes <= 1440:
            raise ValueError(f"bar_minutes: expected 1..1440, got {bar_minutes}")
        bars = self.client.bars(underlying.ts_symbol, unit="Minute", interval=bar_minutes,
                                firstdate=_wire(session.open), lastdate=_wire(session.close))
        bars = bars[(bars["ts"] > session.open) & (bars["ts"] <= session.close)]
        frame = pd.DataFrame({
            "underlying": underlying.name, "session_date": pd.Timestamp(session.date), "ts": bars["ts"],
            "open": bars["open"], "high": bars["high"], "low": bars["low"], "close": bars["close"],
            "volume": bars["volume"].astype(np.int64), "source": self.name,
        })
        return UNDERLYING_BARS.conform(frame)

    # --------------------------------------------------------------- expirations
    def listed_expirations(self, underlying: Underlying, as_of: dt.date) -> list[dt.date]:
        """Expirations listed on ``as_of`` that settle on or after it, ascending."""
        today = market_calendar.utc_now().tz_convert(market_calendar.NEW_YORK).date()
        key = (self.client.config.api_url, underlying.ts_symbol, today)
        with _CACHE_LOCK:
            listed = _EXPIRATIONS_CACHE.get(key)
        if listed is None:
            listed = [e.date for e in self.client.option_expirations(underlying.ts_symbol)]
            with _CACHE_LOCK:
                _EXPIRATIONS_CACHE[key] = listed
        out = {d for d in listed if d >= as_of}
        if as_of < today:
            out.update(market_calendar.sessions_between(as_of, today - dt.timedelta(days=1)))
        return sorted(out)

    # --------------------------------------------------------------- chains
    def chain_snapshots(
        self, underlying: Underlying, session: TradingSession, expiration: dt.date, spots: pd.DataFrame,
        strike_distance_pct: float,
    ) -> pd.DataFrame:
        """Chain rows per snapshot in ``spots`` (see the module docstring for how each field is obtained)."""
        if spots.empty or expiration < session.date:
            return CHAIN_QUOTES.empty_frame()
        if not 0 < strike_distance_pct <= 100:
            raise ValueError(f"strike_distance_pct: expected (0, 100], got {strike_distance_pct}")
        band = strike_distance_pct / 100.0
        times = pd.DatetimeIndex(spots["snapshot_ts"])
        step_min = self._snapshot_minutes(times)
        lo, hi = float(spots["spot"].min()) * (1 - band), float(spots["spot"].max()) * (1 + band)
        step = underlying.strike_step
        strikes = np.round(np.arange(math.ceil(lo / step) * step, hi + step / 2, step), 4)
        strikes = strikes[strikes <= hi]
        contracts = [(root, settlement, right, float(k)) for root, settlement in
                     option_series(underlying, expiration, session.date) for right in ("C", "P") for k in strikes]

        def fetch(c: tuple[str, str, str, float]) -> pd.DataFrame | None:
            symbol = format_option_symbol(c[0], expiration, c[2], c[3])
            try:
                bars = self.client.bars(symbol, unit="Minute", interval=step_min,
                                        firstdate=_wire(session.open), lastdate=_wire(session.close))
            except ApiError as exc:
                if exc.status in (400, 404):
                    return None
                raise
            bars = bars[(bars["ts"] > session.open) & (bars["ts"] <= session.close)]
            return None if bars.empty else self._contract_rows(symbol, c, bars, times)

        with ThreadPoolExecutor(self.workers) as pool:
            parts = [p for p in pool.map(fetch, contracts) if p is not None]
        if not parts:
            log.warning("%s %s exp %s: no option bars for %d candidate contracts", underlying.name, session.date,
                        expiration, len(contracts))
            return CHAIN_QUOTES.empty_frame()
        rows = pd.concat(parts, ignore_index=True).merge(spots, on="snapshot_ts", how="inner")
        rows = rows[np.abs(rows["strike"] / rows["spot"] - 1.0) <= band + 1e-12].reset_index(drop=True)
        rows["underlying"] = underlying.name
        rows["session_date"] = pd.Timestamp(session.date)
        rows["expiration"] = pd.Timestamp(expiration)
        rows["source"] = self.name
        rows["origin"] = "historical"
        rows = rows.sort_values(["snapshot_ts", "strike", "symbol"], kind="stable")
        return CHAIN_QUOTES.conform(rows)

    @staticmethod
    def _snapshot_minutes(times: pd.DatetimeIndex) -> int:
        """Bar interval (minutes) whose bar ends hit every snapshot time: the gcd of the spacings."""
        minutes = [int(d) for d in np.diff(times.as_unit("ns").asi8) // 60_000_000_000 if d > 0]
        return max(1, min(1440, reduce(math.gcd, minutes))) if minutes else 1

    @staticmethod
    def _contract_rows(symbol: str, c: tuple[str, str, str, float], bars: pd.DataFrame,
                       times: pd.DatetimeIndex) -> pd.DataFrame:
        ends = pd.DatetimeIndex(bars["ts"])
        idx = ends.searchsorted(times, side="right") - 1
        close = bars["close"].to_numpy(np.float64)
        cum = np.cumsum(bars["volume"].to_numpy(np.int64))
        price = np.where(idx >= 0, close[np.maximum(idx, 0)], float(bars["open"].iloc[0]))
        volume = np.where(idx >= 0, cum[np.maximum(idx, 0)], 0)
        oi_values = bars["open_interest"].to_numpy(np.int64)
        oi = int(oi_values[oi_values > 0][-1]) if (oi_values > 0).any() else 0
        return pd.DataFrame({
            "snapshot_ts": times, "symbol": symbol, "option_type": c[2], "strike": c[3], "settlement": c[1],
            "bid": 0.0, "ask": 0.0, "last": price, "mid": price, "volume": volume.astype(np.int64),
            "open_interest": oi, "iv": np.nan, "delta": np.nan, "gamma": np.nan, "vega": np.nan, "theta": np.nan,
        })
