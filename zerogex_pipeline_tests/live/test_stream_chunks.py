"""A stream's network chunk reaches the contract book whole, and the stream counts as having sent data only once
its book holds that data: a snapshot cut taken while a reader is half-way through a server's batch sees the
previous batch and knows it (issue 11: the open's cut once took SPX chains still at the previous close because
the first message of the open's 800-row batch already counted as data since the open)."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from zerogex_pipeline.live.book import UnderlyingState
from zerogex_pipeline.live.clock import EngineClock
from zerogex_pipeline.live.tradestation_feed import SPREAD_FIELDS, TradeStationFeed, _Completion
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.config import TradeStationConfig
from zerogex_pipeline.underlyings import resolve_underlying

SPY = resolve_underlying("SPY")


class ChunkedStream:
    """Stands in for :class:`~zerogex_pipeline.tradestation.streams.Stream`: one connection delivering
    ``chunks`` (each one network chunk of messages); ``observe`` runs in the reader's thread before each message
    is handed over, as a cut would look at the feed at that moment."""

    def __init__(self, chunks: list[list[dict[str, Any]]], observe: Callable[[], None], stop: threading.Event
                 ) -> None:
        self.chunks = chunks
        self.observe = observe
        self.stop = stop
        self.connections = 0
        self.more_in_chunk = False
        self.yield_heartbeats = False
        self.on_disconnect: Callable[[str], None] | None = None
        self.starvation_s: float | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        assert self.connections == 0, "opened twice: the first connection failed (see the log)"
        self.stop.set()  # the feed's pump ends with this connection instead of reopening it
        self.connections = 1
        for chunk in self.chunks:
            for k, msg in enumerate(chunk):
                self.observe()
                time.sleep(0.002)  # receipt instants that differ
                self.more_in_chunk = k < len(chunk) - 1
                yield msg
        self.observe()

    def close(self) -> None:
        return None

    def reconnect(self) -> None:
        return None


def _spread(symbol: str, bid: float) -> dict[str, Any]:
    return {"Legs": [{"Symbol": symbol}], "Bid": str(bid), "Ask": str(bid + 0.05), "Gamma": "0.01",
            "ImpliedVolatility": "0.2", "DailyOpenInterest": "100"}


def test_a_chunk_is_applied_whole_and_counts_as_data_once_applied(tmp_path: Path) -> None:
    config = TradeStationConfig(client_id="id", client_secret="secret", refresh_token="refresh",
                                api_url="http://127.0.0.1:9", auth_url="http://127.0.0.1:9", data_dir=tmp_path)
    feed = TradeStationFeed(TradeStationClient(config), EngineClock(pd.Timestamp("2026-11-25 15:00", tz="UTC")))
    state = UnderlyingState()
    status = feed.registry.register("chain", "SPY 2026-11-25 chain")
    seen: list[tuple[float, int, float]] = []  # (last_data, contracts in the book, bid of the first contract)
    observed: list[float] = []

    def observe() -> None:
        observed.append(time.monotonic())
        view = state.book.view()
        seen.append((status.last_data, len(view), float(view.column("bid")[0]) if len(view) else float("nan")))

    received: list[float] = []

    def handle(msg: dict[str, Any], completion: _Completion) -> None:
        received.append(time.monotonic())
        symbol = msg["Legs"][0]["Symbol"]
        completion.data(symbol)
        feed._update(state, SPY, symbol, msg, SPREAD_FIELDS, status.id)

    first = [_spread(f"SPY 261125C{k}", 1.0) for k in (700, 701, 702)]
    second = [_spread(f"SPY 261125C{k}", 2.0) for k in (700, 701, 702)]
    stream = ChunkedStream([first, second], observe, feed._stop)
    expected = {m["Legs"][0]["Symbol"] for m in first}  # the initial snapshot: complete with the first chunk
    feed._pump(status, lambda: stream, handle, expected, SPY)  # type: ignore[arg-type,return-value]

    for last_data, contracts, _ in seen[:3]:  # the first chunk read up to its last message: nothing applied or counted
        assert last_data == float("-inf") and contracts == 0
    for last_data, contracts, bid in seen[3:6]:  # the first chunk whole; the second read half-way: not yet
        assert (contracts, bid) == (3, 1.0)
        assert observed[0] < last_data <= received[0]  # counted from the receipt of the chunk's first message
    last_data, contracts, bid = seen[6]
    assert (contracts, bid) == (3, 2.0) and observed[3] < last_data <= received[3]  # the second chunk whole
