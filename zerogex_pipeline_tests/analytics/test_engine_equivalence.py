"""The fast paths of the product computation give the numbers of the straightforward formulation.

Each optimised piece is compared with a plain reference written here (full ``greeks()``, a one-hot matrix
product over masked columns, a per-level profile sum), and the SPX export's levels with the values the
pre-optimisation engine produced (commit 31342a2), to 1e-12 relative.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from benchmarks.bench_analytics import synthetic
from zerogex_pipeline.analytics import engine
from zerogex_pipeline.analytics.black_scholes import exposure_greeks, greeks
from zerogex_pipeline.analytics.cboe import read_cboe_csv
from zerogex_pipeline.analytics.chain import chain_from_frame
from zerogex_pipeline.analytics.engine import Chain, compute_product
from zerogex_pipeline.analytics.profile import GammaBook

CSV = Path("/work/shared/data/cboe_spx_quotedata_2022-12-12.csv")
REL = 1e-12


def _random_inputs(n: int, seed: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    K = 4000.0 * np.exp(rng.normal(0, 0.2, n))
    T = rng.uniform(0, 2, n)
    iv = rng.uniform(0.02, 1.5, n)
    T[::7] = 0.0  # settled
    iv[::11] = np.nan  # no usable IV
    iv[::13] = 0.0
    K[::17] = 0.0  # degenerate strike
    return 4000.0, K, T, iv, rng.random(n) < 0.5


def test_exposure_greeks_bit_identical_to_full_greeks() -> None:
    S, K, T, iv, call = _random_inputs(5000, 3)
    fast = exposure_greeks(S, K, T, iv, 0.04, 0.012, call)
    full = greeks(S, K, T, iv, 0.04, 0.012, call)
    for name in ("delta", "gamma", "vanna", "charm"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(full, name), err_msg=name)
    dead = (T <= 0) | ~(iv > 0) | (K <= 0)
    assert dead.any() and (fast.gamma[dead] == 0).all() and (fast.gamma[~dead] > 0).any()


def _reference_aggregate(keys: np.ndarray, n: int, chain: Chain, ex: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original formulation: 12 masked call/put columns times a one-hot group matrix."""
    c = chain.is_call
    cols = []
    for name in (*engine._AGG_NAMES, "oi"):
        v = chain.oi if name == "oi" else ex[name]
        cols += [np.where(c, v, 0.0), np.where(c, 0.0, v)]
    values = np.stack(cols, axis=1)
    m = keys.size
    onehot = sparse.csr_matrix((np.ones(m), (keys, np.arange(m))), shape=(n, m))
    sums = np.asarray(onehot @ values)
    out = {}
    for j, name in enumerate(engine._AGG_NAMES):
        out[f"call_{name}"], out[f"put_{name}"] = sums[:, 2 * j], sums[:, 2 * j + 1]
        out[f"net_{name}"] = sums[:, 2 * j] + sums[:, 2 * j + 1]
    out["call_oi"], out["put_oi"] = sums[:, -2], sums[:, -1]
    return out


def _chains() -> list[Chain]:
    chains = [synthetic(4000, seed=5)[0]]
    if CSV.exists():
        chains.append(chain_from_frame(read_cboe_csv(CSV).chain, 0.04, 0.012)[0])
    return chains


@pytest.mark.parametrize("chain", _chains(), ids=lambda c: f"{c.strike.size}-contracts")
def test_aggregations_bit_identical_to_one_hot_product(chain: Chain) -> None:
    p = compute_product(chain)
    live = chain.T > 0  # settled contracts are dropped by compute_product
    used = np.unique(chain.expiry[live])
    ch = Chain(chain.spot, chain.r, chain.q, chain.strike[live], chain.T[live], chain.iv[live], chain.oi[live],
               chain.volume[live], chain.is_call[live], np.searchsorted(used, chain.expiry[live]),
               tuple(chain.expirations[i] for i in used))
    ex = engine.exposures(ch)
    for name, v in ex.items():
        np.testing.assert_array_equal(p.contracts[name], v, err_msg=name)
    strikes, code = np.unique(ch.strike, return_inverse=True)
    np.testing.assert_array_equal(p.strikes, strikes)
    se_key = ch.expiry * strikes.size + code
    se_unique, se_code = np.unique(se_key, return_inverse=True)
    ref = {
        "by_strike": _reference_aggregate(code, strikes.size, ch, ex),
        "by_expiration": _reference_aggregate(ch.expiry, len(ch.expirations), ch, ex),
        "by_strike_expiration": _reference_aggregate(se_code, se_unique.size, ch, ex),
    }
    for group, cols in ref.items():
        got = getattr(p, group)
        for name, v in cols.items():
            np.testing.assert_array_equal(got[name], v, err_msg=f"{group}.{name}")
    np.testing.assert_array_equal(p.by_strike_expiration["strike"], strikes[se_unique % strikes.size])


@pytest.mark.parametrize("chain", _chains(), ids=lambda c: f"{c.strike.size}-contracts")
def test_profile_matches_per_level_gamma_sum(chain: Chain) -> None:
    """Profile = Σ sign·OI·100·L²·0.01·Γ(L) per level (sticky strike), independent of the E-matrix algebra."""
    p = compute_product(chain)
    sign = np.where(chain.is_call, 1.0, -1.0)
    w = np.minimum(1.0, chain.T * 365.0 / engine.STRUCTURAL_DTE_REF)
    for L, raw, structural in zip(p.profile_levels, p.profile_raw, p.profile_structural, strict=True):
        g = greeks(L, chain.strike, chain.T, chain.iv, chain.r, chain.q, chain.is_call).gamma
        per = sign * np.nan_to_num(chain.oi) * 100.0 * L * L * 0.01 * g
        assert raw == pytest.approx(per.sum(), rel=0, abs=REL * np.abs(p.profile_raw).max() * 10)
        assert structural == pytest.approx((per * w).sum(), rel=0, abs=REL * np.abs(p.profile_structural).max() * 10)


def test_weights_and_transposed_profile_products() -> None:
    chain = synthetic(3000, seed=9)[0]
    sign = np.where(chain.is_call, 1.0, -1.0)
    book = GammaBook.build(chain.strike, chain.T, chain.iv, chain.oi, sign, chain.r, chain.q)
    refs = (None, 5.0, 1.0, 60.0)
    W = book.weights(refs)
    for j, ref in enumerate(refs):
        expect = book.c if ref is None else book.c * np.minimum(1.0, book.dte / ref)
        np.testing.assert_array_equal(W[:, j], expect)
    levels = chain.spot * (1 + 0.01 * np.arange(-20, 21))
    prof = book.profiles(levels, W)
    E = np.exp(-0.5 * (np.log(levels)[:, None] * book.a + book.b) ** 2)
    ref_prof = (E @ W) * levels[:, None]
    np.testing.assert_allclose(prof, ref_prof, rtol=0, atol=REL * np.abs(ref_prof).max())


@pytest.mark.skipif(not CSV.exists(), reason="shared CBOE export not present")
def test_spx_levels_equal_pre_optimisation_values() -> None:
    """Values printed by the engine at commit 31342a2 (r = 0.04, q = 0.012, as in the benchmark)."""
    chain, _ = chain_from_frame(read_cboe_csv(CSV).chain, 0.04, 0.012)
    p = compute_product(chain)
    expect = {
        "zero_gamma": 4007.547498685652, "zero_gamma_raw": 4001.7156165910023,
        "net_gex_at_spot": -2168062157.143865, "net_gex_at_spot_structural": -2626225533.338873,
        "net_gex": -2168062157.14336, "net_gex_volume": 2288149945.142216, "net_dex": 1847494815780.742,
        "net_vex": 16156316623.28549, "net_cex": -13766780544.849033,
        "profile_raw_sum": -296246642902.7908, "profile_raw_max_abs": 51511413830.05256,
        "profile_structural_5": -44087794303.64828,
    }
    got = {
        "zero_gamma": p.zero_gamma.level, "zero_gamma_raw": p.zero_gamma_raw.level,
        "net_gex_at_spot": p.net_gex_at_spot, "net_gex_at_spot_structural": p.net_gex_at_spot_structural,
        **{k: p.totals[k] for k in ("net_gex", "net_gex_volume", "net_dex", "net_vex", "net_cex")},
        "profile_raw_sum": float(p.profile_raw.sum()), "profile_raw_max_abs": float(np.abs(p.profile_raw).max()),
        "profile_structural_5": float(p.profile_structural[5]),
    }
    for k, v in expect.items():
        assert got[k] == pytest.approx(v, rel=REL), k
    flips = {1.0: 4002.150296719301, 3.0: 4003.6227346705086, 5.0: 4007.547498685652, 10.0: 4014.360779887567,
             20.0: 4022.801358263627, 60.0: 4053.4216006520983}
    for ref, v in flips.items():
        assert p.flip_term_structure[ref].level == pytest.approx(v, rel=REL), ref
    assert (p.call_wall, p.put_wall, p.abs_gamma_strike) == (4000.0, 3950.0, 4000.0)
