"""The stream engine on the embedded default (simulated market replayed): what it captures is the market at each
snapshot instant; a restart adds nothing twice; a crash keeps what was committed; the CLI shows live levels."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.cli import main as cli
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.engine import EngineOptions, StreamEngine
from zerogex_pipeline.live.simulated_feed import SimulatedFeed
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.sources.simulated import instant
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import at, stop_at
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DAY = pd.Timestamp("2024-06-14").date()


def run(settings: Settings, start: str, iterations: int, speed: float = 60.0) -> StreamEngine:
    options = EngineOptions(underlyings=(SPY,), interval_s=0.25, max_iterations=iterations, settle_s=0.05,
                            rate=settings.risk_free_rate, announce_alerts=False)
    engine = StreamEngine(SimulatedFeed(), EngineClock(at(start), speed), CaptureStore(settings), options)
    engine.run()
    return engine


def test_captured_rows_are_the_market_at_the_instant(settings: Settings) -> None:
    engine = run(settings, "2024-06-14 09:28:30", iterations=14)
    stats = engine.sessions[0]
    assert not stats.missed and {t for t, _ in stats.captured["spy"]} >= {at("2024-06-14 09:30")}
    store = CaptureStore(settings)
    rows = store.captured_quotes(SPY, DAY)
    assert not rows.duplicated(["snapshot_ts", "symbol"]).any()
    session = market_calendar.session(DAY)
    for (t, e), part in rows.groupby(["snapshot_ts", "expiration"]):
        truth = instant.window_rows(SPY, session, t, e.date(), np.unique(part["strike"])).set_index("symbol")
        got = part.set_index("symbol").loc[truth.index]
        for col in ("bid", "ask", "mid", "iv", "gamma", "open_interest"):
            np.testing.assert_array_equal(got[col].to_numpy(float), truth[col].to_numpy(float), err_msg=col)
        assert (got["spot"] == instant.spot_at(SPY, session, t)).all()
        assert (got["spot_ts"] == instant.step_time(SPY, session, t)).all()  # quotes and spot: one moment
        assert (np.abs(got["strike"] / got["spot"] - 1) <= 0.10 + 1e-12).all()  # the configured window
        # the whole window: every listed strike within ±10% of spot, calls and puts
        grid = np.asarray(instant.window_strikes(SPY, session, float(got["spot"].iloc[0]), 10_000))
        window = grid[np.abs(grid / got["spot"].iloc[0] - 1) <= 0.10 + 1e-12]
        assert sorted(set(got["strike"])) == list(window) and len(got) == 2 * len(window)
    live = store.live_levels(SPY, DAY)
    assert len(live) >= 8 and live["snapshot_ts"].is_monotonic_increasing
    assert (live["feed"] == "simulated").all() and live["missing"].isna().all()
    assert live["expiration_list"].iloc[-1] == '["2024-06-14", "2024-06-17", "2024-06-18"]'
    bars = store.captured_bars(SPY, DAY)
    assert bars["ts"].iloc[0] == at("2024-06-14 09:31") and bars["ts"].is_unique  # closed bars only


def test_a_restart_captures_nothing_twice(settings: Settings) -> None:
    run(settings, "2024-06-14 09:29:30", iterations=6)
    store = CaptureStore(settings)
    first = store.captured_quotes(SPY, DAY)
    first_bars = store.captured_bars(SPY, DAY)
    engine = run(settings, "2024-06-14 09:29:30", iterations=6)  # the same instants again
    again = store.captured_quotes(SPY, DAY)
    pd.testing.assert_frame_equal(again, first)
    assert store.captured_bars(SPY, DAY)["ts"].is_unique and len(store.captured_bars(SPY, DAY)) >= len(first_bars)
    assert engine.sessions[0].captured["spy"] == {(t, e.date()) for t, e in zip(first["snapshot_ts"],
                                                                                first["expiration"], strict=True)}


def test_a_killed_engine_keeps_what_it_committed(tmp_path: Path) -> None:
    """``kill -9`` mid-session: every committed instant stays whole; a restart resumes after it."""
    env = {**os.environ, "ZEROGEX_DATA_DIR": str(tmp_path / "data"), "ZEROGEX_UNDERLYINGS": "SPY",
           "DAGSTER_HOME": str(tmp_path / "dh")}
    cmd = [sys.executable, "-m", "zerogex_pipeline.cli", "stream", "--at", "2024-06-14T09:29:30", "--speed", "60",
           "--interval", "0.5", "--no-dagster-events"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path / "data")}, env_file=None)
    store = CaptureStore(settings, wait_s=10)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and store.captured_instants(SPY, DAY)["snapshot_ts"].nunique() < 2:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    kept = store.captured_instants(SPY, DAY)
    assert kept["snapshot_ts"].nunique() >= 2
    assert (kept.groupby("snapshot_ts")["expiration"].nunique() == 3).all()  # whole instants only
    assert kept["contracts"].min() > 100
    output = subprocess.run([*cmd, "--max-iterations", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert output.returncode == 0, output.stdout + output.stderr
    resumed = store.captured_instants(SPY, DAY)
    assert not resumed.duplicated(["snapshot_ts", "expiration"]).any()
    assert set(kept["snapshot_ts"]) <= set(resumed["snapshot_ts"])


def test_levels_live_prints_the_newest_levels(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZEROGEX_DATA_DIR", str(settings.data_dir))
    assert cli(["levels", "--live"]) == 1
    assert "no live levels stored for SPY" in capsys.readouterr().err
    run(settings, "2024-06-14 09:29:30", iterations=4)
    newest = CaptureStore(settings).live_levels(SPY, latest=True).iloc[0]
    assert cli(["levels", "--live"]) == 0
    out = capsys.readouterr().out
    when = newest["snapshot_ts"].tz_convert("America/New_York")
    assert f"{when:%Y-%m-%d %H:%M:%S}" in out and f"${newest['spot']:,.2f}" in out and "simulated" in out
    assert cli(["levels", "--follow"]) == 1
    assert "--follow: only with --live" in capsys.readouterr().err


def test_stream_command_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["--interval", "0"], "--interval: expected seconds between 0.2 and 3600"),
                          (["--underlying", "XYZ"], "--underlying: unknown underlying 'XYZ'"),
                          (["--at", "not-a-time"], "--at: expected a date-time"),
                          (["--speed", "10"], "--speed: only with --at"),
                          (["--expirations", "0"], "--expirations: expected 1..60")):
        assert cli(["stream", *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_streams_are_recentred_when_spot_leaves_the_window(settings: Settings) -> None:
    """A ±0.3% window with a 0.1% margin: spot leaves it within minutes; the plan follows and captures stay whole."""
    options = EngineOptions(underlyings=(SPY,), expirations=1, distance_pct=0.3, margin_pct=0.1, interval_s=0.2,
                            settle_s=0.05, rate=settings.risk_free_rate, announce_alerts=False)
    clock = EngineClock(at("2024-06-14 09:29:00"), 120.0)
    engine = StreamEngine(SimulatedFeed(), clock, CaptureStore(settings), options)
    stop_at(clock, engine, at("2024-06-14 10:01"))
    engine.run()
    stats = engine.sessions[0]
    assert stats.recenters >= 1
    assert all("window not covered" in why for why in stats.missed.get("spy", {}).values())  # never silently cut
    rows = CaptureStore(settings).captured_quotes(SPY, DAY)
    assert rows["snapshot_ts"].nunique() >= 5
    session = market_calendar.session(DAY)
    for t, part in rows.groupby("snapshot_ts"):  # every captured instant holds its whole window, wherever spot went
        spot = part["spot"].iloc[0]
        grid = np.asarray(instant.window_strikes(SPY, session, spot, 10_000))
        assert sorted(set(part["strike"])) == list(grid[np.abs(grid / spot - 1) <= 0.003 + 1e-12]), t


def test_the_engine_rolls_to_the_next_session_and_its_expirations(settings: Settings) -> None:
    """From Friday 15:58 through the weekend to Monday's open (a replay jumps over the wait): the 0DTE settles at
    Friday's close, Monday's session plans its own nearest expirations."""
    options = EngineOptions(underlyings=(SPY,), interval_s=0.5, settle_s=0.05, rate=settings.risk_free_rate,
                            announce_alerts=False)
    clock = EngineClock(at("2024-06-14 15:58:00"), 60.0)
    engine = StreamEngine(SimulatedFeed(), clock, CaptureStore(settings), options)
    stop_at(clock, engine, at("2024-06-17 09:31"))
    engine.run()
    days = [s.day for s in engine.sessions]
    assert days[0] == DAY and days[-1] == pd.Timestamp("2024-06-17").date() and len(days) == 2
    first = {e for _, e in engine.sessions[0].captured["spy"]}
    second = {e for _, e in engine.sessions[-1].captured["spy"]}
    assert pd.Timestamp("2024-06-14").date() in first  # Friday's 0DTE captured at the close (16:00)
    assert min(second) == pd.Timestamp("2024-06-17").date() and pd.Timestamp("2024-06-14").date() not in second
    closes = {t for t, _ in engine.sessions[0].captured["spy"]}
    assert at("2024-06-14 16:00") in closes
