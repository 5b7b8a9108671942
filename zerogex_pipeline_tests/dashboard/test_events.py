"""Server push on both stores: a page's event stream receives live levels, snapshot and alert changes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import duckdb
import httpx
import pandas as pd
import psycopg
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.dashboard.app import create_app
from zerogex_pipeline.settings import Settings
from zerogex_pipeline_tests.clock import Clock, at
from zerogex_pipeline_tests.dashboard.conftest import (
    ALERT_DAY,
    in_process_retry,
    live_row,
    serving,
    write_live,
)


def events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    """``(event, data)`` of an SSE line stream."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name is not None:
            yield name, json.loads(line[6:])
            name = None


def wait_for(stream: Iterator[tuple[str, dict]], name: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    for event, data in stream:
        if event == name:
            return data
        assert time.monotonic() < deadline, f"no {name!r} event within {timeout} s"
    raise AssertionError(f"stream ended before a {name!r} event")


def change_stored_tables(settings: Settings) -> None:
    """What a re-materialization of the newest day looks like to a reader: its last snapshot and alerts change."""
    statements = ["DELETE FROM spy.gex_levels WHERE session_date = '2024-06-13' AND snapshot_ts = "
                  "(SELECT max(snapshot_ts) FROM spy.gex_levels)",
                  "DELETE FROM spy.gex_alerts WHERE session_date = '2024-06-13'"]
    if settings.database_url:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for s in statements:
                conn.execute(s.encode())
    else:
        def write() -> None:
            with duckdb.connect(str(settings.duckdb_path)) as conn:
                for s in statements:
                    conn.execute(s)

        in_process_retry(write)


def test_a_listener_is_pushed_live_levels_new_snapshots_and_alerts(store_settings, monkeypatch) -> None:
    clock = Clock(at("2024-06-14 09:45"))
    monkeypatch.setattr(market_calendar, "utc_now", clock)
    app = create_app(store_settings, poll_s=0.2)
    with serving(app) as base, httpx.stream("GET", f"{base}/api/v1/spy/events",
                                            timeout=httpx.Timeout(30.0)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response.iter_lines())
        hello = wait_for(stream, "hello")
        assert hello["underlying"] == "SPY" and hello["store"] in ("duckdb", "postgres")
        time.sleep(0.5)  # the watcher's first look at the store (nothing is pushed for it)

        day = pd.Timestamp("2024-06-14").date()
        write_live(store_settings, live_row(day, at("2024-06-14 09:45:00"), 541.25, zero_gamma=540.5))
        pushed = wait_for(stream, "levels")
        assert pushed["source"] == "live" and pushed["levels"]["spot"] == 541.25
        write_live(store_settings, live_row(day, at("2024-06-14 09:45:05"), 541.75, zero_gamma=540.5))
        assert wait_for(stream, "levels")["levels"]["spot"] == 541.75

        change_stored_tables(store_settings)
        seen = {}
        deadline = time.monotonic() + 20
        for event, data in stream:
            seen[event] = data
            if {"snapshot", "alerts"} <= set(seen) or time.monotonic() > deadline:
                break
        assert seen["snapshot"] == {"session_date": ALERT_DAY.isoformat(), "snapshot_ts": "2024-06-13T19:30:00Z",
                                    "rows": 13}
        assert seen["alerts"] == {"session_date": ALERT_DAY.isoformat(), "alerts": 0}


@pytest.mark.timeout(120)
def test_streams_do_not_hold_the_server_and_watchers_stop_with_their_listeners(embedded_settings) -> None:
    app = create_app(embedded_settings, poll_s=0.2)
    with serving(app) as base:
        with httpx.stream("GET", f"{base}/api/v1/spy/events", timeout=10) as response:
            next(events(response.iter_lines()))
            assert app.state.hub.watchers["spy"].task is not None
        deadline = time.monotonic() + 10
        while app.state.hub.watchers["spy"].subscribers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not app.state.hub.watchers["spy"].subscribers
