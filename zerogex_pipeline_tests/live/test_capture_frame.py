"""What a snapshot stores of a contract at its settlement: its quotes, never greeks from before it (issue 11: the
faulted session's close captured each 0DTE contract with the IV and gamma of ten seconds before expiry, which the
emulator, like a vendor with nothing to compute, stopped sending, and the book kept as unchanged)."""

import datetime as dt

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.book import Spot, UnderlyingState
from zerogex_pipeline.live.snapshot import capture_frame, snapshot_arrays, window_mask
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
SPX = resolve_underlying("SPX")
DAY = dt.date(2026, 11, 25)
GREEKS = {"iv": 0.40, "delta": 0.5, "gamma": 0.43, "vega": 0.01, "theta": -0.2}


def frame(u, rows: list[tuple[dt.date, str, float]], instant: pd.Timestamp) -> pd.DataFrame:
    state = UnderlyingState()
    for expiration, settlement, strike in rows:
        symbol = f"{u.name} {expiration:%y%m%d}C{strike:g}{settlement}"
        state.book.update(symbol, expiration, settlement, "C", strike, 0,
                          {"bid": 1.0, "ask": 1.1, "open_interest": 10.0, **GREEKS}, instant.value)
    view = state.book.view()
    spot = Spot(800.0, instant.value, instant.value)
    snap = snapshot_arrays(view, window_mask(view, 800.0, 10.0, None), instant, spot, np.zeros(len(view), np.int64))
    return capture_frame(u, DAY, snap, "tradestation").set_index("symbol")


def test_a_contract_at_its_settlement_has_no_greeks_and_keeps_its_quotes() -> None:
    close = market_calendar.session(DAY).close
    f = frame(SPY, [(DAY, "PM", 800.0), (DAY + dt.timedelta(days=2), "PM", 800.0)], close)
    expiring, later = f.loc["SPY 261125C800PM"], f.loc["SPY 261127C800PM"]
    assert all(np.isnan(expiring[name]) for name in GREEKS)
    assert (expiring["bid"], expiring["ask"], expiring["open_interest"]) == (1.0, 1.1, 10)
    assert all(later[name] == value for name, value in GREEKS.items())


def test_before_the_close_an_expiring_contract_keeps_its_greeks() -> None:
    f = frame(SPY, [(DAY, "PM", 800.0)], market_calendar.session(DAY).close - pd.Timedelta(seconds=10))
    assert all(f.iloc[0][name] == value for name, value in GREEKS.items())


def test_an_am_settled_series_settles_at_the_open() -> None:
    f = frame(SPX, [(DAY, "AM", 800.0), (DAY, "PM", 800.0)], market_calendar.session(DAY).open + pd.Timedelta(hours=1))
    assert np.isnan(f.loc["SPX 261125C800AM"]["gamma"]) and f.loc["SPX 261125C800PM"]["gamma"] == 0.43
