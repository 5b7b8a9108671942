"""Greeks against finite differences, put-call parity, QuantLib, and the IV solver round trip."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogex_pipeline.analytics import black_scholes as bs
from zerogex_pipeline.analytics.implied_vol import IVReason, implied_vol

rng = np.random.default_rng(3)
N = 200
S = rng.uniform(50, 5000, N)
K = S * np.exp(rng.uniform(-0.3, 0.3, N))
T = rng.uniform(0.02, 2.0, N)
SIG = rng.uniform(0.08, 0.9, N)
R, Q = 0.04, 0.015
CALL = rng.random(N) < 0.5


def test_greeks_match_finite_differences_of_price():
    g = bs.greeks(S, K, T, SIG, R, Q, CALL)
    hS = 1e-4 * S
    hv = 1e-5
    hT = 1e-6

    def px(s=S, sig=SIG, t=T):
        return bs.price(s, K, t, sig, R, Q, CALL)

    np.testing.assert_allclose(g.price, px(), rtol=1e-12)
    np.testing.assert_allclose(g.delta, (px(s=S + hS) - px(s=S - hS)) / (2 * hS), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.gamma, (px(s=S + hS) - 2 * px() + px(s=S - hS)) / hS**2, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(g.vega, (px(sig=SIG + hv) - px(sig=SIG - hv)) / (2 * hv), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g.theta, -(px(t=T + hT) - px(t=T - hT)) / (2 * hT), rtol=1e-5, atol=1e-5)

    def dl(s=S, sig=SIG, t=T):
        return bs.delta(s, K, t, sig, R, Q, CALL)

    np.testing.assert_allclose(g.vanna, (dl(sig=SIG + hv) - dl(sig=SIG - hv)) / (2 * hv), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.charm, -(dl(t=T + hT) - dl(t=T - hT)) / (2 * hT), rtol=1e-4, atol=1e-6)
    # single-greek functions agree with the one-pass version
    np.testing.assert_allclose(bs.vanna(S, K, T, SIG, R, Q), g.vanna, rtol=1e-12)
    np.testing.assert_allclose(bs.charm(S, K, T, SIG, R, Q, CALL), g.charm, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bs.theta(S, K, T, SIG, R, Q, CALL), g.theta, rtol=1e-12, atol=1e-12)


def test_put_call_parity():
    c = bs.price(S, K, T, SIG, R, Q, True)
    p = bs.price(S, K, T, SIG, R, Q, False)
    np.testing.assert_allclose(c - p, S * np.exp(-Q * T) - K * np.exp(-R * T), rtol=1e-10, atol=1e-9 * float(S.max()))
    dc, dp = bs.delta(S, K, T, SIG, R, Q, True), bs.delta(S, K, T, SIG, R, Q, False)
    np.testing.assert_allclose(dc - dp, np.exp(-Q * T), rtol=1e-12)


def test_quantlib_oracle():
    ql = pytest.importorskip("QuantLib")
    day = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = day
    dc = ql.Actual365Fixed()
    for i in range(40):
        days = max(1, round(T[i] * 365))
        t = days / 365.0
        spot = ql.SimpleQuote(S[i])
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(spot), ql.YieldTermStructureHandle(ql.FlatForward(day, Q, dc, ql.Continuous)),
            ql.YieldTermStructureHandle(ql.FlatForward(day, R, dc, ql.Continuous)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(day, ql.NullCalendar(), SIG[i], dc)))
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if CALL[i] else ql.Option.Put, K[i]),
                               ql.EuropeanExercise(day + days))
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        g = bs.greeks(S[i], K[i], t, SIG[i], R, Q, CALL[i])
        assert float(g.price) == pytest.approx(opt.NPV(), rel=1e-9, abs=1e-9)
        assert float(g.delta) == pytest.approx(opt.delta(), rel=1e-9, abs=1e-12)
        assert float(g.gamma) == pytest.approx(opt.gamma(), rel=1e-9, abs=1e-14)
        assert float(g.vega) == pytest.approx(opt.vega(), rel=1e-9, abs=1e-9)
        assert float(g.theta) == pytest.approx(opt.theta(), rel=1e-8, abs=1e-8)


def test_dead_lanes_zero_and_intrinsic():
    assert bs.gamma(100.0, 90.0, 0.0, 0.2, R, Q) == 0.0
    assert bs.greeks(100.0, 90.0, 0.0, 0.2, R, Q, True).price == pytest.approx(10.0)
    assert bs.greeks(100.0, 90.0, 0.5, np.nan, R, Q, True).gamma == 0.0


@settings(max_examples=200, deadline=None)
@given(
    s=st.floats(10, 10_000), m=st.floats(-0.6, 0.6), t=st.floats(1 / (365 * 48), 3.0),
    sig=st.floats(0.02, 3.0), call=st.booleans(),
)
def test_iv_round_trip(s, m, t, sig, call):
    k = s * np.exp(m)
    p = float(bs.price(s, k, t, sig, R, Q, call))
    res = implied_vol(p, s, k, t, R, Q, call)
    forward_value = s * np.exp(-Q * t) - k * np.exp(-R * t)
    time_value = p - max(forward_value if call else -forward_value, 0.0)
    if time_value > 1e-10 * s:  # the price carries volatility information: it must solve
        assert res.reason == IVReason.OK
        assert abs(float(bs.price(s, k, t, float(res.iv), R, Q, call)) - p) <= 1e-9 * s
    elif res.reason == IVReason.OK:  # almost no time value, yet solved: it must still reprice
        assert abs(float(bs.price(s, k, t, float(res.iv), R, Q, call)) - p) <= 1e-9 * s
    else:  # no time value left in float64: unidentifiable, so NaN and a reason, never a bound
        assert np.isnan(res.iv)
        assert res.reason in (IVReason.BELOW_INTRINSIC, IVReason.SATURATED_LOW, IVReason.SATURATED_HIGH)


def test_iv_bounds_and_saturation_give_nan_and_reason():
    res = implied_vol([5.0, 0.0, 200.0, 1e-3, 99.99], 100.0, [90.0, 100.0, 100.0, 100.0, 100.0], 1.0, 0.0, 0.0,
                      [True, True, True, True, True], sigma_max=5.0)
    assert list(res.reason) == [IVReason.BELOW_INTRINSIC, IVReason.BELOW_INTRINSIC, IVReason.ABOVE_UPPER_BOUND,
                                IVReason.SATURATED_LOW, IVReason.SATURATED_HIGH]
    assert np.isnan(res.iv).all()
    assert implied_vol(1.0, 100.0, 100.0, 0.0, 0.0, 0.0, True).reason == IVReason.BAD_INPUT


def _ql_delta(ql, i: int, days: int, vol_bump: float) -> float:
    """QuantLib's analytic BSM delta of contract ``i`` maturing in ``days`` with its vol shifted by ``vol_bump``."""
    day = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = day
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S[i])),
        ql.YieldTermStructureHandle(ql.FlatForward(day, Q, dc, ql.Continuous)),
        ql.YieldTermStructureHandle(ql.FlatForward(day, R, dc, ql.Continuous)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(day, ql.NullCalendar(), SIG[i] + vol_bump, dc)))
    opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if CALL[i] else ql.Option.Put, K[i]),
                           ql.EuropeanExercise(day + days))
    opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return float(opt.delta())


def test_vanna_charm_against_quantlib_delta_differences():
    """Vanna and charm against finite differences of QuantLib's analytic delta (not of our own price/delta).

    Vanna: 4-point Richardson stencil in vol (±0.001, ±0.002). Charm (-dΔ/dT): QuantLib's maturities are
    whole days, so the same stencil over ±1, ±2 days (error O(h⁴), h = 1/365).
    """
    ql = pytest.importorskip("QuantLib")
    for i in range(40):
        days = max(20, round(T[i] * 365))
        hv = 1e-3
        v1, v_1, v2, v_2 = (_ql_delta(ql, i, days, k * hv) for k in (1, -1, 2, -2))
        vanna_fd = (8 * (v1 - v_1) - (v2 - v_2)) / (12 * hv)
        h = 1 / 365
        d1, d_1, d2, d_2 = (_ql_delta(ql, i, days + k, 0.0) for k in (1, -1, 2, -2))
        dDelta_dT = (8 * (d1 - d_1) - (d2 - d_2)) / (12 * h)
        g = bs.greeks(S[i], K[i], days / 365.0, SIG[i], R, Q, CALL[i])
        assert float(g.vanna) == pytest.approx(vanna_fd, rel=1e-5, abs=1e-7), i  # worst seen 1.0e-6 (vanna near 0)
        assert float(g.charm) == pytest.approx(-dDelta_dT, rel=1e-5, abs=1e-7), i
