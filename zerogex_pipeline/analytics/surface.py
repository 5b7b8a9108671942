"""GEX surface: per snapshot, expiration and strike, call/put/net exposures of the chain.

Input: an ``option_chain_snapshots`` frame (see ``zerogex_pipeline.schemas``). IV per contract: the vendor
IV when given (> 0), else solved from the mid (sane quote) or the last trade (see
:mod:`zerogex_pipeline.analytics.chain`); a contract without a usable IV is kept with a null IV and
contributes 0 to every exposure (never a default IV). Units and the sign convention are those of
:mod:`zerogex_pipeline.analytics.engine` (GEX USD per 1%, DEX USD, VEX USD per vol point, CEX USD per day;
calls +, puts -).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics.black_scholes import greeks
from zerogex_pipeline.analytics.chain import IV_SOURCES, choose_iv, time_to_expiry
from zerogex_pipeline.analytics.engine import T_CONVENTION
from zerogex_pipeline.underlyings import CONTRACT_MULTIPLIER

GEX_PER_PCT = CONTRACT_MULTIPLIER * 0.01
"""GEX = sign · Γ · OI · 100 · S² · 0.01 (USD per 1% move)."""
_SUMMED = ("oi", "volume", "gex", "gex_volume", "dex", "vex", "cex")


def contract_gex(
    gamma_per_share: np.ndarray, open_interest: np.ndarray, spot: np.ndarray, is_call: np.ndarray
) -> np.ndarray:
    """Dealer GEX per contract line, USD per 1% move: calls +, puts -."""
    sign = np.where(is_call, 1.0, -1.0)
    return np.asarray(sign * gamma_per_share * open_interest * GEX_PER_PCT * spot * spot, dtype=np.float64)


def build_surface(chain: pd.DataFrame, rate: float, dividend_yield: float) -> pd.DataFrame:
    """Aggregate a chain frame into one row per (snapshot, expiration, settlement, strike) with exposures.

    Args:
        chain: ``option_chain_snapshots`` rows (any number of snapshots and expirations).
        rate: risk-free rate r, annualized continuous.
        dividend_yield: q, annualized continuous.
    """
    if chain.empty:
        return pd.DataFrame()
    chain = chain.reset_index(drop=True)
    T = time_to_expiry(chain)
    choice = choose_iv(chain, T, rate, dividend_yield)
    usable = np.isfinite(choice.iv) & (T > 0.0)
    iv = np.where(usable, choice.iv, np.nan)
    spot = chain["spot"].to_numpy(dtype=np.float64)
    is_call = (chain["option_type"] == "C").to_numpy()
    g = greeks(spot, chain["strike"].to_numpy(dtype=np.float64), T, iv, rate, dividend_yield, is_call)
    sign = np.where(is_call, 1.0, -1.0)
    oi = chain["open_interest"].to_numpy(dtype=np.float64)
    vol = chain["volume"].to_numpy(dtype=np.float64)
    so = sign * oi * CONTRACT_MULTIPLIER
    keys = ["underlying", "session_date", "expiration", "snapshot_ts", "strike", "settlement"]
    lines = chain[keys].copy()
    lines["oi"] = oi
    lines["volume"] = vol
    lines["iv"] = iv
    lines["gamma"] = np.where(usable, g.gamma, np.nan)
    lines["gex"] = so * g.gamma * spot * spot * 0.01
    lines["gex_volume"] = sign * vol * CONTRACT_MULTIPLIER * g.gamma * spot * spot * 0.01
    lines["dex"] = so * g.delta * spot
    lines["vex"] = so * g.vanna * spot * 0.01
    lines["cex"] = so * g.charm * spot / 365.0
    lines["iv_source"] = np.asarray(IV_SOURCES, dtype=object)[choice.source]
    lines["w"] = oi
    lines["iv_w"] = lines["iv"] * oi
    lines["gamma_w"] = lines["gamma"] * oi

    base = chain[[*keys, "spot"]].copy()
    base["time_to_expiry"] = T
    out = base.drop_duplicates(keys).reset_index(drop=True)
    for side, mask in (("call", is_call), ("put", ~is_call)):
        # AM and PM series (SPX monthlies) are separate rows. Should two series of one settlement ever share
        # a strike, OI and exposures add up, the IV and gamma shown are OI-weighted averages and the IV
        # source is the first series'.
        agg = lines[mask].groupby(keys, sort=False).agg(
            **{c: (c, "sum") for c in _SUMMED}, iv_w=("iv_w", "sum"), gamma_w=("gamma_w", "sum"),
            w=("w", "sum"), iv_first=("iv", "first"), gamma_first=("gamma", "first"),
            iv_source=("iv_source", "first"),
        )
        weighted = agg["w"] > 0
        agg["iv"] = np.where(weighted, agg["iv_w"] / agg["w"].where(weighted, 1.0), agg["iv_first"])
        agg["gamma"] = np.where(weighted, agg["gamma_w"] / agg["w"].where(weighted, 1.0), agg["gamma_first"])
        agg = agg[[*_SUMMED, "iv", "gamma", "iv_source"]].add_prefix(f"{side}_").reset_index()
        out = out.merge(agg, on=keys, how="left")
        for c in _SUMMED:
            out[f"{side}_{c}"] = out[f"{side}_{c}"].fillna(0.0)
        out[f"{side}_oi"] = out[f"{side}_oi"].astype(np.int64)
        out[f"{side}_volume"] = out[f"{side}_volume"].astype(np.int64)
    for c in ("gex", "gex_volume", "dex", "vex", "cex"):
        out[f"net_{c}"] = out[f"call_{c}"] + out[f"put_{c}"]
    out["rate"] = rate
    out["dividend_yield"] = dividend_yield
    out["t_convention"] = T_CONVENTION
    return out.sort_values(["snapshot_ts", "expiration", "settlement", "strike"], kind="stable").reset_index(drop=True)
