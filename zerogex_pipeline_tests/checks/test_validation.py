"""The pure validation rules on simulated frames: pass on real data, fail on each kind of corruption."""

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics import validation as v
from zerogex_pipeline.analytics.levels import build_levels, snapshot_levels
from zerogex_pipeline.analytics.surface import build_surface
from zerogex_pipeline.sources.base import spots_from_bars
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import at

SPY = resolve_underlying("SPY")
DAY = dt.date(2024, 6, 14)
AFTER = pd.Timestamp("2025-01-01", tz="UTC")  # every session below is complete


@lru_cache(maxsize=4)
def _day(day: dt.date, snapshot_minutes: int = 30) -> tuple[pd.DataFrame, dict[dt.date, pd.DataFrame]]:
    market = SimulatedMarket()
    session = market_calendar.session(day)
    bars = market.underlying_bars(SPY, session, 1)
    spots = spots_from_bars(bars, session.snapshot_times(snapshot_minutes))
    chains = {e: market.chain_snapshots(SPY, session, e, spots, 10.0)
              for e in market.listed_expirations(SPY, day)[:2]}
    return bars, chains


def bars_of(day: dt.date = DAY) -> pd.DataFrame:
    return _day(day)[0].copy()


def chain_of(day: dt.date = DAY, index: int = 1) -> tuple[pd.DataFrame, dt.date]:
    chains = _day(day)[1]
    expiration = sorted(chains)[index]
    return chains[expiration].copy(), expiration


def surface_of(chain: pd.DataFrame) -> pd.DataFrame:
    return build_surface(chain, 0.04, SPY.dividend_yield)


def validate_chain(chain: pd.DataFrame, expiration: dt.date, now: pd.Timestamp = AFTER) -> v.ValidationResult:
    return v.validate_chain(chain, market_calendar.session(DAY), expiration, 30, 10.0, now)


def rules(result: v.ValidationResult) -> list[str]:
    return [p.rule for p in result.problems]


# --- bars -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "bars_expected"), [(DAY, 390), (dt.date(2024, 7, 3), 210)])
def test_complete_sessions_pass_with_every_bar_required(day: dt.date, bars_expected: int) -> None:
    result = v.validate_bars(bars_of(day), [market_calendar.session(day)], 1, AFTER)
    assert result.passed, result.summary()
    assert result.numbers["bars_required"] == bars_expected
    assert result.numbers["rows_checked"] == bars_expected


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=389))
def test_any_single_missing_bar_fails_naming_that_bar(position: int) -> None:
    bars = bars_of()
    gone = bars["ts"].iloc[position]
    result = v.validate_bars(bars.drop(index=bars.index[position]), [market_calendar.session(DAY)], 1, AFTER)
    assert not result.passed
    [problem] = result.problems
    assert problem.rule.startswith("missing bars") and problem.count == 1
    assert f"{gone.tz_convert('America/New_York'):%H:%M}" in problem.examples[0]


def test_intraday_partition_expects_bars_up_to_now_minus_the_grace() -> None:
    now = at("2024-06-14 10:02:30")
    bars = bars_of()
    so_far = bars[bars["ts"] <= now]
    session = market_calendar.session(DAY)
    result = v.validate_bars(so_far, [session], 1, now)
    assert result.passed, result.summary()
    assert result.numbers["bars_required"] == 27  # bar ends 09:31 .. 09:57 (now - 5 min)
    # the last two bars may still be unpublished; an older one may not
    assert v.validate_bars(so_far.iloc[:-2], [session], 1, now).passed
    assert not v.validate_bars(so_far.drop(index=so_far.index[20]), [session], 1, now).passed
    # bars from the future (after now) are not allowed
    future = v.validate_bars(bars, [session], 1, now)
    assert rules(future) == ["unexpected bars (off the session grid, after the close or in the future)"]


def test_bars_after_an_early_close_or_off_the_grid_fail() -> None:
    early = market_calendar.session(dt.date(2024, 7, 3))
    bars = bars_of(dt.date(2024, 7, 3))
    late = bars.iloc[[-1]].assign(ts=bars["ts"].iloc[-1] + pd.Timedelta(minutes=1))
    assert "unexpected bars" in rules(v.validate_bars(pd.concat([bars, late]), [early], 1, AFTER))[0]
    shifted = bars.assign(ts=bars["ts"] + pd.Timedelta(seconds=30))
    assert len(v.validate_bars(shifted, [early], 1, AFTER).problems) == 2  # all missing, all off-grid


def test_before_the_open_no_bars_pass_with_a_reason() -> None:
    result = v.validate_bars(bars_of().iloc[:0], [market_calendar.session(DAY)], 1, at("2024-06-14 09:00"))
    assert result.passed
    assert "had not opened" in str(result.numbers["empty_reason"])


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (lambda b: b.assign(low=b["low"].where(b.index != 5, b["close"] + 1.0)), "low above open/close"),
        (lambda b: b.assign(close=b["close"].where(b.index != 5, np.nan)), "price not finite and positive"),
        (lambda b: b.assign(volume=b["volume"].where(b.index != 5, -1)), "negative volume"),
        (lambda b: pd.concat([b, b.iloc[[7]]]), "repeated bar end"),
    ],
)
def test_corrupted_bar_values_fail(corrupt, rule: str) -> None:
    result = v.validate_bars(corrupt(bars_of()), [market_calendar.session(DAY)], 1, AFTER)
    assert any(r.startswith(rule) for r in rules(result)), result.summary()


# --- chain ------------------------------------------------------------------------------------------


def test_simulated_chain_passes() -> None:
    for index in (0, 1):
        chain, expiration = chain_of(index=index)
        result = validate_chain(chain, expiration)
        assert result.passed, result.summary()
        assert result.numbers["snapshots_required"] == 14


def _one_row(column: str, value: object):
    def corrupt(chain: pd.DataFrame) -> pd.DataFrame:
        chain = chain.copy()
        chain.loc[chain.index[100], column] = value
        return chain
    return corrupt


def _drop_side(chain: pd.DataFrame) -> pd.DataFrame:
    return chain[~((chain["option_type"] == "P") & (chain["strike"] < chain["spot"]))]


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (lambda c: c.assign(bid=np.where(c.index == c.index[100], c["ask"] + 0.05, c["bid"])), "bid above ask"),
        (_one_row("open_interest", -3), "negative open interest"),
        (_one_row("iv", 50.0), "vendor IV outside [0, 10]"),
        (_one_row("iv", -0.2), "vendor IV outside [0, 10]"),
        (_one_row("bid", -0.01), "negative or non-finite bid/ask"),
        (_one_row("last", -1.0), "negative last or mid"),
        (_one_row("spot", 0.0), "spot not finite and positive"),
        (_one_row("strike", 900.0), "strike outside the ±10% window"),
        (_drop_side, "strike window covered on one side only"),
        (lambda c: c[c["snapshot_ts"] != c["snapshot_ts"].unique()[3]], "missing snapshots"),
        (lambda c: pd.concat([c, c.iloc[[5]]]), "repeated (snapshot_ts, symbol)"),
        (_one_row("option_type", "X"), "option_type not 'C' or 'P'"),
    ],
)
def test_corrupted_chain_fails(corrupt, rule: str) -> None:
    chain, expiration = chain_of()
    result = validate_chain(corrupt(chain), expiration)
    assert any(r.startswith(rule) for r in rules(result)), result.summary()


def test_one_side_of_the_window_truncated_below_half_fails_and_reports_the_reach() -> None:
    chain, expiration = chain_of()
    cut = chain[chain["strike"] >= chain["spot"] * 0.96]  # 4% below spot reached, window is 10%
    result = validate_chain(cut, expiration)
    assert rules(result) == ["strike window covered on one side only or less than 50% of it"]
    assert result.numbers["worst_reach_below"] == pytest.approx(0.04, abs=0.002)
    wide = chain[chain["strike"] >= chain["spot"] * 0.94]  # 6% reached: enough
    assert validate_chain(wide, expiration).passed


def test_crossed_quote_metadata_reports_the_worst_crossing() -> None:
    chain, expiration = chain_of()
    rows = chain.index[[10, 20]]
    chain.loc[rows, "bid"] = chain.loc[rows, "ask"] + np.array([0.05, 0.25])
    result = validate_chain(chain, expiration)
    assert result.numbers["crossed_quotes"] == 2
    assert result.numbers["worst_crossed_usd"] == pytest.approx(0.25)
    [problem] = result.problems
    assert problem.count == 2 and len(problem.examples) == 2 and "bid=" in problem.examples[0]


# --- surface ----------------------------------------------------------------------------------------


def test_surface_reconciles_with_its_chain() -> None:
    chain, _ = chain_of(index=0)  # 0DTE: the closing snapshot is settled (IV 0, GEX 0)
    result = v.validate_surface(surface_of(chain), chain)
    assert result.passed, result.summary()
    assert float(result.numbers["worst_formula_error_rel"] or 0) < 1e-12


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_flipping_the_sign_of_any_put_row_with_exposure_fails(data: st.DataObject) -> None:
    chain, _ = chain_of()
    surface = surface_of(chain)
    candidates = np.flatnonzero(surface["put_gex"].to_numpy() < 0)
    row = surface.index[data.draw(st.sampled_from(list(candidates)))]
    surface.loc[row, "put_gex"] *= -1
    surface.loc[row, "net_gex"] = surface.loc[row, "call_gex"] + surface.loc[row, "put_gex"]
    result = v.validate_surface(surface, chain)
    assert "put GEX positive (dealer short puts: -)" in rules(result)
    assert result.numbers["positive_put_gex_rows"] == 1


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (lambda s: s.assign(net_gex=s["net_gex"] * (1 + 1e-6)), "net_gex != call_gex + put_gex"),
        (lambda s: s.assign(call_gex=s["call_gex"] * (1 + 1e-6), net_gex=s["call_gex"] * (1 + 1e-6) + s["put_gex"]),
         "call_gex != +gamma·OI·100·S²·0.01"),
        (lambda s: s.drop(index=s.index[50]), "(snapshot_ts, strike, settlement) of the chain missing from the surface"),
        (lambda s: s.assign(put_oi=s["put_oi"] + (s.index == s.index[50])), "open interest differs"),
        (lambda s: s.assign(call_iv=np.where(s.index == s.index[50], 50.0, s["call_iv"])), "call IV outside"),
    ],
)
def test_corrupted_surface_fails(corrupt, rule: str) -> None:
    chain, _ = chain_of()
    result = v.validate_surface(corrupt(surface_of(chain)), chain)
    assert any(r.startswith(rule) for r in rules(result)), result.summary()


def test_a_relative_error_below_the_tolerance_passes() -> None:
    chain, _ = chain_of()
    surface = surface_of(chain)
    nudged = surface.assign(net_gex=surface["net_gex"] + 1e-11 * (surface["call_gex"].abs() + surface["put_gex"].abs()))
    assert v.validate_surface(nudged, chain).passed


# --- levels -----------------------------------------------------------------------------------------


def _levels() -> tuple[pd.DataFrame, pd.DataFrame]:
    surface = pd.concat([surface_of(c) for c in _day(DAY)[1].values()], ignore_index=True)
    return build_levels(surface), surface


def test_levels_reconcile_with_the_surface() -> None:
    levels, surface = _levels()
    result = v.validate_levels(levels, surface)
    assert result.passed, result.summary()
    assert float(result.numbers["worst_total_error_rel"] or 0) < 1e-12


def _slotted_surface(days: tuple[dt.date, ...]) -> pd.DataFrame:
    """Every snapshot of ``days`` over their two nearest expirations, each in its expiration slot."""
    parts = [surface_of(chain).assign(expiration_slot=slot)
             for day in days for slot, (_, chain) in enumerate(sorted(_day(day)[1].items()), start=1)]
    return pd.concat(parts, ignore_index=True)


def test_levels_of_several_days_in_any_row_order_equal_each_snapshot_alone() -> None:
    """build_levels converts the frame's columns once and takes each snapshot's rows by position: over two days
    with their rows shuffled, it equals snapshot_levels of each snapshot's rows taken on their own."""
    surface = _slotted_surface((DAY, DAY - dt.timedelta(days=1))).sample(frac=1.0, random_state=7)
    surface = surface.reset_index(drop=True)
    levels = build_levels(surface)
    expected = pd.DataFrame.from_records([
        {"underlying": u, "session_date": d, "snapshot_ts": t, **snapshot_levels(rows)}
        for (u, d, t), rows in surface.groupby(["underlying", "session_date", "snapshot_ts"], sort=True)
    ])
    assert len(levels) == 2 * 14 and levels["expirations"].eq(2).all()
    pd.testing.assert_frame_equal(levels, expected, check_exact=True)


def _gaps_by_sets(surface: pd.DataFrame, tracked: list[dt.date]) -> list[v.SlotGap]:
    """The rule of missing_tracked_expirations, written plainly with Python sets (the oracle)."""
    instants = set(surface["snapshot_ts"])
    gaps: list[v.SlotGap] = []
    for slot, expiration in enumerate(tracked, start=1):
        rows = surface[surface["expiration_slot"] == slot]
        held = sorted({pd.Timestamp(e).date() for e in rows["expiration"]})
        if rows.empty:
            gaps.append((slot, expiration, "no surface stored"))
        elif held != [expiration]:
            gaps.append((slot, expiration, f"surface stored for {', '.join(map(str, held))} instead"))
        elif lacking := len(instants - set(rows["snapshot_ts"])):
            gaps.append((slot, expiration, f"{lacking} of {len(instants)} snapshots missing"))
    return gaps


@pytest.mark.parametrize("case", ["complete", "one snapshot short", "slot 1 missing", "reversed", "wrong date",
                                  "a third slot"])
def test_missing_tracked_expirations_agrees_with_a_set_oracle(case: str) -> None:
    surface = _slotted_surface((DAY,))
    tracked = sorted(_day(DAY)[1])
    last = surface["snapshot_ts"].max()
    surface, tracked = {
        "complete": (surface, tracked),
        "one snapshot short": (surface[~((surface["expiration_slot"] == 2) & (surface["snapshot_ts"] == last))],
                               tracked),
        "slot 1 missing": (surface[surface["expiration_slot"] != 1], tracked),
        "reversed": (surface, tracked[::-1]),
        "wrong date": (surface, [dt.date(2020, 1, 3), tracked[1]]),
        "a third slot": (surface, [*tracked, tracked[-1] + dt.timedelta(days=7)]),
    }[case]
    gaps = v.missing_tracked_expirations(surface, tracked)
    assert gaps == _gaps_by_sets(surface, tracked)
    assert (gaps == []) == (case == "complete")


def _set(column: str, value_of):
    def corrupt(levels: pd.DataFrame) -> pd.DataFrame:
        levels = levels.copy()
        levels.loc[levels.index[3], column] = value_of(levels.loc[levels.index[3]])
        return levels
    return corrupt


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (_set("call_wall", lambda r: np.floor(r["spot"]) - 2), "call wall below spot"),
        (_set("put_wall", lambda r: np.ceil(r["spot"]) + 2), "put wall above spot"),
        (_set("call_wall_gex", lambda r: r["call_wall_gex"] * 0.99), "call wall GEX is not the surface's largest"),
        (_set("put_wall", lambda r: r["put_wall"] - 1), "put wall GEX is not the surface's most negative"),
        (_set("call_wall", lambda r: np.nan), "call wall null although"),
        (_set("call_wall", lambda r: r["call_wall"] + 0.5), "wall not a strike of the surface"),
        (_set("net_gex", lambda r: r["net_gex"] + 0.01 * abs(r["call_gex"])), "net_gex != sum of gex_surface"),
        (_set("zero_gamma", lambda r: np.nan), "zero_gamma null without a reason"),
        (_set("zero_gamma", lambda r: r["spot"] * 1.2), "zero_gamma farther than 9% of spot"),
        (_set("zero_gamma_reason", lambda r: "no sign change"), "zero_gamma and a null-reason both set"),
        (_set("zero_gamma_raw", lambda r: r["spot"] * 0.4), "zero_gamma_raw farther than 50% of spot"),
        (_set("spot", lambda r: r["spot"] + 1.0), "spot differs from the surface's"),
        (lambda lv: lv.drop(index=lv.index[2]), "surface snapshot without a levels row"),
    ],
)
def test_corrupted_levels_fail(corrupt, rule: str) -> None:
    levels, surface = _levels()
    result = v.validate_levels(corrupt(levels), surface)
    assert any(r.startswith(rule) for r in rules(result)), result.summary()


def test_null_zero_gamma_with_a_reason_passes() -> None:
    levels, surface = _levels()
    levels.loc[levels.index[3], ["zero_gamma", "zero_gamma_reason"]] = [np.nan, "no sign change within ±50% of spot"]
    assert v.validate_levels(levels, surface).passed


def test_missing_columns_name_the_frame() -> None:
    with pytest.raises(ValueError, match=r"gex_levels: missing columns \['zero_gamma'"):
        v.validate_levels(_levels()[0].drop(columns=["zero_gamma"]), _levels()[1])
    with pytest.raises(ValueError, match="now: expected a tz-aware timestamp"):
        v.validate_bars(bars_of(), [market_calendar.session(DAY)], 1, pd.Timestamp("2025-01-01"))
