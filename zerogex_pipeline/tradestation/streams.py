"""HTTP streaming (chunked NDJSON) with heartbeats, watchdogs, reconnects and the option-stream cap.

- :func:`iter_ndjson` splits bytes on newlines whatever the chunk boundaries; blank lines are skipped and
  lines that are not JSON objects are counted and skipped (legacy ``END``/``ERROR - ...`` lines included).
- :class:`Stream` yields data messages of one stream, reconnecting with exponential backoff and jitter on
  a dead connection (no bytes for ``stream_idle_timeout_s``: heartbeats come every 5 s), on starvation
  (heartbeats but no data for ``stream_starvation_s``), on GoAway in either shape
  (``{"Error":"GoAway"}`` or ``{"StreamStatus":"GoAway"}``) and on server errors.
- Option chain and option quote streams hold one of ``max_option_streams`` (10) slots shared by every
  process on the machine for the API key (:mod:`zerogex_pipeline.tradestation.stream_slots`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pandas as pd
import requests

from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.errors import StreamError, TradeStationError
from zerogex_pipeline.tradestation.stream_slots import StreamSlot, StreamSlots, slots_dir
from zerogex_pipeline.tradestation.symbols import parse_option_symbol
from zerogex_pipeline.tradestation.values import to_float, to_int, to_timestamp

log = logging.getLogger(__name__)

FATAL_STREAM_ERRORS = {"BadRequest", "DualLogon", "Unauthorized", "Forbidden", "NotFound"}
OPTION_STREAM_KINDS = {"option-chain", "option-quotes"}


class NdjsonDecoder:
    """Incremental NDJSON decoder: feed bytes, get complete JSON objects."""

    def __init__(self) -> None:
        self._buffer = b""
        self.malformed = 0
        """Lines skipped because they were not JSON objects."""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Objects completed by ``chunk`` (may be none, one or several)."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        out = []
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.malformed += 1
                log.warning("stream: skipped a line that is not a JSON object (%d bytes)", len(line))
        return out


def iter_ndjson(chunks: Iterable[bytes], decoder: NdjsonDecoder | None = None) -> Iterator[dict[str, Any]]:
    """JSON objects of an NDJSON byte stream, whatever the chunk boundaries."""
    decoder = decoder or NdjsonDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.feed(b"\n")


def is_heartbeat(msg: dict[str, Any]) -> bool:
    """``{"Heartbeat":n,"Timestamp":...}``."""
    return "Heartbeat" in msg and len(msg.keys() - {"Heartbeat", "Timestamp"}) == 0


def is_goaway(msg: dict[str, Any]) -> bool:
    """GoAway in either shape."""
    return msg.get("Error") == "GoAway" or msg.get("StreamStatus") == "GoAway"


class _ReconnectNeededError(Exception):
    def __init__(self, reason: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.immediate = immediate


class Stream:
    """One logical stream; iterating yields data messages across reconnects.

    Heartbeats are consumed unless ``yield_heartbeats``; ``{"StreamStatus":"EndSnapshot"}`` is passed on
    so snapshot helpers can stop. Raises :class:`StreamError` on a fatal in-band error or when
    ``stream_max_reconnects`` consecutive attempts fail.
    """

    def __init__(self, client: TradeStationClient, path: str, params: dict[str, Any] | None = None,
                 kind: str = "quotes", category: str = "stream-connect", yield_heartbeats: bool = False,
                 slot: StreamSlot | None = None, on_disconnect: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.slot = slot
        """An option-stream slot the caller holds for this stream (kept across its reconnects, not released
        here); ``None``: the stream takes one of the machine's slots itself and frees it when it ends."""
        self.on_disconnect = on_disconnect
        """Called with the reason each time a connection ends (GoAway, dead, starved, error), before the wait."""
        self.starvation_s: float | None = None
        """Heartbeats-only seconds before a reconnect; ``None``: the client's ``stream_starvation_s``. A caller
        that knows when data must flow (the stream engine) may turn this off (``math.inf``) and judge itself."""
        self.path = path
        self.params = params or {}
        self.kind = kind
        self.category = category
        self.yield_heartbeats = yield_heartbeats
        self.decoder = NdjsonDecoder()
        self.reconnects = 0
        self.connections = 0
        """Connections opened so far (a new one re-sends the initial snapshot)."""
        self.heartbeats = 0
        self.goaways = 0
        self.more_in_chunk = False
        """While a message is being handled: whether more messages of the same network chunk follow (a server's
        one write of a batch of updates), so a consumer can apply the batch at once."""
        self._closed = False
        self._response: requests.Response | None = None

    def reconnect(self) -> None:
        """Drop the current connection; the stream opens a new one (its initial snapshot comes again)."""
        response = self._response
        if response is not None and not self._closed:
            response.close()

    def close(self) -> None:
        """Stop the stream (the current connection is closed)."""
        self._closed = True
        if self._response is not None:
            self._response.close()

    def _backoff(self, failures: int) -> float:
        cfg = self.client.config
        base = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** max(failures - 1, 0))
        return base * (0.5 + random.random() / 2)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cfg = self.client.config
        slot: StreamSlot | None = None
        if self.kind in OPTION_STREAM_KINDS and self.slot is None:
            slot = option_stream_slots(self.client).acquire(timeout_s=cfg.read_timeout_s)
            if slot is None:
                raise StreamError(f"{self.path}: {cfg.max_option_streams} option streams already open "
                                  "(by this or another process)")
        failures = 0
        try:
            while not self._closed:
                try:
                    for msg in self._connect_once():
                        failures = 0
                        yield msg
                    if self._closed:
                        return
                    raise _ReconnectNeededError("stream ended")
                except _ReconnectNeededError as exc:
                    if self._closed:
                        return
                    if self.on_disconnect is not None:
                        self.on_disconnect(exc.reason)
                    failures += 1
                    self.reconnects += 1
                    if failures > cfg.stream_max_reconnects:
                        raise StreamError(f"{self.path}: gave up after {cfg.stream_max_reconnects} "
                                          f"reconnects (last: {exc.reason})") from None
                    delay = 0.0 if exc.immediate and failures == 1 else self._backoff(failures)
                    log.info("%s: %s; reconnecting in %.2f s", self.path, exc.reason, delay)
                    time.sleep(delay)
        finally:
            if self._response is not None:
                self._response.close()
            if slot is not None:
                # the server counts the stream until it has seen the close: free the slot a moment later
                timer = threading.Timer(cfg.option_slot_grace_s, slot.release)
                timer.daemon = True
                timer.start()

    def _connect_once(self) -> Iterator[dict[str, Any]]:
        cfg = self.client.config
        try:
            resp = self.client.open("GET", self.path, self.category, params=self.params, stream=True,
                                    read_timeout_s=cfg.stream_idle_timeout_s)
        except StreamError:
            raise
        except TradeStationError as exc:
            status = getattr(exc, "status", 500)
            if status >= 500 or status == 429 or not hasattr(exc, "status"):
                raise _ReconnectNeededError(str(exc)) from None
            raise StreamError(str(exc)) from None
        self._response = resp
        self.connections += 1
        last_data = time.monotonic()
        try:
            chunks = resp.iter_content(chunk_size=None)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
                    # AttributeError/ValueError: http.client after close() from another thread
                    if self._closed:
                        return
                    raise _ReconnectNeededError(f"connection idle or dropped ({type(exc).__name__})") from None
                msgs = self.decoder.feed(chunk)
                for k, msg in enumerate(msgs):
                    self.more_in_chunk = k < len(msgs) - 1
                    if is_heartbeat(msg):
                        self.heartbeats += 1
                        starvation = cfg.stream_starvation_s if self.starvation_s is None else self.starvation_s
                        if time.monotonic() - last_data > starvation:
                            raise _ReconnectNeededError(f"heartbeats only for {starvation:.1f} s (starved)")
                        if self.yield_heartbeats:
                            yield msg
                        continue
                    if is_goaway(msg):
                        self.goaways += 1
                        raise _ReconnectNeededError("GoAway", immediate=True)
                    error = msg.get("Error")
                    if error == "DualLogon":  # also in the docs' shape {"Symbol":..,"Error":"DualLogon"}
                        raise StreamError(f"{self.path}: DualLogon: the server ended the stream because this "
                                          "TradeStation user logged on from another session; close the other "
                                          "session (or use another user) and retry")
                    if error and "Symbol" not in msg:
                        if error in FATAL_STREAM_ERRORS:
                            raise StreamError(f"{self.path}: {error}: {msg.get('Message', '')}")
                        raise _ReconnectNeededError(f"in-band error {error}")
                    last_data = time.monotonic()
                    yield msg
        finally:
            resp.close()


def option_stream_slots(client: TradeStationClient) -> StreamSlots:
    """The API key's option-stream slots (``max_option_streams``, 10 by the reference), machine-wide."""
    cfg = client.config
    return StreamSlots(slots_dir(Path(cfg.cache_dir), cfg.client_id, cfg.auth_url), cfg.max_option_streams)


def _sym(symbols: Iterable[str]) -> str:
    return ",".join(quote(s.strip(), safe="$@.") for s in symbols)


def quote_stream(client: TradeStationClient, symbols: list[str]) -> Stream:
    """``/v3/marketdata/stream/quotes/{symbols}`` (at most 100 symbols)."""
    if not symbols or len(symbols) > 100:
        raise ValueError(f"quote stream: expected 1..100 symbols, got {len(symbols)}")
    return Stream(client, f"/v3/marketdata/stream/quotes/{_sym(symbols)}", kind="quotes")


def bar_stream(client: TradeStationClient, symbol: str, unit: str = "Minute", interval: int = 1,
               barsback: int = 1) -> Stream:
    """``/v3/marketdata/stream/barcharts/{symbol}``."""
    if not 1 <= barsback <= 57_600:
        raise ValueError(f"bar stream: barsback must be 1..57600, got {barsback}")
    return Stream(client, f"/v3/marketdata/stream/barcharts/{_sym([symbol])}",
                  {"unit": unit, "interval": str(interval), "barsback": str(barsback)}, kind="bars")


def option_chain_stream(client: TradeStationClient, underlying: str, expiration: str | None = None,
                        strike_proximity: int = 5, enable_greeks: bool = True, option_type: str = "All",
                        strike_range: str = "All", price_center: float | None = None,
                        slot: StreamSlot | None = None) -> Stream:
    """``/v3/marketdata/stream/options/chains/{underlying}``; ``expiration`` as ``MM-DD-YYYY``.

    ``slot``: an option-stream slot the caller holds (see :class:`Stream`); by default the stream takes one.
    """
    if strike_proximity < 1:
        raise ValueError(f"option chain: strike_proximity must be >= 1, got {strike_proximity}")
    params: dict[str, Any] = {"strikeProximity": str(strike_proximity), "enableGreeks": str(enable_greeks).lower(),
                              "optionType": option_type, "strikeRange": strike_range}
    if expiration:
        params["expiration"] = expiration
    if price_center is not None:
        params["priceCenter"] = str(price_center)
    return Stream(client, f"/v3/marketdata/stream/options/chains/{_sym([underlying])}", params, kind="option-chain",
                  slot=slot)


def option_quote_stream(client: TradeStationClient, legs: list[tuple[str, int]]) -> Stream:
    """``/v3/marketdata/stream/options/quotes`` with ``legs[i].Symbol``/``legs[i].Ratio``."""
    if not legs:
        raise ValueError("option quotes: expected at least one leg")
    params: dict[str, Any] = {}
    for i, (symbol, ratio) in enumerate(legs):
        params[f"legs[{i}].Symbol"] = symbol
        params[f"legs[{i}].Ratio"] = str(ratio)
    return Stream(client, "/v3/marketdata/stream/options/quotes", params, kind="option-quotes")


def depth_stream(client: TradeStationClient, symbol: str, aggregates: bool = False, max_levels: int = 20) -> Stream:
    """Market depth quotes (or aggregates) of ``symbol``."""
    which = "aggregates" if aggregates else "quotes"
    return Stream(client, f"/v3/marketdata/stream/marketdepth/{which}/{_sym([symbol])}",
                  {"maxlevels": str(max_levels)}, kind="depth", category="marketdepth")


class QuoteBook:
    """Full quote state per symbol from a quote stream's first full object and later deltas."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}

    def merge(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Merge one stream message; return the symbol's full state (``None`` for non-quote messages)."""
        symbol = msg.get("Symbol")
        if not symbol:
            return None
        current = self.state.setdefault(str(symbol), {})
        for key, value in msg.items():
            if isinstance(value, dict) and isinstance(current.get(key), dict):
                current[key] = {**current[key], **value}
            else:
                current[key] = value
        return dict(current)


@contextmanager
def closed_after(stream: Stream, timeout_s: float) -> Iterator[float]:
    """Close ``stream`` after ``timeout_s`` seconds (unblocking a pending read) and on exit.

    Yields the ``time.monotonic()`` deadline so a reader can also stop between messages.
    """
    deadline = time.monotonic() + timeout_s
    timer = threading.Timer(timeout_s, stream.close)
    timer.daemon = True
    timer.start()
    try:
        yield deadline
    finally:
        timer.cancel()
        stream.close()


def take(stream: Stream, count: int, timeout_s: float, stop: Callable[[dict[str, Any]], bool] | None = None
         ) -> list[dict[str, Any]]:
    """Up to ``count`` data messages of ``stream`` (stops early on ``stop(msg)`` or after ``timeout_s``)."""
    out: list[dict[str, Any]] = []
    with closed_after(stream, timeout_s) as deadline:
        for msg in stream:
            out.append(msg)
            if len(out) >= count or (stop is not None and stop(msg)) or time.monotonic() > deadline:
                break
    return out


SPREAD_COLUMNS = ["symbol", "option_type", "strike", "expiration", "bid", "ask", "last", "mid", "volume",
                  "open_interest", "iv", "delta", "gamma", "vega", "theta"]


def spreads_frame(spreads: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Single-leg ``Spread`` objects as chain rows (prices USD per share, IV annualized decimal)."""
    rows = []
    for s in spreads:
        legs = s.get("Legs") or []
        if len(legs) != 1:
            continue
        leg = legs[0]
        try:
            parsed = parse_option_symbol(str(leg.get("Symbol", "")))
        except ValueError:
            continue
        exp = to_timestamp(leg.get("Expiration"))
        rows.append({
            "symbol": leg.get("Symbol"), "option_type": parsed.right,
            "strike": to_float(leg.get("StrikePrice")) if leg.get("StrikePrice") else parsed.strike,
            "expiration": exp.date() if exp is not None else parsed.expiration,
            "bid": to_float(s.get("Bid")), "ask": to_float(s.get("Ask")), "last": to_float(s.get("Last")),
            "mid": to_float(s.get("Mid")), "volume": to_int(s.get("Volume")),
            "open_interest": to_int(s.get("DailyOpenInterest")), "iv": to_float(s.get("ImpliedVolatility")),
            "delta": to_float(s.get("Delta")), "gamma": to_float(s.get("Gamma")), "vega": to_float(s.get("Vega")),
            "theta": to_float(s.get("Theta")),
        })
    return pd.DataFrame(rows, columns=SPREAD_COLUMNS)


def chain_snapshot(client: TradeStationClient, underlying: str, expiration: str | None = None,
                   strike_proximity: int = 5, timeout_s: float = 30.0, enable_greeks: bool = True,
                   price_center: float | None = None) -> pd.DataFrame:
    """Collect one full option chain from the chain stream and return it (one row per contract).

    The initial snapshot of one connection is complete at ``{"StreamStatus":"EndSnapshot"}``, when a
    contract repeats on that connection (updates began), or at the first heartbeat after its data (the
    burst ended). A reconnect (GoAway, dead or starved connection) starts a new snapshot: contracts
    already seen are kept (the newer object wins) and completion is judged on the new connection alone,
    so a snapshot cut short by the old connection is never mistaken for the whole chain.

    Raises:
        StreamError: no complete snapshot within ``timeout_s`` seconds, or the stream failed for good.
    """
    stream = option_chain_stream(client, underlying, expiration, strike_proximity, enable_greeks,
                                 price_center=price_center)
    stream.yield_heartbeats = True
    seen: dict[str, dict[str, Any]] = {}
    on_connection: set[str] = set()
    connection = 0
    complete = False
    with closed_after(stream, timeout_s) as deadline:
        for msg in stream:
            if stream.connections != connection:
                connection, on_connection = stream.connections, set()
            if msg.get("StreamStatus") == "EndSnapshot" or (is_heartbeat(msg) and on_connection):
                complete = True
                break
            legs = msg.get("Legs") or []
            key = "|".join(str(leg.get("Symbol")) for leg in legs)
            if not key:
                continue
            if key in on_connection:
                complete = True
                break
            on_connection.add(key)
            seen[key] = msg
            if time.monotonic() > deadline:
                break
    if not complete:
        raise StreamError(f"option chain {underlying} {expiration or ''}: no complete snapshot within "
                          f"{timeout_s:.0f} s ({len(seen)} contracts, {stream.reconnects} reconnects)")
    return spreads_frame(seen.values())
