"""The stream plan (chain-stream cap, quote-stream tails, slots) and the capture-coverage rule, as pure functions."""

import datetime as dt

import numpy as np
import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.live.coverage import capture_coverage
from zerogex_pipeline.live.plan import (
    MAX_QUOTE_SYMBOLS,
    Series,
    allot_slots,
    not_streamed_message,
    plan_expiration,
)
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.clock import at

SPX = resolve_underlying("SPX")
SPY = resolve_underlying("SPY")
MONTHLY = (Series("SPXW", "PM"), Series("SPX", "AM"))


def test_spx_window_beyond_the_chain_cap_goes_to_quote_streams() -> None:
    """SPX near 11,800 with $5 strikes: ±11.5% needs ~270 strikes each side; the chain stream shows 200."""
    listed = np.arange(8000.0, 16000.0, 5.0)
    plan = plan_expiration(SPX, dt.date(2026, 12, 18), MONTHLY, listed, 11_830.0, 10.0, 1.5, 200)
    assert plan.chain_proximity == 200 and plan.center == 11_830.0
    assert len(plan.chain_strikes) == 400
    need = listed[np.abs(listed / 11_830.0 - 1) <= 0.115]
    assert set(need) <= plan.strikes  # the whole window plus margin is streamed: chain + tails
    assert set(plan.tail_strikes).isdisjoint(plan.chain_strikes) and len(plan.tail_strikes) > 0
    assert min(plan.tail_strikes) < min(plan.chain_strikes) and max(plan.tail_strikes) > max(plan.chain_strikes)
    symbols = plan.tail_symbols()
    assert len(symbols) == len(plan.tail_strikes) * 2 * 2  # calls and puts of both series
    assert min(plan.tail_strikes) == 10470.0  # the first listed strike at or above 11,830 x (1 - 11.5%)
    assert {"SPX 261218P10470", "SPXW 261218C10470"} <= set(symbols)
    assert all(len(b) <= MAX_QUOTE_SYMBOLS for b in plan.tail_batches())
    assert sum(len(b) for b in plan.tail_batches()) == len(symbols)
    assert plan.uncovered(listed, 11_830.0, 10.0) == []
    assert plan.uncovered(listed, 11_830.0 * 1.03, 10.0)  # spot +3%: the window left the streams: re-centre


def test_spy_window_fits_one_chain_stream() -> None:
    listed = np.arange(500.0, 1100.0, 1.0)
    plan = plan_expiration(SPY, dt.date(2026, 11, 30), (Series("SPY", "PM"),), listed, 800.3, 10.0, 1.5, 200)
    assert not plan.tail_strikes and plan.center == 800.0
    assert plan.chain_proximity == 92  # 800 * 11.5% = 92 strikes of $1 on the wider side
    assert plan.uncovered(listed, 800.3, 10.0) == []


def test_slots_go_nearest_expiration_first_and_the_rest_is_named() -> None:
    listed = np.arange(500.0, 1100.0, 1.0)
    plans = []
    for name in ("SPY", "QQQ", "SPX"):
        u = resolve_underlying(name)
        grid = listed if name != "SPX" else np.arange(8000.0, 16000.0, 5.0)
        spot = 800.0 if name != "SPX" else 11_800.0
        plans.append([plan_expiration(u, dt.date(2026, 12, d), (Series(name, "PM"),), grid, spot, 10.0)
                      for d in (1, 2, 3, 4)])
    allotted = allot_slots(plans, 10)
    assert [p.slot for p in allotted] == [True] * 10 + [False] * 2
    assert [p.label for p in allotted[:3]] == ["SPY 2026-12-01", "QQQ 2026-12-01", "SPX 2026-12-01"]
    message = not_streamed_message(allotted, 10)
    assert message is not None and "QQQ 2026-12-04, SPX 2026-12-04" in message and "NOT streamed" in message
    assert not_streamed_message(allotted[:10], 10) is None


def _captured(instants: list[str], expirations: int) -> pd.DataFrame:
    rows = [(at(t), dt.date(2024, 6, 14 + k)) for t in instants for k in range(expirations)]
    return pd.DataFrame(rows, columns=["snapshot_ts", "expiration"])


def test_coverage_passes_while_capturing_and_fails_when_the_engine_stops() -> None:
    s = market_calendar.session(dt.date(2024, 6, 14))
    ok = capture_coverage(s, 5, _captured(["2024-06-14 09:30", "2024-06-14 09:35"], 3), 3, at("2024-06-14 09:37"))
    assert ok.ok and ok.in_session and ok.coverage_pct == 100.0 and ok.lag_seconds == 120
    stopped = capture_coverage(s, 5, _captured(["2024-06-14 09:30", "2024-06-14 09:35"], 3), 3,
                               at("2024-06-14 09:52"))
    assert not stopped.ok and "stopped capturing" in stopped.message and "09:35 ET" in stopped.message
    assert len(stopped.missed_instants) == 3 and stopped.coverage_pct == 40.0  # 09:40, 09:45, 09:50 of 5
    nothing = capture_coverage(s, 5, _captured([], 3), 3, at("2024-06-14 10:00"))
    assert not nothing.ok and "nothing captured yet today" in nothing.message
    partial = capture_coverage(s, 5, _captured(["2024-06-14 09:30"], 2), 3, at("2024-06-14 09:32"))
    assert partial.ok and "2 of 3 expirations" in partial.message


def test_coverage_outside_the_session_passes() -> None:
    s = market_calendar.session(dt.date(2024, 7, 3))  # early close 13:00
    before = capture_coverage(s, 5, _captured([], 3), 3, at("2024-07-03 09:00"))
    after = capture_coverage(s, 5, _captured([], 3), 3, at("2024-07-03 13:05"))
    assert before.ok and not before.in_session and "has not opened" in before.message
    assert after.ok and not after.in_session and "is over" in after.message


def test_an_outage_begins_when_the_stream_last_said_something_that_counts() -> None:
    """A dropped or silently dead stream was out since it was last heard from; a starved one (heartbeats only) since
    its last data: snapshot instants in between fall inside the recorded outage, not outside it."""
    from zerogex_pipeline.live.feed import StreamStatus

    def status() -> StreamStatus:
        s = StreamStatus(1, "spot", "quotes SPY", connected=True, complete=True)
        s.last_data = 100.0
        s.heard(130.0)  # heartbeats until 130
        return s

    dropped, dead, starved = status(), status(), status()
    dropped.went_down(131.0)
    dead.went_down(200.0)  # noticed long after its last heartbeat
    starved.went_down(131.0, starved=True)
    assert (dropped.down_since, dead.down_since, starved.down_since) == (130.0, 130.0, 100.0)
    assert not starved.connected and not starved.complete
    starved.went_down(140.0)  # the reconnect's own drop keeps the outage's start
    assert starved.down_since == 100.0


def test_a_stream_that_went_down_after_an_instant_still_covers_it() -> None:
    """An instant is lost to a stream only when the stream's outage began at or before it: one that dropped after
    the instant had delivered what was current then (a cut taken a moment later must not refuse it), one that is
    silent but not yet noticed is out since it was last heard from, and one never connected is out."""
    from zerogex_pipeline.live.feed import StreamRegistry

    registry = StreamRegistry(liveness_s=7.0)
    dropped, silent, live, never = (registry.register("spot", n) for n in ("a", "b", "c", "d"))
    for s in (dropped, silent, live):
        s.connected = s.complete = True
        s.connections = 1
        s.down_since = None
        s.last_data = 100.0
        s.heard(100.5)
    live.heard(104.0)
    never.down_since = 50.0  # registered then
    dropped.went_down(101.0)  # outage from 100.5 (last heard)
    now = 108.0  # silent has said nothing for 7.5 s: not live, out since 100.5
    ids = [s.id for s in (dropped, silent, live, never)]
    assert [s.label for s in registry.not_live_at(ids, 100.0, now)] == ["d"]
    assert [s.label for s in registry.not_live_at(ids, 100.5, now)] == ["a", "b", "d"]
    assert [s.label for s in registry.not_live(ids, now)] == ["a", "b", "d"]
    assert dropped.alive_after(1, 100.0) is True and dropped.alive_after(1, 100.5) is False
