"""The capture store on both stores: append-only idempotent writes, one transaction per batch, reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline.schemas import CAPTURED_BARS, CAPTURED_QUOTES, GEX_LEVELS, LIVE_LEVELS
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.storage.capture_store import CaptureBatch, CaptureStore
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")
DAY = dt.date(2025, 1, 15)
EXP = dt.date(2025, 1, 17)


def quotes(instant: str, bid: float = 1.0, n: int = 3) -> pd.DataFrame:
    ts = pd.Timestamp(instant, tz="UTC")
    strikes = 590.0 + np.arange(n)
    return CAPTURED_QUOTES.conform(pd.DataFrame({
        "underlying": "SPY", "session_date": pd.Timestamp(DAY), "expiration": pd.Timestamp(EXP), "snapshot_ts": ts,
        "symbol": [f"SPY 250117C{int(k)}" for k in strikes], "option_type": "C", "strike": strikes,
        "settlement": "PM", "bid": bid, "ask": bid + 0.05, "last": np.nan, "mid": bid + 0.025, "volume": 10,
        "open_interest": 100, "iv": 0.2, "delta": 0.5, "gamma": 0.01, "vega": 0.1, "theta": -0.1,
        "spot": 591.0, "spot_ts": ts - pd.Timedelta(milliseconds=300), "source": "tradestation",
        "quote_ts": ts - pd.Timedelta(seconds=2), "stream": "chain",
    }))


def bars(ends: list[str]) -> pd.DataFrame:
    return CAPTURED_BARS.conform(pd.DataFrame({
        "underlying": "SPY", "session_date": pd.Timestamp(DAY), "ts": pd.to_datetime(ends, utc=True),
        "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 7, "source": "tradestation"}))


def levels(instant: str, spot: float) -> pd.DataFrame:
    row = {c.name: None for c in LIVE_LEVELS.columns}
    row.update({"underlying": "SPY", "session_date": pd.Timestamp(DAY), "snapshot_ts": pd.Timestamp(instant, tz="UTC"),
                "spot": spot, "net_gex": 1e9, "call_gex": 2e9, "put_gex": -1e9, "net_gex_at_spot": 1e9,
                "expirations": 1, "contracts": 3, "rate": 0.04, "dividend_yield": 0.012, "convention": "dealer",
                "spot_ts": pd.Timestamp(instant, tz="UTC"), "feed": "tradestation",
                "expiration_list": '["2025-01-17"]', "compute_ms": 3.0})
    return LIVE_LEVELS.conform(pd.DataFrame([row]))


def exercise(settings: Settings) -> None:
    store = CaptureStore(settings, wait_s=5)
    assert store.captured_quotes(SPY, DAY).empty  # nothing captured yet: empty, not an error
    first = CaptureBatch(quotes={"spy": quotes("2025-01-15 14:35")}, bars={"spy": bars(["2025-01-15 14:35"])},
                         levels={"spy": levels("2025-01-15 14:35", 591.0)})
    assert store.write(first) == {"captured_quotes": 3, "captured_bars": 1, "live_levels": 1}
    # the same instant again, with other prices (a restarted engine): nothing inserted, nothing overwritten
    again = CaptureBatch(quotes={"spy": quotes("2025-01-15 14:35", bid=9.0)}, bars={"spy": bars(["2025-01-15 14:35"])},
                         levels={"spy": levels("2025-01-15 14:35", 999.0)})
    assert store.write(again) == {"captured_quotes": 0, "captured_bars": 0, "live_levels": 0}
    store.write(CaptureBatch(quotes={"spy": quotes("2025-01-15 14:40", n=2)},
                             levels={"spy": levels("2025-01-15 14:35:05", 592.0)}))
    stored = store.captured_quotes(SPY, DAY, EXP)
    assert len(stored) == 5 and (stored.loc[stored["snapshot_ts"] == pd.Timestamp("2025-01-15 14:35", tz="UTC"),
                                            "bid"] == 1.0).all()
    pd.testing.assert_frame_equal(stored.iloc[:3].reset_index(drop=True), quotes("2025-01-15 14:35"))
    instants = store.captured_instants(SPY, DAY)
    assert instants["contracts"].tolist() == [3, 2]
    assert len(store.captured_bars(SPY, DAY)) == 1
    live = store.live_levels(SPY, DAY)
    assert live["spot"].tolist() == [591.0, 592.0]
    latest = store.live_levels(SPY, latest=True)
    assert latest["spot"].tolist() == [592.0]
    assert set(GEX_LEVELS.column_names) <= set(latest.columns)
    since = store.live_levels(SPY, since=pd.Timestamp("2025-01-15 14:35", tz="UTC"))
    assert since["spot"].tolist() == [592.0]
    # a batch that fails part-way stores none of its rows (one transaction)
    broken = pd.concat([levels("2025-01-15 14:45", 1.0), levels("2025-01-15 14:45", 2.0)], ignore_index=True)
    with pytest.raises(StorageError, match="repeat a primary key"):
        store.write(CaptureBatch(quotes={"spy": quotes("2025-01-15 14:45")}, bars={"spy": bars(["2025-01-15 14:45"])},
                                 levels={"spy": broken}))
    assert len(store.captured_bars(SPY, DAY)) == 1
    assert store.captured_instants(SPY, DAY)["contracts"].tolist() == [3, 2]
    store.close()


def test_capture_store_embedded(tmp_path: Path) -> None:
    exercise(load_settings({"ZEROGEX_DATA_DIR": str(tmp_path / "data")}, env_file=None))
    assert (tmp_path / "data" / "live.sqlite").exists()


@pytest.mark.postgres
def test_capture_store_postgres(pg_url: str, tmp_path: Path) -> None:
    exercise(load_settings({"ZEROGEX_DATA_DIR": str(tmp_path), "ZEROGEX_DATABASE_URL": pg_url}, env_file=None))


@pytest.mark.timescaledb
def test_capture_store_on_timescaledb_is_a_compressed_hypertable(timescale_url: str, tmp_path: Path) -> None:
    """captured_quotes is a hypertable with compression; a compressed chunk still takes (and dedupes) writes."""
    settings = load_settings({"ZEROGEX_DATA_DIR": str(tmp_path), "ZEROGEX_DATABASE_URL": timescale_url}, env_file=None)
    exercise(settings)
    import psycopg

    with psycopg.connect(timescale_url, autocommit=True) as conn:
        rows = conn.execute("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
                            "WHERE hypertable_schema = 'spy' AND hypertable_name IN "
                            "('captured_quotes', 'captured_bars', 'live_levels') ORDER BY 1").fetchall()
        assert rows == [("captured_bars", True), ("captured_quotes", True), ("live_levels", True)]
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('spy.captured_quotes') c").fetchall()
    store = CaptureStore(settings)
    assert store.write(CaptureBatch(quotes={"spy": quotes("2025-01-15 14:35", bid=5.0)})) == {"captured_quotes": 0}
    assert store.write(CaptureBatch(quotes={"spy": quotes("2025-01-15 14:50")})) == {"captured_quotes": 3}
    assert store.captured_instants(SPY, DAY)["contracts"].tolist() == [3, 2, 3]
    store.close()
