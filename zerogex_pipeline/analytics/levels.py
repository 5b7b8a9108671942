"""GEX levels of one snapshot across expirations, from its ``gex_surface`` rows.

Every figure comes from :func:`zerogex_pipeline.analytics.engine.compute_product` (walls with the
side-of-spot rule, absolute-gamma strike, max pain per expiration, sticky-strike gamma profile, zero gamma
raw and structural, net GEX at spot off the same profile, flip term structure), fed with the per-strike
rows of the surface (series sharing a strike are represented by their OI-weighted IV).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.engine import FLIP_DTE_REFS, Chain, Product, compute_product


def expiration_codes(expiration: pd.Series | np.ndarray, settlement: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes into sorted expiration labels, one label per (date, settlement).

    An SPX AM monthly is its own expiration (``"2025-01-17 AM"``), so max pain and the per-expiration totals
    never pool it with the PM series of the same date.
    """
    days = np.asarray(pd.to_datetime(np.asarray(expiration)).values.astype("datetime64[D]").astype(np.int64))
    am = np.asarray(settlement) == "AM"
    pairs, inverse = np.unique(days * 2 + am, return_inverse=True)  # labels sort like their (date, AM) pairs
    labels = tuple(str(np.datetime64(int(p // 2), "D")) + (" AM" if p % 2 else "") for p in pairs)
    return np.asarray(inverse, dtype=np.intp).reshape(-1), labels


def chain_from_surface(rows: pd.DataFrame) -> Chain:
    """Engine arrays of one snapshot from its ``gex_surface`` rows (calls then puts)."""
    n = len(rows)
    settlement = rows["settlement"].to_numpy() if "settlement" in rows else np.full(n, "PM")
    codes, uniques = expiration_codes(rows["expiration"], settlement)

    def both(col: str) -> np.ndarray:
        return np.concatenate([rows[f"call_{col}"].to_numpy(np.float64, na_value=np.nan),
                               rows[f"put_{col}"].to_numpy(np.float64, na_value=np.nan)])

    vol = both("volume") if "call_volume" in rows else np.zeros(2 * n)
    return Chain(
        spot=float(rows["spot"].iloc[0]), r=float(rows["rate"].iloc[0]), q=float(rows["dividend_yield"].iloc[0]),
        strike=np.tile(rows["strike"].to_numpy(np.float64), 2),
        T=np.tile(rows["time_to_expiry"].to_numpy(np.float64), 2), iv=both("iv"), oi=both("oi"),
        volume=np.nan_to_num(vol), is_call=np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)],
        expiry=np.tile(codes, 2), expirations=uniques,
    )


def levels_record(p: Product) -> dict[str, object]:
    """The ``gex_levels`` columns of one computed snapshot."""
    t = p.totals
    next_exp = min(p.max_pain) if p.max_pain else None
    rec: dict[str, object] = {
        "spot": p.spot,
        "net_gex": t["net_gex"], "call_gex": t["call_gex"], "put_gex": t["put_gex"],
        "net_gex_at_spot": p.net_gex_at_spot,
        "net_gex_at_spot_structural": p.net_gex_at_spot_structural,
        "zero_gamma": p.zero_gamma.level, "zero_gamma_reason": p.zero_gamma.reason,
        "zero_gamma_raw": p.zero_gamma_raw.level, "zero_gamma_raw_reason": p.zero_gamma_raw.reason,
        "call_wall": p.call_wall, "call_wall_gex": p.call_wall_gex,
        "put_wall": p.put_wall, "put_wall_gex": p.put_wall_gex,
        "abs_gamma_strike": p.abs_gamma_strike, "abs_gamma_gex": p.abs_gamma_gex,
        "net_dex": t["net_dex"], "net_vex": t["net_vex"], "net_cex": t["net_cex"],
        "call_gex_volume": t["call_gex_volume"], "put_gex_volume": t["put_gex_volume"],
        "net_gex_volume": t["net_gex_volume"],
        "max_pain_next": None if next_exp is None else p.max_pain[next_exp],
        "max_pain": json.dumps(p.max_pain, sort_keys=True),
        "coverage": p.inputs["coverage"],
        "t_convention": p.inputs["t_convention"],
    }
    for ref in FLIP_DTE_REFS:
        rec[f"flip_dte_{int(ref)}"] = p.flip_term_structure[ref].level
    return rec


def chain_levels(chain: Chain, iv_sources: dict[str, int], expirations: list[str]) -> dict[str, object]:
    """The ``gex_levels`` columns (without the key columns) of one snapshot's engine arrays.

    ``iv_sources``: contract lines per IV source; ``expirations``: the expiration dates (``YYYY-MM-DD``) aggregated.
    """
    rec = levels_record(compute_product(chain))
    rec["iv_sources"] = json.dumps(iv_sources, sort_keys=True)
    listed = sorted(set(expirations))
    rec.update({
        "expirations": len(listed),
        "expiration_list": json.dumps(listed),
        "contracts": int(np.count_nonzero(np.isfinite(chain.iv) & (chain.T > 0))),
        "rate": chain.r, "dividend_yield": chain.q, "convention": CONVENTION,
    })
    return rec


def snapshot_levels(rows: pd.DataFrame) -> dict[str, object]:
    """Levels of one snapshot from its ``gex_surface`` rows across expirations."""
    sources: dict[str, int] = {}
    if "call_iv_source" in rows:
        counts = pd.concat([rows["call_iv_source"], rows["put_iv_source"]]).value_counts()
        sources = {str(k): int(v) for k, v in counts.items()}
    listed = list(pd.to_datetime(rows["expiration"].unique()).strftime("%Y-%m-%d"))
    return chain_levels(chain_from_surface(rows), sources, listed)


def build_levels(surface: pd.DataFrame) -> pd.DataFrame:
    """One ``gex_levels`` row per snapshot of a day's ``gex_surface`` rows (all its expirations)."""
    if surface.empty:
        return pd.DataFrame()
    records = []
    for (underlying, session_date, snapshot_ts), rows in surface.groupby(
        ["underlying", "session_date", "snapshot_ts"], sort=True
    ):
        records.append({"underlying": underlying, "session_date": session_date, "snapshot_ts": snapshot_ts,
                        **snapshot_levels(rows)})
    return pd.DataFrame.from_records(records)
