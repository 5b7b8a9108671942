"""A chain stream connected but behind at a snapshot instant (heartbeats only, or a server lagging its own data)
holds quotes of an older spot: the instant must not capture them as current (issue 11: the faulted session captured
two chains 40 and 60 s of market old after a heartbeat-only starvation, before the starvation was declared). The
feed judges it by the starvation rule at the instant; the stale span becomes the stream's outage."""

import time
from collections import deque
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from zerogex_pipeline.live.book import UnderlyingState
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.feed import StreamStatus
from zerogex_pipeline.live.tradestation_feed import (
    SPOT_MOVES_KEPT,
    SPREAD_FIELDS,
    TradeStationFeed,
    _Completion,
)
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.live.test_stream_chunks import ChunkedStream, _spread

SPY = resolve_underlying("SPY")
QQQ = resolve_underlying("QQQ")


@pytest.fixture
def feed(tmp_path: Path) -> TradeStationFeed:
    config = TradeStationConfig(client_id="id", client_secret="secret", refresh_token="refresh",
                                api_url="http://127.0.0.1:9", auth_url="http://127.0.0.1:9", data_dir=tmp_path)
    return TradeStationFeed(TradeStationClient(config), EngineClock(pd.Timestamp("2026-11-25 15:00", tz="UTC")))


def chain(feed: TradeStationFeed, u: Any, last_data: float, now: float) -> StreamStatus:
    status = feed.registry.register("chain", f"{u.name} chain")
    feed._chain_underlying[status.id] = u.key
    status.connected = status.complete = True
    status.connections = 1
    status.down_since = None
    status.last_data = last_data
    status.heard(now)  # heartbeats keep it live
    return status


def moved(feed: TradeStationFeed, u: Any, *at: float) -> None:
    feed._spot_moves.setdefault(u.key, deque(maxlen=SPOT_MOVES_KEPT)).extend(at)


def test_behind_only_when_spot_moved_after_its_last_data_and_before_the_instant(feed: TradeStationFeed) -> None:
    t = 1000.0
    behind = chain(feed, SPY, last_data=t - 5.0, now=t)
    moved(feed, SPY, t - 6.0, t - 3.0)
    quiet = chain(feed, QQQ, last_data=t - 5.0, now=t)
    moved(feed, QQQ, t - 6.0, t + 0.5)  # moved before its data and after the instant only: a quiet market then
    assert feed.stale_chains([behind.id, quiet.id], t, max_age_s=2.0) == [behind]
    assert behind.stale_since == t - 5.0 and quiet.stale_since is None
    assert feed.stale_chains([behind.id], t, max_age_s=5.0) == []  # within the allowed age
    assert feed.stale_chains([behind.id], t - 3.5, max_age_s=1.0) == []  # an earlier instant, before the move


def test_a_stream_that_is_down_or_not_a_chain_is_not_judged_behind(feed: TradeStationFeed) -> None:
    t = 1000.0
    down = chain(feed, SPY, last_data=t - 5.0, now=t - 20.0)  # silent 20 s: not live, the outage rule covers it
    tail = feed.registry.register("quotes", "SPY tail quotes")
    tail.connected = tail.complete = True
    tail.last_data = t - 5.0
    tail.heard(t)
    moved(feed, SPY, t - 1.0)
    assert feed.stale_chains([down.id, tail.id], t, max_age_s=2.0) == []


def test_the_stale_span_is_an_outage_until_data_resumes(feed: TradeStationFeed) -> None:
    t0 = time.monotonic()
    status = chain(feed, SPY, last_data=t0 - 5.0, now=t0)
    moved(feed, SPY, t0 - 1.0)
    assert feed.stale_chains([status.id], t0, max_age_s=2.0) == [status]
    assert feed.stale_chains([status.id], t0, max_age_s=2.0) == [status]  # judged again: the same span
    assert status.outages == []

    state = UnderlyingState()
    observed: list[float] = []
    received: list[float] = []

    def handle(msg: dict[str, Any], completion: _Completion) -> None:
        received.append(time.monotonic())
        completion.data(msg["Legs"][0]["Symbol"])
        feed._update(state, SPY, msg["Legs"][0]["Symbol"], msg, SPREAD_FIELDS, status.id)

    stream = ChunkedStream([[_spread("SPY 261125C700", 1.0), _spread("SPY 261125C701", 1.0)]],
                           lambda: observed.append(time.monotonic()), feed._stop)
    feed._pump(status, lambda: stream, handle, None, SPY)  # type: ignore[arg-type,return-value]
    (start, end), = status.outages  # from its last data to the receipt of the first data applied again
    assert start == t0 - 5.0 and observed[0] < end <= received[0]
    assert status.stale_since is None and status.last_data == end


def test_data_received_before_an_instant_that_found_it_behind_still_covers_the_instant(
        feed: TradeStationFeed) -> None:
    t = 1000.0
    status = chain(feed, SPY, last_data=t - 5.0, now=t)
    moved(feed, SPY, t - 1.0)
    feed.stale_chains([status.id], t, max_age_s=2.0)
    status.data_applied(t - 0.1)  # a chunk half-read when the cut paused the readers, applied after it
    assert status.outages == [(t - 5.0, t)] and status.last_data == t - 0.1


def test_a_stream_dropping_while_behind_has_one_outage_from_its_last_data(feed: TradeStationFeed) -> None:
    t = time.monotonic()
    status = chain(feed, SPY, last_data=t - 5.0, now=t)
    moved(feed, SPY, t - 1.0)
    feed.stale_chains([status.id], t, max_age_s=2.0)
    status.went_down(t + 1.0)  # a drop after heartbeats: on its own it would start at the last heartbeat
    assert status.down_since == t - 5.0 and status.stale_since is None


def test_a_stream_closed_while_behind_ends_its_stale_span(feed: TradeStationFeed) -> None:
    t = time.monotonic()
    status = chain(feed, SPY, last_data=t - 5.0, now=t)
    moved(feed, SPY, t - 1.0)
    feed.stale_chains([status.id], t, max_age_s=2.0)
    feed.close_streams([status.id])
    (start, end), = status.outages
    assert start == t - 5.0 and end >= t and status.stale_since is None
