import datetime as dt

import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline.market_calendar import session
from zerogex_pipeline.schemas import CHAIN_QUOTES, UNDERLYING_BARS
from zerogex_pipeline.sources.base import MarketDataSource, spots_from_bars
from zerogex_pipeline.sources.simulated import SimulatedMarket, listing, price_path
from zerogex_pipeline.sources.simulated.quotes import SIM_RATE
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
SPX = resolve_underlying("SPX")
DAY = dt.date(2024, 6, 14)


def chain_for(u, day, expiration, distance=10.0, every=30):
    m = SimulatedMarket()
    s = session(day)
    spots = spots_from_bars(m.underlying_bars(u, s, 1), s.snapshot_times(every))
    return m.chain_snapshots(u, s, expiration, spots, distance)


def test_implements_the_source_interface() -> None:
    assert isinstance(SimulatedMarket(), MarketDataSource)


def test_bars_are_deterministic_whatever_the_call_order() -> None:
    price_path.daily_path.cache_clear()
    later_first = SimulatedMarket().underlying_bars(SPY, session("2024-06-17"), 1)
    a = SimulatedMarket().underlying_bars(SPY, session(DAY), 1)
    price_path.daily_path.cache_clear()
    b = SimulatedMarket().underlying_bars(SPY, session(DAY), 1)
    pd.testing.assert_frame_equal(a, b)
    assert not later_first.equals(a)


def test_chain_is_deterministic() -> None:
    exp = SimulatedMarket().listed_expirations(SPY, DAY)[1]
    pd.testing.assert_frame_equal(chain_for(SPY, DAY, exp), chain_for(SPY, DAY, exp))


def test_bars_are_sane_ohlcv() -> None:
    bars = SimulatedMarket().underlying_bars(SPY, session(DAY), 1)
    UNDERLYING_BARS.conform(bars)
    assert len(bars) == 390
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] > 0).all()
    assert bars["ts"].is_monotonic_increasing


def test_intraday_volume_is_u_shaped() -> None:
    vols = [SimulatedMarket().underlying_bars(SPY, session(d), 1)["volume"].to_numpy()
            for d in ("2024-06-10", "2024-06-11", "2024-06-12", "2024-06-13", "2024-06-14")]
    v = np.mean(vols, axis=0)
    first, mid, last = v[:30].mean(), v[165:225].mean(), v[-30:].mean()
    assert first > 1.8 * mid and last > 1.8 * mid


def test_daily_returns_have_realistic_volatility() -> None:
    path = price_path.daily_path(SPY)
    closes = path.close[(path.sessions >= "2019-01-01") & (path.sessions < "2025-01-01")]
    vol = np.std(np.diff(np.log(closes))) * np.sqrt(252)
    assert 0.10 < vol < 0.30
    # volatility clusters: |returns| are autocorrelated
    r = np.abs(np.diff(np.log(closes)))
    assert np.corrcoef(r[:-1], r[1:])[0, 1] > 0.05


def test_intraday_path_matches_the_daily_open_and_close() -> None:
    path = price_path.daily_path(SPY)
    i = path.locate(DAY)
    bars = SimulatedMarket().underlying_bars(SPY, session(DAY), 1)
    assert bars["open"].iloc[0] == pytest.approx(path.open[i], abs=0.006)
    assert bars["close"].iloc[-1] == pytest.approx(path.close[i], abs=0.006)


def test_spy_listing_has_dailies_and_monthlies() -> None:
    exps = SimulatedMarket().listed_expirations(SPY, DAY)
    assert exps[0] == DAY  # 0DTE
    assert dt.date(2024, 6, 17) in exps and dt.date(2024, 6, 21) in exps
    assert listing.monthly_expiration(2025, 1) in exps  # monthlies far out
    assert dt.date(2024, 6, 19) not in exps  # Juneteenth holiday


def test_the_latest_sessions_list_monthlies_two_years_ahead_whatever_today_is() -> None:
    """The calendar reaches past every listing: on 2026-12-01 (the library's default horizon, one year ahead) the
    listing of 2025-12-01 asked for December 2027's monthly and failed."""
    today = dt.date.today()
    for as_of in (today - dt.timedelta(days=365), today):
        exps = listing.listed_expirations(SPY, as_of)
        horizon = as_of + dt.timedelta(days=listing.MONTHLY_HORIZON_DAYS)
        assert exps[-1] <= horizon
        assert (horizon - exps[-1]).days < 35, (as_of, exps[-1])  # not cut short by the calendar
        assert exps[-1] == listing.monthly_expiration(exps[-1].year, exps[-1].month)


def test_monthly_on_a_holiday_moves_to_thursday() -> None:
    assert listing.monthly_expiration(2025, 4) == dt.date(2025, 4, 17)  # Good Friday 2025-04-18


def test_spy_strikes_are_one_dollar_near_spot() -> None:
    chain = chain_for(SPY, DAY, SimulatedMarket().listed_expirations(SPY, DAY)[1], distance=3)
    strikes = np.unique(chain["strike"])
    assert set(np.diff(strikes)) == {1.0}
    assert chain["symbol"].iloc[0].startswith("SPY 240617")


def test_spx_monthly_lists_am_and_pm_series_with_5_dollar_strikes() -> None:
    monthly = listing.monthly_expiration(2024, 6)  # 2024-06-21
    chain = chain_for(SPX, DAY, monthly, distance=2)
    assert set(chain["settlement"]) == {"AM", "PM"}
    assert {s.split()[0] for s in chain["symbol"]} == {"SPX", "SPXW"}
    assert set(np.diff(np.unique(chain["strike"]))) == {5.0}
    # on expiration day the AM series has settled and is gone
    on_expiry = chain_for(SPX, monthly, monthly, distance=2)
    assert set(on_expiry["settlement"]) == {"PM"}
    weekly = chain_for(SPX, DAY, dt.date(2024, 6, 17), distance=2)
    assert set(weekly["settlement"]) == {"PM"}


@pytest.mark.parametrize("u", [SPY, SPX, resolve_underlying("QQQ")], ids=lambda u: u.name)
def test_quotes_are_not_crossed_and_respect_put_call_parity(u) -> None:
    exps = SimulatedMarket().listed_expirations(u, DAY)
    for exp in (exps[0], exps[3], listing.monthly_expiration(2024, 9)):
        chain = CHAIN_QUOTES.conform(chain_for(u, DAY, exp, every=60))
        assert (chain["bid"] >= 0).all() and (chain["bid"] < chain["ask"]).all()
        assert ((chain["mid"] >= chain["bid"]) & (chain["mid"] <= chain["ask"])).all()
        pm = chain[chain["settlement"] == "PM"]
        calls = pm[pm.option_type == "C"].set_index(["snapshot_ts", "strike"])
        puts = pm[pm.option_type == "P"].set_index(["snapshot_ts", "strike"])
        both = calls.join(puts, lsuffix="_c", rsuffix="_p", how="inner")
        settle = pd.Timestamp(f"{exp} 16:00", tz="America/New_York")
        T = ((settle - both.index.get_level_values("snapshot_ts")).total_seconds() / (365 * 86400)).to_numpy()
        T = np.maximum(T, 30 * 60 / (365 * 86400))
        S, K = both["spot_c"].to_numpy(), both.index.get_level_values("strike").to_numpy()
        parity = S * np.exp(-u.dividend_yield * T) - K * np.exp(-SIM_RATE * T)
        tol = 1e-9
        assert (both["bid_c"] - both["ask_p"] <= parity + tol).all()
        assert (both["ask_c"] - both["bid_p"] >= parity - tol).all()


def test_iv_has_put_skew_and_term_structure() -> None:
    exps = SimulatedMarket().listed_expirations(SPY, DAY)
    near = chain_for(SPY, DAY, exps[5], every=390)
    first = near[near.snapshot_ts == near.snapshot_ts.min()]
    spot = first.spot.iloc[0]
    puts = first[first.option_type == "P"].set_index("strike")["iv"]
    low, atm = puts.loc[puts.index[np.argmin(np.abs(puts.index - 0.95 * spot))]], puts.loc[puts.index[np.argmin(np.abs(puts.index - spot))]]
    assert low > atm + 0.01


def test_open_interest_changes_only_overnight_and_leans_puts_below_calls_above() -> None:
    exp = listing.monthly_expiration(2024, 7)
    chain = chain_for(SPY, DAY, exp, every=30)
    per_contract = chain.groupby("symbol")["open_interest"].nunique()
    assert (per_contract == 1).all()
    next_day = chain_for(SPY, dt.date(2024, 6, 17), exp, every=390)
    merged = chain.drop_duplicates("symbol").merge(next_day.drop_duplicates("symbol"), on="symbol")
    assert (merged.open_interest_x != merged.open_interest_y).mean() > 0.5
    first = chain[chain.snapshot_ts == chain.snapshot_ts.min()]
    spot = first.spot.iloc[0]
    below, above = first[first.strike < spot * 0.98], first[first.strike > spot * 1.02]
    assert below[below.option_type == "P"].open_interest.sum() > 2 * below[below.option_type == "C"].open_interest.sum()
    assert above[above.option_type == "C"].open_interest.sum() > 2 * above[above.option_type == "P"].open_interest.sum()


def test_open_interest_concentrates_at_round_strikes() -> None:
    chain = chain_for(SPY, DAY, listing.monthly_expiration(2024, 7), every=390)
    first = chain[(chain.snapshot_ts == chain.snapshot_ts.min()) & (chain.option_type == "P")]
    round_ = first[first.strike % 10 == 0].open_interest.mean()
    other = first[first.strike % 5 != 0].open_interest.mean()
    assert round_ > 2.5 * other


def test_strike_window_follows_each_snapshots_spot() -> None:
    chain = chain_for(SPY, DAY, SimulatedMarket().listed_expirations(SPY, DAY)[1], distance=5)
    assert (np.abs(chain.strike / chain.spot - 1) <= 0.05 + 1e-12).all()


def test_unlisted_and_expired_expirations_give_empty_frames() -> None:
    assert chain_for(SPY, DAY, dt.date(2024, 6, 13)).empty  # already expired
    assert chain_for(SPY, DAY, dt.date(2024, 8, 30)).empty  # a daily not yet listed


def _ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="America/New_York").tz_convert("UTC")


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-11-25 10:00:05", "2026-11-25 10:00:10"),  # within a step: the next 10-second step
    ("2026-11-25 10:00:10", "2026-11-25 10:00:20"),  # at a step's start: the one after it
    ("2026-11-25 09:24:00", "2026-11-25 09:30:00"),  # before the open: the open
    ("2026-11-25 15:59:55", "2026-11-25 16:00:00"),  # the close is the session's last step
    ("2026-11-25 16:00:00", "2026-11-27 09:30:00"),  # after it: the next session's open (Thanksgiving between)
    ("2026-11-28 12:00:00", "2026-11-30 09:30:00"),  # a Saturday: Monday's open
])
def test_next_step_is_the_first_path_step_after_now(now: str, expected: str) -> None:
    from zerogex_pipeline.sources.simulated.instant import next_step, step_time

    s, step = next_step(SPX, _ny(now))
    assert step == _ny(expected) and s.date == step.tz_convert("America/New_York").date()
    assert step_time(SPX, s, step) == step  # a step's start, as the emulator's streams price it


def test_next_step_leaves_no_step_between_now_and_it() -> None:
    from zerogex_pipeline.sources.simulated.instant import next_step, step_time

    s = session("2026-11-25")
    for offset in np.random.default_rng(3).uniform(0, (s.close - s.open).total_seconds() - 1, 200):
        now = s.open + pd.Timedelta(seconds=float(offset))
        _, step = next_step(SPX, now)
        assert step > now and step_time(SPX, s, step - pd.Timedelta(microseconds=1)) == step_time(SPX, s, now)
