"""The TradeStation source's live path (today's session in progress) and its historical rows, over real HTTP
against the emulator with the market clock frozen at a chosen instant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.chain import IV_SOURCES, choose_iv, time_to_expiry
from zerogex_pipeline.analytics.implied_vol import implied_vol
from zerogex_pipeline.schemas import OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.sources.base import spots_from_bars
from zerogex_pipeline.sources.tradestation_market import TradeStationMarket
from zerogex_pipeline.tradestation import streams
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.errors import StreamError
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.tradestation.conftest import make_config

NOW = pd.Timestamp("2025-01-15T16:00:00Z")  # Wednesday 11:00 ET, session open
SPY = resolve_underlying("SPY")
EXP = dt.date(2025, 1, 17)
BAND_PCT = 2.0


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator whose market clock stands still at ``NOW`` (so every read of it agrees), and our clock too."""
    monkeypatch.setattr(market_calendar, "utc_now", lambda: NOW)
    with Emulator(clock=lambda: NOW, speed=0.0, heartbeat_s=0.2, tick_s=0.05) as em:
        yield em


def _live_chain(client: TradeStationClient, timeout_s: float = 10.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    market = TradeStationMarket(client, chain_timeout_s=timeout_s)
    session = market_calendar.session(NOW.tz_convert(market_calendar.NEW_YORK).date())
    bars = market.underlying_bars(SPY, session, 1)
    times = session.snapshot_times(30)
    spots = spots_from_bars(bars, times[times <= NOW])
    return market.chain_snapshots(SPY, session, EXP, spots, BAND_PCT), spots


def test_live_snapshot_comes_from_the_chain_stream(frozen: Emulator, tmp_path: Path) -> None:
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    chain, spots = _live_chain(client)
    assert list(chain.columns) == OPTION_CHAIN_SNAPSHOTS.column_names
    assert chain["snapshot_ts"].max() == NOW and chain["snapshot_ts"].nunique() == len(spots) == 4  # 9:30 .. 11:00
    assert not chain.duplicated(["snapshot_ts", "symbol"]).any()
    assert (np.abs(chain["strike"] / chain["spot"] - 1) <= BAND_PCT / 100 + 1e-12).all()
    merged = chain.merge(spots, on="snapshot_ts", suffixes=("", "_used"))
    assert (merged["spot"] == merged["spot_used"]).all() and (merged["spot_ts"] == merged["spot_ts_used"]).all()

    live = chain[chain["snapshot_ts"] == NOW]
    past = chain[chain["snapshot_ts"] < NOW]
    # the live snapshot: vendor quotes, IV and greeks, the whole strike window, both rights
    assert len(live) >= 20 and set(live["option_type"]) == {"C", "P"}
    assert (live["bid"] <= live["ask"]).all() and (live["bid"] > 0).mean() > 0.9
    assert live[["iv", "delta", "gamma", "vega", "theta"]].notna().all().all()
    assert live["iv"].between(0.03, 1.5).all() and (live["open_interest"] > 0).all()
    assert np.allclose(live["mid"], (live["bid"] + live["ask"]) / 2, atol=0.006)
    window = np.round(np.arange(np.ceil(live["spot"].iloc[0] * 0.98), live["spot"].iloc[0] * 1.02 + 1e-9, 1.0), 4)
    assert sorted(set(live["strike"])) == list(window)  # every listed $1 strike in the window, nothing else
    # the same numbers the chain stream serves at this instant
    stream = streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=20, timeout_s=10)
    both = live.merge(stream, on="symbol", suffixes=("", "_stream"))
    assert len(both) == len(live)
    for col in ("bid", "ask", "iv", "delta", "gamma", "open_interest"):
        assert (both[col] == both[f"{col}_stream"]).all(), col
    # open interest is the contract's for the session, whether read from bars or from the stream
    oi = chain.groupby("symbol")["open_interest"].nunique()
    assert (oi == 1).all()
    # the earlier snapshots come from option bars: no quote, no vendor IV
    assert (past["bid"] == 0).all() and (past["ask"] == 0).all() and past["iv"].isna().all()
    assert (past["mid"] == past["last"]).all() and (past["last"] > 0).all()


def test_historical_rows_solve_iv_from_the_bar_close(frozen: Emulator, tmp_path: Path) -> None:
    """Downstream IV choice on bar rows: no sane quote, so the close (``last``) is solved, source ``last``."""
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    chain, _ = _live_chain(client)
    first = chain[chain["snapshot_ts"] == chain["snapshot_ts"].min()].reset_index(drop=True)
    T = time_to_expiry(first)
    choice = choose_iv(first, T, 0.04, SPY.dividend_yield)
    solved = choice.reason == "ok"
    assert solved.mean() > 0.9 and set(np.asarray(IV_SOURCES)[choice.source[solved]]) == {"last"}
    direct = implied_vol(first["last"].to_numpy(), first["spot"].to_numpy(), first["strike"].to_numpy(), T, 0.04,
                         SPY.dividend_yield, (first["option_type"] == "C").to_numpy())
    np.testing.assert_allclose(choice.iv[solved], direct.iv[solved], rtol=0, atol=1e-12)
    live = chain[chain["snapshot_ts"] == NOW].reset_index(drop=True)
    live_choice = choose_iv(live, time_to_expiry(live), 0.04, SPY.dividend_yield)
    assert set(np.asarray(IV_SOURCES)[live_choice.source]) == {"vendor"}


@pytest.mark.parametrize("faults", [
    {"goaway_streams": 1, "goaway_after": 5, "goaway_shape": "error"},
    {"goaway_streams": 1, "goaway_after": 5, "goaway_shape": "status"},
    {"dead_streams": 1, "dead_after": 5},
    {"starve_streams": 1},
    {"split_chunks": True, "malformed_every": 4},
], ids=["goaway-error", "goaway-status", "silent-death", "starvation", "split-malformed"])
def test_live_chain_under_stream_faults_is_complete(frozen: Emulator, tmp_path: Path, faults: dict) -> None:
    """A snapshot cut short by a reconnect is not taken for the whole chain: same rows as without the fault."""
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    clean = streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=8, timeout_s=10)
    frozen.faults.update(faults)
    faulted = streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=8, timeout_s=10)
    assert len(clean) == 32
    pd.testing.assert_frame_equal(faulted.sort_values("symbol").reset_index(drop=True),
                                  clean.sort_values("symbol").reset_index(drop=True))


def test_incomplete_live_chain_raises_instead_of_writing_bar_prices(frozen: Emulator, tmp_path: Path) -> None:
    """Every connection dies after 3 contracts: the chain is never complete, so the call fails (transient)."""
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    frozen.faults.update({"dead_streams": 1000, "dead_after": 3})
    with pytest.raises(StreamError, match="no complete snapshot within 3 s") as info:
        _live_chain(client, timeout_s=3.0)
    assert "reconnects" in str(info.value)
