"""Frame boundary: an ``option_chain_snapshots`` frame (one snapshot) → :class:`engine.Chain` arrays.

IV source per contract (methodology §3): the vendor IV when given (> 0); otherwise solved from the mid when
the quote is sane (bid > 0, ask >= bid, relative spread <= ``MAX_REL_SPREAD``), else from the last trade;
a failed or saturated solve leaves NaN (the contract is then excluded from model greeks, never defaulted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from zerogex_pipeline.analytics.engine import Chain
from zerogex_pipeline.analytics.expiry import DEFAULT_FLOOR_MINUTES, settlement_instants, time_to_expiry_years
from zerogex_pipeline.analytics.implied_vol import REASON_NAMES, implied_vol

MAX_REL_SPREAD = 0.5
"""A quote whose (ask - bid) / mid exceeds this is not sane enough to solve IV from the mid."""
IV_SOURCES = ("vendor", "mid", "last", "none")


@dataclass(frozen=True)
class IVChoice:
    """Per-contract IV (NaN = unusable), its source (index into ``IV_SOURCES``) and the solver reason name."""

    iv: npt.NDArray[np.float64]
    source: npt.NDArray[np.int8]
    reason: npt.NDArray[np.object_]


def choose_iv(frame: pd.DataFrame, T: npt.NDArray[np.float64], rate: float, dividend_yield: float) -> IVChoice:
    """Vendor IV where usable, else solve from mid (sane quote) or last; NaN with a reason otherwise."""
    def col(name: str) -> npt.NDArray[np.float64]:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)

    return choose_iv_arrays(col("iv"), col("bid"), col("ask"), col("mid"), col("last"), col("spot"), col("strike"), T,
                            rate, dividend_yield, (frame["option_type"] == "C").to_numpy())


def choose_iv_arrays(
    vendor: npt.NDArray[np.float64], bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64],
    mid: npt.NDArray[np.float64], last: npt.NDArray[np.float64], spot: npt.NDArray[np.float64],
    strike: npt.NDArray[np.float64], T: npt.NDArray[np.float64], rate: float, dividend_yield: float,
    is_call: npt.NDArray[np.bool_],
) -> IVChoice:
    """:func:`choose_iv` on arrays (one entry per contract; prices USD per share, T years, NaN = missing)."""
    n = vendor.size
    have_vendor = np.isfinite(vendor) & (vendor > 0) & (T > 0)
    iv = np.where(have_vendor, vendor, np.nan)
    source = np.where(have_vendor, 0, 3).astype(np.int8)
    reason = np.full(n, None, dtype=object)
    reason[have_vendor] = "ok"
    reason[~have_vendor & (T <= 0)] = "expired"
    need = ~have_vendor & (T > 0)
    if need.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            sane = (bid > 0) & (ask >= bid) & ((ask - bid) / mid <= MAX_REL_SPREAD)
        use_last = need & ~sane & np.isfinite(last) & (last > 0)
        use_mid = need & sane
        target = np.where(use_mid, mid, last)
        todo = use_mid | use_last
        idx = np.flatnonzero(todo)
        if idx.size:
            res = implied_vol(target[idx], spot[idx], strike[idx], T[idx], rate, dividend_yield, is_call[idx])
            iv[idx] = res.iv
            solved = res.reason == 0
            source[idx[solved]] = np.where(use_mid[idx[solved]], 1, 2)
            reason[idx] = [REASON_NAMES[int(c)] for c in res.reason]
        reason[need & ~todo] = "no_price"
    return IVChoice(iv, source, reason)


def time_to_expiry(frame: pd.DataFrame, floor_minutes: float = DEFAULT_FLOOR_MINUTES) -> npt.NDArray[np.float64]:
    """Years (365-day) from each row's snapshot to its settlement instant; 0 once settled."""
    settles = settlement_instants(frame["expiration"], frame["settlement"])
    return time_to_expiry_years(frame["snapshot_ts"], settles, floor_minutes)


def chain_from_frame(
    frame: pd.DataFrame, rate: float, dividend_yield: float, floor_minutes: float = DEFAULT_FLOOR_MINUTES,
    T: npt.NDArray[np.float64] | None = None, iv: IVChoice | None = None,
) -> tuple[Chain, IVChoice]:
    """The engine arrays of one snapshot's chain rows (all expirations) and the IV choice made."""
    if frame.empty:
        raise ValueError("chain frame: no rows")
    if frame["snapshot_ts"].nunique() != 1:
        raise ValueError("chain frame: expected one snapshot, got several snapshot_ts values")
    spot = float(frame["spot"].iloc[0])
    if not np.isfinite(spot) or spot <= 0:
        raise ValueError(f"chain frame: spot {spot} must be positive")
    T_ = time_to_expiry(frame, floor_minutes) if T is None else T
    choice = choose_iv(frame, T_, rate, dividend_yield) if iv is None else iv
    exp_dates = pd.to_datetime(frame["expiration"]).dt.strftime("%Y-%m-%d")
    codes, uniques = pd.factorize(exp_dates, sort=True)
    chain = Chain(
        spot=spot, r=rate, q=dividend_yield,
        strike=frame["strike"].to_numpy(np.float64), T=np.asarray(T_, dtype=np.float64), iv=choice.iv,
        oi=frame["open_interest"].to_numpy(np.float64), volume=frame["volume"].to_numpy(np.float64),
        is_call=(frame["option_type"] == "C").to_numpy(), expiry=np.asarray(codes, dtype=np.intp),
        expirations=tuple(str(u) for u in uniques),
    )
    return chain, choice


def iv_source_counts(choice: IVChoice) -> dict[str, int]:
    """Contracts per IV source name."""
    counts = np.bincount(choice.source.astype(np.intp), minlength=len(IV_SOURCES))
    return {name: int(c) for name, c in zip(IV_SOURCES, counts, strict=True)}
