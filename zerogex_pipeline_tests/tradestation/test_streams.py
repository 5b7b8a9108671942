"""Streams over real HTTP: framing, heartbeats, GoAway (both shapes), silent death, starvation, split and
malformed lines, reconnects, the option-stream cap, quote delta merge and the chain snapshot helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerogex_pipeline.tradestation import streams
from zerogex_pipeline.tradestation.client import TradeStationClient
from zerogex_pipeline.tradestation.emulator import Emulator
from zerogex_pipeline.tradestation.errors import StreamError
from zerogex_pipeline_tests.tradestation.conftest import make_config

MESSAGES = [{"Symbol": "SPY", "Last": "592.71"}, {"Heartbeat": 1, "Timestamp": "2021-03-02T18:01:23Z"},
            {"Legs": [{"Symbol": "SPY 250117C600"}], "Bid": "1.2"}, {"Error": "GoAway", "Message": "bye"}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=30), st.booleans())
def test_ndjson_decoder_ignores_chunk_boundaries(cuts: list[int], crlf: bool) -> None:
    eol = b"\r\n" if crlf else b"\n"
    data = b"".join(json.dumps(m).encode() + eol + (eol if i == 1 else b"") for i, m in enumerate(MESSAGES))
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert list(streams.iter_ndjson(chunks)) == MESSAGES


def test_ndjson_decoder_skips_malformed_lines() -> None:
    dec = streams.NdjsonDecoder()
    out = dec.feed(b'{"a":1}\nERROR - RESET\n{"Symbol":"X",\n[1,2]\n\n{"b":"2"}\n')
    assert out == [{"a": 1}, {"b": "2"}] and dec.malformed == 3


def test_goaway_shapes_reconnect(client: TradeStationClient, emulator: Emulator) -> None:
    for shape in ("error", "status"):
        emulator.faults.update({"goaway_streams": 1, "goaway_after": 2, "goaway_shape": shape})
        stream = streams.quote_stream(client, ["SPY", "QQQ"])
        msgs = streams.take(stream, 4, timeout_s=10)
        assert len(msgs) == 4 and stream.goaways == 1 and stream.reconnects == 1
        # after the reconnect the stream starts again with full quotes
        assert {"Symbol", "Last", "Bid", "Ask"} <= msgs[2].keys()


def test_silent_death_detected_by_idle_timeout(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.update({"dead_streams": 1, "dead_after": 1})
    stream = streams.quote_stream(client, ["SPY"])
    started = time.monotonic()
    msgs = streams.take(stream, 2, timeout_s=10)
    assert len(msgs) == 2 and stream.reconnects == 1
    assert time.monotonic() - started >= client.config.stream_idle_timeout_s * 0.9


def test_heartbeat_only_starvation_reconnects(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.starve_streams = 1
    stream = streams.quote_stream(client, ["SPY"])
    msgs = streams.take(stream, 1, timeout_s=10)
    assert msgs[0]["Symbol"] == "SPY" and stream.reconnects == 1 and stream.heartbeats >= 2


def test_heartbeats_keep_a_quiet_stream_alive(emulator: Emulator, tmp_path: Path) -> None:
    c = TradeStationClient(make_config(emulator.url, tmp_path, stream_starvation_s=30.0))
    stream = streams.bar_stream(c, "SPY", barsback=2)
    emulator.speed = 0.0  # frozen market: after the history only heartbeats arrive
    msgs = streams.take(stream, 4, timeout_s=1.5)
    # two historical bars, the live bar once, then nothing changes: heartbeats only
    assert len(msgs) == 3 and stream.heartbeats >= 2 and stream.reconnects == 0
    assert msgs[1]["IsEndOfHistory"] is True and msgs[2]["BarStatus"] == "Open"


def test_split_chunks_and_malformed_lines(client: TradeStationClient, emulator: Emulator) -> None:
    emulator.faults.update({"split_chunks": True, "malformed_every": 2})
    stream = streams.quote_stream(client, ["SPY", "QQQ", "$SPX.X"])
    msgs = streams.take(stream, 6, timeout_s=10)
    assert len(msgs) == 6 and stream.reconnects == 0 and stream.decoder.malformed >= 2
    assert all(m["Symbol"] in {"SPY", "QQQ", "$SPX.X"} for m in msgs)


def test_quote_deltas_merge_into_full_state(client: TradeStationClient, emulator: Emulator) -> None:
    book = streams.QuoteBook()
    msgs = streams.take(streams.quote_stream(client, ["SPY"]), 5, timeout_s=10)
    assert len(msgs) == 5
    first_keys = set(msgs[0])
    assert any(set(m) < first_keys for m in msgs[1:])  # later messages are deltas
    for m in msgs:
        state = book.merge(m)
    assert state is not None and set(state) == first_keys and state["Last"] == msgs[-1].get("Last", state["Last"])


def test_fatal_in_band_error_raises(client: TradeStationClient, emulator: Emulator) -> None:
    with pytest.raises(StreamError, match="404"):
        streams.take(streams.bar_stream(client, "NOPE"), 1, timeout_s=5)


def test_reconnects_exhausted(emulator: Emulator, tmp_path: Path) -> None:
    c = TradeStationClient(make_config(emulator.url, tmp_path, stream_max_reconnects=2, max_retries=0))
    emulator.faults.update({"server_error_requests": 100})
    with pytest.raises(StreamError, match="gave up after 2 reconnects"):
        streams.take(streams.quote_stream(c, ["SPY"]), 1, timeout_s=5)


def test_chain_snapshot_collects_one_full_chain(client: TradeStationClient) -> None:
    chain = streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=4, timeout_s=5)
    assert len(chain) == 16 and chain["symbol"].is_unique
    assert set(chain["option_type"]) == {"C", "P"} and (chain["ask"] >= chain["bid"]).all()
    assert chain["iv"].between(0.05, 1.0).all() and (chain["open_interest"] > 0).all()


def test_chain_without_greeks(client: TradeStationClient) -> None:
    chain = streams.chain_snapshot(client, "SPY", "01-17-2025", strike_proximity=2, enable_greeks=False, timeout_s=5)
    assert len(chain) == 8 and chain["iv"].isna().all() and chain["delta"].isna().all()


def test_option_stream_cap(emulator: Emulator, tmp_path: Path) -> None:
    c = TradeStationClient(make_config(emulator.url, tmp_path, max_option_streams=10, read_timeout_s=0.5))
    opened = threading.Barrier(11, timeout=10)
    stop = threading.Event()
    errors: list[Exception] = []

    def hold(i: int) -> None:
        s = streams.option_quote_stream(c, [(f"SPY 250117C{590 + i}", 1)])
        it = iter(s)  # holding the iterator holds the slot
        try:
            next(it)
            opened.wait()
            stop.wait(5)
        except Exception as exc:
            errors.append(exc)
        finally:
            s.close()
            it.close()

    threads = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    opened.wait()
    with pytest.raises(StreamError, match="10 option streams already open"):
        streams.take(streams.option_chain_stream(c, "SPY", "01-17-2025"), 1, timeout_s=3)
    stop.set()
    for t in threads:
        t.join(5)
    assert not errors and emulator.stats.max_open_option_streams == 10


def test_emulator_refuses_an_eleventh_option_stream(emulator: Emulator, tmp_path: Path) -> None:
    c = TradeStationClient(make_config(emulator.url, tmp_path, max_option_streams=11, stream_max_reconnects=0))
    emulator.max_option_streams = 1
    first = streams.option_chain_stream(c, "SPY", "01-17-2025", strike_proximity=1)
    it = iter(first)
    next(it)
    with pytest.raises(StreamError, match="gave up"):
        streams.take(streams.option_chain_stream(c, "SPY", "01-17-2025"), 1, timeout_s=3)
    first.close()


def test_depth_and_bar_streams(client: TradeStationClient) -> None:
    depth = streams.take(streams.depth_stream(client, "SPY", max_levels=3), 1, timeout_s=5)[0]
    bids = [float(b["Price"]) for b in depth["Bids"]]
    asks = [float(a["Price"]) for a in depth["Asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    agg = streams.take(streams.depth_stream(client, "SPY", aggregates=True, max_levels=2), 1, timeout_s=5)[0]
    assert {"TotalSize", "NumParticipants"} <= agg["Bids"][0].keys()
    bars = streams.take(streams.bar_stream(client, "SPY", barsback=3), 5, timeout_s=5)
    assert [b["IsEndOfHistory"] for b in bars[:3]] == [False, False, True]
    assert any(b["BarStatus"] == "Open" for b in bars[3:])


CAP_CHILD = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from zerogex_pipeline.tradestation import streams
    from zerogex_pipeline.tradestation.client import TradeStationClient
    from zerogex_pipeline_tests.tradestation.conftest import make_config
    url, data_dir, first, count, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    client = TradeStationClient(make_config(url, data_dir, read_timeout_s=30.0))
    client.quotes(["SPY"])  # token before the race
    got, errors = [], []

    def one(i):
        s = streams.option_quote_stream(client, [(f"SPY 250117C{580 + i}", 1)])
        it = iter(s)
        try:
            got.append(next(it)["Legs"][0]["Symbol"])
            time.sleep(1.0)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            s.close()
            it.close()

    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    threads = [threading.Thread(target=one, args=(first + i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(got), len(set(got)), errors)
""")


def _streams_from_two_processes(emulator: Emulator, dirs: tuple[Path, Path], tmp_path: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CAP_CHILD, emulator.url, str(d), str(i * 8), "8", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, d in enumerate(dirs)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    return [o[0].strip() for o in outs]


def test_option_stream_cap_shared_across_processes(emulator: Emulator, tmp_path: Path) -> None:
    """Two processes open 8 option streams each for one user: the emulator never sees more than 10 at once."""
    emulator.max_option_streams = 100  # observe the client's concurrency instead of refusing the 11th
    shared = tmp_path / "data"
    assert _streams_from_two_processes(emulator, (shared, shared), tmp_path) == ["8 8 []", "8 8 []"]
    assert emulator.stats.max_open_option_streams == 10 and emulator.stats.statuses[429] == 0
    # control: without a shared data dir (separate slot files) the same load exceeds the cap
    emulator.stats.max_open_option_streams = 0
    (tmp_path / "go").unlink()
    assert _streams_from_two_processes(emulator, (tmp_path / "a", tmp_path / "b"), tmp_path) == ["8 8 []"] * 2
    assert emulator.stats.max_open_option_streams > 10
