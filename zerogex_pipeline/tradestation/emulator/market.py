"""Wire-format market data for the emulator, computed from the deterministic simulated market.

Numbers are rendered as strings where the reference says so (ints where it says int). "Now" comes from
the emulator's clock; outside a session the market shows the last close.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.market_calendar import TradingSession
from zerogex_pipeline.sources.simulated import listing, price_path
from zerogex_pipeline.sources.simulated.instant import (
    market_day as market_day,
)
from zerogex_pipeline.sources.simulated.instant import (
    next_step as next_step,
)
from zerogex_pipeline.sources.simulated.instant import (
    price_contracts,
    spot_at,
    step_time,
    steps,
    window_rows,
    window_strikes,
)
from zerogex_pipeline.tradestation.symbols import OptionSymbol, format_strike, parse_option_symbol
from zerogex_pipeline.underlyings import (
    Underlying,
    UnknownUnderlyingError,
    known_underlyings,
    resolve_underlying,
)

ROOTS = {"SPY": "SPY", "QQQ": "QQQ", "SPX": "SPX", "SPXW": "SPX"}
CRYPTO = ["BTCUSD", "ETHUSD", "LTCUSD", "BCHUSD"]


def num(value: float, digits: int = 2) -> str:
    """A price as the API writes it: a string without trailing zeros."""
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def rfc3339(ts: pd.Timestamp) -> str:
    """``2025-01-15T15:00:00Z``."""
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Contract:
    """An option contract the simulated market lists."""

    underlying: Underlying
    symbol: OptionSymbol
    settlement: str


def underlying_of(symbol: str) -> Underlying | None:
    """The underlying for a TradeStation underlying symbol (``SPY``, ``$SPX.X``), else ``None``."""
    names = {u.ts_symbol: u for u in known_underlyings()}
    return names.get(symbol.strip().upper())


def contract_of(symbol: str) -> Contract | None:
    """The contract of an option symbol whose root the simulated market lists, else ``None``."""
    try:
        parsed = parse_option_symbol(symbol)
    except ValueError:
        return None
    name = ROOTS.get(parsed.root)
    if name is None:
        return None
    try:
        u = resolve_underlying(name)
    except UnknownUnderlyingError:
        return None
    settlement = "AM" if u.listing_style == "index_am_pm" and parsed.root == u.name else "PM"
    return Contract(u, parsed, settlement)


@lru_cache(maxsize=256)
def session_bars(u: Underlying, day: dt.date, minutes: int) -> pd.DataFrame:
    """The simulated market's bars of one session (``ts`` = bar end)."""
    return price_path.session_bars(u, market_calendar.session(day), minutes)


@lru_cache(maxsize=65536)
def is_listed(c: Contract, day: dt.date) -> bool:
    """True when contract ``c`` trades on ``day`` in the simulated market."""
    exp = c.symbol.expiration
    if exp < day or exp not in listing.listed_expirations(c.underlying, day):
        return False
    if c.symbol.root not in {x.root for x in listing.series_for(c.underlying, exp, day)}:
        return False
    grid = listing.strike_grid(c.underlying, price_path.previous_close(c.underlying, day))
    return bool(np.any(np.isclose(grid, c.symbol.strike)))


def _bar(ts: pd.Timestamp, o: float, h: float, lo: float, c: float, vol: int, oi: int, status: str = "Closed",
         realtime: bool = False) -> dict[str, Any]:
    up = int(vol * 0.52)
    ticks = max(int(vol / 40), 1)
    return {
        "High": num(h), "Low": num(lo), "Open": num(o), "Close": num(c), "TimeStamp": rfc3339(ts),
        "TotalVolume": str(int(vol)), "DownTicks": ticks // 2, "DownVolume": int(vol) - up, "OpenInterest": str(oi),
        "IsRealtime": realtime, "IsEndOfHistory": False, "TotalTicks": ticks, "UnchangedTicks": 0,
        "UnchangedVolume": 0, "UpTicks": ticks - ticks // 2, "UpVolume": up,
        "Epoch": int(ts.timestamp() * 1000), "BarStatus": status,
    }


def underlying_session_bars(u: Underlying, s: TradingSession, unit: str, interval: int) -> list[dict[str, Any]]:
    """Wire bars of one session: ``Minute`` bars of ``interval`` or one ``Daily`` bar (at the close)."""
    if unit == "Minute":
        b = session_bars(u, s.date, interval)
        return [_bar(r.ts, r.open, r.high, r.low, r.close, int(r.volume), 0) for r in b.itertuples()]
    b = session_bars(u, s.date, 30)
    return [_bar(s.close, float(b["open"].iloc[0]), float(b["high"].max()), float(b["low"].min()),
                 float(b["close"].iloc[-1]), int(b["volume"].sum()), 0)]


def option_session_bars(c: Contract, s: TradingSession, unit: str, interval: int) -> list[dict[str, Any]]:
    """Wire bars of one option contract on one session (prices are the model mid, USD per share)."""
    if not is_listed(c, s.date):
        return []
    ends = s.bar_ends(interval) if unit == "Minute" else pd.DatetimeIndex([s.close])
    starts = ends - pd.Timedelta(minutes=interval) if unit == "Minute" else pd.DatetimeIndex([s.open])
    starts = starts.where(starts >= s.open, s.open)
    instants = pd.DatetimeIndex(starts.append(ends)).unique().sort_values()
    sym = c.symbol
    rows = pd.DataFrame({
        "symbol": str(sym), "root": sym.root, "expiration": pd.Timestamp(sym.expiration),
        "option_type": sym.right, "strike": sym.strike, "settlement": c.settlement, "snapshot_ts": instants,
    })
    priced = price_contracts(c.underlying, s, rows, (str(sym), s.date.isoformat()))
    mid = pd.Series(priced["mid"].to_numpy(), index=instants)
    cum = pd.Series(np.maximum.accumulate(priced["volume"].to_numpy()), index=instants)
    oi = int(priced["open_interest"].iloc[0])
    out = []
    prev_cum = 0
    for a, b in zip(starts, ends, strict=True):
        o, cl = float(mid[a]), float(mid[b])
        vol = int(cum[b]) - prev_cum
        prev_cum = int(cum[b])
        out.append(_bar(b, o, max(o, cl), min(o, cl), cl, max(vol, 0), oi))
    return out


def sessions_in(start: pd.Timestamp, end: pd.Timestamp) -> list[TradingSession]:
    """Sessions whose regular hours overlap [start, end]."""
    days = market_calendar.sessions_between(start.tz_convert(market_calendar.NEW_YORK).date() - dt.timedelta(days=1),
                                            end.tz_convert(market_calendar.NEW_YORK).date())
    out = []
    for d in days:
        s = market_calendar.session(d)
        if s.close > start and s.open <= end:
            out.append(s)
    return out


def spread_object(row: Any, greeks: bool, underlying: Underlying) -> dict[str, Any]:
    """A single-leg ``Spread`` (chain/option-quote stream message) from a priced row."""
    frame = pd.DataFrame([row._asdict() if hasattr(row, "_asdict") else dict(row)])
    return spread_objects(frame, greeks, underlying)[0]


def _nums(values: np.ndarray, digits: int = 2) -> list[str]:
    """:func:`num` of every value (the formatting of a whole column at once)."""
    out = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        out.append(f"{v:.{digits}f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0")
    return out


def spread_objects(rows: pd.DataFrame, greeks: bool, underlying: Underlying) -> list[dict[str, Any]]:
    """Single-leg ``Spread`` objects of priced rows (one per row; numbers formatted a column at a time)."""
    n = len(rows)
    if n == 0:
        return []
    is_call = (rows["option_type"] == "C").to_numpy()
    spot = rows["spot"].to_numpy(np.float64)
    strike = rows["strike"].to_numpy(np.float64)
    mid = rows["mid"].to_numpy(np.float64)
    last = np.nan_to_num(rows["last"].to_numpy(np.float64), nan=0.0)
    intrinsic = np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))
    cols = {
        "IntrinsicValue": _nums(intrinsic), "ExtrinsicValue": _nums(np.maximum(mid - intrinsic, 0.0)),
        "TheoreticalValue": _nums(mid, 4), "Ask": _nums(rows["ask"].to_numpy()), "Bid": _nums(rows["bid"].to_numpy()),
        "Mid": _nums(mid, 4), "Last": _nums(last),
    }
    iv = rows["iv"].to_numpy(np.float64)
    delta = rows["delta"].to_numpy(np.float64)
    if greeks:
        cols.update({"Delta": _nums(delta, 4), "Theta": _nums(rows["theta"].to_numpy(), 4),
                     "Gamma": _nums(rows["gamma"].to_numpy(), 6), "Vega": _nums(rows["vega"].to_numpy(), 4),
                     "ImpliedVolatility": _nums(iv, 4), "ProbabilityITM": _nums(np.abs(delta), 4),
                     "ProbabilityOTM": _nums(1 - np.abs(delta), 4)})
    strikes = [format_strike(k) for k in strike.tolist()]
    expirations = {e: rfc3339(pd.Timestamp(e).tz_localize("UTC")) for e in pd.unique(rows["expiration"])}
    asset = "IndexOption" if underlying.listing_style == "index_am_pm" else "StockOption"
    oi = rows["open_interest"].to_numpy(np.int64).tolist()
    volume = rows["volume"].to_numpy(np.int64).tolist()
    symbols = rows["symbol"].tolist()
    exps = rows["expiration"].tolist()
    out = []
    for i in range(n):
        right = "Call" if is_call[i] else "Put"
        price = cols["Last"][i]
        obj: dict[str, Any] = {
            "IntrinsicValue": cols["IntrinsicValue"][i], "ExtrinsicValue": cols["ExtrinsicValue"][i],
            "TheoreticalValue": cols["TheoreticalValue"][i], "DailyOpenInterest": oi[i], "Ask": cols["Ask"][i],
            "Bid": cols["Bid"][i], "Mid": cols["Mid"][i], "AskSize": 10, "BidSize": 10, "Close": price,
            "High": price, "Last": price, "Low": price, "NetChange": "0", "NetChangePct": "0", "Open": price,
            "PreviousClose": price, "Volume": volume[i], "Side": right, "Strikes": [strikes[i]],
            "Legs": [{"Symbol": symbols[i], "Ratio": 1, "StrikePrice": strikes[i], "Expiration": expirations[exps[i]],
                      "OptionType": right, "AssetType": asset}],
        }
        if greeks and math.isfinite(iv[i]):
            obj.update({"Delta": cols["Delta"][i], "Theta": cols["Theta"][i], "Gamma": cols["Gamma"][i], "Rho": "0",
                        "Vega": cols["Vega"][i], "ImpliedVolatility": cols["ImpliedVolatility"][i],
                        "ProbabilityITM": cols["ProbabilityITM"][i], "ProbabilityOTM": cols["ProbabilityOTM"][i]})
        out.append(obj)
    return out


def chain_rows(u: Underlying, s: TradingSession, now: pd.Timestamp, expiration: dt.date, proximity: int,
               option_type: str, strike_range: str, price_center: float | None,
               max_proximity: int | None = None) -> pd.DataFrame:
    """Priced chain rows of ``expiration`` at ``now``: ``proximity`` strikes above and below the center.

    The center is ``price_center``, else spot at ``now``; ``max_proximity`` caps ``proximity`` silently, as a
    server with a strike cap would.
    """
    center = spot_at(u, s, now) if price_center is None else price_center
    prox = proximity if max_proximity is None else min(proximity, max_proximity)
    return window_rows(u, s, now, expiration, window_strikes(u, s, center, prox), option_type, strike_range)


def underlying_quote(u: Underlying, s: TradingSession, now: pd.Timestamp) -> dict[str, Any]:
    """A full ``Quote`` of an underlying at ``now`` (``TradeTime``: start of the path step in force)."""
    t = step_time(u, s, now)
    path = steps(u, s.date)
    upto = path[path.index <= t]
    last = float(upto.iloc[-1])
    prev = price_path.previous_close(u, s.date)
    bars = session_bars(u, s.date, 1)
    vol = int(bars.loc[bars["ts"] <= t, "volume"].sum())
    half = max(0.01, round(last * 0.00005, 2))
    return {
        "Symbol": u.ts_symbol, "Open": num(float(upto.iloc[0])), "High": num(float(upto.max())),
        "Low": num(float(upto.min())), "PreviousClose": num(prev), "Last": num(last), "Ask": num(last + half),
        "AskSize": "300", "Bid": num(last - half), "BidSize": "400", "NetChange": num(last - prev, 4),
        "NetChangePct": num((last / prev - 1) * 100, 6), "High52Week": num(max(last, prev) * 1.1),
        "High52WeekTimestamp": "2025-01-02T00:00:00Z", "Low52Week": num(min(last, prev) * 0.8),
        "Low52WeekTimestamp": "2024-04-19T00:00:00Z", "Volume": str(vol), "PreviousVolume": str(int(vol * 1.05) + 1),
        "Close": num(last), "DailyOpenInterest": "0", "TradeTime": rfc3339(t), "TickSizeTier": "0",
        "MarketFlags": {"IsDelayed": False, "IsHardToBorrow": False, "IsBats": False, "IsHalted": False},
        "LastSize": "100", "LastVenue": "ARCX", "VWAP": num(float(upto.mean()), 4),
    }


def option_quote(c: Contract, s: TradingSession, now: pd.Timestamp) -> dict[str, Any] | None:
    """A ``Quote`` of an option contract at ``now`` (``None`` when not listed that day)."""
    quoted = option_quotes([c], s, now, (str(c.symbol), s.date.isoformat(), "quote"))
    return quoted.get(str(c.symbol))


def option_quotes(contracts: list[Contract], s: TradingSession, now: pd.Timestamp, seed: tuple[object, ...]
                  ) -> dict[str, dict[str, Any]]:
    """``Quote`` objects of the listed ``contracts`` (one underlying) at the path step in force at ``now``.

    Priced in one batch; the simulated trade noise (volume, last) depends on ``seed`` and the batch.
    """
    listed = [c for c in contracts if is_listed(c, s.date)]
    if not listed:
        return {}
    t = step_time(listed[0].underlying, s, now)
    rows = pd.DataFrame({
        "symbol": [str(c.symbol) for c in listed], "root": [c.symbol.root for c in listed],
        "expiration": [pd.Timestamp(c.symbol.expiration) for c in listed],
        "option_type": [c.symbol.right for c in listed], "strike": [c.symbol.strike for c in listed],
        "settlement": [c.settlement for c in listed], "snapshot_ts": t})
    return {r.symbol: _option_quote_object(r, t) for r in price_contracts(listed[0].underlying, s, rows, seed).itertuples()}


def _option_quote_object(r: Any, t: pd.Timestamp) -> dict[str, Any]:
    last = float(r.last) if np.isfinite(r.last) else float(r.mid)
    sym = r.symbol
    return {
        "Symbol": str(sym), "Open": num(last), "High": num(last), "Low": num(last), "PreviousClose": num(last),
        "Last": num(last), "Ask": num(r.ask), "AskSize": "10", "Bid": num(r.bid), "BidSize": "10",
        "NetChange": "0", "NetChangePct": "0", "Volume": str(int(r.volume)), "PreviousVolume": "0",
        "Close": num(last), "DailyOpenInterest": str(int(r.open_interest)), "TradeTime": rfc3339(t),
        "TickSizeTier": "0", "MarketFlags": {"IsDelayed": False, "IsHardToBorrow": False, "IsBats": False,
                                             "IsHalted": False},
    }


def symbol_detail(symbol: str, day: dt.date) -> dict[str, Any] | None:
    """A ``SymbolDetail`` of an underlying or option symbol (``None`` when unknown)."""
    pf = {"Format": "Decimal", "Decimals": "2", "IncrementStyle": "Simple", "Increment": "0.01", "PointValue": "1"}
    qf = {"Format": "Decimal", "Decimals": "0", "IncrementStyle": "Simple", "Increment": "1",
          "MinimumTradeQuantity": "1"}
    u = underlying_of(symbol)
    if u is not None:
        index = u.listing_style == "index_am_pm"
        return {"AssetType": "INDEX" if index else "STOCK", "Country": "United States", "Currency": "USD",
                "Description": f"{u.name} (simulated)", "Exchange": "CBOE" if index else "NYSE Arca",
                "Symbol": u.ts_symbol, "Root": u.name, "PriceFormat": pf, "QuantityFormat": qf}
    c = contract_of(symbol)
    if c is None:
        return None
    index = c.underlying.listing_style == "index_am_pm"
    return {"AssetType": "INDEXOPTION" if index else "STOCKOPTION", "Country": "United States", "Currency": "USD",
            "Description": f"{c.underlying.name} {c.symbol.expiration:%b %Y} {c.symbol.strike:.3f} "
                           f"{'Call' if c.symbol.right == 'C' else 'Put'}",
            "Exchange": "OPRA", "ExpirationDate": f"{c.symbol.expiration:%Y-%m-%d}T00:00:00Z",
            "Symbol": str(c.symbol), "OptionType": "CALL" if c.symbol.right == "C" else "PUT",
            "Root": c.symbol.root, "StrikePrice": format_strike(c.symbol.strike), "Underlying": c.underlying.ts_symbol,
            "PriceFormat": dict(pf, PointValue="100"), "QuantityFormat": qf}


SPREAD_TYPES = [("Single", False, False), ("Straddle", False, False), ("Vertical", True, False),
                ("Strangle", True, False), ("RatioBack1x2", True, False), ("RatioBack1x3", True, False),
                ("RatioBack2x3", True, False), ("Butterfly", True, False), ("IronButterfly", True, False),
                ("Condor", True, False), ("IronCondor", True, False), ("Covered", False, False),
                ("Collar", True, False), ("Combo", False, False), ("Calendar", False, True),
                ("Diagonal", True, True)]
SPREAD_STRIKES = {"Single": 1, "Straddle": 1, "Vertical": 2, "Strangle": 2, "RatioBack1x2": 2, "RatioBack1x3": 2,
                  "RatioBack2x3": 2, "Butterfly": 3, "IronButterfly": 3, "Condor": 4, "IronCondor": 4,
                  "Covered": 1, "Collar": 2, "Combo": 1, "Calendar": 1, "Diagonal": 2}


def risk_reward(spread_price: float, legs: list[tuple[OptionSymbol, int]]) -> dict[str, Any]:
    """Risk/reward at expiration of one-expiration option legs (USD per spread, 100 shares per contract)."""
    strikes = sorted({leg.strike for leg, _ in legs})
    grid = np.unique(np.concatenate([[0.0], strikes, [strikes[-1] * 4 + 1]]))

    def payoff(s: np.ndarray) -> np.ndarray:
        total = np.zeros_like(s)
        for leg, qty in legs:
            intrinsic = np.maximum(s - leg.strike, 0) if leg.right == "C" else np.maximum(leg.strike - s, 0)
            total += qty * intrinsic
        return 100.0 * (total - spread_price)

    values = payoff(grid)
    slope = float(payoff(np.array([grid[-1] + 1]))[0] - values[-1])
    breakevens = []
    for a, b, va, vb in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
        if va == 0:
            breakevens.append(a)
        elif va * vb < 0:
            breakevens.append(a + (b - a) * va / (va - vb))
    return {"MaxGainIsInfinite": slope > 1e-9, "AdjustedMaxGain": num(max(float(values.max()), 0.0)),
            "MaxLossIsInfinite": slope < -1e-9, "AdjustedMaxLoss": num(min(float(values.min()), 0.0)),
            "BreakevenPoints": [num(x) for x in breakevens]}
