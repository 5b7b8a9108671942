"""Sign-convention properties, levels, CBOE import and the Perfiliev reference numbers."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_analytics import plain_recipe
from zerogex_pipeline.analytics import perfiliev as pf
from zerogex_pipeline.analytics.cboe import CboeFormatError, parse_cboe_text, parse_date_line, read_cboe_csv
from zerogex_pipeline.analytics.chain import chain_from_frame
from zerogex_pipeline.analytics.engine import Chain, compute_product, max_pain
from zerogex_pipeline.analytics.expiry import time_to_expiry_years

CSV = Path("/work/shared/data/cboe_spx_quotedata_2022-12-12.csv")


@st.composite
def chains(draw):
    n = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    S = 100.0
    K = np.round(S * np.exp(rng.normal(0, 0.08, n)))
    T = rng.choice([1, 2, 7, 30, 90], n) / 365.0
    return Chain(S, 0.03, 0.01, K, T, rng.uniform(0.1, 0.6, n), rng.integers(0, 1000, n).astype(float),
                 rng.integers(0, 100, n).astype(float), rng.random(n) < 0.5, (T * 365).astype(np.intp) % 5,
                 ("a", "b", "c", "d", "e"))


@settings(max_examples=40, deadline=None)
@given(chains())
def test_sign_convention_and_levels(chain):
    p = compute_product(chain)
    for name in ("gex", "dex", "vex", "cex", "gex_volume"):
        np.testing.assert_allclose(p.by_strike[f"net_{name}"], p.by_strike[f"call_{name}"] + p.by_strike[f"put_{name}"])
        assert (p.contracts[name][chain.is_call] * np.sign(chain.oi[chain.is_call] + 1) >= -1e-300).all() or name != "gex"
    assert (p.by_strike["call_gex"] >= 0).all() and (p.by_strike["put_gex"] <= 0).all()
    assert (p.by_strike["put_dex"] >= 0).all()  # dealer short puts: -Δ_put > 0
    if p.call_wall is not None:
        assert p.call_wall >= chain.spot
    if p.put_wall is not None:
        assert p.put_wall <= chain.spot
    assert p.net_gex_at_spot == pytest.approx(p.totals["net_gex"], rel=1e-9, abs=1e-6)
    flip = p.zero_gamma_raw.level
    if flip is not None and abs(flip - chain.spot) > 0.02 * chain.spot:
        between = (p.profile_levels - chain.spot) * (p.profile_levels - flip) < 0
        vals = p.profile_raw[between]
        assert (np.sign(vals) == np.sign(p.net_gex_at_spot)).all()


def test_time_to_expiry_zero_after_settlement():
    settle = pd.Series(pd.to_datetime(["2025-01-17 16:00"]).tz_localize("America/New_York").tz_convert("UTC"))
    for ts, positive in (("2025-01-17 16:00", False), ("2025-01-17 17:00", False), ("2025-01-17 15:59", True)):
        as_of = pd.Series(pd.to_datetime([ts]).tz_localize("America/New_York").tz_convert("UTC"))
        T = time_to_expiry_years(as_of, settle)
        assert (T[0] > 0) == positive
        if positive:
            assert T[0] == pytest.approx(30 / (365 * 24 * 60))  # the 30-minute floor


def test_max_pain_per_expiration_not_pooled():
    exp = np.array([0, 0, 0, 1, 1, 1])
    K = np.array([90.0, 100, 110, 90, 100, 110])
    mp = max_pain(exp, K, np.array([1000.0, 0, 0, 1000, 0, 0]), np.array([0, 0, 3000.0, 0, 0, 0]), ("x", "y"))
    assert mp == {"x": 110.0, "y": 90.0}  # pooled, y would also be 110


@pytest.mark.skipif(not CSV.exists(), reason="shared CBOE export not present")
def test_perfiliev_reference_numbers_and_plain_recipe():
    e = read_cboe_csv(CSV)
    assert e.spot == 3990.5601 and str(e.as_of) == "2022-12-12 20:30:00-05:00"
    assert len(e.chain) == 2 * 9578 and set(e.chain["source"]) == {"cboe"}
    inp = pf.inputs_from_raw(e.raw, e.spot, e.as_of.date().isoformat())
    r = pf.compute(inp)
    ref = {"total": -1.0752, "call": 83.6891, "put": -84.7642, "zg": 4013.95, "near": -6.5635, "at": -4.1343}
    got = {"total": r.total_gex / 1e9, "call": r.call_gex / 1e9, "put": r.put_gex / 1e9, "zg": r.zero_gamma,
           "near": r.profile_nearest_spot / 1e9, "at": r.gex_at_spot / 1e9}
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-4), k
    assert (r.call_wall, r.put_wall, r.abs_gamma_strike) == (4000.0, 4000.0, 4000.0)
    plain = plain_recipe(inp)
    np.testing.assert_allclose(r.profile, plain["profile"], rtol=1e-11)
    assert r.zero_gamma == pytest.approx(plain["zero_gamma"], rel=1e-12)


def test_date_line_styles_and_errors():
    a = parse_date_line('"Date: December 12, 2022 at 8:30 PM EST",Bid: 1')
    b = parse_date_line("February 5 2022, 8:26 PM EST")
    assert str(a) == "2022-12-12 20:30:00-05:00" and str(b) == "2022-02-05 20:26:00-05:00"
    with pytest.raises(CboeFormatError, match="header"):
        parse_cboe_text("hello\nworld\n", "x.csv")
    with pytest.raises(CboeFormatError, match="date stamp"):
        parse_date_line("Date: yesterday", "x.csv")


def test_settled_contracts_drop_out_everywhere():
    """T = 0 contracts (settled before the snapshot) count nowhere: not in OI, aggregates, walls or max pain."""
    rng = np.random.default_rng(4)
    n = 60
    K = np.round(100 * np.exp(rng.normal(0, 0.05, n)))
    T = np.where(np.arange(n) < 20, 0.0, 30 / 365)  # expiration "a" settled, "b" live
    oi = rng.integers(1, 500, n).astype(float)
    oi[:20] *= 1000  # the settled expiration would dominate every OI-based figure
    K[:20] = 80.0
    call = np.arange(n) % 2 == 0
    exp = np.where(np.arange(n) < 20, 0, 1).astype(np.intp)
    iv = rng.uniform(0.1, 0.5, n)
    full = Chain(100.0, 0.03, 0.01, K, T, iv, oi, oi / 10, call, exp, ("a", "b"))
    live = T > 0
    only_live = Chain(100.0, 0.03, 0.01, K[live], T[live], iv[live], oi[live], oi[live] / 10, call[live],
                      np.zeros(live.sum(), dtype=np.intp), ("b",))
    p, q = compute_product(full), compute_product(only_live)
    assert set(p.max_pain) == {"b"} and p.max_pain == q.max_pain
    assert p.totals == q.totals
    assert p.totals["call_oi"] + p.totals["put_oi"] == oi[live].sum()
    assert 80.0 not in p.strikes
    assert p.by_expiration["call_oi"].size == 1
    assert (p.call_wall, p.put_wall, p.zero_gamma.level) == (q.call_wall, q.put_wall, q.zero_gamma.level)
    assert p.inputs["contracts_settled"] == 20 and p.inputs["contracts"] == n - 20
    np.testing.assert_array_equal(p.profile_raw, q.profile_raw)


def test_all_contracts_settled_gives_empty_product():
    K = np.array([90.0, 100.0])
    p = compute_product(Chain(100.0, 0.0, 0.0, K, np.zeros(2), np.full(2, 0.2), np.ones(2), np.ones(2),
                              np.array([True, False]), np.zeros(2, dtype=np.intp), ("a",)))
    assert p.max_pain == {} and p.totals["net_gex"] == 0.0 and p.call_wall is None and p.put_wall is None
    assert p.zero_gamma.level is None and p.zero_gamma.reason


@pytest.mark.skipif(not CSV.exists(), reason="shared CBOE export not present")
def test_cboe_export_drops_the_expiration_settled_before_its_timestamp():
    export = read_cboe_csv(CSV)
    chain, _ = chain_from_frame(export.chain, 0.04, 0.012)
    settled = chain.T <= 0
    assert {chain.expirations[i] for i in np.unique(chain.expiry[settled])} == {"2022-12-12"}
    p = compute_product(chain)
    assert "2022-12-12" not in p.max_pain and "2022-12-13" in p.max_pain
    assert p.inputs["contracts_settled"] == int(settled.sum()) > 0
    assert p.totals["call_oi"] + p.totals["put_oi"] == pytest.approx(np.nansum(chain.oi[~settled]), rel=1e-12)
