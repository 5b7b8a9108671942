"""Client-side per-category request budgets, shared by threads and processes.

Each category has a fixed window (the reference: windows are fixed, not sliding, and start at the first
request of the category). State lives in ``<data_dir>/tradestation/ratelimit.json`` under a file lock,
so every process on the machine draws from one budget. ``acquire`` blocks until the category has room.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import FileLock

from zerogex_pipeline.tradestation.auth import atomic_write_json
from zerogex_pipeline.tradestation.config import RateBudget


class RateBudgets:
    """Fixed-window counters per category. Categories without a budget are not limited."""

    def __init__(
        self, budgets: Mapping[str, RateBudget], state_dir: Path, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._budgets = dict(budgets)
        self._path = state_dir / "ratelimit.json"
        self._lock = FileLock(str(state_dir / "ratelimit.lock"), timeout=60)
        self._thread_lock = threading.Lock()
        self._sleep = sleep
        self.waited_s = 0.0
        """Total seconds this process waited for budget."""

    def _try(self, category: str, budget: RateBudget) -> float:
        """Take one slot and return 0, or return the seconds until the window resets."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._lock:
            try:
                state = json.loads(self._path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            now = time.time()
            start, count = state.get(category, [0.0, 0])
            if now >= start + budget.period_s:
                start, count = now, 0
            if count >= budget.limit:
                return start + budget.period_s - now
            state[category] = [start, count + 1]
            atomic_write_json(self._path, state)
            return 0.0

    def acquire(self, category: str) -> None:
        """Block until ``category`` has budget, then take one request from it."""
        budget = self._budgets.get(category)
        if budget is None:
            return
        while True:
            wait = self._try(category, budget)
            if wait <= 0:
                return
            self.waited_s += wait
            self._sleep(min(wait + 0.01, budget.period_s))

    def penalize(self, category: str, seconds: float) -> None:
        """Mark ``category`` exhausted for ``seconds`` (after a server 429) so other processes wait too."""
        budget = self._budgets.get(category)
        if budget is None:
            return
        with self._thread_lock, self._lock:
            try:
                state = json.loads(self._path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {}
            state[category] = [time.time() + seconds - budget.period_s, budget.limit]
            atomic_write_json(self._path, state)
