"""The product computation on one snapshot: per-contract exposures, aggregations and levels.

Conventions (methodology page §1-§4): dealers long calls (+), short puts (-), net = call + put in every
column. Units per contract line (``OI`` contracts of 100 shares, spot ``S`` USD):

- GEX  USD per 1% move:      ``sign · Γ · OI · 100 · S² · 0.01`` (volume GEX: volume instead of OI)
- DEX  USD of underlying:    ``sign · Δ · OI · 100 · S``
- VEX  USD per vol point:    ``sign · vanna · OI · 100 · S · 0.01``
- CEX  USD per calendar day: ``sign · charm · OI · 100 · S / 365``

Levels: walls with the side-of-spot rule, absolute-gamma strike, max pain per expiration (never pooled),
the sticky-strike gamma profile, zero gamma raw (crossing nearest spot, unweighted) and structural
(contracts weighted by ``min(1, DTE/5)``; crossing kept only if interior to the grid, within
``max_distance`` of spot and not noise; grid widened ±20% → ±35% → ±50%; root-refined; else null + reason),
net GEX at spot read off the same profile (spot is the grid's centre point), and the flip term structure
(the structural flip with DTE reference 1, 3, 5, 10, 20, 60 days). Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from zerogex_pipeline.analytics.black_scholes import exposure_greeks
from zerogex_pipeline.analytics.profile import GammaBook, refine_roots, sign_changes

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MULTIPLIER = 100.0
GRID_HALF_WIDTHS = (0.20, 0.35, 0.50)
"""The profile grid spans spot·(1 ± w) for the first w that yields an accepted structural crossing."""
GRID_STEP = 0.01
"""Grid spacing as a fraction of spot (spot itself is always a grid point)."""
STRUCTURAL_DTE_REF = 5.0
FLIP_DTE_REFS = (1.0, 3.0, 5.0, 10.0, 20.0, 60.0)
MAX_DISTANCE = 0.08
"""A structural crossing must lie within this fraction of spot."""
NOISE_FRACTION = 0.01
"""A crossing is noise when max |profile| over the 6 grid points around it is below this share of max |profile|."""
T_CONVENTION = "calendar years (365 d) to settlement instant (PM 16:00 ET, AM 09:30 ET); 0 after; 30 min floor"


@dataclass(frozen=True)
class Chain:
    """One snapshot's contracts as flat arrays (one entry per contract).

    Attributes:
        spot: underlying price, USD. r, q: annualized continuous rate and dividend yield.
        strike: USD. T: years (365-day) to settlement, 0 once settled. iv: annualized, NaN = unusable.
        oi, volume: contracts. is_call: bool. expiry: integer code into ``expirations`` (ISO dates).
    """

    spot: float
    r: float
    q: float
    strike: FloatArray
    T: FloatArray
    iv: FloatArray
    oi: FloatArray
    volume: FloatArray
    is_call: npt.NDArray[np.bool_]
    expiry: IntArray
    expirations: tuple[str, ...]
    t_convention: str = T_CONVENTION


@dataclass
class Flip:
    """A zero-gamma level (USD) or ``None`` with the reason; ``half_width`` of the grid it was found on."""

    level: float | None
    reason: str | None
    half_width: float | None = None


@dataclass
class Product:
    """Everything the product publishes for one snapshot (USD; GEX per 1%, VEX per vol point, CEX per day)."""

    spot: float
    contracts: dict[str, FloatArray]
    strikes: FloatArray
    by_strike: dict[str, FloatArray]
    by_expiration: dict[str, FloatArray]
    by_strike_expiration: dict[str, FloatArray]
    totals: dict[str, float]
    call_wall: float | None
    call_wall_gex: float | None
    put_wall: float | None
    put_wall_gex: float | None
    abs_gamma_strike: float | None
    abs_gamma_gex: float | None
    max_pain: dict[str, float]
    profile_levels: FloatArray
    profile_raw: FloatArray
    profile_structural: FloatArray
    net_gex_at_spot: float
    net_gex_at_spot_structural: float
    zero_gamma: Flip
    zero_gamma_raw: Flip
    flip_term_structure: dict[float, Flip]
    inputs: dict[str, object] = field(default_factory=dict)


def exposures(chain: Chain) -> dict[str, FloatArray]:
    """Per-contract signed exposures: ``gex``, ``gex_volume``, ``dex``, ``vex``, ``cex`` and the greeks used."""
    S = chain.spot
    g = exposure_greeks(S, chain.strike, chain.T, chain.iv, chain.r, chain.q, chain.is_call)
    sign = np.where(chain.is_call, 1.0, -1.0)
    so = sign * chain.oi * MULTIPLIER
    return {
        "delta": g.delta, "gamma": g.gamma, "vanna": g.vanna, "charm": g.charm,
        "gex": so * g.gamma * (S * S * 0.01),
        "gex_volume": sign * chain.volume * MULTIPLIER * g.gamma * (S * S * 0.01),
        "dex": so * g.delta * S,
        "vex": so * g.vanna * (S * 0.01),
        "cex": so * g.charm * (S / 365.0),
    }


_AGG_NAMES = ("gex", "gex_volume", "dex", "vex", "cex")


def _aggregate(keys: IntArray, n: int, is_put: IntArray, columns: list[FloatArray]) -> dict[str, FloatArray]:
    """Group sums per (group, call/put) of the per-contract columns ``[gex, gex_volume, dex, vex, cex, oi]``.

    One ``np.bincount`` per column on the key ``2·group + is_put``: sequential sums in contract order, the
    same additions (bit for bit) as a one-hot matrix product, without building the matrix or the 12
    masked columns.
    """
    key2 = keys * 2 + is_put
    out: dict[str, FloatArray] = {}
    for name, v in zip((*_AGG_NAMES, "oi"), columns, strict=True):
        sums = np.asarray(np.bincount(key2, weights=v, minlength=2 * n), dtype=np.float64).reshape(n, 2)
        call, put = sums[:, 0], sums[:, 1]
        if name == "oi":
            out["call_oi"], out["put_oi"] = call, put
        else:
            out[f"call_{name}"], out[f"put_{name}"], out[f"net_{name}"] = call, put, call + put
    return out


def _group_codes(key: IntArray, size: int) -> tuple[IntArray, IntArray]:
    """``np.unique(key, return_inverse=True)`` for non-negative ints below ``size`` (dense table when small)."""
    if size > 8 * key.size + 100_000:
        uniq, code = np.unique(key, return_inverse=True)
        return uniq, code.reshape(-1)
    present = np.zeros(size, dtype=bool)
    present[key] = True
    uniq = np.flatnonzero(present)
    remap = np.cumsum(present, dtype=np.intp) - 1
    return uniq, remap[key]


def _walls(strikes: FloatArray, call: FloatArray, put: FloatArray, spot: float, side_rule: bool
           ) -> tuple[float | None, float | None, float | None, float | None]:
    """Call wall: largest call GEX (at or above spot with the side rule); put wall: largest |put GEX| (at or below)."""
    cw = cwg = pw = pwg = None
    above = strikes >= spot if side_rule else np.ones(strikes.size, dtype=bool)
    below = strikes <= spot if side_rule else np.ones(strikes.size, dtype=bool)
    if above.any() and call[above].max() > 0:
        i = np.flatnonzero(above)[np.argmax(call[above])]
        cw, cwg = float(strikes[i]), float(call[i])
    if below.any() and put[below].min() < 0:
        i = np.flatnonzero(below)[np.argmin(put[below])]
        pw, pwg = float(strikes[i]), float(put[i])
    return cw, cwg, pw, pwg


def max_pain(exp_code: IntArray, strike: FloatArray, call_oi: FloatArray, put_oi: FloatArray,
             expirations: tuple[str, ...]) -> dict[str, float]:
    """Per expiration, the strike minimising the total intrinsic payout to holders (never pooled).

    Inputs are per (strike × expiration) rows. Payout at settlement price ``P`` (a listed strike):
    ``Σ call_oi·max(P-K,0) + Σ put_oi·max(K-P,0)``, computed with prefix sums per expiration (O(n log n)).
    Expirations without open interest get no entry.
    """
    presorted = exp_code.size < 2 or bool(np.all(
        (exp_code[1:] > exp_code[:-1]) | ((exp_code[1:] == exp_code[:-1]) & (strike[1:] > strike[:-1]))))
    order = np.arange(exp_code.size) if presorted else np.lexsort((strike, exp_code))
    e, K, c, p = exp_code[order], strike[order], call_oi[order], put_oi[order]
    if e.size == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]])
    counts = np.diff(np.r_[starts, e.size])

    def group_cumsum(v: FloatArray) -> tuple[FloatArray, FloatArray]:
        cs = np.cumsum(v)
        base = np.repeat(np.r_[0.0, cs[starts[1:] - 1]], counts)
        within = cs - base
        total = np.repeat(np.add.reduceat(v, starts), counts)
        return within, total

    cc, _ = group_cumsum(c)
    cck, _ = group_cumsum(c * K)
    pc, pt = group_cumsum(p)
    pck, ptk = group_cumsum(p * K)
    payout = (K * cc - cck) + ((ptk - pck) - K * (pt - pc))
    oi_total = np.add.reduceat(c + p, starts)
    lowest = np.flatnonzero(payout == np.repeat(np.minimum.reduceat(payout, starts), counts))
    # first (lowest-strike) minimiser of each group
    _, pick = np.unique(np.searchsorted(starts, lowest, side="right") - 1, return_index=True)
    first = lowest[pick]
    return {expirations[int(e[i])]: float(K[i]) for g, i in enumerate(first) if oi_total[g] > 0}


def _gated_flip(levels: FloatArray, prof: FloatArray, spot: float, gated: bool, max_distance: float
                ) -> tuple[int | None, str]:
    """Index of the accepted crossing cell nearest spot, or ``None`` and why none was accepted."""
    cells = sign_changes(prof)
    if cells.size == 0:
        return None, "no sign change"
    if not gated:
        mid = 0.5 * (levels[cells] + levels[cells + 1])
        return int(cells[np.argmin(np.abs(mid - spot))]), ""
    typical = np.max(np.abs(prof))
    n = levels.size
    reasons = []
    ok = []
    for i in cells:
        if i == 0 or i + 1 == n - 1:
            reasons.append("at grid edge")
            continue
        lo_d = min(abs(levels[i] - spot), abs(levels[i + 1] - spot))
        if lo_d > max_distance * spot:
            reasons.append(f"beyond {max_distance:.0%} of spot")
            continue
        window = np.abs(prof[max(0, i - 2) : min(n, i + 4)])
        if window.max() < NOISE_FRACTION * typical:
            reasons.append("noise")
            continue
        ok.append(i)
    if not ok:
        return None, "crossings rejected (" + ", ".join(sorted(set(reasons))) + ")"
    mid = 0.5 * (levels[np.array(ok)] + levels[np.array(ok) + 1])
    return int(ok[int(np.argmin(np.abs(mid - spot)))]), ""


def _grid(spot: float, half_width: float) -> FloatArray:
    m = round(half_width / GRID_STEP)
    return np.asarray(spot * (1.0 + GRID_STEP * np.arange(-m, m + 1)), dtype=np.float64)


def drop_settled(chain: Chain) -> Chain:
    """The chain without contracts already settled (``T <= 0``) and without expirations left empty by that.

    A settled contract has no greeks, but its open interest would still count in OI totals and in max pain
    (the CBOE export stamped after the close still lists the day's expiration); it is dropped everywhere.
    """
    live = chain.T > 0
    if live.all():
        return chain
    idx = np.flatnonzero(live)
    expiry = chain.expiry.take(idx)
    used = np.zeros(len(chain.expirations), dtype=bool)
    used[expiry] = True
    remap = np.cumsum(used, dtype=np.intp) - 1
    return Chain(
        spot=chain.spot, r=chain.r, q=chain.q, strike=chain.strike.take(idx), T=chain.T.take(idx),
        iv=chain.iv.take(idx), oi=chain.oi.take(idx), volume=chain.volume.take(idx),
        is_call=chain.is_call.take(idx), expiry=remap.take(expiry),
        expirations=tuple(e for e, u in zip(chain.expirations, used, strict=True) if u),
        t_convention=chain.t_convention,
    )


def compute_product(chain: Chain, max_distance: float = MAX_DISTANCE) -> Product:
    """Run the full product computation on one snapshot (see module docstring for conventions).

    Contracts settled at the snapshot (``T <= 0``) are dropped first (:func:`drop_settled`): per-contract
    arrays in ``Product.contracts`` and every aggregate, level and max pain cover the live contracts only;
    ``inputs["contracts_settled"]`` counts the dropped ones.
    """
    n_in = int(chain.strike.size)
    chain = drop_settled(chain)
    S = chain.spot
    ex = exposures(chain)
    strikes, strike_code = np.unique(chain.strike, return_inverse=True)
    n_exp = len(chain.expirations)
    strike_code = strike_code.reshape(-1)
    is_put = (~chain.is_call).astype(np.intp)
    columns = [ex[name] for name in _AGG_NAMES] + [chain.oi]
    by_strike = _aggregate(strike_code, strikes.size, is_put, columns)
    by_exp = _aggregate(chain.expiry, n_exp, is_put, columns)
    se_key = chain.expiry * strikes.size + strike_code
    se_unique, se_code = _group_codes(se_key, n_exp * strikes.size)
    by_se = _aggregate(se_code, se_unique.size, is_put, columns)
    by_se["strike"] = strikes[se_unique % strikes.size]
    by_se["expiry"] = (se_unique // strikes.size).astype(np.float64)
    by_exp["expiry"] = np.arange(n_exp, dtype=np.float64)
    totals = {k: float(v.sum()) for k, v in by_strike.items()}

    cw, cwg, pw, pwg = _walls(strikes, by_strike["call_gex"], by_strike["put_gex"], S, side_rule=True)
    abs_g = np.abs(by_strike["call_gex"]) + np.abs(by_strike["put_gex"])
    ag = int(np.argmax(abs_g)) if abs_g.size and abs_g.max() > 0 else None
    mp = max_pain(se_unique // strikes.size, by_se["strike"], by_se["call_oi"], by_se["put_oi"], chain.expirations)

    sign = np.where(chain.is_call, 1.0, -1.0)
    full_book = GammaBook.build(chain.strike, chain.T, chain.iv, chain.oi, sign, chain.r, chain.q)
    refs: tuple[float | None, ...] = (None, STRUCTURAL_DTE_REF, *(r for r in FLIP_DTE_REFS if r != STRUCTURAL_DTE_REF))
    flips: list[Flip | None] = [None] * len(refs)
    first: tuple[FloatArray, FloatArray] | None = None
    last_reason = [""] * len(refs)
    for hw in GRID_HALF_WIDTHS:
        levels = _grid(S, hw)
        book = full_book.restrict(levels[0], levels[-1])
        W = book.weights(refs)  # (contracts, refs) view of a C-contiguous (refs, contracts) array
        prof = book.profiles(levels, W)
        if first is None:
            first = (levels, prof)
        pending = [j for j, f in enumerate(flips) if f is None]
        cells: dict[int, int] = {}
        for j in pending:
            cell, why = _gated_flip(levels, prof[:, j], S, gated=refs[j] is not None, max_distance=max_distance)
            if cell is None:
                last_reason[j] = f"{why} within ±{hw:.0%} of spot"
            else:
                cells[j] = cell
        if cells:
            cols = np.array(sorted(cells))
            idx = np.array([cells[j] for j in cols])
            roots = refine_roots(book, W[:, cols], levels[idx], levels[idx + 1], prof[idx, cols], prof[idx + 1, cols])
            for j, root in zip(cols, roots, strict=True):
                flips[int(j)] = Flip(float(root), None, hw)
        if all(f is not None for f in flips):
            break
    final = [f if f is not None else Flip(None, last_reason[j]) for j, f in enumerate(flips)]
    assert first is not None
    levels0, prof0 = first
    centre = levels0.size // 2
    n_live = int(np.count_nonzero(np.isfinite(chain.iv) & (chain.iv > 0) & (chain.T > 0)))
    n_oi = int(np.count_nonzero(chain.oi > 0))
    n_oi_live = int(np.count_nonzero((chain.oi > 0) & np.isfinite(chain.iv) & (chain.iv > 0) & (chain.T > 0)))
    return Product(
        spot=S, contracts=ex, strikes=strikes, by_strike=by_strike, by_expiration=by_exp,
        by_strike_expiration=by_se, totals=totals,
        call_wall=cw, call_wall_gex=cwg, put_wall=pw, put_wall_gex=pwg,
        abs_gamma_strike=None if ag is None else float(strikes[ag]),
        abs_gamma_gex=None if ag is None else float(abs_g[ag]),
        max_pain=mp, profile_levels=levels0, profile_raw=prof0[:, 0], profile_structural=prof0[:, 1],
        net_gex_at_spot=float(prof0[centre, 0]), net_gex_at_spot_structural=float(prof0[centre, 1]),
        zero_gamma_raw=final[0], zero_gamma=final[1],
        flip_term_structure={float(ref): final[refs.index(ref)] for ref in FLIP_DTE_REFS},
        inputs={"r": chain.r, "q": chain.q, "t_convention": chain.t_convention, "contracts": int(chain.strike.size),
                "contracts_settled": n_in - int(chain.strike.size),
                "contracts_with_iv": n_live, "contracts_with_oi": n_oi,
                "coverage": (n_oi_live / n_oi) if n_oi else 1.0, "max_distance": max_distance,
                "structural_dte_ref": STRUCTURAL_DTE_REF},
    )
