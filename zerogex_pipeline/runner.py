"""Materializing whole trading days in dependency order: bars -> snapshots -> surface -> levels.

Used by ``zerogex run`` (and ``make run``). Consecutive trading days are materialized in range runs of at most
``ZEROGEX_BACKFILL_DAYS_PER_RUN`` days, like the backfill daemon does: one run for the bars of the range, one per
expiration slot for its snapshots + surface, and one for its levels (each run with its blocking checks). Each run
goes through the configured IO manager, so the store ends with exactly one copy of every partition however often a
day is re-run. A progress callback hears after every run how many partitions are done out of the total.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from zerogex_pipeline import market_calendar
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.checks.asset_checks import build_asset_checks
from zerogex_pipeline.defs.partitions import chain_partition_key, consecutive_sessions
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.run_liveness import process_tags
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.sources.base import MarketDataSource
from zerogex_pipeline.underlyings import Underlying


class RunFailedError(RuntimeError):
    """A materialization run failed; the message names the asset and partition, and where the run's full log is."""


@dataclass
class DayRun:
    """What one day's materialization did: rows written per asset and the expirations used."""

    underlying: str
    date: dt.date
    expirations: list[dt.date]
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Progress:
    """Partitions materialized so far out of the total, and the failures (0 or 1: a failed run stops the work)."""

    done: int
    total: int
    failed: int
    elapsed_s: float
    step: str

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (``None`` before the first partition is done)."""
        if self.done <= 0:
            return None
        return self.elapsed_s * (self.total - self.done) / self.done


ProgressCallback = Callable[[Progress], None]


def day_expirations(source: MarketDataSource, underlying: Underlying, date: dt.date, count: int) -> list[dt.date]:
    """The ``count`` nearest expirations listed on ``date`` (0DTE included)."""
    return source.listed_expirations(underlying, date)[:count]


def _failure_message(event: dg.DagsterEvent | None) -> str:
    """The innermost error message of a step failure (the user's error, not Dagster's wrapper), on one line.

    Our own errors (``zerogex_pipeline.*``) already name the input and the problem, so their class name is
    dropped; other exceptions keep their short class name (``KeyError: 'x'``).
    """
    error = event.step_failure_data.error if event is not None and event.step_failure_data else None
    if error is None:
        return "see the run's logs"
    while error.cause is not None:
        error = error.cause
    message = " ".join(error.message.split())
    match = re.match(r"^([\w.]+)\.(\w+): ", message)
    if match:
        module, name = match.groups()
        message = message[match.end():] if module.startswith("zerogex_pipeline") else f"{name}: {message[match.end():]}"
    return message


def _failed_checks(result: dg.ExecuteInProcessResult) -> str:
    """``check <asset>:<name>: <first problem>`` for each failed asset check of the run, on one line."""
    failed = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed:
            continue
        problems = evaluation.metadata.get("problems")
        first = str(problems.value).strip().splitlines()[0] if problems is not None and problems.value else ""
        failed.append(f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed: {first}")
    return "; ".join(failed)


def _rows_by_partition(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, int]:
    """Rows each partition of ``key`` got in the run (its own ``rows`` metadata)."""
    out: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key == key and mat.partition is not None:
            value = mat.metadata.get("rows")
            out[str(mat.partition)] = int(value.value) if value is not None else 0  # type: ignore[arg-type]
    return out


QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""Run config that keeps Dagster's event lines (and a failure's tracebacks) off the console: the instance's event
log still has all of them, and :class:`RunFailedError` says where."""


def full_log_hint(run_id: str) -> str:
    """Where a run's full event log is: the run id in the local Dagster instance, shown by ``make ui``."""
    home = os.environ.get("DAGSTER_HOME", "")
    where = f" in the Dagster instance {home}" if home else ""
    return f"full log: run {run_id[:8]}{where} (make ui > Runs), or rerun with --debug"


def materialize_day(
    underlying: Underlying, date: dt.date, settings: Settings, instance: dg.DagsterInstance, quiet: bool = True
) -> DayRun:
    """Materialize all four assets of ``underlying`` for ``date``.

    Raises:
        RunFailedError: a run failed (the store keeps the partitions' previous versions).
    """
    return materialize_days(underlying, [date], settings, instance, quiet)[0]


def materialize_days(
    underlying: Underlying, dates: Sequence[dt.date], settings: Settings, instance: dg.DagsterInstance,
    quiet: bool = True, progress: ProgressCallback | None = None,
) -> list[DayRun]:
    """Materialize all four assets of ``underlying`` for ``dates``, in range runs of consecutive sessions.

    Returns one :class:`DayRun` per date, oldest first. ``progress`` is called after every run.

    Raises:
        RunFailedError: a run failed (the store keeps the partitions' previous versions; earlier ranges stay done).
    """
    started = time.perf_counter()
    ordered = sorted(set(dates))
    first = market_calendar.next_session_on_or_after(settings.first_date)
    if ordered and ordered[0] < first:
        raise RunFailedError(
            f"{ordered[0]} is before the first date partition {first} (ZEROGEX_FIRST_DATE={settings.first_date}); "
            f"set ZEROGEX_FIRST_DATE to {ordered[0]} or earlier to materialize it"
        )
    resources = build_resources(settings)
    assets = build_underlying_assets(underlying, settings)
    bars, chain, surface, levels = assets
    checks = build_asset_checks(underlying, settings, bars, chain, surface, levels)
    source = resources["market_data"].get_source()
    out = {d: DayRun(underlying.name, d, day_expirations(source, underlying, d, settings.expirations))
           for d in ordered}
    slots = settings.expirations
    total = len(ordered) * (2 + 2 * slots)
    done = 0

    def run(selection: list[dg.AssetsDefinition], keys: list[str], step: str) -> None:
        nonlocal done
        tags = {"zerogex/trigger": "cli", **process_tags()}  # lets a later start tell if this process died
        partition_key: str | None = keys[0]
        if len(keys) > 1:
            tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            partition_key = None
        result = dg.materialize(  # the selected assets' blocking checks run in the same run
            [*assets, *checks],
            selection=[a.key for a in selection],
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            run_config=QUIET_RUN_CONFIG if quiet else None,
            tags=tags,
        )
        where = keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            detail = _failed_checks(result) or _failure_message(failure)
            names = ", ".join(a.key.to_user_string() for a in selection)
            if progress is not None:
                progress(Progress(done, total, 1, time.perf_counter() - started, f"{names} [{where}] failed"))
            raise RunFailedError(f"{names} [{where}] failed: {detail} ({full_log_hint(result.run_id)})")
        for a in selection:
            for key, rows in _rows_by_partition(result, a.key).items():
                day = out[dt.date.fromisoformat(key.split("|")[0])]
                day.rows[a.key.path[-1]] = day.rows.get(a.key.path[-1], 0) + rows
        done += len(keys) * len(selection)
        if progress is not None:
            progress(Progress(done, total, 0, time.perf_counter() - started, step))

    for days in consecutive_sessions(ordered, settings.backfill_days_per_run):
        span = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
        day_started = time.perf_counter()
        run([bars], [d.isoformat() for d in days], f"bars {span}")
        for slot in range(1, slots + 1):
            run([chain, surface], [str(chain_partition_key(d, slot)) for d in days], f"chain + surface {span} slot {slot}")
        run([levels], [d.isoformat() for d in days], f"levels {span}")
        for d in days:
            out[d].seconds = (time.perf_counter() - day_started) / len(days)
    return [out[d] for d in ordered]
