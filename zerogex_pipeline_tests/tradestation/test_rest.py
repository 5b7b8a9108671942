"""Every REST endpoint over real HTTP against the emulator, plus bar splitting and input validation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.tradestation.client import MAX_INTRADAY_BARS, TradeStationClient
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.errors import ApiError
from zerogex_pipeline_tests.tradestation.conftest import make_config


def test_quotes_convert_strings_and_surface_errors(client: TradeStationClient) -> None:
    snap = client.quotes(["SPY", "$SPX.X", "NOPE", "SPY 250117C590"])
    assert list(snap.frame["Symbol"]) == ["SPY", "$SPX.X", "SPY 250117C590"]
    assert snap.frame["Last"].dtype == float and (snap.frame["Last"] > 0).all()
    assert snap.frame.loc[0, "Bid"] < snap.frame.loc[0, "Ask"]
    assert [(e.symbol, e.error) for e in snap.errors] == [("NOPE", "FAILED, INVALID SYMBOL")]


def test_quotes_batched_at_100(client: TradeStationClient, emulator: Emulator) -> None:
    symbols = [f"SPY 250117C{k}" for k in range(540, 661)]  # 121 symbols -> 2 requests
    snap = client.quotes(symbols)
    assert emulator.stats.requests["quotes"] == 2
    assert len(snap.frame) + len(snap.errors) == 121


def test_symbol_details_batched_at_50(client: TradeStationClient, emulator: Emulator) -> None:
    symbols = [f"SPY 250117P{k}" for k in range(550, 651)] + ["SPY", "ZZZZ"]
    details = client.symbol_details(symbols)
    assert emulator.stats.requests["symbols"] == 3
    opt = next(d for d in details.symbols if d["Symbol"] == "SPY 250117P600")
    assert opt["OptionType"] == "PUT" and opt["StrikePrice"] == 600.0 and opt["AssetType"] == "STOCKOPTION"
    assert [e.symbol for e in details.errors] == ["ZZZZ"]


def test_bars_minute_and_daily(client: TradeStationClient) -> None:
    minute = client.bars("SPY", unit="Minute", interval=5, barsback=100)
    assert len(minute) == 100 and minute["ts"].is_monotonic_increasing
    assert minute["ts"].iloc[-1] <= pd.Timestamp("2025-01-15T16:00:00Z")
    assert (minute["high"] >= minute["low"]).all() and minute["volume"].dtype == "int64"
    daily = client.bars("SPY", unit="Daily", firstdate="2025-01-06", lastdate="2025-01-10")
    # 2025-01-09 was an NYSE closure (national day of mourning): four sessions; closes at 21:00Z in winter
    assert len(daily) == 4 and daily["ts"].dt.hour.eq(21).all()
    weekly = client.bars("SPY", unit="Weekly", barsback=2)
    assert len(weekly) == 2


def test_option_bars_carry_open_interest(client: TradeStationClient) -> None:
    bars = client.bars("SPY 250117C600", unit="Minute", interval=5, firstdate="2025-01-14", lastdate="2025-01-14")
    assert len(bars) == 78
    assert bars["open_interest"].nunique() == 1 and bars["open_interest"].iloc[0] > 0


def test_bars_over_cap_are_split_and_stitched(emulator: Emulator, tmp_path: Path) -> None:
    client = TradeStationClient(make_config(emulator.url, tmp_path, read_timeout_s=60.0))  # 57,600-bar bodies
    wanted = MAX_INTRADAY_BARS + 500
    bars = client.bars("SPY", unit="Minute", interval=1, barsback=wanted)
    assert emulator.stats.requests["barcharts"] == 2
    assert len(bars) == wanted and bars["ts"].is_unique and bars["ts"].is_monotonic_increasing


def test_bars_date_range_over_cap_split_without_duplicates(client: TradeStationClient, emulator: Emulator) -> None:
    bars = client.bars("SPY", unit="Minute", interval=1, firstdate="2024-09-02", lastdate="2024-11-29")
    assert emulator.stats.requests["barcharts"] >= 2
    expected = sum(market_calendar.session(d).minutes for d in market_calendar.sessions_between("2024-09-02", "2024-11-29"))
    assert len(bars) == expected == 62 * 390 + 210  # 62 full sessions and the 11-29 early close
    assert bars["ts"].is_unique


@pytest.mark.parametrize("kwargs, match", [
    ({"unit": "Hourly"}, "unit"),
    ({"unit": "Minute", "interval": 1441}, "interval"),
    ({"unit": "Daily", "interval": 5}, "interval"),
    ({"barsback": 5, "firstdate": "2025-01-02"}, "mutually exclusive"),
    ({"barsback": 0}, "barsback"),
])
def test_bars_bad_input_names_the_argument(client: TradeStationClient, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        client.bars("SPY", **kwargs)


def test_unknown_bars_symbol_is_an_api_error(client: TradeStationClient) -> None:
    with pytest.raises(ApiError) as info:
        client.bars("NOPE")
    assert info.value.status == 404 and info.value.error == "NotFound"


def test_option_endpoints(client: TradeStationClient) -> None:
    exps = client.option_expirations("SPY")
    assert exps[0].date == dt.date(2025, 1, 15)
    assert any(e.type == "Monthly" and e.date == dt.date(2025, 1, 17) for e in exps)
    strikes = client.option_strikes("SPY", dt.date(2025, 1, 17))
    assert all(len(s) == 1 for s in strikes) and [600.0] in strikes
    verticals = client.option_strikes("SPY", dt.date(2025, 1, 17), spread_type="Vertical", strike_interval=2)
    assert all(len(s) == 2 for s in verticals)
    names = [s.name for s in client.spread_types()]
    assert names[:3] == ["Single", "Straddle", "Vertical"] and "Diagonal" in names
    rr = client.risk_reward(2.0, [("SPY 250117C590", 1, "BUY"), ("SPY 250117C600", 1, "SELL")])
    assert (rr.adjusted_max_gain, rr.adjusted_max_loss, rr.breakeven_points) == (800.0, -200.0, [592.0])
    assert not rr.max_gain_is_infinite
    call = client.risk_reward(1.0, [("SPY 250117C600", 1, "BUY")])
    assert call.max_gain_is_infinite and call.adjusted_max_loss == -100.0


def test_search_suggest_and_crypto(client: TradeStationClient) -> None:
    assert [x["Name"] for x in client.suggest("QQ")] == ["QQQ"]
    assert [x["Name"] for x in client.search("N=SPY")] == ["SPY"]
    assert client.crypto_pairs() == ["BTCUSD", "ETHUSD", "LTCUSD", "BCHUSD"]


def test_empty_symbol_list_rejected(client: TradeStationClient) -> None:
    with pytest.raises(ValueError, match="quotes"):
        client.quotes([])
