"""GEX levels of one snapshot across expirations: totals, walls, gamma profile and zero gamma.

The gamma profile re-prices every contract's gamma at hypothetical spot levels keeping its own IV
(sticky strike) and sums dealer GEX at each level. Zero gamma is the crossing of that profile nearest
to spot, refined by root finding; net GEX at spot is read off the same profile so the signs agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import brentq

from zerogex_pipeline.analytics import CONVENTION
from zerogex_pipeline.analytics.black_scholes import gamma
from zerogex_pipeline.analytics.surface import GEX_PER_PCT

PROFILE_HALF_WIDTH = 0.20
"""The profile grid spans spot · (1 ± 0.20)."""
PROFILE_POINTS = 81


@dataclass(frozen=True)
class ContractBook:
    """Flat arrays of the contracts of one snapshot that have a usable IV (one entry per side/strike/expiry)."""

    strike: npt.NDArray[np.float64]
    time_to_expiry: npt.NDArray[np.float64]
    iv: npt.NDArray[np.float64]
    open_interest: npt.NDArray[np.float64]
    sign: npt.NDArray[np.float64]
    rate: float
    dividend_yield: float

    def net_gex_at(self, level: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Net dealer GEX (USD per 1%) if spot were ``level`` (scalar or 1-D array of levels)."""
        levels = np.atleast_1d(np.asarray(level, dtype=np.float64))[:, None]
        g = gamma(levels, self.strike, self.time_to_expiry, self.iv, self.rate, self.dividend_yield)
        weights = self.sign * self.open_interest * GEX_PER_PCT
        return np.asarray((g * weights).sum(axis=1) * levels[:, 0] ** 2, dtype=np.float64)


def book_from_surface(rows: pd.DataFrame) -> ContractBook:
    """Build the contract book of one snapshot from its ``gex_surface`` rows (any number of expirations)."""
    parts = []
    for side, sign in (("call", 1.0), ("put", -1.0)):
        iv = rows[f"{side}_iv"].to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(iv) & (iv > 0) & (rows["time_to_expiry"].to_numpy() > 0)
        parts.append((rows.loc[ok, "strike"].to_numpy(np.float64), rows.loc[ok, "time_to_expiry"].to_numpy(np.float64),
                      iv[ok], rows.loc[ok, f"{side}_oi"].to_numpy(np.float64), np.full(ok.sum(), sign)))
    strike, tte, iv, oi, sign = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    return ContractBook(strike, tte, iv, oi, sign, float(rows["rate"].iloc[0]), float(rows["dividend_yield"].iloc[0]))


def zero_gamma(book: ContractBook, spot: float) -> tuple[float | None, str | None]:
    """Zero-gamma level nearest spot on the ±20% grid, refined with Brent's method.

    Returns ``(level, None)``, or ``(None, reason)`` when the profile does not cross zero on the grid.
    """
    if book.strike.size == 0:
        return None, "no contracts with a usable implied volatility"
    grid = np.linspace(spot * (1 - PROFILE_HALF_WIDTH), spot * (1 + PROFILE_HALF_WIDTH), PROFILE_POINTS)
    profile = book.net_gex_at(grid)
    crossings = np.nonzero(np.sign(profile[:-1]) * np.sign(profile[1:]) < 0)[0]
    if crossings.size == 0:
        return None, f"gamma profile does not change sign within ±{PROFILE_HALF_WIDTH:.0%} of spot"
    nearest = crossings[np.argmin(np.abs((grid[crossings] + grid[crossings + 1]) / 2 - spot))]
    root = brentq(lambda x: float(book.net_gex_at(x)[0]), grid[nearest], grid[nearest + 1], xtol=1e-6)
    return float(root), None


def snapshot_levels(rows: pd.DataFrame) -> dict[str, object]:
    """Levels of one snapshot from its ``gex_surface`` rows across expirations."""
    spot = float(rows["spot"].iloc[0])
    by_strike = rows.groupby("strike", sort=True)[["call_gex", "put_gex"]].sum()
    strikes = by_strike.index.to_numpy(dtype=np.float64)
    call_by_strike = by_strike["call_gex"].to_numpy()
    put_by_strike = by_strike["put_gex"].to_numpy()

    call_wall = call_wall_gex = put_wall = put_wall_gex = None
    above = strikes >= spot
    if above.any() and call_by_strike[above].max() > 0:
        i = np.flatnonzero(above)[np.argmax(call_by_strike[above])]
        call_wall, call_wall_gex = float(strikes[i]), float(call_by_strike[i])
    below = strikes <= spot
    if below.any() and put_by_strike[below].min() < 0:
        i = np.flatnonzero(below)[np.argmin(put_by_strike[below])]
        put_wall, put_wall_gex = float(strikes[i]), float(put_by_strike[i])

    book = book_from_surface(rows)
    flip, reason = zero_gamma(book, spot)
    return {
        "spot": spot,
        "net_gex": float(call_by_strike.sum() + put_by_strike.sum()),
        "call_gex": float(call_by_strike.sum()),
        "put_gex": float(put_by_strike.sum()),
        "net_gex_at_spot": float(book.net_gex_at(spot)[0]) if book.strike.size else 0.0,
        "zero_gamma": flip,
        "zero_gamma_reason": reason,
        "call_wall": call_wall,
        "call_wall_gex": call_wall_gex,
        "put_wall": put_wall,
        "put_wall_gex": put_wall_gex,
        "expirations": int(rows["expiration"].nunique()),
        "contracts": int(book.strike.size),
        "rate": float(rows["rate"].iloc[0]),
        "dividend_yield": float(rows["dividend_yield"].iloc[0]),
        "convention": CONVENTION,
    }


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
