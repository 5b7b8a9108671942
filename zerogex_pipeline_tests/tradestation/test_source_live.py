"""The TradeStation source on today's session in progress (rebuilt from bars only: live quotes are the stream
engine's), its historical rows, and the chain-stream snapshot helper under stream faults, over real HTTP against
the emulator with the market clock frozen at a chosen instant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.chain import IV_SOURCES, choose_iv, time_to_expiry
from zerogex_pipeline.analytics.implied_vol import implied_vol
from zerogex_pipeline.schemas import CHAIN_QUOTES
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


def _live_chain(client: TradeStationClient) -> tuple[pd.DataFrame, pd.DataFrame]:
    market = TradeStationMarket(client)
    session = market_calendar.session(NOW.tz_convert(market_calendar.NEW_YORK).date())
    bars = market.underlying_bars(SPY, session, 1)
    times = session.snapshot_times(30)
    spots = spots_from_bars(bars, times[times <= NOW])
    return market.chain_snapshots(SPY, session, EXP, spots, BAND_PCT), spots


def test_today_in_progress_is_rebuilt_from_bars_only(frozen: Emulator, tmp_path: Path) -> None:
    """No stream is read for today's session: every snapshot up to now comes from option bars with the spot of
    its own instant (the latest one too: reading a stream minutes later mixed moments, the defect of issue 11)."""
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    chain, spots = _live_chain(client)
    assert list(chain.columns) == CHAIN_QUOTES.column_names  # a source's chain: the stored one without its slot
    assert chain["snapshot_ts"].max() == NOW and chain["snapshot_ts"].nunique() == len(spots) == 4  # 9:30 .. 11:00
    assert not chain.duplicated(["snapshot_ts", "symbol"]).any()
    assert (np.abs(chain["strike"] / chain["spot"] - 1) <= BAND_PCT / 100 + 1e-12).all()
    merged = chain.merge(spots, on="snapshot_ts", suffixes=("", "_used"))
    assert (merged["spot"] == merged["spot_used"]).all() and (merged["spot_ts"] == merged["spot_ts_used"]).all()
    assert (chain["origin"] == "historical").all()
    assert (chain["bid"] == 0).all() and (chain["ask"] == 0).all() and chain["iv"].isna().all()
    assert (chain["mid"] == chain["last"]).all() and (chain["last"] > 0).all()
    assert (chain.groupby("symbol")["open_interest"].nunique() == 1).all()  # the contract's OI for the session
    stats = requests.get(f"{frozen.url}/__emulator/stats", timeout=5).json()
    assert stats["streams_opened"] == 0


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


def test_incomplete_chain_snapshot_raises(frozen: Emulator, tmp_path: Path) -> None:
    """Every connection dies after 3 contracts: the chain is never complete, so the helper fails (transient)."""
    client = TradeStationClient(make_config(frozen.url, tmp_path))
    frozen.faults.update({"dead_streams": 1000, "dead_after": 3})
    with pytest.raises(StreamError, match="no complete snapshot within 3 s") as info:
        streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=8, timeout_s=3.0)
    assert "reconnects" in str(info.value)
