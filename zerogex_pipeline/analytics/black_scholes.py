"""Vectorized Black-Scholes-Merton with continuous dividend yield q.

Inputs broadcast as numpy arrays: spot ``S`` and strike ``K`` in USD, ``T`` in years (365-day),
``sigma`` annualized decimal volatility, ``r`` and ``q`` annualized continuous rates. Where ``T <= 0``
or ``sigma <= 0`` the greeks are 0 (an expired contract or one with no usable IV contributes nothing).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def norm_pdf(x: FloatArray) -> FloatArray:
    """Standard normal density."""
    return np.asarray(_INV_SQRT_2PI * np.exp(-0.5 * x * x), dtype=np.float64)


def _prepare(S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike) -> tuple[FloatArray, ...]:
    S_, K_, T_, sig = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (S, K, T, sigma)))
    live = (T_ > 0.0) & (sig > 0.0) & np.isfinite(sig) & (S_ > 0.0) & (K_ > 0.0)
    # Dummy values on dead lanes keep the arithmetic finite; results there are masked to 0 below.
    T_safe = np.where(live, T_, 1.0)
    sig_safe = np.where(live, sig, 1.0)
    S_safe = np.where(live, S_, 1.0)
    K_safe = np.where(live, K_, 1.0)
    return S_safe, K_safe, T_safe, sig_safe, live


def d1_d2(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``d1 = (ln(S/K) + (r - q + σ²/2)T) / (σ√T)`` and ``d2 = d1 - σ√T`` (dead lanes: 0)."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (np.asarray(r) - np.asarray(q) + 0.5 * sig * sig) * T_) / vol_sqrt_t
    d1 = np.where(live, d1, 0.0)
    return d1, np.where(live, d1 - vol_sqrt_t, 0.0)


def gamma(S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike) -> FloatArray:
    """Gamma per share per USD, identical for calls and puts: ``e^{-qT} φ(d1) / (S σ √T)``."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (np.asarray(r) - np.asarray(q) + 0.5 * sig * sig) * T_) / vol_sqrt_t
    g = np.exp(-np.asarray(q) * T_) * norm_pdf(d1) / (S_ * vol_sqrt_t)
    return np.where(live, g, 0.0)


def price(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Option price per share, USD. Dead lanes (T <= 0 or σ <= 0) get the discounted intrinsic value."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    call = np.asarray(is_call, dtype=bool)
    r_, q_ = np.asarray(r, dtype=np.float64), np.asarray(q, dtype=np.float64)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (r_ - q_ + 0.5 * sig * sig) * T_) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    df_q, df_r = np.exp(-q_ * T_), np.exp(-r_ * T_)
    call_px = S_ * df_q * ndtr(d1) - K_ * df_r * ndtr(d2)
    put_px = K_ * df_r * ndtr(-d2) - S_ * df_q * ndtr(-d1)
    model = np.where(call, call_px, put_px)
    S_raw, K_raw, T_raw = np.broadcast_arrays(
        np.asarray(S, dtype=np.float64), np.asarray(K, dtype=np.float64), np.asarray(T, dtype=np.float64)
    )
    T_pos = np.maximum(T_raw, 0.0)
    fwd_intrinsic = np.where(
        call,
        np.maximum(S_raw * np.exp(-q_ * T_pos) - K_raw * np.exp(-r_ * T_pos), 0.0),
        np.maximum(K_raw * np.exp(-r_ * T_pos) - S_raw * np.exp(-q_ * T_pos), 0.0),
    )
    return np.where(live, model, fwd_intrinsic)


def delta(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Delta per share: calls ``e^{-qT} N(d1)``, puts ``-e^{-qT} N(-d1)`` (dead lanes: 0)."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    q_ = np.asarray(q, dtype=np.float64)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (np.asarray(r) - q_ + 0.5 * sig * sig) * T_) / vol_sqrt_t
    df_q = np.exp(-q_ * T_)
    out = np.where(np.asarray(is_call, dtype=bool), df_q * ndtr(d1), -df_q * ndtr(-d1))
    return np.where(live, out, 0.0)


def vega(S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike) -> FloatArray:
    """Vega in USD per 1.00 of volatility (divide by 100 for USD per vol point): ``S e^{-qT} φ(d1) √T``."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    q_ = np.asarray(q, dtype=np.float64)
    sqrt_t = np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (np.asarray(r) - q_ + 0.5 * sig * sig) * T_) / (sig * sqrt_t)
    return np.where(live, S_ * np.exp(-q_ * T_) * norm_pdf(d1) * sqrt_t, 0.0)


def theta(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Theta, USD per share per year of calendar time (``∂V/∂t``; divide by 365 for per day)."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    r_, q_ = np.asarray(r, dtype=np.float64), np.asarray(q, dtype=np.float64)
    sqrt_t = np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (r_ - q_ + 0.5 * sig * sig) * T_) / (sig * sqrt_t)
    d2 = d1 - sig * sqrt_t
    df_q, df_r = np.exp(-q_ * T_), np.exp(-r_ * T_)
    decay = -S_ * df_q * norm_pdf(d1) * sig / (2.0 * sqrt_t)
    call = decay - r_ * K_ * df_r * ndtr(d2) + q_ * S_ * df_q * ndtr(d1)
    put = decay + r_ * K_ * df_r * ndtr(-d2) - q_ * S_ * df_q * ndtr(-d1)
    return np.where(live, np.where(np.asarray(is_call, dtype=bool), call, put), 0.0)


def vanna(S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike) -> FloatArray:
    """Vanna ``∂Δ/∂σ = ∂vega/∂S`` per share per 1.00 of volatility: ``-e^{-qT} φ(d1) d2 / σ`` (calls = puts)."""
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    q_ = np.asarray(q, dtype=np.float64)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (np.asarray(r) - q_ + 0.5 * sig * sig) * T_) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    return np.where(live, -np.exp(-q_ * T_) * norm_pdf(d1) * d2 / sig, 0.0)


def charm(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: ArrayLike, q: ArrayLike, is_call: ArrayLike
) -> FloatArray:
    """Charm ``∂Δ/∂t`` (calendar time passing, i.e. ``-∂Δ/∂T``) per share per year; divide by 365 per day.

    Calls: ``q e^{-qT} N(d1) - e^{-qT} φ(d1) (2(r-q)T - d2 σ√T) / (2T σ√T)``;
    puts: ``-q e^{-qT} N(-d1) - e^{-qT} φ(d1) (2(r-q)T - d2 σ√T) / (2T σ√T)``.
    """
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    r_, q_ = np.asarray(r, dtype=np.float64), np.asarray(q, dtype=np.float64)
    vol_sqrt_t = sig * np.sqrt(T_)
    d1 = (np.log(S_ / K_) + (r_ - q_ + 0.5 * sig * sig) * T_) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    df_q = np.exp(-q_ * T_)
    common = df_q * norm_pdf(d1) * (2.0 * (r_ - q_) * T_ - d2 * vol_sqrt_t) / (2.0 * T_ * vol_sqrt_t)
    call = q_ * df_q * ndtr(d1) - common
    put = -q_ * df_q * ndtr(-d1) - common
    return np.where(live, np.where(np.asarray(is_call, dtype=bool), call, put), 0.0)


class ExposureGreeks(NamedTuple):
    """The greeks the exposures need, per share (units as in :func:`greeks`)."""

    delta: FloatArray
    gamma: FloatArray
    vanna: FloatArray
    charm: FloatArray


def exposure_greeks(
    S: float, K: FloatArray, T: FloatArray, sigma: FloatArray, r: float, q: float, is_call: npt.NDArray[np.bool_]
) -> ExposureGreeks:
    """Delta, gamma, vanna and charm only, with the same arithmetic as :func:`greeks` (bit-identical results).

    Skips the price, vega, theta and ``N(d2)`` work the exposures do not use.
    """
    K_ = np.asarray(K, dtype=np.float64)
    T_ = np.asarray(T, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    live = (T_ > 0.0) & (sig > 0.0) & np.isfinite(sig) & (K_ > 0.0) & (S > 0.0)
    # Live lanes see exactly the operands :func:`greeks` gives them; dead lanes may compute inf/NaN and
    # are overwritten with 0 below, so no dummy-value substitution pass is needed.
    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(T_)
        vol_sqrt_t = sig * sqrt_t
        d1 = (np.log(S / K_) + (r - q + 0.5 * sig * sig) * T_) / vol_sqrt_t
        d2 = d1 - vol_sqrt_t
        df_q = np.exp(-q * T_)
        sgn = np.where(np.asarray(is_call, dtype=bool), 1.0, -1.0)
        n1 = ndtr(sgn * d1)
        dq_pdf = df_q * norm_pdf(d1)
        dl = sgn * df_q * n1
        gm = dq_pdf / (S * vol_sqrt_t)
        vn = -dq_pdf * d2 / sig
        ch = sgn * q * df_q * n1 - dq_pdf * (2.0 * (r - q) * T_ - d2 * vol_sqrt_t) / (2.0 * T_ * vol_sqrt_t)
    if not live.all():
        dead = ~live
        for a in (dl, gm, vn, ch):
            a[dead] = 0.0
    return ExposureGreeks(dl, gm, vn, ch)


class Greeks(NamedTuple):
    """All greeks of a set of contracts, per share, from one pass (units as in the single functions)."""

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    vanna: FloatArray
    charm: FloatArray
    theta: FloatArray


def greeks(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, sigma: ArrayLike, r: float, q: float, is_call: ArrayLike
) -> Greeks:
    """Price, delta, gamma, vega (per 1.00 vol), vanna (per 1.00 vol), charm (per year), theta (per year).

    One shared evaluation of ``d1``, ``d2``, ``φ(d1)`` and ``N(±d1)``, ``N(±d2)``: several times faster than
    calling the single-greek functions. Dead lanes (T <= 0, σ <= 0 or NaN) get 0 greeks and the
    discounted intrinsic value as price, like :func:`price`.
    """
    S_, K_, T_, sig, live = _prepare(S, K, T, sigma)
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), S_.shape)
    sqrt_t = np.sqrt(T_)
    vol_sqrt_t = sig * sqrt_t
    d1 = (np.log(S_ / K_) + (r - q + 0.5 * sig * sig) * T_) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    df_q, df_r = np.exp(-q * T_), np.exp(-r * T_)
    pdf = norm_pdf(d1)
    sgn = np.where(call, 1.0, -1.0)
    n1 = ndtr(sgn * d1)  # N(d1) for calls, N(-d1) for puts
    n2 = ndtr(sgn * d2)
    px = sgn * (S_ * df_q * n1 - K_ * df_r * n2)
    dl = sgn * df_q * n1
    dq_pdf = df_q * pdf
    gm = dq_pdf / (S_ * vol_sqrt_t)
    vg = S_ * dq_pdf * sqrt_t
    vn = -dq_pdf * d2 / sig
    ch = sgn * q * df_q * n1 - dq_pdf * (2.0 * (r - q) * T_ - d2 * vol_sqrt_t) / (2.0 * T_ * vol_sqrt_t)
    th = -S_ * dq_pdf * sig / (2.0 * sqrt_t) - sgn * r * K_ * df_r * n2 + sgn * q * S_ * df_q * n1
    if live.all():
        intrinsic = px
    else:
        T_pos = np.maximum(np.broadcast_to(np.asarray(T, dtype=np.float64), S_.shape), 0.0)
        S_raw = np.broadcast_to(np.asarray(S, dtype=np.float64), S_.shape)
        K_raw = np.broadcast_to(np.asarray(K, dtype=np.float64), S_.shape)
        intrinsic = np.maximum(sgn * (S_raw * np.exp(-q * T_pos) - K_raw * np.exp(-r * T_pos)), 0.0)
    z = np.zeros_like(px)
    return Greeks(
        np.where(live, px, intrinsic), np.where(live, dl, z), np.where(live, gm, z), np.where(live, vg, z),
        np.where(live, vn, z), np.where(live, ch, z), np.where(live, th, z),
    )
