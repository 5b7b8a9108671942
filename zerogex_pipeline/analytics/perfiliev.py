"""The Perfiliev-compatible convention (methodology §5), for parity with public tools on CBOE exports.

The published recipe (Perfiliev, 2022): spot GEX from the file's own per-contract gamma
(calls ``Γ·OI·100·S²·0.01``, puts negative); a gamma profile over ``linspace(0.8·S, 1.2·S, 60)`` with
r = q = 0, each contract's file IV and ``T = numpy.busday_count(file date, expiration) / 262`` (1/262 when
that is 0); contracts with T = 0 or IV = 0 contribute 0; zero gamma is the first sign change of the
all-expiries profile, linearly interpolated ``ZG = L₊ - (L₊ - L₋)·P₊/(P₊ - P₋)``; "ex-next expiry" drops the
earliest expiration, "ex-next monthly" the next third-Friday expiration; walls are plain argmax by strike.

Same numbers as the recipe (to floating-point summation order), computed with one matrix pass over the
profile (see :mod:`zerogex_pipeline.analytics.profile`) instead of per-level passes. All money in USD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from zerogex_pipeline.analytics.profile import GammaBook

FloatArray = npt.NDArray[np.float64]
BUSINESS_DAYS_PER_YEAR = 262.0
N_LEVELS = 60
CONVENTION = "perfiliev-2022: file gamma at spot; r=q=0; T=busdays/262; 60-level linspace(0.8S,1.2S); linear ZG"


@dataclass(frozen=True)
class PerfilievInputs:
    """One line per (expiration, strike) of the export, as arrays. Money in USD, IV annualized decimal."""

    spot: float
    file_date: np.datetime64
    expiration: npt.NDArray[np.datetime64]
    strike: FloatArray
    call_iv: FloatArray
    put_iv: FloatArray
    call_oi: FloatArray
    put_oi: FloatArray
    call_gamma: FloatArray
    put_gamma: FloatArray


@dataclass
class PerfilievResult:
    """The recipe's outputs (USD per 1% move; levels in USD)."""

    spot: float
    call_gex: float
    put_gex: float
    total_gex: float
    strikes: FloatArray
    call_gex_by_strike: FloatArray
    put_gex_by_strike: FloatArray
    call_wall: float
    put_wall: float
    abs_gamma_strike: float
    levels: FloatArray
    profile: FloatArray
    profile_ex_next: FloatArray
    profile_ex_monthly: FloatArray
    zero_gamma: float | None
    profile_nearest_spot: float
    gex_at_spot: float


def is_third_friday(days: npt.NDArray[np.datetime64]) -> npt.NDArray[np.bool_]:
    """True for dates that are the third Friday of their month."""
    d = days.astype("datetime64[D]")
    weekday = (d.astype(np.int64) - 4) % 7  # 1970-01-01 was a Thursday: Monday = 0
    dom = (d - d.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    return np.asarray((weekday == 4) & (dom >= 15) & (dom <= 21))


def time_to_expiry(file_date: np.datetime64, expiration: npt.NDArray[np.datetime64]) -> FloatArray:
    """``busday_count(file_date, expiration) / 262``, and 1/262 where the count is 0 (the recipe's T)."""
    days = np.busday_count(file_date.astype("datetime64[D]"), expiration.astype("datetime64[D]")).astype(np.float64)
    return np.where(days == 0, 1.0, days) / BUSINESS_DAYS_PER_YEAR


def zero_gamma_linear(levels: FloatArray, profile: FloatArray) -> float | None:
    """First sign change of ``profile`` over ``levels``, linearly interpolated; ``None`` if it never changes sign."""
    idx = np.flatnonzero(np.diff(np.sign(profile)))
    if idx.size == 0:
        return None
    i = idx[0]
    neg_l, pos_l, neg_p, pos_p = levels[i], levels[i + 1], profile[i], profile[i + 1]
    return float(pos_l - (pos_l - neg_l) * pos_p / (pos_p - neg_p))


def compute(inp: PerfilievInputs) -> PerfilievResult:
    """Run the recipe on one export."""
    S = inp.spot
    call_gex = inp.call_gamma * inp.call_oi * 100.0 * S * S * 0.01
    put_gex = -inp.put_gamma * inp.put_oi * 100.0 * S * S * 0.01
    strikes, code = np.unique(inp.strike, return_inverse=True)
    call_k = np.bincount(code, weights=call_gex, minlength=strikes.size).astype(np.float64)
    put_k = np.bincount(code, weights=put_gex, minlength=strikes.size).astype(np.float64)

    T = time_to_expiry(inp.file_date, inp.expiration)
    exp = inp.expiration.astype("datetime64[D]")
    next_exp = exp.min()
    fridays = exp[is_third_friday(exp)]
    next_monthly = fridays.min() if fridays.size else None
    n = inp.strike.size
    strike2 = np.concatenate([inp.strike, inp.strike])
    T2 = np.concatenate([T, T])
    iv2 = np.concatenate([inp.call_iv, inp.put_iv])
    oi2 = np.concatenate([inp.call_oi, inp.put_oi])
    sign2 = np.concatenate([np.ones(n), -np.ones(n)])
    exp2 = np.concatenate([exp, exp])
    keep_next = (exp2 != next_exp).astype(np.float64)
    keep_monthly = np.ones(2 * n) if next_monthly is None else (exp2 != next_monthly).astype(np.float64)
    # GammaBook drops contracts with IV = 0 or OI = 0: the recipe gives them exactly 0.
    ok = (iv2 > 0) & (oi2 != 0)
    book = GammaBook.build(strike2[ok], T2[ok], iv2[ok], oi2[ok], sign2[ok], 0.0, 0.0)
    weights = np.stack([book.c, book.c * keep_next[ok], book.c * keep_monthly[ok]], axis=1)
    levels = np.linspace(0.8 * S, 1.2 * S, N_LEVELS)
    lo, hi = min(levels[0], S), max(levels[-1], S)
    small = book.restrict(lo, hi)
    small_w = weights if small is book else _restrict_weights(book, weights, lo, hi)
    prof = small.profiles(np.append(levels, S), small_w)
    profile = prof[:N_LEVELS]
    return PerfilievResult(
        spot=S, call_gex=float(call_gex.sum()), put_gex=float(put_gex.sum()),
        total_gex=float(call_gex.sum() + put_gex.sum()), strikes=strikes,
        call_gex_by_strike=call_k, put_gex_by_strike=put_k,
        call_wall=float(strikes[np.argmax(call_k)]), put_wall=float(strikes[np.argmax(np.abs(put_k))]),
        abs_gamma_strike=float(strikes[np.argmax(np.abs(call_k) + np.abs(put_k))]),
        levels=levels, profile=profile[:, 0], profile_ex_next=profile[:, 1], profile_ex_monthly=profile[:, 2],
        zero_gamma=zero_gamma_linear(levels, profile[:, 0]),
        profile_nearest_spot=float(profile[np.argmin(np.abs(levels - S)), 0]),
        gex_at_spot=float(prof[N_LEVELS, 0]),
    )


def _restrict_weights(book: GammaBook, weights: FloatArray, lo: float, hi: float) -> FloatArray:
    d_lo = book.a * np.log(lo) + book.b
    d_hi = book.a * np.log(hi) + book.b
    u = 38.6
    keep = ~(((d_lo > u) & (d_hi > u)) | ((d_lo < -u) & (d_hi < -u)))
    return weights[keep]


def inputs_from_raw(frame: pd.DataFrame, spot: float, file_date: str) -> PerfilievInputs:
    """Inputs from the 22-column frame of :class:`zerogex_pipeline.analytics.cboe.CboeExport` (``raw``).

    ``file_date`` is the export's calendar date, ISO ``YYYY-MM-DD``.
    """

    def col(i: int) -> FloatArray:
        return np.nan_to_num(frame[i].to_numpy(dtype=np.float64))

    return PerfilievInputs(
        spot=spot, file_date=np.datetime64(file_date).astype("datetime64[D]"),
        expiration=frame[0].to_numpy(dtype="datetime64[D]"), strike=col(11),
        call_iv=col(7), put_iv=col(18), call_oi=col(10), put_oi=col(21), call_gamma=col(9), put_gamma=col(20),
    )
