"""Vectorized, bracketed implied-volatility solver for European options (Black-Scholes-Merton with yield q).

Method. Each price is turned into its *time value* in forward terms, ``tv = price·e^{rT} - max(±(F-K), 0)``
with ``F = S e^{(r-q)T}``; by put-call parity that is the undiscounted price of the out-of-the-money option
at the same strike, which is what we solve for (no cancellation against a large intrinsic value). The
no-arbitrage bounds are ``0 < tv < F`` (OTM call, ``K >= F``) or ``0 < tv < K`` (OTM put). We run Halley's
method (Newton with the second derivative) on ``f(σ) = ln BSM_otm(σ) - ln tv`` (the log makes deep out-of-the-money prices well scaled), inside a
bracket ``[lo, hi]`` that every evaluation tightens; a step leaving the bracket is replaced by a
geometric bisection, so every lane converges. Lanes are compacted out of the arrays as they converge.

Failures never return a number: the IV is NaN and ``reason`` says why (see :class:`IVReason`). A solution
below ``sigma_min`` or above ``sigma_max`` is reported as saturated, not clipped to the bound.

A well-kept library alternative (py_vollib / "Let's Be Rational") is scalar per call and not vectorized;
``scipy.optimize.newton`` on arrays has no bracketing and no per-lane failure codes; hence this module.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

FloatArray = npt.NDArray[np.float64]

SIGMA_MIN = 1e-4
"""Lowest volatility the solver accepts (annualized); a lower solution is 'saturated_low'."""
SIGMA_MAX = 10.0
"""Highest volatility the solver accepts (1000%); a higher solution is 'saturated_high'."""
MAX_ITERATIONS = 100
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


class IVReason(IntEnum):
    """Outcome of one solve; ``OK`` is the only one with a finite IV."""

    OK = 0
    BAD_INPUT = 1
    """Non-finite or non-positive price/spot/strike, or T <= 0 (expired or settled)."""
    BELOW_INTRINSIC = 2
    """Price at or below the (forward) intrinsic value: no positive volatility reprices it."""
    ABOVE_UPPER_BOUND = 3
    """Price at or above the no-arbitrage upper bound (S e^{-qT} for calls, K e^{-rT} for puts)."""
    SATURATED_LOW = 4
    """The solution is below ``sigma_min``."""
    SATURATED_HIGH = 5
    """The solution is above ``sigma_max``."""
    NO_CONVERGENCE = 6
    """The iteration limit was reached without meeting the tolerance."""


REASON_NAMES: dict[int, str] = {int(r): r.name.lower() for r in IVReason}


class IVResult(NamedTuple):
    """``iv`` annualized decimal (NaN unless ``reason == 0``), ``reason`` (:class:`IVReason` codes, int8)."""

    iv: FloatArray
    reason: npt.NDArray[np.int8]


def _otm_price_vega(
    sig: FloatArray, x: FloatArray, sqrt_t: FloatArray, F: FloatArray, K: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Undiscounted OTM price ``w(F N(w d1) - K N(w d2))``, vega ``F φ(d1) √T`` and ``volga/vega = d1 d2 / σ``."""
    v = sig * sqrt_t
    d1 = x / v + 0.5 * v
    d2 = d1 - v
    px = w * (F * ndtr(w * d1) - K * ndtr(w * d2))
    vega = F * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1) * sqrt_t
    return px, vega, d1 * d2 / sig


def implied_vol(
    price: npt.ArrayLike,
    S: npt.ArrayLike,
    K: npt.ArrayLike,
    T: npt.ArrayLike,
    r: float,
    q: float,
    is_call: npt.ArrayLike,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rtol: float = 1e-11,
    atol: float = 1e-13,
) -> IVResult:
    """Implied volatility of each option price (USD per share), vectorized.

    Args:
        price: option prices, USD per share. S: spot, K: strike (USD). T: years (365-day) to settlement.
        r, q: annualized continuous rate and dividend yield. is_call: True for calls.
        sigma_min, sigma_max: the accepted volatility range (saturation outside it).
        rtol, atol: a lane has converged when ``|model - target| <= rtol·tv`` in forward terms, or when the
            bracket has collapsed to machine precision around it and ``|model - target| <= atol·F`` (the
            floating-point floor of deep out-of-the-money prices). The repricing error is therefore at most
            ``max(rtol, atol)·S`` up to discounting.

    Returns:
        :class:`IVResult` with NaN IVs and a reason code wherever the solve is impossible or failed.
    """
    px, S_, K_, T_, call = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64), np.asarray(S, dtype=np.float64), np.asarray(K, dtype=np.float64),
        np.asarray(T, dtype=np.float64), np.asarray(is_call, dtype=bool),
    )
    shape = px.shape
    px, S_, K_, T_, call = (a.ravel() for a in (px, S_, K_, T_, call))
    n = px.size
    iv = np.full(n, np.nan)
    reason = np.full(n, IVReason.BAD_INPUT, dtype=np.int8)

    good = np.isfinite(px) & np.isfinite(S_) & np.isfinite(K_) & np.isfinite(T_) & (S_ > 0) & (K_ > 0) & (T_ > 0)
    good &= px >= 0
    idx = np.flatnonzero(good)
    T_g = T_[idx]
    F = S_[idx] * np.exp((r - q) * T_g)
    Kg = K_[idx]
    fwd_px = px[idx] * np.exp(r * T_g)
    intrinsic = np.where(call[idx], np.maximum(F - Kg, 0.0), np.maximum(Kg - F, 0.0))
    tv = fwd_px - intrinsic
    w = np.where(Kg >= F, 1.0, -1.0)  # solve on the OTM side: call when K >= F, put otherwise
    upper = np.where(w > 0, F, Kg)
    below = tv <= 0.0
    above = tv >= upper
    reason[idx[below]] = IVReason.BELOW_INTRINSIC
    reason[idx[above & ~below]] = IVReason.ABOVE_UPPER_BOUND
    keep = ~(below | above)
    idx, F, Kg, tv, w, T_g = idx[keep], F[keep], Kg[keep], tv[keep], w[keep], T_g[keep]
    sqrt_t = np.sqrt(T_g)
    x = np.log(F / Kg)

    # Start: max of Brenner-Subrahmanyam (ATM) and the inflection point sqrt(2|x|/T) (Manaster-Koehler).
    sig = np.maximum(np.sqrt(2.0 * np.pi) * tv / (F * sqrt_t), np.sqrt(2.0 * np.abs(x)) / sqrt_t)
    sig = np.clip(sig, sigma_min, sigma_max)
    # The bracket starts at the accepted range; its ends are "verified" once the model straddles the target
    # there. A step leaving an unverified end tries that end itself: a wrong-signed error at sigma_min or
    # sigma_max proves saturation (no bound is ever returned as an IV).
    lo = np.full(idx.size, sigma_min)
    hi = np.full(idx.size, sigma_max)
    lo_ok = np.zeros(idx.size, dtype=bool)
    hi_ok = np.zeros(idx.size, dtype=bool)
    log_tv = np.log(tv)
    tol = rtol * tv
    floor = atol * F
    for _ in range(MAX_ITERATIONS):
        if idx.size == 0:
            break
        model, vega, volga_ratio = _otm_price_vega(sig, x, sqrt_t, F, Kg, w)
        err = model - tv
        done = np.abs(err) <= tol
        done |= lo_ok & hi_ok & (hi - lo <= 4e-16 * hi) & (np.abs(err) <= floor)
        sat_lo = (sig <= sigma_min) & (err > 0) & ~done
        sat_hi = (sig >= sigma_max) & (err < 0) & ~done
        finished = done | sat_lo | sat_hi
        if finished.any():
            iv[idx[done]] = sig[done]
            reason[idx[done]] = IVReason.OK
            reason[idx[sat_lo]] = IVReason.SATURATED_LOW
            reason[idx[sat_hi]] = IVReason.SATURATED_HIGH
            live = ~finished
            idx, F, Kg, tv, w, sqrt_t, x = idx[live], F[live], Kg[live], tv[live], w[live], sqrt_t[live], x[live]
            sig, lo, hi, lo_ok, hi_ok = sig[live], lo[live], hi[live], lo_ok[live], hi_ok[live]
            log_tv, tol, floor = log_tv[live], tol[live], floor[live]
            model, vega, err, volga_ratio = model[live], vega[live], err[live], volga_ratio[live]
        below = err < 0
        lo = np.where(below, sig, lo)
        hi = np.where(below, hi, sig)
        lo_ok |= below
        hi_ok |= ~below
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # Halley's step on g = ln(model) - ln(tv): g' = vega/model, g'' = g'·(volga/vega - g').
            g = np.log(np.maximum(model, 1e-300)) - log_tv
            g1 = vega / model
            g2 = g1 * (volga_ratio - g1)
            nxt = sig - 2.0 * g * g1 / (2.0 * g1 * g1 - g * g2)
        inside = (nxt > lo) & (nxt < hi) & np.isfinite(nxt)
        fallback = np.where(
            (nxt <= lo) & ~lo_ok, sigma_min, np.where((nxt >= hi) & ~hi_ok, sigma_max, np.sqrt(lo * hi))
        )
        sig = np.where(inside, nxt, fallback)
    reason[idx] = IVReason.NO_CONVERGENCE
    return IVResult(iv.reshape(shape), reason.reshape(shape))


def reason_counts(reason: npt.NDArray[np.int8]) -> dict[str, int]:
    """How many lanes ended with each reason, by name (only reasons that occurred)."""
    codes, counts = np.unique(np.asarray(reason), return_counts=True)
    return {REASON_NAMES[int(c)]: int(n) for c, n in zip(codes, counts, strict=True)}
