"""Simulated option quotes: a skewed, term-structured smile, Black-Scholes prices, spreads, OI, volume.

Implied volatility of a contract: ``σ_atm(T) · (1 - 0.10·m + 0.02·m²)`` with normalized moneyness
``m = ln(K/F) / (σ_atm √T)``, clipped to [0.5, 3]·σ_atm; ``σ_atm(T)`` decays from a short-dated level
(the day's volatility regime plus a premium, raised intraday when spot falls) to a long-run level.
Calls and puts at one strike share that IV, so put-call parity holds at the model prices and quotes
straddle them. Open interest depends only on the date (it changes overnight), concentrates at round
strikes, and leans to puts below and calls above the previous close.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics import black_scholes as bsm
from zerogex_pipeline.analytics.expiry import settlement_instants, time_to_expiry_years
from zerogex_pipeline.sources.simulated.listing import is_monthly
from zerogex_pipeline.sources.simulated.seeds import rng
from zerogex_pipeline.underlyings import Underlying

SIM_RATE = 0.04
"""Risk-free rate the simulated market prices with."""
LONG_RUN_VOL = {"SPY": 0.18, "SPX": 0.18, "QQQ": 0.23}
SPREAD_FRACTION = {"SPY": 0.006, "QQQ": 0.008, "SPX": 0.012}
SPOT_VOL_BETA = -4.0


def tick_size(underlying: Underlying, price: np.ndarray) -> np.ndarray:
    """Minimum price increment: SPX 0.05 below $3 and 0.10 above; ETFs 0.01."""
    if underlying.listing_style == "index_am_pm":
        return np.where(price < 3.0, 0.05, 0.10)
    return np.full_like(price, 0.01)


def smile_iv(
    underlying: Underlying, regime_vol: float, spot: np.ndarray, open_spot: float, strike: np.ndarray,
    T: np.ndarray, q: float,
) -> np.ndarray:
    """Implied volatility of each contract (annualized) at the given spot."""
    long_run = LONG_RUN_VOL.get(underlying.name, 0.2)
    short = 1.1 * regime_vol * np.exp(SPOT_VOL_BETA * np.log(spot / open_spot))
    T_eff = np.maximum(T, 1.0 / (365.0 * 24.0))
    atm = long_run + (short - long_run) * np.exp(-T_eff / 0.25)
    fwd = spot * np.exp((SIM_RATE - q) * T_eff)
    m = np.log(strike / fwd) / (atm * np.sqrt(T_eff))
    return np.clip(atm * (1.0 - 0.10 * m + 0.02 * m * m), 0.5 * atm, 3.0 * atm)


def open_interest(
    underlying: Underlying, root: str, expiration: dt.date, as_of: dt.date, strike: np.ndarray,
    is_call: np.ndarray, center: float,
) -> np.ndarray:
    """Open interest (contracts) as of the previous close: fixed for the whole session ``as_of``."""
    step = underlying.strike_step
    days = max((expiration - as_of).days, 0)
    scale = 6_000.0 if is_monthly(expiration) else 1_200.0 * min(1.0, 3.0 / (days + 1) + 0.3)
    if underlying.listing_style == "index_am_pm":
        scale *= 0.25
    k = np.log(strike / center)
    width = 0.025 + 0.15 * np.sqrt(days / 365.0)
    shape = np.exp(-np.abs(k) / width)
    lean = np.where(is_call, np.where(k > 0, 1.8, 0.35), np.where(k < 0, 2.0, 0.35))
    units = np.round(strike / step).astype(np.int64)
    roundness = 1.0 + 1.5 * (units % 5 == 0) + 2.0 * (units % 10 == 0) + 3.0 * (units % 50 == 0)
    gen = rng(underlying.name, root, expiration.isoformat(), as_of.isoformat(), "open-interest")
    noise = gen.lognormal(0.0, 0.35, strike.shape)
    return np.floor(scale * shape * lean * roundness * noise).astype(np.int64)


def session_fraction_traded(fraction_elapsed: np.ndarray) -> np.ndarray:
    """Share of the day's volume traded by each session fraction (integral of the U-shaped profile)."""
    x = np.clip(fraction_elapsed, 0.0, 1.0)
    # ∫0^x (1 + 2.4(2u-1)²) du = x + 0.2((2x-1)³ + 1), normalized by its value at 1 (1.4).
    return (x + 0.2 * ((2 * x - 1) ** 3 + 1)) / 1.4


def price_chain(
    underlying: Underlying,
    contracts: pd.DataFrame,
    regime_vol: float,
    open_spot: float,
    fraction_elapsed: np.ndarray,
    seed_parts: tuple[object, ...],
) -> pd.DataFrame:
    """Quote every row of ``contracts`` (columns: expiration, settlement, snapshot_ts, strike, option_type,
    spot, open_interest) and return it with bid/ask/last/mid/volume and vendor IV/greeks added."""
    q = underlying.dividend_yield
    S = contracts["spot"].to_numpy(np.float64)
    K = contracts["strike"].to_numpy(np.float64)
    is_call = (contracts["option_type"] == "C").to_numpy()
    T = time_to_expiry_years(
        contracts["snapshot_ts"], settlement_instants(contracts["expiration"], contracts["settlement"])
    )
    iv = smile_iv(underlying, regime_vol, S, open_spot, K, T, q)
    model = bsm.price(S, K, T, iv, SIM_RATE, q, is_call)
    tick = tick_size(underlying, model)
    half = np.maximum(tick, SPREAD_FRACTION.get(underlying.name, 0.01) * model)
    bid = np.maximum(np.floor((model - half) / tick + 1e-9) * tick, 0.0)
    ask = np.maximum(np.ceil((model + half) / tick - 1e-9) * tick, bid + tick)

    gen = rng(*seed_parts, "trades")
    oi = contracts["open_interest"].to_numpy(np.float64)
    days = np.maximum(T * 365.0, 0.02)
    turnover = 0.05 + 1.2 / (1.0 + days)
    atm_weight = np.exp(-np.abs(np.log(K / S)) / 0.03)
    daily = oi * turnover * (0.3 + atm_weight) * gen.lognormal(0.0, 0.3, len(oi))
    volume = np.floor(daily * session_fraction_traded(fraction_elapsed)).astype(np.int64)
    last = np.round((model + gen.uniform(-1.0, 1.0, len(oi)) * half * 0.5) / tick) * tick
    last = np.where(volume > 0, np.maximum(last, tick), np.nan)

    out = contracts.copy()
    out["bid"] = np.round(bid, 2)
    out["ask"] = np.round(ask, 2)
    out["mid"] = np.round((out["bid"] + out["ask"]) / 2.0, 4)
    out["last"] = np.round(last, 2)
    out["volume"] = volume
    live = T > 0
    out["iv"] = np.where(live, iv, np.nan)
    out["delta"] = np.where(live, bsm.delta(S, K, T, iv, SIM_RATE, q, is_call), np.nan)
    out["gamma"] = np.where(live, bsm.gamma(S, K, T, iv, SIM_RATE, q), np.nan)
    out["vega"] = np.where(live, bsm.vega(S, K, T, iv, SIM_RATE, q) / 100.0, np.nan)
    out["theta"] = np.where(live, bsm.theta(S, K, T, iv, SIM_RATE, q, is_call) / 365.0, np.nan)
    return out
