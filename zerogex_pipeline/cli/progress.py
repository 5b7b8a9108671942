"""Progress lines of long CLI work (``zerogex run``, ``zerogex backfill --wait``): partitions done out of the total,
failures, and an ETA at the pace so far."""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG

from zerogex_pipeline.defs.automation.backfills import backfill_path

WEBSERVER_URL = "http://localhost:3000"
"""Where ``make ui`` (``dagster dev``) serves the Dagster UI."""
QUIET_SECONDS = 30.0
"""A progress line is printed when something changed, or after this long without a change (a sign of life)."""


def duration(seconds: float) -> str:
    """``45s``, ``12m05s`` or ``2h03m``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def eta(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far, ``None`` before anything is done."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * max(total - done, 0) / done


def progress_line(done: int, total: int, failed: int, elapsed_s: float, detail: str = "",
                  pace_from: tuple[int, float] = (0, 0.0)) -> str:
    """``[  1m10s] 126/1008 partitions (12.5%), 0 failed, ETA 8m12s: <detail>``.

    ``pace_from`` is ``(done, elapsed)`` when the pace started (e.g. the first partition done), so the ETA does
    not count the wait before the first run.
    """
    pct = 100.0 * done / total if total else 100.0
    base_done, base_s = pace_from
    left = eta(done - base_done, total - base_done, elapsed_s - base_s)
    when = "ETA " + (duration(left) if left is not None else "?")
    tail = f": {detail}" if detail else ""
    return f"[{duration(elapsed_s):>7}] {done}/{total} partitions ({pct:.1f}%), {failed} failed, {when}{tail}"


@dataclass
class BackfillCounts:
    """Partitions of an asset backfill: targeted, materialized, failed (with their downstream), runs in progress."""

    total: int
    done: int
    failed: int
    running: int
    status: str


def backfill_counts(instance: dg.DagsterInstance, backfill: PartitionBackfill) -> BackfillCounts:
    """What the backfill daemon has recorded of ``backfill`` (updated at each of its iterations)."""
    data = backfill.asset_backfill_data
    running = len(instance.get_run_ids(
        dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id},
                      statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])))
    if data is None:
        return BackfillCounts(0, 0, 0, running, backfill.status.value)
    return BackfillCounts(
        total=data.target_subset.num_partitions_and_non_partitioned_assets,
        done=data.materialized_subset.num_partitions_and_non_partitioned_assets,
        failed=data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets,
        running=running,
        status=backfill.status.value,
    )


def backfill_link(backfill_id: str) -> str:
    """The backfill's page in the UI of ``make ui``."""
    return f"{WEBSERVER_URL}{backfill_path(backfill_id)}"


class ProgressPrinter:
    """Prints a progress line when the numbers change, or every :data:`QUIET_SECONDS` as a sign of life."""

    def __init__(self, out: TextIO | None = None, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.out = out or sys.stdout
        self.quiet_seconds = quiet_seconds
        self.started = time.monotonic()
        self._last: tuple[int, int, int] | None = None
        self._last_at = 0.0
        self._pace_from: tuple[int, float] | None = None

    def elapsed(self) -> float:
        """Seconds since the printer was made."""
        return time.monotonic() - self.started

    def update(self, done: int, total: int, failed: int, detail: str = "", force: bool = False) -> bool:
        """Print a line if something changed (or it has been quiet for long); returns whether it printed."""
        now = self.elapsed()
        if self._pace_from is None and done > 0:
            self._pace_from = (0, 0.0)  # pace over the whole elapsed time once work shows
        key = (done, total, failed)
        if not force and key == self._last and now - self._last_at < self.quiet_seconds:
            return False
        self._last, self._last_at = key, now
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        line = progress_line(done, total, failed, now, detail, self._pace_from or (0, 0.0))
        print(f"{stamp} {line}", file=self.out, flush=True)
        return True
