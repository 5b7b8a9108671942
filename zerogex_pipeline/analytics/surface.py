"""GEX surface: per snapshot and strike, call/put/net GEX of one expiration's chain.

Input: an ``option_chain_snapshots`` frame (see ``zerogex_pipeline.schemas``). The IV used is the
source's own IV when it gives one (> 0); a contract without a usable IV is kept in the table with a null
IV and contributes 0 GEX (never a default IV).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics.black_scholes import gamma
from zerogex_pipeline.analytics.expiry import settlement_instants, time_to_expiry_years
from zerogex_pipeline.underlyings import CONTRACT_MULTIPLIER

GEX_PER_PCT = CONTRACT_MULTIPLIER * 0.01
"""GEX = sign · Γ · OI · 100 · S² · 0.01 (USD per 1% move)."""


def contract_gex(
    gamma_per_share: np.ndarray, open_interest: np.ndarray, spot: np.ndarray, is_call: np.ndarray
) -> np.ndarray:
    """Dealer GEX per contract line, USD per 1% move: calls +, puts -."""
    sign = np.where(is_call, 1.0, -1.0)
    return np.asarray(sign * gamma_per_share * open_interest * GEX_PER_PCT * spot * spot, dtype=np.float64)


def build_surface(chain: pd.DataFrame, rate: float, dividend_yield: float) -> pd.DataFrame:
    """Aggregate a chain frame into one row per (snapshot, strike) with call, put and net GEX.

    Args:
        chain: ``option_chain_snapshots`` rows (one expiration or several).
        rate: risk-free rate r, annualized continuous.
        dividend_yield: q, annualized continuous.
    """
    if chain.empty:
        return pd.DataFrame()
    T = time_to_expiry_years(chain["snapshot_ts"], settlement_instants(chain["expiration"], chain["settlement"]))
    iv = chain["iv"].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(iv) & (iv > 0.0) & (T > 0.0)
    iv = np.where(usable, iv, np.nan)
    spot = chain["spot"].to_numpy(dtype=np.float64)
    g = np.where(usable, gamma(spot, chain["strike"].to_numpy(dtype=np.float64), T, iv, rate, dividend_yield), np.nan)
    is_call = (chain["option_type"] == "C").to_numpy()
    oi = chain["open_interest"].to_numpy(dtype=np.float64)
    gex = contract_gex(np.nan_to_num(g), oi, spot, is_call)

    keys = ["underlying", "session_date", "expiration", "snapshot_ts", "strike"]
    lines = pd.DataFrame({
        "row": np.arange(len(chain)),
        "is_call": is_call,
        "oi": chain["open_interest"].to_numpy(np.int64),
        "iv": iv,
        "gamma": g,
        "gex": gex,
        "time_to_expiry": T,
    })
    base = chain[keys + ["spot"]].reset_index(drop=True)
    base["time_to_expiry"] = T
    out = base.drop_duplicates(keys).reset_index(drop=True)
    for side, mask in (("call", is_call), ("put", ~is_call)):
        part = pd.concat([base.loc[mask, keys].reset_index(drop=True),
                          lines.loc[mask, ["oi", "iv", "gamma", "gex"]].reset_index(drop=True)], axis=1)
        # Several series can share a strike (SPX AM and PM monthlies): open interest and GEX add up;
        # the IV and gamma shown are OI-weighted averages of the series.
        part["w"] = part["oi"].astype(np.float64)
        part["iv_w"] = part["iv"] * part["w"]
        part["gamma_w"] = part["gamma"] * part["w"]
        agg = part.groupby(keys, sort=False).agg(
            oi=("oi", "sum"), gex=("gex", "sum"), iv_w=("iv_w", "sum"), gamma_w=("gamma_w", "sum"),
            iv_first=("iv", "first"), gamma_first=("gamma", "first"), w=("w", "sum"),
        )
        weighted = agg["w"] > 0
        agg["iv"] = np.where(weighted, agg["iv_w"] / agg["w"].where(weighted, 1.0), agg["iv_first"])
        agg["gamma"] = np.where(weighted, agg["gamma_w"] / agg["w"].where(weighted, 1.0), agg["gamma_first"])
        agg = agg[["oi", "iv", "gamma", "gex"]].add_prefix(f"{side}_").reset_index()
        out = out.merge(agg, on=keys, how="left")
        out[f"{side}_oi"] = out[f"{side}_oi"].fillna(0).astype(np.int64)
        out[f"{side}_gex"] = out[f"{side}_gex"].fillna(0.0)
    out["net_gex"] = out["call_gex"] + out["put_gex"]
    out["rate"] = rate
    out["dividend_yield"] = dividend_yield
    return out.sort_values(["snapshot_ts", "strike"], kind="stable").reset_index(drop=True)
