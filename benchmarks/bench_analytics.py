"""Analytics benchmarks: product computation, parity convention vs the plain recipe, IV-solver throughput.

Single process; set OPENBLAS_NUM_THREADS=1 etc. for one core (done below before numpy loads when run as
``python -m benchmarks``). Medians over repeated runs.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from zerogex_pipeline.analytics import perfiliev as pf  # noqa: E402
from zerogex_pipeline.analytics.black_scholes import price  # noqa: E402
from zerogex_pipeline.analytics.cboe import read_cboe_csv  # noqa: E402
from zerogex_pipeline.analytics.chain import chain_from_frame  # noqa: E402
from zerogex_pipeline.analytics.engine import Chain, compute_product  # noqa: E402
from zerogex_pipeline.analytics.implied_vol import implied_vol  # noqa: E402

SPX_CSV = Path(os.environ.get("ZEROGEX_SPX_CSV", "/work/shared/data/cboe_spx_quotedata_2022-12-12.csv"))


def plain_recipe(inp: pf.PerfilievInputs) -> dict:
    """A plain vectorized numpy/scipy implementation of the published recipe (one pass per level)."""
    S = inp.spot
    call_gex = inp.call_gamma * inp.call_oi * 100 * S * S * 0.01
    put_gex = inp.put_gamma * inp.put_oi * 100 * S * S * 0.01 * -1
    T = pf.time_to_expiry(inp.file_date, inp.expiration)
    levels = np.linspace(0.8 * S, 1.2 * S, 60)

    def gex(level, K, vol, T, oi, put):
        with np.errstate(divide="ignore", invalid="ignore"):
            dp = (np.log(level / K) + 0.5 * vol**2 * T) / (vol * np.sqrt(T))
            dm = dp - vol * np.sqrt(T)
            g = K * norm.pdf(dm) / (level * level * vol * np.sqrt(T)) if put else norm.pdf(dp) / (level * vol * np.sqrt(T))
        return np.where((T == 0) | (vol == 0), 0.0, oi * 100 * level * level * 0.01 * g)

    net_by_level = []
    for level in levels:
        c = gex(level, inp.strike, inp.call_iv, T, inp.call_oi, False)
        p = gex(level, inp.strike, inp.put_iv, T, inp.put_oi, True)
        net_by_level.append(c.sum() - p.sum())
    total = np.array(net_by_level)
    idx = np.where(np.diff(np.sign(total)))[0]
    zg = None
    if idx.size:
        i = idx[0]
        zg = levels[i + 1] - (levels[i + 1] - levels[i]) * total[i + 1] / (total[i + 1] - total[i])
    c = gex(S, inp.strike, inp.call_iv, T, inp.call_oi, False)
    p = gex(S, inp.strike, inp.put_iv, T, inp.put_oi, True)
    return {"total_gex": call_gex.sum() + put_gex.sum(), "profile": total, "zero_gamma": zg,
            "gex_at_spot": c.sum() - p.sum()}


def median_ms(fn, repeat: int = 30) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def synthetic(n: int = 20_000, seed: int = 7) -> tuple[Chain, pf.PerfilievInputs]:
    rng = np.random.default_rng(seed)
    S = 5000.0
    lines = n // 2
    n_exp = 40
    exp_days = np.sort(rng.choice(np.arange(1, 700), n_exp, replace=False))
    e = rng.integers(0, n_exp, lines)
    K = np.round(S * np.exp(rng.normal(0, 0.15, lines)) / 5) * 5
    T = exp_days[e] / 365.0
    iv_c = np.clip(0.18 + 0.1 * rng.standard_normal(lines), 0.05, 1.5)
    iv_p = np.clip(iv_c + 0.02 * rng.standard_normal(lines), 0.05, 1.5)
    oi_c = rng.integers(0, 5000, lines).astype(float)
    oi_p = rng.integers(0, 5000, lines).astype(float)
    chain = Chain(S, 0.04, 0.012, np.r_[K, K], np.r_[T, T], np.r_[iv_c, iv_p], np.r_[oi_c, oi_p],
                  np.r_[oi_c, oi_p] / 10, np.r_[np.ones(lines, bool), np.zeros(lines, bool)], np.r_[e, e],
                  tuple(str(np.datetime64("2025-01-02") + int(d)) for d in exp_days))
    exp = np.datetime64("2025-01-02") + exp_days[e].astype("timedelta64[D]")
    from zerogex_pipeline.analytics.black_scholes import gamma
    inp = pf.PerfilievInputs(S, np.datetime64("2025-01-02"), exp, K, iv_c, iv_p, oi_c, oi_p,
                             gamma(S, K, T, iv_c, 0.0, 0.0), gamma(S, K, T, iv_p, 0.0, 0.0))
    return chain, inp


def bench_parity(name: str, inp: pf.PerfilievInputs) -> None:
    fast = pf.compute(inp)
    plain = plain_recipe(inp)
    t_fast = median_ms(lambda: pf.compute(inp))
    t_plain = median_ms(lambda: plain_recipe(inp), repeat=10)
    dprof = float(np.max(np.abs(fast.profile - plain["profile"])) / np.max(np.abs(plain["profile"])))
    dzg = abs(fast.zero_gamma - plain["zero_gamma"]) / plain["zero_gamma"] if fast.zero_gamma else float("nan")
    print(f"{name}: parity convention {t_fast:.2f} ms vs plain recipe {t_plain:.2f} ms -> {t_plain / t_fast:.1f}x; "
          f"max rel profile diff {dprof:.1e}, zero gamma {fast.zero_gamma:.6f} vs {plain['zero_gamma']:.6f} "
          f"(rel {dzg:.1e}), total GEX rel diff {abs(fast.total_gex / plain['total_gex'] - 1):.1e}")


def main() -> None:
    print("== analytics benchmarks (median, one process, BLAS threads = 1) ==")
    if SPX_CSV.exists():
        export = read_cboe_csv(SPX_CSV)
        chain, _ = chain_from_frame(export.chain, 0.04, 0.012)
        print(f"SPX export: {chain.strike.size} contracts; full product computation (greeks, exposures, "
              f"aggregations, levels, flips): {median_ms(lambda: compute_product(chain), 50):.2f} ms "
              f"(target <= 10 ms)")
        print(f"SPX export: chain frame -> arrays incl. IV choice/solve: "
              f"{median_ms(lambda: chain_from_frame(export.chain, 0.04, 0.012), 10):.2f} ms (not in the target)")
        inp = pf.inputs_from_raw(export.raw, export.spot, export.as_of.date().isoformat())
        bench_parity("SPX export", inp)
    else:
        print(f"SPX export not found at {SPX_CSV}; skipping")
    chain, inp = synthetic()
    print(f"synthetic {chain.strike.size} contracts: full product computation "
          f"{median_ms(lambda: compute_product(chain), 20):.2f} ms")
    bench_parity("synthetic 20,000", inp)

    rng = np.random.default_rng(1)
    n = 1_000_000
    S = rng.uniform(50, 6000, n)
    K = S * np.exp(rng.uniform(-0.5, 0.5, n))
    T = rng.uniform(1 / 365 / 24, 2, n)
    sig = rng.uniform(0.05, 1.5, n)
    call = rng.random(n) < 0.5
    p = price(S, K, T, sig, 0.04, 0.012, call)
    secs = median_ms(lambda: implied_vol(p, S, K, T, 0.04, 0.012, call), 5) / 1e3
    res = implied_vol(p, S, K, T, 0.04, 0.012, call)
    ok = res.reason == 0
    err = np.abs(price(S[ok], K[ok], T[ok], res.iv[ok], 0.04, 0.012, call[ok]) - p[ok]) / S[ok]
    print(f"IV solver: {n:,} contracts in {secs * 1e3:.0f} ms -> {n / secs:,.0f} contracts/s (target >= 1,000,000); "
          f"solved {ok.sum():,}, others {n - ok.sum():,} (price at/below intrinsic in float64); "
          f"max |repriced - input| = {err.max():.1e}·S (target <= 1e-9·S)")


if __name__ == "__main__":
    main()
