"""Sticky-strike gamma profile: dealer net GEX if spot moved to each of a set of levels.

Each contract keeps its own IV, strike and time to expiry (sticky strike); only spot moves. With
``x = ln L`` the BSM ``d1`` of contract ``i`` at level ``L`` is affine in ``x``: ``d1 = a_i x + b_i`` with
``a_i = 1/(σ√T)`` and ``b_i = (-ln K + (r - q + σ²/2)T)/(σ√T)``, and its GEX contribution (USD per 1%) is

    sign · OI · 100 · L² · 0.01 · e^{-qT} φ(d1) / (L σ √T) = L · c_i · exp(-d1²/2),
    c_i = sign · OI · e^{-qT} / (σ √T √(2π)).

So a profile is ``L · (E @ (c · w))`` with ``E[l, i] = exp(-(a_i x_l + b_i)²/2)``, and several weightings
``w`` (raw, DTE-weighted, the flip term structure) cost one matrix product on the same ``E``. Contracts
whose ``|d1|`` exceeds 38.6 over the whole range contribute exactly 0.0 in double precision
(``exp(-745)`` underflows) and are dropped before building ``E``; the result is unchanged bit for bit
up to summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_UNDERFLOW_D = 38.6
"""exp(-d²/2) is exactly 0.0 in float64 beyond this |d|."""
_BLOCK = 16
"""Levels per block when filling E: keeps the temporaries in cache instead of page-faulting big arrays."""


@dataclass(frozen=True)
class GammaBook:
    """Contracts of one snapshot with a usable IV, reduced to profile coefficients.

    Attributes:
        a, b: ``d1 = a·ln(L) + b`` per contract. c: signed GEX coefficient (USD per 1% per unit level, see module).
        dte: calendar days to settlement (T·365), for DTE weights.
    """

    a: FloatArray
    b: FloatArray
    c: FloatArray
    dte: FloatArray

    @staticmethod
    def build(
        strike: FloatArray, T: FloatArray, iv: FloatArray, weight: FloatArray, sign: FloatArray, r: float, q: float
    ) -> GammaBook:
        """Coefficients of the contracts with ``T > 0``, finite ``iv > 0`` and nonzero ``weight`` (OI or volume)."""
        ok = np.flatnonzero((T > 0) & np.isfinite(iv) & (iv > 0) & (weight != 0) & np.isfinite(weight))
        K, T_, sig = strike.take(ok), T.take(ok), iv.take(ok)
        vst = sig * np.sqrt(T_)
        a = 1.0 / vst
        b = (-np.log(K) + (r - q + 0.5 * sig * sig) * T_) * a
        c = sign.take(ok) * weight.take(ok) * np.exp(-q * T_) * a * _INV_SQRT_2PI
        return GammaBook(a, b, c, T_ * 365.0)

    def restrict(self, lo: float, hi: float) -> GammaBook:
        """Drop contracts that contribute exactly 0 at every level in ``[lo, hi]``."""
        d_lo = self.a * np.log(lo) + self.b
        d_hi = self.a * np.log(hi) + self.b
        keep = ~(((d_lo > _UNDERFLOW_D) & (d_hi > _UNDERFLOW_D)) | ((d_lo < -_UNDERFLOW_D) & (d_hi < -_UNDERFLOW_D)))
        if keep.all():
            return self
        return GammaBook(self.a[keep], self.b[keep], self.c[keep], self.dte[keep])

    def weights(self, dte_refs: tuple[float | None, ...]) -> FloatArray:
        """Column ``j`` is ``c · min(1, DTE/ref_j)`` (``None``: unweighted); a transposed view of :meth:`weights_t`."""
        return self.weights_t(dte_refs).T

    def weights_t(self, dte_refs: tuple[float | None, ...]) -> FloatArray:
        """Row ``j`` is ``c · min(1, DTE/ref_j)`` (``None``: unweighted), C-contiguous ``(len(dte_refs), n)``."""
        out = np.empty((len(dte_refs), self.c.size))
        for j, ref in enumerate(dte_refs):
            if ref is None:
                out[j] = self.c
            else:
                np.divide(self.dte, ref, out=out[j])
                np.minimum(1.0, out[j], out=out[j])
                out[j] *= self.c
        return out

    def profiles(self, levels: FloatArray, weights: FloatArray) -> FloatArray:
        """Net GEX (USD per 1%) at each level for each weight column: shape ``(len(levels), n_cols)``."""
        levels = np.asarray(levels, dtype=np.float64)
        out = np.empty((levels.size, weights.shape[1]))
        x = np.log(levels)
        n = self.a.size
        buf = np.empty((min(_BLOCK, levels.size), n))
        # ``(Wᵀ Eᵀ)ᵀ`` rather than ``E W``: the same dot products (equal to a few ulps of the largest value,
        # checked in the tests), about twice as fast in OpenBLAS for a wide E and a handful of weight columns.
        weights_t = np.ascontiguousarray(weights.T)
        for start in range(0, levels.size, _BLOCK):
            stop = min(start + _BLOCK, levels.size)
            e = buf[: stop - start]
            np.multiply(x[start:stop, None], self.a[None, :], out=e)
            e += self.b
            np.square(e, out=e)
            e *= -0.5
            np.exp(e, out=e)
            out[start:stop] = (weights_t @ e.T).T
        out *= levels[:, None]
        return out

    def profile_and_slope(self, levels: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Profile ``P_j(L_j)`` for one level per weight column, and ``dP_j/dL`` there (for Newton steps)."""
        return self._profile_and_slope(levels, np.ascontiguousarray(weights.T))

    def _profile_and_slope(self, levels: FloatArray, weights_t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """:meth:`profile_and_slope` with the weights given transposed and C-contiguous (one row per level)."""
        x = np.log(levels)[:, None]
        d = np.multiply(x, self.a)
        d += self.b
        e = np.square(d)
        e *= -0.5
        np.exp(e, out=e)
        e *= weights_t
        value = e.sum(axis=1)
        d *= self.a
        slope = value - np.einsum("ji,ji->j", e, d)
        return value * levels, slope


def sign_changes(values: FloatArray) -> npt.NDArray[np.intp]:
    """Indices ``i`` where ``values[i]`` and ``values[i+1]`` have strictly opposite signs (or ``values[i+1] == 0``)."""
    s = np.sign(values)
    return np.flatnonzero((s[:-1] * s[1:] < 0) | ((s[1:] == 0) & (s[:-1] != 0)))


def refine_roots(
    book: GammaBook, weights: FloatArray, lo: FloatArray, hi: FloatArray, p_lo: FloatArray, p_hi: FloatArray,
    xtol: float = 1e-5,
) -> FloatArray:
    """Roots of each weight column's profile inside its bracket ``[lo_j, hi_j]`` (values ``p_lo``, ``p_hi``).

    Safeguarded Newton (analytic slope) started from the linear interpolation; a step leaving the bracket is
    replaced by a bisection. Vectorized across columns; converges to ``xtol`` USD.
    """
    lo, hi, p_lo, p_hi = (np.array(v, dtype=np.float64) for v in (lo, hi, p_lo, p_hi))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(p_hi != p_lo, hi - (hi - lo) * p_hi / (p_hi - p_lo), 0.5 * (lo + hi))
    active = np.arange(x.size)
    weights_t = np.ascontiguousarray(weights.T)
    for _ in range(60):
        value, slope = book._profile_and_slope(x[active], weights_t if active.size == x.size else weights_t[active])
        xa, la, ha = x[active], lo[active], hi[active]
        same_as_lo = np.sign(value) == np.sign(p_lo[active])
        la = np.where(same_as_lo, xa, la)
        p_lo[active] = np.where(same_as_lo, value, p_lo[active])
        ha = np.where(same_as_lo, ha, xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            nxt = xa - value / slope
        ok = np.isfinite(nxt) & (nxt > la) & (nxt < ha)
        new = np.where(ok, nxt, 0.5 * (la + ha))
        converged = (np.abs(new - xa) <= xtol) | (value == 0) | (ha - la <= xtol)
        x[active] = np.where(value == 0, xa, new)
        lo[active], hi[active] = la, ha
        active = active[~converged]
        if active.size == 0:
            break
    return x
