"""Server push: one watcher per underlying polls the store while a page listens, and pushes what changed.

The store has no change notification (an embedded DuckDB file, or PostgreSQL tables written by other
processes), so the server looks for changes itself, **once per poll interval for all listeners**, and the pages
receive Server-Sent Events instead of polling. On the embedded store a poll costs one ``stat`` per file while
nothing is written (:class:`~zerogex_pipeline.storage.dashboard_queries.DashboardStore` re-reads a file only when
its signature changed); on PostgreSQL two primary-key lookups.

Events (``event:`` name, ``data:`` JSON):

- ``levels``: the newest levels changed (a live-levels row arrived, or a stored snapshot): the payload of
  ``GET /api/v1/{u}/levels/latest``;
- ``snapshot``: the stored snapshots changed (a new snapshot, a new day, or a re-materialized day):
  ``{"session_date", "snapshot_ts", "rows"}``; the page re-reads the charts of that day;
- ``alerts``: the newest day's stored alert count changed: ``{"session_date", "alerts"}``;
- ``status``: ``{"ok": false, "error": "..."}`` while the store cannot be read (``{"ok": true}`` when it can
  again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from zerogex_pipeline.dashboard.service import ApiError, DashboardService, iso
from zerogex_pipeline.storage.dashboard_queries import StoredState
from zerogex_pipeline.storage.table_slices import StorageError
from zerogex_pipeline.underlyings import Underlying

LOG = logging.getLogger("zerogex.dashboard")
KEEPALIVE_S = 15.0
QUEUE_LIMIT = 100


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data, allow_nan=False, separators=(',', ':'))}\n\n"


@dataclass
class _Seen:
    live: tuple[Any, ...] | None = None
    stored: StoredState | None = None
    ok: bool = True
    primed: bool = False


@dataclass
class Watcher:
    """Polls one underlying's store every ``poll_s`` seconds while it has subscribers."""

    service: DashboardService
    underlying: Underlying
    poll_s: float
    subscribers: set[asyncio.Queue[str]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    seen: _Seen = field(default_factory=_Seen)

    def subscribe(self) -> asyncio.Queue[str]:
        """A new listener's queue; starts the polling task when it is the first."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.subscribers.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"zerogex-watch-{self.underlying.key}")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        """Forget a listener; the task stops by itself when none is left."""
        self.subscribers.discard(queue)

    def _publish(self, message: str) -> None:
        for queue in list(self.subscribers):
            if queue.full():  # a stalled listener: drop its oldest event rather than block everyone
                queue.get_nowait()
            queue.put_nowait(message)

    def poll(self) -> list[str]:
        """One poll (blocking; run in a worker thread): the events that are due, as SSE text."""
        store, u = self.service.store, self.underlying
        try:
            live = store.latest_live_levels(u)
            live_key = None if live.empty else (live["session_date"].iloc[0], live["snapshot_ts"].iloc[0])
            stored = store.stored_state(u)
        except (StorageError, ApiError) as exc:
            if not self.seen.ok:
                return []
            self.seen.ok = False
            return [sse("status", {"ok": False, "error": str(exc)})]
        events: list[str] = []
        if not self.seen.ok:
            self.seen.ok = True
            events.append(sse("status", {"ok": True}))
        first = not self.seen.primed
        stored_changed = stored != self.seen.stored
        if not first and stored_changed and stored.session_date is not None:
            events.append(sse("snapshot", {"session_date": stored.session_date.isoformat(),
                                           "snapshot_ts": iso(stored.snapshot_ts), "rows": stored.rows}))
        if not first and self.seen.stored is not None and stored.alerts != self.seen.stored.alerts:
            events.append(sse("alerts", {"session_date": None if stored.session_date is None
                                         else stored.session_date.isoformat(), "alerts": stored.alerts}))
        if not first and (live_key != self.seen.live or stored_changed):
            with contextlib.suppress(ApiError):  # nothing stored at all yet
                events.append(sse("levels", self.service.latest(u)))
        self.seen.live, self.seen.stored, self.seen.primed = live_key, stored, True
        return events

    async def _run(self) -> None:
        try:
            while self.subscribers:
                for message in await anyio.to_thread.run_sync(self.poll):
                    self._publish(message)
                await asyncio.sleep(self.poll_s)
        except Exception:  # keep the server up; the next subscriber restarts polling
            LOG.exception("change watcher of %s stopped", self.underlying.name)
        finally:
            self.task = None
            self.seen = _Seen()


class Hub:
    """The watchers of every served underlying, and the shutdown signal for open streams."""

    def __init__(self, service: DashboardService, poll_s: float) -> None:
        self.watchers = {u.key: Watcher(service, u, poll_s) for u in service.settings.underlyings}
        self.closing = asyncio.Event()

    async def stream(self, underlying: Underlying, hello: dict[str, Any]) -> AsyncIterator[str]:
        """The SSE text of one listener: ``hello`` first, then the pushed events and keep-alive comments."""
        watcher = self.watchers[underlying.key]
        queue = watcher.subscribe()
        try:
            yield "retry: 2000\n" + sse("hello", hello)
            while not self.closing.is_set():
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield message
        finally:
            watcher.unsubscribe(queue)
