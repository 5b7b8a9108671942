"""Where live levels go besides the ``live_levels`` table: a log line, Dagster events, and alerts.

- **Log**: one line per underlying per computation (spot, net GEX, zero gamma, walls, max pain, lag).
- **Dagster**: at each snapshot instant, a runless materialization of ``<u>/captured_quotes``,
  ``<u>/captured_bars`` and ``<u>/live_levels`` (today's partition) with numeric metadata the asset pages
  plot. Sent from a background thread (about 10 ms per event on the local instance), never on the loop.
- **Alerts**: the existing rules (zero-gamma cross, wall breach, net-GEX sign change,
  :func:`zerogex_pipeline.analytics.alerts.detect_events`) between consecutive live rows. An event is
  identified like the batch path identifies it, by the snapshot instant at which ``gex_levels`` first sees
  it (the first capture instant at or after the crossing), and announced only when claimed in the shared
  ledger: announced within seconds, once, and never again by the ``gex_alerts`` asset.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd

from zerogex_pipeline import market_calendar
from zerogex_pipeline.analytics.alerts import LEVEL_COLUMNS, detect_events, event_id
from zerogex_pipeline.announcements import announce
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.storage import alert_ledger
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import Underlying

log = logging.getLogger("zerogex.live")

PLOTTED = ("spot", "net_gex", "call_gex", "put_gex", "net_gex_at_spot", "zero_gamma", "call_wall", "put_wall",
           "max_pain_next", "abs_gamma_strike", "coverage", "compute_ms")
"""Numeric live-levels columns sent as Dagster metadata (plotted per materialization in the UI)."""


def _usd(value: object, scale: float = 1.0, digits: int = 2) -> str:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else f"{v / scale:,.{digits}f}"


def level_line(row: Mapping[str, Any], lag_s: float) -> str:
    """The log line of one live-levels row (times in ET; GEX in $bn per 1% move)."""
    when = pd.Timestamp(row["snapshot_ts"]).tz_convert(market_calendar.NEW_YORK)
    net = float(row["net_gex"])  # type: ignore[arg-type]
    regime = "positive" if net > 0 else "negative" if net < 0 else "flat"
    missing = f" MISSING: {row['missing']}" if row.get("missing") else ""
    return (f"{row['underlying']} {when:%Y-%m-%d %H:%M:%S} ET spot {_usd(row['spot'])} | net GEX "
            f"{net / 1e9:+.3f}bn/1% ({regime} gamma) | zero gamma {_usd(row['zero_gamma'])} | call wall "
            f"{_usd(row['call_wall'])} | put wall {_usd(row['put_wall'])} | max pain {_usd(row['max_pain_next'])} | "
            f"{int(row['contracts'])} contracts, {row['compute_ms']:.1f} ms, lag {lag_s:.2f} s{missing}")


class DagsterReporter:
    """Reports runless events to the local Dagster instance from a background thread.

    ``DAGSTER_HOME`` must point at the instance the webserver and daemon use (the CLI sets it like
    ``zerogex run`` does). A reporting failure is logged once and never stops the engine.
    """

    def __init__(self, settings: Settings, enabled: bool = True, instance: Any = None) -> None:
        self.settings = settings
        self.enabled = enabled
        self.instance = instance
        """A ``DagsterInstance`` to report to (tests); ``None``: the local instance of ``DAGSTER_HOME``."""
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[list[Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zerogex-dagster-events", daemon=True)
            self._thread.start()

    def report(self, events: list[Any]) -> None:
        """Queue Dagster events (``AssetMaterialization`` / ``AssetCheckEvaluation``) for reporting."""
        if self.enabled and events:
            self._queue.put(events)

    def _run(self) -> None:
        from zerogex_pipeline.instance import get_instance

        instance = self.instance
        while True:
            batch = self._queue.get()
            if batch is None:
                self._queue.task_done()
                return
            try:
                if instance is None:
                    instance = get_instance(self.settings)
                for event in batch:
                    instance.report_runless_asset_event(event)
                    self.sent += 1
            except Exception as exc:  # the capture goes on without the UI events
                self.failed += len(batch)
                if not self._warned:
                    self._warned = True
                    log.warning("Dagster events could not be reported to %s (%s: %s); the capture goes on",
                                os.environ.get("DAGSTER_HOME", "the default instance"), type(exc).__name__,
                                str(exc).splitlines()[0] if str(exc) else "")
            finally:
                self._queue.task_done()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued event is reported (or ``timeout_s`` passed)."""
        import time

        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)
            self._thread = None


def capture_events(u: Underlying, day: dt.date, instant: pd.Timestamp, level: Mapping[str, Any] | None,
                   capture: Mapping[str, Any]) -> list[Any]:
    """The Dagster events of one snapshot instant of ``u`` (materializations of today's partition)."""
    import dagster as dg

    partition = day.isoformat()
    when = instant.isoformat()
    events = [dg.AssetMaterialization(
        asset_key=[u.key, "captured_quotes"], partition=partition,
        metadata={"snapshot_ts": when, **{k: v for k, v in capture.items() if v is not None}})]
    events.append(dg.AssetMaterialization(
        asset_key=[u.key, "captured_bars"], partition=partition,
        metadata={"snapshot_ts": when, "bars_today": int(capture.get("bars_today", 0)),
                  "last_bar_end": str(capture.get("last_bar_end", ""))}))
    if level is not None:
        values: dict[str, Any] = {"snapshot_ts": when}
        for name in PLOTTED:
            value = level.get(name)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                values[name] = float(value)
        values["missing"] = str(level.get("missing") or "")
        events.append(dg.AssetMaterialization(asset_key=[u.key, "live_levels"], partition=partition, metadata=values))
    return events


def plan_events(day: dt.date, plans: list[Any], not_streamed: str | None, feed: str) -> list[Any]:
    """One observation of ``<u>/captured_quotes`` per underlying at start-up: what is streamed, what is not."""
    import dagster as dg

    by_key: dict[str, list[Any]] = {}
    for plan in plans:
        by_key.setdefault(plan.underlying.key, []).append(plan)
    events = []
    for key, mine in by_key.items():
        lines = [f"{p.expiration}: " + (f"chain stream ±{p.chain_proximity} strikes @ {p.center:g}"
                                        + (f" + {len(p.tail_strikes)} tail strikes on quote streams"
                                           if p.tail_strikes else "") if p.slot else "NOT streamed (no slot)")
                 for p in mine]
        events.append(dg.AssetObservation(
            asset_key=[key, "captured_quotes"], partition=day.isoformat(),
            metadata={"event": "engine started", "feed": feed, "plan": "\n".join(lines),
                      "not_streamed": not_streamed or "", "expirations_streamed": sum(1 for p in mine if p.slot),
                      "expirations_tracked": len(mine)}))
    return events


class LiveAlerts:
    """Alert events between consecutive live-levels rows of each underlying (see the module docstring)."""

    def __init__(self, settings: Settings, snapshot_minutes: int, run_id: str) -> None:
        self.settings = settings
        self.snapshot_minutes = snapshot_minutes
        self.run_id = run_id
        self._previous: dict[str, dict[str, Any]] = {}
        self.announced = 0

    def bucket(self, session: market_calendar.TradingSession, instant: pd.Timestamp) -> pd.Timestamp:
        """The first snapshot instant at or after ``instant`` (the close when none is left)."""
        times = session.snapshot_times(self.snapshot_minutes)
        i = int(times.searchsorted(instant, side="left"))
        return times[min(i, len(times) - 1)]

    def observe(self, u: Underlying, session: market_calendar.TradingSession, row: dict[str, Any]) -> pd.DataFrame:
        """Events from the previous row of ``u`` to ``row``; claims and announces them. Returns the events."""
        previous = self._previous.get(u.key)
        self._previous[u.key] = row
        if previous is None or previous["session_date"] != row["session_date"]:
            return pd.DataFrame()
        pair = pd.DataFrame([{k: previous[k] for k in LEVEL_COLUMNS}, {k: row[k] for k in LEVEL_COLUMNS}])
        events = detect_events(pair)
        if events.empty:
            return events
        day = session.date.isoformat()
        stamp = self.bucket(session, pd.Timestamp(row["snapshot_ts"]))
        events["event_id"] = [event_id(u.name, day, kind, stamp) for kind in events["kind"]]
        now = market_calendar.utc_now()
        try:
            claimed, _ = alert_ledger.claim_and_read(self.settings, u.key, events, session.date, announce=True,
                                                     now=now, run_id=self.run_id)
        except StorageError as exc:
            log.warning("alerts of %s could not be claimed (%s); they are not announced now, the gex_alerts asset "
                        "will announce them from the levels", u.name, exc)
            return events
        self.announced += len(claimed)
        announce(events, claimed, self.settings.alert_webhook_url, log.warning)
        return events
