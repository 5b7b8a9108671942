"""The stream engine through the TradeStation emulator over real HTTP (the emulator in its own process, the
documented quotas enforced): accelerated sessions, the SPX window beyond the chain stream's cap, and every kind
of stream fault, each capture checked against the simulated market (``benchmarks/live_rig.py``)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.live_rig import FAULTS, TARGETS, replay_session, verify
from zerogex_pipeline.storage.capture_store import CaptureStore
from zerogex_pipeline.underlyings import resolve_underlying

pytestmark = pytest.mark.slow
DAY = pd.Timestamp("2025-01-15").date()


def test_a_clean_session_captures_the_whole_window_with_no_bar_request(tmp_path: Path) -> None:
    """SPY and SPX for 8 minutes at 6x, the emulator's chain streams capped at 20 strikes a side so the SPX
    window (±3%, ~36 $5 strikes a side) needs quote-stream tails: every instant captured, true to the market."""
    result = replay_session(tmp_path / "data", "2025-01-15 09:58:30", "2025-01-15 10:06", ("SPY", "SPX"),
                            expirations=1, distance_pct=3.0, speed=6.0, settle_s=0.3, heartbeat_s=0.5,
                            max_proximity=20)
    check = verify(result)
    assert check.ok, (check.missing_outside_outages, check.duplicates, check.mismatches[:5])
    assert check.captured_pairs == check.expected_pairs == 4  # 10:00, 10:05 x 2 underlyings
    used = result.emulator_stats["requests"]
    assert "barcharts" not in used and used.get("quotes", 0) == 0  # streams only; no REST bar or quote request
    assert used["options-expirations"] == 2 and used["options-strikes"] == 2  # start-up listings
    assert result.emulator_stats["max_open_option_streams"] <= 10
    store = CaptureStore(result.settings)
    for name in ("SPY", "SPX"):
        rows = store.captured_quotes(resolve_underlying(name), DAY)
        for _, part in rows.groupby("snapshot_ts"):
            spot = part["spot"].iloc[0]
            assert (np.abs(part["strike"] / spot - 1) <= 0.03 + 1e-12).all()
            step = 5.0 if name == "SPX" else 1.0
            assert part["strike"].min() - step < spot * 0.97 and part["strike"].max() + step > spot * 1.03
            if name == "SPX":  # beyond the chain stream's 20 strikes: quotes only, IV solved downstream
                tails = part[part["stream"] == "quotes"]
                assert len(tails) > 20 and tails["iv"].isna().all() and (tails["bid"] >= 0).all()
                chain = part[part["stream"] == "chain"]
                assert set(tails["strike"]).isdisjoint(chain["strike"]) and chain["strike"].nunique() <= 40
    print(f"\nclean session: {result.wall_s:.1f} s wall, engine {result.cpu_s:.1f} s CPU, requests {used}, "
          f"lags {sorted(set(check.lags_s))}")


def test_stream_faults_lose_only_the_snapshots_inside_their_outages(tmp_path: Path) -> None:
    """28 minutes at 10x with a fault every 3 s (30 s of market): GoAway (both shapes), silent death,
    heartbeat-only starvation, DualLogon, 5xx on connect, token expiry, token rotation, on the chain, quote and
    bar streams. Missing snapshots are only those inside an outage the engine recorded; none is duplicated; every
    captured row is the market at its instant."""
    schedule = [(name, target) for i, name in enumerate(FAULTS) for target in (TARGETS[i % 3],)]
    result = replay_session(tmp_path / "data", "2025-01-15 09:58", "2025-01-15 10:26", ("SPY",), expirations=1,
                            distance_pct=2.0, speed=10.0, settle_s=0.3, heartbeat_s=0.5, faults=schedule,
                            fault_every_s=3.0)
    check = verify(result)
    kinds = {name for _, name, _ in result.faults}
    assert len(result.faults) >= 20 and kinds == set(FAULTS), (len(result.faults), kinds)
    assert check.ok, (check.missing_outside_outages, check.duplicates, check.mismatches[:5])
    assert check.captured_pairs >= 4  # most instants survive; the lost ones fell inside outages
    outages = sum(len(v) for v in result.outages.values())
    assert outages >= 10
    print(f"\nfaulted session: {len(result.faults)} faults, {outages} outages, captured {check.captured_pairs} of "
          f"{check.expected_pairs}, {result.wall_s:.1f} s wall; requests {result.emulator_stats['requests']}")
